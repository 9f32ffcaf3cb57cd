"""The staged-run runner: one resumable run of several training stages, for every trainer.

A trainer describes its run as a `Plan`: stages in order, each with how to start from the
previous stage's exported variables, how to validate, and what to export. `run` then does
the same for every experiment:

  for each stage:   finished (its model in `<workdir>/stages.json`)?  skip it
                    restore the previous stage's exported model, only if it is not in memory
                    train it (`loop.run_stage`: resumes from the stage's latest checkpoint;
                    with `eval_every`, validating every so many steps: the learning curve)
                    validate, export `<workdir>/models/<model>`, record the metrics and the
                    seconds the stage took (across resumes: `elapsed_s`) in `stages.json`
                    stop here if it is `plan.stop_after`
  at the end:       the final table in the log, on stdout and in `<workdir>/table.txt`

`stages.json` maps model names to their validation metrics plus `elapsed_s`; it is written
atomically after every stage, so a killed run re-runs at most the unfinished stage, from its
latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from absl import logging
from etils import epath

from lmjax.core import paths
from lmjax.train import checkpoint, loop

STAGES_FILE = 'stages.json'
TABLE_FILE = 'table.txt'
ELAPSED = 'elapsed_s'  # a stage record's seconds, over all invocations that worked on it

Variables = dict[str, Any]
Records = dict[str, dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a staged run.

  Attributes:
    name: the stage: its checkpoint folder (`<workdir>/ckpt/<name>`) and the `stage` of its
      lines in `metrics.jsonl`.
    start: `(previous, records) -> loop.Training | Variables`: what the stage trains, given
      the previous stage's exported variables (None for the first stage) and the records of
      the finished stages. Returning variables instead trains nothing: they are the stage's
      model (e.g. MCL's assembled head).
    validate: `variables -> metrics`, the stage's record in `stages.json`.
    spec: the exported model's `model.json` (`lmjax.models.registry` schema); a later
      invocation restores the exported variables through it when the next stage needs them.
    model: the exported folder `<workdir>/models/<model>` and the `stages.json` key
      (default: `name`).
  """

  name: str
  start: Callable[[Variables | None, Records], loop.Training | Variables]
  validate: Callable[[Variables], dict[str, Any]]
  spec: dict[str, Any]
  model: str = ''

  @property
  def model_name(self) -> str:
    return self.model or self.name


@dataclasses.dataclass(frozen=True)
class Plan:
  """A staged run.

  Attributes:
    stages: the stages in order.
    summary: `metrics -> str`, the one-line validation summary logged after each stage.
    table: `records -> str`, the final table (None: no table).
    stop_after: a stage name to stop after ('' runs every stage).
  """

  stages: Sequence[Stage]
  summary: Callable[[dict[str, Any]], str]
  table: Callable[[Records], str] | None = None
  stop_after: str = ''


def run(plan: Plan, settings: loop.RunSettings) -> Records:
  """Runs (or resumes) every stage of `plan`; returns the records of `stages.json`."""
  workdir = settings.workdir
  names = [s.name for s in plan.stages]
  if plan.stop_after and plan.stop_after not in names:
    raise ValueError(f'stop_after={plan.stop_after!r}; expected one of {names}')
  records = read_records(workdir)
  previous: Stage | None = None
  variables: Variables | None = None  # the previous stage's model, when in memory
  for stage in plan.stages:
    if stage.model_name in records:
      logging.info('[%s] finished earlier; skipping', stage.name)
      variables = None
    else:
      t_start = time.time()
      if variables is None and previous is not None:
        variables = restore_model(workdir, previous)
      start = stage.start(variables, records)
      if isinstance(start, loop.Training) and settings.eval_every > 0:
        start = with_learning_curve(start, stage, plan.summary, settings.eval_every)
      variables, before = _train(stage, start, settings)
      metrics = stage.validate(variables)
      checkpoint.export_model(model_dir(workdir, stage.model_name), variables, stage.spec)
      elapsed = round(before + time.time() - t_start, 1)
      records[stage.model_name] = {**metrics, ELAPSED: elapsed}
      write_records(workdir, records)
      logging.info('[%s] validation: %s', stage.model_name, plan.summary(metrics))
    previous = stage
    if stage.name == plan.stop_after:
      logging.info('stopping after stage %s (stop_after)', stage.name)
      return records
  if plan.table is not None:
    text = plan.table(records)
    if jax.process_index() == 0:
      paths.write_atomic(epath.Path(workdir) / TABLE_FILE, text + '\n')
      logging.info('final validation:\n%s', text)
      print(text, flush=True)
  return records


def with_learning_curve(
  training: loop.Training, stage: Stage, summary: Callable[[dict[str, Any]], str], every: int
) -> loop.Training:
  """`training` that also validates its model every `every` steps (`stage.validate`): the
  numeric metrics go to metrics.jsonl as `val_<name>` with the stage's `elapsed_s`."""

  def validate(state: loop.State) -> tuple[dict[str, Any], str]:
    metrics = stage.validate(_variables(state))
    record = {
      f'val_{k}': float(v)
      for k, v in metrics.items()
      if isinstance(v, numbers.Real) and not isinstance(v, bool)
    }
    return record, 'validation: ' + summary(metrics)

  return dataclasses.replace(training, validate=validate, validate_every=every)


def _variables(state: loop.State) -> Variables:
  """The model variables of a train state."""
  variables = {'params': state['params']}
  if jax.tree_util.tree_leaves(state['batch_stats']):
    variables['batch_stats'] = state['batch_stats']
  return variables


def _train(
  stage: Stage, start: loop.Training | Variables, settings: loop.RunSettings
) -> tuple[Variables, float]:
  """(the stage's model variables, seconds spent on it in earlier invocations)."""
  if not isinstance(start, loop.Training):
    return start, 0.0
  state, before = loop.run_stage(stage.name, start, settings)
  return _variables(state), before


def model_dir(workdir: str, model: str) -> str:
  """`<workdir>/models/<model>`: where a stage exports its model."""
  return str(epath.Path(workdir) / 'models' / model)


def restore_model(workdir: str, stage: Stage) -> Variables:
  """The variables that `stage` exported (restored as its `model.json` describes them)."""
  logging.info('[%s] restoring the exported model', stage.model_name)
  _, variables, _ = checkpoint.load_model(model_dir(workdir, stage.model_name))
  return variables


def run_one(
  stage: Stage, summary: Callable[[dict[str, Any]], str], settings: loop.RunSettings
) -> Records:
  """`run` of a one-stage plan whose final table is that stage's validation summary."""
  table = lambda records: f'{stage.name} validation: {summary(records[stage.model_name])}'
  return run(Plan(stages=[stage], summary=summary, table=table), settings)


def finished_records(workdir: str, name: str) -> Records | None:
  """The records when stage `name` finished earlier (a re-run then skips loading its data)."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  records = read_records(workdir)
  if name not in records:
    return None
  logging.info('[%s] finished earlier; skipping', name)
  return records


def read_records(workdir: str) -> Records:
  """The run's `stages.json` ({model: metrics + elapsed_s}); {} before the first stage ends."""
  path = epath.Path(workdir) / STAGES_FILE
  if not path.is_file():
    return {}
  return json.loads(path.read_text(encoding='utf-8'))


def write_records(workdir: str, records: Records) -> None:
  """Writes `stages.json` atomically (temporary file + rename; process 0 only)."""
  if jax.process_index() != 0:
    return
  paths.write_atomic(
    epath.Path(workdir) / STAGES_FILE, json.dumps(records, indent=1, sort_keys=True)
  )
