"""`VideoTracker`: faces tracked through a video, scanning only on key frames or after a loss.

    landmarker = lmjax.Landmarker.load('pretrained/mcl68', detector='pretrained/bbfcn5')
    tracker = VideoTracker(landmarker, TrackerConfig(fps=30))
    for frame in frames:                                   # uint8 RGB [H, W, 3]
      for face in tracker.update(frame):
        face.track_id, face.box, face.points, face.confidence, face.pose

On a key frame (every `key_interval` frames, the first one, any frame without a track, and any
frame on which a track is lost) the landmarker scans the whole image (`Landmarker.detect`). On
the other frames each track's landmarks come from the landmarker's box-given predictor in a
box placed on the track's previous landmarks (by default the smoothed ones, moved by their
last frame-to-frame motion): their tight box for 68-point models (the box the MCL crop is
taken from), else the detector's box carried along with the points (its centre
and side kept relative to the points' centroid and spread). A track is lost when its mean
per-point confidence falls under `min_confidence` (calibrated models only), its landmarks
leave the frame (more than `max_outside` of them) or are not finite, its box collapses
(side under `min_side` pixels), or the box placed for a frame (moved by the motion) misses
that frame; it is then re-detected by a scan of the same frame, keeping its id when a scanned
face overlaps its last box. A scanned face that overlaps no track starts
a new track; a track whose box lies mostly inside an older one's (the scanner's false boxes
around or inside a face) ends. The landmarks reported are smoothed by a One Euro filter per track
(`one_euro`; `smoothing=None` reports the raw ones).

`VideoTracker` needs only `landmarker.detect(image, boxes=None)` and
`landmarker.predictor.schema` (`lmjax.inference.Landmarker`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lmjax.core import head_pose
from lmjax.core.geometry import MIN_BOX_SIDE, box_iou
from lmjax.track.one_euro import OneEuroConfig, OneEuroFilter

DEFAULT_SMOOTHING = OneEuroConfig()


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
  """How `VideoTracker` scans, tracks and smooths.

  Attributes:
    fps: frames per second of the video (the One Euro filter's time step).
    key_interval: scan every this many frames to find new faces (0: only when a track is lost
      or none is left).
    min_confidence: a track whose mean per-point confidence (`lmjax.core.confidence`) is below
      this is lost; ignored for models without `confidence.json`.
    min_side: pixels; a track whose box side falls below this is lost.
    max_outside: a track with more than this fraction of its landmarks outside the frame is
      lost.
    predict_motion: shift and scale the box by the track's last frame-to-frame motion (a
      constant-velocity guess of where the face is now) instead of leaving it on the last
      landmarks.
    box_on_smoothed: place the box on the smoothed landmarks (with smoothing): a steadier
      crop, hence less jitter in the raw landmarks too (on the benchmark's static heads 0.22
      against 0.38 % of the eye distance, for 1 % more NME on moving heads).
    match_iou: IoU between a scanned face's box and a track's box for them to be one face.
    max_overlap: a track whose box overlaps an older track's box by more than this (the
      intersection over the smaller box) is a duplicate and ends (the scanner's false boxes
      around or inside a face, and tracks that drift onto another face).
    max_key_misses: a track that no key-frame scan finds this many key frames in a row ends.
    smoothing: the One Euro filter of the reported landmarks (None: no smoothing).
  """

  fps: float = 30.0
  key_interval: int = 30
  min_confidence: float = 0.4
  min_side: float = 12.0
  max_outside: float = 0.5
  predict_motion: bool = True
  box_on_smoothed: bool = True
  match_iou: float = 0.3
  max_overlap: float = 0.5
  max_key_misses: int = 2
  smoothing: OneEuroConfig | None = DEFAULT_SMOOTHING

  def __post_init__(self):
    if not self.fps > 0:
      raise ValueError(f'TrackerConfig.fps={self.fps}: expected > 0')
    if self.key_interval < 0:
      raise ValueError(f'TrackerConfig.key_interval={self.key_interval}: expected >= 0')


@dataclasses.dataclass(frozen=True)
class TrackedFace:
  """One face in one frame.

  Attributes:
    track_id: the same int for the same face in every frame it is tracked.
    box: float32 [4] (x0, y0, x1, y1), the box the landmarks were predicted in.
    points: float32 [K, 2] landmarks in image pixels (smoothed unless smoothing is None).
    raw_points: float32 [K, 2] the predictor's landmarks, unsmoothed.
    confidence: float32 [K] per-point confidence, None for uncalibrated models.
    pose: float32 [3] yaw, pitch, roll in degrees of `points`, None without a 3-D mean face.
    score: the detector's face score on a frame where the face was scanned, else None.
    scanned: whether the face came from a scan on this frame (new or re-detected).
  """

  track_id: int
  box: np.ndarray
  points: np.ndarray
  raw_points: np.ndarray
  confidence: np.ndarray | None
  pose: np.ndarray | None
  score: float | None
  scanned: bool


@dataclasses.dataclass
class _Track:
  track_id: int
  box: np.ndarray  # the box of the last prediction
  anchor: np.ndarray  # the last landmarks the next box is placed on (raw or smoothed)
  smoother: OneEuroFilter | None
  before: np.ndarray | None = None  # the anchor landmarks before them (None after a scan)
  geometry: np.ndarray | None = None  # box centre offset and side / points' spread
  key_misses: int = 0


def _spread(points: np.ndarray) -> float:
  return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
  """The intersection of boxes a and b over the smaller one's area."""
  w = min(a[2], b[2]) - max(a[0], b[0])
  h = min(a[3], b[3]) - max(a[1], b[1])
  smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
  return float(max(w, 0) * max(h, 0) / smaller) if smaller > 0 else 1.0


def _on_image(box: np.ndarray, shape: Sequence[int]) -> bool:
  """Whether a box is one the predictor takes (`lmjax.models.interface.check_face`): finite,
  sides of at least `MIN_BOX_SIDE`, overlapping the pixel centres of an image of `shape` (the
  track package may not import `models`, so the rule is restated here on the shared constant)."""
  h, w = shape[:2]
  x0, y0, x1, y1 = (float(v) for v in box)
  if not np.isfinite([x0, y0, x1, y1]).all():
    return False
  sides = x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE
  return sides and x1 >= 0 and y1 >= 0 and x0 <= w - 1 and y0 <= h - 1


def _side(box: np.ndarray) -> float:
  return float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 0.0)))


class VideoTracker:
  """Tracks faces frame by frame (see the module docstring). Counters: `frames`, `scans`
  (frames scanned), `losses` (tracks lost, each followed by a scan)."""

  def __init__(self, landmarker, config: TrackerConfig | None = None):
    if getattr(landmarker, 'scanner', True) is None:
      raise ValueError(
        'landmarker: it has no face detector, which tracking needs on key frames; load it '
        "with detector='<a BB-FCN model folder>', e.g. pretrained/bbfcn5"
      )
    self.landmarker, self.config = landmarker, config or TrackerConfig()
    self.schema = landmarker.predictor.schema
    self._tracks: list[_Track] = []
    self._next_id = 0
    self.frames = self.scans = self.losses = 0

  def reset(self) -> None:
    """Forgets every track (a new video); the counters and ids go on."""
    self._tracks = []

  def update(self, frame: np.ndarray) -> list[TrackedFace]:
    """The faces of the next frame (uint8 RGB [H, W, 3]), oldest track first."""
    index, self.frames = self.frames, self.frames + 1
    k = self.config.key_interval
    key = not self._tracks or (k > 0 and index % k == 0)
    faces, lost = [], []
    if self._tracks:
      placed = [(t, self._box(t)) for t in self._tracks]
      lost = [t for t, box in placed if not _on_image(box, frame.shape)]
      placed = [(t, box) for t, box in placed if _on_image(box, frame.shape)]
      boxes = [box for _, box in placed]
      predicted = self.landmarker.detect(frame, boxes=boxes) if boxes else []
      for (track, _), face in zip(placed, predicted, strict=True):
        if self._lost(face, frame.shape):
          lost.append(track)
        else:
          faces.append((track, face, False))
    if lost:
      self.losses += len(lost)
      key = True
    results: list[TrackedFace] = []
    if key:
      self.scans += 1
      faces = self._merge_scan(frame, faces, lost)
    self._tracks, kept_boxes = [], []
    for track, face, scanned in faces:
      box = np.asarray(face.box, np.float64)
      if any(_overlap(box, other) > self.config.max_overlap for other in kept_boxes):
        continue
      kept_boxes.append(box)
      self._tracks.append(track)
      results.append(self._report(track, face, index, scanned))
    return results

  def _box(self, track: _Track) -> np.ndarray:
    """The box for this frame, placed on the track's previous (smoothed or raw) landmarks."""
    pts = track.anchor.astype(np.float64)
    if self.config.predict_motion and track.before is not None:
      before = track.before.astype(np.float64)
      centre, old = pts.mean(0), before.mean(0)
      zoom = _spread(pts) / max(_spread(before), 1e-6)
      pts = (pts - centre) * zoom + 2 * centre - old
    if self.schema.num_points == 68:
      return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
    spread = _spread(pts)
    centre = pts.mean(0) + track.geometry[:2] * spread
    half = track.geometry[2:] * spread / 2
    return np.concatenate([centre - half, centre + half]).astype(np.float32)

  def _lost(self, face, shape: Sequence[int]) -> bool:
    c = self.config
    pts = face.points
    if not np.isfinite(pts).all():
      return True
    h, w = shape[:2]
    outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    box = np.concatenate([pts.min(0), pts.max(0)])
    if outside.mean() > c.max_outside or _side(box) < c.min_side:
      return True
    return face.confidence is not None and float(np.mean(face.confidence)) < c.min_confidence

  def _merge_scan(self, frame, kept: list, lost: list[_Track]) -> list:
    """[(track, face, scanned)]: the tracked faces, then re-detected and new ones, from a scan.

    A kept track that overlaps a scanned face stays as tracked (its landmarks are from its
    own box, which follows them more closely than the scan's); a lost track that overlaps one
    is re-detected with its id; other scanned faces start new tracks."""
    scanned = [f for f in self.landmarker.detect(frame) if self._valid(f, frame.shape)]
    taken = np.zeros(len(scanned), bool)
    boxes = np.array([f.box for f in scanned], np.float32).reshape(-1, 4)

    def match(box: np.ndarray) -> int | None:
      if not len(boxes):
        return None
      iou = np.where(taken, -1.0, box_iou(np.asarray(box, np.float32)[None], boxes)[0])
      best = int(iou.argmax())
      return best if iou[best] >= self.config.match_iou else None

    out = []
    for track, face, _ in kept:
      j = match(face.box)
      if j is None:
        track.key_misses += 1
        if track.key_misses >= self.config.max_key_misses:
          continue
      else:
        taken[j], track.key_misses = True, 0
      out.append((track, face, False))
    for track in lost:
      j = match(track.box)
      if j is not None:
        taken[j] = True
        self._restart(track, scanned[j])
        out.append((track, scanned[j], True))
    for j in np.flatnonzero(~taken):
      track = _Track(self._next_id, scanned[j].box, scanned[j].points, None)
      self._next_id += 1
      self._restart(track, scanned[j])
      out.append((track, scanned[j], True))
    return out

  def _valid(self, face, shape) -> bool:
    return bool(np.isfinite(face.points).all()) and not self._lost(face, shape)

  def _restart(self, track: _Track, face) -> None:
    """Starts `track` afresh on a scanned face: box geometry and smoothing reset."""
    smoothing = self.config.smoothing
    track.smoother = None if smoothing is None else OneEuroFilter(smoothing)
    track.key_misses, track.before = 0, None
    pts, box = face.points.astype(np.float64), np.asarray(face.box, np.float64)
    spread = max(_spread(pts), 1e-6)
    centre = (box[:2] + box[2:]) / 2
    track.geometry = np.concatenate([(centre - pts.mean(0)) / spread, (box[2:] - box[:2]) / spread])

  def _report(self, track: _Track, face, index: int, scanned: bool) -> TrackedFace:
    track.box = np.asarray(face.box, np.float32)
    raw = points = np.asarray(face.points, np.float32)
    if track.smoother is not None:
      t = index / self.config.fps
      points = track.smoother(raw, t, scale=_side(track.box)).astype(np.float32)
    track.before = None if scanned else track.anchor
    track.anchor = points if self.config.box_on_smoothed else raw
    pose = None
    if face.pose is not None:
      pose = np.asarray(head_pose.head_pose(points, self.schema), np.float32)
    return TrackedFace(
      track_id=track.track_id,
      box=track.box,
      points=points,
      raw_points=raw,
      confidence=face.confidence,
      pose=pose,
      score=face.score,
      scanned=scanned,
    )
