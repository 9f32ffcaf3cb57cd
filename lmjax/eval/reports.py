"""Evaluation reports: metric dictionaries in percent, JSON files, plots, text tables.

Used by training-time validation, the evaluators and the evaluation command line. The maths
lives in `lmjax.eval.metrics` (face crops, ratios) and `lmjax.eval.multiface_metrics` (many
faces per image); everything returned here is in percent, and every error key names its
normaliser (`nme_ioc`, `fr_10_ipd`, `auc_8_box`, ...). Plots (CED curves; recall-error,
proposal-recall and precision-recall curves) use the Agg canvas directly: no display, no pyplot
state.
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
from lmjax.eval import pose_bins

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
    and, when the schema has clusters, the dict `per_cluster_<norm>` (cluster name -> float);
    `pose_bins`: the NMEs per yaw / roll / face-size bin of the ground truth and the worst
    bin's ratio to the mean (`lmjax.eval.pose_bins`).
  """
  out: dict[str, Any] = {'num_faces': int(np.shape(pred)[0])}
  nmes = per_image_nmes(pred, gt, bbox, schema, visible)
  for kind, nme in nmes.items():
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
  out['pose_bins'] = pose_bins.pose_bins(nmes, gt, schema)
  return out


def plain(value: Any, *, strict: bool = False) -> Any:
  """`value` with numpy arrays / scalars as lists / Python numbers, ready for `json`.

  With `strict=True`, NaN and inf become None (strict JSON has no NaN); else they stay floats.
  """
  if isinstance(value, Mapping):
    return {str(k): plain(v, strict=strict) for k, v in value.items()}
  if isinstance(value, np.ndarray | list | tuple):
    return [plain(v, strict=strict) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if strict and isinstance(value, float) and not math.isfinite(value):
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
    json.dump(plain(metrics, strict=True), f, sort_keys=True, indent=2, allow_nan=False)
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


def landmark_summary(metrics: Mapping[str, Any]) -> str:
  """One log line of a landmark model's validation metrics (percent)."""
  return (
    f'NME ioc {metrics["nme_ioc"]:.3f}%  ipd {metrics["nme_ipd"]:.3f}%  '
    f'box {metrics["nme_box"]:.3f}%  FR@10 ipd {metrics["fr_10_ipd"]:.2f}%'
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


# ----------------------------------------------------------------------------- multi-face
def _figure(curves: Mapping, panels: int) -> tuple[Figure, np.ndarray]:
  if not curves:
    raise ValueError('curves: expected at least one curve')
  fig = Figure(figsize=(6, 4.5) if panels == 1 else (3.2 * panels, 3.6), dpi=100)
  FigureCanvasAgg(fig)
  return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig: Figure, axes: np.ndarray, path_png, title: str, loc: str = 'lower right') -> None:
  for ax in axes:
    ax.set(ylim=(0, 1.02))
    ax.grid(alpha=0.3)
  axes[0].legend(loc=loc, fontsize='small')
  fig.suptitle(title)
  fig.tight_layout()
  path_png = os.fspath(path_png)
  os.makedirs(os.path.dirname(path_png) or '.', exist_ok=True)
  fig.savefig(path_png, format='png')


def plot_recall_error(curves: Mapping[str, Mapping], path_png, names=None, title='') -> None:
  """Recall-error curves, one panel per landmark type (paper Fig. 5), as a PNG.

  Args:
    curves: legend label (e.g. 'BB-FCN m=30') -> `RecallAccumulator.result(m)` or its `plain`
      copy ('errors' [E], 'curves' [K, E]; the same K everywhere).
    path_png: output file (str or path); missing parent directories are created.
    names: optional K landmark-type names (panel titles).
    title: figure title.
  """
  ks = {np.shape(r['curves'])[0] for r in curves.values()}
  if len(ks) > 1:
    raise ValueError(f'curves: expected the same number K of types everywhere, got {sorted(ks)}')
  k = ks.pop() if ks else 1
  names = [f'type {i}' for i in range(k)] if names is None else list(names)
  if len(names) != k:
    raise ValueError(f'names: expected K = {k} names, got {len(names)}')
  fig, axes = _figure(curves, k)
  for i, ax in enumerate(axes):
    for label, r in curves.items():
      ax.plot(100 * np.asarray(r['errors']), np.asarray(r['curves'])[i], label=label)
    ax.set(title=names[i], xlabel='error (% of d_f)', ylabel='recall' if i == 0 else '')
  _save(fig, axes, path_png, title)


def plot_proposal_recall(curves: Mapping[str, Mapping], path_png, title: str = '') -> None:
  """Face recall against proposals per image (log x), label -> proposal `result()`, as a PNG."""
  fig, axes = _figure(curves, 1)
  for label, r in curves.items():
    axes[0].plot(r['num_proposals'], r['recall'], label=label)
  axes[0].set(xscale='log', xlabel='proposals per image', ylabel='recall')
  _save(fig, axes, path_png, title)


def plot_precision_recall(curves: Mapping[str, Mapping], path_png, title: str = '') -> None:
  """Precision-recall curves, label -> detection `result()` (legend: AP in %), as a PNG."""
  fig, axes = _figure(curves, 1)
  for label, r in curves.items():
    axes[0].plot(r['recall'], r['precision'], label=f'{label} (AP = {100 * r["ap"]:.2f})')
  axes[0].set(xlim=(0, 1.02), xlabel='recall', ylabel='precision')
  _save(fig, axes, path_png, title, loc='lower left')


def plot_roc(curves: Mapping[str, Mapping], path_png, title: str = '') -> None:
  """True-positive rate against false positives (FDDB ROC), label -> `fddb_roc` result, as a PNG."""
  fig, axes = _figure(curves, 1)
  for label, r in curves.items():
    axes[0].step(r['false_positives'], r['true_positive_rate'], where='post', label=label)
  axes[0].set(xlabel='false positives', ylabel='true positive rate')
  _save(fig, axes, path_png, title)


def plot_multiface(
  results: Mapping[str, Mapping[str, Any]], stem: str, schema: Schema, title: str = ''
) -> None:
  """The three plots of a multi-face evaluation: `<stem>_recall.png`, `_proposals`, `_pr`.

  Args:
    results: model name -> {'recall_m<m>': recall `result(m)` per m, 'proposals', 'faces', and
      optionally 'detector' / 'rescored_proposals'} (`lmjax.eval.multiface`).
    stem: output path without extension.
    schema: landmark schema (panel titles of the recall plot).
    title: figure title.
  """
  curves = {
    f'{k} m={key[len("recall_m") :]}': r[key]
    for k, r in results.items()
    for key in r
    if key.startswith('recall_m')
  }
  plot_recall_error(curves, f'{stem}_recall.png', names=schema.names or None, title=title)
  props = {k: r['proposals'] for k, r in results.items()}
  props.update({f'{k} + classifier': r['rescored_proposals'] for k, r in results.items()
                if 'rescored_proposals' in r})  # fmt: skip
  plot_proposal_recall(props, f'{stem}_proposals.png', title=title)
  pr = {f'{k} faces': r['faces'] for k, r in results.items()}
  pr.update({f'{k} + classifier': r['detector'] for k, r in results.items() if 'detector' in r})
  plot_precision_recall(pr, f'{stem}_pr.png', title=title)


def multiface_summary_table(report: Mapping[str, Any], num_points: int) -> str:
  """Text table of a multi-face report: recall@10 % (m = 30) per type and proposal recalls."""
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


def set_card_section(folder: str | os.PathLike, heading: str, body: str) -> bool:
  """Writes (or replaces) the section `heading` (a `## ` line) of the folder's MODEL_CARD.md
  with `body`, as its last section; False when the folder has no card."""
  path = os.path.join(folder, 'MODEL_CARD.md')
  if not os.path.isfile(path):
    return False
  with open(path, encoding='utf-8') as f:
    text = f.read()
  if heading in text:  # drop the old section (up to the next heading of its level)
    before, _, after = text.partition(heading)
    rest = after.split('\n## ', 1)
    text = before.rstrip('\n') + ('\n\n## ' + rest[1] if len(rest) > 1 else '\n')
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text.rstrip('\n') + f'\n\n{heading}\n\n{body.strip()}\n')
  return True
