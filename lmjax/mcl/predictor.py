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

Backends (`backend=`) run the same network three ways:
  * 'xla':  the flax model, jitted (the only one on GPU/TPU, and the one training validates with);
  * 'onnx': the float32 ONNX graph of the folded variables (`lmjax.onnx_export.graph`), built in
            memory and run by onnxruntime: same points (~1e-5 px), 1.5× faster on one CPU core;
  * 'int8': the model folder's `int8.onnx` (`python -m lmjax.export --int8`), within +0.01 NME
            of float32 on the validation faces and about 2× faster than 'onnx' on one core.
'auto' (the default) takes 'xla' when JAX's default device is not a CPU, else 'int8' when the
folder has an `int8.onnx`, else 'onnx'. `predictor.backend` says which one runs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from lmjax.core import confidence, image_ops, landmarks
from lmjax.data.batching import run_bucketed
from lmjax.models import registry
from lmjax.models.interface import CropPredictor, check_face
from lmjax.models.mcl import fold_batch_norm
from lmjax.train import checkpoint

BACKENDS = ('auto', 'xla', 'onnx', 'int8')


class FacePredictor(CropPredictor):
  """Predicts the landmarks of faces given their boxes (the MCL face-crop protocol)."""

  outputs = ('points',)

  def __init__(self, directory: str, head: int = 0, fold_bn: bool = True, backend: str = 'auto'):
    """Loads the model folder `directory`.

    Args:
      directory: model folder (`model.json` + `variables/`).
      head: which shape-prediction head to use (multi-center models have several).
      fold_bn: fold BatchNorm into the convolutions (identical outputs up to rounding); the
        ONNX backends always run the folded network.
      backend: 'auto', 'xla', 'onnx' or 'int8' (module docstring).
    """
    _, variables, spec = checkpoint.load_model(directory, 'mcl')
    self._setup(spec, variables, head, fold_bn, backend, directory)
    self.calibration = confidence.read_calibration(directory, self.schema.num_points)

  @classmethod
  def from_variables(
    cls,
    spec: dict[str, Any],
    variables: dict[str, Any],
    head: int = 0,
    fold_bn: bool = True,
    backend: str = 'xla',
  ) -> FacePredictor:
    """The predictor of an MCL spec and its {params, batch_stats} (e.g. during training).

    `backend` 'xla' (the default) or 'onnx'; 'int8' needs a model folder's int8.onnx.
    """
    spec = registry.validate(spec)
    if spec['experiment'] != 'mcl':
      raise ValueError(f"field 'experiment' is {spec['experiment']!r}; expected an mcl spec")
    predictor = cls.__new__(cls)
    predictor._setup(spec, variables, head, fold_bn, backend, directory=None)
    return predictor

  def _setup(
    self, spec, variables, head: int, fold_bn: bool, backend: str, directory: str | None
  ) -> None:
    """`directory`: the model folder, None for variables in memory."""
    if not 0 <= head < spec['num_heads']:
      raise ValueError(f'head {head}: {directory or "the model"} has {spec["num_heads"]} heads')
    self.spec, self.head = spec, head
    self.model = registry.build(spec, batch_norm=not fold_bn)
    self.variables = jax.jit(fold_batch_norm)(variables) if fold_bn else variables
    self.schema = landmarks.get_schema(spec['num_points'])
    self._forward = _forward_fn(json.dumps(spec, sort_keys=True), head, not fold_bn)
    self.backend = _resolve_backend(backend, directory, fold_bn)
    self._network = None
    if self.backend != 'xla':
      self._network = _onnx_network(self, directory)

  def crop(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Network input [S, S, C] and the image -> crop affine [2, 3] for one face box."""
    image, box = check_face(image, box)
    if not self.spec['grayscale'] and image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    return image_ops.mcl_crop(
      image, box, self.spec['size'], self.spec['grayscale'], self.spec['crop_scale']
    )

  @property
  def crop_shape(self) -> tuple[int, int, int]:
    """(S, S, C) of one network input."""
    return self.spec['size'], self.spec['size'], 1 if self.spec['grayscale'] else 3

  def onnx_graph(self):
    """The float32 ONNX graph of this predictor's (BatchNorm-folded) network and head."""
    from lmjax.onnx_export import graph

    return graph.mcl_graph(self.spec, self._numpy_params(), self.head)

  def _numpy_params(self) -> dict[str, Any]:
    return jax.tree_util.tree_map(np.asarray, self.variables['params'])

  def predict_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
    """{'points': crop-pixel landmarks [N, K, 2]} of network inputs [N, S, S, C].

    With XLA the crops are padded to a bucket size (one compiled program per bucket).
    """
    if crops.ndim != 4 or crops.shape[1:] != self.crop_shape:
      expected = ', '.join(map(str, self.crop_shape))
      raise ValueError(f'crops: expected [N, {expected}], got {crops.shape}')
    if not len(crops):
      return {'points': np.zeros((0, self.schema.num_points, 2), np.float32)}
    if self._network is not None:
      return {'points': self._network(crops)}
    return {'points': run_bucketed(lambda x: self._forward(self.variables, x), crops)}


def _resolve_backend(backend: str, directory: str | None, fold_bn: bool) -> str:
  """The backend that `backend` names for a model (folder `directory`, or None in memory)."""
  if backend not in BACKENDS:
    raise ValueError(f'backend {backend!r}: expected one of {BACKENDS}')
  if backend == 'auto':
    if jax.default_backend() != 'cpu' or not fold_bn:
      return 'xla'
    from lmjax.onnx_export import folder

    return 'int8' if folder.has_int8(directory) else 'onnx'
  if backend != 'xla' and not fold_bn:
    raise ValueError(f'backend {backend!r} runs the BatchNorm-folded network: use fold_bn=True')
  if backend == 'int8' and directory is None:
    raise ValueError("backend 'int8' reads a model folder's int8.onnx; this model has no folder")
  return backend


def _onnx_network(predictor: FacePredictor, directory: str | None):
  """The onnxruntime network of `predictor.backend` ('onnx' or 'int8')."""

  from lmjax.onnx_export import folder, graph
  from lmjax.onnx_export.session import OnnxNetwork

  if predictor.backend == 'onnx':
    return OnnxNetwork(predictor.onnx_graph())
  int8 = folder.read_int8(directory, predictor._numpy_params())
  meta = graph.metadata(int8)
  if meta.get(graph.HEAD_KEY) != str(predictor.head):
    path = epath.Path(directory) / folder.INT8_FILE
    raise ValueError(f'{path} predicts head {meta.get(graph.HEAD_KEY)}, not head {predictor.head}')
  return OnnxNetwork(int8)


@functools.cache
def _forward_fn(spec_json: str, head: int, batch_norm: bool) -> Callable:
  """The jitted `(variables, crops) -> points of head` of one spec, shared by every predictor
  of that spec: training validates a new predictor every `eval_every` steps without
  recompiling."""
  model = registry.build(json.loads(spec_json), batch_norm=batch_norm)
  return jax.jit(lambda v, x: model.apply(v, x, train=False)[:, head])
