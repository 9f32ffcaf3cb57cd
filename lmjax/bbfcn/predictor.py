"""BB-FCN model folders: predict in the constrained setting (face boxes given).

    predictor = BBFCNPredictor('pretrained/bbfcn5')
    points = predictor.predict(image, box)                  # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)         # [N, K, 2]
    coarse = predictor.predict_batch(images, boxes, refine=False)   # backbone only
    out = predictor.predict_faces(images, boxes)            # 'points' and 'coarse', one pass
    predictor = BBFCNPredictor.from_variables(spec, variables)      # e.g. during training
    predictor = BBFCNPredictor('pretrained/bbfcn5', backend='xla')  # 'auto', 'onnx', 'int8'

`model.json` has `experiment: bbfcn` and a `variant`: `bbfcn` (backbone + branches),
`backbone_only` or `regression` (the §IV-C baseline); `lmjax.models.registry` builds it. The
face crop is the square of `crop_scale` × the longer box side at the branch resolution R
(`refine_size`), RGB scaled as x / 128 - 1; `lmjax.bbfcn.inference.constrained_predict` does
the rest in one jitted call, or (`backend`, `lmjax.bbfcn.fast_path`) in one onnxruntime graph:
the model folder's `int8.onnx` is the default CPU path when it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.bbfcn import fast_path, inference
from lmjax.core import confidence, image_ops, landmarks
from lmjax.data.batching import run_bucketed
from lmjax.models import registry
from lmjax.models.bbfcn import BBFCN, RegressionFCN
from lmjax.models.interface import CropPredictor, check_face
from lmjax.train import checkpoint


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


class BBFCNPredictor(CropPredictor):
  """Landmarks of faces given their boxes, with the BB-FCN constrained pipeline.

  `outputs` is ('points', 'coarse') for a model with branches (the backbone-only points come
  out of the same forward pass), else ('points',).
  """

  def __init__(self, directory: str, backend: str = 'auto'):
    """Loads the BB-FCN model folder `directory` (`model.json` + `variables/`).

    `backend`: 'auto', 'xla', 'onnx' or 'int8' (`lmjax.bbfcn.fast_path`); `self.backend` says
    which one runs.
    """
    _, variables, spec = checkpoint.load_model(directory, 'bbfcn')
    self._setup(spec, variables, backend, directory)
    self.calibration = confidence.read_calibration(directory, self.schema.num_points)

  @classmethod
  def from_variables(
    cls, spec: dict[str, Any], variables: dict[str, Any], backend: str = 'xla'
  ) -> BBFCNPredictor:
    """The predictor of a BB-FCN spec and its {params} (e.g. during training); 'xla' or 'onnx'."""
    spec = registry.validate(spec)
    if spec['experiment'] != 'bbfcn':
      raise ValueError(f"field 'experiment' is {spec['experiment']!r}; expected a bbfcn spec")
    predictor = cls.__new__(cls)
    predictor._setup(spec, variables, backend, directory=None)
    return predictor

  def _setup(
    self, spec: dict[str, Any], variables: dict[str, Any], backend: str, directory: str | None
  ) -> None:
    self.spec, self.variables = spec, variables
    self.model = registry.build(spec)
    self.schema = landmarks.get_schema(spec['num_points'])
    branches = spec['variant'] == 'bbfcn'
    self.outputs = ('points', 'coarse') if branches else ('points',)
    self._forward = {
      refine: jax.jit(predict_fn(self.model, spec, refine and branches)) for refine in (True, False)
    }
    self.backend = fast_path.resolve_backend(backend, directory, spec)
    self._network = None
    if self.backend != 'xla':
      self._network = fast_path.network(self.backend, spec, variables['params'], directory)

  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [R, R, 3] (x / 128 - 1) and the image -> crop affine [2, 3] of one box."""
    image, box = check_face(image, box)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    return image_ops.mcl_crop(image, box, self.spec['refine_size'], False, self.spec['crop_scale'])

  def predict_crops(self, crops: np.ndarray, refine: bool = True) -> dict[str, np.ndarray]:
    """`constrained_predict` outputs of crops [N, R, R, 3], every location in R pixels.

    'points' [N, K, 2] (refined; backbone only with `refine=False` or without branches),
    'coarse' [N, K, 2], their scores [N, K] and the response maps (see `constrained_predict`).
    With XLA the crops are padded to a bucket size (one compiled program per bucket).
    """
    if not len(crops):
      k = self.schema.num_points
      return {'points': np.zeros((0, k, 2), np.float32), 'coarse': np.zeros((0, k, 2), np.float32)}
    if self._network is not None:
      out = self._network(crops)
      if not refine:  # the backbone-only points of the same graph
        out = {**out, 'points': out['coarse'], 'score': out['coarse_score']}
      return out
    return run_bucketed(lambda x: self._forward[refine](self.variables, x), crops)

  def compiled(self) -> int:
    """XLA programs compiled so far (one per bucket size met, with and without the branches);
    0 when an ONNX backend runs the network."""
    return sum(forward._cache_size() for forward in self._forward.values())
