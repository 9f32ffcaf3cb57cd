"""COFW (29 points) from the MATLAB v7.3 (= HDF5) files of the colour release.

`COFW_train_color.mat` holds `IsTr` (cell array of images), `bboxesTr` [N, 4] = (x, y, w, h) and
`phisTr` [N, 87] = 29 x, 29 y, 29 occlusion flags; `COFW_test_color.mat` the same with a `T`
suffix (`IsT`, `bboxesT`, `phisT`). MATLAB coordinates are 1-based and are shifted to 0-based.
Every point is annotated, occluded or not, so `visible` is all True; the occlusion flags are
kept in the extra feature `occluded`. The face box is the dataset's box.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from lmjax.data.datasets import common

NUM_POINTS = 29
FILES = {
  'train': ('COFW_train_color.mat', 'Tr'),
  'test': ('COFW_test_color.mat', 'T'),
}
MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download COFW (colour version, http://www.vision.caltech.edu/xpburgos/ICCV13/) and place
`COFW_train_color.mat` and/or `COFW_test_color.mat` (MATLAB v7.3 files) in the manual directory.
"""


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error when the file of `split` is not in `manual_dir`."""
  del builder_config
  if split not in FILES:
    raise common.DatasetFormatError(f'COFW has no split {split!r}; known: {sorted(FILES)}')
  path = os.path.join(manual_dir, FILES[split][0])
  if not os.path.isfile(path):
    raise common.DatasetFormatError(
      f'COFW split {split!r} needs {path}, which was not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the .mat files (they hold the images too).

  Used to detect a stale prepared dataset (`common.fingerprint_files`).
  """
  paths = [os.path.join(manual_dir, name) for name, _ in FILES.values()]
  return common.fingerprint_files(manual_dir, [p for p in paths if os.path.isfile(p)])


def read_mat(path: str, suffix: str):
  """Yields (index, image uint8 [H, W, 3], landmarks [29, 2], occluded [29], bbox [4]).

  Raises:
    common.DatasetFormatError: the file is not HDF5, lacks the expected variables/shapes, holds
      no face, or has a box without positive width and height.
  """
  import h5py  # only COFW needs it

  try:
    f = h5py.File(path, 'r')
  except OSError:
    raise common.DatasetFormatError(
      f'{path}: cannot open as HDF5 (expected a MATLAB v7.3 .mat file)'
    ) from None
  with f:
    names = {f'Is{suffix}', f'bboxes{suffix}', f'phis{suffix}'}
    missing = sorted(names - set(f.keys()))
    if missing:
      raise common.DatasetFormatError(
        f'{path}: missing variable(s) {missing}; found {sorted(f.keys())}'
      )
    refs = np.asarray(f[f'Is{suffix}']).reshape(-1)
    phis = _as_rows(np.asarray(f[f'phis{suffix}'], np.float64), 3 * NUM_POINTS, path, 'phis')
    boxes = _as_rows(np.asarray(f[f'bboxes{suffix}'], np.float64), 4, path, 'bboxes')
    if not len(refs) == len(phis) == len(boxes):
      raise common.DatasetFormatError(
        f'{path}: {len(refs)} images, {len(phis)} phis rows and {len(boxes)} boxes differ'
      )
    if not len(refs):
      raise common.DatasetFormatError(
        f'{path}: Is{suffix}, phis{suffix} and bboxes{suffix} hold no faces; expected at least one'
      )
    for i, ref in enumerate(refs):
      image = np.asarray(f[ref]).T  # MATLAB is column-major: (W, H) or (3, W, H) on disk
      where = f'{path}: image {i + 1}'
      if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise common.DatasetFormatError(
          f'{where}: expected uint8 [H, W(, 3)], got {image.dtype} {image.shape}'
        )
      rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
      points = np.stack([phis[i, :NUM_POINTS], phis[i, NUM_POINTS : 2 * NUM_POINTS]], axis=1)
      points = common.check_landmarks(points - 1.0, NUM_POINTS, where)
      x, y, w, h = boxes[i]
      box = np.array([x - 1, y - 1, x - 1 + w, y - 1 + h], np.float32)
      common.check_box(box, where, f'bboxes{suffix} row (x, y, w, h)')
      yield i, np.ascontiguousarray(rgb), points, phis[i, 2 * NUM_POINTS :] > 0.5, box


def _as_rows(array: np.ndarray, width: int, path: str, name: str) -> np.ndarray:
  """[N, width] from an HDF5 matrix stored either way round."""
  if array.ndim == 2 and array.shape[1] == width:
    return array
  if array.ndim == 2 and array.shape[0] == width:
    return array.T
  raise common.DatasetFormatError(f'{path}: {name} has shape {array.shape}, expected N×{width}')


class Cofw(common.LandmarkBuilder):
  """COFW faces, 29 points, dataset face boxes; extra feature `occluded`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Colour .mat files; 0-based coordinates; occlusion flags.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = 'COFW 29-point occluded faces (1,345 train / 507 test).'
  HOMEPAGE = 'http://www.vision.caltech.edu/xpburgos/ICCV13/'

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'occluded': tfds.features.Tensor(shape=(NUM_POINTS,), dtype=np.bool_)}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    generators = {}
    for split, (name, suffix) in FILES.items():
      path = os.path.join(manual_dir, name)
      if os.path.isfile(path):
        generators[split] = self._generate_examples(path, suffix, split)
    if not generators:
      raise common.DatasetFormatError(
        f'no COFW .mat file in the manual directory {manual_dir!r}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    return generators

  def _generate_examples(self, path: str, suffix: str, split: str):
    for i, image, points, occluded, box in read_mat(path, suffix):
      image_id = f'{split}/{i + 1:04d}'
      yield (
        image_id,
        {
          'image': common.encode_png(image),
          'landmarks': points,
          'visible': np.ones(NUM_POINTS, np.bool_),
          'occluded': occluded,
          'bbox': box,
          'image_id': image_id,
        },
      )
