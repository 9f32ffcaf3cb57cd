"""Plane geometry on numpy or jax arrays: affines, the MCL crop square, boxes and their IoU.

Conventions (SPEC §2):
  * Points are float [..., K, 2] (x, y) in 0-based pixel coordinates; the centre of pixel
    (row i, column j) is at (x, y) = (j, i).
  * A box is (x0, y0, x1, y1) in the same coordinates.
  * An affine `A` is a [2, 3] matrix mapping source pixel coordinates to destination pixel
    coordinates: `dst = A[:, :2] @ src + A[:, 2]`.

The MCL crop of a box is the square of `scale` (1.1) × the box's longer side centred on the
box centre, resampled to S × S. Crop pixel u covers image x in [x_left + u·s, x_left + (u+1)·s)
with s = side / S, hence `x_crop = (x - x_left) / s - 0.5` (`square_affine`). The samplers
(`lmjax.core.image_ops.warp` on the host, `lmjax.core.sampling.warp_affine` on device) resample
with exactly that affine, so a point mapped with `apply_affine` lands on the same image feature
in the warped image.

Every function accepts numpy or jax arrays (`array_module` picks the namespace) and is jittable
with jax inputs; this module owns the one rotation affine (`rotation_about`) and the one box
IoU (`iou`, `box_iou`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

MCL_CROP_SCALE = 1.1
# Pixels: the narrowest face box a predictor takes (a narrower one has no face in it and would
# blow up the crop); `lmjax.models.interface.check_face` and the video tracker use it.
MIN_BOX_SIDE = 1.0


MCL_CROP_SIZE = 50


Array = np.ndarray | jax.Array


def array_module(*xs):
  """`jnp` when any argument is a jax array (or tracer), else `np`."""
  return jnp if any(isinstance(x, jax.Array) for x in xs) else np


# ----------------------------------------------------------------------------- affines
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


def rotation_about(centre: Array, angle: Array) -> Array:
  """Rotation by `angle` [...] (radians) about `centre` [..., 2] -> [..., 2, 3].

  Positive angles turn +x towards +y (clockwise on screen, where y points down). The centre is
  a fixed point: `apply_affine(centre, rotation_about(centre, a)) == centre`.
  """
  xp = array_module(centre, angle)
  c, s = xp.cos(angle), xp.sin(angle)
  linear = xp.stack([xp.stack([c, -s], axis=-1), xp.stack([s, c], axis=-1)], axis=-2)  # [..., 2, 2]
  shift = centre - (linear @ centre[..., None])[..., 0]  # [..., 2]
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


# ----------------------------------------------------------------------------- boxes
def centred_boxes(centres: Array, sides: Array) -> Array:
  """Square boxes [..., 4] of side `sides` [...] around `centres` [..., 2]."""
  xp = array_module(centres, sides)
  half = sides[..., None] / 2
  return xp.concatenate([centres - half, centres + half], axis=-1)


def _box_area(boxes: Array) -> Array:
  """Areas [...] of boxes [..., 4]; 0 for empty (inverted) boxes."""
  xp = array_module(boxes)
  return xp.prod(xp.maximum(boxes[..., 2:] - boxes[..., :2], 0.0), axis=-1)


def iou(a: Array, b: Array) -> Array:
  """Intersection over union of boxes a [..., 4] and b [..., 4] (broadcasting) -> [...].

  0 where the union is empty (two empty boxes).
  """
  xp = array_module(a, b)
  lo = xp.maximum(a[..., :2], b[..., :2])
  hi = xp.minimum(a[..., 2:], b[..., 2:])
  inter = xp.prod(xp.maximum(hi - lo, 0.0), axis=-1)
  return inter / xp.maximum(_box_area(a) + _box_area(b) - inter, 1e-12)


def box_iou(a: Array, b: Array) -> Array:
  """IoU of every pair: a [..., N, 4], b [..., M, 4] -> [..., N, M] (0 for empty boxes).

  Raises:
    ValueError: `a` or `b` is not a stack of 4-vectors (x0, y0, x1, y1).
  """
  xp = array_module(a, b)
  a, b = xp.asarray(a), xp.asarray(b)
  for name, x, n in (('a', a, 'N'), ('b', b, 'M')):
    if x.ndim < 2 or x.shape[-1] != 4:
      want = f'[..., {n}, 4] (x0, y0, x1, y1)'
      raise ValueError(f'{name}: expected boxes {want}, got shape {x.shape}')
  return iou(a[..., :, None, :], b[..., None, :, :])
