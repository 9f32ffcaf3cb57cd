"""FDDB (Jain & Learned-Miller 2010): 5,171 faces as ellipses in 2,845 images, ten folds.

The manual directory holds the two official archives unpacked side by side:

  FDDB-folds/FDDB-fold-NN.txt              image paths of fold NN (01 .. 10), one per line,
                                           relative to originalPics/ and without `.jpg`
  FDDB-folds/FDDB-fold-NN-ellipseList.txt  per image: its path, the face count, then one line
                                           per face `major_axis_radius minor_axis_radius angle
                                           center_x center_y 1` (angle in radians)
  originalPics/<year>/<month>/<day>/big/img_<n>.jpg

One example per image, in fold order (shuffling is off, so the ten folds are consecutive runs of
the single stored split `test`): `image`, `image_id` (the path as written in the lists), `fold`
(1 .. 10) and `faces`, a sequence of

  ellipse  float32 [5] (major radius, minor radius, angle in radians, centre x, centre y), as
           written: the major axis points along `angle` from the x axis (y down)
  bbox     float32 [4] (x0, y0, x1, y1), the ellipse's axis-aligned bounding box clipped to the
           image's pixel centres [0, W - 1] × [0, H - 1]

Coordinates are the files' own: pixel centres on integers, as everywhere in lmjax. Splits:
`test` (every fold present) and, through `datasets.load_split`, `fold_01` .. `fold_10`, views
of `test` (`fold_indices`). The evaluation protocol is `lmjax.eval.fddb_roc`.
"""

from __future__ import annotations

import glob
import math
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.data.datasets import common

SPLIT = 'test'
NUM_FOLDS = 10
FOLD_SPLITS = {f'fold_{n:02d}': n for n in range(1, NUM_FOLDS + 1)}
FOLD_FOLDER = 'FDDB-folds'
IMAGE_FOLDER = 'originalPics'
_FOLD_LIST = re.compile(r'^FDDB-fold-(?P<n>\d\d)\.txt$')
_FACE_FIELDS = 'major_axis_radius minor_axis_radius angle center_x center_y 1'

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download FDDB (http://vis-www.cs.umass.edu/fddb/): `FDDB-folds.tgz` and `originalPics.tar.gz`,
and unpack both into the manual directory, so that it holds
  FDDB-folds/FDDB-fold-01.txt ... FDDB-fold-10.txt                         (image paths)
  FDDB-folds/FDDB-fold-01-ellipseList.txt ... FDDB-fold-10-ellipseList.txt (face ellipses)
  originalPics/<year>/<month>/<day>/big/img_<n>.jpg
"""


def fold_files(manual_dir: str) -> dict[int, tuple[str, str]]:
  """Fold number -> (image list, ellipse list) of the folds in `manual_dir`/FDDB-folds.

  Raises:
    common.DatasetFormatError: no fold list, or a fold list without its ellipse list.
  """
  folder = os.path.join(manual_dir, FOLD_FOLDER)
  found = {}
  for path in sorted(glob.glob(os.path.join(folder, 'FDDB-fold-*.txt'))):
    m = _FOLD_LIST.match(os.path.basename(path))
    if not m:
      continue  # the ellipse lists themselves
    ellipses = os.path.join(folder, f'FDDB-fold-{m["n"]}-ellipseList.txt')
    if not os.path.isfile(ellipses):
      raise common.DatasetFormatError(f'{path}: fold list without its ellipse list {ellipses}')
    n = int(m['n'])
    if not 1 <= n <= NUM_FOLDS:
      raise common.DatasetFormatError(f'{path}: fold number {n}; expected 01 .. {NUM_FOLDS}')
    found[n] = (path, ellipses)
  if not found:
    raise common.DatasetFormatError(
      f'{folder}: no FDDB-fold-NN.txt found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  return found


def read_fold_list(path: str) -> list[tuple[int, str]]:
  """(line number, image path) of every non-empty line of a fold list."""
  with open(path, encoding='utf-8') as f:
    return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def _number(token: str, where: str, field: str) -> float:
  try:
    value = float(token)
  except ValueError:
    raise common.DatasetFormatError(f'{where}: {field} {token!r} is not a number') from None
  if not math.isfinite(value):
    raise common.DatasetFormatError(f'{where}: {field} is {token}; expected a finite number')
  return value


def parse_ellipse_list(path: str) -> list[dict]:
  """The images of an ellipse list: {lineno, image, ellipses [F, 5]} in file order.

  Raises:
    common.DatasetFormatError: a face count that is not a whole number >= 0, fewer face lines
      than the count (the next image's path taken for a face), a face line without the 6 fields
      or with a non-number, a radius <= 0, or a last field other than 1 (file and line named).
  """
  with open(path, encoding='utf-8') as f:
    lines = [(i, line.split()) for i, line in enumerate(f, 1)]
  lines = [(i, tokens) for i, tokens in lines if tokens]
  images, at = [], 0
  while at < len(lines):
    lineno, tokens = lines[at]
    image = ' '.join(tokens)
    if at + 1 >= len(lines):
      raise common.DatasetFormatError(
        f'{path}:{lineno}: image {image!r} has no face-count line after it'
      )
    count_line, count_tokens = lines[at + 1]
    count = ' '.join(count_tokens)
    if not count.isdigit():
      raise common.DatasetFormatError(
        f'{path}:{count_line}: expected the face count of {image!r} (a whole number), got {count!r}'
      )
    ellipses = []
    for k in range(int(count)):
      if at + 2 + k >= len(lines):
        raise common.DatasetFormatError(
          f'{path}:{count_line}: {image!r} declares {count} faces but the file ends after {k}'
        )
      face_line, fields = lines[at + 2 + k]
      where = f'{path}:{face_line}'
      if len(fields) != 6:
        raise common.DatasetFormatError(
          f'{where}: expected face {k + 1} of {count} of {image!r} as 6 fields ({_FACE_FIELDS}), '
          f'got {len(fields)}: {" ".join(fields)!r}'
        )
      names = [*_FACE_FIELDS.split()[:5], 'last field']
      values = [_number(t, where, name) for t, name in zip(fields, names, strict=True)]
      if values[5] != 1:
        raise common.DatasetFormatError(f'{where}: last field is {fields[5]}; expected 1')
      if values[0] <= 0 or values[1] <= 0:
        raise common.DatasetFormatError(
          f'{where}: ellipse radii {fields[0]} and {fields[1]}; expected both > 0'
        )
      ellipses.append(values[:5])
    images.append({'lineno': lineno, 'image': image, 'ellipses': np.array(ellipses, np.float32)})
    at += 2 + int(count)
  return images


def ellipse_box(ellipses: np.ndarray) -> np.ndarray:
  """[F, 4] axis-aligned bounding boxes (x0, y0, x1, y1) of ellipses [F, 5] (a, b, θ, cx, cy)."""
  e = np.asarray(ellipses, np.float64).reshape(-1, 5)
  a, b, theta, cx, cy = e.T
  half_w = np.hypot(a * np.cos(theta), b * np.sin(theta))
  half_h = np.hypot(a * np.sin(theta), b * np.cos(theta))
  return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def read_fold(fold: int, image_list: str, ellipse_list: str) -> list[dict]:
  """The images of one fold: the ellipse list checked against the fold's image list.

  Raises:
    common.DatasetFormatError: an empty fold list, or the two lists naming different images
      (or the same in another order).
  """
  paths = read_fold_list(image_list)
  if not paths:
    raise common.DatasetFormatError(f'{image_list}: fold list has no images; expected one a line')
  images = parse_ellipse_list(ellipse_list)
  for k in range(max(len(paths), len(images))):
    if k >= len(images):
      raise common.DatasetFormatError(
        f'{ellipse_list}: ends after {len(images)} images, but {image_list}:{paths[k][0]} lists '
        f'{paths[k][1]!r}; expected an entry for every image of the fold list'
      )
    where = f'{ellipse_list}:{images[k]["lineno"]}'
    if k >= len(paths):
      raise common.DatasetFormatError(
        f'{where}: image {images[k]["image"]!r} is not in {image_list} ({len(paths)} images)'
      )
    if paths[k][1] != images[k]['image']:
      raise common.DatasetFormatError(
        f'{where}: image {k + 1} is {images[k]["image"]!r} but {image_list}:{paths[k][0]} has '
        f"{paths[k][1]!r}; the ellipse list must annotate the fold list's images in its order"
      )
  for image in images:
    image['fold'] = fold
    image['where'] = f'{ellipse_list}:{image["lineno"]}'
  return images


def image_path(manual_dir: str, image: str) -> str:
  return os.path.join(manual_dir, IMAGE_FOLDER, image + '.jpg')


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the fold and ellipse lists and of the images the fold lists name."""
  lists, images = [], []
  for image_list, ellipse_list in fold_files(manual_dir).values():
    lists += [image_list, ellipse_list]
    images += [image_path(manual_dir, p) for _, p in read_fold_list(image_list)]
  return common.fingerprint_files(manual_dir, lists, images)


def image_example(manual_dir: str, image: dict) -> dict:
  """The tfds example of one annotated image.

  Raises:
    common.DatasetFormatError: a missing or unreadable image, or an ellipse whose bounding box
      lies outside the image (file and line of the image's entry named).
  """
  path = image_path(manual_dir, image['image'])
  if not os.path.isfile(path):
    raise common.DatasetFormatError(
      f'{image["where"]}: image {path} not found (paths are relative to {IMAGE_FOLDER}/, '
      'without .jpg)'
    )
  encoded, (height, width) = common.image_bytes_for_tfds(path)
  boxes = ellipse_box(image['ellipses'])
  boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1])
  for k, box in enumerate(boxes):
    rule = f'bounding box of ellipse {k + 1} clipped to the {width}×{height} image'
    common.check_box(box, image['where'], rule)
  return {
    'image': encoded,
    'image_id': image['image'],
    'fold': image['fold'],
    'faces': {'ellipse': image['ellipses'].reshape(-1, 5), 'bbox': boxes.astype(np.float32)},
  }


def decode_faces(example) -> dict[str, np.ndarray]:
  """{ellipse [F, 5], bbox [F, 4]} float32 of a loaded example (F may be 0)."""
  faces = example['faces']
  return {
    'ellipse': np.asarray(faces['ellipse'], np.float32).reshape(-1, 5),
    'bbox': np.asarray(faces['bbox'], np.float32).reshape(-1, 4),
  }


def fold_indices(source, split: str) -> np.ndarray:
  """Example indices of the view `fold_NN` of a loaded `test` split.

  Raises:
    common.DatasetFormatError: an unknown split or a fold that was not in the manual directory.
  """
  if split not in FOLD_SPLITS:
    raise common.DatasetFormatError(f'FDDB has no split {split!r}; known: {known_splits()}')
  sizes = {int(k): int(v) for k, v in source.dataset_info.metadata['fold_sizes'].items()}
  fold = FOLD_SPLITS[split]
  if fold not in sizes:
    raise common.DatasetFormatError(
      f'FDDB split {split!r}: FDDB-folds/FDDB-fold-{fold:02d}.txt was not in the manual '
      f'directory when it was prepared (folds present: {sorted(sizes)})'
    )
  start = sum(n for f, n in sizes.items() if f < fold)
  return np.arange(start, start + sizes[fold])


def known_splits() -> list[str]:
  return [SPLIT, *FOLD_SPLITS]


class Fddb(tfds.core.GeneratorBasedBuilder):
  """FDDB images with their face ellipses and the ellipses' bounding boxes (no landmarks)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Ten folds in order; ellipses as written; clipped ellipse boxes.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    faces = {
      'ellipse': tfds.features.Tensor(shape=(5,), dtype=np.float32),
      'bbox': tfds.features.Tensor(shape=(4,), dtype=np.float32),
    }
    features = {
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
      'image_id': tfds.features.Text(),
      'fold': tfds.features.Scalar(dtype=np.int32),
      'faces': tfds.features.Sequence(faces),
    }
    return tfds.core.DatasetInfo(
      builder=self,
      description='FDDB face-detection benchmark: face ellipses in ten folds.',
      features=tfds.features.FeaturesDict(features),
      homepage='http://vis-www.cs.umass.edu/fddb/',
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=True,  # folds stay consecutive runs (`fold_indices`)
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    images, seen = [], {}
    for fold, (image_list, ellipse_list) in sorted(fold_files(manual_dir).items()):
      for image in read_fold(fold, image_list, ellipse_list):
        if image['image'] in seen:
          raise common.DatasetFormatError(
            f'{image["where"]}: image {image["image"]!r} is already annotated at '
            f'{seen[image["image"]]}'
          )
        seen[image['image']] = image['where']
        images.append(image)
    sizes = {}
    for image in images:
      sizes[str(image['fold'])] = sizes.get(str(image['fold']), 0) + 1
    self.info.metadata['fold_sizes'] = sizes
    self.info.metadata['num_faces'] = sum(len(i['ellipses']) for i in images)
    logging.info('FDDB: %d images in folds %s', len(images), sorted(sizes))
    return {SPLIT: self._generate_examples(manual_dir, images)}

  def _generate_examples(self, manual_dir: str, images: list[dict]):
    for image in images:
      yield image['image'], image_example(manual_dir, image)


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error for an unknown split or a folder without fold lists."""
  del builder_config
  if split != SPLIT:
    raise common.DatasetFormatError(
      f'FDDB stores one split {SPLIT!r}; {sorted(FOLD_SPLITS)[0]} .. {sorted(FOLD_SPLITS)[-1]} '
      f'are its folds (datasets.load_split); got {split!r}'
    )
  fold_files(manual_dir)
