"""`lmjax.Landmarker`: faces with box, landmarks, confidence and pose from one call, with the
scanner or with given boxes, and a 68-point model behind the 5-point scanner."""

import pathlib

import numpy as np
import pytest

import lmjax
from lmjax import inference
from lmjax.core import geometry, head_pose, landmarks
from lmjax.synthface import render_face_example, render_scene

PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / 'pretrained'


def test_the_similarity_fit_recovers_a_known_transform():
  rng = np.random.default_rng(0)
  source = rng.normal(size=(5, 2))
  angle, scale, shift = 0.4, 2.5, np.array([10.0, -3.0])
  rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  target = source @ rotation.T + shift
  fitted = inference._fit_similarity(source, target)
  np.testing.assert_allclose(fitted, np.concatenate([rotation, shift[:, None]], 1), atol=1e-10)


@pytest.fixture(scope='module')
def scene():
  return render_scene(3, image_size=(480, 640), max_faces=3)


def test_given_boxes_give_points_pose_and_confidence():
  lm = lmjax.Landmarker.load(str(PRETRAINED / 'mcl68'))
  example = render_face_example(4, image_size=(160, 160))
  faces = lm.detect(example['image'], boxes=[example['bbox'], example['bbox'] + 3])
  assert len(faces) == 2 and faces[0].score is None
  face = faces[0]
  assert face.points.shape == (68, 2) and face.confidence.shape == (68,)
  assert ((face.confidence >= 0) & (face.confidence <= 1)).all()
  np.testing.assert_allclose(face.pose, head_pose.head_pose(face.points, landmarks.IBUG68))
  with pytest.raises(ValueError, match='boxes: this Landmarker has no face detector'):
    lm.detect(example['image'])
  with pytest.raises(ValueError, match=r'boxes\[1\]: '):
    lm.detect(example['image'], boxes=[example['bbox'], [0, 0, np.inf, 5]])
  assert lm.detect(example['image'], boxes=[]) == []


def test_the_scanner_finds_the_face_and_a_68_point_model_gets_a_tight_box(scene):
  truth = scene['faces'][0]
  for model, detector in (('bbfcn5', None), ('mcl68', 'bbfcn5')):
    lm = lmjax.Landmarker.load(
      str(PRETRAINED / model), detector and str(PRETRAINED / detector), min_face=40
    )
    faces = lm.detect(scene['image'])
    assert faces and faces[0].score is not None
    best = max(faces, key=lambda f: geometry.box_iou(f.box[None], truth['bbox'][None])[0, 0])
    assert geometry.box_iou(best.box[None], truth['bbox'][None])[0, 0] > 0.5, (model, best.box)
    assert best.pose.shape == (3,) and best.confidence is not None
    if model == 'mcl68':  # the box of the mean face placed on the 5 detected points
      gt = truth['landmarks']
      nme = np.linalg.norm(best.points - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45])
      assert nme < 0.15, nme
