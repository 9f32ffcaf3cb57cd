"""The BB-FCN constrained pipeline on onnxruntime: the fast CPU path of `BBFCNPredictor`.

    network = OnnxBBFCN(graph)           # `lmjax.onnx_export.bbfcn_graph.bbfcn_graph`, or int8
    out = network(crops)                 # crops float32 [N, R, R, 3] -> constrained_predict dict

Backends of `BBFCNPredictor(directory, backend=...)` (`predictor.backend` says which one runs):

  * 'xla':  the jitted flax pipeline (`lmjax.bbfcn.inference.constrained_predict`);
  * 'onnx': the float32 ONNX graph of the whole pipeline, built in memory: same points
            (4e-6 px), 1.7× faster than 'xla' on one CPU core (CPU time of `predict`);
  * 'int8': the model folder's `int8.onnx` (`python -m lmjax.export --format=onnx --int8`):
            the backbone's convs and pools in int8, the rest float32; another 1.7× faster,
            pretrained/bbfcn5 +0.008 NME ipd on its 500 MTFL validation faces;
  * 'auto': 'int8' on CPU when the folder has an `int8.onnx`, else 'xla' (models without the
            file, e.g. during training, keep the XLA path).

Only the backbone + branches variant has a graph; the others run on XLA. With `refine=False`
the ONNX backends still run the branches (one graph) and return the backbone's points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import onnx

from lmjax.onnx_export import folder

BACKENDS = ('auto', 'xla', 'onnx', 'int8')


class OnnxBBFCN:
  """One onnxruntime CPU session over a BB-FCN pipeline graph (threads: this process's cores)."""

  def __init__(self, graph: onnx.ModelProto | bytes, threads: int = 0):
    import onnxruntime

    from lmjax.onnx_export.session import process_cores

    if isinstance(graph, onnx.ModelProto):
      graph = graph.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or process_cores()
    options.inter_op_num_threads = 1
    self.session = onnxruntime.InferenceSession(graph, options, providers=['CPUExecutionProvider'])
    self.names = [o.name for o in self.session.get_outputs()]
    self.crop_shape = tuple(self.session.get_inputs()[0].shape[1:])  # (R, R, 3)

  def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
    """`constrained_predict`'s dict of crops float32 [N, R, R, 3] (every location R pixels).

    'points' [N, K, 2], 'score' [N, K], 'coarse' [N, K, 2], 'coarse_score' [N, K], 'maps'
    [N, S, S, K], 'fine_maps' [N, K, P, P], 'origins' int32 [N, K, 2].
    """
    if np.ndim(crops) != 4 or tuple(np.shape(crops)[1:]) != self.crop_shape:
      expected = ', '.join(map(str, self.crop_shape))
      raise ValueError(f'crops: expected [N, {expected}] float32 face crops, got {np.shape(crops)}')
    crops = np.ascontiguousarray(crops, np.float32)
    out = dict(zip(self.names, self.session.run(None, {'crops': crops}), strict=True))
    out['maps'] = out['maps'].transpose(0, 2, 3, 1)
    out['origins'] = out['origins'].astype(np.int32)
    return out


def resolve_backend(backend: str, directory: str | None, spec: Mapping[str, Any]) -> str:
  """The backend that `backend` names for a model (folder `directory`, or None in memory)."""
  if backend not in BACKENDS:
    raise ValueError(f'backend {backend!r}: expected one of {BACKENDS}')
  has_graph = spec['variant'] == 'bbfcn'
  if backend == 'auto':
    return (
      'int8'
      if has_graph and folder.has_int8(directory) and jax.default_backend() == 'cpu'
      else 'xla'
    )
  if backend != 'xla' and not has_graph:
    raise ValueError(
      f"backend {backend!r}: only variant 'bbfcn' (backbone + branches) has an ONNX graph; "
      f'this model is {spec["variant"]!r}, use backend xla'
    )
  if backend == 'int8' and directory is None:
    raise ValueError("backend 'int8' reads a model folder's int8.onnx; this model has no folder")
  return backend


def network(
  backend: str, spec: Mapping[str, Any], params: Mapping[str, Any], directory: str | None
) -> OnnxBBFCN:
  """The onnxruntime pipeline of `backend` ('onnx' or 'int8') for a model's params."""
  from lmjax.onnx_export.bbfcn_graph import bbfcn_graph

  params = jax.tree_util.tree_map(np.asarray, params)
  if backend == 'onnx':
    return OnnxBBFCN(bbfcn_graph(spec, params))
  int8 = folder.read_int8(directory, params)
  return OnnxBBFCN(int8)
