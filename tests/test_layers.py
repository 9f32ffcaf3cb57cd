"""lmjax.models.layers: the max pool equals flax's reduce_window pool, its gradient too."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.models.layers import max_pool_2x2, max_pool_2x2_reshaped


@pytest.mark.parametrize('height,width', [(8, 8), (25, 25), (13, 6), (7, 9)])
def test_values_and_gradient_match_flax_same_pool(height, width):
  x = jax.random.normal(jax.random.key(0), (3, height, width, 4))
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
  np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
  # After a ReLU (as in every model): ties are zeros, whose ReLU gradient is zero either way.
  loss = lambda pool: lambda x: jnp.sum(pool(jax.nn.relu(x)) ** 2 * jnp.arange(4.0))
  np.testing.assert_allclose(
    jax.grad(loss(max_pool_2x2))(x), jax.grad(loss(reference))(x), rtol=1e-6
  )


def test_odd_sides_round_up_like_caffe():
  x = jnp.arange(2 * 5 * 3 * 1, dtype=jnp.float32).reshape(2, 5, 3, 1) - 100.0
  out = max_pool_2x2(x)
  assert out.shape == (2, 3, 2, 1)
  assert float(out[0, 2, 1, 0]) == float(x[0, 4, 2, 0])  # the lone corner cell is its own max


def test_bfloat16_and_jit_keep_the_dtype_and_values():
  x = jax.random.normal(jax.random.key(1), (2, 7, 6, 3)).astype(jnp.bfloat16)
  out = jax.jit(max_pool_2x2)(x)
  assert out.dtype == jnp.bfloat16 and out.shape == (2, 4, 3, 3)
  reference = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
  np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(reference, np.float32))
  grad = jax.grad(lambda x: jnp.sum(max_pool_2x2(jax.nn.relu(x)).astype(jnp.float32)))(x)
  assert grad.dtype == jnp.bfloat16 and grad.shape == x.shape


def test_the_reshaped_pool_for_converters_gives_the_same_values():
  x = jax.random.normal(jax.random.key(2), (2, 9, 8, 3))
  np.testing.assert_array_equal(max_pool_2x2_reshaped(x), max_pool_2x2(x))


def _select_and_scatter_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')


def _models():
  """(module that imports max_pool_2x2, model, input shape, apply) for every model family."""
  from lmjax.models import bbfcn, facenet, mcl

  def mcl_apply(model, variables, x):
    out, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
    return out

  plain = lambda model, variables, x: model.apply(variables, x)
  return {
    'mcl68': (mcl, mcl.MCL(num_points=68, width=1024), (8, 50, 50, 1), mcl_apply),
    'bbfcn_backbone': (bbfcn, bbfcn.Backbone(num_points=5), (4, 32, 32, 3), plain),
    'facenet': (facenet, facenet.FaceNet(), (8, 36, 36, 3), plain),
  }


@pytest.mark.parametrize('name', ['mcl68', 'bbfcn_backbone', 'facenet'])
def test_whole_model_gradients_under_jit_equal_select_and_scatter(name, monkeypatch):
  # The pool's gradient in context: XLA fuses it with the BatchNorm + ReLU it follows. A
  # backward that compared the input with the pooled maximum lost windows there (MCL68: the
  # gradients before the third pool off by 35-120 %), which the pool alone does not show.
  module, model, shape, apply = _models()[name]
  x = jax.random.uniform(jax.random.key(0), shape, minval=-1.0, maxval=1.0)
  variables = jax.jit(lambda k: model.init(k, x[:1]))(jax.random.key(1))
  target = jax.random.normal(jax.random.key(2), apply(model, variables, x).shape)

  def gradients():
    loss = lambda p: jnp.sum((apply(model, {**variables, 'params': p}, x) - target) ** 2)
    return jax.jit(jax.grad(loss))(variables['params'])

  ours = gradients()
  monkeypatch.setattr(module, 'max_pool_2x2', _select_and_scatter_pool)
  reference = gradients()
  for path, value in flax.traverse_util.flatten_dict(reference, sep='/').items():
    if path.endswith('bias') and path.startswith('conv') and name.startswith('mcl'):
      continue  # a bias before BatchNorm: its gradient is rounding noise around zero
    got = flax.traverse_util.flatten_dict(ours, sep='/')[path]
    scale = float(jnp.abs(value).max()) or 1.0
    assert float(jnp.abs(got - value).max()) <= 1e-4 * scale, path
