#!/usr/bin/env python3
"""A GPU sprint: train several models on a machine lent for minutes, each sized to the time.

When device time is counted in minutes (15 per session here, machine start included), a
schedule must end before the lease does, and a cosine schedule cut short is worse than a
shorter one that ends. So every job in `JOBS` first runs concurrently for `SPRINT_PROBE_S`
seconds with an open-ended schedule (the probe: start-up time and steps/s, for BB-FCN also the
branch stage's); the probes are killed, and each job is launched again with the steps its rate
allows before `SPRINT_BUDGET_S` (times `SPRINT_SAFETY`), all jobs sharing the GPU as in the
probe. Every workdir is then packed into `$OUT/<job>.tar.gz` without its checkpoints (the
exported `models/`, `stages.json`, `metrics.jsonl`, the log), and `$OUT/sprint.json` records
the probe rates, the steps and each command. The published mcl68 and bbfcn68 were trained so
(README, "The GPU sprint"); `launch/gpu_sprint.sh` is the entry on the lent machine.

Env: SPRINT_MANUAL_DIR (300-W folder), SPRINT_BUDGET_S (seconds after start by which training
must end), SPRINT_PROBE_S, SPRINT_SAFETY, SPRINT_JOBS (comma list, default all),
SPRINT_MIN_STEPS, SPRINT_PROBE_BACKBONE, SPRINT_MEM_FRACTION (GPU memory per job), OUT.
"""

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import time

T0 = time.time()
BUDGET = float(os.environ.get('SPRINT_BUDGET_S', 500))
PROBE_S = float(os.environ.get('SPRINT_PROBE_S', 120))
SAFETY = float(os.environ.get('SPRINT_SAFETY', 0.82))
MANUAL = os.environ.get('SPRINT_MANUAL_DIR', '')
OUT = pathlib.Path(os.environ.get('OUT', '/tmp/sprint_out'))
RUNS = pathlib.Path(os.environ.get('SPRINT_RUNS', '/tmp/sprint_runs'))
MEM = os.environ.get('SPRINT_MEM_FRACTION', '0.12')
BIG = 10**8
MIN_STEPS = int(os.environ.get('SPRINT_MIN_STEPS', 1000))
PROBE_BACKBONE = int(os.environ.get('SPRINT_PROBE_BACKBONE', 400))

# name -> (config, fixed overrides, kind). kind 'mcl': one stage `bm`; 'bbfcn': backbone then
# branches in the paper's 1:2 proportion (25k : 50k).
JOBS = {
  'mcl68_paper': ('configs/mcl68.py', ['--config.stop_after=bm'], 'mcl'),
  'mcl68_fast_warm': (
    'configs/mcl68.py:recipe=fast',
    [
      '--config.stop_after=bm',
      '--config.init_from=pretrained/mcl68',
      '--config.stages.bm.lr=3e-4',
    ],
    'mcl',
  ),
  'mcl68_fast_scratch': ('configs/mcl68.py:recipe=fast', ['--config.stop_after=bm'], 'mcl'),
  'bbfcn68_adamw': (
    'configs/bbfcn68.py',
    [
      '--config.model.init=he',
      '--config.model.map_features=64',
      '--config.optim.optimizer=adamw',
      '--config.optim.schedule=cosine',
    ],
    'bbfcn',
  ),
  'bbfcn68_sgd': (
    'configs/bbfcn68.py',
    ['--config.model.init=he', '--config.model.map_features=64'],
    'bbfcn',
  ),
}


def log(*args):
  print(f'[sprint {time.time() - T0:6.1f}s]', *args, flush=True)


def launch(name, workdir, overrides):
  config, fixed, _ = JOBS[name]
  cmd = [
    sys.executable,
    '-m',
    'lmjax.main',
    f'--config={config}',
    f'--workdir={workdir}',
    f'--config.data.manual_dir={MANUAL}',
    *fixed,
    *overrides,
  ]
  env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=MEM, PYTHONUNBUFFERED='1')
  with open(f'{workdir}.log', 'w') as logfile:  # the child keeps its own descriptor
    logfile.write(' '.join(cmd) + '\n')
    logfile.flush()
    proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env)
  return {'proc': proc, 'cmd': cmd, 'start': time.time(), 'workdir': workdir}


def records(workdir):
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines():
    with contextlib.suppress(json.JSONDecodeError):  # a line being written
      out.append(json.loads(line))
  return out


def train_logs(workdir, stage):
  return [r for r in records(workdir) if r.get('stage') == stage and 'loss' in r and 'time' in r]


def rate_of(logs):
  """steps/s between the first train log (compile done) and the last."""
  if len(logs) < 3:
    return None
  a, b = logs[0], logs[-1]
  return (b['step'] - a['step']) / max(b['time'] - a['time'], 1e-6)


def tail(path, n=25):
  try:
    return '\n'.join(pathlib.Path(path).read_text().splitlines()[-n:])
  except OSError:
    return ''


def probe(names):
  """Runs every job concurrently for a while; returns per-job rates and overheads."""
  jobs = {}
  for name in names:
    kind = JOBS[name][2]
    wd = RUNS / f'probe_{name}'
    if kind == 'mcl':
      ov = [f'--config.stages.bm.steps={BIG}', '--config.log_every=50', '--config.eval_every=0']
    else:
      ov = [
        f'--config.stages.backbone.steps={PROBE_BACKBONE}',
        f'--config.stages.branches.steps={BIG}',
        '--config.log_every=50',
        f'--config.validate_every={BIG}',
      ]
    ov.append(f'--config.checkpoint_every={BIG}')
    jobs[name] = launch(name, wd, ov)
  result = {}
  deadline = time.time() + PROBE_S
  while time.time() < deadline:
    time.sleep(3)
    done = True
    for name, job in jobs.items():
      kind = JOBS[name][2]
      if job['proc'].poll() is not None:
        continue
      first_stage = 'bm' if kind == 'mcl' else 'backbone'
      ok = rate_of(train_logs(job['workdir'], first_stage)) is not None
      if kind == 'bbfcn':
        ok = ok and len(train_logs(job['workdir'], 'branches')) >= 5
      done = done and ok
    if done:
      break
  for name, job in jobs.items():
    kind = JOBS[name][2]
    first_stage = 'bm' if kind == 'mcl' else 'backbone'
    logs1 = train_logs(job['workdir'], first_stage)
    info = {'alive': job['proc'].poll() is None}
    if logs1:
      info['startup_s'] = logs1[0]['time'] - job['start']
      info['rate1'] = rate_of(logs1)
    if kind == 'bbfcn':
      logs2 = train_logs(job['workdir'], 'branches')
      if logs2 and logs1:
        info['transition_s'] = logs2[0]['time'] - logs1[-1]['time']
        info['rate2'] = rate_of(logs2)
    if not info['alive']:
      info['error'] = tail(f'{job["workdir"]}.log')
    result[name] = info
    log(name, {k: v for k, v in info.items() if k != 'error'})
    if 'error' in info:
      log(f'{name} FAILED in probe:\n{info["error"]}')
  for job in jobs.values():
    if job['proc'].poll() is None:
      job['proc'].kill()
  for job in jobs.values():
    job['proc'].wait()
  return result


def plan(name, info, available):
  """Config overrides that fit job `name` into `available` seconds."""
  kind = JOBS[name][2]
  usable = SAFETY * (available - info.get('startup_s', 60) - 10)
  if kind == 'mcl':
    n = int(info['rate1'] * usable) // 50 * 50
    if n < MIN_STEPS:
      return None
    ov = [
      f'--config.stages.bm.steps={n}',
      f'--config.eval_every={max(n // 10, 100)}',
      f'--config.checkpoint_every={max(n // 4, 500)}',
      '--config.log_every=500',
    ]
    if 'paper' in name:  # the paper's six lr segments (180k steps, x0.3 every 30k)
      ov.append(f'--config.stages.bm.decay_every={n // 6}')
    else:
      ov.append(f'--config.stages.bm.warmup_steps={max(n // 50, 100)}')
    return n, ov
  r1 = info['rate1']
  r2 = info.get('rate2') or r1 / 2
  usable -= info.get('transition_s', 30)
  x = usable / (1 / r1 + 2 / r2)  # backbone steps; branches 2x
  n1 = int(x) // 50 * 50
  n2 = 2 * n1
  if n1 < MIN_STEPS // 2:
    return None
  ov = [
    f'--config.stages.backbone.steps={n1}',
    f'--config.stages.branches.steps={n2}',
    f'--config.stages.branches.decay_every={int(n2 * 0.6)}',  # paper: 30k of 50k
    f'--config.validate_every={max(n1 // 8, 100)}',
    f'--config.checkpoint_every={max(n1 // 2, 500)}',
    '--config.log_every=500',
  ]
  if '--config.optim.schedule=cosine' in JOBS[name][1]:
    ov += [
      f'--config.stages.backbone.warmup_steps={max(n1 // 50, 50)}',
      f'--config.stages.branches.warmup_steps={max(n2 // 50, 50)}',
    ]
  return (n1, n2), ov


def pack(name, workdir):
  path = OUT / f'{name}.tar.gz'
  with tarfile.open(path, 'w:gz') as tar:
    for p in sorted(pathlib.Path(workdir).rglob('*')):
      rel = p.relative_to(workdir)
      if p.is_file() and 'ckpt' not in rel.parts:
        tar.add(p, arcname=f'{name}/{rel}')
    if pathlib.Path(f'{workdir}.log').exists():
      tar.add(f'{workdir}.log', arcname=f'{name}/train.log')
  log('packed', path, path.stat().st_size)


def main():
  if not os.path.isdir(MANUAL):
    raise SystemExit(f'SPRINT_MANUAL_DIR: expected the 300-W folder, got {MANUAL!r}')
  OUT.mkdir(parents=True, exist_ok=True)
  RUNS.mkdir(parents=True, exist_ok=True)
  names = [n for n in os.environ.get('SPRINT_JOBS', ','.join(JOBS)).split(',') if n]
  summary = {'budget_s': BUDGET, 'probe': probe(names)}
  available = BUDGET - (time.time() - T0)
  log(f'{available:.0f} s left for the real runs')
  runs = {}
  for name in names:
    info = summary['probe'][name]
    if 'error' in info or not info.get('rate1'):
      continue
    planned = plan(name, info, available)
    if planned is None:
      log(name, 'skipped: too slow for the time left')
      continue
    steps, ov = planned
    runs[name] = launch(name, RUNS / name, ov)
    runs[name]['steps'] = steps
    log('launched', name, steps)
  hard_deadline = T0 + BUDGET + 25
  while any(r['proc'].poll() is None for r in runs.values()) and time.time() < hard_deadline:
    time.sleep(5)
  for name, run in runs.items():
    if run['proc'].poll() is None:
      log(name, 'past the deadline: SIGTERM (checkpoint only, no exported model)')
      run['proc'].send_signal(signal.SIGTERM)
  for run in runs.values():
    try:
      run['proc'].wait(timeout=20)
    except subprocess.TimeoutExpired:
      run['proc'].kill()
  summary['runs'] = {}
  for name, run in runs.items():
    rc = run['proc'].returncode
    logs = [r for r in records(run['workdir']) if 'loss' in r and 'time' in r]
    summary['runs'][name] = {
      'rc': rc,
      'steps': run['steps'],
      'cmd': ' '.join(run['cmd'][1:]),
      'wall_s': time.time() - run['start'],
      'last_log': logs[-1] if logs else None,
    }
    log(name, 'rc', rc, 'wall', round(time.time() - run['start']))
    if rc != 0:
      log(tail(f'{run["workdir"]}.log', 15))
    pack(name, run['workdir'])
  (OUT / 'sprint.json').write_text(json.dumps(summary, indent=1, default=str))
  log('done')


if __name__ == '__main__':
  main()
