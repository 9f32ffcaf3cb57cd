"""The public inference API: a landmark predictor for any model folder.

    from lmjax.inference import load_predictor
    predictor = load_predictor('pretrained/mcl68')      # or pretrained/bbfcn5, runs/.../am
    points = predictor.predict(image, box)              # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)     # [N, K, 2]
    out = predictor.predict_faces(images, boxes)        # every one of predictor.outputs

A model folder holds `model.json` (architecture and input protocol, `lmjax.models.registry`)
and `variables/` (orbax). Every predictor is a `lmjax.models.interface.CropPredictor`.

`Landmarker`, one entry point for results: faces with box, landmarks, per-point confidence and
head pose.

    landmarker = lmjax.Landmarker.load('pretrained/bbfcn5')          # finds the faces itself
    landmarker = lmjax.Landmarker.load('pretrained/mcl68', detector='pretrained/bbfcn5')
    for face in landmarker.detect(image):                            # uint8 RGB [H, W, 3]
      face.box, face.score, face.points, face.confidence, face.pose

    landmarker.detect(image, boxes=[[x0, y0, x1, y1], ...])          # faces you already have

Faces come from the pyramid scanner of a BB-FCN folder (`detector`, by default the model
itself when it is a BB-FCN model) unless `boxes` are given; the landmarks then come from the
box-given predictor of `model` (`lmjax.inference.load_predictor`), with the head pose for 68-
and 5-point models and the per-point confidence when the folder is calibrated
(`confidence.json`, `python -m lmjax.calibrate`). When the landmark model has other points
than the detector (a 68-point MCL behind the 5-point scanner), the box handed to it is the
tight box of the 3-D mean face's 68 points fitted to the detected 5 (a similarity transform),
as 68-point models are trained on tight landmark boxes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.core import head_pose, landmarks
from lmjax.hlo_export.onnx_runner import OnnxPredictor
from lmjax.hlo_export.runner import ExportedPredictor
from lmjax.mcl.predictor import FacePredictor
from lmjax.models import registry
from lmjax.models.interface import CropPredictor, check_face

__all__ = [
  'BBFCNPredictor',
  'CropPredictor',
  'ExportedPredictor',
  'Face',
  'FacePredictor',
  'Landmarker',
  'OnnxPredictor',
  'load_predictor',
]

STABLEHLO_SUFFIX = '.stablehlo'  # an exported whole predictor, not a model folder
ONNX_SUFFIX = '.onnx'  # the same as ONNX (`lmjax.hlo_export.onnx_runner`)
TFLITE_SUFFIX = '.tflite'  # as TFLite (`lmjax.hlo_export.tflite`, needs TensorFlow)


def load_predictor(
  directory: str, head: int = 0, backend: str = 'auto'
) -> CropPredictor | ExportedPredictor | OnnxPredictor:
  """The predictor of a model folder: `FacePredictor` (MCL) or `BBFCNPredictor` (BB-FCN).

  Args:
    directory: a model folder (`model.json` + `variables/`).
    head: an MCL shape-prediction head; BB-FCN models have none (head must be 0).
    backend: 'auto', 'xla', 'onnx' or 'int8' (MCL: `lmjax.mcl.predictor`, BB-FCN:
      `lmjax.bbfcn.fast_path`).

  Raises:
    FileNotFoundError: `directory` is not a model folder (no model.json).
    ValueError: its model.json is invalid (`registry.SpecError`), its variables/ are missing or
      unreadable (`checkpoint.ModelFolderError`), or it holds a face classifier; one line each.

  The predictors check every image and box (`lmjax.models.interface.check_face`).

  A `.stablehlo` file (`python -m lmjax.export --format=stablehlo`) instead of a folder gives
  an `lmjax.hlo_export.runner.ExportedPredictor` (image API only: `predict_faces`; backend
  'auto' or 'xla', head 0: both were fixed at export); a whole-predictor `.onnx` file
  (`--format=onnx --image_size=HxW`) gives an `lmjax.hlo_export.onnx_runner.OnnxPredictor`.
  """
  exported = str(directory).endswith((STABLEHLO_SUFFIX, ONNX_SUFFIX))
  if exported and (head or backend not in ('auto', 'xla', 'onnx')):
    raise ValueError(f'{directory}: an exported predictor; its head and backend are fixed')
  if str(directory).endswith(STABLEHLO_SUFFIX):
    return ExportedPredictor(directory)
  if str(directory).endswith(ONNX_SUFFIX):
    return OnnxPredictor(directory)
  if str(directory).endswith(TFLITE_SUFFIX):
    if head or backend not in ('auto', 'xla', 'tflite'):
      raise ValueError(f'{directory}: an exported predictor; its head and backend are fixed')
    from lmjax.hlo_export.tflite import TflitePredictor  # needs TensorFlow (the tflite extra)

    return TflitePredictor(directory)
  family = registry.read_spec(directory)['experiment']
  if family == 'bbfcn':
    if head:
      raise ValueError(f'head {head}: {directory} is a BB-FCN model (no shape-prediction heads)')
    return BBFCNPredictor(directory, backend=backend)
  if family == 'mcl':
    return FacePredictor(directory, head=head, backend=backend)
  raise ValueError(
    f'{directory}: a {family} model predicts no landmarks (use lmjax.facecls.classifier)'
  )


@dataclasses.dataclass(frozen=True)
class Face:
  """One face.

  Attributes:
    box: float32 [4] (x0, y0, x1, y1) image pixels: the box the landmarks were predicted in.
    score: the detector's face score, None for a given box.
    points: float32 [K, 2] landmarks in image pixels.
    confidence: float32 [K] probability that each point is within 10 % of the normalising
      distance of the truth, None when the model folder has no calibration.
    pose: float32 [3] yaw, pitch, roll in degrees (`lmjax.core.head_pose`), None for schemas
      without a 3-D mean face.
  """

  box: np.ndarray
  score: float | None
  points: np.ndarray
  confidence: np.ndarray | None
  pose: np.ndarray | None


class Landmarker:
  """A landmark predictor and, optionally, a face detector (the BB-FCN scanner)."""

  def __init__(self, predictor: CropPredictor, scanner=None, min_score: float | None = None):
    self.predictor, self.scanner, self.min_score = predictor, scanner, min_score

  @classmethod
  def load(
    cls,
    model: str,
    detector: str | None = None,
    *,
    min_face: int = 40,
    levels: int | None = None,
    min_score: float | None = None,
    backend: str = 'auto',
  ) -> Landmarker:
    """Loads the landmark model folder and the detector folder (default: `model` when it is
    a BB-FCN folder, else none: `detect` then needs boxes). `min_face`: the smallest face
    side the scanner looks for, pixels (or a fixed number of pyramid `levels`); `min_score`:
    its face-score threshold."""
    predictor = load_predictor(model, backend=backend)
    if detector is None and registry.read_spec(model)['experiment'] == 'bbfcn':
      detector = model
    scanner = None
    if detector is not None:
      from lmjax.scan.scanner import Scanner

      depth = {'levels': levels} if levels else {'min_face': min_face}
      scanner = Scanner.load(detector, **depth)
    return cls(predictor, scanner, min_score)

  def detect(self, image: np.ndarray, boxes: Sequence[Sequence[float]] | None = None) -> list[Face]:
    """The faces of one image, best first (detected) or in the order of `boxes`.

    Raises:
      ValueError: a bad image or box (`check_face`), or no boxes and no detector.
    """
    scores: list[float | None]
    if boxes is None:
      if self.scanner is None:
        raise ValueError(
          'boxes: this Landmarker has no face detector; pass face boxes, or load it with '
          "detector='<a BB-FCN model folder>', e.g. pretrained/bbfcn5"
        )
      from lmjax.scan import detect

      found = detect.faces_from_scan(self.scanner.scan(image), min_score=self.min_score)
      boxes = [self._box_for_model(f.box, f.points) for f in found]
      scores = [f.score for f in found]
    else:
      boxes = [check_face(image, b, box_name=f'boxes[{i}]')[1] for i, b in enumerate(boxes)]
      scores = [None] * len(boxes)
    if not boxes:
      return []
    schema = self.predictor.schema
    with_pose = head_pose.has_mean_face(schema)
    with_confidence = self.predictor.calibration is not None
    out = self.predictor.predict_faces(
      [image] * len(boxes), boxes, pose=with_pose, confidence=with_confidence
    )
    return [
      Face(
        box=np.asarray(box, np.float32),
        score=score,
        points=out['points'][i],
        confidence=out['confidence'][i] if with_confidence else None,
        pose=out['pose'][i] if with_pose else None,
      )
      for i, (box, score) in enumerate(zip(boxes, scores, strict=True))
    ]

  def _box_for_model(self, box: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The detector's box, or a tight 68-point box when the model has other points."""
    detected = self.scanner.schema
    if self.predictor.schema.num_points == detected.num_points:
      return box
    if self.predictor.schema.num_points != 68 or detected.num_points != 5:
      raise ValueError(
        f'detector: its {detected.num_points} points cannot place a box for a '
        f'{self.predictor.schema.num_points}-point model (supported: the same points, or 5 -> 68)'
      )
    found = np.isfinite(points).all(axis=1)
    if found.sum() < 3:  # too few points for a similarity: the detector's box
      return box
    mean68 = head_pose.MEAN_FACE_68[:, :2]
    mean5 = landmarks.five_from_68(mean68[None])[0]
    similarity = _fit_similarity(mean5[found], points[found].astype(np.float64))
    placed = mean68 @ similarity[:, :2].T + similarity[:, 2]
    return np.concatenate([placed.min(0), placed.max(0)]).astype(np.float32)


def _fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """The least-squares similarity transform [2, 3] (rotation, scale, shift) source -> target."""
  mu_s, mu_t = source.mean(0), target.mean(0)
  s, t = source - mu_s, target - mu_t
  a = (s * t).sum() / (s**2).sum()  # scale * cos
  b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum() / (s**2).sum()  # scale * sin
  linear = np.array([[a, -b], [b, a]])
  return np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1)
