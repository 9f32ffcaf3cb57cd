"""The ONNX graphs of a BB-FCN network's two stages, built layer by layer from its variables.

    backbone = backbone_graph(spec, params)   # onnx.ModelProto
    input  'crops'     float32 [N, R, R, 3]     NHWC face crops at the branch resolution R
    output 'maps'      float32 [N, K, S, S]     coarse response maps (NCHW)

    branches = branches_graph(spec, params)
    input  'patches'   float32 [N, K, P, P, 4]  RGB patch + coarse map k (P = 24)
    output 'fine_maps' float32 [N, K, P, P]     fine response maps

`params` is `variables['params']` of a `lmjax.models.bbfcn.BBFCN` (numpy or JAX arrays). The
host work between the stages (Ave{M, 13}, patch cutting) is `lmjax.bbfcn.fast_path`.

The backbone graph starts with the R -> S downsample of `lmjax.bbfcn.inference.resize_to`
(`jax.image.resize`, bilinear with antialiasing): for R = 2 S that is a 4 × 4 stride-2
depthwise conv with the separable kernel [1, 3, 3, 1] / 8, renormalised where the kernel
hangs over the border (jax drops the outside taps and rescales the rest), i.e. one constant
[S, S] factor. The K branches are ONE grouped conv per layer (`group` = K), so each branch
only sees its own 4 (then 5) channels, unlike the block-diagonal dense convs of
`lmjax.models.bbfcn.StackedConv`. Nodes are named after their flax layers (`backbone.conv1`,
`branches.conv4`), which is how the int8 quantiser is told which layers stay in float.

Parity with the flax model is checked by tests/test_bbfcn_fast_path.py.
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


def _top_mean(g: _ConvBuilder, maps: str, name: str, width: int) -> tuple[str, str]:
  """Ave{M, 13} of [N, K, H, W] maps: ((x, y) [N, K, 2], mean of the 13 values [N, K]).

  ONNX TopK breaks ties by the lower index, as `jax.lax.top_k` does.
  """
  flat = g.node(
    'Reshape', [maps, g.constant(f'{name}.flat_shape', np.array([0, 0, -1]))], f'{name}.flat'
  )
  n = g.constant(f'{name}.n', np.array([TOP_N], np.int64))
  g.nodes.append(
    helper.make_node('TopK', [flat, n], [f'{name}.values', f'{name}.index'], name=f'{name}.topk')
  )
  w = g.constant(f'{name}.width', np.array(width, np.int64))
  columns = [
    g.node('Mod', [f'{name}.index', w], f'{name}.x'),
    g.node('Div', [f'{name}.index', w], f'{name}.y'),
  ]
  columns = [g.node('Cast', [c], f'{c}.float', to=TensorProto.FLOAT) for c in columns]
  columns = [
    g.node('Unsqueeze', [c, g.constant(f'{c}.axis', np.array([-1]))], f'{c}.1') for c in columns
  ]
  xy = g.node('Concat', columns, f'{name}.xy', axis=-1)  # [N, K, 13, 2]
  # sum × float32(1 / 13), as XLA computes jnp.mean: a mean that is a whole pixel comes out a
  # hair off it there, and the patch corner rounds (x + 0.5) R / S - 0.5 on exactly that value.
  inverse = g.constant(f'{name}.inverse_n', np.array(1 / TOP_N, np.float32))
  means = []
  for what, value in (('xy', xy), ('score', f'{name}.values')):
    total = g.node(
      'ReduceSum',
      [value, g.constant(f'{name}.{what}.axes', np.array([2]))],
      f'{name}.{what}.sum',
      keepdims=0,
    )
    means.append(g.node('Mul', [total, inverse], f'{name}.{what}.mean'))
  mean_xy, score = means
  return mean_xy, score


def _patches(g: _ConvBuilder, crops: str, maps: str, origins: str, k: int, size: int) -> str:
  """Branch inputs [N, K·4, P, P]: crop and map k (both [.., R, R]) at origins [N, K, 2].

  `crops` [N, 3, R, R], `maps` [N, K, R, R], `origins` int64 (x0, y0). Two GatherElements
  cut the P rows, then the P columns, of every [crop, map k] stack.
  """
  stacked = g.node(
    'Concat',
    [
      g.node(
        'Add',
        [
          g.node('Unsqueeze', [crops, g.constant('crops.axis', np.array([1]))], 'crops.1'),
          g.constant('patch.zeros', np.zeros((1, k, 3, 1, 1), np.float32)),
        ],
        'crops.k',
      ),
      g.node('Unsqueeze', [maps, g.constant('maps.axis', np.array([2]))], 'maps.1'),
    ],
    'stacked',
    axis=2,
  )  # [N, K, 4, R, R]
  x0, y0 = (
    g.node('Gather', [origins, g.constant(f'{c}.pick', np.array(i))], f'patch.{c}0', axis=2)
    for i, c in enumerate('xy')
  )  # [N, K]
  shape = g.constant('patch.origin_shape', np.array([0, 0, 1, 1, 1]))

  def index(origin: str, steps_shape: tuple[int, ...], full: tuple[int, ...], name: str) -> str:
    # origin + 0 … P - 1 along one axis, broadcast to the GatherElements index shape `full`
    shifted = g.node(
      'Add',
      [
        g.node('Reshape', [origin, shape], f'{name}.origin'),
        g.constant(f'{name}.steps', np.arange(PATCH, dtype=np.int64).reshape(steps_shape)),
      ],
      f'{name}.shifted',
    )
    return g.node('Expand', [shifted, g.constant(f'{name}.shape', np.array(full))], name)

  rows = index(y0, (1, 1, 1, PATCH, 1), (1, 1, 4, PATCH, size), 'patch.row_index')
  cut = g.node('GatherElements', [stacked, rows], 'patch.rows_cut', axis=3)  # [N, K, 4, P, R]
  cols = index(x0, (1, 1, 1, 1, PATCH), (1, 1, 4, PATCH, PATCH), 'patch.col_index')
  patches = g.node('GatherElements', [cut, cols], 'patch.cut', axis=4)
  flat = g.constant('patch.shape', np.array([0, k * 4, PATCH, PATCH]))
  return g.node('Reshape', [patches, flat], 'branch_input')


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
  coarse_small, coarse_score = _top_mean(g, maps, 'coarse_top', small)
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
  origins = g.node('Cast', [corner], 'origins.int', to=TensorProto.INT64)
  up = g.node(
    'Resize',
    [maps, '', g.constant('up.scales', np.array([1, 1, size / small, size / small], np.float32))],
    'maps.up',
    mode='linear',
    coordinate_transformation_mode='half_pixel',
  )
  fine_maps = _branches(g, _patches(g, crops, up, origins, k, size), params['branches'], k)
  fine, score = _top_mean(g, fine_maps, 'fine_top', PATCH)
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
