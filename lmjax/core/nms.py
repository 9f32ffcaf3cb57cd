"""Boxes on device: IoU and greedy non-maximum suppression with masks (fixed shapes, jittable).

Boxes are (x0, y0, x1, y1) in pixels. `nms` is the classic greedy rule (walk the boxes from the
highest score down; a kept box removes every lower-scored box whose IoU with it exceeds the
threshold) over a fixed number of slots with a validity mask instead of a shrinking list, so it
compiles once and batches with `vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of boxes [..., 4] and [..., 4] (broadcasting) -> [...]."""
  lo = jnp.maximum(a[..., :2], b[..., :2])
  hi = jnp.minimum(a[..., 2:], b[..., 2:])
  inter = jnp.prod(jnp.maximum(hi - lo, 0.0), axis=-1)
  area = lambda x: jnp.prod(jnp.maximum(x[..., 2:] - x[..., :2], 0.0), axis=-1)
  return inter / jnp.maximum(area(a) + area(b) - inter, 1e-12)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of every pair: a [..., N, 4], b [..., M, 4] -> [..., N, M] (0 for empty boxes)."""
  return iou(a[..., :, None, :], b[..., None, :, :])


def centred_boxes(centres: jax.Array, sides: jax.Array) -> jax.Array:
  """Square boxes [..., 4] of side `sides` [...] around `centres` [..., 2]."""
  half = sides[..., None] / 2
  return jnp.concatenate([centres - half, centres + half], axis=-1)


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


def top_valid(scores: jax.Array, valid: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Indices [..., k] of the k best valid slots (best first) and their validity [..., k]."""
  masked = jnp.where(valid, scores, -jnp.inf)
  values, index = jax.lax.top_k(masked, k)
  return index, jnp.isfinite(values)
