"""lmjax: facial landmark detection in JAX and Flax (MCL and BB-FCN, with a face scanner).

The public API, imported on first use (so `import lmjax` alone does not import JAX):

    predictor = lmjax.load_predictor('pretrained/mcl68')   # any landmark model folder
    points = predictor.predict(image, box)                  # [K, 2] image pixels
    scanner = lmjax.Scanner.load('pretrained/bbfcn5')       # every face of a whole image
    classifier = lmjax.FaceClassifier.load('pretrained/facecls5')
    faces = lmjax.Landmarker.load('pretrained/bbfcn5').detect(image)  # box, points, pose, ...
    tracker = lmjax.VideoTracker(landmarker, lmjax.TrackerConfig(fps=30))  # faces in a video
    faces = tracker.update(frame)                           # track_id, box, points, ...

Training runs through `python -m lmjax.main --config=configs/<name>.py`.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
  'load_predictor': 'lmjax.inference',
  'CropPredictor': 'lmjax.models.interface',
  'FacePredictor': 'lmjax.mcl.predictor',
  'BBFCNPredictor': 'lmjax.bbfcn.predictor',
  'Scanner': 'lmjax.scan.scanner',
  'FaceClassifier': 'lmjax.facecls.classifier',
  'Landmarker': 'lmjax.inference',
  'VideoTracker': 'lmjax.track.tracker',
  'TrackerConfig': 'lmjax.track.tracker',
  'OneEuroConfig': 'lmjax.track.one_euro',
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
  if name not in _PUBLIC:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_PUBLIC[name]), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *_PUBLIC})
