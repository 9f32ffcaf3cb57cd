"""OpenCV's uint8 image resize (`cv2.resize`, INTER_AREA / INTER_LINEAR) with static taps.

    how = plan(480, 640, 163, 217)       # static tap tables (numpy)
    small = apply(image, how)             # jax: float32 [H, W, C] -> [163, 217, C], integral

When the sizes are known when tracing (the scanner's pyramid of a fixed canvas), a separable
resize is a few gathers with constant indices and weights per axis, so it runs inside an
exported graph. The taps copy what `lmjax.scan.tiling` asks OpenCV for:

  * shrinking (INTER_AREA, a source / destination ratio c ≥ 1): output pixel i averages source
    cells [i c, (i + 1) c), partial cells weighted by their overlap, summed in source order
    along each row, then down the columns, in float32 (OpenCV's order), rounded half to even;
    when both ratios are integers, OpenCV's fast path (whole cells; 2 × 2 rounded half up,
    other areas rounded sum · float32(1 / area));
  * enlarging (INTER_LINEAR): sample x = (i + 0.5) c − 0.5, clamped to the edge pixels, the
    two taps' weights quantised to 1/2048 and summed in int32 with OpenCV's SIMD rounding.

`jax.image.resize` has no area mode ('linear' with antialias is a triangle filter, not a box
average), which is why the taps are built here. What still differs from OpenCV: float32
products that XLA may fuse otherwise than OpenCV's loops and, for INTER_LINEAR, the scalar
rounding OpenCV uses on a few pixels; both leave some pixels one grey level off (measured in
the README, "Scanner export").
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

LINEAR_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE for 8-bit images


def _area_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
  """INTER_AREA taps of one axis: source indices int32 [target, T] and float32 weights
  [target, T] (padding taps: weight 0), in source order (target ≤ source)."""
  cell = source / target
  rows = []
  for i in range(target):
    lo, hi = i * cell, min((i + 1) * cell, source)
    width = min(cell, source - lo)
    taps = []
    for s in range(int(np.floor(lo)), min(int(np.ceil(hi)), source)):
      overlap = min(hi, s + 1) - max(lo, s)
      if overlap > 1e-3:
        taps.append((s, overlap / width))
    rows.append(taps)
  count = max(len(t) for t in rows)
  index = np.zeros((target, count), np.int32)
  weight = np.zeros((target, count), np.float32)
  for i, taps in enumerate(rows):
    for j, (s, w) in enumerate(taps):
      index[i, j], weight[i, j] = s, w
    index[i, len(taps) :] = taps[-1][0]
  return index, weight


def _fast_taps(factor: int, target: int) -> tuple[np.ndarray, np.ndarray]:
  """Whole-cell taps of an integer ratio: indices [target, factor], weights 1."""
  index = np.arange(target)[:, None] * factor + np.arange(factor)[None]
  return index.astype(np.int32), np.ones((target, factor), np.float32)


def _linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
  """INTER_LINEAR taps of one axis: (left, right) indices int32 [target, 2] and int32
  weights [target, 2] in 1/2048, with OpenCV's edge rule (clamped to the edge pixel)."""
  scale = source / target
  index = np.zeros((target, 2), np.int32)
  weight = np.zeros((target, 2), np.int32)
  for i in range(target):
    x = np.float32((i + 0.5) * scale - 0.5)
    first = int(np.floor(x))
    frac = float(x - first)
    if first < 0:
      first, frac = 0, 0.0
    if first >= source - 1:
      first, frac = source - 1, 0.0
    high = round(frac * LINEAR_COEF_SCALE)
    index[i] = first, min(first + 1, source - 1)
    weight[i] = LINEAR_COEF_SCALE - high, high
  return index, weight


@dataclasses.dataclass(frozen=True)
class Plan:
  """A static resize of one image size to another (see `plan`).

  Attributes:
    mode: 'area' (INTER_AREA, rounded half to even), 'area_fast' (integer ratios: whole-cell
      sums times float32(1 / area)), 'area_2x2' ((sum + 2) >> 2) or 'linear'.
    rows, cols: (source indices [n, T], weights [n, T]) of each axis.
  """

  mode: str
  rows: tuple[np.ndarray, np.ndarray]
  cols: tuple[np.ndarray, np.ndarray]


def is_shrink(height: int, width: int, rows: int, cols: int) -> bool:
  """Whether `lmjax.scan.tiling` resizes height × width to rows × cols with INTER_AREA."""
  return rows < height or cols < width


def plan(height: int, width: int, rows: int, cols: int) -> Plan:
  """The resize `tiling` does from height × width to rows × cols: INTER_AREA when shrinking
  either axis, else INTER_LINEAR."""
  if not is_shrink(height, width, rows, cols):
    return Plan('linear', _linear_taps(height, rows), _linear_taps(width, cols))
  fy, fx = height / rows, width / cols
  if fy == int(fy) and fx == int(fx):  # OpenCV's exact fast path
    mode = 'area_2x2' if (fy, fx) == (2, 2) else 'area_fast'
    return Plan(mode, _fast_taps(int(fy), rows), _fast_taps(int(fx), cols))
  return Plan('area', _area_taps(height, rows), _area_taps(width, cols))


def _along(x: jnp.ndarray, taps, axis: int) -> jnp.ndarray:
  """Weighted sums of taps (indices [n, T], weights [n, T]) along `axis` (0 or 1) of
  x [H, W, C], tap after tap (the sum order of OpenCV's loops)."""
  index, weight = taps
  total = None
  for j in range(index.shape[1]):
    w = jnp.asarray(weight[:, j], x.dtype)
    term = jnp.take(x, jnp.asarray(index[:, j]), axis=axis)
    term = term * (w[:, None, None] if axis == 0 else w[None, :, None])
    total = term if total is None else total + term
  return total


def apply(image: jnp.ndarray, how: Plan) -> jnp.ndarray:
  """float32 [H, W, C] pixels (integers in [0, 255]) -> float32 [rows, cols, C], integers in
  [0, 255] as the uint8 `cv2.resize` gives them (up to the one-level differences above)."""
  if how.mode == 'linear':  # int32 fixed point: along rows, then OpenCV's SIMD vertical pass
    along_x = _along(image.astype(jnp.int32), how.cols, axis=1)  # [H, cols, C] in 1/2048
    index, weight = how.rows
    b0, b1 = (jnp.asarray(weight[:, j])[:, None, None] for j in (0, 1))
    top, bottom = (jnp.take(along_x, jnp.asarray(index[:, j]), axis=0) for j in (0, 1))
    y = ((b0 * (top >> 4)) >> 16) + ((b1 * (bottom >> 4)) >> 16)
    return jnp.clip((y + 2) >> 2, 0, 255).astype(jnp.float32)
  x = _along(_along(image, how.cols, axis=1), how.rows, axis=0)
  if how.mode == 'area_2x2':
    x = jnp.floor(x / 4 + 0.5)
  elif how.mode == 'area_fast':
    x = jnp.round(x * np.float32(1 / (how.rows[0].shape[1] * how.cols[0].shape[1])))
  else:
    x = jnp.round(x)
  return jnp.clip(x, 0, 255)
