"""The optimisers of every trainer (`lmjax.train.optim`): SGD and AdamW with weight decay on
kernels only, step and warm-up + cosine schedules, frozen leaves that never move."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmjax.train import optim, surgery


def test_frozen_leaves_are_bit_identical_after_training_steps():
  params = {
    'conv11': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones(3)},
    'heads': {'0': {'kernel': jnp.ones((4, 2)), 'bias': jnp.ones(2)}},
  }
  tx = optim.make_optimizer(
    params,
    learning_rate=0.1,
    decay_every=10,
    decay_factor=0.3,
    momentum=0.9,
    weight_decay=0.5,
    frozen=r'^conv11/',
  )
  state = tx.init(params)
  p = params
  for _ in range(5):
    grads = jax.tree_util.tree_map(jnp.ones_like, p)
    updates, state = tx.update(grads, state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_array_equal(p['conv11']['kernel'], params['conv11']['kernel'])
  np.testing.assert_array_equal(p['conv11']['bias'], params['conv11']['bias'])
  assert not np.allclose(p['heads']['0']['kernel'], 1.0)
  # Weight decay touches kernels only: with zero gradients a bias stays, a kernel shrinks.
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  tx2 = optim.make_optimizer(
    params, learning_rate=0.1, decay_every=10, decay_factor=0.3, momentum=0.0, weight_decay=0.5
  )
  updates, _ = tx2.update(zero, tx2.init(params), params)
  assert float(updates['heads']['0']['bias'][0]) == 0.0
  assert float(updates['heads']['0']['kernel'][0, 0]) == pytest.approx(-0.05)
  assert surgery.path_mask(params, optim.DECAY_PATTERN)['conv11'] == {'kernel': True, 'bias': False}


def test_adamw_cosine_decays_kernels_only_and_respects_freezing():
  params = {
    'conv11': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones(3)},
    'heads': {'0': {'kernel': jnp.ones((4, 2)), 'bias': jnp.ones(2)}},
  }
  kwargs = dict(decay_every=10, decay_factor=0.3, momentum=0.9, optimizer='adamw')
  tx = optim.make_optimizer(
    params,
    learning_rate=0.1,
    weight_decay=0.5,
    frozen=r'^conv11/',
    schedule='cosine',
    warmup_steps=2,
    num_steps=10,
    **kwargs,
  )
  state, p = tx.init(params), params
  for _ in range(3):
    updates, state = tx.update(jax.tree_util.tree_map(jnp.ones_like, p), state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_array_equal(p['conv11']['kernel'], params['conv11']['kernel'])
  assert float(p['heads']['0']['bias'][0]) < 1.0
  # Decoupled decay on kernels only: with zero gradients a bias stays, a kernel shrinks by lr·wd.
  tx2 = optim.make_optimizer(params, learning_rate=0.1, weight_decay=0.5, **kwargs)
  updates, _ = tx2.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx2.init(params), params)
  assert float(updates['heads']['0']['bias'][0]) == 0.0
  assert float(updates['heads']['0']['kernel'][0, 0]) == pytest.approx(-0.05)


def test_cosine_schedule_warms_up_then_decays_to_zero():
  schedule = optim.cosine_schedule(0.01, num_steps=100, warmup_steps=10)
  assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(0.005)
  assert float(schedule(10)) == pytest.approx(0.01)
  assert float(schedule(55)) == pytest.approx(0.005, rel=1e-3) and float(schedule(100)) == 0.0
  no_warmup = optim.cosine_schedule(0.01, num_steps=100, warmup_steps=0)
  assert float(no_warmup(0)) == pytest.approx(0.01) and float(no_warmup(100)) == 0.0
  args = dict(learning_rate=0.1, decay_every=10, decay_factor=0.3, momentum=0.9, weight_decay=0)
  with pytest.raises(ValueError, match=r'optim\.optimizer'):
    optim.make_optimizer({}, optimizer='adam', **args)
  with pytest.raises(ValueError, match=r'optim\.schedule'):
    optim.make_optimizer({}, schedule='linear', **args)
  with pytest.raises(ValueError, match='stage length'):
    optim.make_optimizer({}, schedule='cosine', **args)


def test_learning_rate_schedule_steps_by_factor():
  schedule = optim.learning_rate_schedule(0.02, 30, 0.3)
  assert float(schedule(29)) == pytest.approx(0.02)
  assert float(schedule(30)) == pytest.approx(0.006)
  assert float(schedule(65)) == pytest.approx(0.0018)
