"""Landmarks of every face in a photo, fast: the scanner's cascade mode.

    scanner = CascadeScanner.load('pretrained/bbfcn5', min_face=40)  # proposer5, facecls5 beside
    scanner = CascadeScanner.load('pretrained/bbfcn5', classifier=None)  # no re-scoring
    out = scanner.scan(image)   # the keys of `Scanner.scan` (lmjax.scan.scanner.detect)

The pyramid scanner (`lmjax.scan.scanner`, the paper's §III-E-2 method) runs the whole BB-FCN
backbone over a 1.16-step pyramid; the cascade finds face boxes first and runs BB-FCN only on
them, in the constrained setting it was trained for:

  1. proposals: `lmjax.scan.proposer` — the ProposalNet (P-Net style, 12 × 12 windows) dense over
     a pyramid of √2 steps from the scale where a `min_face` face fills a window, packed into
     fixed tiles; NMS; the best `proposals` squares;
  2. re-scoring (default on): the face / non-face CNN (`lmjax.facecls.classifier`'s network,
     crops cut on the host: `lmjax.scan.rescore`) scores them, those below `face_threshold`
     go; the best `detections`, distinct faces (NMS at `face_iou`) first;
  3. landmarks: `BBFCNPredictor` (int8 ONNX on a CPU when the folder has it) on each box, and
     (`hypotheses` = 2, the default) on its mirrored crop in the same call: two landmark sets
     per box, as the pyramid scan has several detections per type on a face.

The output keeps the pyramid scanner's contract so that `lmjax.eval.multiface`,
`lmjax.scan.detect.faces_from_scan`, `lmjax-scan` and `lmjax.evaluate` work unchanged, with
m = `detections` slots and F = `max_faces`: a detection j is one box with one landmark set;
'points' [K, m, 2] holds its point k at [k, j] ('coarse_points' the backbone-only points of the
same pass), 'score' [K, m] its box's score (classifier probability, or proposer probability
without re-scoring; halved for a box that overlaps a better one) for every type, 'fine_score'
the predictor's per-point response, 'level' the box's proposer level (0: the largest);
'proposals' [K · m, 4] is the box of each detection (row k · m + j = detection j) with only
the first row of copies valid, and there only the distinct faces (NMS at `face_iou`); 'faces'
[F, 4] are the F best of those with 'face_points' [F, K, 2].

Every stage has a fixed budget with validity masks; the programs (two of the proposer, one
face selection (two sizes), the classifier's one batch, the XLA predictor's one or two
batches) do not depend on the photo sizes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.core import geometry, image_ops, nms
from lmjax.core.geometry import MIN_BOX_SIDE
from lmjax.models import registry
from lmjax.scan import pyramid
from lmjax.scan.proposer import DEFAULT_FACTOR, ProposerParams, ProposerStage
from lmjax.scan.rescore import HostRescorer
from lmjax.train import checkpoint

PROPOSER_FOLDER = 'proposer5'  # default proposer: this folder beside the BB-FCN model folder
CLASSIFIER_FOLDER = 'facecls5'  # default re-scoring classifier, found alike
DUPLICATE_DECAY = 0.5  # score factor of a detection whose box overlaps a better one
PRETRAINED = os.path.join(os.path.dirname(__file__), '..', '..', 'pretrained')


@dataclasses.dataclass(frozen=True)
class CascadeParams:
  """Static settings of a cascade scan.

  Attributes:
    levels: the reach of an L-level pyramid scan (`Scanner(levels=L)`): per photo, min_face is
      the face side that pyramid reaches (0: `min_face` is given instead).
    threshold: minimum proposer probability of a window.
    factor: side ratio between the proposer's pyramid levels.
    candidates: windows per chunk of tiles and per photo before NMS.
    proposals: proposals after NMS (P).
    nms_iou: IoU of the proposer's NMS.
    face_threshold: minimum classifier probability (with a classifier).
    face_iou: IoU of the face NMS.
    detections: face slots that get landmarks (m; the evaluator needs 30).
    max_faces: face slots of the 'faces' output (F ≤ m).
    refine: the predictor's branch refinement (False: backbone-only points).
    box_passes: landmark passes; after each but the last, every face box is re-derived from
      its landmarks (`box_from_points`) and marked again (1: the proposer's boxes only).
    hypotheses: landmark sets per face box among the detections (1 to 3), taken in the order:
      the last pass's, the previous pass's (when box_passes ≥ 2; free), the last pass's on the
      mirrored crops (one more predictor pass). Like the pyramid scan's several detections per
      type on one face, they count in the top-m recall (and fill its m slots).
    scale_step: the pyramid step of `levels`.
    tile: tile side in pixels of the proposer's packed pyramid (0: `tiling.TILE`; 128 measured
      best on a CPU: 11.3 / 9.8 / 9.8 VGA img/s at min_face 20 with 128 / 192 / 256).
  """

  levels: int = 0
  threshold: float = 0.5
  factor: float = DEFAULT_FACTOR
  candidates: int = 512
  proposals: int = 64
  nms_iou: float = 0.7
  face_threshold: float = 0.2
  face_iou: float = 0.3
  detections: int = 30
  max_faces: int = 16
  refine: bool = True
  box_passes: int = 1
  hypotheses: int = 2
  scale_step: float = pyramid.SCALE_STEP
  tile: int = 128

  def proposer(self) -> ProposerParams:
    names = [f.name for f in dataclasses.fields(ProposerParams)]
    return ProposerParams(**{n: getattr(self, n) for n in names})


def check_params(params: CascadeParams) -> None:
  """A one-line ValueError naming the first setting out of range."""
  p = params
  checks = [
    ('threshold', 0 <= p.threshold < 1, 'a number from 0 to below 1'),
    ('factor', 0 < p.factor < 1, 'a number above 0 and below 1'),
    ('candidates', p.candidates >= 1, 'an integer >= 1'),
    ('proposals', 1 <= p.proposals <= p.candidates, f'an integer 1 to candidates={p.candidates}'),
    ('nms_iou', 0 < p.nms_iou <= 1, 'a number above 0 and at most 1'),
    ('face_threshold', 0 <= p.face_threshold < 1, 'a number from 0 to below 1'),
    ('face_iou', 0 < p.face_iou <= 1, 'a number above 0 and at most 1'),
    ('detections', 1 <= p.detections <= p.proposals, f'an integer 1 to proposals={p.proposals}'),
    ('max_faces', 1 <= p.max_faces <= p.detections, f'an integer 1 to detections={p.detections}'),
    ('levels', p.levels >= 0, 'an integer >= 0'),
    ('box_passes', p.box_passes >= 1, 'an integer >= 1'),
    (
      'hypotheses',
      1 <= p.hypotheses <= min(3, p.box_passes + 1),
      'an integer 1 to 3 (at most box_passes + 1)',
    ),
    ('tile', p.tile >= 0 and p.tile % 4 == 0, '0 (default) or a multiple of 4'),
  ]
  for name, ok, expected in checks:
    if not ok:
      raise ValueError(f'{name} is {getattr(p, name)}; expected {expected}')
  pyramid.check_step(p.scale_step)


def face_nms(
  boxes: jax.Array, score: jax.Array, valid: jax.Array, params: CascadeParams
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Faces among the detections [m] (best first): (keep [m], index [F], valid [F]) after NMS
  at IoU `face_iou`."""
  keep = nms.nms(boxes, score, valid, params.face_iou)
  index, ok = nms.top_valid(score, keep, params.max_faces)
  return keep, index, ok


def box_from_points(points: np.ndarray, template: np.ndarray, crop_scale: float) -> np.ndarray:
  """Face boxes [N, 4] fitted to landmarks [N, K, 2]: the training window in which the mean face
  (`template` [K, 2], window units) best matches the points (least squares over a scale and a
  shift), shrunk by `crop_scale` to the box of the model's convention."""
  centred = template - template.mean(0)  # [K, 2]
  spread = points - points.mean(1, keepdims=True)  # [N, K, 2]
  side = np.einsum('nkd,kd->n', spread, centred) / np.sum(centred**2)  # window side
  centre = points.mean(1) + (0.5 - template.mean(0)) * side[:, None]
  return geometry.centred_boxes(centre, side / crop_scale).astype(np.float32)


def default_folder(bbfcn_folder: str | None, name: str) -> str:
  """The model folder `name` beside `bbfcn_folder` if it exists, else the repo's pretrained one."""
  if bbfcn_folder:
    beside = os.path.join(os.path.dirname(os.path.abspath(bbfcn_folder)), name)
    if os.path.isdir(beside):
      return beside
  return os.path.normpath(os.path.join(PRETRAINED, name))


def _check_folder(folder: str, what: str) -> None:
  """A one-line ValueError naming the role `what` when `folder` has no model.json."""
  if not os.path.isfile(os.path.join(folder, 'model.json')):
    raise ValueError(f'{what} {folder}: no model folder there (expected model.json + variables/)')


class CascadeScanner:
  """The cascade scanner (see the module doc); `CascadeScanner.load(folder)` for model folders.

  Args:
    predictor: a `BBFCNPredictor` (the landmarks of each face box).
    proposer: (spec, variables) of a ProposalNet (`lmjax.models.registry` family `proposer`).
    classifier: optional `FaceClassifier` re-scoring the proposals.
    min_face: smallest face box side (pixels) to find; or
    levels: the reach of an L-level pyramid scan of the same BB-FCN (see `CascadeParams`).
      Default: min_face 40.
    **params: other `CascadeParams` fields.
  """

  def __init__(
    self,
    predictor: BBFCNPredictor,
    proposer: tuple[dict, dict],
    classifier=None,
    min_face: float | None = None,
    levels: int | None = None,
    **params,
  ):
    if levels is not None and min_face is not None:
      raise ValueError('give either levels or min_face, not both')
    if min_face is not None and not (math.isfinite(min_face) and min_face > 0):
      raise ValueError(f'min_face is {min_face}; expected a positive number of pixels')
    if levels is not None and levels < 1:
      raise ValueError(f'levels is {levels}; expected an integer >= 1')
    spec, variables = proposer
    spec = registry.validate(spec)
    if spec['experiment'] != 'proposer':
      raise ValueError(f"proposer: field 'experiment' is {spec['experiment']!r}; expected proposer")
    unknown = set(params) - {f.name for f in dataclasses.fields(CascadeParams)}
    if unknown:
      raise ValueError(f'unknown cascade setting(s) {sorted(unknown)}')
    self.params = CascadeParams(levels=levels or 0, **params)
    check_params(self.params)
    self.min_face = None if levels else (min_face or 40.0)
    self.predictor, self.classifier = predictor, classifier
    self.rescorer = None if classifier is None else HostRescorer(classifier, self.params.proposals)
    self.spec, self.schema = predictor.spec, predictor.schema
    self.template = registry.face_template(self.spec)
    self.proposer_spec, self.proposer_variables = spec, variables
    net = registry.build(spec)
    self.stage = ProposerStage(lambda v, x: net.apply(v, x), self.params.proposer())
    self._face_nms = jax.jit(lambda b, s, ok: face_nms(b, s, ok, self.params))

  @classmethod
  def load(
    cls,
    directory: str,
    proposer: str | None = None,
    classifier: str | None = 'auto',
    backend: str = 'auto',
    **kwargs,
  ) -> CascadeScanner:
    """The cascade of a BB-FCN model folder (`variant` bbfcn or backbone_only).

    Args:
      directory: the BB-FCN folder.
      proposer: the ProposalNet folder (default `default_folder(directory, PROPOSER_FOLDER)`).
      classifier: face/non-face CNN folder re-scoring the proposals; 'auto' (default):
        `facecls5` beside `directory` or in the repo's `pretrained/`; None: no re-scoring.
      backend: the predictor's ('auto': int8 ONNX on a CPU when the folder has it).
      **kwargs: `min_face` or `levels`, and `CascadeParams` fields.
    """
    folder = proposer or default_folder(directory, PROPOSER_FOLDER)
    if classifier == 'auto':
      classifier = default_folder(directory, CLASSIFIER_FOLDER)
    _check_folder(folder, 'proposer')
    _check_folder(directory, 'BB-FCN model')
    if classifier:
      _check_folder(classifier, 'classifier')  # every folder checked before any loads
    _, variables, spec = checkpoint.load_model(folder, 'proposer')
    predictor = BBFCNPredictor(directory, backend=backend)
    if predictor.spec['variant'] == 'regression':
      raise ValueError(f'{registry.spec_path(directory)}: the cascade needs response maps')
    scorer = None
    if classifier:
      from lmjax.facecls.classifier import FaceClassifier

      scorer = FaceClassifier.load(classifier)
    return cls(predictor, (spec, variables), scorer, **kwargs)

  # ------------------------------------------------------------------------------ stages
  def min_face_for(self, image_shape: Sequence[int]) -> float:
    """The smallest face side (pixels) looked for in a photo of `image_shape` (H, W, ...)."""
    if self.min_face is not None:
      return self.min_face
    top = self.spec['crop_scale'] * self.params.scale_step ** (self.params.levels - 1)
    return min(image_shape[:2]) / top  # the face side that fills the window at the top level

  def levels_for(self, smaller_side: int) -> int:
    """Proposer pyramid levels of a photo whose smaller side is `smaller_side` (square photo)."""
    shape = (smaller_side, smaller_side)
    return self.stage.levels(shape, self.min_face_for(shape))

  def propose(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """Stage 1 of a uint8 [H, W, 3] photo: 'boxes' [P, 4], 'score', 'level', 'valid' [P]."""
    return self.stage.propose(self.proposer_variables, image, self.min_face_for(image.shape))

  def detections(self, image: np.ndarray, found: Mapping[str, np.ndarray]) -> dict:
    """Stage 2: the best `detections` proposals of `found` ('boxes' [P, 4], 'score', 'level',
    'valid' [P]), re-scored when there is a classifier: 'boxes' [m, 4], 'score', 'level',
    'valid' [m]. Distinct faces (the survivors of NMS at `face_iou`) come first, best first,
    then the boxes they suppressed (other views of the same faces), whose score is halved.
    """
    boxes, score = found['boxes'], found['score']
    valid = found['valid'] & _on_image(boxes, image.shape)
    if self.classifier is not None:
      score = np.zeros_like(score)
      score[valid] = self.rescorer.score(image, boxes[valid])
      valid = valid & (score >= self.params.face_threshold)
    distinct = np.asarray(self._face_nms(boxes, score, valid)[0])
    score = np.where(distinct, score, DUPLICATE_DECAY * score)
    index = np.lexsort((-score, ~distinct, ~valid))[: self.params.detections]
    ok = valid[index]
    return {
      'boxes': boxes[index],
      'score': np.where(ok, score[index], 0.0).astype(np.float32),
      'level': found['level'][index],
      'valid': ok,
    }

  def landmarks(
    self, image: np.ndarray, boxes: np.ndarray, valid: np.ndarray, mirrored: bool = False
  ) -> list[dict[str, np.ndarray]]:
    """Stage 3: 'points', 'coarse' [m, K, 2] image pixels and 'score' [m, K] of the valid
    boxes (zeros elsewhere); with `mirrored`, a second set from the mirrored crops (one
    predictor call for both)."""
    m, k = len(boxes), self.schema.num_points
    views = 2 if mirrored else 1
    outs = [{'points': np.zeros((m, k, 2), np.float32), 'coarse': np.zeros((m, k, 2), np.float32),
             'score': np.zeros((m, k), np.float32)} for _ in range(views)]  # fmt: skip
    rows = np.flatnonzero(valid)
    n = len(rows)
    if not n:
      return outs
    crops, affines = zip(*(self.predictor.crop(image, boxes[i]) for i in rows), strict=True)
    crops, affines = np.stack(crops), np.stack(affines)
    if self.predictor.backend == 'xla':  # one batch size per `views`: one compiled program
      crops = np.concatenate([crops, np.zeros((m - n, *crops.shape[1:]), crops.dtype)])
    batch = np.concatenate([crops, crops[:, :, ::-1]]) if mirrored else crops
    got = self.predictor.predict_crops(batch, refine=self.params.refine)
    size, perm = crops.shape[2], np.asarray(self.schema.flip_perm)
    for view, out in enumerate(outs):
      part = {key: np.asarray(got[key])[view * len(crops) :][:n] for key in out if key in got}
      if view:  # back from the mirrored crop: x -> size - 1 - x, left and right swapped
        for key in ('points', 'coarse'):
          part[key] = part[key][:, perm] * np.float32([-1, 1]) + np.float32([size - 1, 0])
        if 'score' in part:
          part['score'] = part['score'][:, perm]
      for key in ('points', 'coarse'):
        out[key][rows] = geometry.to_image_coords(part[key], affines)
      if 'score' in part:
        out['score'][rows] = part['score']
    return outs

  # ------------------------------------------------------------------------------ contract
  def scan(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """All faces and their landmarks in one photo [H, W, 3] uint8 (see the module doc)."""
    image = image_ops.check_image(image)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    det = self.detections(image, self.propose(image))
    passes, count = self.params.box_passes, self.params.hypotheses
    mirrored = count > min(passes, 2)  # the last pass, the previous one, then the mirror
    det['valid'][-(-self.params.detections // count) :] = False  # boxes with no slot left
    marks = previous = None
    for step in range(passes):
      if step:
        boxes = box_from_points(marks['points'], self.template, self.spec['crop_scale'])
        ok = det['valid'] & _on_image(boxes, image.shape)
        det['boxes'] = np.where(ok[:, None], boxes, det['boxes'])
      views = self.landmarks(image, det['boxes'], det['valid'], mirrored and step == passes - 1)
      marks, previous = views[0], marks
    sets = [marks, *([previous] if passes > 1 else []), *views[1:]][:count]
    det, marks = _interleave(det, sets)
    k, m = self.schema.num_points, self.params.detections
    valid = np.broadcast_to(det['valid'][None], (k, m))
    out = {
      'points': marks['points'].transpose(1, 0, 2),
      'valid': valid.copy(),
      'score': np.broadcast_to(det['score'][None], (k, m)).astype(np.float32),
      'fine_score': np.where(valid, marks['score'].T, 0.0).astype(np.float32),
      'coarse_points': marks['coarse'].transpose(1, 0, 2),
      'level': np.broadcast_to(det['level'][None], (k, m)).astype(np.int32),
    }
    return {**out, **self._proposal_and_face_keys(det, marks['points'])}

  def _proposal_and_face_keys(self, det: Mapping[str, np.ndarray], points: np.ndarray) -> dict:
    """The proposal and face keys of detections `det` ('boxes' [m, 4], 'score', 'valid') with
    landmarks `points` [m, K, 2]: each detection's proposal is its box, faces the NMS survivors.
    """
    k, m = self.schema.num_points, self.params.detections
    keep, index, ok = jax.device_get(self._face_nms(det['boxes'], det['score'], det['valid']))
    first = np.arange(k * m) < m
    return {
      'proposals': np.tile(det['boxes'], (k, 1)).astype(np.float32),
      'proposal_score': np.where(first, np.tile(det['score'], k), 0.0).astype(np.float32),
      'proposal_valid': first & np.tile(keep, k),
      'faces': det['boxes'][index].astype(np.float32),
      'face_score': np.where(ok, det['score'][index], 0.0).astype(np.float32),
      'face_valid': ok,
      'face_points': points[index].astype(np.float32),
      'face_point_valid': np.broadcast_to(ok[:, None], (len(ok), k)).copy(),
    }

  def regroup(self, out: Mapping[str, np.ndarray], points: np.ndarray, image_shape) -> dict:
    """The proposal and face keys of `out` for other detection `points` [K, m, 2].

    The cascade's boxes come from the proposer (and the scan's own landmark passes), not from
    `points`, so only 'face_points' changes: `regroup(out, out['coarse_points'], shape)` is
    what the faces of the scan carry with backbone-only points.
    """
    del image_shape  # the faces do not depend on it
    m = self.params.detections
    det = {'boxes': out['proposals'][:m], 'score': out['proposal_score'][:m],
           'valid': out['valid'][0]}  # fmt: skip
    return self._proposal_and_face_keys(det, np.asarray(points, np.float32).transpose(1, 0, 2))

  def scan_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """`scan` of each image (images of any sizes share the same programs)."""
    return [self.scan(image) for image in images]

  def compiled_programs(self) -> int:
    """Programs compiled so far: the proposer's two, the face selection, the classifier's
    (one per canvas size it met) and the XLA predictor's (one batch size)."""
    count = self.stage.compiled() + self._face_nms._cache_size()
    if self.rescorer is not None:
      count += self.rescorer.compiled()
    return count + self.predictor.compiled()


def _interleave(det: dict, sets: list[dict]) -> tuple[dict, dict]:
  """The first m of the detections (box j, landmark set h) in the order (j, h): every box of
  `det` [m] with each of its landmark `sets`, at the box's score."""
  m, count = len(det['valid']), len(sets)
  box = np.repeat(np.arange(m), count)[:m]
  view = np.tile(np.arange(count), m)[:m]
  det = {key: val[box] for key, val in det.items()}
  marks = {key: np.stack([s[key] for s in sets])[view, box] for key in sets[0]}
  return det, marks


def _on_image(boxes: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
  """[P] bool: the box is finite, at least `MIN_BOX_SIDE` a side and covers a pixel centre."""
  h, w = image_shape[:2]
  x0, y0, x1, y1 = boxes.T
  with np.errstate(invalid='ignore'):
    big = (x1 - x0 >= MIN_BOX_SIDE) & (y1 - y0 >= MIN_BOX_SIDE)
    return np.isfinite(boxes).all(1) & big & (x1 >= 0) & (y1 >= 0) & (x0 <= w - 1) & (y0 <= h - 1)
