"""`python -m lmjax.export --format=tflite` (`lmjax.hlo_export.tflite`): needs TensorFlow (the
`tflite` extra), so it skips where TensorFlow is not installed (the default environment)."""

import pathlib

import numpy as np
import pytest

from lmjax.hlo_export import stablehlo

ROOT = pathlib.Path(__file__).resolve().parents[1]
MCL5 = str(ROOT / 'pretrained' / 'mcl5')
CANVAS = (96, 128)
# float32 crop geometry (TFLite has no float64): a crop edge the host computes on an integer
# can land one window pixel off; a few hundredths of a pixel, not the float64 exports' 0.01.
TOLERANCE_PX = 0.05


def test_tflite_export_matches_the_folder(tmp_path):
  pytest.importorskip('tensorflow')
  from lmjax.hlo_export import tflite
  from lmjax.inference import load_predictor
  from lmjax.mcl.predictor import FacePredictor

  path = str(tmp_path / 'mcl5.tflite')
  info = tflite.export_tflite(MCL5, path, CANVAS, batch=2)
  assert info['format'] == 'tflite' and info['batch'] == 2 and info['num_points'] == 5
  assert info['parity']['max_diff_px'] <= TOLERANCE_PX
  exported = load_predictor(path)
  picture, boxes = stablehlo.synthetic_faces((80, 100), seed=5)
  want = FacePredictor(MCL5, backend='xla').predict_batch([picture] * 3, boxes[:3].astype(float))
  got = exported.predict_batch([picture] * 3, boxes[:3])  # 3 faces: one batch of 2, one padded
  assert np.abs(got - want).max() <= TOLERANCE_PX
  with pytest.raises(ValueError, match='do not fit the canvas'):
    exported.predict_batch([np.zeros((200, 50, 3), np.uint8)], boxes[:1])
