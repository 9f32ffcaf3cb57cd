"""`python -m lmjax.export --format=onnx` for BB-FCN model folders (float32 or int8).

    report = export_onnx('pretrained/bbfcn5', 'pretrained/bbfcn5/int8.onnx', int8=True,
                         manual_dir='../shared/data/mtfl')

The graph is the whole constrained pipeline (`lmjax.onnx_export.bbfcn_graph`): input 'crops'
float32 [N, R, R, 3] (`BBFCNPredictor.crop`), outputs 'points', 'coarse', their scores, the
maps and the patch origins, in R pixels. The float graph is checked against the XLA predictor
on random crops before anything is written.

`int8=True` quantises the backbone's convs, deconvs and pools (`INT8_OP_TYPES`) with activation
ranges from `calibration_faces` training faces of `dataset` (those `lmjax.main` trains on, the
held-out validation faces excluded); the R -> S downsample (its input is the image itself) and
the branches stay float32. Both pipelines are scored on the held-out validation faces (the
faces of the model card's validation metrics, `lmjax.evaluate --split=validation`): the NMEs
and their differences go to the graph's metadata, `<out>.json` and, written into the model
folder, its MODEL_CARD.md. There the int8 graph becomes the default CPU path of
`BBFCNPredictor` (`lmjax.bbfcn.fast_path`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from lmjax.bbfcn import fast_path
from lmjax.bbfcn.predictor import BBFCNPredictor

INT8_OP_TYPES = ('Conv', 'MaxPool')
PARITY_TOLERANCE_PX = 0.01
RESULT_KEY = 'lmjax.validation'
CARD_SECTION = '## int8 graph (default CPU path)'
BATCH = 128


def float_nodes(model) -> list[str]:
  """Nodes the int8 graph keeps in float: the downsample and every branch layer."""
  return [n.name for n in model.graph.node if n.name.split('.')[0] in ('downsample', 'branches')]


def export_onnx(
  checkpoint: str,
  out: str,
  *,
  int8: bool = False,
  dataset: str = '',
  manual_dir: str | None = None,
  data_dir: str | None = None,
  calibration_faces: int = 512,
) -> dict[str, Any]:
  """Writes the (int8) ONNX pipeline of the BB-FCN folder `checkpoint` to `out`; its report."""
  import onnx

  from lmjax.onnx_export import graph as graph_lib
  from lmjax.onnx_export.bbfcn_graph import bbfcn_graph

  predictor = BBFCNPredictor(checkpoint, backend='xla')
  if predictor.spec['variant'] != 'bbfcn':
    raise ValueError(
      f"{checkpoint}: a BB-FCN {predictor.spec['variant']!r} model; only variant 'bbfcn' "
      f'(backbone + branches) exports to onnx (stablehlo exports every variant)'
    )
  params = predictor.variables['params']
  model = bbfcn_graph(predictor.spec, params)
  size = predictor.spec['refine_size']
  crops = np.random.default_rng(0).uniform(-1, 1, (8, size, size, 3)).astype(np.float32)
  want = predictor.predict_crops(crops)['points']
  diff = float(np.abs(fast_path.OnnxBBFCN(model)(crops)['points'] - want).max())
  if diff > PARITY_TOLERANCE_PX:
    raise RuntimeError(f'the ONNX graph differs from the model by {diff:.4f} px on random crops')
  report: dict[str, Any] = {
    'checkpoint': checkpoint,
    'format': 'onnx-int8' if int8 else 'onnx',
    'float32_max_diff_px_random_crops': diff,
  }
  if int8:
    from lmjax.onnx_export import int8 as int8_lib

    dataset = dataset or predictor.spec['dataset']
    calibration, validation = _faces(predictor, dataset, manual_dir, data_dir, calibration_faces)
    model = int8_lib.quantize(model, calibration, float_nodes(model), INT8_OP_TYPES)
    report.update(_parity(predictor, fast_path.OnnxBBFCN(model), validation))
    report['calibration'] = {'dataset': dataset, 'faces': len(calibration)}
    props = {**graph_lib.metadata(model), RESULT_KEY: json.dumps(report, sort_keys=True)}
    onnx.helper.set_model_props(model, props)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  onnx.save(model, out)
  with open(out + '.json', 'w') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  if int8 and os.path.abspath(os.path.dirname(out)) == os.path.abspath(checkpoint):
    _update_model_card(checkpoint, os.path.basename(out), report)
  return report


def _faces(predictor, dataset, manual_dir, data_dir, count):
  """(calibration crops [M, R, R, 3] of training faces, validation `FaceCrops` batches)."""
  from lmjax.data import datasets
  from lmjax.data.datasets import table
  from lmjax.eval import face_crop

  entry = table.entry(dataset)
  config = entry.builder_configs.get(predictor.spec['num_points'])
  if config is None:
    raise ValueError(f'--dataset: {dataset} has no {predictor.spec["num_points"]}-point faces')
  kwargs = dict(manual_dir=manual_dir, data_dir=data_dir, config=config or None)
  if entry.val_split:
    train = datasets.load(dataset, 'train', **kwargs)
    validation = datasets.load(dataset, entry.val_split, **kwargs)
  else:  # the faces `lmjax.main` trains on and the ones it holds out
    train, validation = datasets.held_out(dataset, **kwargs)
  pick = np.unique(np.linspace(0, len(train) - 1, min(count, len(train))).round().astype(int))
  sample = [train[i] for i in pick]
  calibration = np.concatenate(
    [b.crops for b in face_crop.source_batches(predictor, sample, BATCH)]
  )
  return calibration, list(face_crop.source_batches(predictor, validation, BATCH))


def _parity(predictor, quantized, validation) -> dict[str, Any]:
  """NME (ioc, ipd) of the XLA float32 and the int8 pipelines on the validation faces."""
  import types

  from lmjax.eval import face_crop

  int8_predictor = types.SimpleNamespace(
    outputs=predictor.outputs, schema=predictor.schema, predict_crops=quantized
  )
  out: dict[str, Any] = {'validation_faces': sum(len(b) for b in validation)}
  for name, p in (('float32', predictor), ('int8', int8_predictor)):
    m = face_crop.score(face_crop.predict(p, validation, BATCH), predictor.schema)
    out[name] = {
      'nme_ioc': m['nme_ioc'],
      'nme_ipd': m['nme_ipd'],
      'backbone_nme_ipd': m['backbone_only']['nme_ipd'],
    }
  for key in ('nme_ioc', 'nme_ipd'):
    out[f'{key}_int8_minus_float32'] = out['int8'][key] - out['float32'][key]
  return out


def _update_model_card(folder: str, name: str, report: dict[str, Any]) -> None:
  """Writes (or replaces) the int8 section of the folder's MODEL_CARD.md, if any."""
  from lmjax.eval import reports

  f32, q = report['float32'], report['int8']
  section = (
    f'`{name}`: `python -m lmjax.export --format=onnx --int8` (the whole pipeline as one '
    f'onnxruntime graph, backbone convs QDQ int8, branches float32; calibrated on '
    f'{report["calibration"]["faces"]} {report["calibration"]["dataset"]} training faces). '
    f'On the {report["validation_faces"]} validation faces: NME ipd {f32["nme_ipd"]:.3f} '
    f'(XLA float32) -> {q["nme_ipd"]:.3f} (int8), ioc {f32["nme_ioc"]:.3f} -> '
    f'{q["nme_ioc"]:.3f}. `BBFCNPredictor` runs it on CPU by default '
    f"(`backend='xla'` runs the float32 flax model).\n"
  )
  reports.set_card_section(folder, CARD_SECTION, section)
