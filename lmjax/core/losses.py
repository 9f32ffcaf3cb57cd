"""Training losses.

MCL (Shao et al., eq. 4): per sample
    E = Σ_j u_j [(x_j − x̂_j)² + (y_j − ŷ_j)²] / (2 d²)
with d that sample's ground-truth inter-ocular (eye-centre) distance, invisible points
masked out, averaged over the (unpadded) batch. Its gradient w.r.t. a predicted coordinate
is u_j (ŷ_k − y_k) / d² per sample (eq. 10), divided by the batch size for the mean.

BB-FCN (§III-D): squared error on response maps, restricted to the positive pixels plus as
many random (or, for hard negative mining, highest-scoring) negatives; see `selective_loss`.
"""

from __future__ import annotations

import math

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


def selective_mask(
  pred: jax.Array,
  target: jax.Array,
  key: jax.Array,
  *,
  empty_neg_ratio: float,
  hard: bool | jax.Array,
  max_count: int | None = None,
  neg_per_pos: int = 1,
) -> jax.Array:
  """BB-FCN's selective scheme (§III-D): which pixels of each map propagate errors.

  Per (example, map): every positive pixel, plus `neg_per_pos` × as many negatives as there are
  positives (the paper: 1; all negatives if there are fewer); `neg_per_pos=0` keeps every
  negative of a map with positives (a dense squared error, whose optimum at a pixel that is the
  landmark with probability q is q itself instead of the selective scheme's q / (q + r (1 - q)),
  r = positives / negatives; README "Why bbfcn68 did not localise"). A map with no positives
  (invisible landmark, background image) gets round-half-up(empty_neg_ratio × H × W)
  negatives, at least one if the ratio is > 0.
  Negatives are ranked, highest first, by uniform random keys, or with `hard` (hard negative
  mining) by `pred` with the random keys breaking ties; the first `count` ranks are kept. The
  ranks come from one fixed-shape sort per map, so every map can take a different count.

  Args:
    pred: [B, H, W, K] predicted maps (only ranks negatives when `hard`; no gradient).
    target: [B, H, W, K] binary ground-truth maps (positive where > 0).
    key: PRNG key for the random negatives and tie-breaking.
    empty_neg_ratio: static fraction of pixels to select in maps without positives.
    hard: Python bool or traced bool scalar. A traced flag switches hard negative mining on or off
      inside one compiled function, with no retrace (both rankings share one sort).
    neg_per_pos: static negatives per positive (the paper's 1); 0 selects all of them.
    max_count: optional static bound on the negatives per map. With it the ranking is a
      `top_k(max_count)` instead of a full sort (12× faster at B=40, 64×64, K=68 on CPU); a map
      that would need more negatives gets `max_count`. Pass a bound that holds, e.g.
      `disc_pixel_bound(R)` for disc targets, and the counts stay exact. Hard-mode ties then
      go to the lower pixel index instead of a random one.

  Returns:
    float32 [B, H, W, K] mask, 1 on selected pixels.
  """
  if pred.shape != target.shape or pred.ndim != 4:
    raise ValueError(f'pred {pred.shape} and target {target.shape} must both be [B, H, W, K]')
  if not 0.0 <= empty_neg_ratio <= 1.0:
    raise ValueError(f'empty_neg_ratio {empty_neg_ratio} must be in [0, 1]')
  if int(neg_per_pos) != neg_per_pos or neg_per_pos < 0:
    raise ValueError(f'neg_per_pos {neg_per_pos} must be a non-negative integer (0 = all)')
  b, h, w, k = pred.shape
  num_empty = int(empty_neg_ratio * h * w + 0.5)
  if empty_neg_ratio > 0:
    num_empty = max(num_empty, 1)
  to_maps = lambda a: jnp.moveaxis(a, -1, 1).reshape(b, k, h * w)  # [B, H, W, K] → [B, K, H*W]
  positive = to_maps(target) > 0  # [B, K, H*W]
  score = to_maps(jax.lax.stop_gradient(pred)).astype(jnp.float32)
  num_pos = jnp.sum(positive, axis=-1)  # [B, K]
  num_neg = h * w - num_pos
  # Dense (neg_per_pos = 0): the ranking only picks the negatives of maps without positives.
  count = jnp.minimum(jnp.where(num_pos > 0, int(neg_per_pos) * num_pos, num_empty), num_neg)
  if neg_per_pos == 0:
    positive = positive | (num_pos > 0)[..., None]  # every pixel of a map with positives
  if max_count is not None:
    cap = min(int(max_count), h * w)
    noise = jax.random.uniform(key, positive.shape)
    rank = jnp.where(positive, -jnp.inf, jnp.where(hard, score, noise))  # highest first
    top = jax.lax.top_k(rank, cap)[1]  # [B, K, cap]
    first = jnp.arange(cap) < count[..., None]
    chosen = positive | jnp.put_along_axis(
      jnp.zeros_like(positive), top, first, axis=-1, inplace=False
    )
    return jnp.moveaxis(chosen.reshape(b, k, h, w), 1, -1).astype(jnp.float32)
  # Ascending sort on (primary, random): positives last, hard negatives by descending score.
  primary = jnp.where(positive, jnp.inf, jnp.where(hard, -score, 0.0))
  noise = jax.random.uniform(key, positive.shape)
  iota = jnp.broadcast_to(jnp.arange(h * w), positive.shape)
  order = jax.lax.sort((primary, noise, iota), num_keys=2)[2]  # [B, K, H*W]
  # Scatter "within the first `count` ranks" back to pixel positions (no second sort).
  first = jnp.arange(h * w) < count[..., None]  # [B, K, H*W], in sorted order
  chosen = positive | jnp.put_along_axis(
    jnp.zeros_like(positive), order, first, axis=-1, inplace=False
  )
  return jnp.moveaxis(chosen.reshape(b, k, h, w), 1, -1).astype(jnp.float32)


def disc_pixel_bound(radius: float) -> int:
  """Most pixels one ground-truth disc of `radius` (plus its nearest pixel) can mark."""
  side = 2 * math.ceil(radius) + 1
  return side * side + 1


def selective_loss(
  pred: jax.Array,
  target: jax.Array,
  key: jax.Array,
  *,
  empty_neg_ratio: float = 0.01,
  hard: bool | jax.Array = False,
  weights: jax.Array | None = None,
  max_count: int | None = None,
  neg_per_pos: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """BB-FCN selective response-map loss (eqs. 5-6 restricted by §III-D).

  Eqs. (5) and (6) are per-image sums of squared errors over the maps; the selective scheme
  only keeps some pixels from propagating errors. As in the paper's Caffe Euclidean loss, the
  masked sum is averaged over the batch and halved, `Σ mask (pred - target)² / (2 B)`, so the
  paper's learning rates (1e-3 backbone, 1e-4 / 1e-5 branches) keep their meaning.

  Args:
    pred: [B, H, W, K] predicted maps.
    target: [B, H, W, K] binary ground-truth maps.
    key: PRNG key for the random negatives.
    empty_neg_ratio: static fraction of pixels selected in maps without positives.
    hard: hard negative mining; Python bool or traced bool scalar (see `selective_mask`).
    weights: optional [K] per-landmark-type weights u_k (MCL's weighting fine-tuning, eq. 5);
      map k's squared errors are multiplied by u_k.
    max_count: static bound on the selected negatives per map (see `selective_mask`).
    neg_per_pos: static negatives per positive (see `selective_mask`; the paper's 1).

  Returns:
    (scalar loss, aux) with aux float32 scalars `num_pos`, `num_neg` (selected negatives) and
    `num_selected`, summed over the batch. No gradient flows through the mask.
  """
  mask = jax.lax.stop_gradient(
    selective_mask(
      pred,
      target,
      key,
      empty_neg_ratio=empty_neg_ratio,
      hard=hard,
      max_count=max_count,
      neg_per_pos=neg_per_pos,
    )
  )  # [B, H, W, K]
  num_selected = jnp.sum(mask)
  num_pos = jnp.sum(mask * (target > 0))
  error = mask * (pred - target) ** 2  # [B, H, W, K]
  if weights is not None:
    error = error * jnp.asarray(weights, error.dtype)
  loss = jnp.sum(error) / (2.0 * pred.shape[0])
  aux = {'num_pos': num_pos, 'num_neg': num_selected - num_pos, 'num_selected': num_selected}
  return loss, aux
