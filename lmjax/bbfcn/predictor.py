"""BB-FCN model folders: build, restore and predict (the constrained setting).

    predictor = BBFCNPredictor('pretrained/bbfcn5')
    points = predictor.predict(image, box)                  # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)         # [N, K, 2]
    coarse = predictor.predict_batch(images, boxes, refine=False)   # backbone only

`model.json` has `experiment: bbfcn` and a `variant`: `bbfcn` (backbone + branches),
`backbone_only` or `regression` (the §IV-C baseline). The face crop is the square of
`crop_scale` × the longer box side at the branch resolution R (`refine_size`), RGB scaled as
x / 128 - 1; `lmjax.bbfcn.inference.constrained_predict` does the rest in one jitted call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.bbfcn import inference
from lmjax.core import geometry, image_ops, landmarks
from lmjax.data.batching import run_bucketed
from lmjax.models.bbfcn import BBFCN, RegressionFCN
from lmjax.train import checkpoint


def build_model(spec: dict[str, Any]) -> nn.Module:
  """The flax module of a BB-FCN `model.json` spec."""
  if spec.get('variant') == 'regression':
    return RegressionFCN(num_points=spec['num_points'])
  return BBFCN(num_points=spec['num_points'])


def init_variables(model: nn.Module, spec: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """Fresh variables of `model` (N(0, 0.01) kernels, zero biases)."""
  s, k = spec['size'], spec['num_points']
  image = jnp.zeros((1, s, s, 3), jnp.float32)
  if isinstance(model, RegressionFCN):
    return dict(model.init(jax.random.key(seed), image))
  patches = jnp.zeros((1, k, inference.PATCH, inference.PATCH, 4), jnp.float32)
  return dict(model.init(jax.random.key(seed), image, patches))


def predict_fn(model: nn.Module, spec: dict[str, Any], refine: bool):
  """`fn(variables, images [B, R, R, 3]) -> constrained_predict dict` (not jitted).

  `refine=False` skips the branches (the backbone-only ablation); the regression baseline
  reads each type's point off its best cell of the S-pixel input.
  """
  size, big = spec['size'], spec['refine_size']
  if isinstance(model, RegressionFCN):

    def regress(variables, images):
      points = model.apply(variables, inference.resize_to(images, size))  # S pixels
      points = inference.rescale_points(points, big / size)
      score = jnp.ones(points.shape[:2], points.dtype)
      return {'points': points, 'score': score, 'coarse': points, 'coarse_score': score}

    return regress

  def predict(variables, images):
    coarse_fn = lambda x: model.apply(variables, x, method=BBFCN.coarse)
    fine_fn = (lambda p: model.apply(variables, p, method=BBFCN.fine)) if refine else None
    return inference.constrained_predict(coarse_fn, fine_fn, images, size)

  return predict


def load_model(directory: str) -> tuple[nn.Module, dict, dict]:
  """(module, variables, spec) of a BB-FCN model folder."""
  spec = checkpoint.read_model_spec(directory)
  if spec.get('experiment') != 'bbfcn':
    raise ValueError(f'{directory}: model.json experiment is {spec.get("experiment")!r}, not bbfcn')
  model = build_model(spec)
  abstract = jax.eval_shape(lambda: init_variables(model, spec))
  variables = checkpoint.restore_variables(
    os.path.join(directory, checkpoint.VARIABLES_DIR), abstract
  )
  return model, variables, spec


class BBFCNPredictor:
  """Landmarks of faces given their boxes, with the BB-FCN constrained pipeline."""

  def __init__(self, directory: str):
    self.model, self.variables, self.spec = load_model(directory)
    self.schema = landmarks.get_schema(self.spec['num_points'])
    self.has_branches = self.spec['variant'] == 'bbfcn'
    self._forward = {
      refine: jax.jit(predict_fn(self.model, self.spec, refine and self.has_branches))
      for refine in (True, False)
    }

  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [R, R, 3] (x / 128 - 1) and the image -> crop affine [2, 3] of one box."""
    image, box = image_ops.check_image_and_box(image, box)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    crop, A = image_ops.mcl_crop(
      image, box, self.spec['refine_size'], False, self.spec['crop_scale']
    )
    return crop, A

  def predict_crops(self, crops: np.ndarray, refine: bool = True) -> dict[str, np.ndarray]:
    """`constrained_predict` outputs (R-pixel points, maps, ...) for crops [N, R, R, 3]."""
    if not len(crops):
      return {}
    return run_bucketed(lambda x: self._forward[refine](self.variables, x), crops)

  def predict_batch(
    self,
    images: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]],
    refine: bool = True,
    with_coarse: bool = False,
  ):
    """Image-pixel landmarks [N, K, 2] of N faces (image i, box i); `refine=False`: backbone.

    With `with_coarse=True` returns (points, coarse): the backbone-only locations come out of
    the same forward pass, so the ablation costs nothing extra.
    """
    if len(images) != len(boxes):
      raise ValueError(f'{len(images)} images but {len(boxes)} boxes')
    if not len(images):
      empty = np.zeros((0, self.schema.num_points, 2), np.float32)
      return (empty, empty) if with_coarse else empty
    crops, affines = zip(
      *(self.crop(im, b) for im, b in zip(images, boxes, strict=True)), strict=True
    )
    out = self.predict_crops(np.stack(crops), refine)
    to_image = lambda p: geometry.to_image_coords(p, np.stack(affines)).astype(np.float32)
    points = to_image(out['points'])
    return (points, to_image(out['coarse'])) if with_coarse else points

  def predict(self, image: np.ndarray, box: Sequence[float], refine: bool = True) -> np.ndarray:
    """Image-pixel landmarks [K, 2] of one face."""
    return self.predict_batch([image], [box], refine)[0]
