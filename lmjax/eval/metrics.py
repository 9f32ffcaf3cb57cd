"""Landmark accuracy metrics: NME under several normalisers, failure rate, CED and AUC (SPEC §4).

Every error here is a ratio (0.08 means 8 %); `lmjax.eval.reports` turns them into percent.

Normalisers (`kind`), always measured on the ground truth:
  * `ioc`, `ipd`: the schema's normalisers (`Schema.normaliser_distance`).
  * `box`: the face-box size `sqrt(w * h)` of a box (x0, y0, x1, y1).

`nme_per_image` is written with operations that numpy and jax.numpy share, so it also runs on
jnp arrays under `jax.jit` (close over `kind` and `schema`). Shape checks always run; value
checks (zero normalising distance, images without visible points) need concrete values and are
skipped while tracing, where such images give inf/NaN instead. The other functions are numpy only.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from lmjax.core.landmarks import Schema

NORMALISERS = ('ioc', 'ipd', 'box')
AUC_STEP = 1e-4

Array = np.ndarray | jax.Array


def _as_array(x) -> Array:
  """jax arrays (and tracers) unchanged, anything else as a numpy array."""
  return x if isinstance(x, jax.Array) else np.asarray(x)


def _concrete(x: Array) -> np.ndarray | None:
  """`x` as a numpy array, or None while it is being traced by `jax.jit`."""
  try:
    return np.asarray(x)
  except jax.errors.TracerArrayConversionError:
    return None


def box_size(bbox: Array) -> Array:
  """Face-box normaliser `sqrt(w * h)`.

  Args:
    bbox: [..., 4] boxes (x0, y0, x1, y1).

  Returns:
    [...] box sizes.
  """
  return ((bbox[..., 2] - bbox[..., 0]) * (bbox[..., 3] - bbox[..., 1])) ** 0.5


def normalising_distance(
  gt: Array, kind: str, schema: Schema | None = None, bbox: Array | None = None
) -> Array:
  """Per-image normalising distance.

  Args:
    gt: [N, K, 2] ground-truth landmarks.
    kind: one of `NORMALISERS`.
    schema: landmark schema; needed for 'ioc' and 'ipd'.
    bbox: [N, 4] face boxes (x0, y0, x1, y1); needed for 'box'.

  Returns:
    [N] distances.
  """
  if kind == 'box':
    if bbox is None:
      raise ValueError("the 'box' normaliser needs bbox [N, 4]")
    box = _concrete(bbox)
    if box is not None:
      empty = ~((box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1]))
      _fail_where(empty, 'bbox: empty box (expected x0 < x1 and y0 < y1)')
    return box_size(bbox)
  if kind not in NORMALISERS:
    raise ValueError(f'unknown normaliser {kind!r}; known: {NORMALISERS}')
  if schema is None:
    raise ValueError(f'the {kind!r} normaliser needs a landmark schema')
  return schema.normaliser_distance(gt, kind)


def _check_shapes(
  pred: Array, gt: Array, schema: Schema | None, visible: Array | None, bbox: Array | None
) -> None:
  """Raises ValueError naming the first argument whose shape does not fit."""
  if pred.ndim != 3 or pred.shape[-1] != 2:
    raise ValueError(f'pred: expected shape [N, K, 2], got {tuple(pred.shape)}')
  n, k = pred.shape[:2]
  if tuple(gt.shape) != (n, k, 2):
    raise ValueError(f'gt: expected shape [N, K, 2] = {(n, k, 2)} like pred, got {tuple(gt.shape)}')
  if schema is not None and schema.num_points != k:
    raise ValueError(
      f'pred: schema {schema.name!r} expects K = {schema.num_points} points, got K = {k}'
    )
  if visible is not None and tuple(visible.shape) != (n, k):
    raise ValueError(f'visible: expected shape [N, K] = {(n, k)}, got {tuple(visible.shape)}')
  if bbox is not None and tuple(bbox.shape) != (n, 4):
    raise ValueError(f'bbox: expected shape [N, 4] = {(n, 4)}, got {tuple(bbox.shape)}')


def _fail_where(bad: np.ndarray, what: str) -> None:
  """Raises ValueError naming the (first ten) images where `bad` [N] is True."""
  idx = np.flatnonzero(bad)
  if idx.size:
    raise ValueError(f'{what} for images {idx[:10].tolist()} ({idx.size} in all)')


def _check_values(kind: str, dist: Array, mask: Array | None) -> None:
  """Raises ValueError for images with a zero normalising distance or no visible point."""
  dist = _concrete(dist)
  if dist is not None:
    _fail_where(~(dist > 0), f'zero (or invalid) {kind!r} normalising distance')
  count = None if mask is None else _concrete(mask.sum(axis=-1))
  if count is not None:
    _fail_where(count == 0, 'visible: no visible landmark')


def normalised_errors(
  pred: Array,
  gt: Array,
  kind: str,
  schema: Schema | None,
  bbox: Array | None,
  visible: Array | None,
) -> tuple[Array, Array | None]:
  """Checked point errors divided by the image's normaliser, and the visibility weights.

  Returns:
    ([N, K] normalised Euclidean errors, [N, K] weights (1 visible, 0 masked) or None when
    every point counts).
  """
  pred, gt = _as_array(pred), _as_array(gt)
  bbox = None if bbox is None else _as_array(bbox)
  visible = None if visible is None else _as_array(visible)
  _check_shapes(pred, gt, schema, visible, bbox)
  dist = normalising_distance(gt, kind, schema, bbox)  # [N]
  err = (((pred - gt) ** 2).sum(axis=-1)) ** 0.5  # [N, K]
  mask = None if visible is None else visible.astype(err.dtype)  # [N, K]
  _check_values(kind, dist, mask)
  return err / dist[:, None], mask


def nme_per_image(
  pred: Array,
  gt: Array,
  kind: str,
  schema: Schema | None = None,
  bbox: Array | None = None,
  visible: Array | None = None,
) -> Array:
  """Normalised mean error of every image (numpy, or jnp also under `jax.jit`).

  Args:
    pred: [N, K, 2] predicted landmarks.
    gt: [N, K, 2] ground-truth landmarks.
    kind: normaliser, one of `NORMALISERS`.
    schema: landmark schema; needed for 'ioc' and 'ipd'.
    bbox: [N, 4] face boxes (x0, y0, x1, y1); needed for 'box'.
    visible: optional [N, K] mask; the mean runs over visible points only. Coordinates of
      masked points must still be finite.

  Returns:
    [N] mean over visible points of |pred - gt| / d, as a ratio.

  Raises:
    ValueError: mismatched shapes, a zero normalising distance or an image without visible
      points (the last two only for concrete inputs).
  """
  err, mask = normalised_errors(pred, gt, kind, schema, bbox, visible)
  if mask is None:
    return err.mean(axis=-1)
  return (err * mask).sum(axis=-1) / mask.sum(axis=-1)


def per_landmark_nme(
  pred: Array,
  gt: Array,
  kind: str,
  schema: Schema | None = None,
  bbox: Array | None = None,
  visible: Array | None = None,
) -> np.ndarray:
  """Mean normalised error of every landmark over the images where it is visible.

  Args: as `nme_per_image`.

  Returns:
    [K] errors as ratios; NaN for a landmark that is visible in no image.
  """
  err, mask = normalised_errors(pred, gt, kind, schema, bbox, visible)
  err = np.asarray(err)
  mask = np.ones_like(err) if mask is None else np.asarray(mask)
  count = mask.sum(axis=0)
  return np.divide(
    (err * mask).sum(axis=0), count, out=np.full(count.shape, np.nan), where=count > 0
  )


def per_cluster_nme(per_landmark: np.ndarray, schema: Schema) -> np.ndarray:
  """Mean of the per-landmark errors inside each of the schema's MCL clusters.

  Args:
    per_landmark: [K] per-landmark errors (`per_landmark_nme`); NaN entries are ignored.
    schema: landmark schema with clusters.

  Returns:
    [C] errors in `schema.cluster_names` order; NaN for a cluster without any finite entry.
  """
  per_landmark = np.asarray(per_landmark, np.float64)
  if not schema.clusters:
    raise ValueError(f'schema {schema.name!r} defines no clusters')
  if per_landmark.shape != (schema.num_points,):
    raise ValueError(
      f'per_landmark: expected shape [K] = ({schema.num_points},), got {per_landmark.shape}'
    )
  out = np.full(len(schema.clusters), np.nan)
  for i, cluster in enumerate(schema.clusters):
    values = per_landmark[list(cluster)]
    values = values[~np.isnan(values)]
    if values.size:
      out[i] = values.mean()
  return out


def _check_nme(nme: np.ndarray, thr: float) -> np.ndarray:
  """Validated [N] per-image NMEs as float64."""
  nme = np.asarray(nme, np.float64)
  if nme.ndim != 1 or nme.size == 0:
    raise ValueError(f'nme: expected a non-empty shape [N], got {nme.shape}')
  if not thr > 0:
    raise ValueError(f'thr: expected a positive threshold, got {thr}')
  return nme


def failure_rate(nme: np.ndarray, thr: float) -> float:
  """Fraction of images with NME > `thr`.

  Args:
    nme: [N] per-image NMEs (ratios).
    thr: threshold as a ratio, e.g. 0.1.
  """
  return float((_check_nme(nme, thr) > thr).mean())


def ced(nme: np.ndarray, thr: float, step: float = AUC_STEP) -> tuple[np.ndarray, np.ndarray]:
  """Cumulative error distribution on a regular grid over [0, thr].

  The grid has n + 1 points, n = ceil(thr / step) rounded up to an even number (as Simpson's
  rule needs), so its spacing is thr / n (= `step` whenever thr is an even multiple of it).

  Args:
    nme: [N] per-image NMEs (ratios).
    thr: upper end of the grid (ratio).
    step: requested grid spacing.

  Returns:
    ([n + 1] grid x, [n + 1] fraction of images with NME <= x).
  """
  nme = np.sort(_check_nme(nme, thr))
  n = max(2, math.ceil(thr / step - 1e-6))
  n += n % 2
  x = np.linspace(0.0, thr, n + 1)
  return x, np.searchsorted(nme, x, side='right') / nme.size


def simpson(y: np.ndarray, dx: float) -> float:
  """Composite Simpson's rule for samples on a regular grid.

  Args:
    y: [M] samples, M odd and >= 3 (an even number of intervals).
    dx: grid spacing.

  Returns:
    The integral estimate dx / 3 * (y0 + 4 y1 + 2 y2 + ... + 4 y_{M-2} + y_{M-1}).
  """
  y = np.asarray(y, np.float64)
  if y.ndim != 1 or y.size < 3 or y.size % 2 == 0:
    raise ValueError(f'y: expected an odd number >= 3 of samples, got shape {y.shape}')
  return float(dx / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def auc(nme: np.ndarray, thr: float, step: float = AUC_STEP) -> float:
  """Area under the CED from 0 to `thr`, divided by `thr` (1 = every image perfect).

  Args:
    nme: [N] per-image NMEs (ratios).
    thr: upper integration limit (ratio), e.g. 0.08.
    step: grid spacing of Simpson's rule.
  """
  x, y = ced(nme, thr, step)
  return simpson(y, x[1] - x[0]) / thr
