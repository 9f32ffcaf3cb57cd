"""AFLW-19 (19 points) in the protocol of LAB / HRNet / mmpose: `AFLWinfo_release.mat`.

The file (MATLAB v5 or v7.3, `matfile`) holds, for N = 24,386 faces: `data` [N, 38] = x1 … x19,
y1 … y19; `bbox` [N, 4] = left, right, top, bottom; `mask_new` [N, 19], 1 where the point is
visible; `nameList` {N} image paths relative to AFLW's `data/flickr/`; `ra` [1, N], a random
order of 1 … N. `train` is the faces ra(1 : 20000), `test` the rest (4,386); the frontal subset
(the test faces with all 19 points visible) is reported by the evaluator
(`lmjax.eval.protocols`). Coordinates are used as written. The face box is the given box; the
invisible points have `visible` False (the metrics and the selective losses skip them). The
image id is `<image path without extension>#<row of the face in the .mat file>`.

The builder config `default` takes the protocol's 20,000 training faces; `Aflw19Config` with
another `num_train` (tests) cuts `ra` elsewhere.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from lmjax.data.datasets import common, matfile

NUM_POINTS = 19
NUM_TRAIN = 20_000
INFO = 'AFLWinfo_release.mat'
IMAGE_FOLDER = os.path.join('data', 'flickr')
SPLITS = ('train', 'test')
VARIABLES = ('data', 'bbox', 'mask_new', 'ra')

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download AFLW (https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/)
and `AFLWinfo_release.mat` (the 19-point annotation of Zhu et al., CVPR 2016, used by LAB,
HRNet and mmpose), so that the manual directory holds
  AFLWinfo_release.mat
  data/flickr/0/image00002.jpg, data/flickr/2/..., data/flickr/3/...   (AFLW's image folders)
Splits: train = the first 20,000 faces of `ra`, test = the remaining 4,386.
"""


@dataclasses.dataclass
class Aflw19Config(tfds.core.BuilderConfig):
  """How many faces of `ra` (from its start) make the training split."""

  num_train: int = NUM_TRAIN


def info_path(manual_dir: str) -> str:
  return os.path.join(manual_dir, INFO)


def read_info(path: str) -> dict[str, object]:
  """The validated arrays of `AFLWinfo_release.mat`: landmarks [N, 19, 2], bbox [N, 4]
  (x0, y0, x1, y1), visible [N, 19], order [N] (0-based `ra`), names [N].

  Raises:
    common.DatasetFormatError: a missing variable, a wrong shape, `ra` not a permutation of
      1 … N, a mask value other than 0/1 or an empty box (the face's row named).
  """
  values = matfile.read_variables(path, VARIABLES)
  names = matfile.read_strings(path, 'nameList')
  n = len(names)
  for name, width in (('data', 2 * NUM_POINTS), ('bbox', 4), ('mask_new', NUM_POINTS)):
    if values[name].shape != (n, width):
      raise common.DatasetFormatError(
        f'{path}: {name} has shape {values[name].shape}; expected [{n}, {width}] '
        f'({n} faces in nameList)'
      )
  order = values['ra'].reshape(-1)
  if sorted(order.tolist()) != list(range(1, n + 1)):
    raise common.DatasetFormatError(
      f'{path}: ra ({order.size} values) is not a permutation of 1 … {n} (the number of faces)'
    )
  mask = values['mask_new']
  bad = np.flatnonzero(~np.isin(mask, (0, 1)).all(axis=1))
  if bad.size:
    raise common.DatasetFormatError(f'{path}: mask_new row {bad[0] + 1} holds values not 0/1')
  data = values['data']
  landmarks = np.stack([data[:, :NUM_POINTS], data[:, NUM_POINTS:]], axis=-1)
  left, right, top, bottom = values['bbox'].T
  boxes = np.stack([left, top, right, bottom], axis=1)
  for i in range(n):
    where = f'{path}: face {i + 1} ({names[i]})'
    common.check_landmarks(landmarks[i], NUM_POINTS, where)
    common.check_box(boxes[i], where, 'bbox row left, right, top, bottom')
  return {
    'landmarks': landmarks.astype(np.float32),
    'bbox': boxes.astype(np.float32),
    'visible': mask > 0.5,
    'order': order.astype(np.int64) - 1,
    'names': [s.replace('\\', '/') for s in names],
  }


def split_rows(order: np.ndarray, split: str, num_train: int) -> np.ndarray:
  """Rows (0-based) of `split`: the first `num_train` of `ra` for train, the rest for test."""
  return order[:num_train] if split == 'train' else order[num_train:]


def check_split(manual_dir: str, split: str, builder_config: Aflw19Config | None = None) -> None:
  """Raises a clear error for an unknown split, a missing file or an empty split."""
  if split not in SPLITS:
    raise common.DatasetFormatError(f'AFLW-19 has no split {split!r}; known: {list(SPLITS)}')
  path = info_path(manual_dir)
  if not os.path.isfile(path):
    raise common.DatasetFormatError(
      f'AFLW-19 needs {path}, which was not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  num_train = builder_config.num_train if builder_config else NUM_TRAIN
  rows = split_rows(read_info(path)['order'], split, num_train)
  if not rows.size:
    raise common.DatasetFormatError(
      f'{path}: AFLW-19 split {split!r} is empty (train = the first {num_train} faces of ra)'
    )


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the .mat file and the images it names."""
  path = info_path(manual_dir)
  if not os.path.isfile(path):
    return common.fingerprint_files(manual_dir, [])
  names = matfile.read_strings(path, 'nameList')
  images = [os.path.join(IMAGE_FOLDER, s.replace('\\', '/')) for s in names]
  return common.fingerprint_files(manual_dir, [path], images)


class Aflw19(common.LandmarkBuilder):
  """AFLW faces, 19 points with visibility, the protocol's boxes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'AFLWinfo_release.mat; ra split; mask_new visibility.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = 'AFLW-19: 20,000 train / 4,386 test faces (LAB / HRNet protocol).'
  HOMEPAGE = 'https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/'
  BUILDER_CONFIGS = [Aflw19Config(name='default', description='the protocol: 20,000 train')]

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    path = info_path(manual_dir)
    if not os.path.isfile(path):
      raise common.DatasetFormatError(f'AFLW-19 needs {path}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}')
    info = read_info(path)
    num_train = self.builder_config.num_train
    return {
      split: self._generate_examples(manual_dir, path, info, rows)
      for split in SPLITS
      if (rows := split_rows(info['order'], split, num_train)).size
    }

  def _generate_examples(self, manual_dir: str, path: str, info: dict, rows: np.ndarray):
    for row in rows:
      name = info['names'][row]
      image_path = os.path.join(manual_dir, IMAGE_FOLDER, name)
      if not os.path.isfile(image_path):
        raise common.DatasetFormatError(
          f'{path}: face {row + 1}: image {image_path} not found (nameList paths are '
          f'relative to {IMAGE_FOLDER}/)'
        )
      image, _ = common.image_bytes_for_tfds(image_path)
      image_id = f'{os.path.splitext(name)[0]}#{row + 1}'
      yield (
        image_id,
        {
          'image': image,
          'landmarks': info['landmarks'][row],
          'visible': info['visible'][row],
          'bbox': info['bbox'][row],
          'image_id': image_id,
        },
      )
