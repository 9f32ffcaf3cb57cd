"""The run's one metric writer: JSON lines in `<workdir>/metrics.jsonl` plus absl log lines.

Every record is one JSON object per line with the keys `stage` and `step`; train records add
`time` (Unix seconds) and the step's scalars, validation records the values a trainer checks
(e.g. `val_loss`, `hnm`). Every (re)start of a stage writes a marker `{stage, 'event': 'start',
step, time}` (`step`: the step it starts from): a resumed stage repeats the steps after its
last checkpoint, so a reader drops a stage's earlier records with a step above a later
marker's (`read_metrics` does). Log lines carry the same numbers, and train lines add steps/s
and the ETA of the stage. A parameter overview (count and a short table per top-level subtree) is
logged when a stage starts. Only process 0 writes (`jax.process_index() == 0`), so a
multi-host run keeps one file and one log.

A remote workdir (`lmjax.core.paths`) gets the same files: the records are appended in
batches (`flush`: at least every `REMOTE_FLUSH_S` seconds, before every checkpoint and at
the end; an object store rewrites the whole object per append), and absl's log file, which
can only be local, is written in the workdir's local mirror (`log_folder`) and copied into
the workdir at each flush (`upload_logs`).

This is a small own writer rather than clu's `metric_writers`: clu would be a new dependency
for about 80 lines, its `write_scalars(step, scalars)` has no place for the stage name or for
booleans and integers that the tests and model cards read back, and its default writer wants
TensorFlow. `metrics.jsonl` stays a plain file that any tool can read.
"""

from __future__ import annotations

import atexit
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath

from lmjax.core import paths

METRICS_FILE = 'metrics.jsonl'
LOG_PREFIX = 'train'  # absl log files: train.INFO (process 0), train.process<i>.INFO
REMOTE_FLUSH_S = 60.0


class MetricWriter:
  """Writes a run's metrics (process 0 only) and keeps the clock for steps/s and ETA."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = str(epath.Path(workdir) / METRICS_FILE)
    self.active = jax.process_index() == 0
    self._clock: tuple[int, float] = (0, time.time())  # (step, time) of the last train line
    self._last_table = ''  # the last parameter table logged (logged again only when it changes)
    self._remote = paths.is_remote(workdir)
    self._pending: list[str] = []  # remote workdirs: lines not yet stored
    self._flushed = time.time()
    if self.active and self._remote:
      atexit.register(self.flush)  # the lines after the last checkpoint, and the log's end

  def write(self, record: Mapping[str, Any]) -> None:
    """Appends one JSON line (remote workdirs: in the next `flush`, due every
    `REMOTE_FLUSH_S` seconds)."""
    if not self.active:
      return
    line = json.dumps(dict(record)) + '\n'
    if not self._remote:
      paths.append_text(self.path, line)
      return
    self._pending.append(line)
    if time.time() - self._flushed >= REMOTE_FLUSH_S:
      self.flush()

  def flush(self) -> None:
    """Stores the pending lines and the log files of a remote workdir (local: nothing to do)."""
    if not (self.active and self._remote):
      return
    if self._pending:
      paths.append_text(self.path, ''.join(self._pending))
      self._pending = []
    upload_logs(self.workdir)
    self._flushed = time.time()

  def start(self, step: int, stage: str | None = None) -> None:
    """Restarts the speed clock at `step` (a stage starts or resumes); with `stage`, also
    writes the stage's start marker."""
    self._clock = (step, time.time())
    if stage is not None:
      self.write({'stage': stage, 'event': 'start', 'step': step, 'time': round(time.time(), 1)})

  def train_metrics(
    self, stage: str, step: int, num_steps: int, metrics: Mapping[str, float]
  ) -> None:
    """Logs and records the scalars of train step `step` of `num_steps` (with steps/s, ETA)."""
    last_step, last_time = self._clock
    now = time.time()
    rate = (step - last_step) / max(now - last_time, 1e-9)
    self._clock = (step, now)
    values = {k: float(v) for k, v in metrics.items()}
    if self.active:
      logging.info(
        '[%s] step %d/%d  %s  %.2f steps/s  ETA %.1f min',
        stage,
        step,
        num_steps,
        '  '.join(f'{k}={v:.5g}' for k, v in values.items()),
        rate,
        (num_steps - step) / rate / 60 if rate > 0 else math.inf,
      )
    self.write({'stage': stage, 'step': step, 'time': round(now, 1), **values})

  def eval_metrics(self, stage: str, step: int, record: Mapping[str, Any], text: str) -> None:
    """Logs `[stage] step N  text` and records `{stage, step, **record}` (a validation check)."""
    if self.active:
      logging.info('[%s] step %d  %s', stage, step, text)
    self.write({'stage': stage, 'step': step, **record})

  def parameter_overview(self, stage: str, params: Any) -> None:
    """Logs a table of arrays / parameters per top-level subtree (once per distinct model)."""
    if not self.active:
      return
    table = parameter_table(params)
    if table == self._last_table:
      logging.info('[%s] parameters: as above (%s)', stage, table.rsplit('\n', 1)[-1].split()[-1])
      return
    self._last_table = table
    logging.info('[%s] parameters:\n%s', stage, table)


def log_folder(workdir: str) -> str:
  """Where absl writes this run's log files: the workdir, or its local mirror when remote."""
  return str(paths.local_mirror(workdir))


def upload_logs(workdir: str) -> None:
  """Copies the log files of a remote workdir's mirror into it (local workdirs: nothing)."""
  if not paths.is_remote(workdir):
    return
  folder = epath.Path(log_folder(workdir))
  for entry in folder.iterdir() if folder.exists() else ():
    if not (entry.name.startswith(LOG_PREFIX) and entry.is_file()):  # absl's files and links
      continue
    target = epath.Path(workdir) / entry.name
    stat = entry.stat()  # follows absl's train.INFO link to the current file
    modified = (stat.mtime, stat.length)
    if _uploaded.get(str(target)) != modified:
      target.write_bytes(entry.read_bytes())
      _uploaded[str(target)] = modified


_uploaded: dict[str, tuple] = {}  # upload_logs: remote log -> (mtime, size) of its copy


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The records of a `metrics.jsonl` without start markers and without the records that a
  later (re)start of their stage repeated (those with a step above the restart's)."""
  text = epath.Path(path).read_text(encoding='utf-8')
  records = [json.loads(line) for line in text.splitlines() if line.strip()]
  kept: list[dict[str, Any]] = []
  for record in records:
    if record.get('event') == 'start':
      stage, step = record.get('stage'), record['step']
      kept = [r for r in kept if r.get('stage') != stage or r['step'] <= step]
    else:
      kept.append(record)
  return kept


def parameter_table(params: Any) -> str:
  """A short text table: one row per top-level subtree of `params` (arrays, parameters)."""
  subtrees = params.items() if isinstance(params, Mapping) else [('', params)]
  rows = []
  for name, tree in subtrees:
    leaves = jax.tree_util.tree_leaves(tree)
    rows.append((str(name), len(leaves), sum(int(np.prod(x.shape)) for x in leaves)))
  rows.append(('total', sum(r[1] for r in rows), sum(r[2] for r in rows)))
  width = max(len('subtree'), *(len(r[0]) for r in rows))
  lines = [f'{"subtree":<{width}}  {"arrays":>6}  {"parameters":>12}']
  lines += [f'{n:<{width}}  {a:>6}  {p:>12,}' for n, a, p in rows]
  return '\n'.join(lines)
