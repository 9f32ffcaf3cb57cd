"""Training losses.

MCL (Shao et al., eq. 4): per sample
    E = Σ_j u_j [(x_j − x̂_j)² + (y_j − ŷ_j)²] / (2 d²)
with d that sample's ground-truth inter-ocular (eye-centre) distance, invisible points
masked out, averaged over the (unpadded) batch. Its gradient w.r.t. a predicted coordinate
is u_j (ŷ_k − y_k) / d² per sample (eq. 10), divided by the batch size for the mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mcl_loss(
  pred: jax.Array,
  target: jax.Array,
  weights: jax.Array,
  inter_ocular: jax.Array,
  visible: jax.Array | None = None,
  mask: jax.Array | None = None,
) -> jax.Array:
  """Weighted, inter-ocular-normalised squared landmark error (MCL eq. 4), batch mean.

  Args:
    pred: [B, K, 2] predicted coordinates.
    target: [B, K, 2] ground-truth coordinates (same frame as `pred`).
    weights: [K] per-landmark weights u_j (all ones for the basic model).
    inter_ocular: [B] per-sample normalising distance d (> 0).
    visible: optional bool [B, K]; invisible points contribute nothing.
    mask: optional bool [B]; padded examples contribute nothing to the mean.

  Returns:
    Scalar loss.
  """
  if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f'pred {pred.shape} and target {target.shape} must both be [B, K, 2]')
  if weights.shape != pred.shape[1:2] or inter_ocular.shape != pred.shape[:1]:
    raise ValueError(
      f'weights {weights.shape} must be [K={pred.shape[1]}] and inter_ocular '
      f'{inter_ocular.shape} must be [B={pred.shape[0]}]'
    )
  sq = jnp.sum((pred - target) ** 2, axis=-1)  # [B, K]
  if visible is not None:
    sq = jnp.where(visible, sq, 0.0)
  per_sample = jnp.sum(weights * sq, axis=-1) / (2.0 * inter_ocular**2)  # [B]
  if mask is None:
    return jnp.mean(per_sample)
  mask = mask.astype(per_sample.dtype)
  return jnp.sum(per_sample * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def landmark_weights(errors: jax.Array) -> jax.Array:
  """Weighting fine-tuning weights (MCL eq. 5): u_j = n ε_j / Σ_k ε_k, from [n] errors."""
  errors = jnp.asarray(errors, jnp.float32)
  return errors.shape[0] * errors / jnp.sum(errors)


def multi_center_weights(errors: jax.Array, cluster: jax.Array, alpha: float) -> jax.Array:
  """Multi-center fine-tuning weights of one cluster (MCL eqs. 8-9).

  Args:
    errors: [n] per-landmark validation errors ε^w of the weighting model.
    cluster: bool [n], True for the landmarks of the emphasised cluster P_i.
    alpha: u_P / u_Q (125 in the paper).

  Returns:
    [n] weights; they sum to n, the cluster's weights sum to u_P |P_i| and the others to
    u_Q (n − |P_i|), each spread in proportion to ε^w within its group.
  """
  errors = jnp.asarray(errors, jnp.float32)
  n = errors.shape[0]
  size_p = jnp.sum(cluster)
  u_p = alpha * n / ((alpha - 1) * size_p + n)
  u_q = n / ((alpha - 1) * size_p + n)
  sum_p = jnp.sum(jnp.where(cluster, errors, 0.0))
  sum_q = jnp.sum(jnp.where(cluster, 0.0, errors))
  in_p = u_p * size_p * errors / sum_p
  in_q = u_q * (n - size_p) * errors / jnp.where(sum_q > 0, sum_q, 1.0)
  return jnp.where(cluster, in_p, in_q)
