"""Evaluation reports: metric dictionaries in percent, JSON files, CED plots, text tables.

Used by training-time validation and by the evaluation command line. The maths lives in
`lmjax.eval.metrics` (ratios); everything returned or written here is in percent, and every error
key names its normaliser (`nme_ioc`, `fr_10_ipd`, `auc_8_box`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.eval.reports import (
  compute_metrics,
  format_table,
  per_image_nmes,
  per_landmark_table,
  plot_ced,
  save_predictions,
  write_results,
)


# ----------------------------------------------------------------------------- command line
def evaluate_model(
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
) -> dict[str, Any]:
  """Runs a model folder on a dataset split and writes metrics JSON, CED PNG (+ predictions).

  A multi-face dataset (afw_multiface, composite_multiface, synthetic scene5 / scene68) is
  scanned whole by the BB-FCN pyramid scanner instead (`lmjax.eval.multiface`, with
  `levels`, `face_classifier` and `max_images`).

  The protocol is the model's own (the face crop around each example's face box: MCL or
  BB-FCN constrained); predictions are mapped back to original-image pixels before scoring.
  For a BB-FCN model with branches the same faces are also scored with the backbone alone
  (`backbone_only` in the JSON) and a per-landmark table of both is printed (paper Table V).
  `viz` (BB-FCN only) writes input / coarse / fine map pictures of the first `viz_count`
  faces into that folder.

  Returns:
    The metrics dict that was written to `output`.
  """
  from tqdm import tqdm

  from lmjax.data import datasets
  from lmjax.inference import load_predictor

  predictor = load_predictor(checkpoint)
  is_bbfcn = hasattr(predictor, 'has_branches')
  if viz and not is_bbfcn:
    raise ValueError(f'--viz draws BB-FCN response maps; {checkpoint} is not a BB-FCN model')
  if dataset_config is None and datasets.canonical_name(dataset) == 'synthetic':
    dataset_config = f'face{predictor.schema.num_points}'
  source = datasets.load(
    dataset, split, manual_dir=manual_dir, data_dir=data_dir, config=dataset_config
  )
  if 'faces' in source.dataset_info.features:
    from lmjax.eval import multiface

    if not is_bbfcn:
      raise ValueError(
        f'{dataset} has several faces per image: it needs a BB-FCN model, and '
        f'{checkpoint} is not one'
      )
    report = multiface.evaluate_scanner(
      checkpoint, source, output, name=f'{dataset}/{split}', levels=levels,
      face_classifier=face_classifier, max_images=max_images,
    )  # fmt: skip
    print(multiface.format_summary(report, predictor.schema.num_points))
    return report
  schema = datasets.schema_of(source)
  if schema.num_points != predictor.schema.num_points:
    raise ValueError(
      f'{checkpoint} predicts {predictor.schema.num_points} landmarks but {dataset} has '
      f'{schema.num_points}'
    )
  ids, preds, coarse, gts, boxes, visible = [], [], [], [], [], []
  batch_images, batch_boxes = [], []
  compare = is_bbfcn and predictor.has_branches

  def flush():
    if batch_images:
      if compare:  # one forward pass gives both the refined and the backbone-only points
        points, backbone = predictor.predict_batch(batch_images, batch_boxes, with_coarse=True)
        preds.append(points)
        coarse.append(backbone)
      else:
        preds.append(predictor.predict_batch(batch_images, batch_boxes))
      if viz:
        _write_viz(predictor, batch_images, batch_boxes, ids, sum(map(len, preds)), viz, viz_count)
      batch_images.clear()
      batch_boxes.clear()

  for i in tqdm(range(len(source)), desc=f'{dataset}/{split}', mininterval=2):
    ex = datasets.decode(source[i])
    ids.append(ex['image_id'])
    gts.append(ex['landmarks'])
    boxes.append(ex['bbox'])
    visible.append(ex['visible'])
    batch_images.append(ex['image'])
    batch_boxes.append(ex['bbox'])
    if len(batch_images) == batch_size:
      flush()
  flush()
  pred, gt, bbox = np.concatenate(preds), np.stack(gts), np.stack(boxes)
  results = compute_metrics(pred, gt, bbox, schema, visible=np.stack(visible))
  results.update(dataset=dataset, split=split, checkpoint=os.path.abspath(checkpoint))
  if compare:
    results['backbone_only'] = compute_metrics(
      np.concatenate(coarse), gt, bbox, schema, visible=np.stack(visible)
    )
    rows = {'backbone_only': results['backbone_only'], 'bbfcn': results}
    for norm in ('ioc', 'ipd'):
      print(per_landmark_table(rows, schema, norm))
  write_results(results, output)
  nmes = per_image_nmes(pred, gt, bbox, schema, visible=np.stack(visible))
  stem = os.path.splitext(os.fspath(output))[0]
  for norm, thr in (('ioc', 0.08), ('ipd', 0.10)):
    plot_ced(
      {os.path.basename(os.path.normpath(checkpoint)): nmes[norm]},
      thr,
      f'{stem}_ced_{norm}.png',
      title=f'{dataset} {split} ({len(ids)} faces)',
      normaliser=norm,
    )
  if predictions:
    save_predictions(predictions, ids, pred)
  return results


def _write_viz(predictor, images, boxes, ids, end: int, folder: str, count: int) -> None:
  """Response-map pictures of the faces of one batch (global indices end - len(images) ...)."""
  from lmjax.viz import heatmaps

  start = end - len(images)
  take = max(0, min(len(images), count - start))
  if not take:
    return
  os.makedirs(folder, exist_ok=True)
  crops = np.stack(
    [predictor.crop(im, b)[0] for im, b in zip(images[:take], boxes[:take], strict=True)]
  )
  out = predictor.predict_crops(crops)
  for i in range(take):
    face = {k: v[i] for k, v in out.items()}
    name = f'{start + i:04d}_{str(ids[start + i]).replace("/", "_")}.png'
    heatmaps.write_png(os.path.join(folder, name), heatmaps.prediction_panel(crops[i], face))


def main(argv: Sequence[str]) -> None:
  from absl import flags

  del argv
  f = flags.FLAGS
  results = evaluate_model(
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
  )
  if 'summary' in results:  # multi-face: the table was printed
    return
  keys = ('num_faces', 'nme_ioc', 'nme_ipd', 'nme_box', 'fr_8_ioc', 'fr_10_ipd', 'auc_8_ioc')
  print(format_table({f'{f.dataset}/{f.split}': results}, keys))


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string('checkpoint', None, 'Model folder (model.json + variables/).')
  flags.DEFINE_string(
    'dataset', None, 'Dataset: 300w, mtfl, cofw, synthetic, afw_multiface, composite_multiface.'
  )
  flags.DEFINE_string('manual_dir', None, 'Folder with the official files of the dataset.')
  flags.DEFINE_string('split', 'test', 'Split to evaluate.')
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
  flags.mark_flags_as_required(['checkpoint', 'dataset'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
