"""The face-crop predictor interface shared by every landmark model folder.

`FacePredictor` (MCL) and `BBFCNPredictor` (BB-FCN) implement `crop` and `predict_crops`; the
image-level methods below are written once on top of them. Callers read `outputs` instead of
testing attributes:

    out = predictor.predict_faces(images, boxes)       # image pixels
    out['points']                                      # [N, K, 2] always
    out['coarse'] if 'coarse' in predictor.outputs     # [N, K, 2] backbone only, same pass
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.core import geometry, landmarks


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
    """
    if len(images) != len(boxes):
      raise ValueError(f'{len(images)} images but {len(boxes)} boxes')
    if not len(images):
      return {k: np.zeros((0, self.schema.num_points, 2), np.float32) for k in self.outputs}
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
    """Image-pixel landmarks float32 [K, 2] of one face."""
    return self.predict_batch([image], [box], **options)[0]
