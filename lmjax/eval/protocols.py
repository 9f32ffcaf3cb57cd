"""Each benchmark's own numbers, beside the common ones of `reports.compute_metrics`.

A face-crop evaluation of a dataset listed here also reports (key `protocol` of the metrics
JSON, a table on stdout, a CED plot `<stem>_ced_protocol.png` with one curve per subset):

  wflw         NME normalised by the outer eye corners (points 60 and 72: `ioc`), FR@10 % and
               AUC@10 % on the full test set and on each attribute subset (pose, expression,
               illumination, make-up, occlusion, blur: the faces whose flag is set).
  aflw2000_3d  NME normalised by √(w·h) of the tight box of the 68 ground-truth points (`box`;
               the builder's face box), the NME per |yaw| bin (0–30°, 30–60°, 60–90°; |yaw| of
               the annotation; faces beyond 90° count in the last bin) and their mean
               (`balanced`), and the head-pose mean absolute error (degrees) of
               `lmjax.core.head_pose` on the predicted points, when the schema has a 3-D mean
               face (68 points); the same estimator on the ground-truth points is reported too
               (`pose_mae_from_ground_truth`), the floor that the landmark-based pose can reach.
  aflw19       NME normalised by √(w·h) of the given box over the visible points, FR@8 % and
               AUC@7 % on the full test set and on its frontal subset (faces with all 19
               points visible).

Errors are in percent, angles in degrees. Subsets without faces report `num_faces` 0 only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lmjax.core import head_pose
from lmjax.core.landmarks import Schema
from lmjax.data.datasets.wflw import ATTRIBUTES as WFLW_ATTRIBUTES
from lmjax.eval import metrics as metrics_lib

YAW_EDGES = (30.0, 60.0)
YAW_BINS = ('0-30', '30-60', '60-90')


def summary(nme: np.ndarray, normaliser: str, fr_thr: float, auc_thr: float) -> dict[str, Any]:
  """{num_faces, nme_<n>, fr_<t>_<n>, auc_<t>_<n>} in percent of per-image NMEs (ratios)."""
  nme = np.asarray(nme, np.float64)
  out: dict[str, Any] = {'num_faces': int(nme.size)}
  if nme.size:
    out[f'nme_{normaliser}'] = 100 * float(nme.mean())
    out[f'fr_{round(100 * fr_thr)}_{normaliser}'] = 100 * metrics_lib.failure_rate(nme, fr_thr)
    out[f'auc_{round(100 * auc_thr)}_{normaliser}'] = 100 * metrics_lib.auc(nme, auc_thr)
  return out


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """|a - b| in degrees, wrapped to [0, 180]."""
  return np.abs((np.asarray(a, np.float64) - b + 180.0) % 360.0 - 180.0)


def pose_mae(estimated: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
  """Mean absolute error per angle (yaw, pitch, roll), their mean, and the faces without an
  estimate (NaN rows are left out of the means)."""
  err = angle_error(estimated, truth)  # [N, 3]
  ok = np.isfinite(err).all(axis=1)
  out: dict[str, Any] = {'num_faces': int(ok.sum()), 'num_failed': int((~ok).sum())}
  for i, angle in enumerate(head_pose.ANGLES):
    out[angle] = float(err[ok, i].mean()) if ok.any() else None
  out['mean'] = float(err[ok].mean()) if ok.any() else None
  return out


def _wflw(nme_of, gt, points, visible, extras, schema):
  nme = nme_of('ioc')
  attributes = np.asarray(extras['attributes'], bool)
  groups = {'full': np.ones(len(nme), bool)}
  groups.update({name: attributes[:, i] for i, name in enumerate(WFLW_ATTRIBUTES)})
  subsets = {k: summary(nme[m], 'ioc', 0.10, 0.10) for k, m in groups.items()}
  curves = {k: nme[m] for k, m in groups.items() if m.any()}
  return {'normaliser': 'ioc', 'subsets': subsets}, curves, ('ioc', 0.10)


def _aflw2000_3d(nme_of, gt, points, visible, extras, schema):
  nme = nme_of('box')
  truth = np.asarray(extras['head_pose'], np.float64)  # [N, 3] yaw, pitch, roll
  index = np.searchsorted(np.asarray(YAW_EDGES), np.abs(truth[:, 0]), side='left')
  groups = {'full': np.ones(len(nme), bool)}
  groups.update({f'yaw_{name}': index == b for b, name in enumerate(YAW_BINS)})
  subsets = {k: summary(nme[m], 'box', 0.10, 0.07) for k, m in groups.items()}
  bins = [subsets[f'yaw_{name}'].get('nme_box') for name in YAW_BINS]
  out: dict[str, Any] = {
    'normaliser': 'box',
    'subsets': subsets,
    'balanced_nme_box': None if None in bins else float(np.mean(bins)),
  }
  if head_pose.has_mean_face(schema):
    out['pose_mae'] = pose_mae(head_pose.head_pose(points, schema), truth)
    out['pose_mae_from_ground_truth'] = pose_mae(head_pose.head_pose(gt, schema), truth)
  curves = {k: nme[m] for k, m in groups.items() if m.any()}
  return out, curves, ('box', 0.07)


def _aflw19(nme_of, gt, points, visible, extras, schema):
  nme = nme_of('box')
  groups = {'full': np.ones(len(nme), bool), 'frontal': np.asarray(visible, bool).all(axis=1)}
  subsets = {k: summary(nme[m], 'box', 0.08, 0.07) for k, m in groups.items()}
  curves = {k: nme[m] for k, m in groups.items() if m.any()}
  return {'normaliser': 'box', 'subsets': subsets}, curves, ('box', 0.07)


# tfds dataset name -> (the extra features it needs, its function)
PROTOCOLS: dict[str, tuple[tuple[str, ...], Callable]] = {
  'wflw': (('attributes',), _wflw),
  'aflw2000_3d': (('head_pose',), _aflw2000_3d),
  'aflw19': ((), _aflw19),
}


def protocol_metrics(
  dataset: str,
  points: np.ndarray,
  gt: np.ndarray,
  bbox: np.ndarray,
  visible: np.ndarray,
  extras: Mapping[str, np.ndarray],
  schema: Schema,
) -> tuple[dict[str, Any], dict[str, np.ndarray], tuple[str, float]] | None:
  """The protocol numbers of `dataset` (a tfds name), or None for a dataset without one.

  Args:
    dataset: tfds name, e.g. `source.dataset_info.name`.
    points: [N, K, 2] predicted landmarks (image pixels).
    gt, bbox, visible: the ground truth [N, K, 2], [N, 4], [N, K].
    extras: the dataset's extra per-face features (`face_crop.Predictions.extras`).
    schema: landmark schema.

  Returns:
    (JSON-ready numbers, subset name -> [n] per-image NMEs for a CED plot, (normaliser, CED
    threshold)), or None.

  Raises:
    ValueError: an extra feature the protocol needs is missing.
  """
  if dataset not in PROTOCOLS:
    return None
  needs, fn = PROTOCOLS[dataset]
  missing = [k for k in needs if k not in extras]
  if missing:
    raise ValueError(f'{dataset}: the protocol needs the per-face feature(s) {missing}')

  def nme_of(kind: str) -> np.ndarray:
    return np.asarray(metrics_lib.nme_per_image(points, gt, kind, schema, bbox, visible))

  arrays = np.asarray(gt), np.asarray(points), np.asarray(visible)
  out, curves, ced = fn(nme_of, *arrays, extras, schema)
  return {'dataset': dataset, **out}, curves, ced


def protocol_table(protocol: Mapping[str, Any]) -> str:
  """A text table of `protocol_metrics`' numbers: one line per subset, then the pose errors."""
  lines = [f'{protocol["dataset"]} protocol (percent; NME normalised by {protocol["normaliser"]})']
  for name, row in protocol['subsets'].items():
    cells = '  '.join(f'{k} {v:6.2f}' for k, v in row.items() if k != 'num_faces')
    lines.append(f'  {name:<13} {row["num_faces"]:>6} faces  {cells or "-"}')
  if protocol.get('balanced_nme_box') is not None:
    lines.append(f'  mean of the yaw bins: nme_box {protocol["balanced_nme_box"]:.2f}')
  for key in ('pose_mae', 'pose_mae_from_ground_truth'):
    if key in protocol:
      row = protocol[key]
      cells = '  '.join(
        f'{a} {"-" if row[a] is None else f"{row[a]:.2f}"}' for a in (*head_pose.ANGLES, 'mean')
      )
      lines.append(f'  {key} (degrees): {cells}  ({row["num_failed"]} faces without a fit)')
  return '\n'.join(lines)
