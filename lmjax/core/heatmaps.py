"""BB-FCN landmark response maps: ground-truth discs and the Ave{M, n} location estimate.

Pixel convention: pixel centres sit on integer coordinates (x, y), 0-based; a map [..., H, W] is
indexed [y, x]. Maps are channels-last, [B, H, W, K], like the backbone's output.

Ground truth (BB-FCN §III-C): 1 inside a disc of radius R around each landmark, 0 elsewhere, with
R = 5% of the input width for the backbone and 3% for the branches (§III-E). A pixel is inside
when its centre is within R of the landmark. Because R can be below one pixel (0.03 × 24 = 0.72),
the pixel nearest to the landmark (round half up) is always marked as well, so a visible landmark
whose nearest pixel lies in the map never gets an empty map; for R ≥ √2/2 the rule changes nothing.

Location (§III-E): Ave{M, n} is the mean (x, y) of the n highest responses of a map; the paper uses
n = 13, the pixel count of its radius-2 disc.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BACKBONE_RADIUS = 0.05  # Rc / input width.
BRANCH_RADIUS = 0.03  # Rf / input width.
TOP_N = 13  # n of Ave{M, n} in the paper (§III-E)


def disc_maps(
  points: jax.Array,
  visible: jax.Array,
  size: tuple[int, int],
  radius_frac: float,
  *,
  ref_width: int | None = None,
) -> jax.Array:
  """Binary ground-truth maps: a disc of radius R = radius_frac × width per visible landmark.

  A pixel is 1 when its centre is within R of the landmark (distance ≤ R) or when it is the
  landmark's nearest pixel (floor(x + 0.5), floor(y + 0.5)), so sub-pixel radii still mark one
  pixel. Invisible landmarks, and points whose disc and nearest pixel both miss the map, give
  all-zero maps.

  Args:
    points: [B, K, 2] landmark (x, y) in map pixels.
    visible: bool [B, K].
    size: static (H, W) of the maps.
    radius_frac: R as a fraction of the width, e.g. `BACKBONE_RADIUS` or `BRANCH_RADIUS`.
    ref_width: width R is a fraction of; defaults to W. The paper sets Rf from the 64-px branch
      image (64 × 3% ≈ 2), not from the 24-px patch the branch sees: pass `ref_width=64` there.

  Returns:
    float32 [B, H, W, K] maps.
  """
  if points.ndim != 3 or points.shape[-1] != 2 or visible.shape != points.shape[:2]:
    raise ValueError(f'points {points.shape} must be [B, K, 2] and visible {visible.shape} [B, K]')
  height, width = size
  radius = radius_frac * (width if ref_width is None else ref_width)
  # The tiny slack keeps an intended integer radius (0.05 × 40 = 2) from losing its boundary.
  r2 = radius * radius * (1 + 1e-6)
  x = points[:, None, None, :, 0]  # [B, 1, 1, K]
  y = points[:, None, None, :, 1]
  xs = jnp.arange(width, dtype=points.dtype)[None, None, :, None]  # [1, 1, W, 1]
  ys = jnp.arange(height, dtype=points.dtype)[None, :, None, None]  # [1, H, 1, 1]
  disc = (xs - x) ** 2 + (ys - y) ** 2 <= r2  # [B, H, W, K]
  nearest = (xs == jnp.floor(x + 0.5)) & (ys == jnp.floor(y + 0.5))  # [B, H, W, K]
  return ((disc | nearest) & visible[:, None, None, :]).astype(jnp.float32)


def top_mean(maps: jax.Array, n: int = TOP_N) -> tuple[jax.Array, jax.Array]:
  """Ave{M, n} and its score: mean position and mean value of the n highest responses per map.

  Ties are broken by `jax.lax.top_k`, which prefers the lower flat index, i.e. the smaller y, then
  the smaller x. A map with fewer than n distinct high values (a binary disc of fewer than n
  pixels, a flat map) therefore drags the estimate towards its top-left; real network outputs
  are continuous and rarely tie.

  Args:
    maps: [B, H, W, K] response maps.
    n: static number of highest responses to average (`TOP_N` = 13 in the paper).

  Returns:
    ([B, K, 2] float32 (x, y) locations, [B, K] mean of the n values as a confidence score).
  """
  b, h, w, k = maps.shape
  flat = jnp.moveaxis(maps, -1, 1).reshape(b, k, h * w)  # [B, K, H*W]
  values, index = jax.lax.top_k(flat, n)  # [B, K, n]
  xy = jnp.stack([index % w, index // w], axis=-1).astype(jnp.float32)  # [B, K, n, 2]
  return jnp.mean(xy, axis=2), jnp.mean(values, axis=-1)


def top_mean_location(maps: jax.Array, n: int = TOP_N) -> jax.Array:
  """Ave{M, n}: [B, H, W, K] maps → [B, K, 2] (x, y); see `top_mean` for ties and the score."""
  return top_mean(maps, n)[0]
