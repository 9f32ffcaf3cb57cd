"""Reader and writer for iBUG `.pts` landmark files (1-based coordinates on disk)."""

from __future__ import annotations

import os

import numpy as np

from lmjax.data.datasets.common import DatasetFormatError


def read_pts(path: str | os.PathLike, num_points: int | None = None) -> np.ndarray:
  """Reads a `.pts` file and returns 0-based coordinates.

  The file format is `version: 1`, `n_points: N`, `{`, N lines `x y`, `}`. Coordinates on disk
  are 1-based (MATLAB convention); the returned array is 0-based (`value - 1`).

  Args:
    path: the `.pts` file.
    num_points: expected number of points, or None to accept the file's `n_points`.

  Returns:
    float32 [N, 2] array of (x, y).

  Raises:
    DatasetFormatError: missing file, malformed header/body, or a point count that differs
      from the header or from `num_points`.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding='utf-8', errors='strict') as f:
      lines = [line.strip() for line in f if line.strip()]
  except FileNotFoundError:
    raise DatasetFormatError(f'{path}: landmark file not found') from None
  except UnicodeDecodeError:
    raise DatasetFormatError(f'{path}: not a text .pts file') from None

  header = {}
  body_start = None
  for i, line in enumerate(lines):
    if line == '{':
      body_start = i + 1
      break
    key, sep, value = line.partition(':')
    if not sep:
      raise DatasetFormatError(
        f'{path}: line {i + 1} {line!r}: expected "key: value" header or "{{"'
      )
    header[key.strip()] = value.strip()
  if body_start is None:
    raise DatasetFormatError(f'{path}: no "{{" line opening the point list')
  if 'n_points' not in header:
    raise DatasetFormatError(f'{path}: header has no "n_points:" line')
  try:
    n_header = int(header['n_points'])
  except ValueError:
    raise DatasetFormatError(f'{path}: n_points {header["n_points"]!r} is not an integer') from None
  if '}' not in lines[body_start:]:
    raise DatasetFormatError(f'{path}: no "}}" line closing the point list')
  body = lines[body_start : lines.index('}', body_start)]

  if len(body) != n_header:
    raise DatasetFormatError(
      f'{path}: header says n_points: {n_header} but the list has {len(body)} lines'
    )
  if num_points is not None and n_header != num_points:
    raise DatasetFormatError(f'{path}: expected {num_points} points, file has {n_header}')
  points = np.empty((n_header, 2), np.float32)
  for i, line in enumerate(body):
    parts = line.split()
    try:
      if len(parts) != 2:
        raise ValueError
      points[i] = float(parts[0]), float(parts[1])
    except ValueError:
      raise DatasetFormatError(f'{path}: point {i + 1}: expected "x y", got {line!r}') from None
  if not np.all(np.isfinite(points)):
    raise DatasetFormatError(f'{path}: coordinates contain NaN/Inf')
  return points - 1.0


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
  """Writes 0-based points [N, 2] as a 1-based `.pts` file."""
  points = np.asarray(points, np.float64) + 1.0
  lines = ['version: 1', f'n_points:  {len(points)}', '{']
  lines += [f'{x:.3f} {y:.3f}' for x, y in points]
  lines.append('}')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
