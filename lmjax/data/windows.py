"""Training windows: positive face crops (IoU > 0.5) and negative non-face crops.

BB-FCN trains its backbone on square crops (the face classifier reuses the samplers):
positives are windows whose IoU with the face box exceeds 0.5, negatives are windows from
image regions without an annotated face. Both samplers
are jittable with fixed shapes: each draws `tries` candidates per window from a stateless key
and keeps the first candidate that satisfies the condition (a fixed-shape rejection sampler).

Boxes are (x0, y0, x1, y1) in pixels; windows are square.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.core.geometry import centred_boxes, iou

POSITIVE_IOU = 0.5


def first_ok(candidates: jax.Array, ok: jax.Array, fallback: jax.Array) -> jax.Array:
  """[N, 4]: the first candidate [N, T, 4] with `ok` [N, T], else `fallback` [N, 4]."""
  first = jnp.argmax(ok, axis=1)
  chosen = jnp.take_along_axis(candidates, first[:, None, None], axis=1)[:, 0]
  return jnp.where(ok.any(axis=1)[:, None], chosen, fallback)


def positive_windows(
  key: jax.Array,
  boxes: jax.Array,
  *,
  max_scale: float = 1.25,
  max_shift: float = 0.2,
  tries: int = 16,
  min_iou: float = POSITIVE_IOU,
) -> jax.Array:
  """One jittered square window per face box with IoU(window, box) > min_iou (0.5).

  Candidates are squares of side max(w, h) × s, s log-uniform in [1/max_scale, max_scale],
  centred at the box centre shifted by up to ±max_shift × side per axis. The first candidate
  with IoU > 0.5 is kept; if none of `tries` qualifies, the un-jittered square is used, which
  qualifies whenever the box's aspect ratio is above 0.5 (every face box in practice).

  Args:
    key: PRNG key.
    boxes: [N, 4] face boxes.
    max_scale: largest side ratio to the un-jittered square.
    max_shift: largest centre shift as a fraction of the square's side.
    tries: static number of candidates per window.
    min_iou: the IoU a window must exceed.

  Returns:
    [N, 4] square windows.
  """
  n = boxes.shape[0]
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2]
  side = jnp.max(boxes[:, 2:] - boxes[:, :2], axis=-1)  # [N]
  k_scale, k_shift = jax.random.split(key)
  log_s = jax.random.uniform(k_scale, (n, tries), minval=-1.0, maxval=1.0) * jnp.log(max_scale)
  shift = jax.random.uniform(k_shift, (n, tries, 2), minval=-max_shift, maxval=max_shift)
  sides = side[:, None] * jnp.exp(log_s)  # [N, T]
  candidates = centred_boxes(centre[:, None] + shift * sides[..., None], sides)  # [N, T, 4]
  ok = iou(candidates, boxes[:, None]) > min_iou  # [N, T]
  return first_ok(candidates, ok, centred_boxes(centre, side))


def negative_windows(
  key: jax.Array,
  image_size: tuple[int, int],
  faces: jax.Array,
  face_mask: jax.Array,
  num: int,
  *,
  min_side: float,
  max_overlap: float = 0.0,
  tries: int = 32,
) -> tuple[jax.Array, jax.Array]:
  """`num` square windows inside an image that overlap no annotated face.

  A candidate qualifies when its IoU with every (unmasked) face box is ≤ `max_overlap` (0: no
  overlap at all) — the paper's negatives come from "regions that contain no face".

  Args:
    key: PRNG key.
    image_size: static (H, W).
    faces: [F, 4] face boxes (padded).
    face_mask: bool [F], False for padding.
    num: static number of windows.
    min_side: smallest window side in pixels (the largest is min(H, W)).
    max_overlap: largest IoU with any face.
    tries: static candidates per window.

  Returns:
    ([num, 4] windows, bool [num] valid): `valid` is False where no candidate qualified (e.g.
    the faces cover the image); such windows must be dropped or masked by the caller.
  """
  h, w = image_size
  top = float(min(h, w))
  if not 0 < min_side <= top:
    raise ValueError(f'min_side {min_side} must be in (0, {top}] for a {w}×{h} image')
  k_side, k_x, k_y = jax.random.split(key, 3)
  sides = jnp.exp(
    jax.random.uniform(k_side, (num, tries), minval=jnp.log(min_side), maxval=jnp.log(top))
  )
  x0 = jax.random.uniform(k_x, (num, tries)) * (w - sides)
  y0 = jax.random.uniform(k_y, (num, tries)) * (h - sides)
  candidates = jnp.stack([x0, y0, x0 + sides, y0 + sides], axis=-1)  # [num, T, 4]
  overlap = iou(candidates[:, :, None], faces[None, None])  # [num, T, F]
  overlap = jnp.where(face_mask[None, None], overlap, 0.0)
  ok = jnp.max(overlap, axis=-1, initial=0.0) <= max_overlap  # [num, T]
  first = jnp.argmax(ok, axis=1)
  chosen = jnp.take_along_axis(candidates, first[:, None, None], axis=1)[:, 0]
  return chosen, ok.any(axis=1)
