"""Evaluation command line: a model folder on a dataset split -> metrics JSON and plots.

    python -m lmjax.evaluate --checkpoint=pretrained/mcl68 --dataset=300w --split=common \
        --manual_dir=DIR --output=metrics.json [--predictions=pred.npz]
    python -m lmjax.evaluate --checkpoint=pretrained/mcl68 --detector=pretrained/bbfcn5 \
        --dataset=300vw --split=test --manual_dir=DIR --output=metrics.json

The dataset's declared kind picks the evaluator: a dataset whose features hold a list of faces
per image (afw_multiface, composite_multiface, synthetic scene5 / scene68) is scanned whole by
the BB-FCN scanner (`lmjax.eval.multiface`, with `--levels`, `--face_classifier`,
`--max_images`; by default the cascade of `lmjax.scan.cascade` with the reach of `--levels`,
`--proposer` its ProposalNet folder; `--scan_mode=pyramid` the paper's pyramid scan); a
dataset of face ellipses (fddb;
`--split=test` or `fold_01` .. `fold_10`) gets the FDDB discrete ROC of `lmjax-scan`'s faces
(`lmjax.eval.face_detection`); every other dataset has one face box per example and goes to
the face-crop evaluator (`lmjax.eval.face_crop`: the model's own crop of each box, points
mapped back to image pixels; an exported `.stablehlo`, whole-predictor `.onnx` or `.tflite`
file as checkpoint crops inside its graph and is scored on the same faces through
`face_crop.predict_images`); benchmarks with their own
protocol (WFLW subsets, AFLW2000-3D yaw bins and head-pose error, AFLW-19 frontal) add its
numbers (`lmjax.eval.protocols`). A video dataset (300vw: one example per frame, grouped by
video) is scored by tracking: a `lmjax.track.VideoTracker` over the model folder and the
`--detector` folder's scanner runs through each video's frames in order, and
`lmjax.eval.tracking` reports per-frame NME (outer eye corners), FR / AUC@8 %, jitter and
missed frames per test category (`--max_videos` tracks only the first N). When the predictor
declares a `coarse` output (BB-FCN with branches) the same faces are also scored by the
backbone alone (`backbone_only` in the JSON) and per-landmark tables of both are printed
(paper Table V). `--viz` (BB-FCN only) writes input / coarse / fine map pictures of the first
`--viz_count` faces. This module only wires:
libraries and notebooks call `lmjax.eval.face_crop.evaluate_model`,
`lmjax.eval.multiface.evaluate_scanner` and `lmjax.eval.tracking.evaluate_tracker`.

A data or model problem (missing or corrupt model folder, unknown dataset, missing manual
directory, unknown split, ...) prints one line `error: <file or flag>: <what was expected>` on
stderr and exits 1; `--verbose` (or LMJAX_VERBOSE=1) shows the traceback instead, and the INFO
logs (orbax, tfds) that are otherwise off.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from lmjax.cli_errors import one_line_errors, quiet_logs
from lmjax.core import paths
from lmjax.eval import face_crop, pose_bins, protocols, reports
from lmjax.scan.modes import DEFAULT_MODE as DEFAULT_SCAN_MODE

FACE_CROP, MULTI_FACE, FACE_DETECTION = 'face_crop', 'multi_face', 'face_detection'
FACE_KEYS = ('num_faces', 'nme_ioc', 'nme_ipd', 'nme_box', 'fr_8_ioc', 'fr_10_ipd', 'auc_8_ioc')
VIDEO_DATASETS = ('the300vw',)  # scored by tracking each video (`lmjax.eval.tracking`)
SCAN_THRESHOLD = 0.2


def dataset_kind(source) -> str:
  """`FACE_DETECTION` when the dataset's faces are ellipses without landmarks (FDDB),
  `MULTI_FACE` when its features declare a list of landmarked faces per image, else
  `FACE_CROP` (one face box per example)."""
  features = source.dataset_info.features
  if 'faces' not in features:
    return FACE_CROP
  return FACE_DETECTION if 'ellipse' in features['faces'].feature else MULTI_FACE


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
  scale_step: float = 1.16,
  face_classifier: str | None = None,
  max_images: int | None = None,
  backend: str = 'auto',
  detector: str | None = None,
  max_videos: int | None = None,
  scan_mode: str = DEFAULT_SCAN_MODE,
  proposer: str | None = None,
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
  if datasets.canonical_name(dataset) in VIDEO_DATASETS:
    if viz or not hasattr(predictor, 'crop'):
      raise ValueError(
        f'{dataset} is scored by tracking its videos (lmjax.track): --checkpoint must be a model '
        f'folder, and --viz is not available there'
      )
    return _evaluate_video(
      checkpoint, detector, dataset, split, output, manual_dir, data_dir, dataset_config,
      predictions, max_videos, backend,
    )  # fmt: skip
  if dataset_config is None and datasets.canonical_name(dataset) == 'synthetic':
    dataset_config = f'face{spec["num_points"]}'
  source = datasets.load_split(
    dataset, split, manual_dir=manual_dir, data_dir=data_dir, config=dataset_config
  )
  name = f'{dataset}/{split}'
  kind = dataset_kind(source)
  if kind in (MULTI_FACE, FACE_DETECTION):
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
    if kind == FACE_DETECTION:
      from lmjax.eval import face_detection

      depth = (levels, scale_step, scan_mode, proposer)
      report = _evaluate_detection(checkpoint, source, output, name, depth,
                                   face_classifier, max_images)  # fmt: skip
      print(face_detection.summary_table(report))
      return report
    depth = (levels, scale_step, scan_mode, proposer)
    report = _evaluate_multiface(
      checkpoint, source, output, name, depth, face_classifier, max_images
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
  print(reports.format_table({name: results}, FACE_KEYS))
  print(pose_bins.bins_table(results['pose_bins']))
  if 'protocol' in results:
    print(protocols.protocol_table(results['protocol']))
  return results


def _evaluate_multiface(checkpoint, source, output, name, depth, face_classifier, max_images):
  """`multiface.evaluate_scanner` with the scanner (and face classifier) of the folders.

  `depth` is (levels, scale_step, scan mode, proposer folder): see `_load_scanner`."""
  from lmjax.eval import multiface

  scanner = _load_scanner(checkpoint, depth, face_classifier, detections=max(multiface.MS))
  rescore = None
  if face_classifier and depth[2] == 'pyramid':
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


def _load_scanner(checkpoint: str, depth: tuple, face_classifier: str | None, **kwargs):
  """The scanner of `depth` = (levels, scale_step, scan mode, proposer folder): the pyramid
  scan of L levels, or the cascade with the same reach (`CascadeParams.levels`), which re-scores
  its proposals with `face_classifier` itself (the pyramid's faces are re-scored afterwards)."""
  from lmjax.scan import modes

  levels, step, mode, proposer = depth
  if mode == 'cascade':
    return modes.load(
      checkpoint, 'cascade', levels=levels, scale_step=step, proposer=proposer,
      classifier=face_classifier or 'auto', **kwargs,
    )  # fmt: skip
  if proposer:
    raise ValueError('--proposer: a setting of --scan_mode=cascade')
  return modes.load(
    checkpoint, 'pyramid', levels=levels, scale_step=step, threshold=SCAN_THRESHOLD, **kwargs
  )


def _scan_faces(checkpoint: str, depth: tuple[int, float], face_classifier: str | None):
  """`lmjax-scan`'s face detection as a detector: image -> (boxes [D, 4], scores [D]), every face
  down to score 0 (landmark consensus, or the face/non-face CNN of `face_classifier`)."""
  from lmjax.scan import detect

  scanner = _load_scanner(checkpoint, depth, face_classifier)
  classifier = None
  if face_classifier and depth[2] == 'pyramid':
    from lmjax.facecls.classifier import FaceClassifier

    classifier = FaceClassifier.load(face_classifier)

  def detector(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = detect.faces_from_scan(scanner.scan(image), image, classifier, min_score=0.0)
    return np.array([f.box for f in found]).reshape(-1, 4), np.array([f.score for f in found])

  return scanner, detector


def _evaluate_detection(checkpoint, source, output, name, depth, face_classifier, max_images):
  """`face_detection.evaluate_detector` (FDDB ROC) with the scanner's faces."""
  from lmjax.eval import face_detection

  scanner, detector = _scan_faces(checkpoint, depth, face_classifier)
  info = {
    'checkpoint': str(paths.absolute(checkpoint)),
    'levels': scanner.params.levels,
    'threshold': scanner.params.threshold,
    'scan_mode': depth[2],
    'faces_scored_by': 'face classifier' if face_classifier else 'landmark consensus',
  }
  return face_detection.evaluate_detector(
    detector, source, output, name=name, info=info, max_images=max_images
  )


def _evaluate_video(
  checkpoint, detector, dataset, split, output, manual_dir, data_dir, dataset_config,
  predictions, max_videos, backend,
):  # fmt: skip
  """`tracking.evaluate_tracker` with a `VideoTracker` over the model folder's landmarker (the
  detector folder's scanner on key frames), one fresh tracker per video at its fps."""
  from lmjax.data import datasets
  from lmjax.eval import tracking
  from lmjax.inference import Landmarker
  from lmjax.track.tracker import TrackerConfig, VideoTracker

  landmarker = Landmarker.load(checkpoint, detector, backend=backend)
  if landmarker.scanner is None:
    raise ValueError(
      f'--detector: {dataset} is scored by tracking, which scans frames for faces; pass a '
      'BB-FCN model folder, e.g. --detector=pretrained/bbfcn5'
    )
  source = datasets.load_split(
    dataset, split, manual_dir=manual_dir, data_dir=data_dir, config=dataset_config
  )
  info = {
    'dataset': dataset,
    'split': split,
    'checkpoint': str(paths.absolute(checkpoint)),
    'detector': str(paths.absolute(detector or checkpoint)),
    'tracker': {k: str(v) for k, v in dataclasses.asdict(TrackerConfig()).items() if k != 'fps'},
  }
  results = tracking.evaluate_tracker(
    lambda fps: VideoTracker(landmarker, TrackerConfig(fps=fps)),
    source,
    output,
    info=info,
    label=epath.Path(checkpoint).name,
    title=f'{dataset} {split}',
    max_videos=max_videos,
    predictions=predictions,
    progress=f'{dataset}/{split}',
  )
  if 'num_faces' in results:
    print(f'found frames of {dataset}/{split}, scored as faces:')
    print(reports.format_table({f'{dataset}/{split}': results}, FACE_KEYS))
  print(tracking.tracking_table(results))
  return results


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
      scale_step=f.scale_step,
      face_classifier=f.face_classifier,
      max_images=f.max_images,
      backend=f.backend,
      detector=f.detector,
      max_videos=f.max_videos,
      scan_mode=f.scan_mode,
      proposer=f.proposer,
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
    'Dataset: 300w, mtfl, cofw, wflw, aflw2000_3d, aflw19, 300vw, synthetic, afw_multiface, '
    'composite_multiface, fddb.',
  )
  flags.DEFINE_string('manual_dir', None, 'Folder with the official files of the dataset.')
  flags.DEFINE_string(
    'split',
    'test',
    'Split to evaluate; `validation` of 300-W, MTFL and COFW is the training faces lmjax.main '
    'holds out (the validation figures of stages.json and the model cards); FDDB: `test` (all '
    'ten folds) or one fold `fold_01` .. `fold_10`.',
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
  flags.DEFINE_float('scale_step', 1.16, 'Multi-face datasets: smaller-side ratio of levels.')
  flags.DEFINE_string('face_classifier', None, 'Multi-face: face/non-face CNN folder.')
  flags.DEFINE_enum(
    'scan_mode', DEFAULT_SCAN_MODE, ['pyramid', 'cascade'],
    'Multi-face: pyramid (the paper scan) or cascade (proposer boxes, BB-FCN per face; with '
    'the reach of --levels).',
  )  # fmt: skip
  flags.DEFINE_string('proposer', None, 'Multi-face, cascade: ProposalNet folder.')
  flags.DEFINE_integer('max_images', None, 'Multi-face: scan only the first N images.')
  flags.DEFINE_string(
    'detector',
    None,
    'Video datasets (300vw): the BB-FCN folder whose scanner finds the faces on key frames '
    '(default: --checkpoint when it is a BB-FCN folder).',
  )
  flags.DEFINE_integer('max_videos', None, 'Video datasets: track only the first N videos.')
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
