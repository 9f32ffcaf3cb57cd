"""The generic, resumable training loop of one stage, top to bottom.

A stage owns a jitted `update_fn(state, data, idx, key) -> (state, metrics)` and a checkpoint
directory. `run_stage` restores the latest checkpoint of the stage if there is one (so a killed
run continues where it stopped, losing at most `checkpoint_every` steps), otherwise starts
from the given initial state, and then steps until `num_steps`. Batch indices and RNG are
pure functions of the step (`batching.train_indices`, `fold_in(key, step)` inside the
step), so a resumed run computes exactly the steps the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from absl import logging

from lmjax.data import batching
from lmjax.train import checkpoint

State = dict[str, Any]


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


def run_stage(
  name: str,
  *,
  workdir: str,
  initial_state: Callable[[], State],
  update_fn: Callable,
  data: dict[str, jax.Array],
  num_examples: int,
  num_steps: int,
  batch_size: int,
  seed: int,
  mesh,
  log_every: int,
  checkpoint_every: int,
  hook: Callable[[State], State] | None = None,
  hook_every: int = 0,
) -> State:
  """Trains one stage to `num_steps`, resuming from its latest checkpoint.

  Args:
    name: stage name (checkpoints under `<workdir>/ckpt/<name>`, logs in `metrics.jsonl`).
    workdir: run directory.
    initial_state: builds the step-0 state (called for a fresh start, and abstractly via
      `jax.eval_shape` to restore).
    update_fn: jitted `(state, data, idx, key) -> (state, metrics)`.
    data: the device-resident training arrays passed to every step.
    num_examples: training set size (for the epoch-wise index permutations).
    num_steps: total steps of the stage.
    batch_size: global batch size.
    seed: run seed (batch order and augmentation key).
    mesh: the `('data',)` mesh.
    log_every: steps between log lines (loss, lr, speed, ETA; NaN check).
    checkpoint_every: steps between checkpoints.
    hook: optional `state -> state` called every `hook_every` steps, before the checkpoint
      of that step (e.g. a validation check that flips a flag kept in the state, so that
      the flag is checkpointed with it and a resumed run sees it).
    hook_every: steps between hook calls.

  Returns:
    The final state (also checkpointed).
  """
  ckpts = checkpoint.StageCheckpoints(os.path.join(workdir, 'ckpt', name))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  abstract = jax.eval_shape(initial_state)
  abstract = jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract
  )
  start = ckpts.latest_step()
  if start is not None:
    logging.info('[%s] resuming from the checkpoint at step %d', name, start)
    state = ckpts.restore(abstract)
  else:
    start = 0
    state = jax.device_put(initial_state(), replicated)
  key = jax.random.fold_in(jax.random.key(seed), _stage_salt(name))
  log_path = os.path.join(workdir, 'metrics.jsonl')
  t0, last_step = time.time(), start
  for step in range(start, num_steps):
    idx = batching.train_indices(step, num_examples, batch_size, seed)
    idx = batching.shard({'idx': idx}, mesh)['idx']
    state, metrics = update_fn(state, data, idx, key)
    done = step + 1
    if done % log_every == 0 or done == num_steps:
      metrics = jax.device_get(metrics)
      if not all(math.isfinite(float(v)) for v in metrics.values()):
        raise FloatingPointError(f'[{name}] non-finite metrics at step {done}: {metrics}')
      rate = (done - last_step) / max(time.time() - t0, 1e-9)
      logging.info(
        '[%s] step %d/%d  %s  %.2f steps/s  ETA %.1f min',
        name,
        done,
        num_steps,
        '  '.join(f'{k}={float(v):.5g}' for k, v in metrics.items()),
        rate,
        (num_steps - done) / rate / 60,
      )
      record = {'stage': name, 'step': done, 'time': round(time.time(), 1)}
      append_json(log_path, {**record, **{k: float(v) for k, v in metrics.items()}})
      t0, last_step = time.time(), done
    if hook is not None and hook_every and done % hook_every == 0:
      state = hook(state)
    if done % checkpoint_every == 0 or done == num_steps:
      ckpts.save(done, state, force=done == num_steps)
  ckpts.wait()
  ckpts.close()
  return state


def _stage_salt(name: str) -> int:
  """A stable integer per stage name (Python's hash() is randomised per process)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def append_json(path: str, record: dict[str, Any]) -> None:
  """Appends one JSON line (e.g. to a run's `metrics.jsonl`)."""
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(record) + '\n')


def read_json(path: str) -> dict[str, Any]:
  """A JSON file's object, or {} when the file does not exist (e.g. a run's `stages.json`)."""
  if not os.path.isfile(path):
    return {}
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically (temporary file + rename), so a kill never leaves half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def sgd_step(state: dict[str, Any], grads: Any, tx: optax.GradientTransformation) -> dict:
  """`state` (a dict with `step`, `params`, `opt`) after one optimiser update with `grads`."""
  updates, opt = tx.update(grads, state['opt'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  return {**state, 'step': state['step'] + 1, 'params': params, 'opt': opt}
