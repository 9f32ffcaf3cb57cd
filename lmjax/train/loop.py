"""The generic, resumable training loop of one stage, top to bottom.

A stage owns a jitted `update_fn(state, data, idx, key) -> (state, metrics)` (built with
`jit_update`) and a checkpoint directory. `run_stage` restores the latest checkpoint of the
stage if there is one (so a killed run continues where it stopped, losing at most
`checkpoint_every` steps), otherwise starts from the given initial state, and then steps until
`num_steps`. Batch indices and RNG are pure functions of the step (`batching.train_indices`,
`fold_in(key, step)` inside the step), so a resumed run computes exactly the steps the
uninterrupted run would have. The checkpoints also keep the seconds spent on the stage, so
the staged-run runner (`lmjax.train.stages`) can record a stage's time across resumes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from lmjax.data import batching
from lmjax.train import checkpoint
from lmjax.train.writer import MetricWriter

State = dict[str, Any]
ELAPSED_KEY = 'elapsed_s'  # seconds spent on the stage, saved with each checkpoint


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """What every stage of a run shares.

  Attributes:
    workdir: run directory (checkpoints under `<workdir>/ckpt/<stage>`).
    data: the device-resident training arrays passed to every step.
    num_examples: training set size (for the epoch-wise index permutations).
    seed: run seed (batch order and augmentation key).
    mesh: the `('data',)` mesh.
    log_every: steps between metric lines (loss, speed, ETA; NaN check).
    checkpoint_every: steps between checkpoints.
    writer: the run's metric writer.
  """

  workdir: str
  data: dict[str, jax.Array]
  num_examples: int
  seed: int
  mesh: Mesh
  log_every: int
  checkpoint_every: int
  writer: MetricWriter


def run_settings(
  config: ml_collections.ConfigDict,
  workdir: str,
  data: dict[str, jax.Array],
  num_examples: int,
  mesh: Mesh,
) -> RunSettings:
  """The `RunSettings` of an experiment config (`seed`, `log_every`, `checkpoint_every`)."""
  return RunSettings(
    workdir=workdir,
    data=data,
    num_examples=num_examples,
    seed=config.seed,
    mesh=mesh,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    writer=MetricWriter(workdir),
  )


@dataclasses.dataclass(frozen=True)
class Training:
  """What one stage trains.

  Attributes:
    initial_state: builds the step-0 state (called for a fresh start, and abstractly via
      `jax.eval_shape` to restore).
    update_fn: jitted `(state, data, idx, key) -> (state, metrics)` (see `jit_update`).
    num_steps: total steps of the stage.
    batch_size: examples drawn per step (`batching.train_indices`).
    hook: optional `state -> state` called every `hook_every` steps, before the checkpoint
      of that step (e.g. a validation check that flips a flag kept in the state, so that
      the flag is checkpointed with it and a resumed run sees it).
    hook_every: steps between hook calls.
  """

  initial_state: Callable[[], State]
  update_fn: Callable
  num_steps: int
  batch_size: int
  hook: Callable[[State], State] | None = None
  hook_every: int = 0


def init_state(variables: dict[str, Any], tx) -> State:
  """`{step, params, batch_stats, opt}` from model variables and an optax transformation.

  Experiments may add their own entries (e.g. BB-FCN's hard-negative-mining flag); they are
  checkpointed and restored with the rest.
  """
  return {
    'step': np.int32(0),
    'params': variables['params'],
    'batch_stats': variables.get('batch_stats', {}),
    'opt': tx.init(variables['params']),
  }


def jit_update(update_fn: Callable, mesh: Mesh) -> Callable:
  """`jax.jit` of a train step: the state is donated, state and metrics come out replicated."""
  replicated = batching.replicated_sharding(mesh)
  return jax.jit(update_fn, donate_argnums=(0,), out_shardings=(replicated, replicated))


def sgd_step(state: dict[str, Any], grads: Any, tx: optax.GradientTransformation) -> dict:
  """`state` (a dict with `step`, `params`, `opt`) after one optimiser update with `grads`."""
  updates, opt = tx.update(grads, state['opt'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  return {**state, 'step': state['step'] + 1, 'params': params, 'opt': opt}


def run_stage(name: str, training: Training, settings: RunSettings) -> tuple[State, float]:
  """Trains one stage to `training.num_steps`, resuming from its latest checkpoint.

  Args:
    name: stage name (checkpoints under `<workdir>/ckpt/<name>`, `stage` in metrics.jsonl).
    training: the stage's initial state, step function, length and hook.
    settings: the run-wide settings.

  Returns:
    (the final state, also checkpointed; seconds the stage took in earlier invocations, as
    saved with the checkpoint this invocation resumed from, 0 for a fresh start).
  """
  t_begin = time.time()
  mesh, writer, num_steps = settings.mesh, settings.writer, training.num_steps
  ckpts = checkpoint.StageCheckpoints(os.path.join(settings.workdir, 'ckpt', name))
  replicated = batching.replicated_sharding(mesh)
  abstract = jax.eval_shape(training.initial_state)
  abstract = {**abstract, ELAPSED_KEY: jax.ShapeDtypeStruct((), np.float32)}
  abstract = jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
  )
  writer.parameter_overview(name, abstract['params'])
  start = ckpts.latest_step()
  if start is not None:
    logging.info('[%s] resuming from the checkpoint at step %d', name, start)
    state = ckpts.restore(abstract)
    before = float(state.pop(ELAPSED_KEY))
  else:
    start, before = 0, 0.0
    state = jax.device_put(training.initial_state(), replicated)
  key = jax.random.fold_in(jax.random.key(settings.seed), _stage_salt(name))
  writer.start(start)
  try:
    for step in range(start, num_steps):
      idx = batching.train_indices(step, settings.num_examples, training.batch_size, settings.seed)
      idx = batching.shard({'idx': idx}, mesh)['idx']
      state, metrics = training.update_fn(state, settings.data, idx, key)
      done = step + 1
      if done % settings.log_every == 0 or done == num_steps:
        metrics = jax.device_get(metrics)
        if not all(math.isfinite(float(v)) for v in metrics.values()):
          raise FloatingPointError(f'[{name}] non-finite metrics at step {done}: {metrics}')
        writer.train_metrics(name, done, num_steps, metrics)
      if training.hook is not None and training.hook_every and done % training.hook_every == 0:
        state = training.hook(state)
      if done % settings.checkpoint_every == 0 or done == num_steps:
        elapsed = jax.device_put(np.float32(before + time.time() - t_begin), replicated)
        ckpts.save(done, {**state, ELAPSED_KEY: elapsed}, force=done == num_steps)
  finally:  # also when a step or hook fails: the last checkpoint is complete on disk
    ckpts.wait()
    ckpts.close()
  return state, before


def _stage_salt(name: str) -> int:
  """A stable integer per stage name (Python's hash() is randomised per process)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF
