"""Landmark-aware preprocessing: the MCL face crop, face-region caches, JPEG re-compression.

Conventions (SPEC §2):
  * Images are uint8 [H, W, C] with C = 3 (RGB) or 1 (grey).
  * Points are float32 [..., K, 2] (x, y) in 0-based pixel coordinates; the centre of pixel
    (row i, column j) is at (x, y) = (j, i).
  * A face box is (x0, y0, x1, y1) in the same coordinates.
  * An affine `A` is a [2, 3] matrix mapping source pixel coordinates to destination pixel
    coordinates: `dst = A[:, :2] @ src + A[:, 2]`.

The MCL crop of a box is the square of `scale` (1.1) × the box's longer side centred on the
box centre, resampled to S × S. Crop pixel u covers image x in [x_left + u·s, x_left + (u+1)·s)
with s = side / S, hence `x_crop = (x - x_left) / s - 0.5`. `warp` resamples with exactly that
affine, so a point mapped with `apply_affine` lands on the same image feature in the warped
image. The geometry helpers (`square_affine`, `apply_affine`, `invert_affine`, `compose_affine`,
`rgb_to_grey`, `normalize_pixels`) accept numpy or jax arrays; `warp`, `mcl_crop`,
`extract_region` and the JPEG helpers are host-only (OpenCV).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

MCL_CROP_SCALE = 1.1


MCL_CROP_SIZE = 50


Array = np.ndarray | jax.Array


def array_module(*xs):
  """`jnp` when any argument is a jax array (or tracer), else `np`."""
  return jnp if any(isinstance(x, jax.Array) for x in xs) else np


# ----------------------------------------------------------------------------- geometry
def square_affine(centre: Array, side: Array, size: int) -> Array:
  """Affine mapping the axis-aligned square (`centre`, `side`) onto an S × S pixel grid.

  Args:
    centre: [..., 2] square centre (x, y) in source pixels.
    side: [...] square side in source pixels.
    size: S, the output grid size.

  Returns:
    [..., 2, 3] affine with `x_dst = (x - x_left) / s - 0.5`, `s = side / S`.
  """
  xp = array_module(centre, side)
  centre = xp.asarray(centre)
  side = xp.asarray(side, dtype=centre.dtype)
  inv_s = size / side  # [...]
  left, top = centre[..., 0] - side / 2, centre[..., 1] - side / 2
  zero = xp.zeros_like(inv_s)
  row0 = xp.stack([inv_s, zero, -left * inv_s - 0.5], axis=-1)
  row1 = xp.stack([zero, inv_s, -top * inv_s - 0.5], axis=-1)
  return xp.stack([row0, row1], axis=-2)


def box_centre_side(bbox: Array) -> tuple[Array, Array]:
  """Centre [..., 2] and longer side [...] of boxes [..., 4] = (x0, y0, x1, y1)."""
  xp = array_module(bbox)
  bbox = xp.asarray(bbox)
  centre = (bbox[..., :2] + bbox[..., 2:]) / 2
  side = xp.max(bbox[..., 2:] - bbox[..., :2], axis=-1)
  return centre, side


def crop_affine(bbox: Array, size: int = MCL_CROP_SIZE, scale: float = MCL_CROP_SCALE) -> Array:
  """MCL crop affine: image pixels -> S × S crop pixels.

  Args:
    bbox: [..., 4] face box (x0, y0, x1, y1).
    size: S, the crop size.
    scale: crop side as a multiple of the box's longer side.

  Returns:
    [..., 2, 3] affine (float64 for numpy input).
  """
  xp = array_module(bbox)
  bbox = xp.asarray(bbox, dtype=xp.float32 if xp is jnp else np.float64)
  centre, side = box_centre_side(bbox)
  return square_affine(centre, scale * side, size)


def apply_affine(points: Array, A: Array) -> Array:
  """Maps points [..., K, 2] with affines [..., 2, 3] -> [..., K, 2]."""
  xp = array_module(points, A)
  linear = xp.swapaxes(A[..., :2], -1, -2)  # [..., 2, 2]
  return points @ linear + A[..., None, :, 2]


def invert_affine(A: Array) -> Array:
  """Inverse of affines [..., 2, 3] (closed-form 2 × 2 inverse) -> [..., 2, 3]."""
  xp = array_module(A)
  a, b, tx = A[..., 0, 0], A[..., 0, 1], A[..., 0, 2]
  c, d, ty = A[..., 1, 0], A[..., 1, 1], A[..., 1, 2]
  det = a * d - b * c
  ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
  row0 = xp.stack([ia, ib, -(ia * tx + ib * ty)], axis=-1)
  row1 = xp.stack([ic, id_, -(ic * tx + id_ * ty)], axis=-1)
  return xp.stack([row0, row1], axis=-2)


def compose_affine(second: Array, first: Array) -> Array:
  """`second ∘ first` for affines [..., 2, 3] (apply `first`, then `second`)."""
  linear = second[..., :2] @ first[..., :2]  # [..., 2, 2]
  shift = (second[..., :2] @ first[..., 2:])[..., 0] + second[..., 2]  # [..., 2]
  xp = array_module(second, first)
  return xp.concatenate([linear, shift[..., None]], axis=-1)


def flip_landmarks(points: Array, width: int, flip_perm: Sequence[int] | Array) -> Array:
  """Landmarks of the horizontally mirrored image: `x' = (W-1) - x`, `new[i] = old[perm[i]]`.

  Args:
    points: [..., K, 2] landmarks.
    width: W, the image width in pixels.
    flip_perm: [K] flip permutation of the landmark schema.

  Returns:
    [..., K, 2] landmarks.
  """
  xp = array_module(points)
  mirrored = xp.stack([(width - 1) - points[..., 0], points[..., 1]], axis=-1)
  return mirrored[..., xp.asarray(flip_perm), :]


def to_image_coords(points_crop: Array, A: Array) -> Array:
  """Maps crop points [..., K, 2] back to image pixels with the inverse of `A` [..., 2, 3]."""
  return apply_affine(points_crop, invert_affine(A))
