"""XLA:CPU settings for training, applied before JAX starts its CPU backend.

XLA's CPU backend hands convolutions to YNNPACK by default (jaxlib 0.10). Those kernels run the
small-channel convolutions of the landmark networks (MCL's 50×50 and 25×25 layers, their
weight gradients) on one thread, whatever the intra-op thread pool, so a train step on two
cores was barely faster than on one. Its older Eigen convolutions use every core: measured on
the 2-core AVX-512 machine, idle (`benchmarks/train_speed.py`, MCL68 pre-training at batch 64,
one CPU device), 100 -> 125 images/s on two threads at the same speed on one thread, and every
other train step of the benchmark as fast or faster. Inference is left alone (the scanner and
the predictors measured no difference; the predictors run onnxruntime on CPU by default).

`prefer_eigen_convolutions()` adds `--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION`
to `XLA_FLAGS` (YNNPACK keeps its other fusions). It changes nothing when `XLA_FLAGS` already
names that option (the user's choice wins), when this jaxlib does not know the option (XLA
aborts on unknown flags; the option is experimental and may go away), or once JAX has started a
backend (too late to take effect).
"""

from __future__ import annotations

import functools
import mmap
import os
import pathlib
from collections.abc import MutableMapping

OPTION = 'xla_cpu_experimental_ynn_fusion_type'
VALUE = 'INDIVIDUAL_CONVOLUTION'
FLAG = f'--{OPTION}=-{VALUE}'


@functools.cache
def jaxlib_knows(option: str = OPTION, value: str = VALUE) -> bool:
  """Whether the installed jaxlib's XLA has the debug option `option` with the enum value
  `value` (both names are in one of its shared libraries' strings; read through mmap, well
  under a second, once per process)."""
  import jaxlib

  for library in sorted(pathlib.Path(jaxlib.__file__).parent.glob('*.so')):
    with open(library, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
      if data.find(option.encode()) >= 0 and data.find(value.encode()) >= 0:
        return True
  return False


def _backend_started() -> bool:
  from jax._src import xla_bridge

  return bool(getattr(xla_bridge, '_backends', None))


def prefer_eigen_convolutions(environ: MutableMapping[str, str] = os.environ) -> bool:
  """Adds `FLAG` to `environ['XLA_FLAGS']` where it can take effect; returns whether it did."""
  flags = environ.get('XLA_FLAGS', '')
  if OPTION in flags or _backend_started() or not jaxlib_knows():
    return False
  environ['XLA_FLAGS'] = f'{flags} {FLAG}'.strip()
  return True
