"""The ONNX graph of a BB-FCN's whole constrained pipeline, built layer by layer from its variables.

    graph = bbfcn_graph(spec, params)            # onnx.ModelProto
    input  'crops'        float32 [N, R, R, 3]   NHWC face crops at the branch resolution R
    outputs 'points', 'coarse'  [N, K, 2]        refined / backbone-only landmarks, R pixels
            'score', 'coarse_score' [N, K]       mean of the 13 top responses
            'maps'        [N, K, S, S]           coarse response maps (channel first)
            'fine_maps'   [N, K, P, P]           branch outputs (P = 24)
            'origins'     [N, K, 2]              patch corners (x0, y0), float32 whole pixels

The same steps as `lmjax.bbfcn.inference.constrained_predict`, in one graph (no host round trip
between the stages): the R -> S downsample of `resize_to` (`jax.image.resize`, bilinear with
antialiasing; for R = 2 S a 4 × 4 stride-2 depthwise conv with the separable kernel
[1, 3, 3, 1] / 8, renormalised where the kernel hangs over the border, i.e. one constant [S, S]
factor), the backbone, Ave{M, 13} (`_top_mean`), the coarse maps' ×2 bilinear upsample (Resize,
half-pixel centres, edges clamped, as jax), the 24 × 24 patches (`_patches`), the K branches as
ONE grouped conv per layer (`group` = K: each branch sees only its own 4, then 5, channels,
unlike the block-diagonal dense convs of `lmjax.models.bbfcn.StackedConv`) and Ave{M_f, 13}.
`params` is `variables['params']` of a `lmjax.models.bbfcn.BBFCN` (numpy or JAX arrays). Nodes
are named after their flax layers (`backbone.conv1`, `branches.conv4`), which is how the int8
quantiser is told which layers stay in float (`lmjax.bbfcn.onnx_export`).

Parity with the XLA predictor (4e-6 px, identical patch corners) is checked by
tests/test_bbfcn_fast_path.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from lmjax.core.heatmaps import TOP_N
from lmjax.models.bbfcn import BRANCH, PATCH, TRUNK
from lmjax.onnx_export.graph import FINGERPRINT_KEY, INPUT, OPSET, _Builder, fingerprint

DOWNSAMPLE_TAPS = np.array([1, 3, 3, 1], np.float64) / 8  # bilinear ×1/2 with antialiasing


class _ConvBuilder(_Builder):
  """`_Builder` with the BB-FCN layers: k × k SAME convs (grouped), 2 × 2 deconvs."""

  def conv(self, x: str, name: str, kernel: np.ndarray, bias: np.ndarray, group: int = 1) -> str:
    """Stride-1 SAME conv with bias; `kernel` is ONNX OIHW [O, C / group, k, k]."""
    size = kernel.shape[-1]
    lo, hi = (size - 1) // 2, size // 2  # SAME padding, as flax
    w = self.constant(f'{name}.kernel', kernel.astype(np.float32))
    b = self.constant(f'{name}.bias', bias.astype(np.float32).reshape(-1))
    return self.node(
      'Conv', [x, w, b], name, kernel_shape=[size, size], pads=[lo, lo, hi, hi], group=group
    )

  def deconv(self, x: str, name: str, layer: Mapping[str, Any]) -> str:
    """flax `ConvTranspose` 2 × 2 stride 2 (kernel HWIO [2, 2, C, O]) as ONNX ConvTranspose."""
    kernel = np.asarray(layer['kernel'], np.float32)
    if kernel.shape[:2] != (2, 2):
      raise ValueError(f'{name}: expected a 2×2 kernel, got {kernel.shape}')
    w = self.constant(f'{name}.kernel', kernel[::-1, ::-1].transpose(2, 3, 0, 1))  # [C, O, 2, 2]
    b = self.constant(f'{name}.bias', np.asarray(layer['bias'], np.float32))
    return self.node('ConvTranspose', [x, w, b], name, kernel_shape=[2, 2], strides=[2, 2])

  def relu(self, x: str) -> str:
    return self.node('Relu', [x], f'{x}.relu')


def _hwio(layer: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """(flax HWIO kernel as ONNX OIHW, bias) of one conv layer."""
  return np.asarray(layer['kernel']).transpose(3, 2, 0, 1), np.asarray(layer['bias'])


def _downsample(g: _ConvBuilder, x: str, size: int, channels: int) -> str:
  """[N, C, 2S, 2S] -> [N, C, S, S], `jax.image.resize(..., 'bilinear')` (module docstring)."""
  taps = np.outer(DOWNSAMPLE_TAPS, DOWNSAMPLE_TAPS)
  kernel = np.broadcast_to(taps, (channels, 1, 4, 4))
  w = g.constant('downsample.kernel', kernel.astype(np.float32))
  y = g.node(
    'Conv',
    [x, w],
    'downsample',
    kernel_shape=[4, 4],
    strides=[2, 2],
    pads=[1, 1, 1, 1],
    group=channels,
  )
  # Weight of the taps inside the image, per output row (and column): 7/8 at both ends.
  inside = np.convolve(np.pad(np.ones(2 * size), 1), DOWNSAMPLE_TAPS[::-1], 'valid')[::2]
  scale = 1 / np.outer(inside, inside)  # [S, S]
  s = g.constant('downsample.scale', scale.astype(np.float32)[None, None])
  return g.node('Mul', [y, s], 'downsample.normalised')


def _backbone(g: _ConvBuilder, x: str, layers: Mapping[str, Any]) -> str:
  """[N, 3, S, S] -> [N, K, S, S] coarse maps (`lmjax.models.bbfcn.Backbone`)."""
  pools = 0
  for layer in TRUNK:
    if layer == 'pool':
      pools += 1
      x = g.node('MaxPool', [x], f'backbone.pool{pools}', kernel_shape=[2, 2], strides=[2, 2])
    else:
      x = g.relu(g.conv(x, f'backbone.{layer[0]}', *_hwio(layers[layer[0]])))
  x = g.relu(g.deconv(x, 'backbone.deconv1', layers['deconv1']))
  x = g.relu(g.conv(x, 'backbone.conv7', *_hwio(layers['conv7'])))
  x = g.relu(g.deconv(x, 'backbone.deconv2', layers['deconv2']))
  return g.conv(x, 'backbone.maps', *_hwio(layers['maps']))


def _branches(g: _ConvBuilder, x: str, layers: Mapping[str, Any], k: int) -> str:
  """[N, K·4, P, P] (branch k on channels 4k … 4k + 3) -> [N, K, P, P] fine maps."""
  for name, _ in (*BRANCH, ('map', 1)):
    kernel = np.asarray(layers[name]['kernel'])  # [K, s, s, C, O]
    _, size, _, c, o = kernel.shape
    kernel = kernel.transpose(0, 4, 3, 1, 2).reshape(k * o, c, size, size)  # group k: rows kO…
    x = g.conv(x, f'branches.{name}', kernel, np.asarray(layers[name]['bias']), group=k)
    if name != 'map':
      x = g.relu(x)
  return x


def _top_mean(g: _ConvBuilder, maps: str, name: str, height: int, width: int) -> tuple[str, str]:
  """Ave{M, 13} of [N, K, H, W] maps: ((x, y) [N, K, 2], mean of the 13 values [N, K]).

  ONNX TopK breaks ties by the lower index, as `jax.lax.top_k` does; the (x, y) of each flat
  index is read from a constant [H·W, 2] table. The means are sum × float32(1 / 13), as XLA
  computes jnp.mean: a mean that is a whole pixel comes out a hair off it there, and the patch
  corner rounds (x + 0.5) R / S - 0.5 on exactly that value.
  """
  shape = g.constant(f'{name}.flat_shape', np.array([0, 0, -1]))
  flat = g.node('Reshape', [maps, shape], f'{name}.flat')
  n = g.constant(f'{name}.n', np.array([TOP_N], np.int64))
  values, index = f'{name}.values', f'{name}.index'
  g.nodes.append(helper.make_node('TopK', [flat, n], [values, index], name=f'{name}.topk'))
  cells = np.arange(height * width)
  table = g.constant(
    f'{name}.xy_table', np.stack([cells % width, cells // width], -1).astype(np.float32)
  )
  xy = g.node('Gather', [table, index], f'{name}.xy', axis=0)  # [N, K, 13, 2]
  inverse = g.constant(f'{name}.inverse_n', np.array(1 / TOP_N, np.float32))
  axes = g.constant(f'{name}.axes', np.array([2]))
  means = []
  for what, value in (('xy', xy), ('score', values)):
    total = g.node('ReduceSum', [value, axes], f'{name}.{what}.sum', keepdims=0)
    means.append(g.node('Mul', [total, inverse], f'{name}.{what}.mean'))
  return means[0], means[1]


def _patches(g: _ConvBuilder, crops: str, maps: str, corner: str, k: int, size: int) -> str:
  """Branch inputs [N, K·4, P, P]: crop and map k (both [.., R, R]) at the patch corners.

  `crops` [N, 3, R, R], `maps` [N, K, R, R], `corner` float32 [N, K, 2] (x0, y0), whole
  pixels. Each patch is one GatherElements of flat offsets per face: y0 R + x0 plus a constant
  [C, P, P] offset table (channel c·R², row i·R, column j), so nothing of size R² is copied K
  times.
  """
  strides = g.constant('patch.strides', np.array([1, size], np.float32))
  start = g.node('Mul', [corner, strides], 'patch.x0_y0r')  # (x0, y0 R)
  axes = g.constant('patch.sum_axes', np.array([-1]))
  start = g.node('ReduceSum', [start, axes], 'patch.start_float', keepdims=0)
  start = g.node('Cast', [start], 'patch.start', to=TensorProto.INT64)  # [N, K]: y0 R + x0
  shape = g.constant('patch.start_shape', np.array([0, 0, 1, 1, 1]))
  start = g.node('Reshape', [start, shape], 'patch.start.5d')
  rows, cols = np.arange(PATCH)[:, None] * size, np.arange(PATCH)[None, :]
  flat = g.constant('patch.flat_shape', np.array([0, -1]))
  parts = []
  for name, source, channels, first in (
    ('rgb', crops, 3, 0),
    ('map', maps, 1, np.arange(k).reshape(1, k, 1, 1, 1) * size * size),
  ):  # flat offset of channel c: c·R² (rgb), k·R² (the map of patch k)
    table = np.arange(channels).reshape(1, 1, channels, 1, 1) * size * size + rows + cols
    first = g.constant(f'patch.{name}.first', np.asarray(first, np.int64).reshape(1, -1, 1, 1, 1))
    index = g.node('Add', [start, first], f'patch.{name}.start')  # [N, K, 1, 1, 1]
    offsets = g.constant(f'patch.{name}.offsets', table.astype(np.int64))  # [1, 1, C, P, P]
    index = g.node('Add', [index, offsets], f'patch.{name}.index')
    index = g.node('Reshape', [index, flat], f'patch.{name}.flat_index')  # [N, K·C·P·P]
    values = g.node('Reshape', [source, flat], f'patch.{name}.source')  # [N, C·R²]
    cut = g.node('GatherElements', [values, index], f'patch.{name}.cut', axis=1)
    five_d = g.constant(f'patch.{name}.shape', np.array([0, k, -1, PATCH, PATCH]))
    parts.append(g.node('Reshape', [cut, five_d], f'patch.{name}'))  # [N, K, C, P, P]
  patches = g.node('Concat', parts, 'patch.stacked', axis=2)  # [N, K, 4, P, P]
  shape = g.constant('patch.shape', np.array([0, k * 4, PATCH, PATCH]))
  return g.node('Reshape', [patches, shape], 'branch_input')


OUTPUTS = ('points', 'score', 'coarse', 'coarse_score', 'maps', 'fine_maps', 'origins')


def bbfcn_graph(spec: Mapping[str, Any], params: Mapping[str, Any]) -> onnx.ModelProto:
  """The ONNX graph of a BB-FCN's whole constrained pipeline (module docstring).

  Args:
    spec: the model's spec (`model.json`: size S, refine_size R = 2 S, num_points K, variant
      'bbfcn').
    params: the BBFCN's `variables['params']` (numpy or JAX arrays).

  Returns:
    A checked graph, input 'crops' float32 [N, R, R, 3] -> the `OUTPUTS`, as
    `lmjax.bbfcn.inference.constrained_predict` returns them (R pixels; 'maps' channel first
    [N, K, S, S], 'origins' float32), with the params' `fingerprint` in its metadata.
  """
  small, size, k = spec['size'], spec['refine_size'], spec['num_points']
  if spec.get('variant') != 'bbfcn':
    raise ValueError(
      f"bbfcn_graph: expected variant 'bbfcn' (backbone + branches), got {spec.get('variant')!r}"
    )
  if size != 2 * small:
    raise ValueError(f'bbfcn_graph: expected refine_size = 2 × size, got {size} and {small}')
  g = _ConvBuilder()
  crops = g.node('Transpose', [INPUT], 'crops.nchw', perm=[0, 3, 1, 2])  # [N, 3, R, R]
  maps = _backbone(g, _downsample(g, crops, small, 3), params['backbone'])  # [N, K, S, S]
  coarse_small, coarse_score = _top_mean(g, maps, 'coarse_top', small, small)
  half, factor = (
    g.constant('half', np.array(0.5, np.float32)),
    g.constant('factor', np.array(size / small, np.float32)),
  )
  # (x + 0.5) R / S - 0.5: S pixels -> R pixels
  coarse = g.node(
    'Sub',
    [
      g.node('Mul', [g.node('Add', [coarse_small, half], 'coarse.shift'), factor], 'coarse.scaled'),
      half,
    ],
    'coarse.r',
  )
  corner = g.node(
    'Sub',
    [
      g.node('Round', [coarse], 'coarse.round'),
      g.constant('half_patch', np.array(PATCH // 2, np.float32)),
    ],
    'corner',
  )
  corner = g.node(
    'Clip',
    [
      corner,
      g.constant('lo', np.array(0, np.float32)),
      g.constant('hi', np.array(size - PATCH, np.float32)),
    ],
    'corner.clip',
  )
  up = g.node(
    'Resize',
    [maps, '', g.constant('up.scales', np.array([1, 1, size / small, size / small], np.float32))],
    'maps.up',
    mode='linear',
    coordinate_transformation_mode='half_pixel',
  )
  fine_maps = _branches(g, _patches(g, crops, up, corner, k, size), params['branches'], k)
  fine, score = _top_mean(g, fine_maps, 'fine_top', PATCH, PATCH)
  points = g.node('Add', [fine, corner], 'points.sum')
  values = dict(
    zip(OUTPUTS, (points, score, coarse, coarse_score, maps, fine_maps, corner), strict=True)
  )
  for name, value in values.items():
    g.node('Identity', [value], name)
  shapes = {
    'points': ['N', k, 2],
    'score': ['N', k],
    'coarse': ['N', k, 2],
    'coarse_score': ['N', k],
    'maps': ['N', k, small, small],
    'fine_maps': ['N', k, PATCH, PATCH],
    'origins': ['N', k, 2],
  }
  graph = helper.make_graph(
    g.nodes,
    'bbfcn',
    [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ['N', size, size, 3])],
    [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in OUTPUTS],
    g.initializers,
  )
  model = helper.make_model(
    graph, opset_imports=[helper.make_opsetid('', OPSET)], producer_name='lmjax'
  )
  helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint(params)})
  onnx.checker.check_model(model)
  return model
