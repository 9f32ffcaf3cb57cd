"""The image pyramid of the BB-FCN scanner with fixed canvas shapes (paper §III-E-2).

Level l of an image of h × w pixels is the image scaled by s_l = 32 · 1.16^l / min(h, w): the
smaller side is 32 pixels at level 0 and grows by 1.16 per level. Images are padded into
size buckets (multiples of `bucket` pixels) so that XLA compiles once per bucket; each level
lives in a canvas whose shape depends only on the bucket (`plan_levels`), large enough for
every image size of the bucket, and the true (traced) scale of the image is used inside it, so
the pyramid of a 300 × 400 image is exact even though it shares the program of 320 × 416.
Canvas pixels beyond the scaled image are grey (0 after `x / 128 - 1`) and masked out of
the candidates.

Large images are first shrunk by an integer box filter (`reduce_factor`) so that the per-level
resampling (dense interpolation matrices in `jax.image`) works on a small image.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lmjax.core import image_ops

BASE_SIDE = 32  # smaller side of level 0
SCALE_STEP = 1.16
STRIDE = 4  # the backbone needs sides divisible by 4 (two 2× poolings, two 2× deconvolutions)


@dataclasses.dataclass(frozen=True)
class LevelPlan:
  """Static layout of a pyramid for one size bucket.

  Attributes:
    bucket: (H, W) padded input size.
    granularity: images of the bucket have H - granularity < h <= H (same for w).
    canvases: per level, the (rows, cols) canvas, a multiple of STRIDE.
    reduce: integer box-filter factor applied before resampling.
  """

  bucket: tuple[int, int]
  granularity: int
  canvases: tuple[tuple[int, int], ...]
  reduce: int

  @property
  def num_levels(self) -> int:
    return len(self.canvases)


def level_side(level: int) -> float:
  """Smaller side of level `level` (32 · 1.16^level)."""
  return BASE_SIDE * SCALE_STEP**level


def levels_for_min_face(min_face: float, smaller_side: int, face_px: float) -> int:
  """Levels L needed so that a face of `min_face` pixels reaches `face_px` at the top level.

  Args:
    min_face: smallest face (box side, in the convention of the model's training boxes) to find.
    smaller_side: min(h, w) of the images.
    face_px: the side such a box has in the backbone's training window (32 / crop_scale).
  """
  need = face_px * smaller_side / (BASE_SIDE * min_face)  # 1.16^(L - 1) >= need
  return max(1, math.ceil(math.log(max(need, 1.0)) / math.log(SCALE_STEP) - 1e-9) + 1)


def bucket_size(height: int, width: int, bucket: int) -> tuple[int, int]:
  """(H, W) of the bucket holding an h × w image: sides rounded up to multiples of `bucket`."""
  return (-(-height // bucket) * bucket, -(-width // bucket) * bucket)


def _round_up(x: float, m: int = STRIDE) -> int:
  return math.ceil(x / m - 1e-9) * m


def plan_levels(bucket: tuple[int, int], levels: int, granularity: int) -> LevelPlan:
  """Canvas shapes that hold level l of every image h × w of the bucket."""
  hb, wb = bucket
  lo_h, lo_w = max(hb - granularity + 1, 1), max(wb - granularity + 1, 1)
  # Scaled height is side · h / min(h, w): largest at h = H with the smallest w (and vice versa).
  rows_per_side = max(1.0, hb / lo_w)
  cols_per_side = max(1.0, wb / lo_h)
  canvases = tuple(
    (
      _round_up(level_side(lv) * rows_per_side),
      _round_up(level_side(lv) * cols_per_side),
    )
    for lv in range(levels)
  )
  top = level_side(levels - 1)
  reduce = max(1, int(min(lo_h, lo_w) // math.ceil(top)))
  return LevelPlan(bucket, granularity, canvases, reduce)


def scales(sizes: jax.Array, levels: int) -> jax.Array:
  """[N, L] scale of each level for images of true sizes [N, 2] (h, w)."""
  smaller = jnp.min(sizes, axis=-1).astype(jnp.float32)
  sides = jnp.asarray([level_side(lv) for lv in range(levels)], jnp.float32)
  return sides[None, :] / smaller[:, None]


def _box_reduce(images: jax.Array, f: int) -> jax.Array:
  """Mean over f × f blocks of [N, H, W, C] (edge-padded to multiples of f)."""
  if f == 1:
    return images
  n, h, w, c = images.shape
  hp, wp = -(-h // f) * f, -(-w // f) * f
  x = jnp.pad(images, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode='edge')
  return x.reshape(n, hp // f, f, wp // f, f, c).mean(axis=(2, 4))


def build_levels(images: jax.Array, level_scales: jax.Array, plan: LevelPlan) -> list[jax.Array]:
  """The pyramid: per level a normalised canvas [N, rows_l, cols_l, 3] (grey outside).

  Args:
    images: [N, H, W, 3] uint8 or float pixels in [0, 255], the bucket-padded images.
    level_scales: [N, L] from `scales`.
    plan: the bucket's `LevelPlan`.
  """
  small = _box_reduce(
    image_ops.normalize_pixels(images), plan.reduce
  )  # pixel i covers f·i … f·i+f-1
  f = float(plan.reduce)

  def one(image, scale, shape):
    s = jnp.stack([scale * f, scale * f])
    return jax.image.scale_and_translate(
      image, (*shape, 3), (0, 1), s, jnp.zeros(2), 'linear', antialias=True
    )

  return [
    jax.vmap(one, in_axes=(0, 0, None))(small, level_scales[:, lv], shape)
    for lv, shape in enumerate(plan.canvases)
  ]


def to_image(xy: jax.Array, scale: jax.Array) -> jax.Array:
  """Level pixel coordinates -> image pixel coordinates (pixel centres on integers)."""
  return (xy + 0.5) / scale[..., None] - 0.5


def to_level(xy: jax.Array, scale: jax.Array) -> jax.Array:
  """Image pixel coordinates -> level pixel coordinates."""
  return (xy + 0.5) * scale[..., None] - 0.5
