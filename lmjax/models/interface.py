"""The face-crop predictor interface shared by every landmark model folder.

`FacePredictor` (MCL) and `BBFCNPredictor` (BB-FCN) implement `crop` and `predict_crops`; the
image-level methods below are written once on top of them. Callers read `outputs` instead of
testing attributes:

    out = predictor.predict_faces(images, boxes)       # image pixels
    out['points']                                      # [N, K, 2] always
    out['coarse'] if 'coarse' in predictor.outputs     # [N, K, 2] backbone only, same pass
    predictor.predict_faces(images, boxes, pose=True)['pose']  # [N, 3] yaw, pitch, roll (deg)
    predictor.predict_faces(images, boxes, confidence=True)['confidence']  # [N, K] in [0, 1]

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

from lmjax.core import confidence as confidence_lib
from lmjax.core import geometry, head_pose, image_ops, landmarks

MIN_BOX_SIDE = geometry.MIN_BOX_SIDE  # pixels: a narrower box has no face in it


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
    calibration: the model folder's `confidence.json` (`lmjax.core.confidence`), or None.
  """

  spec: dict[str, Any]
  schema: landmarks.Schema
  outputs: tuple[str, ...] = ('points',)
  calibration: dict[str, Any] | None = None

  @abc.abstractmethod
  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [S, S, C] and the image -> crop affine [2, 3] of one face box."""

  @abc.abstractmethod
  def predict_crops(self, crops: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    """Crop-pixel [N, K, 2] arrays named by `outputs` (and model extras) of crops [N, S, S, C]."""

  def confidence_signal(
    self, crops: np.ndarray, outputs: dict[str, np.ndarray], **options: Any
  ) -> np.ndarray:
    """The raw reliability [N, K] of the points `predict_crops(crops)` gave (`outputs`),
    higher is more reliable (`lmjax.core.confidence` calibrates it): the agreement with the
    mirror image, -log(d + 0.001), d the distance in crop sides between each point and the
    mirrored prediction of its partner point on the mirrored crop (a second forward pass).
    """
    size = crops.shape[2]
    mirrored = self.predict_crops(np.ascontiguousarray(crops[:, :, ::-1]), **options)['points']
    back = np.asarray(mirrored, np.float64)[:, list(self.schema.flip_perm)]
    back[..., 0] = size - 1 - back[..., 0]  # pixel centres on integers: x -> S - 1 - x
    distance = np.linalg.norm(np.asarray(outputs['points']) - back, axis=-1) / size
    return (-np.log(distance + 1e-3)).astype(np.float32)

  def predict_faces(
    self,
    images: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]],
    *,
    pose: bool = False,
    confidence: bool = False,
    **options: Any,
  ) -> dict[str, np.ndarray]:
    """Image-pixel float32 [N, K, 2] arrays named by `outputs` of N faces (image i, box i).

    With `pose`, also `pose` float32 [N, 3]: yaw, pitch and roll in degrees of the predicted
    points (`lmjax.core.head_pose`; 68- and 5-point models). With `confidence`, also
    `confidence` float32 [N, K]: the calibrated probability that each point is within 10 % of
    the normalising distance of the truth (`lmjax.core.confidence`; needs the model folder's
    `confidence.json`; it costs a second, mirrored forward pass). `options` go to
    `predict_crops` (BB-FCN: `refine=False` stops after the backbone).

    Raises:
      ValueError: `images[i]: ...` / `boxes[i]: ...` for the first bad face (`check_face`),
        or `confidence` without a calibration.
    """
    if confidence and self.calibration is None:
      raise ValueError(
        'confidence: this model has no calibration (confidence.json in its folder); make one '
        'with python -m lmjax.calibrate --checkpoint=<folder> --dataset=<its validation set>'
      )
    if len(images) != len(boxes):
      raise ValueError(
        f'images, boxes: expected one box per image, got {len(images)} images and '
        f'{len(boxes)} boxes'
      )
    if pose:
      head_pose.mean_face(self.schema)  # a schema without a 3-D mean face: fail before work
    if not len(images):
      k = self.schema.num_points
      out = {name: np.zeros((0, k, 2), np.float32) for name in self.outputs}
      if pose:
        out['pose'] = np.zeros((0, 3), np.float32)
      if confidence:
        out['confidence'] = np.zeros((0, k), np.float32)
      return out
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
      check_face(image, box, image_name=f'images[{i}]', box_name=f'boxes[{i}]')
    crops, affines = zip(
      *(self.crop(im, b) for im, b in zip(images, boxes, strict=True)), strict=True
    )
    crops = np.stack(crops)
    out = self.predict_crops(crops, **options)
    affines = np.stack(affines)
    faces = {k: geometry.to_image_coords(out[k], affines).astype(np.float32) for k in self.outputs}
    if pose:
      faces['pose'] = head_pose.head_pose(faces['points'], self.schema)
    if confidence:
      signal = self.confidence_signal(crops, out, **options)
      faces['confidence'] = confidence_lib.probability(signal, self.calibration)
    return faces

  def predict_batch(
    self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]], **options: Any
  ) -> np.ndarray:
    """Image-pixel landmarks float32 [N, K, 2] of N faces (image i, box i)."""
    return self.predict_faces(images, boxes, **options)['points']

  def predict(self, image: np.ndarray, box: Sequence[float], **options: Any) -> np.ndarray:
    """Image-pixel landmarks float32 [K, 2] of one face (`image: ...` / `box: ...` errors)."""
    check_face(image, box)
    return self.predict_batch([image], [box], **options)[0]
