"""Process settings shared by the benchmarks: each setting runs in its own child process.

* cpu_1thread: JAX on CPU pinned to one core (sched_setaffinity) with `ONE_THREAD_XLA_FLAGS`;
* cpu_all:     JAX on CPU with every core of the machine;
* gpu:         the default JAX backend, when it is a GPU (the benchmark skips it otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ONE_THREAD_XLA_FLAGS = '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'


def child_env(setting: str) -> dict[str, str]:
  """Environment of the child process that measures `setting` (set before JAX starts)."""
  env = dict(os.environ)
  if setting.startswith('cpu'):
    env['JAX_PLATFORMS'] = 'cpu'
  if setting == 'cpu_1thread':
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {ONE_THREAD_XLA_FLAGS}'.strip()
  return env


def pin_to_one_core(setting: str) -> None:
  """Inside the child: restricts a `cpu_1thread` process to one core."""
  if setting == 'cpu_1thread' and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


PHOTO_SIZE = (480, 640)  # H, W of the benchmark photo
FACE_BOX = (220.0, 140.0, 420.0, 340.0)  # a 200-pixel face box inside it


def photo_with_face():
  """A blurred-noise 640×480 RGB photo with a synthetic face scaled into `FACE_BOX`."""
  import cv2
  import numpy as np

  from lmjax import synthface

  face = synthface.render_face_example((68, 3, 0), image_size=(256, 256))
  photo = np.random.default_rng(0).integers(0, 256, (*PHOTO_SIZE, 3), np.uint8)
  photo = cv2.GaussianBlur(photo, (0, 0), 4)
  x0, y0, x1, y1 = (int(v) for v in FACE_BOX)
  photo[y0:y1, x0:x1] = cv2.resize(face['image'], (x1 - x0, y1 - y0))
  return photo, np.array(FACE_BOX)


def rate(fn, items_per_call: int, repeats: int, budget_s: float = 1.0) -> float:
  """Items/s: median over `repeats` of a loop of calls lasting about `budget_s / repeats`."""
  fn()  # warm-up (and compilation)
  start = time.perf_counter()
  fn()
  once = max(time.perf_counter() - start, 1e-6)
  calls = max(1, int(budget_s / repeats / once))
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      fn()
    rates.append(calls * items_per_call / (time.perf_counter() - start))
  return sorted(rates)[len(rates) // 2]


def run_children(script: str, settings: str, args: list[str]) -> dict[str, dict]:
  """Runs `script --child=SETTING ARGS` for each comma-separated setting in its own process.

  Returns {setting: the JSON object the child printed last}; a failed child is reported on
  stderr and left out, and so is a child that printed {} (e.g. `gpu` without a GPU).
  """
  results = {}
  for setting in settings.split(','):
    cmd = [sys.executable, script, f'--child={setting}', *args]
    proc = subprocess.run(cmd, env=child_env(setting), capture_output=True, text=True)
    if proc.returncode != 0:
      print(f'{setting}: failed\n{proc.stderr[-3000:]}', file=sys.stderr)
      continue
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out:
      results[setting] = out
  return results
