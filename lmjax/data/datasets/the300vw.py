"""300-VW (68 points, video) from the official folder layout in a manual directory.

Each video is a folder `NNN/` (three digits) holding `vid.avi` and `annot/000001.pts`,
`annot/000002.pts`, … : one 68-point `.pts` file (300-W format, 1-based coordinates) per frame of
the video, numbered from 1 in the video's frame order. The builder decodes every video with
OpenCV (`cv2.VideoCapture`), pairs frame i with `annot/<i:06d>.pts` and yields one example per
frame (every `frame_step`-th frame of the config), the frames of a video together and in order:

  image        the decoded frame, stored as JPEG (quality 95)
  landmarks    float32 [68, 2], 0-based; visible all True; bbox = tight box of the points
  image_id     '<video id>/<frame number, 6 digits>' (the .pts file's name)
  video_id     '<video id>' (three digits)
  frame_index  int32, 0-based index of the frame in the video (= frame number - 1)
  category     int32: 0 for the training videos, 1 / 2 / 3 for the test categories
  fps          float32, the video's frame rate over `frame_step` (what a tracker sees)

Splits: `train` (the 50 training videos) and `test` (the 64 test videos; their challenge
category in the feature `category`). Category lists: the 300-VW challenge (Shen et al.,
ICCV-W 2015), as in its public evaluation code. tfds names cannot start with a digit: the
builder is `the300vw`; the CLIs accept `300vw`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator

import cv2
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.data.datasets import common
from lmjax.data.datasets.pts import read_pts, write_pts

NUM_POINTS = 68
VIDEO_FILE = 'vid.avi'
ANNOT_FOLDER = 'annot'
JPEG_QUALITY = 95
DEFAULT_FPS = 30.0  # a video whose file gives no frame rate
# Category 1: laboratory and naturalistic well-lit; 2: real-world human-computer interaction;
# 3: completely unconstrained (the challenge's test categories).
CATEGORIES: dict[int, tuple[str, ...]] = {
  1: tuple(f'{i:03d}' for i in (
    114, 124, 125, 126, 150, 158, 401, 402, 505, 506, 507, 508, 509, 510, 511, 514, 515, 518,
    519, 520, 521, 522, 524, 525, 537, 538, 540, 541, 546, 547, 548,
  )),
  2: tuple(f'{i:03d}' for i in (
    203, 208, 211, 212, 213, 214, 218, 224, 403, 404, 405, 406, 407, 408, 409, 412, 550, 551, 553,
  )),
  3: tuple(f'{i:03d}' for i in (
    410, 411, 516, 517, 526, 528, 529, 530, 531, 533, 557, 558, 559, 562,
  )),
}  # fmt: skip
TRAIN = tuple(f'{i:03d}' for i in (
  1, 2, 3, 4, 7, 9, 10, 11, 13, 15, 16, 17, 18, 19, 20, 22, 25, 27, 28, 29, 31, 33, 34, 35, 37,
  39, 41, 43, 44, 46, 47, 48, 49, 53, 57, 59, 112, 113, 115, 119, 120, 123, 138, 143, 144, 160,
  204, 205, 223, 225,
))  # fmt: skip
CATEGORY_OF = {v: c for c, videos in CATEGORIES.items() for v in videos} | dict.fromkeys(TRAIN, 0)
SPLITS = {'train': TRAIN, 'test': tuple(v for c in (1, 2, 3) for v in CATEGORIES[c])}
_VIDEO_NAME = re.compile(r'^\d{3}$')
_PTS_NAME = re.compile(r'^(\d{6})\.pts$')

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download 300-VW (https://ibug.doc.ic.ac.uk/resources/300-VW/) and unpack it so that the manual
directory holds one folder per video: 001/ 002/ … 562/, each with
  vid.avi                                   (the video)
  annot/000001.pts  annot/000002.pts  …     (68 points per frame, 1-based coordinates)
Splits: train = the 50 training videos, test = the 64 test videos (categories 1, 2, 3 in the
feature `category`). A split takes whichever of its videos are present.
"""


@dataclasses.dataclass
class The300vwConfig(tfds.core.BuilderConfig):
  """`frame_step`: keep every this many frames of each video (1 = all; every frame is still
  decoded and every annotation still checked)."""

  frame_step: int = 1


def video_folders(manual_dir: str) -> dict[str, str]:
  """Video id -> folder of every 300-VW video in `manual_dir` (folders named by 3 digits).

  Raises:
    common.DatasetFormatError: a 3-digit folder that is not one of the 114 300-VW videos.
  """
  out = {}
  for name in sorted(os.listdir(manual_dir)):
    path = os.path.join(manual_dir, name)
    if not os.path.isdir(path):
      continue
    if not _VIDEO_NAME.match(name):
      logging.warning('%s: not a 300-VW video folder (3 digits); ignored.', path)
      continue
    if name not in CATEGORY_OF:
      raise common.DatasetFormatError(
        f'{path}: video {name} is not one of the 114 300-VW videos (train or test categories)'
      )
    out[name] = path
  return out


def split_videos(manual_dir: str, split: str) -> list[str]:
  """The video ids of `split` present in `manual_dir`, in the split's order.

  Raises:
    common.DatasetFormatError: an unknown split, or none of its videos is present.
  """
  if split not in SPLITS:
    raise common.DatasetFormatError(f'300-VW has no split {split!r}; known: {sorted(SPLITS)}')
  present = video_folders(manual_dir)
  videos = [v for v in SPLITS[split] if v in present]
  if not videos:
    raise common.DatasetFormatError(
      f'300-VW split {split!r}: none of its {len(SPLITS[split])} video folders (e.g. '
      f'{SPLITS[split][0]}/) is in the manual directory {manual_dir!r}.\n'
      f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  return videos


def annotation_files(folder: str) -> list[str]:
  """The `.pts` paths of a video folder, frame 1 first.

  Raises:
    common.DatasetFormatError: no `vid.avi` or `annot/` folder, a file in `annot/` not named
      `NNNNNN.pts`, or a gap in the numbering (the missing file named).
  """
  video, annot = os.path.join(folder, VIDEO_FILE), os.path.join(folder, ANNOT_FOLDER)
  if not os.path.isfile(video):
    raise common.DatasetFormatError(f'{video}: video file not found (expected NNN/{VIDEO_FILE})')
  if not os.path.isdir(annot):
    raise common.DatasetFormatError(
      f'{annot}: annotation folder not found (expected one NNNNNN.pts per frame)'
    )
  numbers = []
  for name in sorted(os.listdir(annot)):
    match = _PTS_NAME.match(name)
    if not match:
      raise common.DatasetFormatError(
        f'{os.path.join(annot, name)}: expected only frame annotations named NNNNNN.pts '
        '(6-digit 1-based frame number)'
      )
    numbers.append(int(match[1]))
  if not numbers:
    raise common.DatasetFormatError(f'{annot}: no .pts files (expected one per video frame)')
  for expected, number in enumerate(numbers, 1):
    if number != expected:
      raise common.DatasetFormatError(
        f'{os.path.join(annot, f"{expected:06d}.pts")}: annotation of frame {expected} not '
        f'found (the files go on at {number:06d}.pts); expected one .pts per video frame'
      )
  return [os.path.join(annot, f'{n:06d}.pts') for n in numbers]


def open_video(folder: str, step: int = 1) -> tuple[float, Iterator[tuple]]:
  """The fps of a video folder's `vid.avi`, and its every `step`-th frame as (frame index,
  uint8 RGB frame, landmarks [68, 2] 0-based, .pts path), decoded lazily.

  Raises (the frames when iterated, the rest at once):
    common.DatasetFormatError: an unreadable video, a frame without an annotation, an
      annotation beyond the video's last frame, or a malformed `.pts` (file named).
  """
  annotations = annotation_files(folder)
  video = os.path.join(folder, VIDEO_FILE)
  capture = cv2.VideoCapture(video)
  if not capture.isOpened():
    capture.release()
    raise common.DatasetFormatError(f'{video}: cannot open the video (not a video cv2 can read)')
  fps = capture.get(cv2.CAP_PROP_FPS)
  fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
  return fps, _frames(capture, video, annotations, step)


def _frames(capture: cv2.VideoCapture, video: str, annotations: list[str], step: int):
  index = 0
  try:
    while True:
      ok, bgr = capture.read()
      if not ok:
        break
      if index >= len(annotations):
        missing = os.path.join(os.path.dirname(annotations[0]), f'{index + 1:06d}.pts')
        raise common.DatasetFormatError(
          f'{missing}: annotation of video frame {index + 1} not found ({video} has more frames '
          f'than the {len(annotations)} .pts files); expected one .pts per video frame'
        )
      if index % step == 0:
        landmarks = read_pts(annotations[index], NUM_POINTS)
        yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), landmarks, annotations[index]
      index += 1
  finally:
    capture.release()
  if index < len(annotations):
    raise common.DatasetFormatError(
      f'{annotations[index]}: annotates frame {index + 1}, beyond the {index} frame(s) cv2 '
      f'decodes from {video}'
    )


def write_video(folder: str | os.PathLike, frames: np.ndarray, landmarks: np.ndarray, fps: float):
  """Writes one video in the 300-VW layout: `folder/vid.avi` (MJPG) of uint8 RGB `frames`
  [T, H, W, 3] and `folder/annot/<t:06d>.pts` of `landmarks` [T, 68, 2] (0-based; written
  1-based), e.g. rendered sequences (`lmjax.synthface.sequence`) for tests and benchmarks.

  Raises:
    ValueError: frames and landmarks of different lengths, or cv2 cannot write the file.
  """
  if len(frames) != len(landmarks):
    raise ValueError(f'frames ({len(frames)}) and landmarks ({len(landmarks)}): expected as many')
  annot = os.path.join(folder, ANNOT_FOLDER)
  os.makedirs(annot, exist_ok=True)
  height, width = frames.shape[1:3]
  path = os.path.join(folder, VIDEO_FILE)
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), fps, (width, height))
  if not writer.isOpened():
    raise ValueError(f'{path}: cv2 cannot write an MJPG video here')
  for t, (frame, points) in enumerate(zip(frames, landmarks, strict=True), 1):
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    write_pts(os.path.join(annot, f'{t:06d}.pts'), points)
  writer.release()


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the videos' `.pts` files and `vid.avi` files
  (`common.fingerprint_files`)."""
  annotations, videos = [], []
  for folder in video_folders(manual_dir).values():
    annot = os.path.join(folder, ANNOT_FOLDER)
    if os.path.isdir(annot):
      annotations += [os.path.join(annot, n) for n in sorted(os.listdir(annot))]
    videos.append(os.path.join(folder, VIDEO_FILE))
  return common.fingerprint_files(manual_dir, annotations, videos)


class The300vw(common.LandmarkBuilder):
  """300-VW frames, 68 points, tight boxes; extra features video_id, frame_index, category, fps."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official folder layout; one example per frame, JPEG frames.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
    The300vwConfig(name='all', description='Every frame.'),
    The300vwConfig(
      name='step5', description='Every 5th frame (frames 1, 6, 11, ...).', frame_step=5
    ),
  ]
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = '300-VW 68-point video frames (50 train / 64 test videos in 3 categories).'
  HOMEPAGE = 'https://ibug.doc.ic.ac.uk/resources/300-VW/'
  KEEP_ORDER = True  # the frames of a video together and in order, as a tracker reads them

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {
      'video_id': tfds.features.Text(),
      'frame_index': tfds.features.Scalar(dtype=np.int32),
      'category': tfds.features.Scalar(dtype=np.int32),
      'fps': tfds.features.Scalar(dtype=np.float32),
    }

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    generators = {}
    for split in SPLITS:
      try:
        videos = split_videos(manual_dir, split)
      except common.DatasetFormatError:
        continue  # a split without videos is reported by `check_split` when requested
      generators[split] = self._generate_examples(manual_dir, videos)
    if not generators:
      raise common.DatasetFormatError(
        f'no 300-VW video folder found in the manual directory {manual_dir!r}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return generators

  def _generate_examples(self, manual_dir: str, videos: list[str]):
    step = max(int(getattr(self.builder_config, 'frame_step', 1)), 1)
    key = 0  # increasing int keys: `KEEP_ORDER` keeps this order
    for video_id in videos:
      fps, frames = open_video(os.path.join(manual_dir, video_id), step)
      for index, frame, landmarks, pts_path in frames:
        box = common.check_box(common.tight_box(landmarks), pts_path, 'tight box of the points')
        image_id = f'{video_id}/{index + 1:06d}'
        key += 1
        yield (
          key,
          {
            'image': common.encode_jpeg(frame, JPEG_QUALITY),
            'landmarks': landmarks,
            'visible': np.ones(NUM_POINTS, np.bool_),
            'bbox': box,
            'image_id': image_id,
            'video_id': video_id,
            'frame_index': index,
            'category': CATEGORY_OF[video_id],
            'fps': fps / step,
          },
        )


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error when `split` is unknown or none of its videos is in `manual_dir`."""
  del builder_config
  split_videos(manual_dir, split)
