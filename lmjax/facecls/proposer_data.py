"""ProposalNet training data: the face classifier's windows plus box-regression targets.

A batch reuses the window samplers of `lmjax.facecls.data` (same face regions, negative cache,
rotation / flip / colour / grey / blur jitter and crop) at the proposer's window size, and adds
MTCNN's "part" windows:
  positive    IoU ≥ pos_min_iou with the face box       label 1, box target
  part        part_min_iou ≤ IoU < pos_min_iou           no label, box target
  partial     neg_min_iou ≤ IoU < neg_max_iou            label 0, no box target
  background  a square of a negative-cache image         label 0, no box target
The box target of a window is the face box relative to it, as ProposalNet predicts it
(`lmjax.models.proposal_net`): (x0, y0, x1, y1) of the face box minus those of the window, in
window sides, measured in the crop as the network sees it (after its rotation and flip; the
face box keeps its size and turns about the window centre with the crop). Every batch has
fixed shapes; `class_mask` / `has_target` say which loss applies to which window.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmjax.core import geometry
from lmjax.core.geometry import centred_boxes, iou
from lmjax.data.windows import first_ok
from lmjax.eval.proposals import BACKGROUND, PART, PARTIAL, POSITIVE, ROLLED  # window kinds
from lmjax.facecls import data as facecls_data
from lmjax.facecls.data import SampleParams
from lmjax.train.workdir import UserError

PART_FALLBACK_SCALE = 1.4  # the centred square of 1.4 × the box side: IoU ≈ 0.51 (square box)


@dataclasses.dataclass(frozen=True)
class ProposerParams:
  """Static sampler settings (hashable: a jit static argument).

  Attributes:
    windows: the face classifier's window and augmentation settings (size = 12).
    part_min_iou: smallest IoU of a part window (the largest is `windows.pos_min_iou`).
    part_max_scale: part windows: side max(w, h) × s, s log-uniform in 1/max..max.
    part_max_shift: part windows: centre shift ≤ this × the window side per axis.
  """

  windows: SampleParams
  part_min_iou: float
  part_max_scale: float
  part_max_shift: float


@dataclasses.dataclass(frozen=True)
class BatchCounts:
  """Static windows per step: positives come from the loop's face indices, the rest from
  random faces (part, partial) and random negative-cache images (background)."""

  positives: int
  part: int
  partial: int
  background: int


def proposer_params(config: ml_collections.ConfigDict) -> ProposerParams:
  """`ProposerParams` of a proposer config (`configs/proposer.py`); `UserError` (one line at
  the command line) for inconsistent window settings."""
  w = config.windows
  if not w.neg_max_iou <= w.part_min_iou < w.pos_min_iou:
    raise UserError(
      f'config.windows: need neg_max_iou ({w.neg_max_iou}) <= part_min_iou ({w.part_min_iou}) '
      f'< pos_min_iou ({w.pos_min_iou})'
    )
  if w.part_max_scale < 1 or w.part_max_shift < 0:
    raise UserError(
      f'config.windows: need part_max_scale ≥ 1 (got {w.part_max_scale}) and part_max_shift ≥ 0 '
      f'(got {w.part_max_shift})'
    )
  return ProposerParams(
    windows=facecls_data.sample_params(config),
    part_min_iou=w.part_min_iou,
    part_max_scale=w.part_max_scale,
    part_max_shift=w.part_max_shift,
  )


def batch_counts(config: ml_collections.ConfigDict) -> BatchCounts:
  """Windows per step of a proposer config; a one-line error when they do not add up."""
  b = config.batch
  background = config.batch_size - b.positives - b.part - b.partial
  if min(b.positives, b.part, b.partial, background) < 0 or b.positives == 0:
    raise UserError(
      f'config.batch: positives ({b.positives}, > 0) + part ({b.part}) + partial '
      f'({b.partial}) must not exceed batch_size ({config.batch_size})'
    )
  return BatchCounts(b.positives, b.part, b.partial, background)


def box_offsets(windows: jax.Array, boxes: jax.Array) -> jax.Array:
  """[..., 4] offsets of face `boxes` [..., 4] from square `windows` [..., 4], in window sides."""
  side = windows[..., 2:3] - windows[..., 0:1]
  return (boxes - windows) / side


def crop_offsets(
  windows: jax.Array, boxes: jax.Array, angle: jax.Array, flip: jax.Array
) -> jax.Array:
  """The box targets [N, 4] of crops of `windows` [N, 4] turned by `angle` [N], mirrored by `flip`.

  The face box centre turns with the crop about the window centre (then mirrors); its width
  and height stay. With angle 0 and no flip this is `box_offsets`.
  """
  w_centre, side = geometry.box_centre_side(windows)
  b_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
  d = (b_centre - w_centre) / side[:, None]  # face centre from the window centre, in sides
  c, s = jnp.cos(angle), jnp.sin(angle)
  dx, dy = c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]
  dx = jnp.where(flip, -dx, dx)
  half = (boxes[:, 2:] - boxes[:, :2]) / (2 * side[:, None])
  centre = jnp.stack([dx, dy], axis=-1)
  return jnp.concatenate([centre - half + 0.5, centre + half - 0.5], axis=-1)


def part_windows(key: jax.Array, boxes: jax.Array, pp: ProposerParams) -> jax.Array:
  """[N, 4] squares with part_min_iou ≤ IoU < pos_min_iou to `boxes` [N, 4].

  Candidates: side max(w, h) × s (s log-uniform in 1/part_max_scale..part_max_scale), centre
  shifted by ≤ part_max_shift × side per axis; fallback the centred square of 1.4 × the side
  (in range for boxes of aspect ≥ 0.8; callers take the box target from the actual IoU).
  """
  n, t = boxes.shape[0], pp.windows.tries
  centre, side = geometry.box_centre_side(boxes)
  k_scale, k_shift = jax.random.split(key)
  log_range = jnp.log(pp.part_max_scale)
  log_s = jax.random.uniform(k_scale, (n, t), minval=-log_range, maxval=log_range)
  sides = side[:, None] * jnp.exp(log_s)
  shift = jax.random.uniform(
    k_shift, (n, t, 2), minval=-pp.part_max_shift, maxval=pp.part_max_shift
  )
  candidates = centred_boxes(centre[:, None] + shift * sides[..., None], sides)  # [N, T, 4]
  overlap = iou(candidates, boxes[:, None])
  ok = (overlap >= pp.part_min_iou) & (overlap < pp.windows.pos_min_iou)
  return first_ok(candidates, ok, centred_boxes(centre, PART_FALLBACK_SCALE * side))


def face_windows(
  key: jax.Array, boxes: jax.Array, kinds: np.ndarray, region_size: int, pp: ProposerParams
) -> jax.Array:
  """[N, 4] windows of `boxes` [N, 4], window i of kind `kinds[i]` (static: POSITIVE, PART,
  PARTIAL or ROLLED, a positive window)."""
  k_pos, k_part, k_partial = jax.random.split(key, 3)
  p, kinds = pp.windows, np.asarray(kinds)
  samplers = {
    POSITIVE: lambda: facecls_data.positive_windows(k_pos, boxes, p),
    ROLLED: lambda: facecls_data.positive_windows(k_pos, boxes, p),
    PART: lambda: part_windows(k_part, boxes, pp),
    PARTIAL: lambda: facecls_data.partial_windows(k_partial, boxes, region_size, p),
  }
  present = [int(k) for k in np.unique(kinds)]  # static: only these samplers are traced
  out = samplers[present[0]]()
  for kind in present[1:]:
    out = jnp.where(jnp.asarray(kinds == kind)[:, None], samplers[kind](), out)
  return out


def _face_batch(key, regions, boxes, kinds, pp: ProposerParams, p: SampleParams, angle=None):
  """Crops, box targets and has-target mask of face windows of static `kinds` (`angle`:
  optional rotations [N] instead of drawn ones)."""
  k_win, k_crop = jax.random.split(key)
  windows = face_windows(k_win, boxes, kinds, regions.shape[1], pp)
  crops, angle, flip = facecls_data.crop_batch_with_geometry(k_crop, regions, windows, p, angle)
  targets = crop_offsets(windows, boxes, angle, flip)
  has_target = iou(windows, boxes) >= pp.part_min_iou
  return crops, targets, has_target


def train_batch(
  key: jax.Array,
  data: dict[str, jax.Array],
  idx: jax.Array,
  counts: BatchCounts,
  pp: ProposerParams,
) -> dict[str, jax.Array]:
  """One training batch (jittable): positives of faces `idx`, part, partial, background.

  Args:
    key: PRNG key of this step.
    data: `regions` uint8 [N, R, R, 3], `bbox` [N, 4] (region pixels), `negatives` uint8
      [M, Sn, Sn, 3].
    idx: int [counts.positives] faces of the positives.
    counts: static windows per kind.
    pp: sampler settings.

  Returns:
    {'images' float32 [B, S, S, 3] (x / 128 - 1), 'labels' float32 [B] (1 = face),
     'class_mask' bool [B] (False: part windows, no class loss), 'targets' float32 [B, 4],
     'has_target' bool [B] (IoU ≥ part_min_iou: positives and part windows)}.
  """
  k_idx, k_face, k_bidx, k_bg, k_crop_bg = jax.random.split(key, 5)
  regions, bbox = data['regions'], data['bbox']
  num_other = counts.part + counts.partial
  other = jax.random.randint(k_idx, (num_other,), 0, regions.shape[0])
  face_idx = jnp.concatenate([idx, other])
  kinds = np.repeat([POSITIVE, PART, PARTIAL], [counts.positives, counts.part, counts.partial])
  crops, targets, has_target = _face_batch(
    k_face, regions[face_idx], bbox[face_idx], kinds, pp, pp.windows
  )
  images, target_list, has_list = [crops], [targets], [has_target]
  if counts.background:
    negatives = data['negatives']
    bg_idx = jax.random.randint(k_bidx, (counts.background,), 0, negatives.shape[0])
    bg_windows = facecls_data.background_windows(
      k_bg, counts.background, negatives.shape[1], pp.windows
    )
    images.append(facecls_data.crop_batch(k_crop_bg, negatives[bg_idx], bg_windows, pp.windows))
    target_list.append(jnp.zeros((counts.background, 4), jnp.float32))
    has_list.append(jnp.zeros((counts.background,), bool))
  all_kinds = np.concatenate([kinds, np.full(counts.background, BACKGROUND)])
  return {
    'images': jnp.concatenate(images),
    'labels': jnp.asarray(all_kinds == POSITIVE, jnp.float32),
    'class_mask': jnp.asarray(all_kinds != PART),
    'targets': jnp.concatenate(target_list),
    'has_target': jnp.concatenate(has_list),
  }


def validation_set(
  regions: np.ndarray, bbox: np.ndarray, negatives: np.ndarray, pp: ProposerParams, chunk: int
) -> dict[str, np.ndarray]:
  """Fixed validation crops (fixed key): per held-out face a positive, a part, a partial and a
  rolled positive window (turned by up to ± rotation_deg), plus every negative image whole.

  Only the rolled positives are rotated; nothing is flipped, colour-jittered or blurred.
  Returns {'crops' float32 [V, S, S, 3], 'kinds' int [V] (POSITIVE, PARTIAL, BACKGROUND, PART,
  ROLLED), 'targets' float32 [V, 4], 'has_target' bool [V]}.
  """
  still = pp.windows.without_jitter()
  max_rad = np.radians(pp.windows.rotation_deg)
  key = jax.random.key(1)
  upright = np.array([POSITIVE, PART, PARTIAL])

  @jax.jit
  def faces(k, reg, box):
    n = reg.shape[0]
    k_batch, k_roll = jax.random.split(k)
    kinds = np.repeat([*upright, ROLLED], n)
    roll = jax.random.uniform(k_roll, (n,), minval=-max_rad, maxval=max_rad)
    angle = jnp.concatenate([jnp.zeros(3 * n), roll])
    reg, box = jnp.tile(reg, (4, 1, 1, 1)), jnp.tile(box, (4, 1))  # one copy per kind
    return _face_batch(k_batch, reg, box, kinds, pp, still, angle)

  parts = {'crops': [], 'kinds': [], 'targets': [], 'has_target': []}
  for start in range(0, len(regions), chunk):
    n = min(chunk, len(regions) - start)
    out = faces(jax.random.fold_in(key, start), regions[start : start + n], bbox[start : start + n])
    for name, value in zip(('crops', 'targets', 'has_target'), out, strict=True):
      parts[name].append(np.asarray(value))
    parts['kinds'].append(np.repeat([*upright, ROLLED], n))
  size = negatives.shape[1]
  whole = np.tile(np.float32([-0.5, -0.5, size - 0.5, size - 0.5]), (len(negatives), 1))
  crop_neg = jax.jit(lambda im, w: facecls_data.crop_batch(key, im, w, still))
  for s in range(0, len(negatives), chunk):
    parts['crops'].append(np.asarray(crop_neg(negatives[s : s + chunk], whole[s : s + chunk])))
  m = len(negatives)
  parts['kinds'].append(np.full(m, BACKGROUND))
  parts['targets'].append(np.zeros((m, 4), np.float32))
  parts['has_target'].append(np.zeros(m, bool))
  out = {k: np.concatenate(v) for k, v in parts.items()}
  out['kinds'] = out['kinds'].astype(np.int32)
  return out
