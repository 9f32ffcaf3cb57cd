"""AFW as multi-face photographs (test set of an unconstrained landmark scanner).

300-W re-annotated AFW with 68 points per face and ships it as one image file per face:
`<photo>_<k>.jpg` with `<photo>_<k>.pts` (1-based coordinates), where all files of one
`<photo>` are copies of the same photograph. This builder groups them back into one example
per photograph, with every annotated face of it, in the multi-face layout of the synthetic
scenes (`common.multiface_features`):

  image     the first file of the group (smallest k)
  faces     one entry per `.pts` of the group, ordered by k:
              landmarks [K, 2] 0-based pixels (`pts.read_pts` shifts the file's 1-based values)
              visible   [K] the point lies inside the image
              bbox      [4] tight box of the 68 points (the 300-W `bb_ground_truth`)
  image_id  `<photo>`

A file without the `_<k>` suffix is a photograph with a single face. Configs: `five`
(default; `landmarks.five_from_68`: eye centres, nose tip, mouth corners) and `full68`.
Single split `test`. The manual directory is the AFW folder itself or a 300-W folder with an
`afw/` subfolder. Note that 300-W counts AFW as training data: do not evaluate a model trained
on the 300-W `train` split (which includes `afw/`) on this set.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.core import landmarks as lm
from lmjax.data.datasets import common
from lmjax.data.datasets.pts import read_pts

SPLIT = 'test'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_FACE_SUFFIX = re.compile(r'^(?P<photo>.+)_(?P<k>\d+)$')

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download 300-W (https://ibug.doc.ic.ac.uk/resources/300-W/) and point the manual directory at
its `afw/` folder (or at the 300-W folder that contains `afw/`). The folder holds one image per
face, `<photo>_<k>.jpg` (or .png/.jpeg), with a `.pts` file of the same base name (68 points,
1-based coordinates); all files of one <photo> show the same photograph.
"""


@dataclasses.dataclass
class AfwConfig(tfds.core.BuilderConfig):
  """Landmark set: 5 (derived from the 68 points) or 68."""

  num_points: int = 5


@dataclasses.dataclass
class Photo:
  """The files of one photograph: (image path, .pts path) per face, ordered by face number."""

  name: str
  faces: list[tuple[str, str]]


def resolve_folder(manual_dir: str) -> str:
  """The AFW folder: `manual_dir` itself, or its `afw/` subfolder when it has no .pts files."""
  own = any(n.lower().endswith('.pts') for n in os.listdir(manual_dir))
  sub = os.path.join(manual_dir, 'afw')
  return sub if not own and os.path.isdir(sub) else manual_dir


def photo_of(stem: str) -> tuple[str, int]:
  """(photo name, face number) of a file stem: `123_2` -> ('123', 2); `abc` -> ('abc', 0)."""
  m = _FACE_SUFFIX.match(stem)
  return (m['photo'], int(m['k'])) if m else (stem, 0)


def list_photos(folder: str) -> list[Photo]:
  """Groups the image/.pts pairs of an AFW-style folder by photograph, sorted by name.

  Raises:
    common.DatasetFormatError: an image without a .pts file, a .pts file without an image, or
      no pair at all.
  """
  by_stem: dict[str, dict[str, str]] = {}
  for name in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(name)
    if ext.lower() in (*IMAGE_EXTENSIONS, '.pts'):
      by_stem.setdefault(stem, {}).setdefault(ext.lower(), os.path.join(folder, name))
  groups: dict[str, list[tuple[int, str, str, str]]] = {}
  for stem, files in by_stem.items():
    images = [files[e] for e in IMAGE_EXTENSIONS if e in files]
    if '.pts' not in files:
      raise common.DatasetFormatError(
        f'{images[0]}: image has no .pts file with the same base name ({stem}.pts)'
      )
    if not images:
      raise common.DatasetFormatError(
        f'{files[".pts"]}: no image with this base name (expected one of {IMAGE_EXTENSIONS})'
      )
    photo, k = photo_of(stem)
    groups.setdefault(photo, []).append((k, stem, images[0], files['.pts']))
  if not groups:
    raise common.DatasetFormatError(
      f'{folder}: no image/.pts pairs found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  return [
    Photo(photo, [(image, pts) for _, _, image, pts in sorted(groups[photo])])
    for photo in sorted(groups)
  ]


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the folder's .pts files and images.

  Used to detect a stale prepared dataset (`common.fingerprint_files`).
  """
  folder = resolve_folder(manual_dir)
  return common.fingerprint_files(folder, *common.pts_and_images(folder, IMAGE_EXTENSIONS))


def photo_example(photo: Photo, num_points: int) -> dict:
  """The tfds example of one photograph.

  Raises:
    common.DatasetFormatError: an unreadable image or .pts file, images of different sizes, or
      points whose tight box has no positive width and height.
  """
  first = photo.faces[0][0]
  image, size = common.image_bytes_for_tfds(first)
  points = []
  for path, pts_path in photo.faces:
    shape = size if path == first else common.image_bytes_for_tfds(path)[1]
    if shape != size:
      raise common.DatasetFormatError(
        f'{path}: image is {shape[1]}×{shape[0]} but {os.path.basename(first)} of the same '
        f'photo {photo.name!r} is {size[1]}×{size[0]}; all <photo>_<k> files must be the same '
        'photograph'
      )
    points.append(read_pts(pts_path, 68))
    common.check_box(common.tight_box(points[-1]), pts_path, 'tight box of the points')
  points68 = np.stack(points).astype(np.float32)
  labels = points68 if num_points == 68 else lm.five_from_68(points68)
  return {
    'image': image,
    'image_id': photo.name,
    'faces': {
      'landmarks': labels.astype(np.float32),
      'visible': common.inside_image(labels, *size),
      'bbox': common.tight_box(points68),
    },
  }


class AfwMultiface(common.LandmarkBuilder):
  """AFW photographs with all their 300-W-annotated faces (5 or 68 points)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'One example per photograph; 5-point and 68-point configs.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  MULTIFACE = True
  NUM_POINTS = 5
  DESCRIPTION = 'AFW (300-W 68-point annotation) grouped into multi-face photographs.'
  HOMEPAGE = 'https://ibug.doc.ic.ac.uk/resources/300-W/'
  BUILDER_CONFIGS = [
    AfwConfig(name='five', num_points=5, description='5 points derived from the 68'),
    AfwConfig(name='full68', num_points=68, description='the 68 annotated points'),
  ]
  DEFAULT_CONFIG_NAME = 'five'

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    photos = list_photos(resolve_folder(manual_dir))
    faces = sum(len(p.faces) for p in photos)
    self.info.metadata['num_faces'] = faces
    logging.info('AFW: %d photographs with %d faces', len(photos), faces)
    return {SPLIT: self._generate_examples(photos)}

  def _generate_examples(self, photos: list[Photo]):
    for photo in photos:
      yield photo.name, photo_example(photo, self.builder_config.num_points)


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error for an unknown split or a folder without usable pairs."""
  del builder_config
  if split != SPLIT:
    raise common.DatasetFormatError(f"afw_multiface has no split {split!r}; known: ['{SPLIT}']")
  list_photos(resolve_folder(manual_dir))
