r"""Export command line: a model folder as an ONNX network (float32 or int8), or its whole
predictor as StableHLO, ONNX or TFLite.

    python -m lmjax.export --checkpoint=pretrained/mcl68 --format=onnx --out=mcl68.onnx
    python -m lmjax.export --checkpoint=pretrained/mcl68 --format=onnx --int8 \
        --manual_dir=../shared/data/300w --out=pretrained/mcl68/int8.onnx
    python -m lmjax.export --checkpoint=pretrained/mcl68 --format=stablehlo \
        [--image_size=480x640] --out=mcl68.stablehlo

`--format=onnx`: the graph is the MCL network with BatchNorm folded (`lmjax.onnx_export.graph`):
input 'crops' float32 [N, S, S, C] (the predictor's face crops, pixels as x / 128 - 1), output
'points' float32 [N, K, 2] in crop pixels; `lmjax.core.image_ops.mcl_crop` gives the crop and
its affine. The float export is checked against the flax model on random crops before it is
written.

`--int8` quantises it (`lmjax.onnx_export.int8`) with activation ranges from
`--calibration_faces` training faces of `--dataset` (default: the model's own, from
model.json) and scores float32 and int8 on the validation faces the training held out of the
same split (the faces of the model card's validation metrics): both NMEs, the worst pose bin and
the differences are printed, stored in the graph's metadata and written to `<out>.json`.
Written as `int8.onnx` into the model folder, the int8 graph becomes `FacePredictor`'s default
CPU network (`lmjax.mcl.predictor`).

`--format=stablehlo` exports the WHOLE predictor with `jax.export` (`lmjax.hlo_export`):
`points = f(images, boxes)`, images uint8 [N, H, W, 3] RGB, boxes float32 [N, 4] (x0, y0, x1,
y1) in image pixels, points float32 [N, K, 2] in image pixels; N symbolic, H and W fixed by
`--image_size=HxW` or symbolic (`any`, the default). The crop (`image_ops.mcl_crop`, OpenCV's
grey, area pre-shrink and bilinear warp redone in jax ops), the network and the mapping back run
in the graph. `exported.serialize()` goes to `--out`, the conventions, spec and parity with
`FacePredictor(backend='xla')` (synthetic faces, ≤ 0.01 px or an error) to `<out>.json`.
`jax.export.deserialize(data).call(images, boxes)` runs it with jax alone. `--padded` adds a
third input, sizes int32 [N, 2] (height, width of the picture in each image's top-left corner;
the rest is padding, never read), so that pictures of many sizes share a few compiled canvas
sizes. `python -m lmjax.evaluate --checkpoint=FILE.stablehlo` scores it like a folder; with
`--manual_dir` the export itself scores file and folder on the validation faces and writes
the difference to `<out>.json` and the folder's MODEL_CARD.md (`lmjax.hlo_export.validation`).
BB-FCN folders export to stablehlo too (RGB crops at the branch resolution, backbone and
branches; `--backbone_only`: the backbone-only points). `--scanner --canvas=HxW
[--levels=L | --min_face=PX]` exports a BB-FCN folder's whole-image scan of one fixed canvas
instead (image uint8 [H, W, 3] -> detections and faces; `lmjax.hlo_export.scan_export`).

`--format=onnx` without `--image_size` writes the network graph the predictors run on CPU: the
MCL network, or a BB-FCN's whole constrained pipeline, RGB crops [N, R, R, 3] in
(`lmjax.bbfcn.onnx_export`); `--int8` quantises it (MCL: every layer; BB-FCN: the backbone),
and written as `int8.onnx` into the model folder it becomes the predictor's default CPU path.
`--format=onnx --image_size=HxW` exports the whole predictor of either family as one ONNX
graph instead (`lmjax.hlo_export.onnx_file`: images on a fixed H × W canvas, boxes and the
pictures' sizes -> image points; N symbolic; needs jax2onnx, the `onnx` extra); `--int8`
quantises its network part. `python -m lmjax.evaluate --checkpoint=FILE.onnx` scores it.
`--format=tflite --image_size=HxW [--batch=B]` converts the same function with jax2tf and the
TFLite converter (`lmjax.hlo_export.tflite`; needs TensorFlow, the `tflite` extra).
Errors are one `error:` line (exit 1); `--verbose` shows the traceback.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

FORMATS = ('onnx', 'stablehlo', 'tflite')
PARITY_TOLERANCE_PX = 0.01
RESULT_KEY = 'lmjax.validation'


def export(
  checkpoint: str,
  out: str,
  *,
  head: int = 0,
  int8: bool = False,
  dataset: str = '',
  manual_dir: str | None = None,
  data_dir: str | None = None,
  calibration_faces: int = 512,
) -> dict[str, Any]:
  """Writes the ONNX graph of `checkpoint` to `out`; returns its report (see module docstring)."""
  import onnx

  from lmjax.mcl.predictor import FacePredictor
  from lmjax.models import registry
  from lmjax.onnx_export import graph
  from lmjax.onnx_export.session import OnnxNetwork

  spec = registry.read_spec(checkpoint)
  if spec['experiment'] == 'bbfcn':
    from lmjax.bbfcn.onnx_export import export_onnx

    kwargs = dict(manual_dir=manual_dir, data_dir=data_dir, calibration_faces=calibration_faces)
    return export_onnx(checkpoint, out, int8=int8, dataset=dataset, **kwargs)
  if spec['experiment'] != 'mcl':
    raise ValueError(f'{checkpoint}: a {spec["experiment"]} model; only MCL and BB-FCN export')
  predictor = FacePredictor(checkpoint, head=head, backend='xla')
  model = predictor.onnx_graph()
  crops = np.random.default_rng(0).uniform(-1, 1, (8, *predictor.crop_shape)).astype(np.float32)
  diff = float(np.abs(OnnxNetwork(model)(crops) - predictor.predict_crops(crops)['points']).max())
  if diff > PARITY_TOLERANCE_PX:
    raise RuntimeError(f'the ONNX graph differs from the model by {diff:.4f} px on random crops')
  report: dict[str, Any] = {
    'checkpoint': checkpoint,
    'head': head,
    'format': 'onnx-int8' if int8 else 'onnx',
    'float32_max_diff_px_random_crops': diff,
  }
  if int8:
    from lmjax.onnx_export import int8 as int8_lib

    calibration, validation, params_crop = _calibration_and_validation(
      spec, dataset or spec['dataset'], manual_dir, data_dir, calibration_faces
    )
    model = int8_lib.quantize(model, calibration)
    quantized = OnnxNetwork(model)
    report.update(_parity(predictor, quantized, validation, params_crop))
    report['calibration'] = {'dataset': dataset or spec['dataset'], 'faces': len(calibration)}
    onnx.helper.set_model_props(
      model, {**graph.metadata(model), RESULT_KEY: json.dumps(report, sort_keys=True)}
    )
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  onnx.save(model, out)
  with open(out + '.json', 'w') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  if int8 and os.path.abspath(os.path.dirname(out)) == os.path.abspath(checkpoint):
    _update_model_card(checkpoint, os.path.basename(out), report)
  return report


CARD_SECTION = '## int8 graph (default CPU network)'


def _update_model_card(folder: str, name: str, report: dict[str, Any]) -> None:
  """Writes (or replaces) the int8 parity section of the folder's MODEL_CARD.md, if any."""
  from lmjax.eval import reports

  f32, q = report['float32'], report['int8']
  section = (
    f'`{name}`: `python -m lmjax.export --int8` (onnxruntime QDQ int8, calibrated on '
    f'{report["calibration"]["faces"]} {report["calibration"]["dataset"]} training faces). '
    f'On the {report["validation_faces"]} validation faces: NME ioc {f32["nme_ioc"]:.3f} '
    f'(float32) -> {q["nme_ioc"]:.3f} (int8), ipd {f32["nme_ipd"]:.3f} -> {q["nme_ipd"]:.3f}; '
    f'worst pose bin {f32["worst_bin"]} {f32["worst_bin_ratio"]:.2f}× -> '
    f'{q["worst_bin_ratio"]:.2f}× the mean. `FacePredictor` runs it on CPU by default '
    f"(`backend='xla'` runs the float32 model).\n"
  )
  reports.set_card_section(folder, CARD_SECTION, section)


def _calibration_and_validation(spec, dataset, manual_dir, data_dir, count):
  """(calibration crops [M, S, S, C], validation cache, crop params) from the training split.

  The split is the one `lmjax.main` trains on: the dataset table's held-out validation faces
  (or its validation split) and the rest for calibration, cut like training validation crops.
  """
  from lmjax.core import augment
  from lmjax.data import caches, datasets
  from lmjax.data.datasets import table
  from lmjax.eval import face_crop

  entry = table.entry(dataset)
  config = entry.builder_configs.get(spec['num_points'])
  if config is None:
    raise ValueError(f'--dataset: {dataset} has no {spec["num_points"]}-point faces')
  kwargs = dict(manual_dir=manual_dir, data_dir=data_dir, config=config or None)
  size, grey = _crop_size_and_grey(spec)
  region = dict(region_size=2 * size, region_scale=2 * spec['crop_scale'], grayscale=grey)
  train = caches.cache_regions(datasets.load(dataset, 'train', **kwargs), **region)
  if entry.val_split:
    val = caches.cache_regions(datasets.load(dataset, entry.val_split, **kwargs), **region)
  else:
    train, val = caches.split_train_validation(train, entry.num_validation)
  params = augment.AugmentParams.none(size, spec['crop_scale'], grey)
  pick = np.linspace(0, len(train) - 1, min(count, len(train))).round().astype(int)
  sample = caches.subset(train, np.unique(pick))
  crops = np.concatenate([b.crops for b in face_crop.cache_batches(sample, params, 128)])
  return crops, val, params


def _crop_size_and_grey(spec) -> tuple[int, bool]:
  """The predictor's crop: MCL at its input size, BB-FCN RGB at the branch resolution."""
  if spec['experiment'] == 'bbfcn':
    return spec['refine_size'], False
  return spec['size'], spec['grayscale']


def export_onnx_predictor(
  checkpoint: str,
  out: str,
  image_size: str,
  *,
  head: int = 0,
  backbone_only: bool = False,
  int8: bool = False,
  dataset: str = '',
  manual_dir: str | None = None,
  data_dir: str | None = None,
  calibration_faces: int = 512,
) -> dict[str, Any]:
  """`--format=onnx --image_size=HxW`: the whole predictor as one ONNX graph
  (`lmjax.hlo_export.onnx_file`); `int8`: its network quantised, calibrated and scored
  like the network-only int8 graph (NMEs of float32 and int8 on the held-out faces)."""
  from lmjax.hlo_export import onnx_file
  from lmjax.hlo_export.stablehlo import parse_image_size
  from lmjax.models import registry

  canvas = parse_image_size(image_size)
  spec = registry.read_spec(checkpoint)
  if canvas is None:
    raise ValueError(
      '--format=onnx of the whole predictor needs a fixed canvas --image_size=HxW (e.g. '
      f'480x640; any picture up to that size); {checkpoint} is a {spec["experiment"]} folder'
    )
  quantize, extra = None, {}
  if int8:
    from lmjax.onnx_export import int8 as int8_lib
    from lmjax.onnx_export.session import OnnxNetwork

    predictor = onnx_file.folder_predictor(checkpoint, head, backbone_only)
    network = onnx_file.network_graph(predictor, backbone_only)
    calibration, validation, params_crop = _calibration_and_validation(
      spec, dataset or spec['dataset'], manual_dir, data_dir, calibration_faces
    )
    if spec['experiment'] == 'bbfcn':  # convolutions only, the first (on the image) in float
      convs = [n.name for n in network.graph.node if n.op_type == 'Conv']
      quantized = int8_lib.quantize(network, calibration, convs[:1], ('Conv', 'ConvTranspose'))
    else:
      quantized = int8_lib.quantize(network, calibration)
    if backbone_only:
      predictor = types.SimpleNamespace(
        outputs=('points',),
        schema=predictor.schema,
        predict_crops=lambda crops: {'points': predictor.predict_crops(crops, False)['points']},
      )
    extra = _parity(predictor, OnnxNetwork(quantized), validation, params_crop)
    extra['calibration'] = {'dataset': dataset or spec['dataset'], 'faces': len(calibration)}
    quantize = lambda _: quantized
  return onnx_file.export_predictor(
    checkpoint, out, canvas, head=head, backbone_only=backbone_only, quantize=quantize, extra=extra
  )


def _parity(predictor, quantized, validation, params) -> dict[str, Any]:
  """NME of float32 (XLA) and int8 on the validation faces, and their worst pose-bin ratios."""
  from lmjax.eval import face_crop

  int8_predictor = types.SimpleNamespace(
    outputs=('points',),
    schema=predictor.schema,
    predict_crops=lambda crops: {'points': quantized(crops)},
  )
  out: dict[str, Any] = {'validation_faces': len(validation)}
  for name, p in (('float32', predictor), ('int8', int8_predictor)):
    m = face_crop.evaluate_cache(p, validation, params, 128)
    out[name] = {
      'nme_ioc': m['nme_ioc'],
      'nme_ipd': m['nme_ipd'],
      'worst_bin': m['pose_bins']['worst_bin'],
      'worst_bin_ratio': m['pose_bins']['worst_bin_ratio'],
    }
  for key in ('nme_ioc', 'nme_ipd'):
    out[f'{key}_int8_minus_float32'] = out['int8'][key] - out['float32'][key]
  return out


def export_whole_predictor(
  checkpoint: str,
  out: str,
  fmt: str,
  head: int = 0,
  int8: bool = False,
  image_size: str = '',
  padded: bool = False,
  backbone_only: bool = False,
  validation: dict[str, Any] | None = None,
  batch: int = 1,
) -> dict[str, Any]:
  """`--format=stablehlo` (or tflite): the whole predictor, images + boxes -> image points;
  `validation` (`lmjax.hlo_export.validation.validation_parity`'s dataset keywords, from
  --manual_dir): also scored against the folder on the validation faces, card line written."""
  if int8:
    raise ValueError(f'--int8 quantises ONNX graphs; --format={fmt} exports float32 only')
  from lmjax.hlo_export import stablehlo

  size = stablehlo.parse_image_size(image_size)
  if fmt == 'tflite':
    from lmjax.hlo_export import tflite

    return tflite.export_tflite(checkpoint, out, size, batch, head, backbone_only)
  sidecar = stablehlo.export_stablehlo(
    checkpoint, out, head=head, image_size=size, padded=padded, backbone_only=backbone_only
  )
  if validation:  # {manual_dir, data_dir, dataset}: parity on the validation faces, card line
    from lmjax.hlo_export import validation as validation_lib

    sidecar = validation_lib.record(out, sidecar, checkpoint, **validation)
  return sidecar


def export_scanner(f) -> dict[str, Any]:
  """`--scanner`: the BB-FCN scan of a fixed `--canvas` (`lmjax.hlo_export.scan_export`)."""
  if f.format != 'stablehlo':
    raise ValueError(f'--scanner exports --format=stablehlo only, got --format={f.format}')
  if f.int8 or f.padded or f.head:
    raise ValueError('--scanner takes --canvas, --levels / --min_face and --backbone_only only')
  from lmjax.hlo_export import scan_export

  canvas = scan_export.parse_canvas(f.canvas)
  return scan_export.export_scanner(
    f.checkpoint, f.out, canvas, levels=f.levels, min_face=f.min_face,
    backbone_only=f.backbone_only,
  )  # fmt: skip


def main(argv: Sequence[str]) -> None:
  """Runs `export` on the flags; problems exit 1 with one `error:` line."""
  from absl import flags

  from lmjax.cli_errors import INPUT_ERRORS, one_line_errors, quiet_logs

  del argv
  f = flags.FLAGS
  quiet_logs(f)
  with one_line_errors(f.verbose, (*INPUT_ERRORS, RuntimeError, ImportError)):
    if f.scanner:
      report = export_scanner(f)
    elif f.format == 'onnx' and f.image_size not in ('', 'any'):
      report = export_onnx_predictor(
        f.checkpoint,
        f.out,
        f.image_size,
        head=f.head,
        backbone_only=f.backbone_only,
        int8=f.int8,
        dataset=f.dataset or '',
        manual_dir=f.manual_dir,
        data_dir=f.data_dir,
        calibration_faces=f.calibration_faces,
      )
      print(json.dumps({k: v for k, v in report.items() if k != 'spec'}, indent=2, sort_keys=True))
      print(f'wrote {f.out} and {f.out}.json')
      return
    if f.format != 'onnx':
      validation = None
      if f.manual_dir:
        validation = dict(manual_dir=f.manual_dir, data_dir=f.data_dir, dataset=f.dataset or '')
      report = export_whole_predictor(
        f.checkpoint, f.out, f.format, f.head, f.int8, f.image_size, f.padded, f.backbone_only,
        validation, f.batch,
      )  # fmt: skip
      print(json.dumps({k: v for k, v in report.items() if k != 'spec'}, indent=2, sort_keys=True))
      print(f'wrote {f.out} and {f.out}.json')
      return
    report = export(
      f.checkpoint,
      f.out,
      head=f.head,
      int8=f.int8,
      dataset=f.dataset or '',
      manual_dir=f.manual_dir,
      data_dir=f.data_dir,
      calibration_faces=f.calibration_faces,
    )
  print(json.dumps(report, indent=2, sort_keys=True))
  print(f'wrote {f.out} and {f.out}.json')


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string('checkpoint', None, 'Model folder (model.json + variables/).')
  flags.DEFINE_enum('format', 'onnx', list(FORMATS), 'Export format.')
  flags.DEFINE_string(
    'out', None, 'Output file (.onnx, .stablehlo); a report or sidecar goes to <out>.json.'
  )
  flags.DEFINE_integer('head', 0, 'Shape head of a multi-center model.')
  flags.DEFINE_string(
    'image_size',
    'any',
    'stablehlo: HxW of the input images (e.g. 480x640), or any (symbolic). onnx: the canvas '
    'of the whole predictor (any: the MCL network-only graph).',
  )
  flags.DEFINE_bool(
    'padded',
    False,
    'stablehlo: a third input, sizes int32 [N, 2] of the pictures in padded images.',
  )
  flags.DEFINE_bool('backbone_only', False, 'BB-FCN: the backbone-only points.')
  flags.DEFINE_bool('scanner', False, 'stablehlo, BB-FCN: the whole-image scan of --canvas.')
  flags.DEFINE_string('canvas', '', '--scanner: HxW of the canvas (e.g. 480x640).')
  flags.DEFINE_integer('levels', None, '--scanner: pyramid levels (default 12).')
  flags.DEFINE_float('min_face', None, '--scanner: smallest face side; sets the levels.')
  flags.DEFINE_integer('batch', 1, 'tflite: the fixed batch size of the exported function.')
  flags.DEFINE_bool('int8', False, 'Quantise to int8 (needs the calibration dataset).')
  flags.DEFINE_string('dataset', None, 'Calibration dataset (default: model.json "dataset").')
  flags.DEFINE_string(
    'manual_dir', None, 'Official files of the dataset (int8 calibration; stablehlo: parity).'
  )
  flags.DEFINE_string('data_dir', None, 'Where prepared tfds datasets are cached.')
  flags.DEFINE_integer('calibration_faces', 512, 'Training faces that set the int8 ranges.')
  flags.DEFINE_bool('verbose', False, 'Show INFO logs and the traceback of errors.')
  flags.mark_flags_as_required(['checkpoint', 'out'])


def run_main() -> None:
  """Console-script entry point (`lmjax-export`)."""
  from absl import app

  _define_flags()
  app.run(main)


if __name__ == '__main__':
  run_main()
