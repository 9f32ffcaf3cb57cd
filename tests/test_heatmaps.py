"""Ground-truth disc maps and the Ave{M, n} location estimate (BB-FCN §III-C, §III-E)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import heatmaps


def _brute_disc(x, y, radius, h, w):
  ys, xs = np.mgrid[0:h, 0:w]
  return ((xs - x) ** 2 + (ys - y) ** 2 <= radius**2).astype(np.float32)


def test_disc_is_exactly_the_pixels_within_r():
  # R = 0.1 × 32 = 3.2 px around (10, 12); one sub-pixel point as a second landmark.
  points = jnp.array([[[10.0, 12.0], [20.3, 7.6]]])
  visible = jnp.array([[True, True]])
  fn = jax.jit(heatmaps.disc_maps, static_argnums=(2, 3))
  maps = np.asarray(fn(points, visible, (24, 32), 0.1))
  assert maps.shape == (1, 24, 32, 2) and maps.dtype == np.float32
  np.testing.assert_array_equal(maps[0, ..., 0], _brute_disc(10, 12, 3.2, 24, 32))
  np.testing.assert_array_equal(maps[0, ..., 1], _brute_disc(20.3, 7.6, 3.2, 24, 32))
  # |{(i, j): i² + j² ≤ 10.24}| = 37 lattice points, centred on the landmark.
  assert maps[0, ..., 0].sum() == 37
  ys, xs = np.nonzero(maps[0, ..., 0])
  assert (xs.mean(), ys.mean()) == (10.0, 12.0)


def test_backbone_radius_on_32px_and_integer_radius_boundary():
  points = jnp.array([[[16.0, 16.0]]])
  visible = jnp.array([[True]])
  # Rc = 1.6 px: the 3 × 3 block.
  maps = heatmaps.disc_maps(points, visible, (32, 32), heatmaps.BACKBONE_RADIUS)
  assert maps.sum() == 9 and maps[0, 15:18, 15:18, 0].sum() == 9
  # 0.05 × 40 = 2 px: the paper's 13-pixel disc (boundary pixels at distance exactly 2 kept).
  maps = heatmaps.disc_maps(points, visible, (40, 40), heatmaps.BACKBONE_RADIUS)
  assert maps.sum() == 13
  # Branch radius from the 64-px reference image: 64 × 3% = 1.92 px on a 24-px patch.
  maps = heatmaps.disc_maps(
    jnp.array([[[12.0, 12.0]]]), visible, (24, 24), heatmaps.BRANCH_RADIUS, ref_width=64
  )
  assert maps.sum() == 9


def test_invisible_and_far_points_give_empty_maps():
  points = jnp.array([[[5.0, 5.0], [-20.0, 5.0], [5.0, 100.0], [jnp.nan, jnp.nan]]])
  visible = jnp.array([[False, True, True, False]])
  maps = heatmaps.disc_maps(points, visible, (16, 16), 0.1)
  np.testing.assert_array_equal(maps.sum(axis=(1, 2)), [[0, 0, 0, 0]])


def test_sub_pixel_radius_marks_the_nearest_pixel():
  # Branch radius on its own 24-px patch: 0.72 px; and a tiny 0.2 px radius.
  rng = np.random.default_rng(0)
  pts = rng.uniform(-0.49, 23.49, size=(1, 64, 2)).astype(np.float32)
  pts[0, :4] = [[0.5, 0.5], [3.5, 7.0], [-0.4, 23.4], [11.0, 11.0]]  # corners, ties, edges
  visible = jnp.ones((1, 64), bool)
  for frac in (heatmaps.BRANCH_RADIUS, 0.2 / 24):
    maps = np.asarray(heatmaps.disc_maps(jnp.asarray(pts), visible, (24, 24), frac))
    nx, ny = np.floor(pts[0, :, 0] + 0.5).astype(int), np.floor(pts[0, :, 1] + 0.5).astype(int)
    assert (maps[0, ny, nx, np.arange(64)] == 1).all()
    assert (maps.sum(axis=(1, 2)) >= 1).all()
  # At R = 0.2 only the nearest pixel is marked; a half-way point rounds up.
  assert (maps.sum(axis=(1, 2)) == 1).all()
  assert maps[0, 1, 1, 0] == 1 and maps[0, 7, 4, 1] == 1


def test_top_mean_recovers_sub_pixel_landmark_from_its_disc():
  rng = np.random.default_rng(1)
  for _ in range(20):
    point = rng.uniform(6, 26, size=2).astype(np.float32)
    maps = heatmaps.disc_maps(jnp.asarray(point)[None, None], jnp.ones((1, 1), bool), (32, 32), 0.1)
    n = int(maps.sum())  # average exactly the disc (ties would otherwise pull to the top-left)
    loc, score = jax.jit(heatmaps.top_mean, static_argnums=1)(maps, n)
    assert np.abs(np.asarray(loc[0, 0]) - point).max() < 0.5
    assert float(score[0, 0]) == 1.0
    # A smooth response (cone of radius 4) with the paper's n = 13.
    ys, xs = np.mgrid[0:32, 0:32]
    cone = np.maximum(0, 4 - np.hypot(xs - point[0], ys - point[1]))
    loc = heatmaps.top_mean_location(jnp.asarray(cone)[None, ..., None])
    assert np.abs(np.asarray(loc[0, 0]) - point).max() < 0.5


def test_top_mean_exact_on_hand_made_maps_and_ties():
  maps = np.zeros((2, 4, 5, 2), np.float32)
  maps[0, 1, 2, 0], maps[0, 3, 4, 0], maps[0, 0, 0, 0] = 5.0, 4.0, -1.0  # top 2: (2,1), (4,3)
  maps[0, ..., 1] = -1.0
  maps[0, 2, 1, 1] = 2.0  # top 2: (1,2) then the first tied -1 in row-major order, (0,0)
  maps[1, 0, 3, 0], maps[1, 2, 0, 0] = 1.0, 3.0
  maps[1, ..., 1] = np.arange(20).reshape(4, 5)  # top 2: flat 19, 18 → (4,3), (3,3)
  fn = jax.jit(functools.partial(heatmaps.top_mean, n=2))
  loc, score = fn(jnp.asarray(maps))
  np.testing.assert_allclose(loc[0], [[3.0, 2.0], [0.5, 1.0]])
  np.testing.assert_allclose(loc[1], [[1.5, 1.0], [3.5, 3.0]])
  np.testing.assert_allclose(score, [[4.5, 0.5], [2.0, 18.5]])


def test_disc_maps_shape_errors():
  with pytest.raises(ValueError, match=r'must be \[B, K, 2\]'):
    heatmaps.disc_maps(jnp.zeros((1, 3, 2)), jnp.ones((1, 2), bool), (8, 8), 0.1)
