"""`ExportedPredictor`: a `python -m lmjax.export --format=stablehlo` file behind the image API.

    predictor = ExportedPredictor('mcl68.stablehlo')       # + mcl68.stablehlo.json
    predictor.predict_faces(images, boxes)['points']       # [N, K, 2] image pixels

The file is deserialised with `jax.export` and called as exported; nothing of the model folder
is read. Unlike the folder predictors (`lmjax.models.interface.CropPredictor`) it has no
`crop` / `predict_crops`: the crop happens inside the exported graph, so the face-crop
evaluator scores it through `predict_faces` (`lmjax.eval.face_crop.predict_images`).
Faces are grouped by image size, one call per size, the batch padded to a few fixed sizes. A
`--padded` export (third input: the picture sizes) gets each picture padded to the next
multiple of `pad_to` pixels (symbolic H, W) or to its fixed canvas, so few sizes compile
(about 4 s each for mcl68 on one core) and the points are those of the unpadded pictures.
Without it, every image size of a symbolic-size export compiles once (300-W validation: 187
sizes for 200 faces).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jax
import numpy as np
from etils import epath

from lmjax.core import image_ops, landmarks

BUCKETS = (1, 8, 64)
PAD_TO = 256


class ExportedPredictor:
  """Landmarks of faces given their boxes, from a serialised whole-predictor export.

  Attributes:
    spec: the exported model's `model.json` dict (from the sidecar).
    schema: the landmark schema of its K points.
    outputs: ('points',).
    backend: 'stablehlo'.
    image_size: (H, W) the export was made for, or None (any size).
    info: the sidecar dict.
  """

  outputs = ('points',)
  backend = 'stablehlo'
  calibration = None

  def __init__(self, path: str, pad_to: int = PAD_TO):
    """Reads `path` and `<path>.json`; `pad_to`: the canvas size multiple of a padded
    symbolic-size export (module docstring).

    Raises:
      FileNotFoundError: either file is missing.
      ValueError: the sidecar is not a stablehlo export's, or the file does not deserialise.
    """
    path_ = epath.Path(path)
    side = epath.Path(f'{path}.json')
    for p in (path_, side):
      if not p.is_file():
        raise FileNotFoundError(f'{p}: not found (python -m lmjax.export --format=stablehlo)')
    self.info = json.loads(side.read_text())
    if self.info.get('format') != 'stablehlo' or 'spec' not in self.info:
      raise ValueError(f'{side}: not the sidecar of a stablehlo export (no format/spec keys)')
    if self.info.get('kind') == 'scanner':
      raise ValueError(
        f'{path}: a whole-image scanner export (image in, detections out), not a predictor of '
        'face boxes; load it with lmjax.hlo_export.scan_runner.ExportedScanner'
      )
    try:
      self.exported = jax.export.deserialize(bytearray(path_.read_bytes()))
    except Exception as e:  # flatbuffer errors have no common type
      raise ValueError(f'{path}: not a serialised jax.export ({type(e).__name__})') from None
    self.spec = self.info['spec']
    self.schema = landmarks.get_schema(self.spec['num_points'])
    size = self.info.get('image_size')
    self.image_size = tuple(size) if size else None
    self._call = jax.jit(self.exported.call)
    self.padded = len(self.exported.in_avals) == 3
    self.pad_to = max(int(pad_to), 1)

  def __call__(self, images: np.ndarray, boxes: np.ndarray, *sizes: np.ndarray) -> np.ndarray:
    """The exported function on uint8 [N, H, W, 3], float32 [N, 4] (and int32 [N, 2] sizes of
    a padded export) -> float32 [N, K, 2], the batch padded to the next bucket size (or a
    multiple of the largest)."""
    n = len(images)
    size = next((b for b in BUCKETS if b >= n), -(-n // BUCKETS[-1]) * BUCKETS[-1])
    pad = np.arange(size) % n  # repeat real faces: the padding stays a valid face
    args = (np.ascontiguousarray(images[pad]), np.asarray(boxes, np.float32)[pad])
    out = self._call(*args, *(np.asarray(s, np.int32)[pad] for s in sizes))
    return np.asarray(out)[:n]

  def predict_faces(
    self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]
  ) -> dict[str, np.ndarray]:
    """{'points': image-pixel float32 [N, K, 2]} of N faces (image i, box i).

    Images are uint8 RGB [H, W, 3] (grey [H, W] / [H, W, 1] is repeated to 3 channels); with
    a fixed-size export every image must be of that size.
    """
    if len(images) != len(boxes):
      raise ValueError(f'images, boxes: {len(images)} images but {len(boxes)} boxes')
    rgb, sizes = [], []
    for i, image in enumerate(images):
      try:
        image = image_ops.check_image(image)
      except ValueError as e:
        raise ValueError(f'images[{i}]: {e}') from None
      size = image.shape[:2]
      if self.image_size and size != self.image_size and not self._fits(size):
        h, w = self.image_size
        what = f'at most {h}x{w}' if self.padded else f'{h}x{w}'
        raise ValueError(
          f'images[{i}]: the export takes {what} images (--image_size), got {size[0]}x{size[1]}'
        )
      rgb.append(self._padded(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image))
      sizes.append(size)
    boxes = np.asarray(boxes, np.float32).reshape(len(rgb), 4)
    sizes = np.asarray(sizes, np.int32).reshape(len(rgb), 2)
    points = np.zeros((len(rgb), self.schema.num_points, 2), np.float32)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(rgb):
      groups.setdefault(image.shape, []).append(i)
    for rows in groups.values():
      for start in range(0, len(rows), BUCKETS[-1]):
        part = rows[start : start + BUCKETS[-1]]
        extra = (sizes[part],) if self.padded else ()
        points[part] = self(np.stack([rgb[i] for i in part]), boxes[part], *extra)
    return {'points': points}

  def _fits(self, size: tuple[int, int]) -> bool:
    """Whether a padded fixed-canvas export takes a picture of `size` (H, W)."""
    return self.padded and size[0] <= self.image_size[0] and size[1] <= self.image_size[1]

  def _padded(self, image: np.ndarray) -> np.ndarray:
    """A padded export's `image`, padded at the bottom and right to its canvas or to
    multiples of `pad_to` (the padding is never read); other exports' as is."""
    if not self.padded:
      return image
    h, w = image.shape[:2]
    if self.image_size:
      dh, dw = self.image_size[0] - h, self.image_size[1] - w
    else:
      dh, dw = -h % self.pad_to, -w % self.pad_to
    if not dh and not dw:
      return image
    return np.pad(image, ((0, dh), (0, dw), (0, 0)))

  def predict_batch(self, images, boxes) -> np.ndarray:
    """Image-pixel landmarks float32 [N, K, 2] of N faces (image i, box i)."""
    return self.predict_faces(images, boxes)['points']
