"""Metrics of landmarks tracked through a video against per-frame ground truth.

Shared by the 300-VW evaluation (`lmjax.eval.tracking`) and `benchmarks/video_tracking.py`.
A tracked sequence is `points` [T, K, 2] with NaN rows on the frames where no reported face
matches the annotated one (`best_match`: the face whose box overlaps the true box most, IoU >=
`MATCH_IOU`); such frames are *missed*.

  nme      per frame: mean point-to-point error / normalising distance of the truth (ratio;
           NaN on missed frames).
  jitter   per pair of consecutive frames both found: the mean over points of the change of the
           error vector from one frame to the next, / the later frame's normalising distance
           (a still error gives 0, however large).
  lag      per moving frame (centroid speed > 0.5 px/frame): the centroid error along the
           direction of motion / the speed, in frames (> 0: behind the truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.core.geometry import box_iou
from lmjax.core.landmarks import Schema
from lmjax.eval import metrics as metrics_lib

MATCH_IOU = 0.3
MOVING_SPEED = 0.5  # pixels per frame


def best_match(boxes: Sequence[np.ndarray], truth_box: np.ndarray, min_iou: float = MATCH_IOU):
  """Index of the box (x0, y0, x1, y1) overlapping `truth_box` [4] most, if its IoU >=
  `min_iou`; else None (also for no boxes)."""
  if not len(boxes):
    return None
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  iou = box_iou(boxes, np.asarray(truth_box, np.float32)[None])[:, 0]
  best = int(iou.argmax())
  return best if iou[best] >= min_iou else None


def frame_errors(
  points: np.ndarray, gt: np.ndarray, schema: Schema, normaliser: str = 'ioc'
) -> dict[str, np.ndarray]:
  """Per-frame NME and jitter of one tracked sequence.

  Args:
    points: [T, K, 2] tracked landmarks, NaN rows on missed frames.
    gt: [T, K, 2] ground truth.
    schema: landmark schema of the K points (its `normaliser` distance).
    normaliser: 'ioc' (outer eye corners) or 'ipd' (eye centres).

  Returns:
    found bool [T]; nme float [T] (NaN where missed); jitter float [T - 1] (NaN unless both
    frames were found).
  """
  points, gt = np.asarray(points, np.float64), np.asarray(gt, np.float64)
  if points.shape != gt.shape or points.ndim != 3 or points.shape[-1] != 2:
    raise ValueError(f'points {points.shape} and gt {gt.shape}: expected the same [T, K, 2]')
  distance = np.asarray(metrics_lib.normalising_distance(gt, normaliser, schema), np.float64)
  if not (distance > 0).all():
    frames = np.flatnonzero(~(distance > 0))[:10].tolist()
    raise ValueError(f'gt: zero {normaliser!r} normalising distance on frames {frames}')
  found = np.isfinite(points).all(axis=(1, 2))
  error = points - gt  # [T, K, 2]
  nme = np.linalg.norm(error, axis=-1).mean(1) / distance
  jitter = np.linalg.norm(error[1:] - error[:-1], axis=-1).mean(1) / distance[1:]
  both = found[1:] & found[:-1]
  return {
    'found': found,
    'nme': np.where(found, nme, np.nan),
    'jitter': np.where(both, jitter, np.nan),
  }


def lag_frames(points: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """[M] lag in frames on the found frames where the truth's centroid moves (see the module
  docstring) of one sequence: points, gt [T, K, 2]."""
  points, gt = np.asarray(points, np.float64), np.asarray(gt, np.float64)
  centre = gt.mean(1)
  velocity = np.gradient(centre, axis=0)  # pixels per frame
  speed = np.linalg.norm(velocity, axis=-1)
  found = np.isfinite(points).all(axis=(1, 2))
  moving = found & (speed > MOVING_SPEED)
  error = (points - gt).mean(1)  # centroid error [T, 2]
  along = (error * velocity).sum(-1) / np.maximum(speed, 1e-9)  # ahead > 0
  return -along[moving] / speed[moving]


def summary(
  nme: np.ndarray,
  jitter: np.ndarray,
  normaliser: str = 'ioc',
  fr_thr: float = 0.08,
  auc_thr: float = 0.08,
) -> dict[str, Any]:
  """Numbers of a set of frames, in percent of the normalising distance.

  Args:
    nme: [N] per-frame NMEs (ratios), NaN on missed frames.
    jitter: [M] per-pair jitters (ratios), NaN where a frame of the pair was missed.
    normaliser, fr_thr, auc_thr: name in the keys, failure and AUC thresholds (ratios).

  Returns:
    num_frames, missed_frames, missed_percent; when some frame was found `nme_<n>` (mean over
    the found frames) and `jitter_<n>` (mean over the pairs found; None without one); and
    with any frame `fr_<t>_<n>` / `auc_<t>_<n>` over all frames, a missed frame counting as
    an infinite error (a failure).
  """
  nme, jitter = np.asarray(nme, np.float64), np.asarray(jitter, np.float64)
  found = np.isfinite(nme)
  out: dict[str, Any] = {
    'num_frames': int(nme.size),
    'missed_frames': int((~found).sum()),
    'missed_percent': 100 * float((~found).mean()) if nme.size else None,
  }
  if found.any():
    out[f'nme_{normaliser}'] = 100 * float(nme[found].mean())
    pairs = jitter[np.isfinite(jitter)]
    out[f'jitter_{normaliser}'] = 100 * float(pairs.mean()) if pairs.size else None
  if nme.size:
    scored = np.where(found, nme, np.inf)
    out[f'fr_{round(100 * fr_thr)}_{normaliser}'] = 100 * metrics_lib.failure_rate(scored, fr_thr)
    out[f'auc_{round(100 * auc_thr)}_{normaliser}'] = 100 * metrics_lib.auc(scored, auc_thr)
  return out
