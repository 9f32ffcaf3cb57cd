"""Process settings shared by the benchmarks: each setting runs in its own child process.

* cpu_1thread: JAX on CPU pinned to one core (sched_setaffinity) with `ONE_THREAD_XLA_FLAGS`;
* cpu_all:     JAX on CPU with every core of the machine;
* gpu:         the default JAX backend, when it is a GPU (the benchmark skips it otherwise).
"""

from __future__ import annotations

import os

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
