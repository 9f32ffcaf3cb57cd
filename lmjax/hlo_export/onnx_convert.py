"""jax functions -> ONNX graphs with `jax2onnx` (optional: the `onnx` extra).

    model = onnx_convert.to_onnx(fn, [(('N', 50, 50, 1), np.float32)], double=False)

A thin wrapper: it says what to install when jax2onnx is missing (one line), silences the
converter's import chatter (it logs a traceback for each of its optional example plugins whose
package is absent: equinox, dm_pix) and names the graph's inputs and outputs.

`double=True` converts under `jax.enable_x64` with float64 kept as float64
(`enable_double_precision`); jax2onnx then types every float input of the function as float64
and mis-types float32 values that meet float64 ones, so a double function computes in float64
throughout and casts to float32 only at its end (`onnx_whole.crop_graph`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import jax
import numpy as np
import onnx

OPSET = 23  # jax2onnx's default; `onnx_whole.compose` lifts the hand-built graphs to it
INSTALL = 'pip install "jax2onnx>=0.17.1" (or: pip install --no-deps jax2onnx onnx-ir sympy)'


def require_jax2onnx():
  """The `jax2onnx.to_onnx` function, or a one-line ImportError saying what to install."""
  try:
    with _quiet():
      from jax2onnx import to_onnx
  except ImportError as e:
    raise ImportError(f'ONNX export of whole predictors needs jax2onnx ({e}); {INSTALL}') from None
  return to_onnx


@contextlib.contextmanager
def _quiet():
  """Lowers the jax2onnx loggers to errors while it imports its plugins and converts."""
  loggers = [logging.getLogger(name) for name in ('jax2onnx', 'onnx_ir')]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels, strict=True):
      logger.setLevel(level)


def to_onnx(
  fn: Callable,
  inputs: Sequence[tuple[tuple, type]],
  input_names: Sequence[str],
  output_names: Sequence[str],
  double: bool = False,
  name: str = 'lmjax',
) -> onnx.ModelProto:
  """The ONNX graph of `fn(*inputs)`.

  Args:
    fn: a jax function of arrays.
    inputs: (shape, dtype) per argument; a str dimension (e.g. 'N') is symbolic.
    input_names, output_names: the graph's input and output names, in order.
    double: trace with 64-bit floats kept (module docstring).
    name: the graph's name.
  """
  convert = require_jax2onnx()
  specs = [jax.ShapeDtypeStruct(shape, np.dtype(dtype)) for shape, dtype in inputs]
  with _quiet(), jax.enable_x64(double):
    return convert(
      fn,
      specs,
      model_name=name,
      opset=OPSET,
      enable_double_precision=double,
      input_names=list(input_names),
      output_names=list(output_names),
    )
