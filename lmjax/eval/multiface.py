"""Unconstrained evaluation of a BB-FCN model on multi-face images (paper §IV-C, §IV-F).

    python -m lmjax.evaluate --checkpoint=pretrained/bbfcn5 --dataset=afw_multiface \
        --manual_dir=DIR --output=recall.json [--levels=20] [--face_classifier=DIR]

`lmjax.evaluate` comes here when the dataset has several faces per image (`afw_multiface`,
`composite_multiface`, synthetic `scene5` / `scene68`). Every image is scanned once; the
backbone-only ablation of the same model takes the coarse points of the same detections and
regroups them into proposals (`Scanner.regroup`, what a `refine=False` scan would return), and
the JSON holds, per model:

  * `recall_m15`, `recall_m30`: recall at 5 / 10 / 25 % error per landmark type and their mean,
    using the m best detections of each type (normaliser: inter-ocular distance, or 41.9 % of
    the box side when an eye is not visible);
  * `proposals`: face recall (IoU ≥ 0.5) at 2 / 3 / 20 proposals per image;
  * `faces`: precision-recall of the scanner's grouped faces scored by landmark consensus, and
    with `--face_classifier`, `detector`: proposals re-scored by the face/non-face CNN and
    NMS'ed again (IoU 0.3), with their proposal recall (`rescored_proposals`), as the paper
    measures proposals after Net-12.

Face boxes are compared in the model's box convention: for an MTFL model the reference box of
a face is the MTFL rule (`mtfl.face_box_np`) on its 5 ground-truth points, for other models the
dataset's box. Plots go beside the JSON: `<stem>_recall.png`, `<stem>_proposals.png`,
`<stem>_pr.png`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lmjax.eval import multiface_metrics as mm

MS = (15, 30)


def reference_boxes(faces: dict[str, np.ndarray], spec: dict[str, Any]) -> np.ndarray:
  """[F, 4] face boxes in the model's convention (see the module docstring)."""
  from lmjax.data.datasets import mtfl

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

  def add(self, out, faces, boxes, image, classifier) -> None:
    from lmjax.scan import detect

    self.recall.add(
      out['points'], out['score'], faces['landmarks'], faces['bbox'], out['valid'], faces['visible']
    )
    self.proposals.add(out['proposals'], out['proposal_score'], boxes, out['proposal_valid'])
    self.faces.add(out['faces'], out['face_score'], boxes, out['face_valid'])
    if classifier is not None:
      found = detect.faces_from_scan(out, image, classifier, min_score=0.0)
      found_boxes = np.array([f.box for f in found]).reshape(-1, 4)
      self.detector.add(found_boxes, [f.score for f in found], boxes)
      self.rescored.add(found_boxes, [f.score for f in found], boxes)

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
  checkpoint: str,
  source,
  output: str,
  *,
  name: str = '',
  levels: int = 20,
  threshold: float = 0.2,
  face_classifier: str | None = None,
  max_images: int | None = None,
) -> dict[str, Any]:
  """Scans every image of a multi-face source; writes the JSON and PNGs; returns the results."""
  from tqdm import tqdm

  from lmjax.data import datasets
  from lmjax.eval import reports
  from lmjax.scan.scanner import Scanner

  base = Scanner.load(checkpoint, levels=levels, threshold=threshold, detections=max(MS))
  schema = datasets.schema_of(source)
  if schema.num_points != base.schema.num_points:
    raise ValueError(
      f'{checkpoint} predicts {base.schema.num_points} landmarks but {name} has {schema.num_points}'
    )
  names = ['bbfcn', 'backbone_only'] if base.params.refine else ['backbone_only']
  classifier = None
  if face_classifier:
    from lmjax.facecls.classifier import FaceClassifier

    classifier = FaceClassifier.load(face_classifier)
  stats = {k: _ModelStats() for k in names}
  count = len(source) if max_images is None else min(max_images, len(source))
  num_faces = 0
  for i in tqdm(range(count), desc=f'scanning {name}', mininterval=2):
    ex = datasets.decode(source[i], schema.num_points)
    faces, boxes = ex['faces'], reference_boxes(ex['faces'], base.spec)
    num_faces += len(boxes)
    out = base.scan(ex['image'])
    stats[names[0]].add(out, faces, boxes, ex['image'], classifier)
    if base.params.refine:  # the ablation from the same scan: same detections, coarse points
      coarse = base.regroup(out, out['coarse_points'], ex['image'].shape)
      plain = {**out, 'points': out['coarse_points'], **coarse}
      stats['backbone_only'].add(plain, faces, boxes, ex['image'], classifier)
  results = {k: s.result(classifier is not None) for k, s in stats.items()}
  summary = {k: _summary(r) for k, r in results.items()}
  report = {
    'dataset': name,
    'checkpoint': os.path.abspath(checkpoint),
    'num_images': count,
    'num_faces': num_faces,
    'levels': levels,
    'threshold': threshold,
    'box_convention': 'mtfl rule on the 5 points' if base.spec.get('dataset') == 'mtfl' else 'bbox',
    'summary': summary,
    'details': mm.plain(results),
  }
  reports.write_results(report, output)
  stem = os.path.splitext(os.fspath(output))[0]
  title = f'{name} ({count} images, {num_faces} faces, L={levels})'
  curves = {f'{k} m={m}': r[f'recall_m{m}'] for k, r in results.items() for m in MS}
  mm.plot_recall_error(curves, f'{stem}_recall.png', names=base.schema.names, title=title)
  props = {k: r['proposals'] for k, r in results.items()}
  props.update({f'{k} + classifier': r['rescored_proposals'] for k, r in results.items()
                if 'rescored_proposals' in r})  # fmt: skip
  mm.plot_proposal_recall(props, f'{stem}_proposals.png', title=title)
  pr = {f'{k} faces': r['faces'] for k, r in results.items()}
  pr.update({f'{k} + classifier': r['detector'] for k, r in results.items() if 'detector' in r})
  mm.plot_precision_recall(pr, f'{stem}_pr.png', title=title)
  return report


def format_summary(report: dict[str, Any], num_points: int) -> str:
  """Text table of recall@10 % (m = 30) per type and the proposal recalls."""
  names = ['LE', 'RE', 'N', 'LM', 'RM'] if num_points == 5 else [str(i) for i in range(num_points)]
  lines = [
    f'{"model":<14}' + ''.join(f'{n:>8}' for n in names) + '    mean  prop@2  prop@3 prop@20'
  ]
  for key, row in report['summary'].items():
    per_type = ''.join(f'{v:8.1f}' for v in row['recall10_m30'])
    props = ''.join(f'{row[f"proposal_recall_at_{n}"]:8.1f}' for n in (2, 3, 20))
    lines.append(f'{key:<14}{per_type}{row["mean_recall10_m30"]:8.1f}{props}')
  row = next(iter(report['summary'].values()))
  bound = ', '.join(f'{row[f"proposal_oracle_at_{n}"]:.1f} at {n}' for n in (2, 3, 20))
  lines.append(f'(a perfect ranking of proposals would recall {bound})')
  return 'recall@10% (m=30) and proposal recall (%):\n' + '\n'.join(lines)
