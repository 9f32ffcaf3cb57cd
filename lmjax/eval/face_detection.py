"""A face detector on FDDB: the discrete ROC of its faces, as JSON and a PNG.

    python -m lmjax.evaluate --checkpoint=pretrained/bbfcn5 --dataset=fddb --manual_dir=DIR \
        --output=fddb.json [--split=test|fold_01..fold_10] [--levels=20] [--face_classifier=DIR]

`lmjax.evaluate` comes here for a dataset whose faces are ellipses (`fddb`) and passes a
detector: any callable image [H, W, 3] uint8 -> (boxes [D, 4], scores [D]); the command line's
is `lmjax-scan`'s face detection (the BB-FCN scanner's faces, `lmjax.scan.detect`), kept down
to score 0 so that the ROC covers every face it finds. The JSON holds the curve
(`fddb_discrete_roc`: thresholds, true / false positives, true-positive rate), the
true-positive rate at 1,000 false positives (`fddb_discrete_recall_at_1000_fp`, the number
FDDB papers quote; null when the detector makes fewer false positives in all) and the counts;
the curve is drawn to `<stem>_fddb_roc.png`. The protocol is `lmjax.eval.fddb_roc`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from lmjax.data.datasets import fddb
from lmjax.eval import fddb_roc, reports

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def evaluate_detector(
  detector: Detector,
  source: Sequence[Mapping[str, Any]],
  output: str | os.PathLike,
  *,
  name: str = '',
  info: Mapping[str, Any] | None = None,
  max_images: int | None = None,
) -> dict[str, Any]:
  """Runs `detector` on every image of an FDDB split; writes the JSON and the ROC plot.

  Args:
    detector: image [H, W, 3] uint8 -> (boxes [D, 4] (x0, y0, x1, y1), scores [D]).
    source: an FDDB split (`datasets.load_split('fddb', ...)`).
    output: report JSON path; `<stem>_fddb_roc.png` goes beside it.
    name: dataset label (JSON `dataset`, plot title).
    info: more entries of the report (checkpoint, scanner settings, ...).
    max_images: only the first N images.

  Returns:
    The report written to `output`.
  """
  roc = fddb_roc.DiscreteRocAccumulator()
  count = len(source) if max_images is None else min(max_images, len(source))
  folds = set()
  for i in tqdm(range(count), desc=f'detecting {name}', mininterval=2):
    example = source[i]
    image = np.asarray(example['image'])
    boxes, scores = detector(image)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    roc.add(
      boxes, np.asarray(scores).reshape(-1), fddb.decode_faces(example)['ellipse'], image.shape
    )
    folds.add(int(example['fold']))
  curve = roc.result(fp_at=fddb_roc.FP_AT)
  report = {
    'dataset': name,
    **(info or {}),
    'folds': sorted(folds),
    'num_images': curve['num_images'],
    'num_faces': curve['num_faces'],
    'num_detections': curve['num_detections'],
    'protocol': 'FDDB discrete ROC: Hungarian pairing of detections and ellipses, overlap > 0.5',
    **{f'fddb_discrete_recall_at_{n}_fp': curve[f'recall_at_{n}_fp'] for n in fddb_roc.FP_AT},
    'fddb_discrete_final': {
      'true_positive_rate': curve['true_positive_rate'][-1] if curve['thresholds'].size else 0.0,
      'false_positives': int(curve['false_positives'][-1]) if curve['thresholds'].size else 0,
    },
    'fddb_discrete_roc': {
      k: curve[k] for k in ('thresholds', 'true_positives', 'false_positives', 'true_positive_rate')
    },
  }
  reports.write_results(report, output)
  title = f'{name} ({curve["num_images"]} images, {curve["num_faces"]} faces)'
  stem = os.path.splitext(os.fspath(output))[0]
  reports.plot_roc({'discrete': curve}, f'{stem}_fddb_roc.png', title=title)
  return report


def summary_table(report: Mapping[str, Any]) -> str:
  """The headline numbers of a report, one line each."""
  final = report['fddb_discrete_final']
  lines = [
    f'{report["dataset"]}: {report["num_images"]} images (folds {report["folds"]}), '
    f'{report["num_faces"]} faces, {report["num_detections"]} detections',
  ]
  for n in fddb_roc.FP_AT:
    value = report[f'fddb_discrete_recall_at_{n}_fp']
    text = 'not reached' if value is None or np.isnan(value) else f'{100 * value:.2f} %'
    lines.append(f'  discrete true-positive rate at {n} false positives: {text}')
  lines.append(
    f'  lowest threshold: {100 * final["true_positive_rate"]:.2f} % at '
    f'{final["false_positives"]} false positives'
  )
  return '\n'.join(lines)
