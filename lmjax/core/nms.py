"""The one non-maximum suppression rule: greedy NMS with masks (fixed shapes, jittable).

Boxes are (x0, y0, x1, y1) in pixels; their IoU is `lmjax.core.geometry.box_iou`. `nms` is the
classic greedy rule (walk the boxes from the highest score down; a kept box removes every
lower-scored box whose IoU with it exceeds the threshold) over a fixed number of slots with a
validity mask instead of a shrinking list, so it compiles once and batches with `vmap`. The
scanner runs it inside its jitted program; `nms_indices` runs the same rule on host arrays of
any length (padded to a few bucket sizes, so it compiles a handful of times).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core.geometry import box_iou

MIN_BUCKET = 16  # smallest padded box count of `nms_indices`


def nms(boxes: jax.Array, scores: jax.Array, valid: jax.Array, iou: float) -> jax.Array:
  """Greedy NMS keep-mask over the last axis, computed as a fixed point (Cluster-NMS).

  Box j (in descending score order) survives greedy NMS iff no *surviving* higher-scored box
  overlaps it by more than `iou`. Starting from keep = valid, the update
  keep[j] = valid[j] & ~any_i(keep[i] & overlap[i, j] & i < j) reaches exactly the greedy
  result (the first t boxes are final after t rounds); chains of suppression are short, so a
  `while_loop` stops after a few matrix rounds instead of N sequential steps, which matters on
  accelerators where every loop iteration costs a launch.

  Args:
    boxes: [..., N, 4].
    scores: [..., N]; ties keep the lower index.
    valid: [..., N] bool; invalid slots are neither kept nor suppress anything.
    iou: a box is removed when its IoU with a kept, higher-scored box is > `iou`.

  Returns:
    [..., N] bool, True for the kept boxes.
  """
  n = scores.shape[-1]
  order = jnp.argsort(-jnp.where(valid, scores, -jnp.inf), axis=-1, stable=True)
  sorted_valid = jnp.take_along_axis(valid, order, axis=-1)
  sorted_boxes = jnp.take_along_axis(boxes, order[..., None], axis=-2)
  later = jnp.arange(n)[None, :] > jnp.arange(n)[:, None]  # [N, N], j after i
  suppresses = (box_iou(sorted_boxes, sorted_boxes) > iou) & later  # [..., i, j]

  def update(keep):
    hit = jnp.any(suppresses & keep[..., :, None], axis=-2)  # [..., j]
    return sorted_valid & ~hit

  def body(state):
    keep, _ = state
    new = update(keep)
    return new, jnp.any(new != keep)

  keep_sorted, _ = jax.lax.while_loop(lambda s: s[1], body, (sorted_valid, jnp.array(True)))
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(keep_sorted, inverse, axis=-1)


@functools.partial(jax.jit, static_argnames='iou')
def _nms_jit(boxes: jax.Array, scores: jax.Array, valid: jax.Array, iou: float) -> jax.Array:
  return nms(boxes, scores, valid, iou)


def nms_indices(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
  """Indices int64 [F] of the boxes [N, 4] that greedy NMS keeps, best score first.

  The host entry to `nms` for variable-length lists: boxes are padded to the next power of two
  (at least `MIN_BUCKET`) with invalid slots, so lengths share compiled programs. Scores are
  compared in float32 (ties keep the lower index).

  Args:
    boxes: [N, 4] boxes (x0, y0, x1, y1).
    scores: [N] scores.
    iou: a box is removed when its IoU with a kept, higher-scored box is > `iou`.

  Raises:
    ValueError: `boxes` is not [N, 4] or `scores` not [N].
  """
  boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
  n = len(scores)
  if scores.shape != (n,) or boxes.shape != (n, 4):
    raise ValueError(
      f'boxes: expected [N, 4] for scores [N]; got boxes {boxes.shape}, scores {scores.shape}'
    )
  if not n:
    return np.zeros(0, np.int64)
  bucket = max(MIN_BUCKET, 1 << (n - 1).bit_length())
  pad = bucket - n
  keep = _nms_jit(
    np.pad(boxes, ((0, pad), (0, 0))),
    np.pad(scores, (0, pad)),
    np.arange(bucket) < n,
    iou=float(iou),
  )
  kept = np.flatnonzero(np.asarray(keep)[:n])
  return kept[np.argsort(-scores[kept], kind='stable')].astype(np.int64)


def top_valid(scores: jax.Array, valid: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Indices [..., k] of the k best valid slots (best first) and their validity [..., k]."""
  masked = jnp.where(valid, scores, -jnp.inf)
  values, index = jax.lax.top_k(masked, k)
  return index, jnp.isfinite(values)
