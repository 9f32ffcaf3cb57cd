"""Per-point confidence (`lmjax.core.confidence`, `CropPredictor.confidence_signal`,
`python -m lmjax.calibrate`): the fit, the AUC, the mirror signal, the folder file and the
predictor output; the command on real validation faces when the data is here."""

import itertools
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lmjax import calibrate
from lmjax.core import confidence, geometry, landmarks
from lmjax.eval import face_crop
from lmjax.models.interface import CropPredictor

REPO = pathlib.Path(__file__).resolve().parents[1]
MTFL = REPO.parent / 'shared' / 'data' / 'mtfl'


def test_the_fit_recovers_a_known_logistic_model():
  rng = np.random.default_rng(0)
  signal = rng.normal(size=(4000, 3))
  intercepts = np.array([1.0, 2.0, -0.5])
  correct = rng.random((4000, 3)) < 1 / (1 + np.exp(-(1.5 * signal + intercepts)))
  slope, fitted = confidence.fit(signal, correct)
  assert slope == pytest.approx(1.5, rel=0.1)
  np.testing.assert_allclose(fitted, intercepts, atol=0.15)
  calibration = {'slope': slope, 'intercept': fitted}
  p = confidence.probability(signal, calibration)
  assert p.shape == (4000, 3) and p.dtype == np.float32 and (p >= 0).all() and (p <= 1).all()
  with pytest.raises(ValueError, match='need both correct and wrong points'):
    confidence.fit(signal, np.ones_like(correct))


def test_auc_counts_ordered_pairs_and_ties_half():
  rng = np.random.default_rng(1)
  score = rng.integers(0, 5, 40).astype(float)  # many ties
  positive = rng.random(40) < 0.4
  pairs = [
    1.0 if a > b else 0.5 if a == b else 0.0
    for a, b in itertools.product(score[positive], score[~positive])
  ]
  assert confidence.auc(score, positive) == pytest.approx(np.mean(pairs))
  assert np.isnan(confidence.auc(score, np.ones(40, bool)))


def test_calibration_file_round_trip_and_bad_files(tmp_path):
  assert confidence.read_calibration(tmp_path, 2) is None
  confidence.write_calibration(tmp_path, {'slope': 2.0, 'intercept': [0.5, 1.0]})
  assert confidence.read_calibration(tmp_path, 2)['intercept'] == [0.5, 1.0]
  with pytest.raises(ValueError, match=r'intercept has shape \(2,\), expected .* list of 5'):
    confidence.read_calibration(tmp_path, 5)  # another model's calibration
  (tmp_path / confidence.CALIBRATION_FILE).write_text('{"slope": 1}')
  with pytest.raises(ValueError, match=r'confidence.json: not a confidence calibration'):
    confidence.read_calibration(tmp_path, 2)


class MirrorPredictor(CropPredictor):
  """Fake model: a 5-point shape symmetric about the crop's centre line, moved right by
  `shift` pixels (a mirror-consistent model for shift 0)."""

  def __init__(self, shift=0.0, size=16):
    self.spec, self.schema, self.shift, self.size = {}, landmarks.FIVE, shift, size
    c = (size - 1) / 2
    self.shape = np.array([[c - 3, 5], [c + 3, 5], [c, 8], [c - 2, 11], [c + 2, 11]], np.float32)

  def crop(self, image, box):
    A = geometry.crop_affine(np.asarray(box, np.float64), self.size, 1.0)
    return np.zeros((self.size, self.size, 1), np.float32), A

  def predict_crops(self, crops):
    return {
      'points': np.broadcast_to(self.shape + np.array([self.shift, 0]), (len(crops), 5, 2)).copy()
    }


def test_the_mirror_signal_measures_disagreement_with_the_mirrored_crop():
  crops = np.zeros((3, 16, 16, 1), np.float32)
  consistent = MirrorPredictor()
  signal = consistent.confidence_signal(crops, consistent.predict_crops(crops))
  np.testing.assert_allclose(signal, -np.log(1e-3), rtol=1e-6)  # distance 0
  biased = MirrorPredictor(shift=1.0)  # the mirrored crop's points come back 2 px away
  signal = biased.confidence_signal(crops, biased.predict_crops(crops))
  np.testing.assert_allclose(signal, -np.log(2 / 16 + 1e-3), rtol=1e-6)


def test_predictors_give_calibrated_confidence_only_with_a_calibration():
  predictor = MirrorPredictor(shift=1.0)
  images, boxes = [np.zeros((40, 40, 3), np.uint8)] * 2, [[5, 5, 35, 35]] * 2
  with pytest.raises(ValueError, match=r'confidence: this model has no calibration'):
    predictor.predict_faces(images, boxes, confidence=True)
  predictor.calibration = {'slope': 1.0, 'intercept': [0.0, 0.0, 1.0, 0.0, 0.0]}
  out = predictor.predict_faces(images, boxes, confidence=True)
  expected = 1 / (1 + np.exp(np.log(2 / 16 + 1e-3) - [0, 0, 1, 0, 0]))
  np.testing.assert_allclose(out['confidence'], np.tile(expected, (2, 1)), rtol=1e-5)
  assert predictor.predict_faces([], [], confidence=True)['confidence'].shape == (0, 5)


def test_calibrate_fits_on_even_faces_and_judges_on_odd_faces():
  rng = np.random.default_rng(2)
  signal = rng.normal(size=(300, 5))
  error = np.exp(-signal + rng.normal(scale=0.5, size=(300, 5))) * 0.05  # low signal: wrong
  result = calibrate.calibrate(signal, error, np.ones((300, 5), bool))
  assert result['faces'] == 300 and len(result['intercept']) == 5 and result['slope'] > 0
  assert result['held_out_auc_error'] > 0.8
  assert len(result['held_out_reliability']) == 10


def test_measure_normalises_errors_by_the_eye_distance():
  predictor = MirrorPredictor()
  faces = face_crop.FaceCrops(
    crops=np.zeros((2, 16, 16, 1), np.float32),
    crop_to_image=np.tile(np.array([[2.0, 0, 0], [0, 2.0, 0]]), (2, 1, 1)),
    landmarks=np.tile(predictor.shape * 2, (2, 1, 1)) + np.array([1.2, 0]),  # 1.2 px off in x
    bbox=np.tile([0, 0, 32, 32], (2, 1)).astype(np.float32),
    visible=np.ones((2, 5), bool),
    image_ids=['a', 'b'],
  )
  signal, error, visible, kind = calibrate.measure(predictor, [faces])
  assert kind == 'ioc' and signal.shape == error.shape == (2, 5) and visible.all()
  np.testing.assert_allclose(error, 1.2 / 12)  # eye centres 12 px apart


@pytest.mark.skipif(not MTFL.is_dir(), reason='needs ../shared/data/mtfl')
def test_calibrate_command_on_mtfl_validation_faces(tmp_path):
  folder = tmp_path / 'mcl5'
  subprocess.run(['cp', '-r', str(REPO / 'pretrained' / 'mcl5'), str(folder)], check=True)
  (folder / confidence.CALIBRATION_FILE).unlink(missing_ok=True)
  cmd = [sys.executable, '-m', 'lmjax.calibrate', f'--checkpoint={folder}', '--dataset=mtfl']
  result = subprocess.run(
    [*cmd, f'--manual_dir={MTFL}'], capture_output=True, text=True, timeout=600, cwd=REPO
  )
  assert result.returncode == 0, result.stderr[-2000:]
  written = json.loads((folder / confidence.CALIBRATION_FILE).read_text())
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert printed.pop('file') == str(folder / confidence.CALIBRATION_FILE) and written == printed
  assert written['faces'] == 500 and written['dataset'] == 'mtfl/validation'
  assert written['held_out_auc_error'] > 0.6
