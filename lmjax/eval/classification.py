"""Face / non-face evaluation: the metrics of a window classifier's logits (paper §IV-G).

Each validation window has a kind: 0 = face (positive), 1 = partial-face negative, 2 =
background negative (`KINDS`). `classification_metrics` gives the sigmoid cross-entropy, the
accuracy at probability 0.5 (overall and per kind) and the ROC AUC, the numbers the face
classifier's training logs and records in `stages.json`. Accuracies are in percent, the AUC is
a ratio.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

KINDS = ('positive', 'partial', 'background')


def classification_metrics(logits: ArrayLike, kinds: ArrayLike) -> dict[str, float]:
  """Loss, accuracy (threshold 0.5), accuracy per kind of window and ROC AUC.

  Args:
    logits: [N] face logits.
    kinds: int [N]: 0 = positive, 1 = partial-face negative, 2 = background negative.

  Returns:
    {'loss' (mean sigmoid cross-entropy), 'accuracy' (%), '<kind>_acc' (%) for each kind
    present, 'auc' (P(logit of a face > logit of a non-face), ties count half; only with both
    faces and non-faces), 'num_positive', 'num_negative'}.
  """
  logits = np.asarray(logits, np.float64)
  kinds = np.asarray(kinds)
  if logits.ndim != 1:
    raise ValueError(f'logits: expected shape [N], got {logits.shape}')
  if kinds.shape != logits.shape:
    raise ValueError(f'kinds: expected shape {logits.shape} (one per logit), got {kinds.shape}')
  if not np.isin(kinds, range(len(KINDS))).all():
    raise ValueError(f'kinds: expected values 0, 1, 2 ({", ".join(KINDS)}), got {np.unique(kinds)}')
  if not len(logits):
    raise ValueError('logits: expected at least one window, got none')
  labels = (kinds == 0).astype(np.float64)
  loss = np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
  correct = (logits > 0) == (labels > 0.5)
  out = {'loss': float(loss), 'accuracy': float(correct.mean() * 100)}
  for k, name in enumerate(KINDS):
    if np.any(kinds == k):
      out[f'{name}_acc'] = float(correct[kinds == k].mean() * 100)
  pos, neg = logits[labels > 0.5], logits[labels < 0.5]
  if len(pos) and len(neg):
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, 'left')
    tied = np.searchsorted(neg, pos, 'right') - below
    out['auc'] = float((below + 0.5 * tied).sum() / (len(pos) * len(neg)))
  out.update(num_positive=len(pos), num_negative=len(neg))
  return out
