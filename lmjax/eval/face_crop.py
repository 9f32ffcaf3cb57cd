"""THE face-crop evaluator: one face box per example, scored in original-image pixels.

Used by `python -m lmjax.evaluate` on face datasets (300-W, MTFL, COFW, synthetic `face*`) and
by training-time validation, so both report the same numbers for the same model and faces.

    batches = face_crop.source_batches(predictor, source, batch_size=128)  # the CLI
    batches = face_crop.cache_batches(val_cache, crop_params, batch_size)  # training
    metrics = face_crop.score(face_crop.predict(predictor, batches, batch_size), schema)

The predictor is a `lmjax.models.interface.CropPredictor` (`FacePredictor`, `BBFCNPredictor`,
or their `from_variables` during training): its declared `outputs`, not its type, say what is
scored. The evaluator works on crops: a `FaceCrops` batch holds the network inputs
[N, S, S, C], the crop -> image affines [N, 2, 3] that map crop pixels back to the original
image, and the ground truth in image pixels. It pads every batch to one fixed size (one
compiled forward pass), asks the predictor for crop-pixel points, maps them to image pixels and
scores them with `reports.compute_metrics`; when the predictor declares a `'coarse'` output
(BB-FCN with branches) the backbone-only points of the same forward pass are scored as
`backbone_only`.
Two front ends make the crops: `source_batches` (decoded tfds examples, `predictor.crop`) and
`cache_batches` (a `RegionCache`'s exact test crops, on device, as training validates).
A predictor without `crop` (an exported whole predictor, `lmjax.hlo_export.runner`) crops
inside: `predict_images` asks its `predict_faces` for image-pixel points of the same faces.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lmjax.core import augment, geometry
from lmjax.core.landmarks import Schema
from lmjax.data import batching, datasets
from lmjax.data.caches import RegionCache
from lmjax.eval import protocols, reports
from lmjax.models.interface import CropPredictor

POINTS, COARSE = 'points', 'coarse'
# Features every face dataset has; the others travel as `FaceCrops.extras`.
_COMMON = frozenset({'image', 'landmarks', 'visible', 'bbox', 'image_id'})


@dataclasses.dataclass(frozen=True)
class FaceCrops:
  """Network crops of N faces with their ground truth in original-image pixels.

  Attributes:
    crops: float32 [N, S, S, C] network inputs.
    crop_to_image: float64 [N, 2, 3] affines mapping crop pixels to image pixels.
    landmarks: float32 [N, K, 2] ground-truth landmarks (image pixels).
    bbox: float32 [N, 4] face boxes (x0, y0, x1, y1, image pixels).
    visible: bool [N, K] visibility of the ground-truth landmarks.
    image_ids: N identifiers.
    extras: the dataset's other per-face features, name -> [N, ...] (WFLW `attributes`,
      AFLW2000-3D `head_pose`, ...), for the protocol numbers of `lmjax.eval.protocols`.
  """

  crops: np.ndarray
  crop_to_image: np.ndarray
  landmarks: np.ndarray
  bbox: np.ndarray
  visible: np.ndarray
  image_ids: list[str]
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.image_ids)


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Image-pixel predictions of N faces and their ground truth (input of `score`).

  Attributes:
    points: float32 [N, K, 2] predicted landmarks.
    coarse: float32 [N, K, 2] backbone-only landmarks, or None when not declared.
    landmarks, bbox, visible, image_ids, extras: the ground truth, as in `FaceCrops`.
  """

  points: np.ndarray
  coarse: np.ndarray | None
  landmarks: np.ndarray
  bbox: np.ndarray
  visible: np.ndarray
  image_ids: list[str]
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _padded(crops: np.ndarray, size: int) -> np.ndarray:
  """`crops` [n, ...] zero-padded to [size, ...] (n <= size)."""
  out = np.zeros((size, *crops.shape[1:]), np.float32)
  out[: len(crops)] = crops
  return out


def predict(
  predictor: CropPredictor,
  batches: Iterable[FaceCrops],
  batch_size: int,
  on_batch: Callable[[FaceCrops, Mapping[str, np.ndarray]], None] | None = None,
) -> Predictions:
  """Runs `predictor` over crop batches of at most `batch_size` faces, padded to that size.

  Args:
    predictor: the model; only `outputs` and `predict_crops` are used.
    batches: `FaceCrops` of at most `batch_size` faces each (e.g. `source_batches`).
    batch_size: the fixed number of crops per forward pass.
    on_batch: optional `fn(faces, outputs)` called per batch with the predictor's outputs of
      the real rows (crop pixels; e.g. to draw response maps without a second forward pass).

  Returns:
    The image-pixel `Predictions` of every face, in order.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size: expected a positive number of faces, got {batch_size}')
  declared = tuple(predictor.outputs)
  if POINTS not in declared or not set(declared) <= {POINTS, COARSE}:
    want = "('points',) or ('points', 'coarse')"
    raise ValueError(f'predictor.outputs: expected {want}, got {declared}')
  parts: dict[str, list[Any]] = {k: [] for k in ('landmarks', 'bbox', 'visible', *declared)}
  ids: list[str] = []
  extras: dict[str, list[np.ndarray]] = {}
  for faces in batches:
    n = len(faces)
    if not 0 < n <= batch_size:
      raise ValueError(f'batches: expected 1 to {batch_size} faces per batch, got {n}')
    out = predictor.predict_crops(_padded(faces.crops, batch_size))
    out = {k: np.asarray(v)[:n] for k, v in out.items()}
    for key in declared:
      image_points = geometry.apply_affine(out[key].astype(np.float64), faces.crop_to_image)
      parts[key].append(image_points.astype(np.float32))
    if on_batch is not None:
      on_batch(faces, out)
    parts['landmarks'].append(faces.landmarks)
    parts['bbox'].append(faces.bbox)
    parts['visible'].append(faces.visible)
    for key, value in faces.extras.items():
      extras.setdefault(key, []).append(np.asarray(value))
    ids += list(faces.image_ids)
  if not ids:
    raise ValueError('batches: expected at least one face, got none')
  joined = {k: np.concatenate(v) for k, v in parts.items()}
  return Predictions(
    points=joined[POINTS],
    coarse=joined.get(COARSE),
    landmarks=joined['landmarks'].astype(np.float32),
    bbox=joined['bbox'].astype(np.float32),
    visible=joined['visible'].astype(bool),
    image_ids=ids,
    extras={k: np.concatenate(v) for k, v in extras.items()},
  )


def score(predictions: Predictions, schema: Schema) -> dict[str, Any]:
  """`reports.compute_metrics` of the points (+ `backbone_only` of the coarse points)."""
  gt = predictions.landmarks, predictions.bbox, schema
  results = reports.compute_metrics(predictions.points, *gt, visible=predictions.visible)
  if predictions.coarse is not None:
    results['backbone_only'] = reports.compute_metrics(
      predictions.coarse, *gt, visible=predictions.visible
    )
  return results


# ----------------------------------------------------------------------------- front ends
def source_batches(
  predictor: CropPredictor,
  source: Sequence[Mapping[str, Any]],
  batch_size: int,
  progress: str = '',
) -> Iterator[FaceCrops]:
  """Crops of a face dataset source (one face box per example), `predictor.crop` of each.

  `progress`: the label of a progress bar over the faces (none when empty).
  """
  for examples in _decoded_batches(source, batch_size, progress):
    crops, affines = zip(*(predictor.crop(ex['image'], ex['bbox']) for ex in examples), strict=True)
    yield FaceCrops(
      crops=np.stack(crops).astype(np.float32),
      crop_to_image=geometry.invert_affine(np.stack(affines).astype(np.float64)),
      **_truth(examples),
    )


def _decoded_batches(
  source: Sequence[Mapping[str, Any]], batch_size: int, progress: str
) -> Iterator[list[dict[str, Any]]]:
  """The source's decoded examples, `batch_size` at a time (a progress bar unless `progress`
  is empty)."""
  bar = tqdm(total=len(source), desc=progress, disable=not progress, mininterval=2)
  for start in range(0, len(source), batch_size):
    examples = [
      datasets.decode(source[i]) for i in range(start, min(start + batch_size, len(source)))
    ]
    yield examples
    bar.update(len(examples))
  bar.close()


def _truth(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """The ground-truth fields of `FaceCrops` of decoded examples (extras: every other feature)."""
  return dict(
    landmarks=np.stack([ex['landmarks'] for ex in examples]).astype(np.float32),
    bbox=np.stack([ex['bbox'] for ex in examples]).astype(np.float32),
    visible=np.stack([ex['visible'] for ex in examples]).astype(bool),
    image_ids=[str(ex['image_id']) for ex in examples],
    extras={k: np.stack([ex[k] for ex in examples]) for k in examples[0] if k not in _COMMON},
  )


def cache_batches(
  cache: RegionCache, params: augment.AugmentParams, batch_size: int
) -> Iterator[FaceCrops]:
  """The test crops of every face of `cache`, cut on device from its clean regions.

  Args:
    cache: region cache (e.g. the validation cache of a training run).
    params: the model's test-time crop, e.g. `augment.AugmentParams.none(size, crop_scale,
      grayscale)`; its random parts are not drawn (one fixed key and seed).
    batch_size: faces per batch (the last batch is cut on a padded, fixed-size batch too).
  """
  cut = _crop_fn(params)
  crop_to_image = cache.crop_to_image_affines(params.size, params.crop_scale)
  arrays = {'regions': cache.regions[:, 0], 'landmarks': cache.landmarks, 'bbox': cache.bbox}
  for start, batch in zip(
    range(0, len(cache), batch_size), batching.eval_batches(arrays, batch_size), strict=True
  ):
    mask = batch.pop('_mask')
    rows = slice(start, start + int(mask.sum()))
    yield FaceCrops(
      crops=np.asarray(cut(batch['regions'], batch['landmarks'], batch['bbox']))[mask],
      crop_to_image=crop_to_image[rows],
      landmarks=cache.image_landmarks[rows],
      bbox=cache.image_bbox[rows],
      visible=cache.visible[rows],
      image_ids=list(cache.image_ids[rows]),
    )


def _crop_fn(params: augment.AugmentParams):
  """Jitted `fn(regions [B, R, R, C], landmarks [B, K, 2], bbox [B, 4]) -> crops [B, S, S, C']`.

  No randomness is drawn (one fixed key and seed); without `rebox` the crop depends on the box
  only.
  """

  @jax.jit
  def cut(regions, points, bbox):
    seeds = jnp.zeros(regions.shape[0], jnp.int32)
    return augment.augment_batch(regions, points, bbox, jax.random.key(0), seeds, params)[0]

  return cut


def evaluate_cache(
  predictor: CropPredictor, cache: RegionCache, params: augment.AugmentParams, batch_size: int
) -> dict[str, Any]:
  """Training-time validation: the metrics of `predictor` on the test crops of `cache`."""
  pred = predict(predictor, cache_batches(cache, params, batch_size), batch_size)
  return score(pred, predictor.schema)


def predict_images(
  predictor: Any, source: Sequence[Mapping[str, Any]], batch_size: int, progress: str = ''
) -> Predictions:
  """The `Predictions` of a predictor that crops inside (no `crop` / `predict_crops`, e.g. an
  exported `lmjax.hlo_export.runner.ExportedPredictor`): its `predict_faces(images, boxes)`
  of every example's image and box, already in image pixels; the same faces, ground truth and
  scoring as `source_batches` + `predict`.
  """
  points, truths = [], []
  for examples in _decoded_batches(source, batch_size, progress):
    boxes = np.stack([ex['bbox'] for ex in examples]).astype(np.float64)
    out = predictor.predict_faces([ex['image'] for ex in examples], boxes)
    points.append(np.asarray(out[POINTS], np.float32))
    truths.append(_truth(examples))
  if not truths:
    raise ValueError('source: expected at least one face, got none')
  joined = {k: np.concatenate([t[k] for t in truths]) for k in ('landmarks', 'bbox', 'visible')}
  return Predictions(
    points=np.concatenate(points),
    coarse=None,
    image_ids=[i for t in truths for i in t['image_ids']],
    extras={k: np.concatenate([t['extras'][k] for t in truths]) for k in truths[0]['extras']},
    **joined,
  )


# ----------------------------------------------------------------------------- library entry
def evaluate_model(
  predictor: CropPredictor,
  source: Sequence[Mapping[str, Any]],
  output: str | os.PathLike,
  *,
  batch_size: int = 128,
  predictions: str | os.PathLike | None = None,
  info: Mapping[str, Any] | None = None,
  label: str = 'model',
  title: str = '',
  progress: str = '',
  on_batch: Callable[[FaceCrops, Mapping[str, np.ndarray]], None] | None = None,
) -> dict[str, Any]:
  """Evaluates a predictor on a face dataset source; writes the metrics JSON and CED plots.

  What `python -m lmjax.evaluate` runs on face datasets. The files: `output` (the metrics,
  `score` plus `info`, and for a benchmark with its own protocol its numbers under `protocol`,
  `lmjax.eval.protocols`), `<stem>_ced_ioc.png` and `<stem>_ced_ipd.png` beside it (and
  `<stem>_ced_protocol.png`, one curve per protocol subset), and with `predictions` an `.npz`
  of `image_ids` and `pred` [N, K, 2] (image pixels).

  Args:
    predictor: e.g. `lmjax.inference.load_predictor(folder)`.
    source: a face dataset split (`lmjax.data.datasets.load`).
    output: metrics JSON path.
    batch_size: faces per forward pass.
    predictions: optional `.npz` path for the predictions.
    info: extra JSON keys (the CLI adds dataset, split, checkpoint).
    label: the CED curve's legend label.
    title: the CED plots' title (the face count is appended).
    progress: label of a progress bar (none when empty).
    on_batch: as in `predict`.

  Returns:
    The metrics dict that was written to `output`.
  """
  schema = datasets.schema_of(source)
  if schema.num_points != predictor.schema.num_points:
    raise ValueError(
      f'predictor: predicts {predictor.schema.num_points} landmarks but the dataset has '
      f'{schema.num_points}'
    )
  if hasattr(predictor, 'crop'):
    batches = source_batches(predictor, source, batch_size, progress)
    pred = predict(predictor, batches, batch_size, on_batch)
  else:
    pred = predict_images(predictor, source, batch_size, progress)
  results = {**score(pred, schema), **(info or {})}
  gt = pred.landmarks, pred.bbox, pred.visible, pred.extras, schema
  name = getattr(source.dataset_info, 'name', '')  # the tfds name picks the protocol
  protocol = protocols.protocol_metrics(name, pred.points, *gt)
  stem = os.path.splitext(os.fspath(output))[0]
  if protocol is not None:
    results['protocol'], curves, (norm, thr) = protocol
    heading = f'{title} ({len(pred.image_ids)} faces)'.strip()
    reports.plot_ced(curves, thr, f'{stem}_ced_protocol.png', title=heading, normaliser=norm)
  reports.write_results(results, output)
  nmes = reports.per_image_nmes(pred.points, pred.landmarks, pred.bbox, schema, pred.visible)
  for norm, thr in (('ioc', 0.08), ('ipd', 0.10)):
    reports.plot_ced(
      {label: nmes[norm]},
      thr,
      f'{stem}_ced_{norm}.png',
      title=f'{title} ({len(pred.image_ids)} faces)'.strip(),
      normaliser=norm,
    )
  if predictions:
    reports.save_predictions(predictions, pred.image_ids, pred.points)
  return results
