"""MTFL / AFLW-5 (5 points: eye centres, nose tip, mouth corners) from the official lists.

Two list formats are read from the manual directory:
  * original  `training.txt` / `testing.txt`: `path x1..x5 y1..y5 gender smile glasses pose`
  * re-release `new_training.txt` / `new_testing.txt` (80×80 images): `path x1..x5 y1..y5`
Coordinates are used exactly as written (no 1-based shift); predictions are reported in the
same frame. The default config `auto` takes, per split, the original list when present and
the re-release otherwise; `original` and `resized` force one format.

MTFL gives no face box. lmjax uses one rule for train and test alike (`face_box`): a square
centred on the mean of the eye centres and mouth corners, with side
`2.2 × max(|RE − LE|, |mouth centre − eye centre|)`. The max keeps the box size stable
under yaw (the eye distance shrinks) and pitch (the eye-mouth distance shrinks), and 2.2
makes the square span brows to chin like a face detector's box.

Known bad labels: in the 80×80 re-release, every `net_7876/_*.jpg` entry (2,350 of the 10,000
training lines) has y coordinates far too small (mean eye y 3.6 px against 33.4 px for the
other images: the points lie above the face), so no rule maps them back. The builder drops
entries whose path starts with a prefix in `KNOWN_BAD_PREFIXES[list format]`, logs how many
and records the count in the dataset metadata (`dropped_bad_labels`); the config `keep_bad`
keeps them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.data.datasets import common

NUM_POINTS = 5
BOX_SCALE = 2.2
LISTS = {
  'original': {'train': 'training.txt', 'test': 'testing.txt'},
  'resized': {'train': 'new_training.txt', 'test': 'new_testing.txt'},
}
_TOKENS = {'original': 15, 'resized': 11}
_FIELDS = {'original': 'path, 5 x, 5 y, 4 attributes', 'resized': 'path, 5 x, 5 y'}
KNOWN_BAD_PREFIXES = {'original': (), 'resized': ('net_7876/_',)}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download MTFL (http://mmlab.ie.cuhk.edu.hk/projects/TCDCN.html) and unpack it so that the
manual directory contains `training.txt` and/or `testing.txt` (or the 80×80 re-release lists
`new_training.txt` / `new_testing.txt`) next to the image folders they reference
(`lfw_5590/`, `net_7876/`, `AFLW/`).
"""


def face_box(points):
  """MTFL face box (x0, y0, x1, y1) from 5 points [..., 5, 2]; numpy or jax arrays."""
  eyes, mouth = points[..., 0:2, :], points[..., 3:5, :]
  eye_c, mouth_c = eyes.mean(axis=-2), mouth.mean(axis=-2)
  centre = (eye_c + mouth_c) / 2
  eye_dist = ((eyes[..., 1, :] - eyes[..., 0, :]) ** 2).sum(-1) ** 0.5
  eye_mouth = ((mouth_c - eye_c) ** 2).sum(-1) ** 0.5
  half = BOX_SCALE * (eye_dist + eye_mouth + abs(eye_dist - eye_mouth)) / 4  # = max / 2
  return (
    centre[..., 0] - half,
    centre[..., 1] - half,
    centre[..., 0] + half,
    centre[..., 1] + half,
  )


def face_box_np(points: np.ndarray) -> np.ndarray:
  """`face_box` as a float32 [..., 4] numpy array."""
  return np.stack(face_box(np.asarray(points, np.float32)), axis=-1).astype(np.float32)


def list_file(manual_dir: str, split: str, fmt: str) -> tuple[str, str]:
  """(path, format) of the list for `split`; `fmt` is auto/original/resized.

  Raises:
    common.DatasetFormatError: no list for the split exists, or the list has no entries.
  """
  formats = ('original', 'resized') if fmt == 'auto' else (fmt,)
  for f in formats:
    path = os.path.join(manual_dir, LISTS[f][split])
    if os.path.isfile(path):
      with open(path, encoding='utf-8', errors='replace') as lines:
        if not any(line.strip() for line in lines):
          raise common.DatasetFormatError(
            f'{path}: MTFL list has no entries; expected one line per face ({_FIELDS[f]})'
          )
      return path, f
  wanted = ' or '.join(LISTS[f][split] for f in formats)
  raise common.DatasetFormatError(
    f'MTFL split {split!r} needs {wanted} in the manual directory {manual_dir!r}.\n'
    f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
  )


def parse_list(path: str, fmt: str) -> list[tuple[str, np.ndarray]]:
  """Parses an MTFL list into (relative image path, landmarks [5, 2]) entries.

  Raises:
    common.DatasetFormatError: a line with the wrong number of fields, a non-number, or points
      that give an empty face box (`face_box`).
  """
  entries = []
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      tokens = line.split()
      if not tokens:
        continue
      if len(tokens) != _TOKENS[fmt]:
        raise common.DatasetFormatError(
          f'{path}:{lineno}: expected {_TOKENS[fmt]} fields ({fmt} MTFL list: {_FIELDS[fmt]}), '
          f'got {len(tokens)}'
        )
      try:
        values = np.array([float(t) for t in tokens[1:11]], np.float32)
      except ValueError:
        raise common.DatasetFormatError(
          f'{path}:{lineno}: landmark fields must be numbers: {line.strip()!r}'
        ) from None
      where = f'{path}:{lineno}'
      landmarks = np.stack([values[:5], values[5:]], axis=1)
      landmarks = common.check_landmarks(landmarks, NUM_POINTS, where)
      common.check_box(face_box_np(landmarks), where, 'MTFL rule: eyes and mouth centre')
      entries.append((tokens[0].replace('\\', '/'), landmarks))
  return entries


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the list files and the images they name.

  Used to detect a stale prepared dataset (`common.fingerprint_files`).
  """
  lists, images = [], set()
  for name in sorted({name for names in LISTS.values() for name in names.values()}):
    path = os.path.join(manual_dir, name)
    if os.path.isfile(path):
      lists.append(path)
      with open(path, encoding='utf-8', errors='replace') as f:
        images.update(line.split()[0].replace('\\', '/') for line in f if line.strip())
  return common.fingerprint_files(manual_dir, lists, images)


@dataclasses.dataclass
class MtflConfig(tfds.core.BuilderConfig):
  """Which list format to read: auto, original or resized."""

  list_format: str = 'auto'
  drop_known_bad: bool = True


def drop_known_bad(
  entries: list[tuple[str, np.ndarray]], fmt: str
) -> tuple[list[tuple[str, np.ndarray]], int]:
  """Entries without the known mislabelled ones (`KNOWN_BAD_PREFIXES`), and how many went."""
  bad = KNOWN_BAD_PREFIXES[fmt]
  kept = [e for e in entries if not e[0].startswith(bad)] if bad else entries
  return kept, len(entries) - len(kept)


class Mtfl(common.LandmarkBuilder):
  """MTFL 5-point faces (train 10,000; test = the 2,995 AFLW faces)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Original and 80×80 lists; rule-based face box.',
    '1.1.0': 'Drops the mislabelled net_7876/_* entries of the 80×80 lists (keep_bad keeps them).',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = 'MTFL 5-point faces (LFW + web images; AFLW test).'
  HOMEPAGE = 'http://mmlab.ie.cuhk.edu.hk/projects/TCDCN.html'
  BUILDER_CONFIGS = [
    MtflConfig(name='auto', description='original list when present, else the re-release'),
    MtflConfig(
      name='keep_bad', drop_known_bad=False, description='auto, keeping known mislabelled entries'
    ),
    MtflConfig(name='original', list_format='original', description='training/testing.txt'),
    MtflConfig(name='resized', list_format='resized', description='new_*.txt (80×80)'),
  ]

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    generators = {}
    for split in ('train', 'test'):
      try:
        path, fmt = list_file(manual_dir, split, self.builder_config.list_format)
      except common.DatasetFormatError:
        continue  # Missing or empty lists are reported by `check_split` when requested.
      self.info.metadata[f'{split}_list'] = os.path.basename(path)
      entries = parse_list(path, fmt)
      if self.builder_config.drop_known_bad:
        entries, dropped = drop_known_bad(entries, fmt)
        self.info.metadata[f'{split}_dropped_bad_labels'] = dropped
        if not entries:
          raise common.DatasetFormatError(
            f'{path}: all {dropped} entries have known wrong labels '
            f'({"*, ".join(KNOWN_BAD_PREFIXES[fmt])}*); expected other entries, or config '
            "'keep_bad'"
          )
        if dropped:
          logging.warning(
            'MTFL %s: dropped %d entries of %s with known wrong labels (%s*); config '
            "'keep_bad' keeps them.",
            split,
            dropped,
            os.path.basename(path),
            '*, '.join(KNOWN_BAD_PREFIXES[fmt]),
          )
      generators[split] = self._generate_examples(manual_dir, entries)
    if not generators:
      raise common.DatasetFormatError(
        f'no MTFL list found in the manual directory {manual_dir!r}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return generators

  def _generate_examples(self, manual_dir: str, entries: list[tuple[str, np.ndarray]]):
    for rel, landmarks in entries:
      image, _ = common.image_bytes_for_tfds(os.path.join(manual_dir, rel))
      image_id = os.path.splitext(rel)[0]
      yield (
        image_id,
        {
          'image': image,
          'landmarks': landmarks,
          'visible': np.ones(NUM_POINTS, np.bool_),
          'bbox': face_box_np(landmarks),
          'image_id': image_id,
        },
      )


def check_split(manual_dir: str, split: str, builder_config: MtflConfig | None = None) -> None:
  """Raises a clear error when the list of `split` is not in `manual_dir`."""
  if split not in ('train', 'test'):
    raise common.DatasetFormatError(f"MTFL has no split {split!r}; known: ['test', 'train']")
  list_file(manual_dir, split, builder_config.list_format if builder_config else 'auto')
