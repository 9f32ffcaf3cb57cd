"""BB-FCN constrained inference: face crop -> coarse maps -> branch refinement (paper §III-E-1).

    face crop I at the branch resolution R  [B, R, R, 3]   (R = 64 for 5 points, 128 dense)
    I resized to S (32 / 64)  --backbone-->  coarse maps Mc [B, S, S, K]
    Ave{Mc, 13}  -> coarse (x, y) in S pixels
    Mc resized to R; P×P patch of [I, Mc_k] around coarse location k  -> [B, K, P, P, 4]
    --branch k--> fine map Mf [B, K, P, P]  --Ave{Mf, 13}-->  final (x, y) in R pixels

with P = `lmjax.models.bbfcn.PATCH` (24) and Ave's count `lmjax.core.heatmaps.TOP_N` (13).

The paper resizes the face image I to 32×32 for the backbone and to 64×64 for the branches;
here I is cut once at R and the backbone input is its (antialiased) downsample, in training
and at test time alike. Everything is one jittable function over fixed shapes, batched over
faces and landmark types (no loop over K). The networks are passed in as functions, so the
same code serves trained models, the backbone-only ablation (`fine_fn=None`), the branch
training step (`branch_patches` with jitter) and tests with hand-made maps. Coordinates follow
the lmjax convention (pixel centres on integers) and resizing uses half-pixel centres, so a
point x at size S is (x + 0.5) R / S - 0.5 at size R (`rescale_points`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lmjax.core import heatmaps
from lmjax.models.bbfcn import PATCH


def resize_to(x: jax.Array, size: int) -> jax.Array:
  """Bilinear resize of [B, H, W, C] to [B, size, size, C] (half-pixel centres, antialiased)."""
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method='bilinear')


def rescale_points(points: jax.Array, factor: float) -> jax.Array:
  """Pixel coordinates after resizing the image by `factor`: (x + 0.5) f - 0.5."""
  return (points + 0.5) * factor - 0.5


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
    images: [B, H, W, C] face crops at the branch resolution.
    maps: [B, H, W, K] coarse maps resized to the same resolution.
    origins: int32 [B, K, 2] patch corners (x0, y0) from `patch_origins`.
  """

  def one(image, map_k, origin):  # [H, W, C], [H, W], [2] -> [P, P, C + 1]
    # Slice first, then stack: stacking the whole image with every map would copy it K times.
    rgb = jax.lax.dynamic_slice(image, (origin[1], origin[0], 0), (PATCH, PATCH, image.shape[-1]))
    heat = jax.lax.dynamic_slice(map_k, (origin[1], origin[0]), (PATCH, PATCH))
    return jnp.concatenate([rgb, heat[..., None]], axis=-1)

  per_type = jax.vmap(one, in_axes=(None, 0, 0))  # over K
  return jax.vmap(per_type)(images, jnp.moveaxis(maps, -1, 1), origins)  # over B; [B, K, ...]


def branch_patches(
  images: jax.Array, maps: jax.Array, coarse: jax.Array, jitter: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Branch inputs around the coarse locations (the training step adds `jitter`).

  Args:
    images: [B, R, R, C] face crops at the branch resolution.
    maps: [B, S, S, K] coarse maps.
    coarse: [B, K, 2] coarse locations in S pixels.
    jitter: optional [B, K, 2] shift of the patch centres in R pixels.

  Returns:
    (patches [B, K, P, P, C + 1], origins int32 [B, K, 2] in R pixels).
  """
  size, small = images.shape[1], maps.shape[1]
  centres = rescale_points(coarse, size / small)
  if jitter is not None:
    centres = centres + jitter
  origins = patch_origins(centres, size)
  return extract_patches(images, resize_to(maps, size), origins), origins


def constrained_predict(
  coarse_fn: Callable[[jax.Array], jax.Array],
  fine_fn: Callable[[jax.Array], jax.Array] | None,
  images: jax.Array,
  backbone_size: int,
) -> dict[str, jax.Array]:
  """Landmarks of face crops with the backbone (and, unless `fine_fn` is None, the branches).

  Args:
    coarse_fn: [B, S, S, 3] -> [B, S, S, K] coarse maps (the backbone).
    fine_fn: [B, K, P, P, 4] -> [B, K, P, P] fine maps (the branches), or None for the
      backbone-only ablation.
    images: [B, R, R, 3] face crops at the branch resolution, normalised as the networks expect.
    backbone_size: S, the backbone's input side (32 for 5 points, 64 for dense sets).

  Returns:
    {'coarse': [B, K, 2], 'coarse_score': [B, K], 'points': [B, K, 2], 'score': [B, K],
    'maps': [B, S, S, K], 'fine_maps': [B, K, P, P] (branches only), 'origins': [B, K, 2]
    (branches only)}: every location is in R pixels; `points` are the refined ones (the
    coarse ones without branches).
  """
  size = images.shape[1]
  maps = coarse_fn(resize_to(images, backbone_size))  # [B, S, S, K]
  coarse_small, coarse_score = heatmaps.top_mean(maps, heatmaps.TOP_N)  # [B, K, 2] in S pixels
  coarse = rescale_points(coarse_small, size / backbone_size)
  out = {'coarse': coarse, 'coarse_score': coarse_score, 'maps': maps}
  if fine_fn is None:
    return {**out, 'points': coarse, 'score': coarse_score}
  patches, origins = branch_patches(images, maps, coarse_small)
  fine_maps = fine_fn(patches)  # [B, K, P, P]
  fine, score = heatmaps.top_mean(jnp.moveaxis(fine_maps, 1, -1), heatmaps.TOP_N)  # [B, K, 2]
  points = fine + origins.astype(fine.dtype)
  return {**out, 'points': points, 'score': score, 'fine_maps': fine_maps, 'origins': origins}
