"""MCL network: shapes, parameter count of the released model, names used by freezing."""

import pathlib
import re
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.models.mcl import MCL, fold_batch_norm
from lmjax.train import surgery

# The freezing regexes of the MCL experiments (configs/mcl.py) must name these layers.
MCL_CONFIG = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'mcl.py'))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_mcl68_shapes_and_parameter_count():
  model = MCL(68, width=1024)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1))))
  # SPEC: ~1.79 M parameters for D = 1024, one head.
  assert 1.75e6 < _count(variables['params']) < 1.82e6
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((3, 50, 50, 1))), variables)
  assert out.shape == (3, 1, 68, 2)
  multi = MCL(68, width=1024, num_heads=7)
  out = jax.eval_shape(
    lambda: multi.init_with_output(jax.random.key(0), jnp.zeros((2, 50, 50, 1)))[0]
  )
  assert out.shape == (2, 7, 68, 2)


def test_first_six_convs_regex_and_head_names():
  model = MCL(5, width=16, num_heads=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))
  frozen = surgery.matching(variables['params'], MCL_CONFIG['FIRST_SIX_CONVS'])
  layers = sorted({n.split('/')[0] for n in frozen})
  assert layers == sorted([f'{p}{i}' for p in ('conv', 'bn') for i in (11, 12, 21, 22, 31, 32)])
  names = surgery.flatten(variables['params'])
  assert {n for n in names if n.startswith('heads/')} == {
    f'heads/{i}/{k}' for i in range(4) for k in ('kernel', 'bias')
  }
  pattern = MCL_CONFIG['ALL_BUT_HEAD'].format(head=2)
  trainable = [n for n in names if not re.search(pattern, n)]
  assert trainable == ['heads/2/bias', 'heads/2/kernel'] or sorted(trainable) == [
    'heads/2/bias',
    'heads/2/kernel',
  ]


def test_pre_bm_variant_and_bad_variant():
  model = MCL(5, width=512, variant='pre_bm')
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1))))
  assert variables['params']['fc']['kernel'].shape == (4 * 4 * 128, 512)
  with pytest.raises(ValueError, match='unknown MCL variant'):
    MCL(5, variant='fc').init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))


def test_init_is_normal_001_with_zero_bias():
  model = MCL(68, width=1024)
  params = model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))['params']
  kernel = np.asarray(params['conv43']['kernel'])
  assert abs(kernel.std() - 0.01) < 5e-4 and abs(kernel.mean()) < 5e-4
  assert not np.any(params['conv43']['bias']) and not np.any(params['heads']['0']['bias'])


@pytest.mark.parametrize('variant', ['gap', 'pre_bm'])
def test_fold_batch_norm_matches_eval_mode(variant):
  model = MCL(5, width=32, num_heads=2, variant=variant)
  x = jax.random.uniform(jax.random.key(1), (4, 50, 50, 1), minval=-1, maxval=1)
  variables = model.init(jax.random.key(0), x)
  # Non-trivial BN: random scale/bias and running statistics.
  keys = iter(jax.random.split(jax.random.key(2), 1000))
  perturb = lambda t, lo: jax.tree_util.tree_map(
    lambda a: jax.random.uniform(next(keys), a.shape, minval=lo, maxval=2.0), t
  )
  params = dict(variables['params'])
  for name in params:
    if name.startswith('bn'):
      params[name] = perturb(params[name], 0.5)
  variables = {'params': params, 'batch_stats': perturb(variables['batch_stats'], 0.1)}
  expected = model.apply(variables, x, train=False)
  folded = fold_batch_norm(variables)
  assert not any(k.startswith('bn') for k in folded['params'])
  assert 'batch_stats' not in folded
  lean = MCL(5, width=32, num_heads=2, variant=variant, batch_norm=False)
  np.testing.assert_allclose(lean.apply(folded, x), expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(
    folded['params']['heads']['1']['kernel'], params['heads']['1']['kernel']
  )


def test_fold_batch_norm_rejects_missing_statistics():
  model = MCL(5, width=16)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))
  stats = {k: v for k, v in variables['batch_stats'].items() if k != 'bn22'}
  with pytest.raises(ValueError, match='conv22 has no BatchNorm bn22'):
    fold_batch_norm({'params': variables['params'], 'batch_stats': stats})
