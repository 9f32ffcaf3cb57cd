"""The cascade's re-scoring: face probabilities of proposal boxes, cropped on the host.

`FaceClassifier.score` crops on the device from a mip map of the whole photo padded to a square
canvas (up to 4096²): right for a few calls, but its cost grows with the photo, and the cascade
scores only a few dozen boxes per photo. Here each box's square (its longer side about its
centre, as the classifier's crop protocol) is cut from the photo on the host, pixels outside it
reading 128, shrunk with area averaging to the supersampled grid (S · supersample; bilinear when
the square is smaller) and averaged down to S × S, then the FaceNet scores the batch in one
fixed-size jitted call. On the proposals of 40 composite scenes the probabilities agree with
`FaceClassifier.score` to within a few hundredths (see the README's scanner section); the cost
no longer depends on the photo's size.
"""

from __future__ import annotations

import cv2
import jax
import numpy as np

from lmjax.core import geometry, image_ops
from lmjax.data.batching import run_bucketed


def crop_squares(image: np.ndarray, boxes: np.ndarray, size: int, supersample: int) -> np.ndarray:
  """uint8-valued float32 [P, S, S, 3] crops of the squares of the longer side of `boxes` [P, 4].

  Box edges are in pixel-centre coordinates (pixel i spans [i - 0.5, i + 0.5]); each square is
  cut at whole pixels around it (at most half a pixel off per edge).
  """
  grid = size * supersample
  h, w = image.shape[:2]
  centre, side = geometry.box_centre_side(np.asarray(boxes, np.float64))
  out = np.empty((len(boxes), size, size, 3), np.float32)
  for i, ((cx, cy), s) in enumerate(zip(centre, side, strict=True)):
    x0, y0 = round(cx - s / 2 + 0.5), round(cy - s / 2 + 0.5)
    n = max(1, round(s))
    region = np.full((n, n, 3), image_ops.BORDER_VALUE, np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if sx1 > sx0 and sy1 > sy0:
      region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    method = cv2.INTER_AREA if n > grid else cv2.INTER_LINEAR
    fine = cv2.resize(region, (grid, grid), interpolation=method).astype(np.float32)
    out[i] = fine.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
  return out


class HostRescorer:
  """Face probabilities of boxes from a `FaceClassifier`'s network, with host crops.

  Boxes are scored in fixed batches of `batch` (padded), so one program serves every photo.
  """

  def __init__(self, classifier, batch: int):
    self.classifier, self.batch = classifier, batch
    self.size, self.supersample = classifier.spec['size'], classifier.spec['supersample']
    model = classifier.model
    self._forward = jax.jit(
      lambda v, x: jax.nn.sigmoid(model.apply(v, image_ops.normalize_pixels(x)))
    )

  def score(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """float32 [P] face probabilities of `boxes` [P, 4] in a uint8 [H, W, 3] photo."""
    if not len(boxes):
      return np.zeros(0, np.float32)
    crops = crop_squares(image, boxes, self.size, self.supersample)
    forward = lambda x: self._forward(self.classifier.variables, x)
    return run_bucketed(forward, crops, buckets=(self.batch,)).astype(np.float32)

  def compiled(self) -> int:
    """Programs compiled so far (1 once a photo was scored)."""
    return self._forward._cache_size()
