"""Several training processes on one machine train like one process (`lmjax.train.distributed`,
`launch/local_multiprocess.sh`): real processes, CPU collectives through gloo."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lmjax.train import distributed, writer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith(('JAX_', 'XLA_FLAGS'))}
  env.update(JAX_PLATFORMS='cpu', LMJAX_COMPILATION_CACHE='off', PYTHON=sys.executable, **extra)
  return env


# ----------------------------------------------------------------------------- layout
def test_detect_layout_from_values_environment_and_clusters():
  assert distributed.detect(environ={}).single
  layout = distributed.detect('h:1', 3, 2, environ={})
  assert (layout.num_processes, layout.process_id, layout.coordinator_address) == (3, 2, 'h:1')
  env = {'JAX_COORDINATOR_ADDRESS': 'h:9', 'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '1'}
  assert distributed.detect(environ=env) == distributed.Layout(2, 1, 'h:9')
  assert distributed.detect(process_id=0, environ=env).process_id == 0  # values win
  step = {'SLURM_NTASKS': '4', 'SLURM_STEP_NODELIST': 'node[1-2]'}
  assert distributed.detect(environ=step).auto
  assert distributed.detect(environ={**step, 'SLURM_NTASKS': '1'}).single
  assert distributed.detect(environ={'SLURM_NTASKS': '4'}).single  # the batch script, not srun
  assert distributed.detect(environ={'LMJAX_DISTRIBUTED': 'auto'}).auto
  assert distributed.detect(environ={'TPU_WORKER_HOSTNAMES': 'a,b'}).auto
  assert distributed.detect(environ={'TPU_WORKER_HOSTNAMES': 'a'}).single


@pytest.mark.parametrize(
  'env,message',
  [
    ({'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '0'}, 'coordinator_address: a run of 2'),
    ({'JAX_NUM_PROCESSES': '2', 'JAX_COORDINATOR_ADDRESS': 'h:1'}, 'process_id: a run of 2'),
    (
      {'JAX_NUM_PROCESSES': '2', 'JAX_COORDINATOR_ADDRESS': 'h:1', 'JAX_PROCESS_ID': '2'},
      '0 <= id',
    ),
    ({'JAX_NUM_PROCESSES': 'two'}, "JAX_NUM_PROCESSES: expected an integer, got 'two'"),
    ({'JAX_NUM_PROCESSES': '0'}, 'num_processes: expected a positive'),
  ],
)
def test_detect_names_what_is_wrong(env, message):
  with pytest.raises(ValueError, match=message):
    distributed.detect(environ=env)


# ----------------------------------------------------------------------------- sharding
SHARD_SCRIPT = textwrap.dedent("""
  import json, sys
  import jax
  from lmjax.train import distributed, writer
  jax.config.update('jax_num_cpu_devices', int(sys.argv[1]))
  distributed.initialize(distributed.detect())
  import numpy as np
  from lmjax.data import batching
  mesh = batching.make_mesh()
  idx = np.arange(100, 108, dtype=np.int32)  # the global batch every process computes
  placed = batching.shard({'idx': idx}, mesh)['idx']
  rows = sorted(int(v) for s in placed.addressable_shards for v in np.asarray(s.data))
  total = int(jax.jit(lambda x: x.sum())(placed))
  print(json.dumps({'process': jax.process_index(), 'shape': list(placed.shape),
                    'rows': rows, 'sum': total}))
""")


def test_shard_places_each_process_its_own_rows_of_the_global_batch(tmp_path):
  script = tmp_path / 'shard.py'
  script.write_text(SHARD_SCRIPT)
  port = _free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, str(script), '1'],
      env=_env(
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(i)
      ),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=ROOT,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=240) for p in procs]
  for p, (_, err) in zip(procs, outs, strict=True):
    assert p.returncode == 0, err[-2000:]
  results = sorted(
    (json.loads(o.strip().splitlines()[-1]) for o, _ in outs), key=lambda r: r['process']
  )
  # One global batch of 8 (not 2 × 8 duplicated rows), half of it on each process.
  assert [r['shape'] for r in results] == [[8], [8]]
  assert [r['rows'] for r in results] == [list(range(100, 104)), list(range(104, 108))]
  assert [r['sum'] for r in results] == [sum(range(100, 108))] * 2


# ----------------------------------------------------------------------------- training
def _train_single(config, workdir, overrides, devices=2):
  env = _env(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  cmd = [sys.executable, '-m', 'lmjax.main', f'--config={config}', f'--workdir={workdir}']
  done = subprocess.run([*cmd, *overrides], env=env, capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]


def _train_processes(config, workdir, overrides, count=2, stop_after_step=None):
  """Runs the launcher; with `stop_after_step=(stage, k)` sends it SIGTERM once step k of that
  stage is logged. Returns the processes' output."""
  cmd = ['bash', 'launch/local_multiprocess.sh', str(count), config, str(workdir), *overrides]
  proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
  if stop_after_step is not None:
    deadline = time.time() + 600
    while not _logged(workdir, *stop_after_step) and proc.poll() is None:
      assert time.time() < deadline, 'the run never reached the step to stop at'
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=900)
  logs = '\n'.join((workdir / f'process{i}.log').read_text() for i in range(count))
  assert proc.returncode == 0, err.decode()[-1000:] + logs[-3000:]
  return logs


def _logged(workdir, stage, step) -> bool:
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return False
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return any(r.get('stage') == stage and r.get('step', 0) >= step and 'loss' in r for r in rows)


def _losses(workdir):
  rows = writer.read_metrics(str(workdir / 'metrics.jsonl'))
  return [(r['stage'], r['step'], r['loss']) for r in rows if 'loss' in r]


def _stages(workdir):
  return json.loads((workdir / 'stages.json').read_text())


def _check_one_writer(workdir, runs=1):
  """Process 0 wrote the run's files once per run (a second writer would double them)."""
  assert (workdir / 'train.INFO').exists() and (workdir / 'train.process1.INFO').exists()
  assert len((workdir / 'commands.txt').read_text().splitlines()) == runs
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  starts = [(r['stage'], r['step']) for r in records if r.get('event') == 'start']
  assert len(starts) == len(set(starts)) == len(_stages(workdir)) + runs - 1


def test_bbfcn_two_processes_preempted_and_resumed_train_like_one_process(tmp_path):
  """BB-FCN (no BatchNorm), its backbone stage: 2 processes × 1 device, stopped by SIGTERM and
  resumed, against 1 process × 2 devices without interruption: the same losses and model to
  float tolerance. (The branch stage runs the same sharded step and checkpointing; it is left
  out to keep the suite's slowest test short.)

  The validation metrics of these barely trained models (NME ~100 %) read peaks off nearly flat
  maps, where float noise moves a peak: they agree to ~5e-4 (121.708 against 121.759 %).
  """
  config = 'configs/bbfcn.py:points=5,data=synthetic,runlocal'
  overrides = [
    '--config.stages.backbone.steps=6', '--config.stop_after=backbone',
    '--config.log_every=1', '--config.checkpoint_every=2',
  ]  # fmt: skip
  one, two = tmp_path / 'one', tmp_path / 'two'
  _train_single(config, one, overrides)
  stopped = _train_processes(config, two, overrides, stop_after_step=('backbone', 2))
  assert 'preempted: checkpoint saved at step' in stopped
  assert not (two / 'stages.json').exists()  # it stopped inside the first stage
  _train_processes(config, two, overrides)  # the same command resumes
  a, b = _losses(one), _losses(two)
  assert [r[:2] for r in a] == [r[:2] for r in b] and len(a) == 6
  np.testing.assert_allclose([r[2] for r in b], [r[2] for r in a], rtol=1e-4)
  for key in ('nme_ipd', 'nme_box'):
    assert _stages(two)['backbone'][key] == pytest.approx(_stages(one)['backbone'][key], rel=2e-3)
  _check_one_writer(two, runs=2)
  from lmjax.train import checkpoint

  va, vb = (checkpoint.load_model(str(w / 'models' / 'backbone'))[1] for w in (one, two))
  import jax

  for x, y in zip(jax.tree_util.tree_leaves(va), jax.tree_util.tree_leaves(vb), strict=True):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-5)


def test_mcl_two_processes_train_like_one_process_of_two_devices(tmp_path):
  """MCL: the first loss exactly, the next ones to the tolerance that BatchNorm allows.

  MCL's train-mode BatchNorm makes its gradients sensitive to summation order: at the first
  step of this run the gradient norm differs by ~1 % between one and two devices of one
  process (and between those and two processes), where the forward agrees to 1e-7; the next
  losses then differ by up to ~1e-3. A run on duplicated rows or on half the batch changes the
  validation and the losses by far more.
  """
  config = 'configs/mcl68.py:runlocal,data=synthetic'
  overrides = [
    '--config.stages.bm.steps=3', '--config.stop_after=bm', '--config.batch_size=8',
    '--config.eval_batch_size=16', '--config.log_every=1', '--config.checkpoint_every=3',
  ]  # fmt: skip
  one, two = tmp_path / 'one', tmp_path / 'two'
  _train_single(config, one, overrides)
  _train_processes(config, two, overrides)
  a, b = _losses(one), _losses(two)
  assert [r[:2] for r in a] == [r[:2] for r in b] == [('bm', 1), ('bm', 2), ('bm', 3)]
  assert b[0][2] == pytest.approx(a[0][2], rel=1e-6)
  np.testing.assert_allclose([r[2] for r in b], [r[2] for r in a], rtol=5e-3)
  for key in ('nme_ioc', 'nme_ipd'):
    assert _stages(two)['bm'][key] == pytest.approx(_stages(one)['bm'][key], rel=1e-3)
  _check_one_writer(two)


FAKE_SRUN = textwrap.dedent("""\
  #!/usr/bin/env bash
  # Stands in for srun: starts SLURM_NTASKS local copies of the command with the environment
  # of a SLURM job step on one node (ignoring srun's own options), and waits for them.
  while [[ "$1" == --* ]]; do shift; done
  pids=()
  for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_STEP_NODELIST=localhost SLURM_STEP_NUM_NODES=1 \\
      "$@" > "$FAKE_SRUN_LOGS/task$i.log" 2>&1 &
    pids+=("$!")
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  exit $status
""")


def test_slurm_script_runs_one_process_per_task_with_a_fake_srun(tmp_path):
  """A dry run of launch/slurm.sbatch: bash runs it as sbatch would on one node of a 2-task
  job, a stand-in `srun` starts the tasks locally, and JAX's own SLURM detection joins them
  (coordinator port from the job id)."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'srun').write_text(FAKE_SRUN)
  (bin_dir / 'srun').chmod(0o755)
  (bin_dir / 'python').write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # this venv's
  (bin_dir / 'python').chmod(0o755)
  port = _free_port(61440, 65535)  # JAX's SLURM coordinator port: 61440 + job id % 4096
  workdir = tmp_path / 'run'
  env = _env(
    PATH=f'{bin_dir}:{os.environ["PATH"]}', LMJAX_NO_VENV='1', SLURM_NTASKS='2',
    SLURM_JOB_ID=str(port - 61440), SLURM_SUBMIT_DIR=str(ROOT), FAKE_SRUN_LOGS=str(tmp_path),
  )  # fmt: skip
  overrides = [
    '--config.stages.bm.steps=2', '--config.stop_after=bm', '--config.batch_size=8',
    '--config.eval_batch_size=16', '--config.log_every=1', '--config.checkpoint_every=2',
  ]  # fmt: skip
  cmd = ['bash', 'launch/slurm.sbatch', 'configs/mcl.py:points=5,data=synthetic,runlocal']
  done = subprocess.run([*cmd, str(workdir), *overrides], env=env, capture_output=True, cwd=ROOT)
  logs = ''.join((tmp_path / f'task{i}.log').read_text()[-1500:] for i in range(2))
  assert done.returncode == 0, done.stderr.decode()[-1000:] + logs
  for i, name in enumerate(('train.INFO', 'train.process1.INFO')):
    assert f'process {i} of 2' in (workdir / name).read_text()
  assert set(_stages(workdir)) == {'bm'}


def _free_port(low: int = 0, high: int = 0) -> int:
  """A free local TCP port (in [low, high] when given)."""
  import socket

  for port in range(low, high + 1) if low else [0]:
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
      except OSError:
        continue
      return s.getsockname()[1]
  raise RuntimeError(f'no free port in [{low}, {high}]')
