"""Head pose from landmarks (`lmjax.core.head_pose`): conventions, exact poses, rendered faces
with known pose, missing points, and the predictor / drawing outputs."""

import numpy as np
import pytest

from lmjax.core import head_pose, landmarks
from lmjax.models import registry
from lmjax.synthface import render_face_example, shape
from lmjax.viz import draw


def test_the_mean_face_and_angles_are_the_renderers():
  np.testing.assert_allclose(head_pose.MEAN_FACE_68, shape.MEAN_SHAPE, atol=6e-4)
  for angles in [(30, -10, 5), (-55, 20, -40), (0, 0, 0)]:
    rotation = head_pose.rotation_matrix(*angles)
    np.testing.assert_allclose(rotation, shape.Pose(*angles).matrix(), atol=1e-12)
    np.testing.assert_allclose(head_pose.euler_angles(rotation), angles, atol=1e-9)


def _project(points3d, angles, scale=40.0, offset=(70.0, 60.0)):
  """The renderer's weak-perspective camera (`synthface.head.Camera.project`)."""
  return points3d @ head_pose.rotation_matrix(*angles).T[:, :2] * scale + np.array(offset)


@pytest.mark.parametrize('schema', [landmarks.IBUG68, landmarks.FIVE])
def test_exact_projections_of_the_mean_face_give_their_pose(schema):
  rng = np.random.default_rng(0)
  poses = rng.uniform([-60, -30, -45], [60, 30, 45], (20, 3))
  faces = np.stack([_project(head_pose.mean_face(schema), p) for p in poses])
  estimate = head_pose.head_pose(faces, schema)
  assert estimate.shape == (20, 3) and estimate.dtype == np.float32
  tolerance = 0.5  # a distant pinhole (FOCAL_PER_FACE), not exactly weak perspective
  np.testing.assert_allclose(estimate, poses, atol=tolerance)
  np.testing.assert_allclose(head_pose.head_pose(faces[3], schema), estimate[3], atol=1e-4)


def test_rendered_faces_with_known_pose():
  """Identity and expression deform the rendered faces away from the mean face: mean
  absolute error per angle (benchmarks/head_pose.py, 600 faces: 2.5 / 3.6 / 1.0 degrees)."""
  examples = [render_face_example(i, clean=True) for i in range(200, 280)]
  truth = np.stack([e['pose'] for e in examples])
  estimate = head_pose.head_pose(np.stack([e['landmarks'] for e in examples]), landmarks.IBUG68)
  error = np.abs(estimate - truth).mean(0)
  assert (error < [4.0, 6.0, 2.0]).all(), error
  assert np.abs((estimate - truth).mean(0)).max() < 2.0  # no systematic sign or offset error


def test_missing_points_and_schemas_without_a_mean_face():
  face = _project(head_pose.mean_face(landmarks.FIVE), (20, 0, 10))
  face[3] = np.nan  # 4 of 5 points still fit
  np.testing.assert_allclose(head_pose.head_pose(face, landmarks.FIVE), (20, 0, 10), atol=3)
  face[4] = np.nan
  assert np.isnan(head_pose.head_pose(face, landmarks.FIVE)).all()
  with pytest.raises(ValueError, match='no 3-D mean face for 29-point landmarks'):
    head_pose.head_pose(np.zeros((29, 2)), landmarks.COFW29)
  with pytest.raises(ValueError, match=r'points: expected \[..., 68, 2\]'):
    head_pose.head_pose(np.zeros((5, 2)), landmarks.IBUG68)


def test_predictors_output_the_pose_of_their_points():
  from lmjax.mcl.predictor import FacePredictor

  spec = registry.validate({
    'experiment': 'mcl', 'num_points': 68, 'width': 4, 'num_heads': 1, 'variant': 'gap',
    'size': 32, 'crop_scale': 1.1, 'grayscale': True, 'dataset': 'synthetic',
  })  # fmt: skip
  predictor = FacePredictor.from_variables(spec, registry.init(spec, seed=1), fold_bn=False)
  example = render_face_example(1)
  images, boxes = [example['image']] * 2, [example['bbox']] * 2
  out = predictor.predict_faces(images, boxes, pose=True)
  assert out['pose'].shape == (2, 3)
  np.testing.assert_allclose(out['pose'], head_pose.head_pose(out['points'], landmarks.IBUG68))
  assert 'pose' not in predictor.predict_faces(images, boxes)
  assert predictor.predict_faces([], [], pose=True)['pose'].shape == (0, 3)


def test_the_drawing_shows_the_pose():
  example = render_face_example(2, clean=True)
  args = (example['image'], example['landmarks'], example['bbox'], landmarks.IBUG68)
  plain = draw.draw_landmarks(*args)
  pose = head_pose.head_pose(example['landmarks'], landmarks.IBUG68)
  drawn = draw.draw_landmarks(*args, pose=pose)
  assert drawn.shape == plain.shape and (drawn != plain).any()
  axes = np.abs(drawn.astype(int) - plain.astype(int)).sum(-1) > 0
  assert axes.sum() > 200  # three axes and a label
  unchanged = draw.draw_landmarks(*args, pose=np.full(3, np.nan))
  np.testing.assert_array_equal(unchanged, plain)
