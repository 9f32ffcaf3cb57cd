"""WFLW (98 points) from the official lists `list_98pt_rect_attr_{train,test}.txt`.

Each line of a list is one face: 196 numbers x0 y0 … x97 y97, the face rectangle
x_min y_min x_max y_max, six 0/1 attribute flags (pose, expression, illumination, make-up,
occlusion, blur) and the image path relative to `WFLW_images/`. Coordinates are used exactly as
written (WFLW's are sub-pixel floats; predictions are reported in the same frame). The face box
is the given rectangle; every point is annotated (`visible` all True); the flags are the extra
feature `attributes` bool [6] (`ATTRIBUTES` order), from which the evaluator reports the six
test subsets (`lmjax.eval.protocols`). An image with several faces has one line per face; the
image id is `<image path without extension>#<line number>`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from lmjax.data.datasets import common

NUM_POINTS = 98
ATTRIBUTES = ('pose', 'expression', 'illumination', 'make_up', 'occlusion', 'blur')
LISTS = {'train': 'list_98pt_rect_attr_train.txt', 'test': 'list_98pt_rect_attr_test.txt'}
LIST_FOLDER = os.path.join('WFLW_annotations', 'list_98pt_rect_attr_train_test')
IMAGE_FOLDER = 'WFLW_images'
_TOKENS = 2 * NUM_POINTS + 4 + len(ATTRIBUTES) + 1
_FIELDS = '196 coordinates, 4 rectangle values, 6 attribute flags, image path'

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download WFLW (https://wywu.github.io/projects/LAB/WFLW.html): `WFLW_images.tar.gz` and
`WFLW_annotations.tar.gz`, and unpack both into the manual directory, so that it holds
  WFLW_images/<event folder>/<image>.jpg
  WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt   (train, 7,500)
  WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt    (test, 2,500)
(the two lists directly in the manual directory work too).
"""


def list_path(manual_dir: str, split: str) -> str | None:
  """Path of the list of `split` in `manual_dir` (official subfolder or top level), or None."""
  for folder in (LIST_FOLDER, ''):
    path = os.path.join(manual_dir, folder, LISTS[split])
    if os.path.isfile(path):
      return path
  return None


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error when the list or the image folder of `split` is missing."""
  del builder_config
  if split not in LISTS:
    raise common.DatasetFormatError(f'WFLW has no split {split!r}; known: {sorted(LISTS)}')
  if list_path(manual_dir, split) is None:
    raise common.DatasetFormatError(
      f'WFLW split {split!r} needs {os.path.join(manual_dir, LIST_FOLDER, LISTS[split])}, which '
      f'was not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  if not os.path.isdir(os.path.join(manual_dir, IMAGE_FOLDER)):
    raise common.DatasetFormatError(
      f'WFLW: the image folder {os.path.join(manual_dir, IMAGE_FOLDER)} was not found.\n'
      f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )


def parse_list(path: str) -> list[dict]:
  """The faces of a WFLW list: {lineno, landmarks [98, 2], bbox [4], attributes [6], image}.

  Raises:
    common.DatasetFormatError: a line with the wrong number of fields, a non-number, an
      attribute flag other than 0/1, an empty rectangle, or a list without faces (file and
      line named).
  """
  faces = []
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      tokens = line.split()
      if not tokens:
        continue
      where = f'{path}:{lineno}'
      if len(tokens) != _TOKENS:
        raise common.DatasetFormatError(
          f'{where}: expected {_TOKENS} fields ({_FIELDS}), got {len(tokens)}'
        )
      try:
        values = np.array([float(t) for t in tokens[: _TOKENS - 1]], np.float64)
      except ValueError:
        raise common.DatasetFormatError(
          f'{where}: the first {_TOKENS - 1} fields must be numbers ({_FIELDS})'
        ) from None
      flags = values[2 * NUM_POINTS + 4 :]
      if not np.isin(flags, (0, 1)).all():
        raise common.DatasetFormatError(
          f'{where}: attribute flags must be 0 or 1 ({", ".join(ATTRIBUTES)}), got {flags.tolist()}'
        )
      rule = 'the list rectangle x_min y_min x_max y_max'
      faces.append(
        {
          'lineno': lineno,
          'landmarks': common.check_landmarks(
            values[: 2 * NUM_POINTS].reshape(NUM_POINTS, 2), NUM_POINTS, where
          ),
          'bbox': common.check_box(values[2 * NUM_POINTS : 2 * NUM_POINTS + 4], where, rule),
          'attributes': flags.astype(np.bool_),
          'image': tokens[-1].replace('\\', '/'),
        }
      )
  if not faces:
    raise common.DatasetFormatError(f'{path}: WFLW list has no faces; expected one line per face')
  return faces


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the lists and the images they name (`common.fingerprint_files`)."""
  lists, images = [], set()
  for split in LISTS:
    path = list_path(manual_dir, split)
    if path:
      lists.append(path)
      with open(path, encoding='utf-8', errors='replace') as f:
        images.update(
          os.path.join(IMAGE_FOLDER, line.split()[-1].replace('\\', '/'))
          for line in f
          if line.strip()
        )
  return common.fingerprint_files(manual_dir, lists, images)


class Wflw(common.LandmarkBuilder):
  """WFLW faces, 98 points, list face rectangles; extra feature `attributes` [6]."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official lists; coordinates as written; attribute flags.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = 'WFLW 98-point faces (7,500 train / 2,500 test) with six attribute flags.'
  HOMEPAGE = 'https://wywu.github.io/projects/LAB/WFLW.html'

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'attributes': tfds.features.Tensor(shape=(len(ATTRIBUTES),), dtype=np.bool_)}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    self.info.metadata['attributes'] = list(ATTRIBUTES)
    generators = {}
    for split in LISTS:
      path = list_path(manual_dir, split)
      if path is not None:  # a missing list is reported by `check_split` when requested
        generators[split] = self._generate_examples(manual_dir, path)
    if not generators:
      raise common.DatasetFormatError(
        f'no WFLW list found in the manual directory {manual_dir!r}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return generators

  def _generate_examples(self, manual_dir: str, path: str):
    for face in parse_list(path):
      image_path = os.path.join(manual_dir, IMAGE_FOLDER, face['image'])
      if not os.path.isfile(image_path):
        raise common.DatasetFormatError(
          f'{path}:{face["lineno"]}: image {image_path} not found (paths are relative to '
          f'{IMAGE_FOLDER}/)'
        )
      image, _ = common.image_bytes_for_tfds(image_path)
      image_id = f'{os.path.splitext(face["image"])[0]}#{face["lineno"]}'
      yield (
        image_id,
        {
          'image': image,
          'landmarks': face['landmarks'],
          'visible': np.ones(NUM_POINTS, np.bool_),
          'bbox': face['bbox'],
          'attributes': face['attributes'],
          'image_id': image_id,
        },
      )
