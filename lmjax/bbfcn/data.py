"""BB-FCN training batches, built on device inside the jitted step.

Positives (paper §III-E): square face windows whose IoU with the face box exceeds 0.5
(`lmjax.data.windows.positive_windows`), rotated / flipped / colour-jittered, cut from the
cached face regions at the branch resolution R inside the jitted step. Negatives: the
face-free windows of `lmjax.data.negatives`, re-cropped by each step at a random scale and
flip. Every batch image is float32 [R, R, 3] scaled as x / 128 - 1; the backbone sees its
downsample to S (`lmjax.bbfcn.inference`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmjax.core import augment
from lmjax.data import batching, caches
from lmjax.data.windows import positive_windows


@dataclasses.dataclass(frozen=True)
class PositiveParams:
  """Static settings of the positive crops (hashable: a jit static argument)."""

  size: int  # R
  max_scale: float
  max_shift: float
  augment: augment.AugmentParams  # rotation, flip, brightness / contrast at size R


def positive_params(config: ml_collections.ConfigDict) -> PositiveParams:
  a, size = config.aug, config.model.refine_size
  jitter = augment.AugmentParams(
    size=size,
    crop_scale=1.0,  # the window is the crop
    grayscale=False,
    normalize=True,
    rotation_deg=a.rotation_deg,
    rebox=False,
    scale_range=(1.0, 1.0),
    translate=0.0,
    flip_prob=a.flip_prob,
    brightness=a.brightness,
    contrast_range=(a.contrast_min, a.contrast_max),
  )
  return PositiveParams(size, a.window_max_scale, a.window_max_shift, jitter)


def eval_params(config: ml_collections.ConfigDict) -> augment.AugmentParams:
  """The test-time crop (square of crop_scale × the longer box side) at R, no jitter."""
  return augment.AugmentParams.none(
    size=config.model.refine_size, crop_scale=config.input.crop_scale, grayscale=False
  )


def positive_batch(
  key: jax.Array,
  regions: jax.Array,
  points: jax.Array,
  bbox: jax.Array,
  visible: jax.Array,
  params: PositiveParams,
  flip_perm: tuple[int, ...],
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Random positive windows of a batch of face regions (jittable).

  Args:
    key: PRNG key of this batch.
    regions: uint8 [B, Rg, Rg, 3] cached face regions.
    points: [B, K, 2] landmarks in region pixels.
    bbox: [B, 4] face boxes in region pixels.
    visible: bool [B, K].
    params: static crop settings.
    flip_perm: the schema's flip permutation.

  Returns:
    images float32 [B, R, R, 3] (x / 128 - 1), points [B, K, 2] in R pixels, visible [B, K]
    (permuted like the points on flipped examples).
  """
  k_win, k_aug = jax.random.split(key)
  windows = positive_windows(k_win, bbox, max_scale=params.max_scale, max_shift=params.max_shift)
  keys = jax.random.split(k_aug, regions.shape[0])
  draws = jax.vmap(lambda k: augment.sample_draw(k, params.augment))(keys)
  images, out_points = jax.vmap(
    lambda r, p, w, d: augment.apply_draw(r, p, w, d, params.augment, flip_perm)
  )(regions, points, windows, draws)
  perm, visible = jnp.asarray(flip_perm), jnp.asarray(visible)
  visible = jnp.where(draws.flip[:, None], visible[:, perm], visible)
  return images, out_points, visible


def negative_batch(
  key: jax.Array, negatives: jax.Array, idx: jax.Array, params: PositiveParams
) -> jax.Array:
  """Re-crops cached negatives: a random square of 0.6-1 × the side, rotated, flipped, jittered.

  Args:
    key: PRNG key of this batch.
    negatives: uint8 [N, R, R, 3] negative cache.
    idx: int [B] rows of the cache.
    params: static crop settings.

  Returns:
    float32 [B, R, R, 3] images scaled as x / 128 - 1.
  """
  size = negatives.shape[1]
  b = idx.shape[0]
  k_side, k_pos, k_aug = jax.random.split(key, 3)
  side = jax.random.uniform(k_side, (b,), minval=0.6, maxval=1.0) * size
  lo = jax.random.uniform(k_pos, (b, 2)) * (size - side[:, None])
  windows = jnp.concatenate([lo, lo + side[:, None]], axis=-1) - 0.5  # pixel edges
  draws = jax.vmap(lambda k: augment.sample_draw(k, params.augment))(jax.random.split(k_aug, b))
  dummy = jnp.zeros((1, 2), jnp.float32)
  images, _ = jax.vmap(lambda r, w, d: augment.apply_draw(r, dummy, w, d, params.augment))(
    jnp.asarray(negatives)[idx], windows, draws
  )
  return images


def eval_images(
  cache: caches.RegionCache, config: ml_collections.ConfigDict
) -> tuple[np.ndarray, np.ndarray]:
  """Test-time face crops [N, R, R, 3] (x / 128 - 1) and landmarks [N, K, 2] in R pixels."""
  params = eval_params(config)
  fn = jax.jit(
    lambda r, p, b: augment.augment_batch(
      r, p, b, jax.random.key(0), jnp.zeros(r.shape[0], jnp.int32), params
    )
  )
  arrays = (cache.regions[:, 0], cache.landmarks, cache.bbox)
  return batching.run_bucketed(lambda batch: fn(*batch), arrays, (256,))
