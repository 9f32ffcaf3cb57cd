"""Unconstrained-setting metrics of BB-FCN (paper §IV-C, §IV-F, §IV-G): many faces per image.

  * `RecallAccumulator`: landmark recall-error curves. With the m best-scoring detections of
    each type kept per image, a visible ground-truth landmark of type k is recalled at error e
    when a kept type-k detection lies within e * d_f of it; d_f is the face's inter-ocular
    distance, or 41.9 % of its box side sqrt(w * h) when an eye is not visible (AFW rule).
  * `ProposalRecallAccumulator`: face recall against the number of proposals per image.
  * `DetectionAccumulator`: face-detection precision-recall, AP, recall at n false positives.

Pure numpy, accumulated image by image; rates are ratios (0.9 = 90 %), NaN when there is
nothing to count. Boxes are (x0, y0, x1, y1). `plain` makes results JSON-ready; the plots of
these results are in `lmjax.eval.reports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmjax.core.geometry import box_iou

ERROR_GRID = np.arange(101) / 200  # 0, 0.005, ..., 0.5 (i / 200: exact decimals)
REPORT_ERRORS = (0.05, 0.10, 0.25)
BOX_IOD_RATIO = 0.419  # mean inter-ocular distance / box side on AFW (paper footnote 2)
MATCH_IOU = 0.5


def _checked(name: str, x: ArrayLike, shape: tuple, spec: str, dtype: Any = np.float64):
  """`x` (None: all ones) as a `dtype` array; ValueError naming `name` unless shape fits."""
  x = np.asarray(np.ones(shape) if x is None else x, dtype)
  if x.ndim != len(shape) or any(s not in (None, d) for s, d in zip(shape, x.shape, strict=False)):
    want = tuple('?' if s is None else s for s in shape)
    raise ValueError(f'{name}: expected shape {spec} = {want}, got {x.shape}')
  return x


def _require_finite(name: str, x: np.ndarray, mask: np.ndarray) -> None:
  """ValueError when an entry of `x` [*mask.shape, ...] selected by `mask` is not finite."""
  bad = ~np.isfinite(x).all(axis=tuple(range(mask.ndim, x.ndim))) & mask
  if bad.any():
    raise ValueError(f'{name}: non-finite values at {np.argwhere(bad)[:5].tolist()}')


def _image_boxes(boxes, scores, valid, gt_boxes, what: str) -> tuple[np.ndarray, ...]:
  """Checked (valid boxes [P', 4] best score first (stable on ties), their scores, gt [G, 4])."""
  scores = _checked('scores', scores, (None,), f'[{what}]')
  boxes = _checked('boxes', boxes, (scores.size, 4), f'[{what}, 4] ({what} from scores)')
  valid = _checked('valid', valid, (scores.size,), f'[{what}]', bool)
  gt = _checked('gt_boxes', gt_boxes, (None, 4), '[G, 4]')
  _require_finite('boxes', boxes, valid)
  _require_finite('scores', scores, valid)
  _require_finite('gt_boxes', gt, np.ones(len(gt), bool))
  order = np.argsort(-scores[valid], kind='stable')
  return boxes[valid][order], scores[valid][order], gt


def face_scale(landmarks, visible, bbox, eyes=(0, 1), box_ratio=BOX_IOD_RATIO) -> np.ndarray:
  """[F] normalising distances d_f of faces `landmarks` [F, K, 2], `visible` [F, K], `bbox` [F, 4].

  d_f = |eye_0 - eye_1| (indices `eyes`) when both eyes are visible, else box_ratio * sqrt(w h)
  (0 for an empty or non-finite box).
  """
  both = visible[:, eyes[0]] & visible[:, eyes[1]]
  diff = landmarks[:, eyes[0]] - landmarks[:, eyes[1]]
  iod = np.linalg.norm(np.where(both[:, None], diff, 0), axis=-1)
  side = np.sqrt(np.clip((bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1]), 0, None))
  return np.where(both, iod, box_ratio * np.where(np.isfinite(side), side, 0))


def _recall(errors: np.ndarray, grid: ArrayLike) -> np.ndarray:
  """Fraction of `errors` [G] that are <= each grid value; NaN when G = 0."""
  grid = np.asarray(grid, np.float64)
  if errors.size == 0:
    return np.full(grid.shape, np.nan)
  return np.searchsorted(np.sort(errors), grid, side='right') / errors.size


class RecallAccumulator:
  """Landmark recall-error curves for several m (detections kept per type) from one pass.

  Each visible ground-truth landmark keeps, for every m in `ms`, its smallest distance / d_f to
  the m best-scoring valid detections of its type in its image (inf when there are none).
  """

  def __init__(self, ms: Sequence[int] = (15, 30), eyes=(0, 1), box_ratio=BOX_IOD_RATIO):
    self.ms = tuple(int(m) for m in ms)
    if not self.ms or min(self.ms) < 1:
      raise ValueError(f'ms: expected positive numbers of detections per type, got {ms}')
    if len(eyes) != 2 or eyes[0] == eyes[1]:
      raise ValueError(f'eyes: expected two different landmark indices, got {eyes}')
    self.eyes, self.box_ratio = (int(eyes[0]), int(eyes[1])), float(box_ratio)
    self.num_types, self.num_images = None, 0  # K (from the first image), images added
    self._best: dict[int, list[np.ndarray]] = {m: [] for m in self.ms}
    self._types: list[np.ndarray] = []
    self._kept: dict[int, Any] = dict.fromkeys(self.ms, 0)  # detections kept per type

  def add(
    self,
    points: ArrayLike,
    scores: ArrayLike,
    landmarks: ArrayLike,
    bbox: ArrayLike,
    valid: ArrayLike | None = None,
    visible: ArrayLike | None = None,
  ) -> None:
    """Adds one image.

    Args:
      points: [K, m_max, 2] detections of every landmark type, in any order.
      scores: [K, m_max] their scores (higher is better).
      landmarks: [F, K, 2] ground-truth faces; F = 0 adds detections but no ground truth.
      bbox: [F, 4] face boxes (for d_f when an eye is not visible).
      valid: optional [K, m_max] bool; invalid detections are ignored and may hold NaN.
      visible: optional [F, K] bool; hidden landmarks do not count and may hold NaN.
    """
    scores = _checked('scores', scores, (None, None), '[K, m_max]')
    k, m_max = scores.shape
    points = _checked('points', points, (k, m_max, 2), '[K, m_max, 2] (K, m_max from scores)')
    valid = _checked('valid', valid, (k, m_max), '[K, m_max]', bool)
    landmarks = _checked('landmarks', landmarks, (None, k, 2), '[F, K, 2] (K from scores)')
    f = landmarks.shape[0]
    visible = _checked('visible', visible, (f, k), '[F, K]', bool)
    bbox = _checked('bbox', bbox, (f, 4), '[F, 4] (F from landmarks)')
    if self.num_types not in (None, k):
      raise ValueError(f'scores: expected K = {self.num_types} types as before, got {k}')
    if max(self.ms) > m_max:
      raise ValueError(f'scores: m = {max(self.ms)} > m_max = {m_max} detections per type')
    if max(self.eyes) >= k:
      raise ValueError(f'eyes: indices {self.eyes} out of range for K = {k} types')
    _require_finite('points', points, valid)
    _require_finite('scores', scores, valid)
    _require_finite('landmarks', landmarks, visible)
    d = face_scale(landmarks, visible, bbox, self.eyes, self.box_ratio)  # [F]
    counted = visible.any(axis=1)
    if (bad := np.flatnonzero(counted & ~(d > 0))).size:
      raise ValueError(f'landmarks/bbox: zero (or invalid) normalising distance, faces {bad}')

    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind='stable')  # valid first
    ok = np.take_along_axis(valid, order, axis=1)
    pts = np.where(ok[..., None], np.take_along_axis(points, order[..., None], axis=1), 0)
    gt = np.where(visible[..., None], landmarks, 0)
    dist = np.where(ok, np.linalg.norm(gt[:, :, None] - pts, axis=-1), np.inf)  # [F, K, m_max]
    dist = np.minimum.accumulate(dist, axis=-1) / np.where(counted, d, 1)[:, None, None]
    for m in self.ms:
      self._best[m].append(dist[..., m - 1][visible])
      self._kept[m] = self._kept[m] + np.minimum(valid.sum(axis=1), m)
    self._types.append(np.broadcast_to(np.arange(k), (f, k))[visible])
    self.num_types, self.num_images = k, self.num_images + 1

  def best_errors(self, m: int) -> list[np.ndarray]:
    """Per type k, the [G_k] best normalised errors of its visible ground-truth landmarks."""
    if m not in self.ms:
      raise ValueError(f'm: {m} was not requested; the accumulator keeps m in {self.ms}')
    if self.num_types is None:
      raise ValueError('no image has been added')
    best, types = np.concatenate(self._best[m]), np.concatenate(self._types)
    return [best[types == k] for k in range(self.num_types)]

  def result(self, m: int, errors: ArrayLike = ERROR_GRID, at: Sequence[float] = REPORT_ERRORS):
    """Recall-error curves with the m best detections of each type per image.

    Returns: {'m', 'num_images', 'num_gt' [K] visible ground-truth landmarks, 'num_detections' [K]
      detections kept, 'errors' [E], 'curves' [K, E], and for each e in `at` (0.05 -> '5')
      'recall_<e>' [K] and 'mean_recall_<e>' (mean over the types with ground truth)}.
    """
    per_type = self.best_errors(m)
    num_gt = np.array([e.size for e in per_type])
    out = {'m': m, 'num_images': self.num_images, 'num_gt': num_gt, 'num_detections': self._kept[m]}
    out['errors'] = np.asarray(errors, np.float64)
    out['curves'] = np.stack([_recall(e, errors) for e in per_type])
    for e in at:
      recall, tag = np.array([_recall(x, e) for x in per_type]), f'{100 * e:g}'.replace('.', '_')
      out[f'recall_{tag}'] = recall
      out[f'mean_recall_{tag}'] = float(recall[num_gt > 0].mean()) if num_gt.any() else np.nan
    return out


class ProposalRecallAccumulator:
  """Fraction of ground-truth faces hit (IoU >= `iou_thr`) by one of the n best proposals."""

  def __init__(self, iou_thr: float = MATCH_IOU):
    self.iou_thr = float(iou_thr)
    self._ranks: list[np.ndarray] = []  # per face: 1-based rank of its best hit, inf if none
    self._counts: list[int] = []
    self._gt_counts: list[int] = []

  def add(self, boxes: ArrayLike, scores: ArrayLike, gt_boxes: ArrayLike, valid=None) -> None:
    """Adds one image: proposals `boxes` [P, 4], `scores` [P], `valid` [P]; `gt_boxes` [G, 4]."""
    boxes, _, gt = _image_boxes(boxes, scores, valid, gt_boxes, 'P')
    hit = box_iou(gt, boxes) >= self.iou_thr  # [G, P']
    first = hit.argmax(axis=1) + 1.0 if hit.shape[1] else np.zeros(len(gt))
    self._ranks.append(np.where(hit.any(axis=1), first, np.inf))
    self._counts.append(len(boxes))
    self._gt_counts.append(len(gt))

  def result(self, max_n: int | None = None, at: Sequence[int] = (2, 3, 20)) -> dict:
    """Recall for n = 1 .. max_n proposals per image (default: the most any image has).

    Returns: {'num_images', 'num_gt', 'mean_proposals' (valid proposals per image),
      'num_proposals' [N] = 1 .. N, 'recall' [N], and for each n in `at` 'recall_at_<n>' and
      'oracle_at_<n>' (the recall of a perfect ranking: sum of min(n, faces) / faces)}.
    """
    if not self._counts:
      raise ValueError('no image has been added')
    ranks, n = np.concatenate(self._ranks), np.arange(1, (max_n or max(*self._counts, 1)) + 1)
    out = {'num_images': len(self._counts), 'num_gt': ranks.size, 'num_proposals': n}
    out.update(mean_proposals=float(np.mean(self._counts)), recall=_recall(ranks, n))
    out.update({f'recall_at_{i}': float(_recall(ranks, i)) for i in at})
    gt_counts = np.array(self._gt_counts)  # the best any ranking can do with n per image
    out.update({f'oracle_at_{i}': float(np.minimum(gt_counts, i).sum() / max(ranks.size, 1))
                for i in at})  # fmt: skip
    return out


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
  """All-point interpolated AP (PASCAL VOC 2010+) of a ranked list's [D] recall and precision."""
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
  step = np.flatnonzero(mrec[1:] != mrec[:-1])
  return float(((mrec[step + 1] - mrec[step]) * mpre[step + 1]).sum())


class DetectionAccumulator:
  """Detection precision-recall with PASCAL VOC matching (greedy, in descending score).

  A detection takes the ground-truth box of its image with highest IoU: a true positive when that
  IoU >= `iou_thr` and the box is still free (each face matched at most once), else a false one.
  """

  def __init__(self, iou_thr: float = MATCH_IOU):
    self.iou_thr = float(iou_thr)
    self.num_gt = 0
    self._scores: list[np.ndarray] = [np.zeros(0)]
    self._tp: list[np.ndarray] = [np.zeros(0, bool)]

  def add(self, boxes: ArrayLike, scores: ArrayLike, gt_boxes: ArrayLike, valid=None) -> None:
    """Adds one image: detections `boxes` [D, 4], `scores` [D], `valid` [D]; `gt_boxes` [G, 4]."""
    boxes, scores, gt = _image_boxes(boxes, scores, valid, gt_boxes, 'D')
    iou = box_iou(boxes, gt)  # [D', G]
    taken, tp = np.zeros(len(gt), bool), np.zeros(len(boxes), bool)
    for i in range(len(boxes) if len(gt) else 0):
      j = iou[i].argmax()
      if iou[i, j] >= self.iou_thr and not taken[j]:
        taken[j] = tp[i] = True
    self._scores.append(scores)
    self._tp.append(tp)
    self.num_gt += len(gt)

  def result(self, fp_at: Sequence[int] = (350,)) -> dict:
    """Precision-recall of all detections ranked by score.

    Returns: {'num_gt', 'num_detections', 'scores' [D], 'tp' / 'fp' [D] cumulative counts,
      'precision' [D], 'recall' [D], 'ap' (`average_precision`), and for each n in `fp_at`
      'recall_at_<n>_fp': the recall before the (n + 1)-th false positive; NaN when there are
      fewer than n false positives (the curve stops short of n) or no ground truth}.
    """
    scores, tp = np.concatenate(self._scores), np.concatenate(self._tp)
    order = np.argsort(-scores, kind='stable')
    ctp, cfp = np.cumsum(tp[order]), np.cumsum(~tp[order])
    recall = ctp / self.num_gt if self.num_gt else np.full(ctp.shape, np.nan)
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = average_precision(recall, precision) if self.num_gt else np.nan
    out = {'num_gt': self.num_gt, 'num_detections': scores.size, 'scores': scores[order]}
    out.update(tp=ctp, fp=cfp, precision=precision, recall=recall, ap=ap)
    for n in fp_at:
      i = np.searchsorted(cfp, n, side='right') - 1  # last cut-off with <= n false positives
      reachable = self.num_gt and cfp.size and cfp[-1] >= n
      out[f'recall_at_{n}_fp'] = (float(recall[i]) if i >= 0 else 0.0) if reachable else np.nan
    return out
