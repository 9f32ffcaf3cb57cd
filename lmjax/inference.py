"""The public inference API: a landmark predictor for any model folder.

    from lmjax.inference import load_predictor
    predictor = load_predictor('pretrained/mcl68')      # or pretrained/bbfcn5, runs/.../am
    points = predictor.predict(image, box)              # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)     # [N, K, 2]
    out = predictor.predict_faces(images, boxes)        # every one of predictor.outputs

A model folder holds `model.json` (architecture and input protocol, `lmjax.models.registry`)
and `variables/` (orbax). Every predictor is a `lmjax.models.interface.CropPredictor`.
"""

from __future__ import annotations

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.mcl.predictor import FacePredictor
from lmjax.models import registry
from lmjax.models.interface import CropPredictor

__all__ = ['BBFCNPredictor', 'CropPredictor', 'FacePredictor', 'load_predictor']


def load_predictor(directory: str, head: int = 0, backend: str = 'auto') -> CropPredictor:
  """The predictor of a model folder: `FacePredictor` (MCL) or `BBFCNPredictor` (BB-FCN).

  Args:
    directory: a model folder (`model.json` + `variables/`).
    head: an MCL shape-prediction head; BB-FCN models have none (head must be 0).
    backend: MCL: 'auto', 'xla', 'onnx' or 'int8' (`lmjax.mcl.predictor`); BB-FCN runs on XLA
      only ('auto' or 'xla').

  Raises:
    FileNotFoundError: `directory` is not a model folder (no model.json).
    ValueError: its model.json is invalid (`registry.SpecError`), its variables/ are missing or
      unreadable (`checkpoint.ModelFolderError`), or it holds a face classifier; one line each.

  The predictors check every image and box (`lmjax.models.interface.check_face`).
  """
  family = registry.read_spec(directory)['experiment']
  if family == 'bbfcn':
    if head:
      raise ValueError(f'head {head}: {directory} is a BB-FCN model (no shape-prediction heads)')
    if backend not in ('auto', 'xla'):
      raise ValueError(f'backend {backend!r}: {directory} is a BB-FCN model, which runs on xla')
    return BBFCNPredictor(directory)
  if family == 'mcl':
    return FacePredictor(directory, head=head, backend=backend)
  raise ValueError(
    f'{directory}: a {family} model predicts no landmarks (use lmjax.facecls.classifier)'
  )
