"""The ONNX graph of an MCL network, built layer by layer from its variables.

    graph = mcl_graph(spec, folded_params, head=0)    # onnx.ModelProto
    input  'crops'  float32 [N, S, S, C]  (NHWC, pixels scaled as x / 128 - 1, like the model)
    output 'points' float32 [N, K, 2]     crop-pixel landmarks of shape head `head`

The network is five kinds of layer (3×3 SAME conv + ReLU, 2×2 ceil-mode max pool, global
average pool, dense), so it is written here directly with `onnx.helper` rather than traced
through a JAX-to-ONNX converter: the converters on PyPI pin older orbax releases than lmjax uses
and pull in several more packages (equinox, huggingface_hub) for these five operators. Every
node is named after the flax layer it comes from (`conv11`, `head`), which is how the int8
quantiser is told which layers stay in float (`lmjax.onnx_export.int8`).

Parity with the flax model (max difference ~1e-5 px) is checked by tests/test_onnx_export.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from flax import traverse_util
from onnx import TensorProto, helper, numpy_helper

from lmjax.models.mcl import TRUNK

OPSET = 17
INPUT, OUTPUT = 'crops', 'points'
# Metadata keys of an exported graph (onnx metadata_props).
FINGERPRINT_KEY = 'lmjax.fingerprint'
HEAD_KEY = 'lmjax.head'


def fingerprint(params: Mapping[str, Any]) -> str:
  """A content hash of BatchNorm-folded MCL params (every leaf, in path order).

  An exported graph records the fingerprint of the variables it was made from, so a predictor
  refuses a graph left over from other weights (e.g. after retraining into the same folder).
  """
  digest = hashlib.sha256()
  for path, value in sorted(traverse_util.flatten_dict(params, sep='/').items()):
    array = np.ascontiguousarray(np.asarray(value, np.float32))
    digest.update(f'{path}{array.shape}'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()[:16]


class _Builder:
  """Accumulates nodes and initialisers; each layer returns the name of its output."""

  def __init__(self):
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: list[onnx.TensorProto] = []

  def constant(self, name: str, array: np.ndarray) -> str:
    self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
    return name

  def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
    self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
    return name

  def conv_relu(self, x: str, name: str, layer: Mapping[str, Any]) -> str:
    """3×3 SAME conv (flax HWIO kernel -> ONNX OIHW) + ReLU."""
    kernel = np.asarray(layer['kernel'], np.float32)
    if kernel.shape[:2] != (3, 3):
      raise ValueError(f'{name}: expected a 3×3 kernel, got {kernel.shape}')
    w = self.constant(f'{name}.kernel', kernel.transpose(3, 2, 0, 1))
    b = self.constant(f'{name}.bias', np.asarray(layer['bias'], np.float32))
    y = self.node('Conv', [x, w, b], name, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return self.node('Relu', [y], f'{name}.relu')

  def pool(self, x: str, name: str) -> str:
    """2×2 stride-2 max pool; ceil mode pads odd sides at the end, as `max_pool_2x2` does."""
    return self.node('MaxPool', [x], name, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)

  def dense(self, x: str, name: str, layer: Mapping[str, Any]) -> str:
    """x [N, D] @ kernel [D, M] + bias."""
    w = self.constant(f'{name}.kernel', np.asarray(layer['kernel'], np.float32))
    b = self.constant(f'{name}.bias', np.asarray(layer['bias'], np.float32))
    return self.node('Gemm', [x, w, b], name)


def mcl_graph(spec: Mapping[str, Any], params: Mapping[str, Any], head: int = 0) -> onnx.ModelProto:
  """The ONNX graph of an MCL network with BatchNorm folded (`lmjax.models.mcl.fold_batch_norm`).

  Args:
    spec: the model's spec (`model.json`: size, grayscale, num_points, variant, num_heads).
    params: `fold_batch_norm(variables)['params']` (numpy or JAX arrays).
    head: the shape head whose points the graph outputs.

  Returns:
    A checked `onnx.ModelProto`, input 'crops' [N, S, S, C] -> output 'points' [N, K, 2], with
    the params' `fingerprint` and `head` in its metadata.
  """
  if any(name.startswith('bn') for name in params):
    raise ValueError('mcl_graph: params still hold BatchNorm layers; fold them first')
  if not 0 <= head < spec['num_heads']:
    raise ValueError(f'head {head}: the model has {spec["num_heads"]} heads')
  size, points = spec['size'], spec['num_points']
  channels = 1 if spec['grayscale'] else 3
  g = _Builder()
  x = g.node('Transpose', [INPUT], 'nchw', perm=[0, 3, 1, 2])
  pools = 0
  for layer in TRUNK:
    if layer == 'pool':
      pools += 1
      x = g.pool(x, f'pool{pools}')
    else:
      x = g.conv_relu(x, layer[0], params[layer[0]])
  if spec['variant'] == 'gap':
    x = g.conv_relu(x, 'conv43', params['conv43'])
    x = g.node('GlobalAveragePool', [x], 'gap')
    feature = g.node('Flatten', [x], 'feature', axis=1)
  elif spec['variant'] == 'pre_bm':
    x = g.pool(x, 'pool4')
    x = g.node('Transpose', [x], 'nhwc', perm=[0, 2, 3, 1])  # flatten in flax's H, W, C order
    x = g.node('Flatten', [x], 'flat', axis=1)
    feature = g.node('Relu', [g.dense(x, 'fc', params['fc'])], 'feature')
  else:
    raise ValueError(f'unknown MCL variant {spec["variant"]!r}')
  flat = g.dense(feature, 'head', params['heads'][str(head)])
  shape = g.constant('points.shape', np.array([-1, points, 2], np.int64))
  g.node('Reshape', [flat, shape], OUTPUT)
  graph = helper.make_graph(
    g.nodes,
    'mcl',
    [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ['N', size, size, channels])],
    [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ['N', points, 2])],
    g.initializers,
  )
  model = helper.make_model(
    graph, opset_imports=[helper.make_opsetid('', OPSET)], producer_name='lmjax'
  )
  helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint(params), HEAD_KEY: str(head)})
  onnx.checker.check_model(model)
  return model


def metadata(model: onnx.ModelProto) -> dict[str, str]:
  """The metadata_props of a graph as a dict."""
  return {p.key: p.value for p in model.metadata_props}
