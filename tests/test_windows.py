"""Training window samplers: positives above IoU 0.5, negatives away from faces, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core.geometry import iou
from lmjax.data.windows import negative_windows, positive_windows


def test_positive_windows_have_iou_above_half_and_vary():
  rng = np.random.default_rng(0)
  centre = rng.uniform(50, 200, (2000, 2))
  size = rng.uniform(20, 120, (2000, 1)) * np.array([[1.0, 1.0]]) * rng.uniform(0.7, 1.3, (2000, 2))
  boxes = jnp.asarray(np.concatenate([centre - size / 2, centre + size / 2], 1), jnp.float32)
  sample = jax.jit(positive_windows)
  windows = sample(jax.random.key(0), boxes)
  w = np.asarray(windows)
  np.testing.assert_allclose(w[:, 2] - w[:, 0], w[:, 3] - w[:, 1], rtol=1e-5)  # square
  assert (np.asarray(iou(windows, boxes)) > 0.5).all()
  side_ratio = (w[:, 2] - w[:, 0]) / np.asarray(jnp.max(boxes[:, 2:] - boxes[:, :2], axis=1))
  assert side_ratio.min() < 0.9 and side_ratio.max() > 1.1  # jittered in scale
  np.testing.assert_array_equal(sample(jax.random.key(0), boxes), windows)  # stateless
  assert not np.array_equal(sample(jax.random.key(1), boxes), windows)


def test_negative_windows_avoid_faces():
  faces = jnp.array([[40.0, 30.0, 120.0, 110.0], [200.0, 50.0, 260.0, 110.0], [0, 0, 0, 0]])
  mask = jnp.array([True, True, False])
  fn = jax.jit(negative_windows, static_argnums=(1, 4), static_argnames=('min_side',))
  windows, valid = fn(jax.random.key(0), (240, 320), faces, mask, 64, min_side=24.0)
  assert windows.shape == (64, 4) and bool(valid.all())
  w = np.asarray(windows)
  assert (w[:, :2] >= 0).all() and (w[:, 2] <= 320).all() and (w[:, 3] <= 240).all()
  assert (np.asarray(iou(windows[:, None], faces[None, :2])) == 0).all()
  # A face covering the whole image leaves no valid negative.
  _, none = negative_windows(
    jax.random.key(0),
    (64, 64),
    jnp.array([[0.0, 0.0, 64.0, 64.0]]),
    jnp.array([True]),
    4,
    min_side=16.0,
  )
  assert not bool(none.any())
  with pytest.raises(ValueError, match='min_side'):
    negative_windows(jax.random.key(0), (64, 64), faces, mask, 4, min_side=100.0)
