"""`datasets.load_split(..., 'validation')`: the faces `lmjax.main` validates on, for the CLIs.

300-W has no validation split: training carves `num_validation` faces out of `train`
(`table.held_out_split`); `lmjax.evaluate --split=validation` and `lmjax.calibrate` must score
exactly those faces, so that a model card's validation figures can be reproduced.
"""

import pathlib

import numpy as np
import pytest

from lmjax import evaluate
from lmjax.data import datasets
from lmjax.data.datasets import table

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def manual_300w(shared_data) -> str:
  return str(shared_data / '300w')


def _ids(source) -> list[str]:
  return [str(datasets.decode(source[i])['image_id']) for i in range(len(source))]


def test_validation_is_the_held_out_training_faces(manual_300w, tmp_path):
  kwargs = dict(manual_dir=manual_300w, data_dir=str(tmp_path / 'tfds'))
  train = datasets.load('300w', 'train', **kwargs)
  validation = datasets.load_split('300w', 'validation', **kwargs)
  num = table.entry('300w').num_validation
  assert len(validation) == num
  expected = np.asarray(_ids(train))[table.held_out_split(_ids(train), num)[1]]
  assert _ids(validation) == list(expected)
  assert datasets.schema_of(validation).num_points == 68  # dataset_info travels with it
  # other splits pass through unchanged
  assert len(datasets.load_split('300w', 'train', **kwargs)) == len(train)


def test_evaluate_reproduces_the_model_card(manual_300w, tmp_path):
  """The CLI's validation NME of the published bbfcn68 is its card's (training-time) figure."""
  folder = ROOT / 'pretrained' / 'bbfcn68'
  results = evaluate.run(
    str(folder),
    '300w',
    'validation',
    str(tmp_path / 'metrics.json'),
    manual_dir=manual_300w,
    data_dir=str(tmp_path / 'tfds'),
  )
  assert results['num_faces'] == 200
  assert abs(results['nme_ioc'] - _card_figure(folder, 'bbfcn', 'nme_ioc')) < 0.05


def _card_figure(folder: pathlib.Path, stage: str, column: str) -> float:
  """A value of the validation table of `folder/MODEL_CARD.md` (written by lmjax.model_card)."""
  lines = (folder / 'MODEL_CARD.md').read_text().splitlines()
  header = next(line.split() for line in lines if column in line.split())
  row = next(line.split() for line in lines if line.split()[:1] == [stage])
  return float(row[header.index(column) + 1])  # the row starts with the stage's name


def test_unknown_split_still_names_the_known_ones(manual_300w, tmp_path):
  expected = r"no split 'valid'.*'validation': the faces"
  with pytest.raises(datasets.DatasetFormatError, match=expected):
    datasets.load_split('300w', 'valid', manual_dir=manual_300w, data_dir=str(tmp_path / 'tfds'))
