"""Face-window proposer evaluation: recall at probability thresholds and box-offset errors.

A proposer (`lmjax.models.proposal_net`) is followed by stricter stages, so what matters is the
share of face windows it lets through (recall) at the false-positive rate it pays for that on
non-face windows, and how well it places the face box. Validation windows have a kind (the
first three as `lmjax.eval.classification.KINDS`):
  0 positive (upright)   1 partial-face negative   2 background negative
  3 part window (IoU between the negatives' and the positives'; box target only)
  4 rolled positive (the crop turned by up to ± the training rotation)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from lmjax.eval.classification import classification_metrics

THRESHOLDS = (0.3, 0.5, 0.7)
POSITIVE, PARTIAL, BACKGROUND, PART, ROLLED = range(5)


def proposal_metrics(
  logits: ArrayLike,
  offsets: ArrayLike,
  kinds: ArrayLike,
  targets: ArrayLike,
  thresholds: tuple[float, ...] = THRESHOLDS,
) -> dict[str, float]:
  """Classification metrics, recall / false-positive rates and box-offset errors.

  Args:
    logits: [N] face logits.
    offsets: [N, 4] predicted box offsets (window sides).
    kinds: int [N] window kinds 0-4 (module docstring).
    targets: [N, 4] true box offsets (read for kinds 0, 3 and 4 only).
    thresholds: face probabilities at which windows count as proposed.

  Returns:
    `classification_metrics` of the kinds 0-2 (loss, accuracy, per-kind accuracy, auc),
    and per threshold t: 'recall_t' (share of upright positives with probability ≥ t),
    'rolled_recall_t' (of rolled positives, when present), 'fpr_background_t' and
    'fpr_partial_t' (share of those negatives with probability ≥ t); 'offset_mae' (mean
    absolute offset error of upright positives, window sides), 'part_offset_mae' and
    'rolled_offset_mae' where those kinds are present.
  """
  logits = np.asarray(logits, np.float64)
  offsets, targets = np.asarray(offsets, np.float64), np.asarray(targets, np.float64)
  kinds = np.asarray(kinds)
  n = logits.shape[0]
  if offsets.shape != (n, 4) or targets.shape != (n, 4):
    raise ValueError(
      f'offsets {offsets.shape} and targets {targets.shape}: expected [{n}, 4] (one per logit)'
    )
  if kinds.shape != (n,) or not np.isin(kinds, range(5)).all():
    raise ValueError(f'kinds: expected [{n}] values in 0-4, got shape {kinds.shape}')
  if not np.any(kinds == POSITIVE):
    raise ValueError('kinds: expected at least one upright positive window (kind 0)')
  classified = kinds <= BACKGROUND
  out = classification_metrics(logits[classified], kinds[classified])
  prob = 1 / (1 + np.exp(-logits))
  rates = {'recall': POSITIVE, 'rolled_recall': ROLLED}
  rates |= {'fpr_background': BACKGROUND, 'fpr_partial': PARTIAL}
  for t in thresholds:
    for name, kind in rates.items():
      if np.any(kinds == kind):
        out[f'{name}_{t:g}'] = float(np.mean(prob[kinds == kind] >= t))
  errors = {'offset_mae': POSITIVE, 'part_offset_mae': PART, 'rolled_offset_mae': ROLLED}
  for name, kind in errors.items():
    if np.any(kinds == kind):
      out[name] = float(np.mean(np.abs(offsets[kinds == kind] - targets[kinds == kind])))
  return out
