"""Evaluation command line: a model folder on a dataset split -> metrics JSON and plots.

    python -m lmjax.evaluate --checkpoint=pretrained/mcl68 --dataset=300w --split=common \
        --manual_dir=DIR --output=metrics.json [--predictions=pred.npz]

The dataset's declared kind picks the evaluator: a dataset whose features hold a list of faces
per image (afw_multiface, composite_multiface, synthetic scene5 / scene68) is scanned whole by
the BB-FCN pyramid scanner (`lmjax.eval.multiface`, with `--levels`, `--face_classifier`,
`--max_images`); every other dataset has one face box per example and goes to the face-crop
evaluator (`lmjax.eval.face_crop`: the model's own crop of each box, points mapped back to
image pixels; an exported `.stablehlo`, whole-predictor `.onnx` or `.tflite` file as checkpoint
crops inside its graph and is
scored on the same faces through `face_crop.predict_images`); benchmarks with their own
protocol (WFLW subsets, AFLW2000-3D yaw bins and head-pose error, AFLW-19 frontal) add its
numbers (`lmjax.eval.protocols`). When the predictor declares a `coarse` output (BB-FCN with
branches) the same faces are also scored by the backbone alone (`backbone_only` in the JSON)
and per-landmark tables of both are printed (paper Table V). `--viz` (BB-FCN only) writes
input / coarse / fine map pictures of the first `--viz_count` faces. This module only wires:
libraries and notebooks call `lmjax.eval.face_crop.evaluate_model` and
`lmjax.eval.multiface.evaluate_scanner`.

A data or model problem (missing or corrupt model folder, unknown dataset, missing manual
directory, unknown split, ...) prints one line `error: <file or flag>: <what was expected>` on
stderr and exits 1; `--verbose` (or LMJAX_VERBOSE=1) shows the traceback instead, and the INFO
logs (orbax, tfds) that are otherwise off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from lmjax.cli_errors import one_line_errors, quiet_logs
from lmjax.core import paths
from lmjax.eval import face_crop, pose_bins, protocols, reports

FACE_CROP, MULTI_FACE = 'face_crop', 'multi_face'
SCAN_THRESHOLD = 0.2


def dataset_kind(source) -> str:
  """`MULTI_FACE` when the dataset's features declare a list of faces per image, else
  `FACE_CROP` (one face box per example)."""
  return MULTI_FACE if 'faces' in source.dataset_info.features else FACE_CROP


def run(
  checkpoint: str,
  dataset: str,
  split: str,
  output: str,
  *,
  manual_dir: str | None = None,
  data_dir: str | None = None,
  predictions: str | None = None,
  batch_size: int = 128,
  dataset_config: Any = None,
  viz: str | None = None,
  viz_count: int = 16,
  levels: int = 20,
  face_classifier: str | None = None,
  max_images: int | None = None,
  backend: str = 'auto',
) -> dict[str, Any]:
  """Runs the evaluator of the dataset's kind, prints its table; returns what `output` holds."""
  from lmjax.data import datasets

  try:
    datasets.canonical_name(dataset)
  except KeyError as e:
    raise ValueError(f'--dataset: {e.args[0]}') from None
  from lmjax.inference import load_predictor

  # Before preparing the dataset: model errors first.
  predictor = load_predictor(checkpoint, backend=backend)
  spec = predictor.spec
  is_bbfcn = spec.get('experiment') == 'bbfcn'
  if viz and not (is_bbfcn and hasattr(predictor, 'crop')):
    raise ValueError(f'--viz draws BB-FCN response maps; {checkpoint} is not a BB-FCN model folder')
  if dataset_config is None and datasets.canonical_name(dataset) == 'synthetic':
    dataset_config = f'face{spec["num_points"]}'
  source = datasets.load_split(
    dataset, split, manual_dir=manual_dir, data_dir=data_dir, config=dataset_config
  )
  name = f'{dataset}/{split}'
  if dataset_kind(source) == MULTI_FACE:
    if not hasattr(predictor, 'crop'):
      raise ValueError(
        f'{dataset} has several faces per image: the scanner needs a BB-FCN model folder, and '
        f'{checkpoint} is an exported predictor (face boxes in, points out)'
      )
    if not is_bbfcn:
      raise ValueError(
        f'{dataset} has several faces per image: it needs a BB-FCN model, and '
        f'{checkpoint} is not one'
      )
    report = _evaluate_multiface(
      checkpoint, source, output, name, levels, face_classifier, max_images
    )
    print(reports.multiface_summary_table(report, spec['num_points']))
    return report

  results = face_crop.evaluate_model(
    predictor,
    source,
    output,
    batch_size=batch_size,
    predictions=predictions,
    info={
      'dataset': dataset,
      'split': split,
      'checkpoint': str(paths.absolute(checkpoint)),
      'backend': getattr(predictor, 'backend', 'xla'),
    },
    label=epath.Path(checkpoint).name,
    title=f'{dataset} {split}',
    progress=name,
    on_batch=_viz_writer(viz, viz_count) if viz else None,
  )
  if 'coarse' in predictor.outputs:
    rows = {'backbone_only': results['backbone_only'], 'bbfcn': results}
    for norm in ('ioc', 'ipd'):
      print(reports.per_landmark_table(rows, predictor.schema, norm))
  keys = ('num_faces', 'nme_ioc', 'nme_ipd', 'nme_box', 'fr_8_ioc', 'fr_10_ipd', 'auc_8_ioc')
  print(reports.format_table({name: results}, keys))
  print(pose_bins.bins_table(results['pose_bins']))
  if 'protocol' in results:
    print(protocols.protocol_table(results['protocol']))
  return results


def _evaluate_multiface(checkpoint, source, output, name, levels, face_classifier, max_images):
  """`multiface.evaluate_scanner` with the scanner (and face classifier) of the folders."""
  from lmjax.eval import multiface
  from lmjax.scan.scanner import Scanner

  scanner = Scanner.load(
    checkpoint, levels=levels, threshold=SCAN_THRESHOLD, detections=max(multiface.MS)
  )
  rescore = None
  if face_classifier:
    from lmjax.facecls.classifier import FaceClassifier
    from lmjax.scan import detect

    classifier = FaceClassifier.load(face_classifier)

    def rescore(out: Mapping[str, np.ndarray], image: np.ndarray):
      found = detect.faces_from_scan(dict(out), image, classifier, min_score=0.0)
      return np.array([f.box for f in found]).reshape(-1, 4), np.array([f.score for f in found])

  return multiface.evaluate_scanner(
    scanner, source, output, name=name, checkpoint=checkpoint, rescore=rescore,
    max_images=max_images,
  )  # fmt: skip


def _viz_writer(folder: str, count: int):
  """`on_batch` callback writing response-map pictures of the first `count` faces."""
  from lmjax.viz import heatmaps

  seen = [0]  # faces of the earlier batches

  def write(faces: face_crop.FaceCrops, outputs: Mapping[str, np.ndarray]) -> None:
    start, take = seen[0], max(0, min(len(faces), count - seen[0]))
    seen[0] += len(faces)
    if take:
      os.makedirs(folder, exist_ok=True)
    for i in range(take):
      face = {k: v[i] for k, v in outputs.items()}
      stem = f'{start + i:04d}_{str(faces.image_ids[i]).replace("/", "_")}.png'
      heatmaps.write_png(
        os.path.join(folder, stem), heatmaps.prediction_panel(faces.crops[i], face)
      )

  return write


def main(argv: Sequence[str]) -> None:
  """Runs `run` on the flags; data and model problems exit 1 with one `error:` line."""
  from absl import flags

  del argv
  f = flags.FLAGS
  quiet_logs(f)
  with one_line_errors(f.verbose):  # SpecError, DatasetFormatError, ModelFolderError, files
    run(
      f.checkpoint,
      f.dataset,
      f.split,
      f.output,
      manual_dir=f.manual_dir,
      data_dir=f.data_dir,
      predictions=f.predictions,
      batch_size=f.batch_size,
      dataset_config=f.dataset_config,
      viz=f.viz,
      viz_count=f.viz_count,
      levels=f.levels,
      face_classifier=f.face_classifier,
      max_images=f.max_images,
      backend=f.backend,
    )


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string(
    'checkpoint',
    None,
    'Model folder (model.json + variables/), or an exported .stablehlo / .onnx / .tflite file.',
  )
  flags.DEFINE_string(
    'dataset',
    None,
    'Dataset: 300w, mtfl, cofw, wflw, aflw2000_3d, aflw19, synthetic, afw_multiface, '
    'composite_multiface.',
  )
  flags.DEFINE_string('manual_dir', None, 'Folder with the official files of the dataset.')
  flags.DEFINE_string(
    'split',
    'test',
    'Split to evaluate; `validation` of 300-W, MTFL and COFW is the training faces lmjax.main '
    'holds out (the validation figures of stages.json and the model cards).',
  )
  flags.DEFINE_string('output', 'metrics.json', 'Metrics JSON path (CED PNGs go beside it).')
  flags.DEFINE_string('predictions', None, 'Optional .npz path for image_ids and pred.')
  flags.DEFINE_string('data_dir', None, 'Where prepared tfds datasets are cached.')
  flags.DEFINE_integer('batch_size', 128, 'Faces per forward pass.')
  flags.DEFINE_string(
    'dataset_config', None, 'tfds builder config (synthetic: face5/face68/scene5/scene68).'
  )
  flags.DEFINE_string('viz', None, 'BB-FCN only: folder for response-map PNGs of the first faces.')
  flags.DEFINE_integer('viz_count', 16, 'How many faces --viz draws.')
  flags.DEFINE_integer('levels', 20, 'Multi-face datasets: pyramid levels of the scanner.')
  flags.DEFINE_string('face_classifier', None, 'Multi-face: face/non-face CNN folder.')
  flags.DEFINE_integer('max_images', None, 'Multi-face: scan only the first N images.')
  flags.DEFINE_enum(
    'backend',
    'auto',
    ['auto', 'xla', 'onnx', 'int8'],
    'MCL network runtime (lmjax.mcl.predictor): auto = int8.onnx of the folder if any, else '
    'onnx on CPU, xla elsewhere.',
  )
  flags.DEFINE_bool(
    'verbose', False, 'Show INFO logs and the traceback of errors (also LMJAX_VERBOSE=1).'
  )
  flags.mark_flags_as_required(['checkpoint', 'dataset'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
