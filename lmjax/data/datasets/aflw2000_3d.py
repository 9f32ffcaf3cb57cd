"""AFLW2000-3D (68 points, large poses) from the official release: one `.jpg` and one `.mat`
per face.

Each `.mat` (MATLAB v5 or v7.3, both read by `matfile.read_variables`) holds `pt3d_68`
[3, 68] (x, y, z of the 68 points, 1-based MATLAB pixel coordinates; the first two rows are the
2-D landmarks, shifted to 0-based) and `Pose_Para` [1, 7] = pitch, yaw, roll in radians, then
the translation (3) and the scale of 3DDFA's fit. The face box is the tight box of the 68 2-D
points (the large-pose literature's normaliser √(w·h) is then `nme_box`); every point counts
(`visible` all True: the 3-D fit places the hidden contour too). Split `test` only.

The extra feature `head_pose` float32 [3] is (yaw, pitch, roll) in degrees in lmjax's
convention (`lmjax.core.head_pose`: yaw > 0 turns the nose to the image's right, pitch > 0 the
face up, roll > 0 clockwise), converted from `Pose_Para` through the rotation matrix of 3DDFA's
`RotationMatrix.m` (R = Rx Ry Rz with 3DDFA's signs, model y axis up): `pose_from_pose_para`.
For a single angle this is yaw → −yaw, pitch → pitch, roll → roll. The |yaw| bins of the
protocol do not depend on the sign.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from lmjax.core import head_pose
from lmjax.data.datasets import common, matfile

NUM_POINTS = 68
SPLIT = 'test'
FOLDER = 'AFLW2000'
VARIABLES = ('pt3d_68', 'Pose_Para')

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download AFLW2000-3D (`AFLW2000-3D.zip`, http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm)
and unpack it into the manual directory, so that it holds `AFLW2000/image00002.jpg`,
`AFLW2000/image00002.mat`, ... (2,000 faces; the .jpg/.mat pairs directly in the manual
directory work too). Split: test.
"""

_FLIP_Y = np.diag([1.0, -1.0, 1.0])  # 3DDFA's model frame (y up) <-> lmjax's head frame (y down)


def pose_from_pose_para(pitch: float, yaw: float, roll: float) -> np.ndarray:
  """(yaw, pitch, roll) in degrees, lmjax's convention, of 3DDFA angles in radians."""
  (cx, cy, cz), (sx, sy, sz) = np.cos([pitch, yaw, roll]), np.sin([pitch, yaw, roll])
  rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
  ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
  rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
  return head_pose.euler_angles(_FLIP_Y @ (rx @ ry @ rz) @ _FLIP_Y)


def face_folder(manual_dir: str) -> str:
  """`<manual_dir>/AFLW2000` when present, else the manual directory itself."""
  nested = os.path.join(manual_dir, FOLDER)
  return nested if os.path.isdir(nested) else manual_dir


def list_faces(manual_dir: str) -> list[tuple[str, str]]:
  """(image path, .mat path) of every face, sorted by name.

  Raises:
    common.DatasetFormatError: no .mat file, or a .mat file without its .jpg.
  """
  folder = face_folder(manual_dir)
  names = sorted(os.listdir(folder))
  mats = [n for n in names if n.lower().endswith('.mat')]
  if not mats:
    raise common.DatasetFormatError(
      f'AFLW2000-3D: no .mat file in {folder}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  pairs = []
  for name in mats:
    image = os.path.join(folder, os.path.splitext(name)[0] + '.jpg')
    if not os.path.isfile(image):
      raise common.DatasetFormatError(
        f'{os.path.join(folder, name)}: no image with this base name (expected {image})'
      )
    pairs.append((image, os.path.join(folder, name)))
  return pairs


def read_face(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(landmarks [68, 2] 0-based, head_pose [3] degrees) of one `.mat` file.

  Raises:
    common.DatasetFormatError: unreadable file, missing variable or wrong shape (file named).
  """
  values = matfile.read_variables(path, VARIABLES)
  points, pose = values['pt3d_68'], values['Pose_Para'].reshape(-1)
  if points.shape != (3, NUM_POINTS):
    raise common.DatasetFormatError(
      f'{path}: pt3d_68 has shape {points.shape}; expected [3, 68] (x, y, z rows)'
    )
  if pose.shape != (7,) or not np.all(np.isfinite(pose[:3])):
    raise common.DatasetFormatError(
      f'{path}: Pose_Para has {pose.size} values {pose[:3].tolist()}...; expected [1, 7] '
      '(pitch, yaw, roll in radians, translation, scale)'
    )
  landmarks = common.check_landmarks(points[:2].T - 1.0, NUM_POINTS, path)
  return landmarks, pose_from_pose_para(*pose[:3]).astype(np.float32)


def fingerprint(manual_dir: str) -> str:
  """Content fingerprint of the .mat files and images (`common.fingerprint_files`)."""
  folder = face_folder(manual_dir)
  names = sorted(os.listdir(folder))
  mats = [os.path.join(folder, n) for n in names if n.lower().endswith('.mat')]
  images = [os.path.join(folder, n) for n in names if n.lower().endswith('.jpg')]
  return common.fingerprint_files(manual_dir, mats, images)


def check_split(manual_dir: str, split: str, builder_config=None) -> None:
  """Raises a clear error for a split other than `test` or a folder without faces."""
  del builder_config
  if split != SPLIT:
    raise common.DatasetFormatError(f"AFLW2000-3D has no split {split!r}; known: ['{SPLIT}']")
  list_faces(manual_dir)


class Aflw20003d(common.LandmarkBuilder):
  """AFLW2000-3D faces, 68 points, tight landmark boxes; extra feature `head_pose` [3]."""

  name = 'aflw2000_3d'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official .jpg/.mat pairs; 2-D pt3d_68; head pose in degrees.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  NUM_POINTS = NUM_POINTS
  DESCRIPTION = 'AFLW2000-3D: 2,000 large-pose AFLW faces with 3DDFA-fitted 68 points and pose.'
  HOMEPAGE = 'http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm'

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'head_pose': tfds.features.Tensor(shape=(3,), dtype=np.float32)}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    return {SPLIT: self._generate_examples(list_faces(manual_dir))}

  def _generate_examples(self, pairs: list[tuple[str, str]]):
    for image_path, mat_path in pairs:
      landmarks, pose = read_face(mat_path)
      box = common.check_box(common.tight_box(landmarks), mat_path, 'tight box of the points')
      image, _ = common.image_bytes_for_tfds(image_path)
      image_id = os.path.splitext(os.path.basename(mat_path))[0]
      yield (
        image_id,
        {
          'image': image,
          'landmarks': landmarks,
          'visible': np.ones(NUM_POINTS, np.bool_),
          'bbox': box,
          'head_pose': pose,
          'image_id': image_id,
        },
      )
