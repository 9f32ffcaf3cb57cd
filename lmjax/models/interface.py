"""The face-crop predictor interface shared by every landmark model folder.

`FacePredictor` (MCL) and `BBFCNPredictor` (BB-FCN) implement `crop` and `predict_crops`; the
image-level methods below are written once on top of them. Callers read `outputs` instead of
testing attributes:

    out = predictor.predict_faces(images, boxes)       # image pixels
    out['points']                                      # [N, K, 2] always
    out['coarse'] if 'coarse' in predictor.outputs     # [N, K, 2] backbone only, same pass

Every entry point checks its inputs with `check_face` first (one-line ValueErrors naming the
argument, and in a batch its index: `boxes[3]: ...`): the image as the crops need it, and a
finite box of at least `MIN_BOX_SIDE` pixels per side that overlaps the image. `python -m
lmjax.draw` checks its `--box` with the same function.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.core import geometry, image_ops, landmarks

MIN_BOX_SIDE = 1.0  # pixels: a narrower box has no face in it (and would blow up the crop)


def check_face(
  image: np.ndarray, box: Sequence[float], *, image_name: str = 'image', box_name: str = 'box'
) -> tuple[np.ndarray, np.ndarray]:
  """Validates one face of a predictor's input (the check of every `CropPredictor` entry point).

  Args:
    image: uint8 [H, W] grey, [H, W, 1] grey or [H, W, 3] RGB, H and W at least 8
      (`lmjax.core.image_ops.check_image`).
    box: the face box (x0, y0, x1, y1) in image pixels (pixel centres on integers): finite,
      x1 - x0 and y1 - y0 at least `MIN_BOX_SIDE`, overlapping the image's pixel centres
      [0, W-1] × [0, H-1].
    image_name, box_name: how error messages call the two (e.g. `images[3]`, `--box`).

  Returns:
    (the image as [H, W, C], the box as float64 [4]).

  Raises:
    ValueError: one line starting with `image_name` or `box_name`, saying what was expected.
  """
  try:
    image = image_ops.check_image(image)
  except ValueError:
    got = f'{image.dtype} {image.shape}' if hasattr(image, 'shape') else type(image).__name__
    raise ValueError(
      f'{image_name}: expected a uint8 [H, W] or [H, W, 1] grey or [H, W, 3] RGB image of at '
      f'least 8×8 pixels, got {got}'
    ) from None
  try:
    values = np.asarray(box, np.float64)
  except (TypeError, ValueError):
    values = None
  if values is None or values.shape != (4,):
    got = f'shape {values.shape}' if values is not None else repr(box)
    raise ValueError(f'{box_name}: expected a face box of 4 numbers (x0, y0, x1, y1), got {got}')
  text = '(' + ', '.join(f'{v:.10g}' for v in values) + ')'
  if not np.isfinite(values).all():
    raise ValueError(f'{box_name}: expected a face box with finite coordinates, got {text}')
  x0, y0, x1, y1 = values
  if not (x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE):
    raise ValueError(
      f'{box_name}: expected a face box (x0, y0, x1, y1) with x1 - x0 >= {MIN_BOX_SIDE:g} and '
      f'y1 - y0 >= {MIN_BOX_SIDE:g} pixel, got {text}'
    )
  h, w = image.shape[:2]
  if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
    raise ValueError(
      f'{box_name}: {text} lies outside {image_name} ({w}×{h} pixels); expected a box '
      f'overlapping the image, in image pixels'
    )
  return image, values


class CropPredictor(abc.ABC):
  """Landmarks of faces given their boxes, through a square face crop.

  Attributes:
    spec: the model's `model.json` dict (`lmjax.models.registry`).
    schema: the landmark schema of its K points.
    outputs: the point sets of `predict_crops` / `predict_faces`: ('points',), or
      ('points', 'coarse') when the backbone-only points come out of the same forward pass.
  """

  spec: dict[str, Any]
  schema: landmarks.Schema
  outputs: tuple[str, ...] = ('points',)

  @abc.abstractmethod
  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [S, S, C] and the image -> crop affine [2, 3] of one face box."""

  @abc.abstractmethod
  def predict_crops(self, crops: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    """Crop-pixel [N, K, 2] arrays named by `outputs` (and model extras) of crops [N, S, S, C]."""

  def predict_faces(
    self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]], **options: Any
  ) -> dict[str, np.ndarray]:
    """Image-pixel float32 [N, K, 2] arrays named by `outputs` of N faces (image i, box i).

    `options` go to `predict_crops` (BB-FCN: `refine=False` stops after the backbone).

    Raises:
      ValueError: `images[i]: ...` / `boxes[i]: ...` for the first bad face (`check_face`).
    """
    if len(images) != len(boxes):
      raise ValueError(
        f'images, boxes: expected one box per image, got {len(images)} images and '
        f'{len(boxes)} boxes'
      )
    if not len(images):
      return {k: np.zeros((0, self.schema.num_points, 2), np.float32) for k in self.outputs}
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
      check_face(image, box, image_name=f'images[{i}]', box_name=f'boxes[{i}]')
    crops, affines = zip(
      *(self.crop(im, b) for im, b in zip(images, boxes, strict=True)), strict=True
    )
    out = self.predict_crops(np.stack(crops), **options)
    affines = np.stack(affines)
    return {k: geometry.to_image_coords(out[k], affines).astype(np.float32) for k in self.outputs}

  def predict_batch(
    self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]], **options: Any
  ) -> np.ndarray:
    """Image-pixel landmarks float32 [N, K, 2] of N faces (image i, box i)."""
    return self.predict_faces(images, boxes, **options)['points']

  def predict(self, image: np.ndarray, box: Sequence[float], **options: Any) -> np.ndarray:
    """Image-pixel landmarks float32 [K, 2] of one face (`image: ...` / `box: ...` errors)."""
    check_face(image, box)
    return self.predict_batch([image], [box], **options)[0]
