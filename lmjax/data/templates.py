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
  the training crops are. 98-point (WFLW) templates place the 68 points where WFLW has them
  and interpolate the rest (`wflw_from_68`); WFLW's box is its own rectangle, approximated
  here by the tight box of the 68 points too.

  Args:
    num_points: K, 5, 68 or 98.
    dataset: the training dataset's name (`model.json` `dataset`).
    crop_scale: window side / face box side.

  Raises:
    ValueError: K is not 5, 68 or 98.
  """
  p68 = shape.face_shape()[:, :2]
  if num_points == 68:
    points = p68
  elif num_points == 5:
    points = landmarks.five_from_68(p68)
  elif num_points == 98:
    points = wflw_from_68(p68)
  else:
    raise ValueError(f'num_points={num_points}: the face template exists for 5, 68 and 98 points')
  box = mtfl.face_box_np(points) if dataset == 'mtfl' else common.tight_box(p68)
  side = crop_scale * float(np.max(box[2:] - box[:2]))
  corner = (box[:2] + box[2:]) / 2 - side / 2
  return ((points - corner) / side).astype(np.float32)


# WFLW points that are 68-point ones (WFLW index -> 68-point index).
_WFLW_68 = {
  **{2 * j: j for j in range(17)},  # contour: every other WFLW point
  **{33 + k: 17 + k for k in range(5)},  # upper brow edges
  **{42 + k: 22 + k for k in range(5)},
  **{51 + k: 27 + k for k in range(9)},  # nose
  **dict(zip((60, 61, 63, 64, 65, 67), range(36, 42), strict=True)),  # eyes
  **dict(zip((68, 69, 71, 72, 73, 75), range(42, 48), strict=True)),
  **{76 + k: 48 + k for k in range(20)},  # mouth
}
BROW_THICKNESS = 0.25  # lower brow edge: this share of the way from the upper edge to the eye


def wflw_from_68(p68: np.ndarray) -> np.ndarray:
  """An approximate WFLW 98-point face [98, 2] from 68 points [68, 2] (a template, not labels).

  The 68-point landmarks go where WFLW has them; the odd contour points and the extra eyelid
  points are midpoints of their neighbours; the pupils are the eye centres; the lower brow
  edge (38-41, 47-50) lies under the upper edge, `BROW_THICKNESS` of the way down to the eye
  centre's height.
  """
  p68 = np.asarray(p68, np.float64)
  out = np.full((98, 2), np.nan)
  for w, i in _WFLW_68.items():
    out[w] = p68[i]
  out[1:32:2] = (out[0:31:2] + out[2:33:2]) / 2
  for w, (a, b) in {62: (61, 63), 66: (65, 67), 70: (69, 71), 74: (73, 75)}.items():
    out[w] = (out[a] + out[b]) / 2
  out[96], out[97] = p68[36:42].mean(0), p68[42:48].mean(0)
  for lower, upper, eye in (
    ((38, 39, 40, 41), (37, 36, 35, 34), 96),
    ((50, 49, 48, 47), (42, 43, 44, 45), 97),
  ):
    drop = BROW_THICKNESS * (out[eye, 1] - out[list(upper), 1].mean())
    out[list(lower)] = out[list(upper)] + (0.0, drop)
  return out
