"""The generic, resumable training loop of one stage, top to bottom.

A stage owns a jitted `update_fn(state, data, idx, key) -> (state, metrics)` (built with
`jit_update`) and a checkpoint directory. `run_stage` restores the latest checkpoint of the
stage if there is one (so a killed run continues where it stopped, losing at most
`checkpoint_every` steps), otherwise starts from the given initial state, and then steps until
`num_steps`. Batch indices and RNG are pure functions of the step (`batching.train_indices`,
`fold_in(key, step)` inside the step), so a resumed run computes exactly the steps the
uninterrupted run would have. The checkpoints also keep the seconds spent on the stage, so
the staged-run runner (`lmjax.train.stages`) can record a stage's time across resumes.

Safety: `jit_update` checks every step's metrics on device; a step with a non-finite loss or
gradient norm leaves the state unchanged and records its number in a run-time entry of the
state (`BAD_STEP_KEY`, never checkpointed) that the loop reads at log / checkpoint boundaries,
raising `FloatingPointError` before anything is saved. A restored checkpoint with non-finite
parameters is refused. After `request_stop` (main's SIGTERM handler) the loop saves a
checkpoint at the next step boundary and raises `PreemptedError`; the loop keeps at most two steps
dispatched (it waits for step n - 1 after dispatching step n), so that boundary is at most about
one step away, not the `log_every` steps JAX's asynchronous dispatch would otherwise queue (a
preempted job's grace period is short). Every (re)start of a stage writes
a `{'stage', 'event': 'start', 'step', 'time'}` record to metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from lmjax.data import batching
from lmjax.train import checkpoint
from lmjax.train.workdir import UserError
from lmjax.train.writer import MetricWriter

State = dict[str, Any]
ELAPSED_KEY = 'elapsed_s'  # seconds spent on the stage, saved with each checkpoint
STOP_AGREE_EVERY = 10  # several processes: steps between exchanges of the stop flag
BAD_STEP_KEY = 'first_bad_step'  # run-time only: first step with non-finite metrics, -1: none


class PreemptedError(Exception):
  """Raised by `run_stage` after `request_stop`, once the stage's checkpoint is saved."""


_stop = {'requested': False, 'training': False}


def request_stop(signum: int = 0, frame: Any = None) -> None:
  """Signal handler (SIGTERM): inside `run_stage`, save and stop at the next step boundary;
  elsewhere (data loading, validation, export) stop at once (the run resumes like after a
  kill: from the last checkpoint and stages.json)."""
  del frame
  _stop['requested'] = True
  logging.warning('signal %d: stopping at the next step boundary', signum)
  if not _stop['training']:
    raise PreemptedError('preempted outside a training loop; re-run the same command to resume')


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
    eval_every: steps between validations inside a stage (the learning curve: `val_*`
      records with `elapsed_s` in metrics.jsonl); 0 validates at the end of each stage only.
    example_weights: optional [num_examples] sampling probabilities of the training examples
      (`lmjax.data.balance`); None draws every example once per epoch.
  """

  workdir: str
  data: dict[str, jax.Array]
  num_examples: int
  seed: int
  mesh: Mesh
  log_every: int
  checkpoint_every: int
  writer: MetricWriter
  eval_every: int = 0
  example_weights: np.ndarray | None = None


def run_settings(
  config: ml_collections.ConfigDict,
  workdir: str,
  data: dict[str, jax.Array],
  num_examples: int,
  mesh: Mesh,
  example_weights: np.ndarray | None = None,
) -> RunSettings:
  """The `RunSettings` of an experiment config (`seed`, `log_every`, `checkpoint_every`,
  optional `eval_every`), with optional training-example sampling probabilities.

  Raises `UserError` when a stage would draw more examples per step than the training set
  has (`check_batch_sizes`).
  """
  check_batch_sizes(config, num_examples)
  return RunSettings(
    workdir=workdir,
    data=data,
    num_examples=num_examples,
    seed=config.seed,
    mesh=mesh,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    writer=MetricWriter(workdir),
    eval_every=config.get('eval_every', 0),
    example_weights=example_weights,
  )


def check_batch_sizes(config: ml_collections.ConfigDict, num_examples: int) -> None:
  """Raises `UserError` if the examples drawn per step exceed `num_examples`.

  The draw is every `positives` field (BB-FCN, face classifier: the rest of the batch is
  negatives) or else `batch_size` (MCL); stages with `steps == 0` are skipped.
  """
  draws = _fields(config, 'positives') or {'batch_size': config.get('batch_size')}
  for name, value in draws.items():
    if isinstance(value, int) and value > num_examples:
      raise UserError(
        f'--config.{name}={value} is larger than the training set ({num_examples} examples); '
        'lower it or use more training data'
      )


def _fields(config: Any, key: str, prefix: str = '') -> dict[str, Any]:
  """{dotted name: value} of the fields named `key` at any depth, skipping 0-step stages."""
  out = {}
  for name, value in config.items():
    if hasattr(value, 'items'):
      if value.get('steps', 1) != 0:
        out.update(_fields(value, key, f'{prefix}{name}.'))
    elif name == key:
      out[prefix + name] = value
  return out


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
    validate: optional `state -> (record, text)`: a validation of the state's model in the
      middle of the stage, written to metrics.jsonl (with the stage's `elapsed_s` so far) and
      logged every `validate_every` steps; the last step is left to the stage's own validation.
    validate_every: steps between `validate` calls.
  """

  initial_state: Callable[[], State]
  update_fn: Callable
  num_steps: int
  batch_size: int
  hook: Callable[[State], State] | None = None
  hook_every: int = 0
  validate: Callable[[State], tuple[dict[str, Any], str]] | None = None
  validate_every: int = 0


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
  """`jax.jit` of a train step: the state is donated, state and metrics come out replicated.

  The step is guarded: when a floating metric (`loss`, `grad_norm`, ...) is not finite, the
  state comes out unchanged, and if the state has a `BAD_STEP_KEY` entry (`run_stage` adds it)
  the first such step number is recorded there. `update_fn` never sees that entry.
  """
  replicated = batching.replicated_sharding(mesh)

  def guarded(state, data, idx, key):
    inner = {k: v for k, v in state.items() if k != BAD_STEP_KEY}
    new, metrics = update_fn(inner, data, idx, key)
    ok = _all_finite(metrics)
    new = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, inner)
    if BAD_STEP_KEY in state:
      bad = state[BAD_STEP_KEY]
      number = jnp.asarray(inner.get('step', 0), jnp.int32) + 1
      new = {**new, BAD_STEP_KEY: jnp.where((bad < 0) & ~ok, number, bad)}
    return new, metrics

  return jax.jit(guarded, donate_argnums=(0,), out_shardings=(replicated, replicated))


def _all_finite(metrics: Any) -> jax.Array:
  """Whether every floating leaf of `metrics` is finite (a scalar bool on device)."""
  leaves = [
    jnp.isfinite(x).all()
    for x in jax.tree_util.tree_leaves(metrics)
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


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

  Raises:
    FloatingPointError: a step had a non-finite loss / gradient norm (nothing saved after
      it), or the checkpoint to resume from has non-finite parameters.
    PreemptedError: `request_stop` was called; the checkpoint of the current step is saved.
    UserError: the stage draws more examples per step than the training set has.
  """
  t_begin = time.time()
  mesh, writer, num_steps = settings.mesh, settings.writer, training.num_steps
  if training.batch_size > settings.num_examples:
    raise UserError(
      f'[{name}] {training.batch_size} examples per step is more than the training set '
      f'({settings.num_examples} examples); lower the batch size'
    )
  if _any_process(_stop['requested']):  # stopped between stages (the previous one finished)
    raise PreemptedError(f'[{name}] preempted before the stage started; re-run the same command')
  ckpts = checkpoint.StageCheckpoints(str(epath.Path(settings.workdir) / 'ckpt' / name))
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
    if not bool(_finite_tree((state['params'], state.get('batch_stats', {})))):
      ckpts.close()
      folder = ckpts.step_folder(start)
      raise FloatingPointError(
        f'[{name}] checkpoint {folder} has non-finite parameters; delete that folder to '
        'resume from the previous checkpoint (or the whole stage folder to restart the stage)'
      )
  else:
    start, before = 0, 0.0
    state = jax.device_put(training.initial_state(), replicated)
  state = {**state, BAD_STEP_KEY: jax.device_put(np.int32(-1), replicated)}
  key = jax.random.fold_in(jax.random.key(settings.seed), _stage_salt(name))
  writer.start(start, stage=name)
  _stop['training'] = True
  try:
    in_flight = None  # the previous step's metrics (not donated, unlike its state; see above)
    for step in range(start, num_steps):
      idx = batching.train_indices(
        step, settings.num_examples, training.batch_size, settings.seed, settings.example_weights
      )
      idx = batching.shard({'idx': idx}, mesh)['idx']
      state, metrics = training.update_fn(state, settings.data, idx, key)
      if in_flight is not None:
        jax.block_until_ready(in_flight)
      in_flight = metrics
      done = step + 1
      stop = _stop_now(done, settings.checkpoint_every)  # a SIGTERM may come at any time
      log = done % settings.log_every == 0 or done == num_steps
      hook = _due(training.hook, training.hook_every, done)
      check = _due(training.validate, training.validate_every, done) and done < num_steps
      save = done % settings.checkpoint_every == 0 or done == num_steps
      if log or hook or check or save or stop:
        _check_steps(name, state)  # one host sync: before anything is logged or saved
      if log:
        writer.train_metrics(name, done, num_steps, jax.device_get(metrics))
      if hook:
        state = {**training.hook(_without_bad_step(state)), BAD_STEP_KEY: state[BAD_STEP_KEY]}
      if check:
        record, text = training.validate(_without_bad_step(state))
        record = {**record, ELAPSED_KEY: round(before + time.time() - t_begin, 1)}
        writer.eval_metrics(name, done, record, text)
        writer.start(done)  # the speed clock leaves the validation out
      if save or stop:
        elapsed = jax.device_put(_process0_value(before + time.time() - t_begin), replicated)
        saved = {**_without_bad_step(state), ELAPSED_KEY: elapsed}
        writer.flush()  # the records up to a checkpoint are stored before it
        ckpts.save(done, saved, force=done == num_steps or stop)
      if stop and done < num_steps:
        ckpts.wait()
        raise PreemptedError(
          f'[{name}] preempted: checkpoint saved at step {done}/{num_steps}; '
          're-run the same command to resume'
        )
  finally:  # also when a step or hook fails: the last checkpoint is complete on disk
    ckpts.wait()
    ckpts.close()
    _stop['training'] = False  # after the wait: a SIGTERM there only sets the flag
  return _without_bad_step(state), before


def _stop_now(done: int, checkpoint_every: int) -> bool:
  """Whether to save and stop after step `done` (a SIGTERM was received), agreed by every
  process at the same step.

  Processes receive a preemption signal at different times; stopping where only one saw it
  would leave the others waiting in the next step's collectives. The exchange is a host
  round trip, so several processes make it only every `STOP_AGREE_EVERY` steps and at
  checkpoint steps, all at the same ones; one process reads its flag every step.
  """
  requested = _stop['requested']  # read once
  if jax.process_count() == 1:
    return requested
  if done % STOP_AGREE_EVERY and done % checkpoint_every:
    return False
  return _any_process(requested)


def _any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (every process must call this at the same point)."""
  if jax.process_count() == 1:
    return flag
  flags = multihost_utils.process_allgather(np.array([flag], np.int32))
  return bool(np.asarray(flags).any())


def _process0_value(value: float) -> np.ndarray:
  """Process 0's float32 `value` on every process (a replicated array needs one value)."""
  value = np.float32(value)
  if jax.process_count() == 1:
    return value
  return np.asarray(multihost_utils.broadcast_one_to_all(value), np.float32)


def _due(callback: Callable | None, every: int, step: int) -> bool:
  """Whether `callback` (if any) runs after step `step`, given its period `every` (0: never)."""
  return callback is not None and every > 0 and step % every == 0


def _check_steps(name: str, state: State) -> None:
  """Raises `FloatingPointError` if a step since the start had non-finite metrics."""
  bad = int(state[BAD_STEP_KEY])
  if bad >= 0:
    raise FloatingPointError(
      f'[{name}] non-finite loss or gradient norm at step {bad} (state kept from step '
      f'{bad - 1}, not saved after it); lower the learning rate or check the data, then re-run '
      'to resume from the last checkpoint'
    )


def _without_bad_step(state: State) -> State:
  return {k: v for k, v in state.items() if k != BAD_STEP_KEY}


@jax.jit
def _finite_tree(tree: Any) -> jax.Array:
  """Whether every floating array of `tree` is finite."""
  return _all_finite(tree)


def _stage_salt(name: str) -> int:
  """A stable integer per stage name (Python's hash() is randomised per process)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF
