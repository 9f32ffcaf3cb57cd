"""Face probabilities of boxes in a photo: FaceNet re-scoring of BB-FCN face proposals (§IV-F).

    classifier = FaceClassifier.load('runs/facecls5/models/facecls')
    probs = classifier.score(image, boxes)    # uint8 [H, W, 3], [P, 4] x0 y0 x1 y1 -> [P]

Crop protocol (training and inference share `lmjax.core.mipmap.crop_windows`): a box is scored
on the square of its longer side about its centre, resampled to S × S (S = 24) with
anti-aliasing (read from the image's mip map of 2×-halved levels, see `lmjax.core.mipmap`).
Pixels outside the image read as 128 (0 after x / 128 - 1), like the training regions' border.

`score` pads the boxes to a bucket (a power of two ≥ 16) and the image into the smallest square
canvas of `CANVAS_SIDES` that holds it (`image_size` tells the crop where the true image ends;
the crops are those of the unpadded image); a photo larger than the biggest canvas is first
shrunk on the host by a power of two (area averaging, boxes scaled alike), which only drops
resolution a 24-pixel crop cannot use unless a box is under 2^k · 24 pixels. One jitted call
crops and classifies all boxes, and a photo collection of any sizes compiles at most
len(CANVAS_SIDES) × (box buckets) programs.
"""

from __future__ import annotations

from typing import Any

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry, image_ops
from lmjax.core.mipmap import crop_windows
from lmjax.models import facenet
from lmjax.train import checkpoint

MIN_BUCKET = 16  # smallest padded box count
CANVAS_SIDES = (256, 512, 1024, 2048, 4096)  # square canvases images are padded into


def crop_boxes(
  image: jax.Array,
  boxes: jax.Array,
  size: int,
  supersample: int = 2,
  image_size: jax.Array | None = None,
) -> jax.Array:
  """float32 [P, S, S, C] pixels of the squares of the longer side of `boxes` [P, 4].

  `image_size` as in `crop_windows` (the true h, w of a padded image).
  """
  centre, side = geometry.box_centre_side(jnp.asarray(boxes, jnp.float32))
  return crop_windows(
    image, centre, side, size=size, supersample=supersample, image_size=image_size
  )


def score_fn(model: facenet.FaceNet, spec: dict[str, Any]):
  """`fn(variables, image [H, W, 3], boxes [P, 4], image_size [2] | None) -> probs [P]`.

  Not jitted; `image_size` is the true (h, w) of a padded image (None: all of it).
  """
  size, supersample = spec['size'], spec['supersample']

  def score(variables, image, boxes, image_size=None):
    crops = crop_boxes(image, boxes, size, supersample, image_size)
    return jax.nn.sigmoid(model.apply(variables, image_ops.normalize_pixels(crops)))

  return score


def bucket_size(n: int) -> int:
  """The padded box count of `n` boxes: the smallest power of two ≥ max(n, MIN_BUCKET)."""
  return max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length())


def pad_image(
  image: np.ndarray, boxes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """(canvas, int32 true (h, w), boxes): `image` zero-padded at the bottom / right into the
  smallest square of `CANVAS_SIDES` that holds it, after shrinking it by the smallest power of
  two that makes it fit the largest; boxes [P, 4] in image pixels are mapped alike (None stays
  None).
  """
  factor = 1
  while max(image.shape[:2]) > CANVAS_SIDES[-1] * factor:
    factor *= 2
  if factor > 1:
    h, w = (-(-n // factor) for n in image.shape[:2])
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
    if boxes is not None:
      boxes = ((boxes + 0.5) / factor - 0.5).astype(np.float32)
  h, w = image.shape[:2]
  side = next(s for s in CANVAS_SIDES if s >= max(h, w))
  padded = np.zeros((side, side, image.shape[2]), image.dtype)
  padded[:h, :w] = image
  return padded, np.int32([h, w]), boxes


def check_inputs(image: Any, boxes: Any) -> tuple[np.ndarray, np.ndarray]:
  """Validates `score`'s inputs: (uint8 [H, W, 3] image, float32 [P, 4] boxes).

  Grey images ([H, W] or [H, W, 1] uint8) are repeated to three channels.

  Raises:
    ValueError: naming what was expected and what came.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
    raise ValueError(
      f'expected a uint8 [H, W, 3] RGB (or [H, W] grey) image, got {image.dtype} {image.shape}'
    )
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f'empty image: shape {image.shape}')
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  try:
    boxes = np.asarray(boxes, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'expected boxes [P, 4] (x0, y0, x1, y1): {e}') from None
  if boxes.size == 0:
    return image, np.zeros((0, 4), np.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f'expected boxes [P, 4] (x0, y0, x1, y1), got shape {boxes.shape}')
  if not np.isfinite(boxes).all():
    raise ValueError('boxes contain NaN or infinite coordinates')
  bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
  if len(bad):
    raise ValueError(f'boxes need x1 > x0 and y1 > y0; box {bad[0]} is {boxes[bad[0]].tolist()}')
  return image, boxes


class FaceClassifier:
  """Face / non-face probabilities of boxes, from a `models/facecls` folder."""

  def __init__(self, model: facenet.FaceNet, variables: dict[str, Any], spec: dict[str, Any]):
    self.model, self.variables, self.spec = model, variables, spec
    self._score = jax.jit(score_fn(model, spec))

  @classmethod
  def load(cls, model_dir: str) -> FaceClassifier:
    """Restores the model folder written by `lmjax.facecls.train` (model.json + variables/)."""
    return cls(*checkpoint.load_model(model_dir, 'facecls'))

  def score(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Face probabilities float32 [P] of `boxes` [P, 4] (x0, y0, x1, y1) in `image`.

    Args:
      image: uint8 [H, W, 3] RGB (or [H, W] / [H, W, 1] grey).
      boxes: [P, 4] boxes in image pixels; they may extend past the image (read as grey 128).
        Each is scored on the square of its longer side about its centre.
    """
    image, boxes = check_inputs(image, boxes)
    n = len(boxes)
    if not n:
      return np.zeros(0, np.float32)
    padded = np.tile(np.float32([0, 0, 1, 1]), (bucket_size(n), 1))
    padded[:n] = boxes
    image, image_size, padded = pad_image(image, padded)
    return np.asarray(self._score(self.variables, image, padded, image_size))[:n]
