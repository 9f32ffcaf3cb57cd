"""Tests of the synthetic face renderer (`lmjax.synthface`) and its tfds builder."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lmjax import synthface
from lmjax.core import landmarks as lm
from lmjax.data.datasets import common, synthetic
from lmjax.synthface import occluders
from lmjax.synthface.canvas import Canvas


def _pixel(image: np.ndarray, point: np.ndarray) -> np.ndarray | None:
  """RGB at the pixel nearest to `point`, or None outside the image."""
  x, y = np.round(point).astype(int)
  if 0 <= x < image.shape[1] and 0 <= y < image.shape[0]:
    return image[y, x].astype(np.float64)
  return None


@pytest.fixture(scope='module')
def clean_faces() -> list[dict]:
  return [synthface.render_face_example((7, i), clean=True) for i in range(60)]


@pytest.fixture(scope='module')
def faces() -> list[dict]:
  return [synthface.render_face_example((8, i)) for i in range(100)]


def test_same_seed_same_example_and_different_seeds_differ():
  a, b = synthface.render_face_example((1, 5)), synthface.render_face_example((1, 5))
  c = synthface.render_face_example((1, 6))
  np.testing.assert_array_equal(a['image'], b['image'])
  np.testing.assert_array_equal(a['landmarks'], b['landmarks'])
  assert not np.array_equal(a['image'], c['image'])
  assert np.abs(a['landmarks'] - c['landmarks']).max() > 1.0
  s1, s2 = synthface.render_scene((1, 5)), synthface.render_scene((1, 5))
  np.testing.assert_array_equal(s1['image'], s2['image'])
  assert len(s1['faces']) == len(s2['faces'])


def test_clean_rendering_keeps_the_geometry():
  normal = synthface.render_face_example((2, 3))
  clean = synthface.render_face_example((2, 3), clean=True)
  np.testing.assert_array_equal(normal['landmarks'], clean['landmarks'])


def test_example_fields(faces):
  for ex in faces[:10]:
    assert ex['image'].shape == (128, 128, 3) and ex['image'].dtype == np.uint8
    assert ex['landmarks'].shape == (68, 2) and ex['landmarks'].dtype == np.float32
    np.testing.assert_array_equal(ex['bbox'], common.tight_box(ex['landmarks']))
  sides = np.array([np.max(ex['bbox'][2:] - ex['bbox'][:2]) for ex in faces])
  assert sides.min() > 44 and sides.max() < 96 and np.ptp(sides) > 30
  centres = np.array([(ex['bbox'][:2] + ex['bbox'][2:]) / 2 for ex in faces])
  assert centres.std(axis=0).min() > 10  # faces are placed anywhere, not centred


def test_pupils_are_drawn_at_the_eye_centres(clean_faces):
  for ex in clean_faces:
    image, p = ex['image'], ex['landmarks']
    near = (1, 31) if ex['pose'][0] > 0 else (15, 35)  # cheek on the side facing the camera
    cheek = _pixel(image, (p[near[0]] + p[near[1]]) / 2)
    for eye in (p[36:42], p[42:48]):
      centre = _pixel(image, eye.mean(axis=0))
      if cheek is not None and centre is not None:
        assert np.abs(centre - cheek).max() > 15


def test_lips_and_mouth_corners_are_drawn_at_the_mouth_points(clean_faces):
  redder, corners = [], []
  for ex in clean_faces:
    image, p = ex['image'], ex['landmarks']
    near = (1, 31) if ex['pose'][0] > 0 else (15, 35)
    cheek = _pixel(image, (p[near[0]] + p[near[1]]) / 2)
    lip = _pixel(image, (p[57] + p[66]) / 2)  # middle of the lower lip
    if cheek is None or lip is None:
      continue
    redder.append(lip[1] / (lip[0] + 1) < cheek[1] / (cheek[0] + 1))
    for i in (48, 54):
      corner = _pixel(image, p[i])
      if corner is not None:
        corners.append(np.abs(corner - cheek).max() > 10)
  assert np.mean(redder) > 0.9 and np.mean(corners) > 0.9


def test_shapes_vary_and_follow_the_pose(faces):
  points = np.stack([ex['landmarks'] for ex in faces])
  boxes = np.stack([ex['bbox'] for ex in faces])
  normed = (points - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2])
  assert normed.std(axis=0).mean() > 0.04  # not one template
  poses = np.stack([ex['pose'] for ex in faces])
  assert (np.abs(poses).max(axis=0) >= [35, 18, 25]).all()  # yaw, pitch, roll ranges are used
  nose = points[:, 30]
  left = np.linalg.norm(points[:, 36:42].mean(axis=1) - nose, axis=1)
  right = np.linalg.norm(points[:, 42:48].mean(axis=1) - nose, axis=1)
  # Yaw > 0 turns the face towards image-right: the nose tip nears the image-right eye.
  assert np.corrcoef(np.log(left / right), poses[:, 0])[0, 1] > 0.8


def test_scenes_have_separate_faces_and_some_are_empty():
  scenes = [synthface.render_scene((9, i)) for i in range(30)]
  counts = [len(s['faces']) for s in scenes]
  assert min(counts) == 0 and max(counts) >= 3
  sides = []
  for scene in scenes:
    assert scene['image'].shape == (240, 320, 3)
    for a, b in itertools.combinations([f['bbox'] for f in scene['faces']], 2):
      assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    for face in scene['faces']:
      box = face['bbox']
      assert box[0] >= 0 and box[1] >= 0 and box[2] <= 320 and box[3] <= 240
      sides.append(np.max(box[2:] - box[:2]))
  assert min(sides) < 30 and max(sides) > 60


@pytest.mark.parametrize('kind', occluders.KINDS)
def test_every_occluder_covers_part_of_the_face(kind):
  points = synthface.render_face_example((3, 1), clean=True)['landmarks']
  canvas = Canvas(np.full((128, 128, 3), 0.5, np.float32))
  occluders.draw_occluder(canvas, points, np.random.default_rng(0), kind)
  x0, y0, x1, y1 = np.clip(np.round(common.tight_box(points)).astype(int), 0, 128)
  changed = np.abs(canvas.image - 0.5).max(axis=-1) > 0.02
  assert changed[y0:y1, x0:x1].mean() > 0.01
  with pytest.raises(ValueError, match='unknown occluder'):
    occluders.draw_occluder(canvas, points, np.random.default_rng(0), 'hat')


def test_make_config_names_sizes():
  assert synthetic.make_config('face68') is synthetic.CONFIGS['face68']
  cfg = synthetic.make_config('scene5', num_train=3, num_validation=2, num_test=1)
  assert cfg.name == 'scene5_3_2_1' and cfg.multiface and cfg.num_points == 5
  assert cfg.split_sizes() == {'train': 3, 'validation': 2, 'test': 1}
  with pytest.raises(KeyError, match='unknown synthetic config'):
    synthetic.make_config('face7')


def _build(base: str, data_dir) -> dict[str, dict]:
  """Builds a tiny version of `base`; returns {image_id: example} of every split."""
  cfg = synthetic.make_config(base, num_train=6, num_validation=2, num_test=2)
  builder = synthetic.Synthetic(config=cfg, data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare()
  out = {}
  for split, n in cfg.split_sizes().items():
    source = builder.as_data_source(split=split)
    assert len(source) == n
    for i in range(n):
      ex = source[i]
      out[ex['image_id'].decode()] = ex
  return out


def test_tfds_face_configs(tmp_path):
  face68, face5 = _build('face68', tmp_path), _build('face5', tmp_path)
  assert sorted(face68) == sorted(face5) and len(face68) == 10
  for image_id, ex in face68.items():
    assert ex['image'].shape == (128, 128, 3) and ex['image'].dtype == np.uint8
    assert ex['landmarks'].shape == (68, 2) and ex['landmarks'].dtype == np.float32
    assert ex['visible'].shape == (68,) and ex['visible'].all()
    np.testing.assert_array_equal(ex['bbox'], common.tight_box(ex['landmarks']))
    five = face5[image_id]
    np.testing.assert_array_equal(five['image'], ex['image'])
    np.testing.assert_allclose(five['landmarks'], lm.five_from_68(ex['landmarks']), atol=1e-5)
    np.testing.assert_array_equal(five['bbox'], ex['bbox'])
    assert five['visible'].shape == (5,)
  # Example i of a split is the renderer's output for seed (stream, split seed, i).
  first = synthface.render_face_example((68, synthetic.SPLIT_SEEDS['test'], 1))
  np.testing.assert_array_equal(face68['test_000001']['image'], first['image'])


def test_tfds_scene_configs(tmp_path):
  scenes68, scenes5 = _build('scene68', tmp_path), _build('scene5', tmp_path)
  for image_id, ex in scenes68.items():
    assert ex['image'].shape == (240, 320, 3)
    boxes = np.asarray(ex['faces']['bbox'], np.float32).reshape(-1, 4)
    points = np.asarray(ex['faces']['landmarks'], np.float32).reshape(-1, 68, 2)
    five = np.asarray(scenes5[image_id]['faces']['landmarks'], np.float32).reshape(-1, 5, 2)
    assert len(boxes) == len(points) == len(five)
    for box, pts, pts5 in zip(boxes, points, five, strict=True):
      np.testing.assert_array_equal(box, common.tight_box(pts))
      np.testing.assert_allclose(pts5, lm.five_from_68(pts), atol=1e-5)


def test_parallel_rendering_matches_serial():
  tasks = [(False, (64, 64), (68, 1, i)) for i in range(4)]
  serial = list(synthetic._rendered(tasks, workers=1))
  parallel = list(synthetic._rendered(tasks, workers=2))
  for a, b in zip(serial, parallel, strict=True):
    assert a['image'] == b['image']
    np.testing.assert_array_equal(a['landmarks'], b['landmarks'])
