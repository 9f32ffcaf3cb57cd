"""Video files as RGB frames, and tracked faces as JSON records.

    clip = video.open_video('clip.mp4')      # a Video: fps, frame count (0 when unknown)
    for frame in clip.frames():              # uint8 RGB [H, W, 3]
      faces = tracker.update(frame)
      record = video.frame_record('clip.mp4', index, faces)

`open_video` raises a one-line ValueError naming the file when cv2 cannot open it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from lmjax.core import head_pose


@dataclasses.dataclass
class Video:
  """An open video file (`cv2.VideoCapture`); `frames` reads it once, then releases it."""

  path: str
  capture: cv2.VideoCapture
  fps: float
  count: int

  def frames(self) -> Iterator[np.ndarray]:
    """uint8 RGB frames [H, W, 3] until the end of the file."""
    try:
      while True:
        ok, frame = self.capture.read()
        if not ok:
          return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
      self.capture.release()


def open_video(path: str, default_fps: float = 25.0) -> Video:
  """The video at `path` (its fps, or `default_fps` when the file does not say).

  Raises:
    ValueError: cv2 cannot open it (one line naming the file).
  """
  capture = cv2.VideoCapture(str(path))
  if not capture.isOpened():
    capture.release()
    raise ValueError(f'{path}: cannot open the video (not a video file, or a codec cv2 lacks)')
  fps = capture.get(cv2.CAP_PROP_FPS)
  fps = fps if fps and np.isfinite(fps) and fps > 0 else default_fps
  return Video(str(path), capture, float(fps), max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0))


def _floats(a) -> list | None:
  return None if a is None else np.asarray(a, np.float64).round(3).tolist()


def face_record(face) -> dict:
  """JSON of one `tracker.TrackedFace`: track_id, box, score, points [K][2], confidence [K]
  (null for uncalibrated models), pose {yaw, pitch, roll} (null without a 3-D mean face) and
  scanned (found by a scan on this frame)."""
  pose = None if face.pose is None else dict(zip(head_pose.ANGLES, _floats(face.pose), strict=True))
  return {
    'track_id': int(face.track_id),
    'box': _floats(face.box),
    'score': None if face.score is None else float(face.score),
    'points': _floats(face.points),
    'confidence': _floats(face.confidence),
    'pose': pose,
    'scanned': bool(face.scanned),
  }


def frame_record(name: str, index: int, faces: Sequence) -> dict:
  """JSON of one frame: input (`name#index`), frame (index) and faces (`face_record`)."""
  return {'input': f'{name}#{index}', 'frame': index, 'faces': [face_record(f) for f in faces]}
