"""Run hardening: NaN guard, poisoned checkpoints, workdir lock, config history, start-up
checks, SIGTERM (save and exit 0, then resume)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lmjax.data import batching
from lmjax.train import checkpoint, loop, workdir, writer

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = [
  '--config=configs/mcl5.py:runlocal,data=synthetic',
  '--config.model.width=32',
  '--config.batch_size=8',
  '--config.eval_batch_size=16',
  '--config.data.synthetic_train=48',
  '--config.data.synthetic_validation=16',
  '--config.log_every=1',
  '--config.checkpoint_every=1000',
  '--config.stop_after=bm',
]


def main_cmd(work, data_dir, *extra):
  cmd = [sys.executable, '-m', 'lmjax.main', *TINY, f'--workdir={work}']
  return [*cmd, f'--config.data.data_dir={data_dir}', *extra]


def run_main(work, data_dir, *extra):
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  cmd = main_cmd(work, data_dir, *extra)
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def last_line(result):
  return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


# --- NaN guard and poisoned checkpoints (in-process) ---------------------------------------


def settings(work, log_every=2, checkpoint_every=3):
  mesh = batching.make_mesh()
  rng = np.random.default_rng(0)
  data = {'x': rng.normal(size=(12, 3)).astype(np.float32), 'y': np.ones(12, np.float32)}
  return loop.RunSettings(
    workdir=str(work),
    data=batching.replicate(data, mesh),
    num_examples=12,
    seed=0,
    mesh=mesh,
    log_every=log_every,
    checkpoint_every=checkpoint_every,
    writer=writer.MetricWriter(str(work)),
  )


def training(nan_at=None, steps=6):
  """A linear regression whose loss (hence gradient and update) is NaN at step `nan_at`."""
  tx = optax.sgd(0.1)

  def update(state, data, idx, key):
    def loss_fn(p):
      loss = jnp.mean((data['x'][idx] @ p['w'] - data['y'][idx]) ** 2)
      return loss * jnp.where(state['step'] + 1 == (nan_at or -1), jnp.nan, 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(state['params'])
    return loop.sgd_step(state, grads, tx), {'loss': loss, 'grad_norm': optax.tree.norm(grads)}

  return loop.Training(
    initial_state=lambda: loop.init_state({'params': {'w': jnp.zeros(3)}}, tx),
    update_fn=loop.jit_update(update, batching.make_mesh()),
    num_steps=steps,
    batch_size=4,
  )


def latest(work, stage='a'):
  ckpts = checkpoint.StageCheckpoints(str(work / 'ckpt' / stage))
  step = ckpts.latest_step()
  ckpts.close()
  return step


def test_jit_update_keeps_the_state_and_records_the_first_bad_step():
  mesh = batching.make_mesh()
  step = loop.jit_update(
    lambda s, d, i, k: ({**s, 'step': s['step'] + 1, 'w': s['w'] + 1}, {'loss': d['loss']}), mesh
  )
  state = {'step': jnp.int32(4), 'w': jnp.zeros(2), loop.BAD_STEP_KEY: jnp.int32(-1)}
  state, _ = step(state, {'loss': jnp.float32(1)}, jnp.zeros(1), jax.random.key(0))
  assert int(state['step']) == 5 and int(state[loop.BAD_STEP_KEY]) == -1
  for _ in range(2):
    state, _ = step(state, {'loss': jnp.float32(jnp.inf)}, jnp.zeros(1), jax.random.key(0))
  assert int(state['step']) == 5 and float(state['w'][0]) == 1.0  # both bad steps undone
  assert int(state[loop.BAD_STEP_KEY]) == 6  # the first bad one


def test_nan_between_log_steps_is_never_checkpointed(tmp_path):
  # Step 3 is a checkpoint step but not a log step: the old loop saved its NaN state.
  message = r'^\[a\] non-finite loss or gradient norm at step 3 '
  with pytest.raises(FloatingPointError, match=message):
    loop.run_stage('a', training(nan_at=3), settings(tmp_path))
  assert latest(tmp_path) is None
  # NaN at step 5 (neither log nor checkpoint step): found at step 6, before its checkpoint.
  with pytest.raises(FloatingPointError, match='at step 5'):
    loop.run_stage('b', training(nan_at=5), settings(tmp_path))
  assert latest(tmp_path, 'b') == 3
  state, _ = loop.run_stage('b', training(), settings(tmp_path))  # resumes from the clean 3
  assert int(state['step']) == 6 and loop.BAD_STEP_KEY not in state
  assert np.isfinite(np.asarray(state['params']['w'])).all()


def test_resuming_from_a_non_finite_checkpoint_is_refused(tmp_path):
  run = settings(tmp_path)
  state = jax.device_put(training().initial_state(), batching.replicated_sharding(run.mesh))
  state['params'] = {'w': jnp.full(3, jnp.nan)}
  ckpts = checkpoint.StageCheckpoints(str(tmp_path / 'ckpt' / 'a'))
  ckpts.save(3, {**state, loop.ELAPSED_KEY: jnp.float32(0)}, force=True)
  ckpts.wait()
  ckpts.close()
  folder = tmp_path / 'ckpt' / 'a' / '3'
  with pytest.raises(FloatingPointError, match=f'checkpoint {folder} has non-finite.*delete'):
    loop.run_stage('a', training(), run)


# --- start-up checks ----------------------------------------------------------------------


def test_check_settings_rejects_settings_that_cannot_work(tmp_path):
  config = ml_collections.ConfigDict(
    {'log_every': 10, 'checkpoint_every': 100, 'stages': {'bm': {'steps': 0}, 'wm': {'steps': 0}}}
  )
  with pytest.raises(workdir.UserError, match=r'^every stage has 0 steps \(config.stages.bm'):
    workdir.check_settings(config, str(tmp_path))
  config.stages.wm.steps = 5
  workdir.check_settings(config, str(tmp_path))
  config.checkpoint_every = 0
  with pytest.raises(workdir.UserError, match=r'^--config.checkpoint_every=0: expected a pos'):
    workdir.check_settings(config, str(tmp_path))
  bbfcn = ml_collections.ConfigDict(
    {'batch_size': 512, 'stages': {'a': {'steps': 5, 'positives': 64}, 'b': {'steps': 0}}}
  )
  loop.check_batch_sizes(bbfcn, 64)  # positives, not batch_size, are drawn from the set
  with pytest.raises(workdir.UserError, match=r'^--config.stages.a.positives=64 is larger'):
    loop.check_batch_sizes(bbfcn, 63)


def test_main_reports_typos_and_file_workdirs_in_one_line(tmp_path):
  result = run_main(tmp_path / 'w', tmp_path, '--config.stages.bm.lrr=1')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert last_line(result) == 'error: --config.stages.bm.lrr: no such field lrr (did you mean lr?)'
  (tmp_path / 'file').write_text('')
  result = run_main(tmp_path / 'file', tmp_path)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  expected = f'error: --workdir={tmp_path / "file"} is an existing file; expected a directory'
  assert last_line(result) == expected


# --- lock and config history (real processes) ---------------------------------------------


def test_second_run_in_a_locked_workdir_is_refused(tmp_path):
  work = tmp_path / 'run'
  work.mkdir()
  fd = workdir.lock(str(work))  # this test process is the first run
  try:
    result = run_main(work, tmp_path)
  finally:
    workdir.unlock(fd)
  assert result.returncode == 1, result.stderr[-2000:]
  pid, host = os.getpid(), socket.gethostname()
  expected = f'error: {work} is in use by another run (pid {pid} on {host}, lock {work}/.lock)'
  assert last_line(result).startswith(expected)
  assert not list(work.glob('train*'))  # refused before its log file was opened
  (work / '.lock').write_text('999999 elsewhere\n')  # a dead holder's file: no lock on it
  workdir.unlock(workdir.lock(str(work)))


def test_changed_config_is_refused_once_the_workdir_has_results(tmp_path, data_dir):
  work = tmp_path / 'run'
  # Runs until its training set is known, then fails the batch-size check (config recorded).
  first = run_main(work, data_dir, '--config.batch_size=1000')
  assert first.returncode == 1 and 'Traceback' not in first.stderr, first.stderr[-2000:]
  assert last_line(first) == (
    'error: --config.batch_size=1000 is larger than the training set (48 examples); '
    'lower it or use more training data'
  )
  (work / 'stages.json').write_text('{"bm": {}}')  # as if a stage had finished
  again = run_main(work, data_dir, '--config.batch_size=1024', '--config.log_every=7')
  assert again.returncode == 1
  assert last_line(again).startswith(f'error: {work} was trained with another config (')
  assert last_line(again).endswith(
    'changed: batch_size; use the same config, another --workdir, or --allow_config_change '
    'to continue with it'
  )  # log_every is ignored
  assert json.loads((work / 'config.json').read_text())['batch_size'] == 1000
  allowed = run_main(work, data_dir, '--config.batch_size=1024', '--allow_config_change')
  assert allowed.returncode == 1 and 'larger than the training set' in last_line(allowed)
  history = sorted((work / 'configs').iterdir())
  assert [json.loads(p.read_text())['batch_size'] for p in history] == [1000, 1024]
  assert json.loads((work / 'config.json').read_text())['batch_size'] == 1024


def test_record_config_without_results_accepts_a_change(tmp_path):
  first, second = json.dumps({'a': 1, 'b': {'c': 2}}), json.dumps({'a': 1, 'b': {'c': 3, 'd': 0}})
  workdir.record_config(str(tmp_path), first, allow_change=False)
  changed = workdir.record_config(str(tmp_path), second, allow_change=False)
  assert changed == ['b.c', 'b.d'] and len(os.listdir(tmp_path / 'configs')) == 2


# --- SIGTERM -------------------------------------------------------------------------------


def bm_steps(work):
  path = work / 'metrics.jsonl'
  if not path.exists():
    return []
  return [r['step'] for r in writer.read_metrics(str(path)) if r['stage'] == 'bm']


def test_sigterm_saves_exits_zero_and_the_rerun_resumes(tmp_path, data_dir):
  work = tmp_path / 'run'
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  steps = '--config.stages.bm.steps=60'
  proc = subprocess.Popen(
    main_cmd(work, data_dir, steps), cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
  )
  deadline = time.time() + 240
  while time.time() < deadline and max(bm_steps(work) or [0]) < 2 and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-3000:]
  assert 'preempted: checkpoint saved at step' in stderr and 're-run the same command' in stderr
  saved = latest(work, 'bm')
  assert 2 <= saved < 60  # a preemption checkpoint (checkpoint_every is 1000)
  assert not (work / 'stages.json').exists()
  rerun = run_main(work, data_dir, steps)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f'resuming from the checkpoint at step {saved}' in rerun.stderr
  lines = [json.loads(line) for line in (work / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in lines if r.get('event') == 'start'] == [0, saved]
  assert bm_steps(work) == list(range(1, 61))  # every step once after dropping repeats
  assert 'bm' in json.loads((work / 'stages.json').read_text())
