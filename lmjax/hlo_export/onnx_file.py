"""`python -m lmjax.export --format=onnx --image_size=HxW`: a folder's whole predictor as .onnx.

    report = export_predictor('pretrained/bbfcn68', 'bbfcn68.onnx', canvas=(480, 640))
    report = export_predictor(folder, out, canvas, quantize=lambda net: int8.quantize(...))

The graph (`onnx_whole.predictor_graph`) takes images uint8 [N, H, W, 3] on an H × W canvas, boxes
float32 [N, 4] and sizes int32 [N, 2] and gives image-pixel points float32 [N, K, 2]. The
export's conventions, spec and parity go into the graph's metadata (`METADATA_KEY`, JSON), so
the .onnx alone is enough to score it (`runner.OnnxPredictor`); `<out>.json` is a copy.

Parity with the folder's predictor on XLA, on faces of a synthetic picture (several sizes,
some past the picture's edges, some pre-shrunk), before writing:
  * MCL: max difference ≤ `PARITY_TOLERANCE_PX` or a RuntimeError;
  * BB-FCN: its points are means of the 13 highest map cells (`heatmaps.top_mean`) and the
    branch patches sit at rounded coarse points, so a map difference of ~1e-6 (another
    runtime's float sums) swaps near-tied cells and moves a point by a fraction of a pixel:
    at least `BBFCN_MIN_EXACT` of the points within the tolerance, or a RuntimeError.
An int8 network (`quantize`) is compared with the float32 graph instead (recorded, no bound:
the accuracy of int8 is measured on real faces, `lmjax.export --int8`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from lmjax.hlo_export import onnx_whole
from lmjax.onnx_export.graph import fingerprint

METADATA_KEY = 'lmjax.export'
PARITY_TOLERANCE_PX = 0.01
BBFCN_MIN_EXACT = 0.95
CONVENTIONS = {
  'inputs': {
    'images': 'uint8 [N, H, W, 3] RGB, each picture in the top-left corner of the canvas',
    'boxes': 'float32 [N, 4] face boxes (x0, y0, x1, y1), image pixels, pixel centres on integers',
    'sizes': 'int32 [N, 2] (height, width) of each picture; the rest is padding, never read',
  },
  'outputs': {'points': 'float32 [N, K, 2] landmarks (x, y), image pixels'},
  'call': "onnxruntime.InferenceSession(path).run(None, {'images': .., 'boxes': .., 'sizes': ..})",
}


def folder_predictor(checkpoint: str, head: int = 0, backbone_only: bool = False):
  """The folder's predictor (`FacePredictor` on XLA or `BBFCNPredictor`), flags checked."""
  from lmjax.bbfcn.predictor import BBFCNPredictor
  from lmjax.mcl.predictor import FacePredictor
  from lmjax.models import registry

  family = registry.read_spec(checkpoint)['experiment']
  if family == 'bbfcn':
    if head:
      raise ValueError(f'--head={head}: {checkpoint} is a BB-FCN model (no shape heads)')
    predictor = BBFCNPredictor(checkpoint)
    if backbone_only and 'coarse' not in predictor.outputs:
      raise ValueError(f'--backbone_only: {checkpoint} has no branches')
    return predictor
  if family != 'mcl':
    raise ValueError(f'{checkpoint}: a {family} model predicts no landmarks; nothing to export')
  if backbone_only:
    raise ValueError(f'--backbone_only: {checkpoint} is an MCL model, not a BB-FCN one')
  return FacePredictor(checkpoint, head=head, backend='xla')


def network_graph(predictor, backbone_only: bool = False) -> onnx.ModelProto:
  """The float32 network graph of a folder predictor ('crops' -> crop-pixel 'points')."""
  if predictor.spec['experiment'] == 'mcl':
    return predictor.onnx_graph()
  from lmjax.hlo_export.onnx_bbfcn import bbfcn_graph

  return bbfcn_graph(predictor, refine=not backbone_only)


def run(model: onnx.ModelProto, images: np.ndarray, boxes: np.ndarray, sizes: np.ndarray):
  """Points [N, K, 2] of a whole-predictor graph (one onnxruntime session, this process's cores)."""
  from lmjax.onnx_export.session import make_session

  session = make_session(model)
  feed = {'images': images, 'boxes': np.asarray(boxes, np.float32), 'sizes': sizes}
  return session.run([onnx_whole.OUTPUT], feed)[0]


def parity(predictor, model, canvas, key: str, reference=None) -> dict[str, Any]:
  """Differences [px] of `model` from the predictor's `key` output (or from `reference`, a
  float32 graph) on synthetic faces in a picture 3/4 of the canvas."""
  from lmjax.hlo_export.stablehlo import synthetic_faces

  picture, boxes = synthetic_faces(tuple(max(v * 3 // 4, 8) for v in canvas))
  images, sizes = onnx_whole.canvas_images(np.repeat(picture[None], len(boxes), axis=0), canvas)
  got = run(model, images, boxes, sizes)
  if reference is None:
    want = predictor.predict_faces([picture] * len(boxes), boxes.astype(np.float64))[key]
  else:
    want = run(reference, images, boxes, sizes)
  diff = np.abs(got - want).max(axis=-1)  # [M, K]
  return {
    'synthetic_faces': len(boxes),
    'max_diff_px': float(diff.max()),
    'median_diff_px': float(np.median(diff)),
    'points_within_tolerance': float((diff <= PARITY_TOLERANCE_PX).mean()),
    'tolerance_px': PARITY_TOLERANCE_PX,
  }


def export_predictor(
  checkpoint: str,
  out: str,
  canvas: tuple[int, int],
  *,
  head: int = 0,
  backbone_only: bool = False,
  quantize: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None,
  extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Writes the whole predictor of `checkpoint` to `out` (+ `<out>.json`); returns the sidecar.

  Args:
    canvas: (H, W) of the image input.
    quantize: maps the float32 network graph to the one to embed (e.g. int8).
    extra: more sidecar entries (e.g. the int8 accuracy).

  Raises:
    ValueError: bad flags for the folder; ImportError: jax2onnx missing (one line).
    RuntimeError: the float32 graph fails the parity bound (module docstring).
  """
  predictor = folder_predictor(checkpoint, head, backbone_only)
  spec = predictor.spec
  key = 'coarse' if backbone_only else 'points'
  crop = onnx_whole.crop_graph(spec, canvas)
  network = network_graph(predictor, backbone_only)
  info: dict[str, Any] = {
    **json.loads(json.dumps(CONVENTIONS)),
    'format': 'onnx-int8' if quantize else 'onnx',
    'model': os.path.basename(os.path.normpath(checkpoint)),
    'checkpoint': checkpoint,
    'head': head,
    'backbone_only': backbone_only,
    'num_points': spec['num_points'],
    'image_size': list(canvas),
    'input_shapes': {
      'images': f'uint8 [N, {canvas[0]}, {canvas[1]}, 3]',
      'boxes': 'float32 [N, 4]',
      'sizes': 'int32 [N, 2]',
    },
    'fingerprint': fingerprint(predictor.variables['params']),
    'spec': spec,
    **(extra or {}),
  }
  metadata = lambda: {METADATA_KEY: json.dumps(info, sort_keys=True)}
  model = onnx_whole.predictor_graph(crop, network, spec['num_points'], metadata())
  check = parity(predictor, model, canvas, key)
  check['reference'] = f"{type(predictor).__name__}.predict_faces(...)['{key}'] (XLA)"
  bbfcn = spec['experiment'] == 'bbfcn'
  if check['max_diff_px'] > PARITY_TOLERANCE_PX and (
    not bbfcn or check['points_within_tolerance'] < BBFCN_MIN_EXACT
  ):
    raise RuntimeError(f'the ONNX predictor differs from the model: {check}')
  info['parity'] = check
  if quantize is not None:
    float_model = model
    model = onnx_whole.predictor_graph(crop, quantize(network), spec['num_points'], metadata())
    info['int8_vs_float32'] = parity(predictor, model, canvas, key, reference=float_model)
  onnx.helper.set_model_props(model, metadata())
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  onnx.save(model, out)
  info['bytes'] = os.path.getsize(out)
  with open(out + '.json', 'w') as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return info
