"""BB-FCN selective response-map loss and hard negative mining (§III-D)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import heatmaps, losses

H, W = 16, 16


def _target():
  """[3, H, W, 3] targets: discs of 9 and 37 px, empty maps, and a nearly all-positive map."""
  points = jnp.array([[[5.0, 5.0], [10.0, 8.0], [0.0, 0.0]]] * 3)
  visible = jnp.array([[True, True, False], [False, True, False], [True, False, False]])
  target = np.array(heatmaps.disc_maps(points, visible, (H, W), 0.1))  # R = 1.6 px: 9 pixels
  target[0, ..., 1] = _disc_37px(10.0, 8.0)
  target[2, ..., 0] = 1.0
  target[2, 0, :3, 0] = 0.0  # 253 positives, 3 negatives
  return jnp.asarray(target)


def _disc_37px(x, y):
  maps = heatmaps.disc_maps(jnp.array([[[x, y]]]), jnp.ones((1, 1), bool), (H, W), 0.2)
  return np.asarray(maps[0, ..., 0])  # R = 3.2 px: 37 pixels


def _counts(mask, target):
  pos = np.asarray(jnp.sum(mask * target, axis=(1, 2)))
  neg = np.asarray(jnp.sum(mask * (1 - target), axis=(1, 2)))
  return pos, neg


@pytest.mark.parametrize('hard', [False, True])
def test_mask_counts_exact_under_jit(hard):
  target = _target()
  pred = jax.random.normal(jax.random.key(1), target.shape)
  fn = jax.jit(functools.partial(losses.selective_mask, empty_neg_ratio=0.05, hard=hard))
  mask = fn(pred, target, jax.random.key(0))
  assert mask.shape == target.shape and mask.dtype == jnp.float32
  pos, neg = _counts(mask, target)
  n_pos = np.asarray(jnp.sum(target, axis=(1, 2)))
  np.testing.assert_array_equal(pos, n_pos)  # every positive selected
  empty = round(0.05 * H * W)  # 12.8 → 13
  expected = np.where(n_pos > 0, np.minimum(n_pos, H * W - n_pos), empty)
  np.testing.assert_array_equal(neg, expected)
  assert neg[0, 0] == 9 and neg[0, 1] == 37 and neg[0, 2] == 13 and neg[2, 0] == 3


def _selected(neg_per_pos, max_count, hard=False):
  """(positives, negatives) selected per (example, map), and the positives per map."""
  target = _target()
  pred = jax.random.normal(jax.random.key(1), target.shape)
  mask = losses.selective_mask(
    pred, target, jax.random.key(0), empty_neg_ratio=0.05, hard=hard, max_count=max_count,
    neg_per_pos=neg_per_pos,
  )  # fmt: skip
  return (*_counts(mask, target), np.asarray(jnp.sum(target, axis=(1, 2))))


@pytest.mark.parametrize('max_count', [None, 4 * losses.disc_pixel_bound(3.2)])
def test_neg_per_pos_selects_that_many_negatives_per_positive(max_count):
  pos, neg, n_pos = _selected(4, max_count)
  np.testing.assert_array_equal(pos, n_pos)
  expected = np.where(n_pos > 0, np.minimum(4 * n_pos, H * W - n_pos), round(0.05 * H * W))
  np.testing.assert_array_equal(neg, expected)
  assert neg[0, 0] == 36 and neg[0, 1] == 148 and neg[2, 0] == 3  # all 3 when fewer exist
  with pytest.raises(ValueError, match='neg_per_pos -1 must be a non-negative integer'):
    _selected(-1, None)


@pytest.mark.parametrize('max_count', [None, 41])
@pytest.mark.parametrize('hard', [False, True])
def test_neg_per_pos_zero_selects_every_pixel_of_maps_with_positives(max_count, hard):
  pos, neg, n_pos = _selected(0, max_count, hard)
  np.testing.assert_array_equal(pos, n_pos)
  # a dense squared error where a map has positives; the empty maps keep their small ratio
  np.testing.assert_array_equal(neg, np.where(n_pos > 0, H * W - n_pos, round(0.05 * H * W)))
  assert (n_pos == 0).any() and (n_pos > 0).any()


def test_empty_ratio_rounding_and_minimum_one():
  target = jnp.zeros((1, H, W, 1))
  for ratio, want in [(0.0, 0), (1e-4, 1), (0.01, 3), (1.0, H * W)]:
    mask = losses.selective_mask(
      target, target, jax.random.key(0), empty_neg_ratio=ratio, hard=False
    )
    assert float(mask.sum()) == want


def test_different_keys_give_different_negatives_same_counts():
  target = _target()
  fn = jax.jit(functools.partial(losses.selective_mask, empty_neg_ratio=0.05, hard=False))
  m0 = fn(target, target, jax.random.key(0))
  m1 = fn(target, target, jax.random.key(1))
  assert not np.array_equal(m0, m1)
  np.testing.assert_array_equal(_counts(m0, target)[1], _counts(m1, target)[1])


def test_hard_picks_the_highest_scoring_negatives():
  target = _target()
  # A known, tie-free ranking of every pixel of every map.
  pred = jax.random.permutation(jax.random.key(3), target.size).reshape(target.shape) / target.size
  fn = jax.jit(functools.partial(losses.selective_mask, empty_neg_ratio=0.05, hard=True))
  mask = np.asarray(fn(pred, target, jax.random.key(0)))
  pred, target = np.asarray(pred), np.asarray(target)
  for b in range(3):
    for k in range(3):
      neg_scores = pred[b, ..., k][target[b, ..., k] == 0]
      count = int(mask[b, ..., k][target[b, ..., k] == 0].sum())
      chosen = pred[b, ..., k][(target[b, ..., k] == 0) & (mask[b, ..., k] == 1)]
      np.testing.assert_array_equal(np.sort(chosen), np.sort(neg_scores)[::-1][:count][::-1])


def test_hard_ties_are_broken_randomly_with_exact_counts():
  target = _target()
  pred = jnp.zeros_like(target)  # e.g. dead ReLU outputs: every negative ties
  fn = functools.partial(losses.selective_mask, empty_neg_ratio=0.05, hard=True)
  m0, m1 = fn(pred, target, jax.random.key(0)), fn(pred, target, jax.random.key(1))
  assert not np.array_equal(m0, m1)
  np.testing.assert_array_equal(_counts(m0, target)[1], _counts(m1, target)[1])


def test_traced_hard_flag_switches_without_retrace():
  target = _target()
  pred = jax.random.normal(jax.random.key(1), target.shape)
  traces = []

  @jax.jit
  def fn(pred, target, key, hard):
    traces.append(1)
    return losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=hard)

  key = jax.random.key(0)
  soft = fn(pred, target, key, jnp.array(False))
  hard = fn(pred, target, key, jnp.array(True))
  assert len(traces) == 1
  np.testing.assert_array_equal(
    soft, losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=False)
  )
  np.testing.assert_array_equal(
    hard, losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=True)
  )
  assert not np.array_equal(soft, hard)


def test_loss_hand_computed():
  # One 2 × 2 map: one positive (pred 0.5), three negatives with preds 0.9, 0.1, -0.3.
  target = jnp.array([1.0, 0.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
  pred = jnp.array([0.5, 0.9, 0.1, -0.3]).reshape(1, 2, 2, 1)
  fn = jax.jit(functools.partial(losses.selective_loss, empty_neg_ratio=0.0))
  loss, aux = fn(pred, target, jax.random.key(0), hard=True)
  # Selected: the positive and the hardest negative: ((0.5 - 1)² + 0.9²) / (2 B), B = 1.
  assert float(loss) == pytest.approx((0.25 + 0.81) / 2)
  assert {k: float(v) for k, v in aux.items()} == {'num_pos': 1, 'num_neg': 1, 'num_selected': 2}


@pytest.mark.parametrize('hard', [False, True])
def test_gradient_does_not_flow_through_mask(hard):
  target = _target()
  pred = jax.random.normal(jax.random.key(1), target.shape)
  key = jax.random.key(0)
  loss_fn = lambda p: losses.selective_loss(p, target, key, empty_neg_ratio=0.05, hard=hard)[0]
  grad = jax.jit(jax.grad(loss_fn))(pred)
  mask = losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=hard)
  b = target.shape[0]  # d/dp of sum(mask (p - t)²) / (2 B)
  np.testing.assert_allclose(grad, (pred - target) * mask / b, rtol=1e-5, atol=1e-8)


def test_per_type_weights_scale_each_map():
  target = _target()
  pred = jax.random.normal(jax.random.key(1), target.shape)
  key = jax.random.key(0)
  k = target.shape[-1]
  weights = jnp.arange(1, k + 1, dtype=jnp.float32)
  mask = losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=False)
  per_map = jnp.sum(mask * (pred - target) ** 2, axis=(0, 1, 2))  # [K]
  loss, _ = losses.selective_loss(pred, target, key, empty_neg_ratio=0.05, weights=weights)
  want = float(jnp.sum(per_map * weights)) / (2 * target.shape[0])
  assert float(loss) == pytest.approx(want, rel=1e-5)


def test_shape_errors():
  with pytest.raises(ValueError, match=r'must both be \[B, H, W, K\]'):
    losses.selective_mask(
      jnp.zeros((1, 4, 4, 2)),
      jnp.zeros((1, 4, 4, 3)),
      jax.random.key(0),
      empty_neg_ratio=0.1,
      hard=False,
    )


@pytest.mark.parametrize('hard', [False, True])
def test_top_k_ranking_keeps_the_exact_counts(hard):
  target = _target()
  pred = jax.random.normal(jax.random.key(4), target.shape)
  key = jax.random.key(0)
  exact = losses.selective_mask(pred, target, key, empty_neg_ratio=0.05, hard=hard)
  fast = jax.jit(functools.partial(losses.selective_mask, empty_neg_ratio=0.05, max_count=40))(
    pred, target, key, hard=hard
  )
  np.testing.assert_array_equal(_counts(fast, target)[1], _counts(exact, target)[1])
  np.testing.assert_array_equal(fast * target, target)  # every positive selected
  if hard:  # the same highest-scoring negatives
    np.testing.assert_array_equal(fast, exact)


def test_disc_pixel_bound_covers_every_disc():
  for radius in (0.72, 1.6, 1.92, 3.2, 3.84):
    bound = losses.disc_pixel_bound(radius)
    points = jax.random.uniform(jax.random.key(0), (1, 200, 2)) * 10 + 10
    maps = heatmaps.disc_maps(points, jnp.ones((1, 200), bool), (32, 32), radius / 32)
    assert int(maps.sum(axis=(1, 2)).max()) <= bound
