"""Evaluation reports: metric dictionaries in percent, JSON files, CED plots, text tables.

Used by training-time validation and by the evaluation command line. The maths lives in
`lmjax.eval.metrics` (ratios); everything returned or written here is in percent, and every error
key names its normaliser (`nme_ioc`, `fr_10_ipd`, `auc_8_box`, ...).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lmjax.core.landmarks import Schema
from lmjax.eval import metrics as metrics_lib

THRESHOLDS = (0.08, 0.10)


def per_image_nmes(
  pred: np.ndarray,
  gt: np.ndarray,
  bbox: np.ndarray,
  schema: Schema,
  visible: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
  """Per-image NMEs (ratios) under every normaliser, e.g. for `plot_ced`.

  Args:
    pred: [N, K, 2] predicted landmarks.
    gt: [N, K, 2] ground-truth landmarks.
    bbox: [N, 4] face boxes (x0, y0, x1, y1).
    schema: landmark schema of the K points.
    visible: optional [N, K] visibility mask.

  Returns:
    normaliser name -> [N] NMEs, for every name in `metrics_lib.NORMALISERS`.
  """
  return {
    kind: np.asarray(metrics_lib.nme_per_image(pred, gt, kind, schema, bbox, visible))
    for kind in metrics_lib.NORMALISERS
  }


def compute_metrics(
  pred: np.ndarray,
  gt: np.ndarray,
  bbox: np.ndarray,
  schema: Schema,
  visible: np.ndarray | None = None,
) -> dict[str, Any]:
  """All SPEC §4 numbers of one model on one test set, in percent.

  Args: as `per_image_nmes`.

  Returns:
    A JSON-ready dict: `num_faces` (int); for each normaliser `<norm>` in ioc / ipd / box the
    floats `nme_<norm>`, `fr_8_<norm>`, `fr_10_<norm>` (failure rates), `auc_8_<norm>`,
    `auc_10_<norm>`, the list `per_landmark_<norm>` ([K], NaN where a point is never visible)
    and, when the schema has clusters, the dict `per_cluster_<norm>` (cluster name -> float).
  """
  out: dict[str, Any] = {'num_faces': int(np.shape(pred)[0])}
  for kind, nme in per_image_nmes(pred, gt, bbox, schema, visible).items():
    out[f'nme_{kind}'] = 100 * float(nme.mean())
    for thr in THRESHOLDS:
      tag = round(100 * thr)
      out[f'fr_{tag}_{kind}'] = 100 * metrics_lib.failure_rate(nme, thr)
      out[f'auc_{tag}_{kind}'] = 100 * metrics_lib.auc(nme, thr)
    per_landmark = metrics_lib.per_landmark_nme(pred, gt, kind, schema, bbox, visible)
    out[f'per_landmark_{kind}'] = [100 * float(v) for v in per_landmark]
    if schema.clusters:
      per_cluster = metrics_lib.per_cluster_nme(per_landmark, schema)
      out[f'per_cluster_{kind}'] = {
        name: 100 * float(v) for name, v in zip(schema.cluster_names, per_cluster, strict=True)
      }
  return out


def _json_ready(value: Any) -> Any:
  """Plain Python types for `json`; NaN / inf become None (strict JSON has no NaN)."""
  if isinstance(value, Mapping):
    return {str(k): _json_ready(v) for k, v in value.items()}
  if isinstance(value, np.ndarray | list | tuple):
    return [_json_ready(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_results(metrics: Mapping[str, Any], path_json: str | os.PathLike) -> None:
  """Writes a metrics dict as strict JSON (sorted keys, indented); NaN is written as null.

  Args:
    metrics: e.g. the output of `compute_metrics`, or a dict of such dicts.
    path_json: output file; missing parent directories are created.
  """
  path_json = os.fspath(path_json)
  os.makedirs(os.path.dirname(path_json) or '.', exist_ok=True)
  with open(path_json, 'w') as f:
    json.dump(_json_ready(metrics), f, sort_keys=True, indent=2, allow_nan=False)
    f.write('\n')


def plot_ced(
  curves: Mapping[str, np.ndarray],
  thr: float,
  path_png: str | os.PathLike,
  title: str = '',
  normaliser: str = 'ioc',
) -> None:
  """Saves CED curves (fraction of images with NME <= x, x in % up to `thr`) as a PNG.

  Uses the Agg canvas directly, so it neither needs a display nor touches pyplot's state.

  Args:
    curves: legend label -> [N] per-image NMEs as ratios (`per_image_nmes`).
    thr: right end of the x axis as a ratio (0.08 for 8 %); the legend gives AUC@thr.
    path_png: output file; missing parent directories are created.
    title: plot title.
    normaliser: name of the normaliser, shown in the x-axis label.
  """
  if not curves:
    raise ValueError('curves: expected at least one curve')
  if not 0 < thr <= 1:
    raise ValueError(f'thr: expected a ratio in (0, 1] (0.08 = 8 %), got {thr}')
  fig = Figure(figsize=(6, 4.5), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, nme in curves.items():
    x, y = metrics_lib.ced(nme, thr)
    area = 100 * metrics_lib.auc(nme, thr)
    ax.plot(100 * x, y, label=f'{label} (AUC@{100 * thr:g}% = {area:.2f})')
  ax.set_xlim(0, 100 * thr)
  ax.set_ylim(0, 1)
  ax.set_xlabel(f'NME (%, normalised by {normaliser})')
  ax.set_ylabel('fraction of images')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  path_png = os.fspath(path_png)
  os.makedirs(os.path.dirname(path_png) or '.', exist_ok=True)
  fig.savefig(path_png, format='png')


def _cell(value: Any, precision: int) -> str:
  if value is None:
    return '-'
  if isinstance(value, int | np.integer) and not isinstance(value, bool):
    return str(value)
  if isinstance(value, float | np.floating):
    return f'{float(value):.{precision}f}'
  return str(value)


def format_table(
  rows: Mapping[str, Mapping[str, Any]], keys: Sequence[str], precision: int = 2
) -> str:
  """Aligned plain-text table: one row per model, one column per metric key.

  Args:
    rows: row name (e.g. 'BM', 'WM', 'AM') -> metrics dict.
    keys: metric keys to show, in column order; a key missing from a row shows as '-'.
    precision: decimals of numeric cells.

  Returns:
    The table, one line per row after a header line, without a trailing newline.
  """
  table = [['', *keys]]
  table += [[name, *(_cell(m.get(k), precision) for k in keys)] for name, m in rows.items()]
  widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
  return '\n'.join(
    '  '.join(
      c.ljust(w) if i == 0 else c.rjust(w)
      for i, (c, w) in enumerate(zip(line, widths, strict=True))
    ).rstrip()
    for line in table
  )


def per_landmark_table(
  rows: Mapping[str, Mapping[str, Any]], schema: Schema, normaliser: str, precision: int = 2
) -> str:
  """Per-landmark mean errors, one row per landmark type, one column per model.

  Args:
    rows: model name -> metrics dict with `per_landmark_<normaliser>`.
    schema: landmark schema (row names).
    normaliser: ioc / ipd / box.
    precision: decimals.
  """
  key = f'per_landmark_{normaliser}'
  names = list(schema.names) if schema.names else [str(i) for i in range(schema.num_points)]
  per_model = {model: m[key] for model, m in rows.items()}
  table_rows = {
    f'{i:>2} {name}': {model: values[i] for model, values in per_model.items()}
    for i, name in enumerate(names)
  }
  table_rows['mean'] = {model: float(np.nanmean(v)) for model, v in per_model.items()}
  header = f'per-landmark NME ({normaliser}), percent'
  return header + '\n' + format_table(table_rows, list(per_model), precision)


def save_predictions(
  path_npz: str | os.PathLike, image_ids: Sequence[str], pred: np.ndarray
) -> None:
  """Writes predictions to an `.npz` with arrays `image_ids` [N] (str) and `pred` [N, K, 2].

  Args:
    path_npz: output file, written exactly at this path; parent directories are created.
    image_ids: N image identifiers.
    pred: [N, K, 2] predicted landmarks in image coordinates.
  """
  pred = np.asarray(pred, np.float32)
  ids = np.asarray(list(image_ids), dtype=str)
  if pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f'pred: expected shape [N, K, 2], got {pred.shape}')
  if ids.shape != (pred.shape[0],):
    raise ValueError(
      f'image_ids: expected {pred.shape[0]} ids (one per row of pred), got shape {ids.shape}'
    )
  path_npz = os.fspath(path_npz)
  os.makedirs(os.path.dirname(path_npz) or '.', exist_ok=True)
  with open(path_npz, 'wb') as f:
    np.savez(f, image_ids=ids, pred=pred)
