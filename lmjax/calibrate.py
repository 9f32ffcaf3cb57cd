"""`python -m lmjax.calibrate`: fits the per-point confidence of a model folder on faces.

    python -m lmjax.calibrate --checkpoint=pretrained/mcl68 --dataset=300w \\
        --manual_dir=../shared/data/300w

The default split, `validation`, is the faces `lmjax.main` validates on: for datasets without
a validation split (300-W, MTFL, COFW) the dataset table's held-out training faces.

Runs the model over the split's faces and takes, per point, its raw signal
(`CropPredictor.confidence_signal`) and whether it lies within 10 % of the normalising
distance of the truth (inter-ocular for 68 points; the eye centres for 5). The logistic mapping
(`lmjax.core.confidence`) is fitted on the even-numbered faces and judged on the odd ones: AUC
of ranking the points with an error above 10 % by low confidence, and the mean confidence
against the fraction correct per confidence decile. Then it is fitted on every face and
written with these numbers to `<checkpoint>/confidence.json`, which `predict_faces(...,
confidence=True)` reads. The last line printed is the JSON.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.cli_errors import one_line_errors, quiet_logs
from lmjax.core import confidence, geometry
from lmjax.eval import metrics


def measure(predictor, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
  """(signal [N, K], normalised error [N, K], visible [N, K], normaliser) over face batches."""
  schema = predictor.schema
  kind = 'ioc' if 'ioc' in schema.normalisers else next(iter(schema.normalisers))
  signals, errors, visible = [], [], []
  for faces in batches:
    out = predictor.predict_crops(faces.crops)
    signals.append(predictor.confidence_signal(faces.crops, out))
    points = geometry.apply_affine(out['points'].astype(np.float64), faces.crop_to_image)
    error, _ = metrics.normalised_errors(points, faces.landmarks, kind, schema, None, None)
    errors.append(np.asarray(error))
    visible.append(faces.visible)
  return np.concatenate(signals), np.concatenate(errors), np.concatenate(visible), kind


def calibrate(signal, error, visible, threshold: float = confidence.THRESHOLD) -> dict[str, Any]:
  """The calibration and its held-out quality (fit on even faces, judged on odd faces)."""
  correct = error <= threshold
  even = np.zeros(len(signal), bool)
  even[::2] = True
  held_out = visible & ~even[:, None]
  slope, intercept = confidence.fit(signal, correct, visible & even[:, None])
  probability = confidence.probability(signal, {'slope': slope, 'intercept': intercept})
  p, ok = probability[held_out], correct[held_out]
  deciles = np.quantile(p, np.linspace(0, 1, 11))
  reliability = []
  for lo, hi in itertools.pairwise(deciles):
    inside = (p >= lo) & (p <= hi)
    reliability.append([round(float(p[inside].mean()), 4), round(float(ok[inside].mean()), 4)])
  slope, intercept = confidence.fit(signal, correct, visible)
  return {
    'slope': slope,
    'intercept': intercept,
    'threshold': threshold,
    'faces': len(signal),
    'points_wrong': round(float(1 - correct[visible].mean()), 4),
    'held_out_auc_error': round(confidence.auc(-p, ~ok), 4),
    'held_out_brier': round(float(np.mean((p - ok) ** 2)), 4),
    'held_out_reliability': reliability,
  }


def run(
  checkpoint: str,
  dataset: str,
  split: str = 'validation',
  *,
  manual_dir: str | None = None,
  data_dir: str | None = None,
  batch_size: int = 128,
  dataset_config: Any = None,
  backend: str = 'auto',
  write: bool = True,
) -> dict[str, Any]:
  """Measures and fits; writes `<checkpoint>/confidence.json` (unless not `write`)."""
  from lmjax.data import datasets
  from lmjax.eval import face_crop, reports
  from lmjax.inference import load_predictor

  predictor = load_predictor(checkpoint, backend=backend)
  if datasets.canonical_name(dataset) == 'synthetic' and dataset_config is None:
    dataset_config = f'face{predictor.schema.num_points}'
  kwargs = dict(manual_dir=manual_dir, data_dir=data_dir, config=dataset_config)
  source = datasets.load_split(dataset, split, **kwargs)
  if datasets.schema_of(source).num_points != predictor.schema.num_points:
    raise ValueError(
      f'--dataset: {dataset} has {datasets.schema_of(source).num_points} points, the model '
      f'{predictor.schema.num_points}'
    )
  batches = face_crop.source_batches(predictor, source, batch_size, progress='faces')
  signal, error, visible, kind = measure(predictor, batches)
  result = {
    'signal': confidence.SIGNAL,
    'backend': getattr(predictor, 'backend', 'xla'),
    'normaliser': kind,
    'dataset': f'{dataset}/{split}',
    **calibrate(signal, error, visible),
  }
  if write:
    result['file'] = confidence.write_calibration(checkpoint, result)
    reports.set_card_section(checkpoint, CARD_SECTION, _card_text(result))
  return result


CARD_SECTION = '## Per-point confidence'


def _card_text(result: dict[str, Any]) -> str:
  return (
    f'`confidence.json`: `python -m lmjax.calibrate` on {result["faces"]} '
    f'{result["dataset"]} faces ({result["signal"]}, {result["backend"]} backend). Fitted on '
    f'half of them and judged on the other half: low confidence finds the '
    f'{100 * result["points_wrong"]:.1f} % of points beyond {100 * result["threshold"]:.0f} % '
    f'({result["normaliser"]}) with AUC {result["held_out_auc_error"]:.3f}, Brier '
    f'{result["held_out_brier"]:.3f}. `predict_faces(..., confidence=True)` reads it.'
  )


def main(argv: Sequence[str]) -> None:
  import json

  from absl import flags

  del argv
  f = flags.FLAGS
  quiet_logs(f)
  with one_line_errors(f.verbose):
    result = run(
      f.checkpoint,
      f.dataset,
      f.split,
      manual_dir=f.manual_dir,
      data_dir=f.data_dir,
      batch_size=f.batch_size,
      dataset_config=f.dataset_config,
      backend=f.backend,
    )
  print(
    f'{result["dataset"]}: {result["faces"]} faces, {100 * result["points_wrong"]:.1f} % of '
    f'points beyond {100 * result["threshold"]:.0f} % ({result["normaliser"]}); held-out AUC '
    f'of low confidence for them {result["held_out_auc_error"]:.3f}, Brier '
    f'{result["held_out_brier"]:.3f}'
  )
  print(json.dumps(result))


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string('checkpoint', None, 'Model folder; confidence.json is written into it.')
  flags.DEFINE_string('dataset', None, 'Face dataset with one face per example: 300w, mtfl, ...')
  flags.DEFINE_string(
    'split',
    'validation',
    "Split to calibrate on, not a test split; validation: the dataset table's held-out "
    'training faces where the dataset has no validation split (as lmjax.main validates)',
  )
  flags.DEFINE_string('manual_dir', None, 'Folder with the official files of the dataset.')
  flags.DEFINE_string('data_dir', None, 'Where prepared tfds datasets are cached.')
  flags.DEFINE_integer('batch_size', 128, 'Faces per forward pass.')
  flags.DEFINE_string('dataset_config', None, 'tfds builder config (synthetic: face5/face68).')
  flags.DEFINE_enum(
    'backend', 'auto', ['auto', 'xla', 'onnx', 'int8'], 'MCL network runtime, as in evaluate.'
  )
  flags.DEFINE_bool('verbose', False, 'Show INFO logs and the traceback of errors.')
  flags.mark_flags_as_required(['checkpoint', 'dataset'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
