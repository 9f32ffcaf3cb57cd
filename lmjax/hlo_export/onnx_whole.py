"""A model folder's whole predictor as one ONNX graph: images + boxes -> image-pixel landmarks.

    crop = crop_graph(spec, canvas=(480, 640))
    model = predictor_graph(crop, network, num_points, metadata)  # any network graph

Inputs and output (N symbolic, the canvas H × W fixed):
  images: uint8 [N, H, W, 3] RGB, each picture in the top-left corner of its canvas;
  boxes:  float32 [N, 4] face boxes (x0, y0, x1, y1) in image pixels (pixel centres on integers);
  sizes:  int32 [N, 2] (height, width) of each picture; the rest of the canvas is padding and
          is never read;
  points: float32 [N, K, 2] landmarks (x, y) in image pixels.
It is the `--format=stablehlo --padded` function (`lmjax.hlo_export.stablehlo`) in three parts:
  * the crop (`hlo_export.crop`, `image_ops.mcl_crop` in jax ops) converted by jax2onnx in two
    parts (`crop_graph`): `crop_plan` in float64 (the geometry must be float64 to cut the
    host's crops) and `resample` in float32 (OpenCV sums in float32; float64 sums round a .5
    the other way in some crop pixels), because jax2onnx mis-types values where float32
    meets float64 inside one function;
  * the network as its own graph: MCL the hand-built `graph.mcl_graph` (BatchNorm folded; the
    graph `int8.quantize` quantises), BB-FCN `onnx_bbfcn.bbfcn_graph` (jax2onnx);
  * crop pixels -> image pixels through the crop affines, in float64 (`_to_image_nodes`).
H and W are fixed because jax2onnx cannot trace `arange` over a symbolic image side; the
`sizes` input lets pictures of any size up to the canvas share one graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmjax.hlo_export import onnx_convert

INPUTS = ('images', 'boxes', 'sizes')
OUTPUT = 'points'
CROPS, AFFINES = 'crops', 'affines'


PLAN = ('wy', 'wx', 'fast', 'area', 'inside', 'y0', 'x0', 'ay', 'ax')


def crop_graph(spec: dict, canvas: tuple[int, int]) -> onnx.ModelProto:
  """The predictor's crop: images uint8 [N, H, W, 3], boxes float64 [N, 4], sizes int32
  [N, 2] -> crops float32 [N, S, S, C] (x / 128 - 1), affines float64 [N, 2, 3].

  Two conversions joined: the plan (`crop.crop_plan`: geometry in float64, weights and
  sample grid cast to float32) and the resampling (`crop.resample`, float32 like OpenCV;
  float64 sums round a .5 the other way in some crop pixels).
  """

  from lmjax.hlo_export import crop

  if spec['experiment'] == 'mcl':
    size, grey = spec['size'], spec['grayscale']
  else:  # BB-FCN: RGB crops at the branch resolution
    size, grey = spec['refine_size'], False
  h, w = canvas
  p = crop.patch_size(size)

  def plan_fn(boxes, sizes):
    plan = crop.crop_plan(boxes, size, spec['crop_scale'], canvas, sizes)
    return (*(plan[k] for k in PLAN), plan['A'])

  def resample_fn(images, *plan):
    return crop.resample(crop.crop_pixels(images, grey), dict(zip(PLAN, plan, strict=True)))

  plan = onnx_convert.to_onnx(
    plan_fn,
    [(('N', 4), np.float64), (('N', 2), np.int32)],
    ['boxes', 'sizes'],
    [*PLAN, AFFINES],
    double=True,
    name='crop_plan',
  )
  f32, i32 = np.float32, np.int32
  plan_shapes = {
    'wy': (('N', p, h), f32), 'wx': (('N', p, w), f32), 'fast': (('N',), np.bool_),
    'area': (('N',), f32), 'inside': (('N', p, p), np.bool_), 'y0': (('N', size), i32),
    'x0': (('N', size), i32), 'ay': (('N', size), f32), 'ax': (('N', size), f32),
  }  # fmt: skip
  resample = onnx_convert.to_onnx(
    resample_fn,
    [(('N', h, w, 3), np.uint8), *(plan_shapes[k] for k in PLAN)],
    ['images', *PLAN],
    [CROPS],
    name='crop_resample',
  )
  return _join(
    [(plan, 'plan/'), (resample, 'resample/')],
    [
      helper.make_tensor_value_info('images', TensorProto.UINT8, ['N', h, w, 3]),
      helper.make_tensor_value_info('boxes', TensorProto.DOUBLE, ['N', 4]),
      helper.make_tensor_value_info('sizes', TensorProto.INT32, ['N', 2]),
    ],
    [
      helper.make_tensor_value_info(CROPS, TensorProto.FLOAT, ['N', size, size, 1 if grey else 3]),
      helper.make_tensor_value_info(AFFINES, TensorProto.DOUBLE, ['N', 2, 3]),
    ],
  )


def _join(stages, inputs, outputs, before=(), after=(), initializers=()) -> onnx.ModelProto:
  """One model of several graphs (each with its internal names prefixed) that pass values by
  name: graph inputs and outputs keep their names, so one stage's output feeds the next."""
  shared = {v.name for m, _ in stages for v in (*m.graph.input, *m.graph.output)}
  graphs = [_prefixed(model, prefix, shared) for model, prefix in stages]
  opsets: dict[str, int] = {}
  for model, _ in stages:
    for o in model.opset_import:
      opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
  graph = helper.make_graph(
    [*before, *(node for g in graphs for node in g.node), *after],
    'lmjax',
    inputs,
    outputs,
    [*(t for g in graphs for t in g.initializer), *initializers],
  )
  model = helper.make_model(
    graph,
    opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
    producer_name='lmjax',
  )
  model.ir_version = max(m.ir_version for m, _ in stages)
  return model


def _to_image_nodes(crop_points: str) -> list[onnx.NodeProto]:
  """Nodes: crop-pixel points float32 [N, K, 2] -> image pixels (p - t) / s, float64 inside."""
  make = helper.make_node
  return [
    make('Cast', [crop_points], ['map/points64'], to=TensorProto.DOUBLE),
    make('Gather', [AFFINES, 'map/two'], ['map/t'], axis=2),  # [N, 2]
    make('Unsqueeze', ['map/t', 'map/axis1'], ['map/t3']),  # [N, 1, 2]
    make('Gather', [AFFINES, 'map/zero'], ['map/row0'], axis=1),  # [N, 3]
    make('Gather', ['map/row0', 'map/zero'], ['map/s'], axis=1),  # [N]
    make('Unsqueeze', ['map/s', 'map/axes12'], ['map/s3']),  # [N, 1, 1]
    make('Sub', ['map/points64', 'map/t3'], ['map/shifted']),
    make('Div', ['map/shifted', 'map/s3'], ['map/image64']),
    make('Cast', ['map/image64'], [OUTPUT], to=TensorProto.FLOAT),
  ]


def _map_constants() -> list[onnx.TensorProto]:
  values = {'two': 2, 'zero': 0, 'axis1': [1], 'axes12': [1, 2]}
  return [numpy_helper.from_array(np.array(v, np.int64), f'map/{k}') for k, v in values.items()]


def _prefixed(model: onnx.ModelProto, prefix: str, keep: set[str]) -> onnx.GraphProto:
  """A copy of `model`'s graph with every name but `keep` prefixed."""
  graph = onnx.GraphProto()
  graph.CopyFrom(model.graph)
  rename = lambda name: name if (not name or name in keep) else prefix + name
  for node in graph.node:
    node.name = prefix + node.name
    node.input[:] = [rename(x) for x in node.input]
    node.output[:] = [rename(x) for x in node.output]
  for group in (graph.initializer, graph.input, graph.output, graph.value_info):
    for value in group:
      value.name = rename(value.name)
  return graph


def _renamed(model: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
  """A copy of `model` with the values `names` renamed (graph inputs/outputs and uses)."""
  out = onnx.ModelProto()
  out.CopyFrom(model)
  g = out.graph
  for node in g.node:
    node.input[:] = [names.get(x, x) for x in node.input]
    node.output[:] = [names.get(x, x) for x in node.output]
  for value in (*g.input, *g.output, *g.value_info, *g.initializer):
    value.name = names.get(value.name, value.name)
  return out


def predictor_graph(
  crop: onnx.ModelProto, network: onnx.ModelProto, num_points: int, metadata: dict[str, str]
) -> onnx.ModelProto:
  """`crop` (`crop_graph`) -> `network` ('crops' -> [N, K, 2] crop pixels) -> image pixels,
  as one checked graph with the module docstring's inputs and output and `metadata`.

  The network graph's opset is raised to the crop graph's: the operators of a network graph
  (Conv, MaxPool, Gemm, QuantizeLinear, ...) mean the same in both.
  """
  (net_in,), (net_out,) = network.graph.input, network.graph.output
  h, w = (d.dim_value for d in crop.graph.input[0].type.tensor_type.shape.dim[1:3])
  model = _join(
    [
      (_renamed(crop, {'boxes': 'boxes64'}), 'crop/'),
      (_renamed(network, {net_in.name: CROPS, net_out.name: 'crop_points'}), 'net/'),
    ],
    [
      helper.make_tensor_value_info('images', TensorProto.UINT8, ['N', h, w, 3]),
      helper.make_tensor_value_info('boxes', TensorProto.FLOAT, ['N', 4]),
      helper.make_tensor_value_info('sizes', TensorProto.INT32, ['N', 2]),
    ],
    [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ['N', num_points, 2])],
    before=[helper.make_node('Cast', ['boxes'], ['boxes64'], to=TensorProto.DOUBLE)],
    after=_to_image_nodes('crop_points'),
    initializers=_map_constants(),
  )
  helper.set_model_props(model, metadata)
  onnx.checker.check_model(model)
  return model


def canvas_images(images: np.ndarray, canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [M, h, w, 3] pictures in the top-left of [M, H, W, 3] canvases, and sizes [M, 2]."""
  m, h, w, _ = images.shape
  if h > canvas[0] or w > canvas[1]:
    raise ValueError(f'images of {h}x{w} pixels do not fit the {canvas[0]}x{canvas[1]} canvas')
  out = np.zeros((m, *canvas, 3), np.uint8)
  out[:, :h, :w] = images
  return out, np.tile(np.array([h, w], np.int32), (m, 1))
