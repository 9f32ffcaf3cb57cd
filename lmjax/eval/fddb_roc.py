"""The FDDB discrete ROC (Jain & Learned-Miller 2010, UM-CS-2010-009) of rectangular detections.

For one image, the overlap of a detection and an annotated face is the ratio of the pixel
counts |D ∩ E| / |D ∪ E| of their regions: the pixels of the image whose centre (integer
coordinates, as everywhere in lmjax) lies in the detection rectangle x0 <= x <= x1,
y0 <= y <= y1 (both edges included, as the official code's filled rectangle) or in the face
ellipse ((u / a)² + (v / b)² <= 1, with u, v the offsets from the centre along the major and
minor axes; the major axis points along `angle` from the x axis, y down). Only the image's
pixels count (the official masks are image-sized). Each ellipse is rasterised once on its
bounding window, and a rectangle's overlap with it is a slice sum, so nothing outside the two
regions is ever drawn. Unlike the official code, the radii and the centre are not rounded to
whole pixels first.

Detections and faces are then paired by the assignment that maximises the sum of the overlaps
(Hungarian algorithm, `scipy.optimize.linear_sum_assignment`), and a pair whose overlap exceeds
0.5 is a true positive; every other detection is a false positive. The ROC sweeps a score
threshold t over every detection score: at t, each image's detections with score >= t are
matched afresh (a detection set, not a ranked list: adding a detection can re-pair the others),
and the curve holds the total true positives / faces against the total false positives.

Pure numpy; rates are ratios (0.9 = 90 %). Boxes are (x0, y0, x1, y1); ellipses
(major radius, minor radius, angle in radians, centre x, centre y), FDDB's field order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from lmjax.data.datasets.fddb import ellipse_box

MATCH_RATIO = 0.5
FP_AT = (1000,)


def _ellipse_window(ellipse: np.ndarray, width: int, height: int):
  """(x range, y range, bool mask [h, w]) of the image pixels inside `ellipse` [5]."""
  a, b, theta, cx, cy = (float(v) for v in ellipse)
  left, top, right, bottom = ellipse_box(ellipse)[0]
  x0, x1 = _pixel_range(left, right, width)
  y0, y1 = _pixel_range(top, bottom, height)
  dx = np.arange(x0, x1 + 1, dtype=np.float64)[None, :] - cx
  dy = np.arange(y0, y1 + 1, dtype=np.float64)[:, None] - cy
  u = dx * np.cos(theta) + dy * np.sin(theta)
  v = -dx * np.sin(theta) + dy * np.cos(theta)
  return (x0, x1), (y0, y1), (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _pixel_range(lo: float, hi: float, size: int) -> tuple[int, int]:
  """First and last integer in [lo, hi] ∩ [0, size - 1] (last < first when there is none)."""
  return max(int(np.ceil(lo)), 0), min(int(np.floor(hi)), size - 1)


def region_overlaps(boxes: ArrayLike, ellipses: ArrayLike, image_shape: Sequence[int]):
  """[D, G] overlap ratios |D ∩ E| / |D ∪ E| of detection boxes [D, 4] and ellipses [G, 5].

  Args:
    boxes: detection rectangles (x0, y0, x1, y1) in image pixels.
    ellipses: annotated faces (major radius, minor radius, angle, centre x, centre y).
    image_shape: (height, width, ...) of the image; only its pixels count.

  Returns:
    float64 [D, G]; 0 where the union is empty.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  ellipses = np.asarray(ellipses, np.float64).reshape(-1, 5)
  height, width = int(image_shape[0]), int(image_shape[1])
  out = np.zeros((len(boxes), len(ellipses)))
  spans = [(_pixel_range(b[0], b[2], width), _pixel_range(b[1], b[3], height)) for b in boxes]
  box_area = np.array([max(xs[1] - xs[0] + 1, 0) * max(ys[1] - ys[0] + 1, 0) for xs, ys in spans])
  for g, ellipse in enumerate(ellipses):
    (ex0, _), (ey0, _), mask = _ellipse_window(ellipse, width, height)
    area = int(mask.sum())
    for d, ((bx0, bx1), (by0, by1)) in enumerate(spans):
      cols = slice(max(bx0 - ex0, 0), max(bx1 - ex0 + 1, 0))
      rows = slice(max(by0 - ey0, 0), max(by1 - ey0 + 1, 0))
      inter = int(mask[rows, cols].sum())
      union = area + box_area[d] - inter
      out[d, g] = inter / union if union else 0.0
  return out


def matched_true_positives(overlaps: ArrayLike, ratio: float = MATCH_RATIO) -> int:
  """True positives of one image: pairs of the max-sum assignment of `overlaps` [D, G] > ratio."""
  overlaps = np.asarray(overlaps, np.float64)
  if not overlaps.size:
    return 0
  rows, cols = linear_sum_assignment(overlaps, maximize=True)
  return int((overlaps[rows, cols] > ratio).sum())


def image_roc(overlaps: ArrayLike, scores: ArrayLike, ratio: float = MATCH_RATIO):
  """One image's (thresholds [T] descending, true positives [T], detections [T]).

  At each distinct score t of the image's detections, the detections with score >= t are
  matched to the faces (`matched_true_positives`).
  """
  overlaps = np.asarray(overlaps, np.float64)
  scores = np.asarray(scores, np.float64).reshape(-1)
  thresholds = np.unique(scores)[::-1]
  tp = np.array([matched_true_positives(overlaps[scores >= t], ratio) for t in thresholds], int)
  count = np.array([(scores >= t).sum() for t in thresholds], int)
  return thresholds, tp, count


class DiscreteRocAccumulator:
  """The discrete ROC of the detections of many images (see the module docstring)."""

  def __init__(self, ratio: float = MATCH_RATIO):
    self.ratio = float(ratio)
    self.num_faces = self.num_images = 0
    self._scores: list[np.ndarray] = [np.zeros(0)]  # per image: its thresholds
    self._tp_steps: list[np.ndarray] = [np.zeros(0, int)]  # true positives gained at each
    self._det_steps: list[np.ndarray] = [np.zeros(0, int)]  # detections gained at each

  def add(
    self, boxes: ArrayLike, scores: ArrayLike, ellipses: ArrayLike, image_shape: Sequence[int]
  ) -> None:
    """Adds one image: detections `boxes` [D, 4] with `scores` [D]; faces `ellipses` [G, 5]."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64)
    ellipses = np.asarray(ellipses, np.float64)
    if boxes.shape != (scores.size, 4):
      raise ValueError(f'boxes: expected shape [D, 4] = ({scores.size}, 4), got {boxes.shape}')
    if ellipses.ndim != 2 or ellipses.shape[1] != 5:
      raise ValueError(f'ellipses: expected shape [G, 5], got {ellipses.shape}')
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
      raise ValueError('boxes/scores: non-finite values')
    thresholds, tp, count = image_roc(region_overlaps(boxes, ellipses, image_shape), scores)
    self._scores.append(thresholds)
    self._tp_steps.append(np.diff(tp, prepend=0))
    self._det_steps.append(np.diff(count, prepend=0))
    self.num_faces += len(ellipses)
    self.num_images += 1

  def result(self, fp_at: Sequence[int] = FP_AT) -> dict:
    """The curve, one point per distinct detection score (descending).

    Returns: {'num_images', 'num_faces', 'num_detections', 'thresholds' [T],
      'true_positives' [T], 'false_positives' [T], 'true_positive_rate' [T], and for each n in
      `fp_at` 'recall_at_<n>_fp': the best true-positive rate of the points with at most n false
      positives; NaN when the curve never reaches n false positives or there are no faces}.
    """
    scores = np.concatenate(self._scores)
    order = np.argsort(-scores, kind='stable')
    ranked = scores[order]
    thresholds = np.unique(ranked)[::-1]  # descending distinct scores
    # The totals at t are the cumulative sums up to the last entry with score >= t.
    last = np.searchsorted(-ranked, -thresholds, side='right') - 1
    tp = np.cumsum(np.concatenate(self._tp_steps)[order])[last]
    det = np.cumsum(np.concatenate(self._det_steps)[order])[last]
    fp = det - tp
    rate = tp / self.num_faces if self.num_faces else np.full(tp.shape, np.nan)
    out = {'num_images': self.num_images, 'num_faces': self.num_faces}
    out.update(num_detections=int(det[-1]) if det.size else 0, thresholds=thresholds)
    out.update(true_positives=tp, false_positives=fp, true_positive_rate=rate)
    for n in fp_at:
      reachable = self.num_faces and fp.size and fp.max() >= n
      out[f'recall_at_{n}_fp'] = float(rate[fp <= n].max(initial=0.0)) if reachable else np.nan
    return out
