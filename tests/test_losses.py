"""MCL loss (eq. 4), its gradient (eq. 10) and the landmark weights (eqs. 5, 8, 9)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import losses


def test_mcl_loss_hand_computed():
  # Two samples, three points.
  target = jnp.zeros((2, 3, 2))
  pred = jnp.array([[[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
  weights = jnp.array([1.0, 2.0, 0.5])
  d = jnp.array([5.0, 2.0])
  # sample 0: (1*25 + 2*0 + 0.5*1) / (2*25) = 25.5 / 50 = 0.51
  # sample 1: (1*4) / (2*4) = 0.5
  loss = jax.jit(losses.mcl_loss)(pred, target, weights, d)
  assert float(loss) == pytest.approx((0.51 + 0.5) / 2)
  # Masking point 0 of sample 0 leaves 0.5/50 = 0.01 there.
  visible = jnp.array([[False, True, True], [True, True, True]])
  assert float(losses.mcl_loss(pred, target, weights, d, visible)) == pytest.approx(0.255)
  # A padded (masked-out) sample does not count in the mean.
  mask = jnp.array([True, False])
  assert float(losses.mcl_loss(pred, target, weights, d, mask=mask)) == pytest.approx(0.51)


def test_mcl_loss_gradient_is_eq_10():
  rng = np.random.default_rng(0)
  pred = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
  weights = jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32)
  d = jnp.asarray(rng.uniform(1, 3, 4), jnp.float32)
  grad = jax.grad(losses.mcl_loss)(pred, target, weights, d)
  # dE/dŷ_k = u_j (ŷ_k - y_k) / d², averaged over the batch of 4.
  expected = weights[None, :, None] * (pred - target) / d[:, None, None] ** 2 / 4
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_mcl_loss_shape_errors():
  with pytest.raises(ValueError, match=r'must both be \[B, K, 2\]'):
    losses.mcl_loss(jnp.zeros((2, 3, 2)), jnp.zeros((2, 4, 2)), jnp.ones(3), jnp.ones(2))
  with pytest.raises(ValueError, match=r'weights \(4,\) must be \[K=3\]'):
    losses.mcl_loss(jnp.zeros((2, 3, 2)), jnp.zeros((2, 3, 2)), jnp.ones(4), jnp.ones(2))


def test_landmark_weights_eq5():
  u = losses.landmark_weights(jnp.array([1.0, 2.0, 3.0, 2.0]))
  np.testing.assert_allclose(u, [0.5, 1.0, 1.5, 1.0])  # n ε_j / Σ ε = 4 ε_j / 8


def test_multi_center_weights_eqs_8_9():
  errors = jnp.array([1.0, 3.0, 2.0, 2.0, 2.0])
  cluster = jnp.array([True, True, False, False, False])
  alpha, n, size_p = 125.0, 5, 2
  u = np.asarray(losses.multi_center_weights(errors, cluster, alpha))
  u_p = alpha * n / ((alpha - 1) * size_p + n)  # 625 / 253
  u_q = n / ((alpha - 1) * size_p + n)  # 5 / 253
  np.testing.assert_allclose(u[:2], [u_p * 2 * 1 / 4, u_p * 2 * 3 / 4], rtol=1e-6)
  np.testing.assert_allclose(u[2:], [u_q * 3 * 2 / 6] * 3, rtol=1e-6)
  assert u.sum() == pytest.approx(n)  # eq. 7
  assert u[:2].sum() / 2 == pytest.approx(alpha * u[2:].sum() / 3)  # eq. 6 on group means
