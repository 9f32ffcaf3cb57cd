"""The one on-device image sampler: bilinear taps at arbitrary points (jittable, fixed shapes).

`sample_bilinear` reads an image at float positions (x, y) with the lmjax pixel convention
(pixel centres on integers): the 4 neighbouring pixels are gathered and blended with the
fractional weights; neighbours outside the readable part of the image read as `border`.
`warp_affine` samples an S × S output grid through an affine, the jittable counterpart of the
host `lmjax.core.image_ops.warp` (which anti-aliases; this one does not: see
`lmjax.core.mipmap` for anti-aliased window crops built on this sampler).

Every device resampling in lmjax goes through `sample_bilinear`: training augmentation
(`lmjax.core.augment`) and the face classifier's crops (`lmjax.core.mipmap.crop_windows`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.core import geometry
from lmjax.core.image_ops import BORDER_VALUE


def affine_grid(inv: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
  """Source positions of an S × S output grid: x, y float32 [..., S, S] (row = y, column = x).

  Args:
    inv: [..., 2, 3] affine from output pixels to source pixels.
    size: S.
  """
  g = jnp.arange(size, dtype=jnp.float32)
  m = inv[..., None, None]  # [..., 2, 3, 1, 1]
  x = m[..., 0, 0, :, :] * g + m[..., 0, 1, :, :] * g[:, None] + m[..., 0, 2, :, :]
  y = m[..., 1, 0, :, :] * g + m[..., 1, 1, :, :] * g[:, None] + m[..., 1, 2, :, :]
  return x, y


def sample_bilinear(
  image: jax.Array,
  x: jax.Array,
  y: jax.Array,
  *,
  border: float = BORDER_VALUE,
  height: jax.Array | int | None = None,
  width: jax.Array | int | None = None,
  column_offset: jax.Array | int = 0,
) -> jax.Array:
  """Bilinear samples of `image` at the points (x, y).

  The readable part of `image` is the window of rows [0, h) and columns
  [column_offset, column_offset + w), with x measured from its left edge (by default the
  whole image). `height`, `width` and `column_offset` may be traced and broadcast against
  `x` (one window per crop, as for the levels packed on a `lmjax.core.mipmap` canvas).

  Args:
    image: [H, W, C] image (any real dtype; gathered first, converted to float32 after).
    x: [...] float32 column positions (pixel centres on integers).
    y: [...] float32 row positions, same shape as `x`.
    border: value of the taps outside the window.
    height: h, rows of the window (default H).
    width: w, columns of the window (default W).
    column_offset: the window's first column in `image`.

  Returns:
    float32 [..., C].
  """
  rows, cols, channels = image.shape
  h = rows if height is None else height
  w = cols if width is None else width
  flat = image.reshape(rows * cols, channels)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]  # [..., 1]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)

  def tap(xi: jax.Array, yi: jax.Array) -> jax.Array:
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = jnp.clip(yi, 0, h - 1) * cols + column_offset + jnp.clip(xi, 0, w - 1)
    return jnp.where(inside[..., None], flat[index].astype(jnp.float32), border)  # [..., C]

  top = tap(x0, y0) * (1 - fx) + tap(x0 + 1, y0) * fx
  bottom = tap(x0, y0 + 1) * (1 - fx) + tap(x0 + 1, y0 + 1) * fx
  return top * (1 - fy) + bottom * fy


def warp_affine(
  image: jax.Array, A: jax.Array, size: int, border: float = BORDER_VALUE
) -> jax.Array:
  """Bilinear resampling of `image` onto an S × S grid with `A` (image -> output pixels).

  Every output pixel centre is mapped back with the inverse of `A` and sampled with
  `sample_bilinear` (no anti-aliasing: meant for scales near 1, such as augmentation crops
  of face regions).

  Args:
    image: [H, W, C] image (any real dtype).
    A: [2, 3] affine.
    size: S.
    border: value outside the image.

  Returns:
    float32 [S, S, C].
  """
  x, y = affine_grid(geometry.invert_affine(A.astype(jnp.float32)), size)  # [S, S]
  return sample_bilinear(image, x, y, border=border)
