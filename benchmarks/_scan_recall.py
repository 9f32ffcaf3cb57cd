"""Recall sets of the scanner benchmark: composite scenes and held-out real 300-W photos.

Both are scored with the multi-face protocol of `lmjax.eval.multiface`: landmark recall@e %
with the 30 best detections per type (mean over the 5 types) and face proposal recall (IoU ≥
0.5) at 3 and 20 proposals per image. Detections of any detector come as per-image lists of
faces (points [F, 5, 2], scores [F], boxes [F, 4]); a scanner's scan is used as it is.

* composite scenes: `composite_multiface` (or the synthetic `scene5`), every face annotated;
* real photos: the 300-W validation faces (`datasets.load_split('300w', 'validation')`: the
  faces `lmjax.main` holds out of train) at their stored size, 68 points reduced to the 5-point
  set (`landmarks.five_from_68`); only the annotated face of each photo counts (a detection of
  another face in the photo is neither a hit nor a miss of recall).
"""

from __future__ import annotations

import numpy as np

TOP = 30  # detections per landmark type (the protocol's m)


def real_photos(manual_dir: str, count: int) -> tuple[list, list]:
  """(images, faces) of the first `count` held-out 300-W photos, faces in 5 points."""
  from lmjax.core import landmarks
  from lmjax.data import datasets

  source = datasets.load_split('300w', 'validation', manual_dir=manual_dir)
  images, faces = [], []
  for i in range(min(count, len(source))):
    ex = datasets.decode(source[i])
    five = landmarks.five_from_68(np.asarray(ex['landmarks'], np.float32))[None]
    images.append(np.asarray(ex['image']))
    faces.append(
      {'landmarks': five, 'visible': np.ones((1, 5), bool), 'bbox': np.asarray(ex['bbox'])[None]}
    )
  return images, faces


class Scores:
  """Landmark and proposal recall of one detector on one image set."""

  def __init__(self, box_spec: dict | None):
    from lmjax.eval import multiface_metrics as mm

    self.box_spec = box_spec or {}
    self.landmarks = mm.RecallAccumulator((TOP,))
    self.proposals = mm.ProposalRecallAccumulator()

  def _boxes(self, faces) -> np.ndarray:
    from lmjax.eval.multiface import reference_boxes

    return reference_boxes(faces, self.box_spec)

  def add_scan(self, out: dict, faces: dict) -> None:
    """One image's `scan` output (either scan mode)."""
    self.landmarks.add(
      out['points'], out['score'], faces['landmarks'], faces['bbox'], out['valid'], faces['visible']
    )
    self.proposals.add(out['proposals'], out['proposal_score'], self._boxes(faces),
                       out['proposal_valid'])  # fmt: skip

  def add_faces(self, points, scores, boxes, faces: dict) -> None:
    """One image's faces of a face detector: points [F, 5, 2], scores [F], boxes [F, 4]."""
    points = np.asarray(points, float).reshape(-1, 5, 2)
    order = np.argsort(-np.asarray(scores, float), kind='stable')[:TOP]
    det = np.zeros((5, TOP, 2))
    det[:, : len(order)] = points[order].transpose(1, 0, 2)
    valid = np.zeros((5, TOP), bool)
    valid[:, : len(order)] = True
    score = np.zeros((5, TOP))
    score[:, : len(order)] = np.asarray(scores, float)[order]
    self.landmarks.add(det, score, faces['landmarks'], faces['bbox'], valid, faces['visible'])
    self.proposals.add(np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float),
                       self._boxes(faces))  # fmt: skip

  def result(self) -> dict:
    """{'recall10', 'recall5' (percent, mean over types), 'proposals3', 'proposals20'}."""
    r = self.landmarks.result(TOP)
    p = self.proposals.result(max_n=20)
    return {
      'recall10': round(100 * float(r['mean_recall_10']), 2),
      'recall5': round(100 * float(r['mean_recall_5']), 2),
      'proposals3': round(100 * float(p['recall_at_3']), 2),
      'proposals20': round(100 * float(p['recall_at_20']), 2),
    }
