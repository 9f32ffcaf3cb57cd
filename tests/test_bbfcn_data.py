"""BB-FCN training batches: positive windows and negative re-crops under jit."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmjax.bbfcn import data as bbfcn_data
from lmjax.core import geometry, image_ops, landmarks
from lmjax.data import windows as bbfcn_sampling


def _config(size=64):
  c = ml_collections.ConfigDict()
  c.model = dict(refine_size=size)
  c.input = dict(crop_scale=1.1)
  c.aug = dict(
    window_max_scale=1.3,
    window_max_shift=0.15,
    rotation_deg=0.0,
    flip_prob=0.5,
    brightness=0.0,
    contrast_min=1.0,
    contrast_max=1.0,
  )
  return c


def _regions(n=6, size=128):
  """Flat grey regions with the face box in the middle third and 5 points inside it."""
  regions = np.full((n, size, size, 3), 100, np.uint8)
  bbox = np.tile(np.float32([[40, 40, 88, 88]]), (n, 1))
  points = np.tile(np.float32([[50, 55], [78, 55], [64, 66], [54, 78], [74, 78]]), (n, 1, 1))
  return regions, points, bbox


def test_positive_batch_points_follow_the_window_and_flip():
  config = _config()
  params = bbfcn_data.positive_params(config)
  schema = landmarks.get_schema(5)
  regions, points, bbox = _regions()
  visible = np.ones((6, 5), bool)
  visible[:, 0] = False  # left eye hidden: must move to index 1 when flipped
  fn = jax.jit(
    lambda key: bbfcn_data.positive_batch(
      key, regions, points, bbox, visible, params, tuple(schema.flip_perm)
    )
  )
  images, out, vis = fn(jax.random.key(0))
  assert images.shape == (6, 64, 64, 3) and out.shape == (6, 5, 2)
  np.testing.assert_allclose(images, 100 / 128 - 1, atol=1e-5)  # a flat region stays flat
  # Every positive window has IoU > 0.5 with the face box: the box maps to a square that
  # covers more than half of the 64-pixel crop's area and vice versa.
  left_eye_x = np.where(vis[:, 0], out[:, 0, 0], out[:, 1, 0])  # the point that was visible
  flipped = ~np.asarray(vis[:, 1])
  assert flipped.any() and (~flipped).any()
  # Image-left/right swap on flip: the former right eye (now index 0) is left of index 1.
  assert (np.asarray(out[:, 0, 0]) < np.asarray(out[:, 1, 0])).all()
  assert np.isfinite(left_eye_x).all()


def test_positive_windows_meet_the_iou_rule_in_batches():
  config = _config()
  params = bbfcn_data.positive_params(config)
  boxes = jnp.asarray(np.tile([[40.0, 30.0, 90.0, 95.0]], (512, 1)))
  windows = jax.jit(
    lambda k: bbfcn_sampling.positive_windows(
      k, boxes, max_scale=params.max_scale, max_shift=params.max_shift
    )
  )(jax.random.key(3))
  assert (np.asarray(geometry.iou(windows, boxes)) > 0.5).all()


def test_negative_batch_shapes_values_and_determinism():
  config = _config()
  params = bbfcn_data.positive_params(config)
  negatives = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
  fn = jax.jit(lambda k, idx: bbfcn_data.negative_batch(k, negatives, idx, params))
  idx = jnp.array([0, 3, 9, 3])
  a = fn(jax.random.key(1), idx)
  b = fn(jax.random.key(1), idx)
  assert a.shape == (4, 64, 64, 3)
  np.testing.assert_array_equal(a, b)
  assert float(a.min()) >= -1.0 and float(a.max()) <= 255 / 128 - 1 + 1e-6
  assert not np.array_equal(a[1], a[3])  # same source row, different random window


def test_crop_to_image_inverts_the_test_crop():
  from lmjax.data import caches

  image_points = np.float32([[[30.0, 40.0], [70.0, 42.0]]])
  image_box = np.float32([[20.0, 20.0, 90.0, 100.0]])
  region = image_ops.extract_region(
    np.zeros((120, 120, 3), np.uint8), image_box[0], image_points[0], 128, 2.2
  )
  cache = caches.RegionCache(
    regions=region['region'][None, None],
    landmarks=region['landmarks'][None],
    visible=np.ones((1, 2), bool),
    bbox=region['bbox'][None],
    region_to_image=geometry.invert_affine(region['affine'])[None].astype(np.float32),
    image_landmarks=image_points,
    image_bbox=image_box,
    image_ids=['a'],
  )
  A = geometry.crop_affine(cache.bbox.astype(np.float64), 64, 1.1)
  crop_points = geometry.apply_affine(cache.landmarks.astype(np.float64), A)
  back = cache.crop_to_image(crop_points, 64, 1.1)
  np.testing.assert_allclose(back, image_points, atol=1e-3)
