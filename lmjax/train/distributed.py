"""Multi-process start-up: which process this is, and `jax.distributed.initialize`.

A training run is one process per host (or per GPU, or several on one machine for tests), all
running the same command. The layout comes from, in order:

  1. explicit values (`python -m lmjax.main --coordinator_address=H:P --num_processes=N
     --process_id=I`);
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (what
     `launch/local_multiprocess.sh` sets);
  3. a cluster JAX detects itself: a SLURM job step (`srun`) of more than one task
     (SLURM_NTASKS > 1 and SLURM_STEP_NODELIST), a
     multi-host Cloud TPU slice (TPU_WORKER_HOSTNAMES with several hosts), or
     LMJAX_DISTRIBUTED=auto (what `launch/tpu_vm.sh` sets): then
     `jax.distributed.initialize()` is called without arguments;
  4. otherwise a single process (nothing to initialise).

On CPU the processes' collectives go through gloo (`jax_cpu_collectives_implementation`), so
several CPU processes on one machine form one JAX system: how the suite checks that N
processes train exactly like one (tests/test_multiprocess.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax


@dataclasses.dataclass(frozen=True)
class Layout:
  """How this process takes part in a run.

  Attributes:
    num_processes: processes in the run (1: no distributed start-up).
    process_id: this process's index, 0 <= process_id < num_processes.
    coordinator_address: 'host:port' of process 0's coordinator; None when JAX detects the
      cluster itself (`auto`).
    auto: let `jax.distributed.initialize()` read the cluster's environment (SLURM, TPU).
  """

  num_processes: int = 1
  process_id: int = 0
  coordinator_address: str | None = None
  auto: bool = False

  @property
  def single(self) -> bool:
    return self.num_processes == 1 and not self.auto


def detect(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  environ: Mapping[str, str] | None = None,
) -> Layout:
  """The layout from explicit values, else the environment (module docstring).

  Raises:
    ValueError: an incomplete or inconsistent explicit / JAX_* layout, naming the field.
  """
  env = os.environ if environ is None else environ
  address = coordinator_address or env.get('JAX_COORDINATOR_ADDRESS') or None
  count = num_processes if num_processes is not None else _int(env, 'JAX_NUM_PROCESSES')
  index = process_id if process_id is not None else _int(env, 'JAX_PROCESS_ID')
  if count is not None and count > 1:
    if address is None or index is None:
      missing = 'coordinator_address' if address is None else 'process_id'
      raise ValueError(
        f'{missing}: a run of {count} processes needs the coordinator address (host:port) and '
        'this process id (flags --coordinator_address / --process_id or JAX_COORDINATOR_ADDRESS'
        ' / JAX_PROCESS_ID)'
      )
    if not 0 <= index < count:
      raise ValueError(f'process_id: expected 0 <= id < {count} processes, got {index}')
    return Layout(count, index, address)
  if count is not None and count < 1:
    raise ValueError(f'num_processes: expected a positive number of processes, got {count}')
  slurm_step = _int(env, 'SLURM_NTASKS', 1) > 1 and 'SLURM_STEP_NODELIST' in env
  if slurm_step or env.get('LMJAX_DISTRIBUTED') == 'auto':
    return Layout(auto=True)
  hosts = [h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
  if len(hosts) > 1:
    return Layout(auto=True)
  return Layout()


def initialize(layout: Layout) -> None:
  """Starts JAX's distributed runtime for `layout` (nothing for a single process).

  Call before anything touches a JAX device.
  """
  if layout.single:
    return
  # CPU devices of several processes need a cross-process collective backend (GPUs and TPUs
  # have their own; the setting only affects the CPU backend).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if layout.auto:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(
      coordinator_address=layout.coordinator_address,
      num_processes=layout.num_processes,
      process_id=layout.process_id,
    )


def is_writer() -> bool:
  """Whether this process writes the run's files (logs, JSON, model folders): process 0."""
  return jax.process_index() == 0


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
  text = env.get(name, '').strip()
  if not text:
    return default
  try:
    return int(text)
  except ValueError:
    raise ValueError(f'{name}: expected an integer, got {text!r}') from None
