"""Unconstrained evaluation of a BB-FCN scanner on multi-face images (paper §IV-C, §IV-F).

    python -m lmjax.evaluate --checkpoint=pretrained/bbfcn5 --dataset=afw_multiface \
        --manual_dir=DIR --output=recall.json [--levels=20] [--face_classifier=DIR]

`lmjax.evaluate` comes here when the dataset declares several faces per image (`afw_multiface`,
`composite_multiface`, synthetic `scene5` / `scene68`). The caller builds the scanner (and the
optional face/non-face re-scoring) and passes them in, so this module depends on no paper
package: anything with the `Scanner` protocol (`lmjax.scan.scanner.Scanner`) and any
`Rescorer` will do. Every image is scanned once; the backbone-only ablation of the same model
takes the coarse points of the same detections and regroups them into proposals
(`Scanner.regroup`, what a `refine=False` scan would return), and the JSON holds, per model:

  * `recall_m15`, `recall_m30`: recall at 5 / 10 / 25 % error per landmark type and their mean,
    using the m best detections of each type (normaliser: inter-ocular distance, or 41.9 % of
    the box side when an eye is not visible);
  * `proposals`: face recall (IoU ≥ 0.5) at 2 / 3 / 20 proposals per image;
  * `faces`: precision-recall of the scanner's grouped faces scored by landmark consensus, and
    with a rescorer (`--face_classifier`), `detector`: proposals re-scored by the face/non-face
    CNN and NMS'ed again (IoU 0.3), with their proposal recall (`rescored_proposals`), as the
    paper measures proposals after Net-12.

Face boxes are compared in the model's box convention: for an MTFL model the reference box of
a face is the MTFL rule (`mtfl.face_box_np`) on its 5 ground-truth points, for other models the
dataset's box. Plots go beside the JSON: `<stem>_recall.png`, `<stem>_proposals.png`,
`<stem>_pr.png` (`lmjax.eval.reports`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from lmjax.core.landmarks import Schema
from lmjax.data import datasets
from lmjax.data.datasets import mtfl
from lmjax.eval import multiface_metrics as mm
from lmjax.eval import reports

MS = (15, 30)


class ScanSettings(Protocol):
  """The scanner settings the report records (`lmjax.scan.scanner.ScanParams`)."""

  levels: int
  threshold: float
  refine: bool


class Scanner(Protocol):
  """What the evaluator needs of a whole-image scanner (`lmjax.scan.scanner.Scanner`).

  Its scans must keep at least `max(MS)` detections per landmark type.
  """

  spec: dict[str, Any]
  schema: Schema
  params: ScanSettings

  def scan(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """Detections, proposals and faces of one image [H, W, 3] uint8."""
    ...

  def regroup(
    self, out: Mapping[str, np.ndarray], points: np.ndarray, image_shape: Sequence[int]
  ) -> dict[str, np.ndarray]:
    """The proposal and face keys of `out` recomputed for other detection `points`."""
    ...


class Rescorer(Protocol):
  """Final faces of one scan re-scored by a face/non-face classifier, best first."""

  def __call__(
    self, out: Mapping[str, np.ndarray], image: np.ndarray
  ) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [D, 4], scores [D]) of the faces found in `image` from its scan `out`."""
    ...


def reference_boxes(faces: dict[str, np.ndarray], spec: dict[str, Any]) -> np.ndarray:
  """[F, 4] face boxes in the model's convention (see the module docstring)."""
  if spec.get('dataset') == 'mtfl' and faces['landmarks'].shape[1] == 5:
    return np.array([mtfl.face_box_np(p) for p in faces['landmarks']], np.float32).reshape(-1, 4)
  return faces['bbox'].reshape(-1, 4)


class _ModelStats:
  """Accumulators of one scanner variant."""

  def __init__(self):
    self.recall = mm.RecallAccumulator(MS)
    self.proposals = mm.ProposalRecallAccumulator()
    self.faces = mm.DetectionAccumulator()
    self.detector = mm.DetectionAccumulator()
    self.rescored = mm.ProposalRecallAccumulator()

  def add(self, out, faces, boxes, image, rescore: Rescorer | None) -> None:
    self.recall.add(
      out['points'], out['score'], faces['landmarks'], faces['bbox'], out['valid'], faces['visible']
    )
    self.proposals.add(out['proposals'], out['proposal_score'], boxes, out['proposal_valid'])
    self.faces.add(out['faces'], out['face_score'], boxes, out['face_valid'])
    if rescore is not None:
      found_boxes, found_scores = rescore(out, image)
      found_boxes = np.asarray(found_boxes, np.float32).reshape(-1, 4)
      self.detector.add(found_boxes, found_scores, boxes)
      self.rescored.add(found_boxes, found_scores, boxes)

  def result(self, with_detector: bool) -> dict[str, Any]:
    out = {f'recall_m{m}': self.recall.result(m) for m in MS}
    out['proposals'] = self.proposals.result()
    out['faces'] = self.faces.result()
    if with_detector:
      out['detector'] = self.detector.result()
      out['rescored_proposals'] = self.rescored.result()
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
  """The headline numbers (percent) of one model, for the JSON top level and the table."""
  row = {}
  for m in MS:
    r = result[f'recall_m{m}']
    for e in (5, 10, 25):
      row[f'recall{e}_m{m}'] = 100 * np.asarray(r[f'recall_{e}'])
      row[f'mean_recall{e}_m{m}'] = 100 * r[f'mean_recall_{e}']
  p = result['proposals']
  for n in (2, 3, 20):
    row[f'proposal_recall_at_{n}'] = 100 * p[f'recall_at_{n}']
    row[f'proposal_oracle_at_{n}'] = 100 * p[f'oracle_at_{n}']
  row['proposals_per_image'] = p['mean_proposals']
  row['faces_ap'] = 100 * result['faces']['ap']
  if 'detector' in result:
    for n in (2, 3, 20):
      row[f'rescored_proposal_recall_at_{n}'] = 100 * result['rescored_proposals'][f'recall_at_{n}']
    row['detector_ap'] = 100 * result['detector']['ap']
    row['detector_recall_at_350_fp'] = 100 * result['detector']['recall_at_350_fp']
  return row


def evaluate_scanner(
  scanner: Scanner,
  source: Sequence[Mapping[str, Any]],
  output: str | os.PathLike,
  *,
  name: str = '',
  checkpoint: str = '',
  rescore: Rescorer | None = None,
  max_images: int | None = None,
) -> dict[str, Any]:
  """Scans every image of a multi-face source; writes the JSON and PNGs; returns the report.

  Args:
    scanner: e.g. `Scanner.load(folder, levels=L, threshold=0.2, detections=max(MS))`.
    source: a multi-face dataset split (`lmjax.data.datasets.load`).
    output: report JSON path; the plots go beside it.
    name: dataset label (JSON `dataset`, plot titles).
    checkpoint: the model folder, recorded in the JSON as an absolute path.
    rescore: optional face/non-face re-scoring of the scanner's faces (`detector` results).
    max_images: scan only the first N images.
  """
  schema = datasets.schema_of(source)
  if schema.num_points != scanner.schema.num_points:
    raise ValueError(
      f'scanner: predicts {scanner.schema.num_points} landmarks but {name or "the dataset"} has '
      f'{schema.num_points}'
    )
  refine = bool(scanner.params.refine)
  names = ['bbfcn', 'backbone_only'] if refine else ['backbone_only']
  stats = {k: _ModelStats() for k in names}
  count = len(source) if max_images is None else min(max_images, len(source))
  num_faces = 0
  for i in tqdm(range(count), desc=f'scanning {name}', mininterval=2):
    ex = datasets.decode(source[i], schema.num_points)
    faces, boxes = ex['faces'], reference_boxes(ex['faces'], scanner.spec)
    num_faces += len(boxes)
    out = scanner.scan(ex['image'])
    stats[names[0]].add(out, faces, boxes, ex['image'], rescore)
    if refine:  # the ablation from the same scan: same detections, coarse points
      coarse = scanner.regroup(out, out['coarse_points'], ex['image'].shape)
      plain = {**out, 'points': out['coarse_points'], **coarse}
      stats['backbone_only'].add(plain, faces, boxes, ex['image'], rescore)
  results = {k: s.result(rescore is not None) for k, s in stats.items()}
  mtfl_boxes = scanner.spec.get('dataset') == 'mtfl'
  report = {
    'dataset': name,
    'checkpoint': os.path.abspath(checkpoint) if checkpoint else '',
    'num_images': count,
    'num_faces': num_faces,
    'levels': scanner.params.levels,
    'threshold': scanner.params.threshold,
    'box_convention': 'mtfl rule on the 5 points' if mtfl_boxes else 'bbox',
    'summary': {k: _summary(r) for k, r in results.items()},
    'details': reports.plain(results),
  }
  reports.write_results(report, output)
  title = f'{name} ({count} images, {num_faces} faces, L={scanner.params.levels})'
  reports.plot_multiface(results, os.path.splitext(os.fspath(output))[0], scanner.schema, title)
  return report
