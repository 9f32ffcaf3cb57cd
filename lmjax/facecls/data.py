"""Face-classifier training data: window samplers and jittable batches of 24 × 24 crops.

Three kinds of square windows (boxes x0 y0 x1 y1), each drawn by a fixed-shape rejection
sampler (`tries` candidates per window from a stateless key; the first that qualifies is kept,
else a fallback that always qualifies):
  positive    IoU ≥ pos_min_iou with the face box (label 1)
  partial     neg_min_iou ≤ IoU < neg_max_iou with the face box and inside the cached face
              region (label 0); candidates mix three modes (`PARTIAL_MODES`): shifted by
              0.3-1 × their side, too small (an eye, a mouth), too large (the face a small
              part of the window)
  background  a random square of a negative-cache image (label 0)
Every window is rotated (± rotation_deg), flipped, colour-jittered, sometimes turned grey (and
blurred, `blur_prob`: off for the classifier) and cut with `lmjax.core.mipmap.crop_windows` (the
inference crop), inside the jitted step from the device-resident regions and negative cache.
Crops are float32 [S, S, 3], x / 128 - 1.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmjax.core import geometry, image_ops
from lmjax.core.geometry import centred_boxes, iou
from lmjax.core.mipmap import crop_windows
from lmjax.data import windows as window_sampler
from lmjax.data.negatives import build_negative_cache
from lmjax.data.windows import first_ok

# Partial-window modes: (side / box side range, log-uniform; centre offset description).
PARTIAL_MODES = (
  (0.7, 1.4),  # shifted: centre 0.3-1 × the window side away, in a random direction
  (0.22, 0.55),  # too small: centre anywhere on the box
  (1.85, 3.0),  # too large: centre within ± 0.25 × the window side
)
FALLBACK_SCALE = 2.2  # the centred square of 2.2 × the box side: IoU ≈ 0.21 for a square box


@dataclasses.dataclass(frozen=True)
class SampleParams:
  """Static window and augmentation settings (hashable: a jit static argument)."""

  size: int
  supersample: int
  pos_min_iou: float
  pos_max_scale: float
  pos_max_shift: float
  neg_min_iou: float
  neg_max_iou: float
  tries: int
  background_min_crop: float
  rotation_deg: float
  flip_prob: float
  brightness: float
  contrast_range: tuple[float, float]
  gray_prob: float
  blur_prob: float = 0.0

  def without_jitter(self) -> SampleParams:
    """The validation setting: random windows, but no rotation, flip, colour change or blur."""
    still = dict(rotation_deg=0.0, flip_prob=0.0, brightness=0.0, gray_prob=0.0, blur_prob=0.0)
    return dataclasses.replace(self, **still, contrast_range=(1.0, 1.0))


def sample_params(config: ml_collections.ConfigDict) -> SampleParams:
  w, a = config.windows, config.aug
  if not 0 < w.neg_min_iou < w.neg_max_iou <= w.pos_min_iou < 1:
    raise ValueError('windows: need 0 < neg_min_iou < neg_max_iou <= pos_min_iou < 1')
  if config.input.region_scale < FALLBACK_SCALE:
    raise ValueError(f'input.region_scale must be ≥ {FALLBACK_SCALE} (room for partial windows)')
  return SampleParams(
    size=config.model.size,
    supersample=config.model.supersample,
    pos_min_iou=w.pos_min_iou,
    pos_max_scale=w.pos_max_scale,
    pos_max_shift=w.pos_max_shift,
    neg_min_iou=w.neg_min_iou,
    neg_max_iou=w.neg_max_iou,
    tries=w.tries,
    background_min_crop=config.negatives.min_crop,
    rotation_deg=a.rotation_deg,
    flip_prob=a.flip_prob,
    brightness=a.brightness,
    contrast_range=(a.contrast_min, a.contrast_max),
    gray_prob=a.gray_prob,
    blur_prob=a.get('blur_prob', 0.0),
  )


def positive_windows(key: jax.Array, boxes: jax.Array, p: SampleParams) -> jax.Array:
  """[N, 4] squares with IoU > pos_min_iou to `boxes` [N, 4] (fallback: the box's square)."""
  return window_sampler.positive_windows(
    key, boxes, max_scale=p.pos_max_scale, max_shift=p.pos_max_shift, tries=p.tries,
    min_iou=p.pos_min_iou,
  )  # fmt: skip


def partial_windows(
  key: jax.Array, boxes: jax.Array, region_size: int, p: SampleParams
) -> jax.Array:
  """[N, 4] squares with neg_min_iou ≤ IoU < neg_max_iou to `boxes` [N, 4], inside the region.

  Args:
    key: PRNG key.
    boxes: [N, 4] face boxes in region pixels.
    region_size: side of the cached regions (candidates must lie within them).
    p: sampler settings.
  """
  n, t = boxes.shape[0], p.tries
  centre, side = geometry.box_centre_side(boxes)
  k_mode, k_side, k_dir, k_mag, k_off = jax.random.split(key, 5)
  mode = jax.random.randint(k_mode, (n, t), 0, len(PARTIAL_MODES))
  log_range = jnp.log(jnp.asarray(PARTIAL_MODES, jnp.float32))[mode]  # [N, T, 2]
  u = jax.random.uniform(k_side, (n, t))
  sides = side[:, None] * jnp.exp(log_range[..., 0] + u * (log_range[..., 1] - log_range[..., 0]))
  theta = jax.random.uniform(k_dir, (n, t), maxval=2 * math.pi)
  magnitude = jax.random.uniform(k_mag, (n, t), minval=0.3, maxval=1.0) * sides
  shifted = magnitude[..., None] * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
  u_off = jax.random.uniform(k_off, (n, t, 2), minval=-0.5, maxval=0.5)
  small = u_off * side[:, None, None]  # anywhere on the box
  large = 0.5 * u_off * sides[..., None]  # ± 0.25 × the window side
  offset = jnp.select([mode[..., None] == 0, mode[..., None] == 1], [shifted, small], large)
  candidates = centred_boxes(centre[:, None] + offset, sides)  # [N, T, 4]
  overlap = iou(candidates, boxes[:, None])
  ok = (overlap >= p.neg_min_iou) & (overlap < p.neg_max_iou)
  lo, hi = -0.5, region_size - 0.5
  ok &= jnp.all(candidates >= lo, axis=-1) & jnp.all(candidates <= hi, axis=-1)
  return first_ok(candidates, ok, centred_boxes(centre, FALLBACK_SCALE * side))


def background_windows(key: jax.Array, n: int, image_size: int, p: SampleParams) -> jax.Array:
  """[n, 4] random squares of background_min_crop..1 × the side of an `image_size` image."""
  k_side, k_pos = jax.random.split(key)
  side = jax.random.uniform(k_side, (n,), minval=p.background_min_crop, maxval=1.0) * image_size
  lo = jax.random.uniform(k_pos, (n, 2)) * (image_size - side[:, None]) - 0.5
  return jnp.concatenate([lo, lo + side[:, None]], axis=-1)


def crop_batch(key: jax.Array, images: jax.Array, windows: jax.Array, p: SampleParams) -> jax.Array:
  """Window i of image i [B, H, W, 3] (uint8), rotated / flipped / jittered -> [B, S, S, 3].

  Returns float32 crops scaled as x / 128 - 1.
  """
  return crop_batch_with_geometry(key, images, windows, p)[0]


def crop_batch_with_geometry(
  key: jax.Array,
  images: jax.Array,
  windows: jax.Array,
  p: SampleParams,
  angle: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`crop_batch`, also returning the rotation and flip of each crop.

  `angle` [B] (radians) replaces the drawn rotations (`p.rotation_deg` is then unused).

  Returns:
    crops float32 [B, S, S, 3] (x / 128 - 1), angle [B] (radians, about the window centre;
    positive turns +x towards +y, `lmjax.core.geometry.rotation_about`: a point at d from the
    window centre appears at R(angle) d in the crop) and flip bool [B] (mirrored after rotating).
  """
  b = images.shape[0]
  k_rot, k_flip, k_bright, k_contrast, k_gray = jax.random.split(key, 5)
  max_rad = math.radians(p.rotation_deg)
  if angle is None:
    angle = jax.random.uniform(k_rot, (b,), minval=-max_rad, maxval=max_rad)
  flip = jax.random.bernoulli(k_flip, p.flip_prob, (b,))
  centre, side = geometry.box_centre_side(windows)

  def one(image, c, s, a, f):
    return crop_windows(
      image, c[None], s[None], size=p.size, supersample=p.supersample, angle=a[None], flip=f[None]
    )[0]

  crops = jax.vmap(one)(images, centre, side, angle, flip)  # [B, S, S, 3] pixels
  if p.brightness > 0 or p.contrast_range != (1.0, 1.0):
    shift = jax.random.uniform(k_bright, (b, 1, 1, 1), minval=-p.brightness, maxval=p.brightness)
    lo, hi = p.contrast_range
    contrast = jax.random.uniform(k_contrast, (b, 1, 1, 1), minval=lo, maxval=hi)
    mean = crops.mean(axis=(1, 2, 3), keepdims=True)
    crops = jnp.clip((crops - mean) * contrast + mean + shift, 0.0, 255.0)
  if p.gray_prob > 0:
    gray = jax.random.bernoulli(k_gray, p.gray_prob, (b, 1, 1, 1))
    crops = jnp.where(gray, image_ops.rgb_to_grey(crops), crops)
  if p.blur_prob > 0:  # a key of its own: the draws above stay those of blur-free settings
    crops = random_blur(jax.random.fold_in(key, 1), crops, p.blur_prob)
  return image_ops.normalize_pixels(crops), angle, flip


def random_blur(key: jax.Array, crops: jax.Array, prob: float) -> jax.Array:
  """Crops [B, S, S, C] blurred with probability `prob`, each by a random amount.

  The amount u ~ U(0, 2) blends the crop with its 1 and 2 passes of a [1, 2, 1] / 4 binomial
  filter (edge pixels repeated): u = 1 is a Gaussian of σ ≈ 0.7 crop pixels, u = 2 of σ = 1.
  """
  k_on, k_amount = jax.random.split(key)
  b = crops.shape[0]
  on = jax.random.bernoulli(k_on, prob, (b, 1, 1, 1))
  amount = jnp.where(on, jax.random.uniform(k_amount, (b, 1, 1, 1), maxval=2.0), 0.0)

  def binomial(x):
    for axis in (1, 2):
      pad = [(0, 0)] * 4
      pad[axis] = (1, 1)
      xp = jnp.pad(x, pad, mode='edge')
      n = x.shape[axis]
      x = (
        jax.lax.slice_in_dim(xp, 0, n, axis=axis)
        + 2 * jax.lax.slice_in_dim(xp, 1, n + 1, axis=axis)
        + jax.lax.slice_in_dim(xp, 2, n + 2, axis=axis)
      ) / 4
    return x

  once = binomial(crops)
  twice = binomial(once)
  low = crops + jnp.clip(amount, 0, 1) * (once - crops)
  return jnp.where(amount > 1, once + (amount - 1) * (twice - once), low)


def train_batch(
  key: jax.Array,
  data: dict[str, jax.Array],
  idx: jax.Array,
  num_partial: int,
  num_background: int,
  p: SampleParams,
) -> tuple[jax.Array, jax.Array]:
  """One training batch (jittable): positives of faces `idx`, then partial, then background.

  Args:
    key: PRNG key of this step.
    data: `regions` uint8 [N, R, R, 3], `bbox` [N, 4] (region pixels), `negatives` uint8
      [M, Sn, Sn, 3].
    idx: int [B_pos] faces of the positives; partial windows come from random faces.
    num_partial: static number of partial-face negatives.
    num_background: static number of background negatives.
    p: sampler settings.

  Returns:
    images float32 [B, S, S, 3] (x / 128 - 1) and labels float32 [B] (1 = face).
  """
  k_pos, k_pidx, k_part, k_bidx, k_bg, k_crop, k_crop_bg = jax.random.split(key, 7)
  regions, bbox = data['regions'], data['bbox']
  face_idx = jnp.concatenate([idx, jax.random.randint(k_pidx, (num_partial,), 0, regions.shape[0])])
  windows = jnp.concatenate(
    [
      positive_windows(k_pos, bbox[idx], p),
      partial_windows(k_part, bbox[face_idx[idx.shape[0] :]], regions.shape[1], p),
    ]
  )
  images = [crop_batch(k_crop, regions[face_idx], windows, p)]
  if num_background:
    negatives = data['negatives']
    bg_idx = jax.random.randint(k_bidx, (num_background,), 0, negatives.shape[0])
    bg_windows = background_windows(k_bg, num_background, negatives.shape[1], p)
    images.append(crop_batch(k_crop_bg, negatives[bg_idx], bg_windows, p))
  labels = (jnp.arange(idx.shape[0] + num_partial + num_background) < idx.shape[0]).astype(
    jnp.float32
  )
  return jnp.concatenate(images), labels


def validation_set(
  regions: np.ndarray, bbox: np.ndarray, negatives: np.ndarray, p: SampleParams, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
  """Fixed validation crops: one positive and one partial window per face, plus every negative.

  Windows are drawn with a fixed key, without rotation, flip or colour jitter; a negative is
  its whole image. Returns crops float32 [2 N + M, S, S, 3] and kinds int [2 N + M]
  (0 = positive, 1 = partial, 2 = background).
  """
  p = p.without_jitter()
  key = jax.random.key(1)

  @jax.jit
  def faces(k, reg, box):
    k_pos, k_part, k_crop = jax.random.split(k, 3)
    windows = jnp.concatenate(
      [positive_windows(k_pos, box, p), partial_windows(k_part, box, reg.shape[1], p)]
    )
    return crop_batch(k_crop, jnp.concatenate([reg, reg]), windows, p)

  pos, part = [], []
  for start in range(0, len(regions), chunk):
    n = min(chunk, len(regions) - start)
    crops = np.asarray(
      faces(jax.random.fold_in(key, start), regions[start : start + n], bbox[start : start + n])
    )
    pos.append(crops[:n])
    part.append(crops[n:])
  size = negatives.shape[1]
  whole = np.tile(np.float32([-0.5, -0.5, size - 0.5, size - 0.5]), (len(negatives), 1))
  crop_neg = jax.jit(lambda im, w: crop_batch(key, im, w, p))
  neg = [
    np.asarray(crop_neg(negatives[s : s + chunk], whole[s : s + chunk]))
    for s in range(0, len(negatives), chunk)
  ]
  crops = np.concatenate([*pos, *part, *neg])
  kinds = np.repeat([0, 1, 2], [len(regions), len(regions), len(negatives)]).astype(np.int32)
  return crops, kinds


def negative_cache(config: ml_collections.ConfigDict, exclude_ids: set[str]) -> np.ndarray:
  """uint8 [M, Sn, Sn, 3]: the BB-FCN negative cache cut at `negatives.size` pixels."""
  shim = ml_collections.ConfigDict(
    {
      'data': config.data.to_dict(),
      'negatives': config.negatives.to_dict(),
      'model': {'refine_size': config.negatives.size, 'num_points': config.model.num_points},
    }
  )
  return build_negative_cache(shim, exclude_ids, config.seed)
