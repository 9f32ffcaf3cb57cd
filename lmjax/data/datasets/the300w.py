"""300-W (68 points) from the official folder layout in a manual directory.

tfds names cannot start with a digit, so the builder is `the300w`; the CLIs accept `300w`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.data.datasets import common
from lmjax.data.datasets.pts import read_pts

NUM_POINTS = 68
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp')

# split -> (required subfolders, optional subfolders). A split needs every required folder
# and at least one folder in total; `train` takes whichever of its folders are present.
SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
  'train': ((), ('afw', 'helen/trainset', 'lfpw/trainset')),
  'common': (('lfpw/testset', 'helen/testset'), ()),
  'challenging': (('ibug',), ()),
  'full': (('lfpw/testset', 'helen/testset', 'ibug'), ()),
  'private': (('300W/01_Indoor', '300W/02_Outdoor'), ()),
}
# The private set is also commonly unpacked without the `300W/` parent folder.
_ALTERNATIVES = {'300W/01_Indoor': '01_Indoor', '300W/02_Outdoor': '02_Outdoor'}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download 300-W from the iBUG website (https://ibug.doc.ic.ac.uk/resources/300-W/) and unpack it
so that the manual directory contains any of:
  afw/  helen/trainset/  helen/testset/  lfpw/trainset/  lfpw/testset/  ibug/
  300W/01_Indoor/  300W/02_Outdoor/      (the private test set; 01_Indoor/ at top level works too)
Each folder holds images (.jpg or .png) with a `.pts` file of the same base name (68 points,
1-based coordinates). Splits: train = afw + helen/trainset + lfpw/trainset (whichever exist),
common = lfpw/testset + helen/testset, challenging = ibug, full = common + challenging,
private = 01_Indoor + 02_Outdoor.
"""


def resolve_folder(manual_dir: str, folder: str) -> str | None:
  """Absolute path of a 300-W subfolder in `manual_dir`, or None when absent."""
  for candidate in (folder, _ALTERNATIVES.get(folder)):
    if candidate and os.path.isdir(os.path.join(manual_dir, candidate)):
      return os.path.join(manual_dir, candidate)
  return None


def split_folders(manual_dir: str, split: str) -> list[str]:
  """The folders of `split` present in `manual_dir`.

  Raises:
    common.DatasetFormatError: the split is unknown, its required folders are missing, or one
      of its folders has no .pts file.
  """
  if split not in SPLITS:
    raise common.DatasetFormatError(f'300-W has no split {split!r}; known: {sorted(SPLITS)}')
  required, optional = SPLITS[split]
  missing = [f for f in required if resolve_folder(manual_dir, f) is None]
  present = [f for f in required + optional if resolve_folder(manual_dir, f) is not None]
  if missing or not present:
    wanted = missing or list(optional)
    raise common.DatasetFormatError(
      f'300-W split {split!r} needs the folder(s) {wanted} in the manual directory '
      f'{manual_dir!r}, which were not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  for folder in present:
    path = resolve_folder(manual_dir, folder)
    if not any(n.lower().endswith('.pts') for n in os.listdir(path)):
      raise common.DatasetFormatError(
        f'300-W split {split!r}: folder {path} has no .pts files; expected images with a '
        '.pts file (68 points) of the same base name'
      )
  return present


def list_faces(folder: str) -> list[tuple[str, str]]:
  """(image path, .pts path) pairs of a 300-W folder, sorted by name.

  Raises:
    common.DatasetFormatError: a `.pts` file has no image with the same base name.
  """
  files = sorted(os.listdir(folder))
  by_base: dict[str, list[str]] = {}
  for name in files:
    base, ext = os.path.splitext(name)
    by_base.setdefault(base, []).append(ext)
  pairs = []
  for base, exts in by_base.items():
    if '.pts' not in exts:
      continue
    images = [e for e in exts if e.lower() in IMAGE_EXTENSIONS]
    if not images:
      raise common.DatasetFormatError(
        f'{os.path.join(folder, base)}.pts: no image with this base name '
        f'(expected one of {IMAGE_EXTENSIONS})'
      )
    pairs.append((os.path.join(folder, base + images[0]), os.path.join(folder, base + '.pts')))
  unannotated = sum(
    1
    for exts in by_base.values()
    if '.pts' not in exts and any(e.lower() in IMAGE_EXTENSIONS for e in exts)
  )
  if unannotated:
    logging.warning(
      '%s: %d image(s) without a .pts file are not part of 300-W; ignored.', folder, unannotated
    )
  return pairs


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the .pts files and images of every 300-W folder present.

  Used to detect a stale prepared dataset (`common.fingerprint_files`).
  """
  annotations, images = [], []
  for folder in sorted({f for required, optional in SPLITS.values() for f in required + optional}):
    path = resolve_folder(manual_dir, folder)
    if path:
      pts, pictures = common.pts_and_images(path, IMAGE_EXTENSIONS)
      annotations += pts
      images += pictures
  return common.fingerprint_files(manual_dir, annotations, images)


class The300w(common.LandmarkBuilder):
  """300-W faces, 68 points; face box = tight box of the ground-truth points."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official folder layout; bb_ground_truth face boxes.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = '300-W 68-point faces (afw, helen, lfpw, ibug, private indoor/outdoor).'
  HOMEPAGE = 'https://ibug.doc.ic.ac.uk/resources/300-W/'

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    generators = {}
    for split in SPLITS:
      try:
        folders = split_folders(manual_dir, split)
      except common.DatasetFormatError:
        continue  # Missing or empty splits are reported by `check_split` when requested.
      generators[split] = self._generate_examples(manual_dir, folders)
    if not generators:
      raise common.DatasetFormatError(
        f'no 300-W folder found in the manual directory {manual_dir!r}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return generators

  def _generate_examples(self, manual_dir: str, folders: list[str]):
    for folder in folders:
      pairs = list_faces(resolve_folder(manual_dir, folder))
      logging.info('300-W %s: %d faces', folder, len(pairs))
      for image_path, pts_path in pairs:
        landmarks = read_pts(pts_path, NUM_POINTS)
        box = common.check_box(common.tight_box(landmarks), pts_path, 'tight box of the points')
        image, _ = common.image_bytes_for_tfds(image_path)
        image_id = f'{folder}/{os.path.splitext(os.path.basename(image_path))[0]}'
        yield (
          image_id,
          {
            'image': image,
            'landmarks': landmarks,
            'visible': np.ones(NUM_POINTS, np.bool_),
            'bbox': box,
            'image_id': image_id,
          },
        )


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error when the files of `split` are not in `manual_dir`."""
  del builder_config
  split_folders(manual_dir, split)
