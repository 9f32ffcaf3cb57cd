"""BB-FCN models: shapes, full convolutionality, branch independence, init, regression baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.models import bbfcn

KEY = jax.random.key(0)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _randomize(tree, scale: float, seed: int):
  """A tree shaped like `tree` (arrays or ShapeDtypeStructs) of N(0, scale²) float32 draws.

  Drawn with numpy, so no per-shape XLA compiles; scale 0.2 gives outputs of order 1.
  """
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape) * scale, 'f4'), tree)


def _branch_params(k: int, size: int = 8, batch: int = 2, seed: int = 1):
  """Branches(k), params with O(1) outputs (no real init), and [B, k, size, size, 4] patches."""
  model = bbfcn.Branches(k)
  patches = _randomize(jax.ShapeDtypeStruct((batch, k, size, size, 4), jnp.float32), 1.0, seed)
  params = jax.eval_shape(model.init, KEY, patches)['params']
  return model, _randomize(params, 0.2, seed + 1), patches


@pytest.mark.parametrize('k, size', [(5, 32), (68, 64)])
def test_bbfcn_shapes(k, size):
  model = bbfcn.BBFCN(k)
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  patches = jax.ShapeDtypeStruct((2, k, 24, 24, 4), jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x, patches)
  assert set(variables['params']) == {'backbone', 'branches'}
  coarse, fine = jax.eval_shape(model.apply, variables, x, patches)
  assert coarse.shape == (2, size, size, k) and coarse.dtype == jnp.float32
  assert fine.shape == (2, k, 24, 24) and fine.dtype == jnp.float32
  coarse = jax.eval_shape(lambda v, x: model.apply(v, x, method='coarse'), variables, x)
  fine = jax.eval_shape(lambda v, p: model.apply(v, p, method='fine'), variables, patches)
  assert coarse.shape == (2, size, size, k) and fine.shape == (2, k, 24, 24)


def test_backbone_layers_and_fully_convolutional():
  model = bbfcn.Backbone(5)
  x = jax.ShapeDtypeStruct((1, 40, 56, 3), jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  shapes = _shapes(variables['params'])
  assert shapes['conv1/kernel'] == (5, 5, 3, 20)
  assert shapes['conv6/kernel'] == (5, 5, 40, 40)
  assert shapes['deconv1/kernel'] == (2, 2, 40, 30)
  assert shapes['conv7/kernel'] == (5, 5, 30, 30)
  assert shapes['deconv2/kernel'] == (2, 2, 30, 15)
  assert shapes['maps/kernel'] == (1, 1, 15, 5)
  assert len(shapes) == 20  # 8 convs + 2 deconvs, each kernel + bias
  assert jax.eval_shape(model.apply, variables, x).shape == (1, 40, 56, 5)
  with pytest.raises(ValueError, match='divisible by 4'):
    jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 30, 32, 3), jnp.float32))


def test_map_features_widens_the_layer_the_maps_read():
  model = bbfcn.Backbone(68, map_features=96)
  variables = jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  shapes = _shapes(variables['params'])
  assert shapes['deconv2/kernel'] == (2, 2, 30, 96)
  assert shapes['maps/kernel'] == (1, 1, 96, 68)
  full = bbfcn.BBFCN(68, map_features=96)
  patches = jax.ShapeDtypeStruct((1, 68, 24, 24, 4), jnp.float32)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  params = jax.eval_shape(full.init, KEY, x, patches)['params']
  assert params['backbone']['maps']['kernel'].shape == (1, 1, 96, 68)


def test_branch_parameters_are_stacked_on_k():
  k = 7
  patches = jax.ShapeDtypeStruct((2, k, 24, 24, 4), jnp.float32)
  shapes = _shapes(jax.eval_shape(bbfcn.Branches(k).init, KEY, patches)['params'])
  assert shapes == {
    'conv1/kernel': (k, 5, 5, 4, 5),
    'conv1/bias': (k, 5),
    'conv2/kernel': (k, 5, 5, 5, 5),
    'conv2/bias': (k, 5),
    'conv3/kernel': (k, 5, 5, 5, 5),
    'conv3/bias': (k, 5),
    'conv4/kernel': (k, 5, 5, 5, 5),
    'conv4/bias': (k, 5),
    'map/kernel': (k, 1, 1, 5, 1),
    'map/bias': (k, 1),
  }
  with pytest.raises(ValueError, match='branch inputs'):
    jax.eval_shape(bbfcn.Branches(k).init, KEY, jnp.zeros((1, k + 1, 8, 8, 4)))


def test_branches_equal_single_branch_loop():
  model, params, patches = _branch_params(4, size=12)
  out = jax.jit(model.apply)({'params': params}, patches)
  assert out.shape == (2, 4, 12, 12)
  single = jax.jit(bbfcn.Branch().apply)
  for k in range(4):
    params_k = jax.tree.map(lambda p, k=k: p[k], params)
    ref = single({'params': params_k}, patches[:, k])  # [B, P, P]
    np.testing.assert_allclose(out[:, k], ref, rtol=1e-4, atol=1e-4)
  assert float(jnp.abs(out).mean()) > 0.1  # the comparison is not between near-zero maps


def test_branches_are_independent():
  k, j = 3, 1
  model, params, patches = _branch_params(k)
  apply = jax.jit(model.apply)
  out = apply({'params': params}, patches)
  perturbed = jax.tree.map(lambda p: p.at[j].add(0.5), params)
  out_j = apply({'params': perturbed}, patches)
  for i in range(k):
    if i == j:
      assert not np.allclose(out[:, i], out_j[:, i])
    else:
      np.testing.assert_array_equal(out[:, i], out_j[:, i])
  # Branch i reads only its own input patch, too.
  out_p = apply({'params': params}, patches.at[:, j].add(1.0))  # [B, K, P, P]
  np.testing.assert_array_equal(np.delete(out, j, axis=1), np.delete(out_p, j, axis=1))


def test_init_normal_001_and_zero_bias():
  model = bbfcn.BBFCN(68)
  # Tiny inputs (parameter shapes do not depend on them) and an `rbg` key: XLA:CPU compiles
  # threefry draws of 15 kernel shapes in ~10 s, RngBitGenerator ones in ~2 s.
  key = jax.random.key(0, impl='rbg')
  x, patches = jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 68, 1, 1, 4))
  params = jax.jit(model.init)(key, x, patches)['params']
  flat = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  kernels = [v for p, v in flat.items() if p[-1].key == 'kernel']
  biases = [v for p, v in flat.items() if p[-1].key == 'bias']
  assert len(kernels) == 15 and len(biases) == 15
  everything = np.concatenate([np.ravel(v) for v in kernels])
  assert abs(everything.std() - 0.01) < 3e-4 and abs(everything.mean()) < 3e-4
  for v in kernels:
    if v.size >= 1000:
      assert abs(np.std(v) - 0.01) < 1e-3
  assert all(not np.any(b) for b in biases)
  conv1 = params['branches']['conv1']['kernel']
  assert not np.allclose(conv1[0], conv1[1])  # every branch gets its own random init


def test_regression_fcn():
  k = 5
  model = bbfcn.RegressionFCN(k)
  x = _randomize(jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32), 1.0, seed=2)
  variables = jax.eval_shape(model.init, KEY, x)
  shapes = _shapes(variables['params'])
  assert shapes['conv1/kernel'] == (5, 5, 3, 20) and shapes['conv6/kernel'] == (5, 5, 40, 40)
  assert shapes['conv7/kernel'] == (2, 2, 40, 30)
  assert shapes['conv8/kernel'] == (4, 4, 30, 30)
  assert shapes['out/kernel'] == (1, 1, 30, 15)
  assert len(shapes) == 18  # nine convolutional layers
  both = jax.jit(lambda v, x: (model.apply(v, x), model.apply(v, x, method='dense')))
  # Zero parameters: every cell predicts its own centre (pixel centres on integers).
  out, (scores, points) = both(jax.tree.map(lambda v: jnp.zeros(v.shape), variables), x)
  assert out.shape == (2, k, 2)
  assert scores.shape == (2, 8, 8, k) and points.shape == (2, 8, 8, k, 2)
  np.testing.assert_allclose(points[0, 2, 5, 3], [4 * 5 + 1.5, 4 * 2 + 1.5])
  # Random parameters: __call__ reads each type's point off its best-scoring cell.
  out, (scores, points) = both(_randomize(variables, 0.2, seed=3), x)
  best = np.asarray(scores).reshape(2, 64, k).argmax(axis=1)  # [B, K]
  flat = np.asarray(points).reshape(2, 64, k, 2)
  np.testing.assert_allclose(out, [[flat[b, best[b, i], i] for i in range(k)] for b in range(2)])
  wide = jax.ShapeDtypeStruct((1, 40, 56, 3), jnp.float32)
  scores, points = jax.eval_shape(lambda v, x: model.apply(v, x, method='dense'), variables, wide)
  assert scores.shape == (1, 10, 14, k) and points.shape == (1, 10, 14, k, 2)


@pytest.mark.parametrize('k, group', [(3, 5), (5, 5), (7, 3)])
def test_block_diagonal_and_im2col_lowerings_agree(k, group):
  # Same parameters, two lowerings (one or several block-diagonal groups): outputs and
  # gradients must match.
  _, params, patches = _branch_params(k, size=12)
  im2col = bbfcn.Branches(k, group_size=0)
  block = bbfcn.Branches(k, group_size=group)
  a = im2col.apply({'params': params}, patches)
  b = block.apply({'params': params}, patches)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  loss = lambda m: lambda p: jnp.sum(m.apply({'params': p}, patches) ** 2)
  ga, gb = jax.grad(loss(im2col))(params), jax.grad(loss(block))(params)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-3), ga, gb)
