"""Parity of an exported whole predictor with its model folder on the validation faces, and the
model card's line about it.

    python -m lmjax.export --checkpoint=pretrained/mcl68 --format=stablehlo --padded \\
        --manual_dir=/path/to/300w --out=/tmp/mcl68.stablehlo

With `--manual_dir`, `lmjax.export` scores the written file and the folder's predictor (XLA)
on the faces `python -m lmjax.evaluate ... --split=validation` scores (the validation faces of
the model card: held out of the training split): the largest point difference in image pixels
and both NMEs go to `<out>.json` under 'validation_parity' and into the folder's MODEL_CARD.md
(section `CARD_SECTION`), so the card states what the exported model loses, measured.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

CARD_SECTION = '## StableHLO export (whole predictor)'
SPLIT = 'validation'


def validation_parity(
  exported_path: str,
  checkpoint: str,
  *,
  dataset: str = '',
  manual_dir: str | None = None,
  data_dir: str | None = None,
  split: str = SPLIT,
  batch_size: int = 128,
) -> dict[str, Any]:
  """Exported vs folder (XLA) points and NMEs on `dataset`'s validation faces (or `split`'s).

  Args:
    exported_path: a `.stablehlo` file (with its sidecar).
    checkpoint: the model folder it was exported from.
    dataset: default: the folder's model.json 'dataset'.
    manual_dir, data_dir: as `lmjax.evaluate` takes them.
    batch_size: faces per call.

  Returns:
    {'dataset', 'split', 'faces', 'max_diff_px', 'mean_diff_px', 'nme_ioc': {folder_xla,
    stablehlo, difference}, 'nme_ipd': {...}}.
  """
  from lmjax.bbfcn.predictor import BBFCNPredictor
  from lmjax.data import datasets
  from lmjax.eval import face_crop
  from lmjax.hlo_export.runner import ExportedPredictor
  from lmjax.mcl.predictor import FacePredictor

  exported = ExportedPredictor(exported_path)
  if exported.spec['experiment'] == 'bbfcn':
    folder = BBFCNPredictor(checkpoint)
  else:
    folder = FacePredictor(checkpoint, head=exported.info.get('head', 0), backend='xla')
  dataset = dataset or folder.spec['dataset']
  source = datasets.load_split(dataset, split, manual_dir=manual_dir, data_dir=data_dir)
  batches = face_crop.source_batches(folder, source, batch_size)
  want = face_crop.predict(folder, batches, batch_size)
  got = face_crop.predict_images(exported, source, batch_size)
  if want.image_ids != got.image_ids:
    raise RuntimeError('the exported and folder predictions cover different faces')
  schema = datasets.schema_of(source)
  scores = {name: face_crop.score(p, schema) for name, p in (('folder', want), ('export', got))}
  diff = np.abs(got.points - want.points)
  out: dict[str, Any] = {
    'dataset': dataset,
    'split': split,
    'faces': len(want.image_ids),
    'max_diff_px': float(diff.max()),
    'mean_diff_px': float(diff.mean()),
  }
  for key in ('nme_ioc', 'nme_ipd'):
    folder_nme, export_nme = scores['folder'][key], scores['export'][key]
    out[key] = {
      'folder_xla': float(folder_nme),
      'stablehlo': float(export_nme),
      'difference': float(export_nme - folder_nme),
    }
  return out


def card_section(sidecar: dict[str, Any], file_name: str) -> str:
  """The model card's text about an export with measured 'validation_parity' (sidecar dict)."""
  v = sidecar['validation_parity']
  flags = ' --padded' if sidecar.get('padded') else ''
  if sidecar.get('image_size'):
    flags += ' --image_size={}x{}'.format(*sidecar['image_size'])
  if sidecar.get('backbone_only'):
    flags += ' --backbone_only'
  ioc, ipd = v['nme_ioc'], v['nme_ipd']
  bound = sidecar['parity']['tolerance_px']
  over = (
    f' (above the {bound} px bound of the export\'s synthetic check; README "Export")'
    if v['max_diff_px'] > bound
    else ''
  )
  return (
    f'`{file_name}`: `python -m lmjax.export --format=stablehlo{flags}` (jax '
    f'{sidecar["jax_version"]}; images + boxes -> image-pixel points, the crop inside the graph; '
    f'{sidecar["bytes"] / 1e6:.1f} MB, not committed). On the {v["faces"]} {v["dataset"]} '
    f'{v["split"]} faces (`lmjax.evaluate` protocol) against this folder on XLA: max '
    f'{v["max_diff_px"]:.2g} px{over}, mean {v["mean_diff_px"]:.2g} px; NME ioc '
    f'{ioc["folder_xla"]:.3f} -> {ioc["stablehlo"]:.3f} '
    f'({ioc["difference"]:+.2g}), ipd {ipd["folder_xla"]:.3f} -> {ipd["stablehlo"]:.3f} '
    f'({ipd["difference"]:+.2g}); synthetic faces at export: max '
    f'{sidecar["parity"]["max_diff_px"]:.2g} px. `python -m lmjax.evaluate '
    '--checkpoint=FILE.stablehlo` scores the file itself.\n'
  )


def record(out: str, sidecar: dict[str, Any], checkpoint: str, **kwargs) -> dict[str, Any]:
  """Measures `validation_parity` of the export `out`, adds it to `<out>.json` (returned)
  and writes the folder's card section (when it has a card)."""
  import json

  from lmjax.eval import reports

  sidecar = {**sidecar, 'validation_parity': validation_parity(out, checkpoint, **kwargs)}
  with open(out + '.json', 'w') as f:
    json.dump(sidecar, f, indent=2, sort_keys=True)
  reports.set_card_section(checkpoint, CARD_SECTION, card_section(sidecar, os.path.basename(out)))
  return sidecar
