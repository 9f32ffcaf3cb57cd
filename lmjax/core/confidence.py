"""Per-point confidence: a model's raw reliability signal mapped to a calibrated probability.

Every landmark predictor gives a raw signal per point (`CropPredictor.confidence_signal`;
higher = more reliable): the agreement of the face with its mirror image, minus the log of
the distance between each point of the crop and the mirrored prediction of its partner point
on the mirrored crop, in crop sides (`SIGNAL`; one more forward pass). Measured on the
validation faces, it ranks the wrong points better than BB-FCN's own map responses (AUC 0.76
against 0.62 for `pretrained/bbfcn5`; see the README). A calibration, fitted on validation
faces by `python -m lmjax.calibrate` and kept in the model folder as `confidence.json`, maps
the signal to the probability that the point is within `THRESHOLD` (10 %) of the normalising
distance of the truth:

    confidence[k] = sigmoid(slope * signal[k] + intercept[k])

(logistic regression of "the point is within the threshold" on the signal, with one slope and
an intercept per landmark: some points, e.g. the jaw line, are wrong more often than others).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
from etils import epath

CALIBRATION_FILE = 'confidence.json'
SIGNAL = 'mirror_agreement'
THRESHOLD = 0.10  # a point is "correct" within this fraction of the normalising distance


def fit(
  signal: np.ndarray, correct: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, list[float]]:
  """(slope, per-point intercepts [K]) of the logistic regression of `correct` on `signal`.

  Args:
    signal, correct: [N, K] raw signals and whether each point is within the threshold.
    mask: optional bool [N, K] of the points to fit on (e.g. the visible ones).
  """
  x = np.asarray(signal, np.float64)
  y = np.asarray(correct, bool)
  use = np.isfinite(x) & (np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool))
  if use.sum() < 2 or y[use].min() == y[use].max():
    raise ValueError(
      f'calibration: need both correct and wrong points, got {int(use.sum())} points with '
      f'{int((~y[use]).sum())} wrong'
    )
  point = np.broadcast_to(np.arange(x.shape[1]), x.shape)[use]
  mean, scale = x[use].mean(), x[use].std() or 1.0
  z, y = (x[use] - mean) / scale, y[use].astype(np.float64)
  k = x.shape[1]

  def loss(theta):  # mean log-loss (a small ridge keeps unseen-error points finite) + gradient
    logits = theta[0] * z + theta[1:][point]
    residual = scipy.special.expit(logits) - y
    value = np.mean(np.logaddexp(0, logits) - y * logits) + 1e-4 * np.sum(theta[1:] ** 2)
    grad_points = np.bincount(point, residual, minlength=k) / len(z) + 2e-4 * theta[1:]
    return value, np.concatenate([[np.mean(residual * z)], grad_points])

  theta = scipy.optimize.minimize(loss, np.zeros(k + 1), jac=True, method='L-BFGS-B').x
  slope = theta[0] / scale
  return float(slope), [float(b - slope * mean) for b in theta[1:]]


def probability(signal: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
  """float32 confidence in [0, 1] of a raw signal [..., K] (NaN stays NaN)."""
  intercept = np.asarray(calibration['intercept'], np.float64)  # [K]
  logits = calibration['slope'] * np.asarray(signal, np.float64) + intercept
  return scipy.special.expit(logits).astype(np.float32)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
  """Area under the ROC curve of `score` ranking the `positive` items first (ties count half):
  the probability that a random positive scores above a random negative."""
  score = np.asarray(score, np.float64).ravel()
  positive = np.asarray(positive, bool).ravel()
  n_pos, n_neg = positive.sum(), (~positive).sum()
  if not n_pos or not n_neg:
    return float('nan')
  ranks = scipy.stats.rankdata(score)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def read_calibration(directory: str | os.PathLike, num_points: int) -> dict[str, Any] | None:
  """The `confidence.json` of a model folder of `num_points` landmarks, or None without one.

  Raises:
    ValueError: the file is not a calibration of `num_points` points (one line naming it).
  """
  path = epath.Path(directory) / CALIBRATION_FILE
  if not path.is_file():
    return None
  expected = f'JSON with a number slope and a list of {num_points} numbers intercept'
  try:
    calibration = json.loads(path.read_text())
    float(calibration['slope'])
    intercept = np.asarray(calibration['intercept'], np.float64)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(
      f'{path}: not a confidence calibration (expected {expected}; {type(e).__name__}); make '
      'it again with python -m lmjax.calibrate'
    ) from None
  if intercept.shape != (num_points,):
    raise ValueError(
      f'{path}: intercept has shape {intercept.shape}, expected {expected} (a calibration of '
      'another model?); make it again with python -m lmjax.calibrate'
    )
  return calibration


def write_calibration(directory: str | os.PathLike, calibration: Mapping[str, Any]) -> str:
  """Writes `<directory>/confidence.json`; returns its path."""
  path = epath.Path(directory) / CALIBRATION_FILE
  path.write_text(json.dumps(dict(calibration), indent=1) + '\n')
  return str(path)
