"""BB-FCN constrained inference: face crop -> coarse maps -> branch refinement (paper §III-E-1).

    crop [B, S, S, 3] --backbone--> coarse maps [B, S, S, K] --Ave{M, 13}--> coarse (x, y)
    crop and maps resized by f = `refine_size` / S (64 for S = 32, 128 for S = 64)
    24×24 patch of the resized crop + map k around coarse location k  -> [B, K, 24, 24, 4]
    --branch k--> fine map [B, K, 24, 24] --Ave{M_f, 13}--> final (x, y), mapped back to the crop

Everything is one jittable function over fixed shapes, batched over faces and landmark types
(no loop over K); the backbone and branch networks are passed in as functions so that the same
code serves trained models, the backbone-only ablation (`refine=False`) and tests with
hand-made maps. Coordinates follow the lmjax convention (pixel centres on integers), and
resizing uses half-pixel centres, so a point x at size S is (x + 0.5) f - 0.5 at size f S.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lmjax import heatmaps

PATCH = 24  # branch input side
TOP_N = 13  # Ave{M, 13}


def resize_to(x: jax.Array, size: int) -> jax.Array:
  """Bilinear resize of [B, H, W, C] to [B, size, size, C] (half-pixel centres)."""
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method='bilinear')


def patch_origins(centres: jax.Array, size: int, patch: int = PATCH) -> jax.Array:
  """Integer top-left corners [B, K, 2] (x0, y0) of patches centred on `centres` [B, K, 2].

  The patch covers pixels x0 … x0 + patch - 1, so a centre c lands on pixel patch / 2 of it
  (x0 = round(c) - patch / 2); corners are clipped so that the patch stays inside the image.
  """
  origin = jnp.round(centres).astype(jnp.int32) - patch // 2
  return jnp.clip(origin, 0, size - patch)


def extract_patches(images: jax.Array, maps: jax.Array, origins: jax.Array) -> jax.Array:
  """Branch inputs [B, K, P, P, C + 1]: image patch + map channel k at origins[b, k].

  Args:
    images: [B, H, W, C] resized crops.
    maps: [B, H, W, K] resized coarse maps.
    origins: int32 [B, K, 2] patch corners (x0, y0) from `patch_origins`.
  """

  def one(image, map_k, origin):  # [H, W, C], [H, W], [2] -> [P, P, C + 1]
    stacked = jnp.concatenate([image, map_k[..., None]], axis=-1)
    start = (origin[1], origin[0], 0)
    return jax.lax.dynamic_slice(stacked, start, (PATCH, PATCH, stacked.shape[-1]))

  per_type = jax.vmap(one, in_axes=(None, 0, 0))  # over K
  return jax.vmap(per_type)(images, jnp.moveaxis(maps, -1, 1), origins)  # over B; [B, K, ...]


def constrained_predict(
  coarse_fn: Callable[[jax.Array], jax.Array],
  fine_fn: Callable[[jax.Array], jax.Array] | None,
  crops: jax.Array,
  refine_size: int,
) -> dict[str, jax.Array]:
  """Landmarks of face crops with the backbone (and, unless `fine_fn` is None, the branches).

  Args:
    coarse_fn: [B, S, S, 3] -> [B, S, S, K] coarse maps (the backbone).
    fine_fn: [B, K, 24, 24, 4] -> [B, K, 24, 24] fine maps (the branches), or None for the
      backbone-only ablation.
    crops: [B, S, S, 3] face crops, already normalised as the networks expect.
    refine_size: side of the resized crop the branches look at (64 for S = 32, 128 for 64).

  Returns:
    {'coarse': [B, K, 2], 'coarse_score': [B, K], 'points': [B, K, 2], 'score': [B, K]}:
    locations in crop pixels; `points` are the refined ones (the coarse ones without branches).
  """
  size = crops.shape[1]
  maps = coarse_fn(crops)  # [B, S, S, K]
  coarse, coarse_score = heatmaps.top_mean(maps, TOP_N)  # [B, K, 2], [B, K]
  out = {'coarse': coarse, 'coarse_score': coarse_score}
  if fine_fn is None:
    return {**out, 'points': coarse, 'score': coarse_score}
  f = refine_size / size
  big_images, big_maps = resize_to(crops, refine_size), resize_to(maps, refine_size)
  centres = (coarse + 0.5) * f - 0.5  # [B, K, 2] in the resized frame
  origins = patch_origins(centres, refine_size)
  fine_maps = fine_fn(extract_patches(big_images, big_maps, origins))  # [B, K, P, P]
  fine, score = heatmaps.top_mean(jnp.moveaxis(fine_maps, 1, -1), TOP_N)  # [B, K, 2]
  points = (fine + origins.astype(fine.dtype) + 0.5) / f - 0.5
  return {**out, 'points': points, 'score': score}
