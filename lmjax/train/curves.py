"""Learning curves: validation error against CPU minutes of training runs, as a plot and a table.

    python -m lmjax.train.curves --cores=1 --out=docs/recipes.png \
        --curve="MCL5, MTFL:paper:runs/mcl5_paper" --curve="MCL5, MTFL:fast:runs/mcl5_fast"

A curve is `PANEL:LABEL:WORKDIR`: curves with the same panel share one subplot. The points of a
run are its in-stage validations (`val_<metric>` records with `elapsed_s` in metrics.jsonl,
written with `--config.eval_every=N`) plus each stage's final validation (`stages.json`). CPU
minutes are the stages' seconds (validation included) × `--cores` / 60, counted across the
stages of the run in order (`--stages`, default: those of metrics.jsonl in the order they ran,
then the untrained ones of stages.json such as MCL's `am`); a stage's final record is the
stages.json entry of the same name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from lmjax.train.stages import read_records
from lmjax.train.writer import METRICS_FILE, read_metrics


@dataclasses.dataclass(frozen=True)
class Curve:
  """One run's validation error against CPU minutes.

  Attributes:
    panel: the subplot it is drawn in.
    label: its legend entry.
    minutes: [N] CPU minutes at each validation, increasing.
    values: [N] the metric there.
    stages: [N] the stage each point belongs to.
  """

  panel: str
  label: str
  minutes: np.ndarray
  values: np.ndarray
  stages: tuple[str, ...]

  def at(self, minutes: float) -> float:
    """The metric of the last validation at or before `minutes` (NaN before the first)."""
    i = np.searchsorted(self.minutes, minutes, side='right') - 1
    return float(self.values[i]) if i >= 0 else float('nan')


def parse_curve(text: str) -> tuple[str, str, str]:
  """`PANEL:LABEL:WORKDIR` -> (panel, label, workdir); a one-line ValueError otherwise."""
  parts = text.split(':', 2)
  if len(parts) != 3 or not all(parts):
    raise ValueError(f'--curve={text!r}: expected PANEL:LABEL:WORKDIR')
  return parts[0], parts[1], parts[2]


def load_curve(
  workdir: str,
  panel: str,
  label: str,
  metric: str = 'nme_ipd',
  cores: float = 1.0,
  stages: Sequence[str] = (),
) -> Curve:
  """The curve of run `workdir` (see the module docstring).

  Raises:
    FileNotFoundError: the run has no metrics.jsonl.
    ValueError: the run has no validation of `metric` in the chosen stages.
  """
  path = str(epath.Path(workdir) / METRICS_FILE)
  if not epath.Path(path).is_file():
    raise FileNotFoundError(f'{path}: no such file (is {workdir} an lmjax.main run?)')
  records = read_metrics(path)
  finals = read_records(workdir)
  order = list(stages) or list(dict.fromkeys([r['stage'] for r in records] + list(finals)))
  key, points, offset = f'val_{metric}', [], 0.0
  for stage in order:
    inner = [(r['elapsed_s'], r[key]) for r in records if r.get('stage') == stage and key in r]
    final = finals.get(stage, {})
    if metric in final and 'elapsed_s' in final:
      inner.append((final['elapsed_s'], final[metric]))
    points += [(offset + s, v, stage) for s, v in sorted(inner)]
    if 'elapsed_s' in final:
      offset += final['elapsed_s']
    elif inner:
      offset += max(s for s, _ in inner)
  if not points:
    raise ValueError(f'{workdir}: no validation of {metric!r} (run it with --config.eval_every)')
  seconds, values, names = zip(*points, strict=True)
  minutes = np.asarray(seconds, np.float64) * cores / 60.0
  return Curve(panel, label, minutes, np.asarray(values, np.float64), tuple(names))


def format_table(curves: Sequence[Curve], checkpoints: Sequence[float], metric: str) -> str:
  """A text table: per curve, the metric at each of `checkpoints` CPU minutes, the last value
  and its minutes."""
  head = ['panel', 'recipe'] + [f'@{m:g} min' for m in checkpoints] + ['last', 'at min']
  rows = [
    [c.panel, c.label]
    + [f'{c.at(m):.2f}' for m in checkpoints]
    + [f'{c.values[-1]:.2f}', f'{c.minutes[-1]:.1f}']
    for c in curves
  ]
  widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
  lines = [f'validation {metric} (%) against CPU minutes']
  lines += ['  '.join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in [head, *rows]]
  return '\n'.join(lines)


def plot(curves: Sequence[Curve], out: str, metric: str) -> str:
  """Writes a PNG with one subplot per panel (metric against CPU minutes); returns `out`."""
  import matplotlib

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  panels = list(dict.fromkeys(c.panel for c in curves))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
  for ax, panel in zip(axes[0], panels, strict=True):
    for c in (c for c in curves if c.panel == panel):
      ax.plot(c.minutes, c.values, marker='o', markersize=3, label=c.label)
    ax.set_title(panel)
    ax.set_xlabel('CPU minutes')
    ax.set_ylabel(f'validation {metric} (%)')
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv: Sequence[str]) -> None:
  from absl import flags

  del argv
  f = flags.FLAGS
  curves = []
  for text in f.curve:
    panel, label, workdir = parse_curve(text)
    curves.append(load_curve(workdir, panel, label, f.metric, f.cores, f.stages))
  print(format_table(curves, [float(m) for m in f.at_minutes], f.metric))
  if f.out:
    print(plot(curves, f.out, f.metric))


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_multi_string('curve', None, 'PANEL:LABEL:WORKDIR (repeat)')
  flags.DEFINE_string('metric', 'nme_ipd', 'validation metric (a key of stages.json)')
  flags.DEFINE_float('cores', 1.0, 'CPU cores each run used (minutes = seconds x cores / 60)')
  flags.DEFINE_list('stages', [], 'stages to chain, in order (default: all, as they ran)')
  flags.DEFINE_list('at_minutes', ['10', '20', '30'], 'CPU minutes of the table columns')
  flags.DEFINE_string('out', '', 'PNG to write (default: the table only)')
  flags.mark_flags_as_required(['curve'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
