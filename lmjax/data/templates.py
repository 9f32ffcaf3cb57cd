"""The scanner's face template: where each landmark type sits in a model's training window.

Training-side code: it boxes the mean face of `lmjax.synthface` with the rule of the model's
training data, so the BB-FCN trainer computes it once and stores it in the exported
`model.json` (`face_template`); the scanner reads it from there and never imports the renderer
or a dataset module.
"""

from __future__ import annotations

import numpy as np

from lmjax.core import landmarks
from lmjax.data.datasets import common, mtfl
from lmjax.synthface import shape


def face_template(num_points: int, dataset: str, crop_scale: float) -> np.ndarray:
  """Mean landmark positions float32 [K, 2] inside a model's training window, in [0, 1] units.

  The frontal mean face of `lmjax.synthface` is boxed with the rule of the model's training
  data (MTFL: `mtfl.face_box_np` on the 5 points; others: the tight box of the 68 points), and
  the window is the square of `crop_scale` × the longer box side around the box centre, as
  the training crops are.

  Args:
    num_points: K, 5 or 68.
    dataset: the training dataset's name (`model.json` `dataset`).
    crop_scale: window side / face box side.

  Raises:
    ValueError: K is neither 5 nor 68.
  """
  p68 = shape.face_shape()[:, :2]
  if num_points == 68:
    points = p68
  elif num_points == 5:
    points = landmarks.five_from_68(p68)
  else:
    raise ValueError(f'num_points={num_points}: the face template exists for 5 and 68 points')
  box = mtfl.face_box_np(points) if dataset == 'mtfl' else common.tight_box(p68)
  side = crop_scale * float(np.max(box[2:] - box[:2]))
  corner = (box[:2] + box[2:]) / 2 - side / 2
  return ((points - corner) / side).astype(np.float32)
