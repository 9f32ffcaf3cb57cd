"""BB-FCN constrained inference: patch geometry and the coarse -> fine -> crop mapping."""

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.bbfcn import inference as bi
from lmjax.models.bbfcn import BBFCN


def test_patch_origins_centre_and_clip():
  centres = jnp.array([[[30.2, 10.7], [1.0, 63.0]]])
  origins = bi.patch_origins(centres, 64)
  np.testing.assert_array_equal(origins, [[[18, 0], [0, 40]]])  # 30 - 12; clipped to [0, 40]


def test_extract_patches_takes_map_k_at_origin_k():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(2, 64, 64, 3)), jnp.float32)
  maps = jnp.asarray(rng.normal(size=(2, 64, 64, 5)), jnp.float32)
  origins = jnp.asarray(rng.integers(0, 41, (2, 5, 2)), jnp.int32)
  patches = jax.jit(bi.extract_patches)(images, maps, origins)
  assert patches.shape == (2, 5, 24, 24, 4)
  b, k = 1, 3
  x0, y0 = np.asarray(origins[b, k])
  np.testing.assert_array_equal(patches[b, k, ..., :3], images[b, y0 : y0 + 24, x0 : x0 + 24])
  np.testing.assert_array_equal(patches[b, k, ..., 3], maps[b, y0 : y0 + 24, x0 : x0 + 24, k])


def test_refinement_maps_back_to_crop_pixels():
  # A "backbone" that draws discs at the true points and a "branch" that returns its map
  # channel: the refined points must land on the true points (no shift from the two
  # resizes, the patch corner or the 24-pixel frame).
  truth = jnp.array([[[8.0, 9.0], [22.0, 9.0], [15.0, 16.0], [10.0, 24.0], [21.0, 23.0]]])

  def coarse_fn(crops):  # cones peaking at the true points (no ties for Ave{M, 13})
    ys, xs = jnp.mgrid[:32, :32]
    d = jnp.hypot(xs[..., None] - truth[0, :, 0], ys[..., None] - truth[0, :, 1])
    return jnp.maximum(0.0, 1.0 - d / 4.0)[None]  # [1, 32, 32, 5]

  fine_fn = lambda patches: patches[..., 3]
  images = jnp.zeros((1, 64, 64, 3))  # the face crop at the branch resolution R = 64
  out = jax.jit(lambda c: bi.constrained_predict(coarse_fn, fine_fn, c, 32))(images)
  truth_big = bi.rescale_points(truth, 2.0)  # R pixels
  np.testing.assert_allclose(out['coarse'], truth_big, atol=1e-5)
  np.testing.assert_allclose(out['points'], truth_big, atol=0.2)  # measured 0.12 (0.058 in S px)
  assert out['points'].shape == (1, 5, 2) and out['score'].shape == (1, 5)
  assert out['fine_maps'].shape == (1, 5, 24, 24) and out['maps'].shape == (1, 32, 32, 5)
  alone = bi.constrained_predict(coarse_fn, None, images, 32)
  np.testing.assert_array_equal(alone['points'], alone['coarse'])


def test_with_the_bbfcn_model_shapes_and_jit():
  model = BBFCN(num_points=5)
  crops = jnp.zeros((3, 64, 64, 3))
  variables = model.init(jax.random.key(0), crops[:, :32, :32], jnp.zeros((3, 5, 24, 24, 4)))

  @jax.jit
  def predict(v, c):
    coarse_fn = lambda x: model.apply(v, x, method=BBFCN.coarse)
    fine_fn = lambda p: model.apply(v, p, method=BBFCN.fine)
    return bi.constrained_predict(coarse_fn, fine_fn, c, 32)

  out = predict(variables, crops)
  assert out['points'].shape == (3, 5, 2) and np.isfinite(np.asarray(out['points'])).all()
  assert (np.asarray(out['points']) > -1).all() and (np.asarray(out['points']) < 64).all()
