"""Every model folder under `pretrained/` predicts what it predicted before the restructure.

`tests/data/pretrained_predictions.npz` was written by the code at commit a584d7c (the flat package)
on the image below: MCL and BB-FCN points for three boxes (BB-FCN also backbone-only), the face
classifier's probabilities, and a 6-level scan with `pretrained/bbfcn5`. A model that is retrained
gets its entries rewritten in the commit that publishes it: `mcl68`, `mcl5`, `bbfcn5` and `bbfcn68`
(points, backbone points and the scan) were, each time a newly trained model replaced theirs (their
old entries had passed unchanged through the restructure); the scan entries were also rewritten when
the scanner moved to tiled pyramids resized on the host (`lmjax.scan.tiling`), and the MCL entries
when the test-time crop of grey models started converting to grey before resampling (as the training
region cache does). Entries are the float32 network ('xla' backend); the int8 graphs that CPU
predictors run by default (MCL, bbfcn5) are compared with it.
"""

import pathlib

import numpy as np
import pytest

from lmjax.facecls.classifier import FaceClassifier
from lmjax.inference import load_predictor
from lmjax.scan.scanner import Scanner

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPECTED = np.load(ROOT / 'tests' / 'data' / 'pretrained_predictions.npz')
BOXES = np.array([[40, 30, 160, 150], [20, 10, 120, 130], [60, 50, 190, 150]], np.float32)
POINT_ATOL = 1e-3  # pixels: the same programs, up to float reassociation
INT8_ATOL = 1.5  # pixels on this image (faces of 100-130 px): a broken graph is off by tens


def test_image() -> np.ndarray:
  """A deterministic 160 × 200 RGB image: colour ramps with three dark discs."""
  h, w = 160, 200
  yy, xx = np.mgrid[0:h, 0:w]
  image = np.stack([(xx * 1.2) % 256, (yy * 1.5) % 256, ((xx + yy) * 0.7) % 256], -1)
  for cx, cy, r in [(70, 60, 14), (130, 60, 14), (100, 110, 20)]:
    image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 30
  return image.astype(np.uint8)


test_image.__test__ = False  # a helper, not a test


@pytest.mark.parametrize('name', ['mcl68', 'mcl5', 'bbfcn5', 'bbfcn68'])
def test_face_crop_models(name):
  predictor = load_predictor(str(ROOT / 'pretrained' / name), backend='xla')
  image = test_image()
  points = predictor.predict_batch([image] * 3, BOXES)
  np.testing.assert_allclose(points, EXPECTED[name], atol=POINT_ATOL)
  if f'{name}_coarse' in EXPECTED:
    coarse = predictor.predict_batch([image] * 3, BOXES, refine=False)
    np.testing.assert_allclose(coarse, EXPECTED[f'{name}_coarse'], atol=POINT_ATOL)


@pytest.mark.parametrize('name', ['mcl68', 'mcl5', 'bbfcn5'])
def test_default_cpu_backend_is_int8_and_close_to_float32(name):
  predictor = load_predictor(str(ROOT / 'pretrained' / name))
  assert predictor.backend == 'int8'  # the folder's int8.onnx, fingerprint matching its weights
  points = predictor.predict_batch([test_image()] * 3, BOXES)
  np.testing.assert_allclose(points, EXPECTED[name], atol=INT8_ATOL)


def test_face_classifier():
  classifier = FaceClassifier.load(str(ROOT / 'pretrained' / 'facecls5'))
  np.testing.assert_allclose(classifier.score(test_image(), BOXES), EXPECTED['facecls5'], atol=1e-5)


def test_scanner():
  out = Scanner.load(str(ROOT / 'pretrained' / 'bbfcn5'), levels=6).scan(test_image())
  keys = [k[len('scan_') :] for k in EXPECTED.files if k.startswith('scan_')]
  assert keys
  for key in keys:
    expected = EXPECTED[f'scan_{key}']
    if expected.dtype == bool or np.issubdtype(expected.dtype, np.integer):
      np.testing.assert_array_equal(out[key], expected, err_msg=key)
    else:
      np.testing.assert_allclose(out[key], expected, atol=POINT_ATOL, rtol=1e-5, err_msg=key)
