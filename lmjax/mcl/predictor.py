"""MCL landmark prediction from a model folder, or from variables in memory (training).

    predictor = FacePredictor('pretrained/mcl68')
    points = predictor.predict(image, box)              # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)     # [N, K, 2]
    predictor = FacePredictor.from_variables(spec, variables)   # e.g. during training

The model is built from its `model.json` spec by `lmjax.models.registry`; only the variables
are restored (`lmjax.train.checkpoint.load_model`), so no optimizer state or training code is
needed. Batches are padded to a few fixed sizes, so the forward pass compiles once per size
bucket. The predictor folds the BatchNorm layers into the convolutions (`fold_batch_norm`):
same outputs, about 10 % faster.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from lmjax.core import image_ops, landmarks
from lmjax.data.batching import run_bucketed
from lmjax.models import registry
from lmjax.models.interface import CropPredictor, check_face
from lmjax.models.mcl import fold_batch_norm
from lmjax.train import checkpoint


class FacePredictor(CropPredictor):
  """Predicts the landmarks of faces given their boxes (the MCL face-crop protocol)."""

  outputs = ('points',)

  def __init__(self, directory: str, head: int = 0, fold_bn: bool = True):
    """Loads the model folder `directory`.

    Args:
      directory: model folder (`model.json` + `variables/`).
      head: which shape-prediction head to use (multi-center models have several).
      fold_bn: fold BatchNorm into the convolutions (identical outputs up to rounding).
    """
    _, variables, spec = checkpoint.load_model(directory, 'mcl')
    self._setup(spec, variables, head, fold_bn, directory)

  @classmethod
  def from_variables(
    cls, spec: dict[str, Any], variables: dict[str, Any], head: int = 0, fold_bn: bool = True
  ) -> FacePredictor:
    """The predictor of an MCL spec and its {params, batch_stats} (e.g. during training)."""
    spec = registry.validate(spec)
    if spec['experiment'] != 'mcl':
      raise ValueError(f"field 'experiment' is {spec['experiment']!r}; expected an mcl spec")
    predictor = cls.__new__(cls)
    predictor._setup(spec, variables, head, fold_bn, 'the model')
    return predictor

  def _setup(self, spec, variables, head: int, fold_bn: bool, source: str) -> None:
    if not 0 <= head < spec['num_heads']:
      raise ValueError(f'head {head}: {source} has {spec["num_heads"]} heads')
    self.spec, self.head = spec, head
    self.model = registry.build(spec, batch_norm=not fold_bn)
    self.variables = jax.jit(fold_batch_norm)(variables) if fold_bn else variables
    self.schema = landmarks.get_schema(spec['num_points'])
    self._forward = _forward_fn(json.dumps(spec, sort_keys=True), head, not fold_bn)

  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [S, S, C] and the image -> crop affine [2, 3] for one face box."""
    image, box = check_face(image, box)
    if not self.spec['grayscale'] and image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    return image_ops.mcl_crop(
      image, box, self.spec['size'], self.spec['grayscale'], self.spec['crop_scale']
    )

  def predict_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
    """{'points': crop-pixel landmarks [N, K, 2]} of network inputs [N, S, S, C].

    The crops are padded to a bucket size (one compiled program per bucket).
    """
    if not len(crops):
      return {'points': np.zeros((0, self.schema.num_points, 2), np.float32)}
    return {'points': run_bucketed(lambda x: self._forward(self.variables, x), crops)}


@functools.cache
def _forward_fn(spec_json: str, head: int, batch_norm: bool) -> Callable:
  """The jitted `(variables, crops) -> points of head` of one spec, shared by every predictor
  of that spec: training validates a new predictor every `eval_every` steps without
  recompiling."""
  model = registry.build(json.loads(spec_json), batch_norm=batch_norm)
  return jax.jit(lambda v, x: model.apply(v, x, train=False)[:, head])
