"""On-device training augmentation of face regions: jittable, fixed shapes, one resampling.

Training keeps the whole dataset as face regions (`lmjax.core.image_ops.extract_region`,
stacked with `lmjax.core.image_ops.stack_regions`), possibly on the accelerator. Each step turns
a batch of regions into MCL crops inside `jax.jit`, following the MCL paper's order:

  1. rotate the region about the face-box centre (uniform in ±`rotation_deg`);
  2. optionally (`rebox`) replace the box by the tight box of the rotated landmarks — the 300-W
     protocol box; otherwise the box keeps its centre and size;
  3. scale the box's longer side (uniform in `scale_range`) and translate its centre (uniform in
     ±`translate` × the longer side, per axis);
  4. MCL crop: the square of `crop_scale` × that side, resampled to S × S;
  5. horizontal flip with the landmark permutation (probability `flip_prob`);
  6. brightness / contrast jitter (JPEG re-compression is host-only:
     `lmjax.core.image_ops.jpeg_recompress`).

Steps 1–5 are composed into ONE affine per example and the crop is sampled ONCE from the region
with the device sampler `lmjax.core.sampling.warp_affine` (bilinear, border value 128 outside
the region). Randomness comes from one key per
example, `jax.random.fold_in(base_key, example_seed)`: the same seed gives the same sample.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lmjax.core import geometry, image_ops, sampling


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """Augmentation hyper-parameters (hashable: usable as a static jit argument).

  Attributes:
    size: S, the crop size.
    crop_scale: MCL crop side / longer face-box side.
    grayscale: convert RGB regions to grey (BT.601 luma); grey regions pass through.
    normalize: return pixels scaled as `x / 128 - 1`; otherwise raw float values in [0, 255].
    rotation_deg: rotation angle uniform in ±rotation_deg degrees.
    rebox: after rotating, use the tight box of the rotated landmarks as the face box (right
      when the protocol box is the tight landmark box, as on 300-W; wrong for COFW/AFLW boxes).
    scale_range: uniform factor on the box's longer side.
    translate: box-centre shift, uniform in ±translate × the longer side, per axis.
    flip_prob: probability of a horizontal flip (needs a flip permutation).
    brightness: additive shift uniform in ±brightness grey levels.
    contrast_range: uniform factor on the deviation from the crop's mean grey level.
  """

  size: int = geometry.MCL_CROP_SIZE
  crop_scale: float = geometry.MCL_CROP_SCALE
  grayscale: bool = True
  normalize: bool = True
  rotation_deg: float = 18.0
  rebox: bool = False
  scale_range: tuple[float, float] = (0.9, 1.1)
  translate: float = 0.05
  flip_prob: float = 0.5
  brightness: float = 0.2 * 128
  contrast_range: tuple[float, float] = (0.8, 1.2)

  def __post_init__(self):
    if self.size < 1 or self.crop_scale <= 0:
      raise ValueError(f'bad crop geometry: size={self.size}, crop_scale={self.crop_scale}')
    for name in ('scale_range', 'contrast_range'):
      lo, hi = getattr(self, name)
      if not 0 < lo <= hi:
        raise ValueError(f'{name} must satisfy 0 < lo <= hi, got {(lo, hi)}')
    if not 0 <= self.flip_prob <= 1:
      raise ValueError(f'flip_prob must be in [0, 1], got {self.flip_prob}')
    if min(self.rotation_deg, self.translate, self.brightness) < 0:
      raise ValueError('rotation_deg, translate and brightness must be >= 0')

  @classmethod
  def none(
    cls,
    size: int = geometry.MCL_CROP_SIZE,
    crop_scale: float = geometry.MCL_CROP_SCALE,
    grayscale: bool = True,
    normalize: bool = True,
  ) -> AugmentParams:
    """Evaluation setting: no randomness, the plain MCL crop of the given box."""
    return cls(
      size=size,
      crop_scale=crop_scale,
      grayscale=grayscale,
      normalize=normalize,
      rotation_deg=0.0,
      rebox=False,
      scale_range=(1.0, 1.0),
      translate=0.0,
      flip_prob=0.0,
      brightness=0.0,
      contrast_range=(1.0, 1.0),
    )

  @property
  def jitters_pixels(self) -> bool:
    """Whether brightness / contrast jitter is on (decided statically, at trace time)."""
    return self.brightness > 0 or self.contrast_range != (1.0, 1.0)


class AugmentDraw(NamedTuple):
  """The random values of one example (scalars; a leading [B] axis when batched)."""

  angle: jax.Array  # radians
  scale: jax.Array
  shift: jax.Array  # [2], fraction of the longer box side
  flip: jax.Array  # bool
  brightness: jax.Array
  contrast: jax.Array


def required_region_scale(params: AugmentParams) -> float:
  """Smallest `region_scale` for which no crop of `params` reads outside the region.

  A bound for landmarks inside the face box: the crop square, rotated back into the region,
  stays within the region square around the box centre. 1.65 for the defaults, 2.08 with
  `rebox=True`.
  """
  theta = math.radians(params.rotation_deg)
  spread = abs(math.cos(theta)) + abs(math.sin(theta))  # growth of a rotated square's extent
  side = spread if params.rebox else 1.0  # longer side of the (re)box / original longer side
  half = params.crop_scale * params.scale_range[1] * side / 2 + params.translate * side
  return 2 * half * spread


def sample_draw(key: jax.Array, params: AugmentParams) -> AugmentDraw:
  """Draws the random values of one example from `key`."""
  k_rot, k_scale, k_shift, k_flip, k_bright, k_contrast = jax.random.split(key, 6)
  uniform = jax.random.uniform
  max_rad = math.radians(params.rotation_deg)
  return AugmentDraw(
    angle=uniform(k_rot, (), minval=-max_rad, maxval=max_rad),
    scale=uniform(k_scale, (), minval=params.scale_range[0], maxval=params.scale_range[1]),
    shift=uniform(k_shift, (2,), minval=-params.translate, maxval=params.translate),
    flip=jax.random.bernoulli(k_flip, params.flip_prob),
    brightness=uniform(k_bright, (), minval=-params.brightness, maxval=params.brightness),
    contrast=uniform(
      k_contrast, (), minval=params.contrast_range[0], maxval=params.contrast_range[1]
    ),
  )


def augment_affine(
  landmarks: jax.Array, bbox: jax.Array, draw: AugmentDraw, params: AugmentParams
) -> jax.Array:
  """The single [2, 3] affine (region -> crop pixels) of one example.

  Args:
    landmarks: [K, 2] landmarks in region pixels (used when `params.rebox`).
    bbox: [4] face box in region pixels.
    draw: the example's random values.
    params: augmentation settings.

  Returns:
    [2, 3] float32 affine; flipping is included as `x' = (S-1) - x`.
  """
  centre, side = geometry.box_centre_side(jnp.asarray(bbox, jnp.float32))
  rotate = geometry.rotation_about(centre, draw.angle)  # [2, 3]
  if params.rebox:
    rotated = geometry.apply_affine(landmarks.astype(jnp.float32), rotate)  # [K, 2]
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    centre, side = (lo + hi) / 2, jnp.max(hi - lo)
  crop_centre = centre + draw.shift * side
  crop = geometry.square_affine(crop_centre, params.crop_scale * draw.scale * side, params.size)
  last = params.size - 1.0
  mirror = jnp.array([[-1.0, 0.0, last], [0.0, 1.0, 0.0]])
  crop = jnp.where(draw.flip, geometry.compose_affine(mirror, crop), crop)
  return geometry.compose_affine(crop, rotate)


def _jitter_pixels(crop: jax.Array, draw: AugmentDraw) -> jax.Array:
  """Contrast about the crop mean, then brightness; clipped to [0, 255]. [S, S, C]."""
  mean = crop.mean()
  return jnp.clip((crop - mean) * draw.contrast + mean + draw.brightness, 0.0, 255.0)


def apply_draw(
  region: jax.Array,
  landmarks: jax.Array,
  bbox: jax.Array,
  draw: AugmentDraw,
  params: AugmentParams,
  flip_perm: Sequence[int] | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Deterministic part of `augment_crop`: crop and landmarks for given random values."""
  A = augment_affine(landmarks, bbox, draw, params)
  if params.grayscale and region.shape[-1] == 3:
    # [R, R, 1]; converting before sampling gathers 1 channel instead of 3 (2× faster)
    region = image_ops.rgb_to_grey(region)
  crop = sampling.warp_affine(region, A, params.size)  # [S, S, C]
  if params.jitters_pixels:
    crop = _jitter_pixels(crop, draw)
  if params.normalize:
    crop = image_ops.normalize_pixels(crop)
  points = geometry.apply_affine(landmarks.astype(jnp.float32), A)  # [K, 2]
  if flip_perm is not None:
    points = jnp.where(draw.flip, points[jnp.asarray(flip_perm)], points)
  return crop, points


def augment_crop(
  region: jax.Array,
  landmarks: jax.Array,
  bbox: jax.Array,
  key: jax.Array,
  params: AugmentParams,
  flip_perm: Sequence[int] | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Random MCL training crop of one face region (jittable; `params` must be static).

  Args:
    region: uint8 [R, R, C] face region (`lmjax.core.image_ops.extract_region`).
    landmarks: [K, 2] landmarks in region pixels.
    bbox: [4] face box in region pixels.
    key: PRNG key of this example.
    params: augmentation settings (`AugmentParams.none()` for evaluation).
    flip_perm: [K] flip permutation of the landmark schema; required when flipping.

  Returns:
    crop: float32 [S, S, C'] (C' = 1 when `params.grayscale`), scaled as `x / 128 - 1` when
      `params.normalize`, else in [0, 255].
    landmarks: float32 [K, 2] in crop pixels.
  """
  if flip_perm is None and params.flip_prob > 0:
    raise ValueError('flip_prob > 0 needs the flip permutation of the landmark schema')
  draw = sample_draw(key, params)
  return apply_draw(region, landmarks, bbox, draw, params, flip_perm)


def augment_batch(
  regions: jax.Array,
  landmarks: jax.Array,
  bboxes: jax.Array,
  base_key: jax.Array,
  seeds: jax.Array,
  params: AugmentParams,
  flip_perm: Sequence[int] | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """`augment_crop` over a batch with one key per example, `fold_in(base_key, seed)`.

  Args:
    regions: uint8 [B, R, R, C].
    landmarks: [B, K, 2] in region pixels.
    bboxes: [B, 4] in region pixels.
    base_key: PRNG key shared by the batch (e.g. the run's augmentation key).
    seeds: int [B] per-example seeds (e.g. a global example counter, or
      `epoch * N + dataset_index`); equal seeds give equal samples.
    params: augmentation settings.
    flip_perm: [K] flip permutation.

  Returns:
    crops float32 [B, S, S, C'] and landmarks float32 [B, K, 2] in crop pixels.
  """
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base_key, seeds)
  one = lambda r, lm, b, k: augment_crop(r, lm, b, k, params, flip_perm)
  return jax.vmap(one)(regions, landmarks, bboxes, keys)


def make_augmenter(
  params: AugmentParams, flip_perm: Sequence[int] | None = None
) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """Jitted `augment_batch` with `params` and `flip_perm` bound.

  Returns:
    `fn(regions, landmarks, bboxes, base_key, seeds) -> (crops, landmarks)`.
  """
  perm = None if flip_perm is None else tuple(int(i) for i in flip_perm)
  return jax.jit(lambda r, lm, b, key, seeds: augment_batch(r, lm, b, key, seeds, params, perm))
