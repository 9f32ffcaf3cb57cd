"""MATLAB `.mat` files of either kind, read by one function: v5 and older (`scipy.io.loadmat`)
and v7.3 (HDF5, `h5py`).

MATLAB writes v7.3 arrays column-major, so HDF5 holds each matrix transposed ([68, 3] on disk
for a MATLAB [3, 68]); `read_variables` transposes them back, and both kinds give arrays in
MATLAB's shape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from lmjax.data.datasets import common


def read_variables(path: str | os.PathLike, names: Iterable[str]) -> dict[str, np.ndarray]:
  """The numeric variables `names` of a `.mat` file, as float64 arrays in MATLAB's shape.

  Raises:
    common.DatasetFormatError: the file is neither a v5 nor a v7.3 MAT-file, or lacks a
      variable (the message names the file and lists the variables found).
  """
  import h5py  # only the .mat datasets need h5py and scipy
  import scipy.io

  path, names = os.fspath(path), list(names)
  if h5py.is_hdf5(path):
    with h5py.File(path, 'r') as f:
      found = sorted(f.keys())
      raw = {n: np.asarray(f[n]).T for n in names if n in f}
  else:
    try:
      data = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, ... on a broken file
      raise common.DatasetFormatError(
        f'{path}: cannot read as a MATLAB .mat file (v5 or v7.3): {_one_line(e)}'
      ) from None
    found = sorted(k for k in data if not k.startswith('__'))
    raw = {n: np.asarray(data[n]) for n in names if n in data}
  missing = [n for n in names if n not in raw]
  if missing:
    raise common.DatasetFormatError(f'{path}: missing variable(s) {missing}; found {found}')
  values = {}
  for name, value in raw.items():
    if value.dtype.kind not in 'biuf':
      raise common.DatasetFormatError(
        f'{path}: variable {name!r} is not numeric (MATLAB class {value.dtype})'
      )
    values[name] = value.astype(np.float64)
  return values


def read_strings(path: str | os.PathLike, name: str) -> list[str]:
  """The cell array of strings `name` of a `.mat` file (v5 or v7.3), in MATLAB's linear order.

  Raises:
    common.DatasetFormatError: unreadable file, missing variable or a cell that is not a string.
  """
  import h5py
  import scipy.io

  path = os.fspath(path)
  if h5py.is_hdf5(path):
    with h5py.File(path, 'r') as f:
      if name not in f:
        raise common.DatasetFormatError(f'{path}: missing variable {name!r}; found {sorted(f)}')
      refs = np.asarray(f[name]).T.reshape(-1, order='F')
      cells = [np.asarray(f[ref]).reshape(-1) for ref in refs]  # uint16 character codes
      return [''.join(map(chr, codes)) for codes in cells]
  try:
    data = scipy.io.loadmat(path, variable_names=[name])
  except Exception as e:  # as in read_variables
    raise common.DatasetFormatError(
      f'{path}: cannot read as a MATLAB .mat file (v5 or v7.3): {type(e).__name__}: {e}'
    ) from None
  if name not in data:
    raise common.DatasetFormatError(f'{path}: missing variable {name!r}')
  out = []
  for i, cell in enumerate(np.asarray(data[name], object).reshape(-1, order='F')):
    value = cell
    while isinstance(value, np.ndarray) and value.size == 1:
      value = value.reshape(-1)[0]
    if not isinstance(value, str):
      raise common.DatasetFormatError(f'{path}: {name}{{{i + 1}}} is not a string')
    out.append(value)
  return out


def _one_line(error: Exception) -> str:
  return f'{type(error).__name__}: ' + ' '.join(str(error).split())
