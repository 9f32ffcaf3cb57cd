"""Shared pieces of the landmark tfds builders: feature specs, image encoding, base class.

Every builder yields the same per-face features:

  image     uint8 [H, W, 3] (stored encoded: PNG or the original JPEG bytes)
  landmarks float32 [K, 2], 0-based pixel coordinates (pixel centres on integers)
  visible   bool [K] (False only where the annotation says the point is not labelled)
  bbox      float32 [4] = (x0, y0, x1, y1), the protocol's face box
  image_id  text

Multi-face scenes (the synthetic `scene*` configs, `afw_multiface`, `composite_multiface`)
carry `image`, `image_id` and a sequence `faces` of {landmarks, visible, bbox}.

Images are handed to tfds already encoded so that building never needs TensorFlow; image files
are decoded with `lmjax.core.image_ops` (`read_image`, `to_rgb`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import cv2
import numpy as np
import tensorflow_datasets as tfds

from lmjax.core import image_ops


class DatasetFormatError(ValueError):
  """A file of a dataset is missing, unreadable or not in the expected format."""


def face_features(num_points: int) -> tfds.features.FeaturesDict:
  """Feature spec of a single-face example with `num_points` landmarks."""
  return tfds.features.FeaturesDict(
    {
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
      **_face_fields(num_points),
      'image_id': tfds.features.Text(),
    }
  )


def multiface_features(num_points: int) -> tfds.features.FeaturesDict:
  """Feature spec of a scene with any number of faces."""
  return tfds.features.FeaturesDict(
    {
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
      'faces': tfds.features.Sequence(_face_fields(num_points)),
      'image_id': tfds.features.Text(),
    }
  )


def _face_fields(num_points: int) -> dict:
  return {
    'landmarks': tfds.features.Tensor(shape=(num_points, 2), dtype=np.float32),
    'visible': tfds.features.Tensor(shape=(num_points,), dtype=np.bool_),
    'bbox': tfds.features.Tensor(shape=(4,), dtype=np.float32),
  }


def encode_png(image: np.ndarray) -> bytes:
  """uint8 RGB [H, W, 3] -> PNG bytes (lossless)."""
  ok, buf = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  if not ok:
    raise ValueError('PNG encoding failed')
  return buf.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
  """uint8 RGB [H, W, 3] -> JPEG bytes of the given quality (1-100)."""
  ok, buf = cv2.imencode(
    '.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
  )
  if not ok:
    raise ValueError('JPEG encoding failed')
  return buf.tobytes()


def image_bytes_for_tfds(path: str | os.PathLike) -> tuple[bytes, tuple[int, int]]:
  """Validated, tfds-ready encoded bytes of an image file, and its (height, width).

  Three-channel JPEG/PNG files are passed through unchanged (no re-compression); other
  files (greyscale, RGBA, PPM, 16-bit) are converted to RGB and stored as PNG.
  """
  path = os.fspath(path)
  raw = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
  if raw is None:
    raise DatasetFormatError(f'{path}: image file not found')
  decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
  if decoded is None:
    raise DatasetFormatError(f'{path}: cannot decode image (expected a JPEG/PNG/PPM file)')
  head = raw[:8].tobytes()
  is_jpeg_or_png = head[:3] == b'\xff\xd8\xff' or head == b'\x89PNG\r\n\x1a\n'
  if is_jpeg_or_png and decoded.ndim == 3 and decoded.shape[2] == 3 and decoded.dtype == np.uint8:
    return raw.tobytes(), decoded.shape[:2]
  try:
    rgb = image_ops.to_rgb(decoded, path)
  except image_ops.ImageFileError as e:
    raise DatasetFormatError(str(e)) from None
  return encode_png(rgb), rgb.shape[:2]


def tight_box(points: np.ndarray) -> np.ndarray:
  """Tight box (x0, y0, x1, y1) of points [..., K, 2] (300-W `bb_ground_truth`)."""
  return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1).astype(np.float32)


def inside_image(points: np.ndarray, height: int, width: int) -> np.ndarray:
  """bool [..., K]: the points [..., K, 2] lie on a pixel of an image of that size.

  Pixel centres are on integers, so the image covers [-0.5, width - 0.5) × [-0.5, height - 0.5).
  """
  x, y = points[..., 0], points[..., 1]
  return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def check_box(box: np.ndarray, where: str, rule: str) -> np.ndarray:
  """Validates a face box (x0, y0, x1, y1) and returns it as float32.

  Args:
    box: the box.
    where: file (and line or face) the box comes from, for the error message.
    rule: how the box was obtained, e.g. 'tight box of the points'.

  Raises:
    DatasetFormatError: a non-finite box or one without positive width and height.
  """
  box = np.asarray(box, np.float32)
  width, height = float(box[2] - box[0]), float(box[3] - box[1])
  if not (np.all(np.isfinite(box)) and width > 0 and height > 0):
    raise DatasetFormatError(
      f'{where}: face box ({rule}) has width {width:g} and height {height:g}; expected both > 0'
    )
  return box


def pts_and_images(folder: str, image_extensions: Iterable[str]) -> tuple[list[str], list[str]]:
  """(`.pts` paths, image paths) directly in `folder`, sorted: what `fingerprint_files` reads."""
  annotations, images = [], []
  extensions = {e.lower() for e in image_extensions}
  for name in sorted(os.listdir(folder)):
    ext = os.path.splitext(name)[1].lower()
    if ext == '.pts':
      annotations.append(os.path.join(folder, name))
    elif ext in extensions:
      images.append(os.path.join(folder, name))
  return annotations, images


def fingerprint_files(root: str, annotations: Iterable[str], images: Iterable[str] = ()) -> str:
  """Content fingerprint of a dataset's files; a prepared dataset is rebuilt when it changes.

  Annotation files (.pts, list files, .mat) are hashed by their bytes, so an edit that keeps
  the file size is seen. Images are identified by relative path, size and modification time
  (hashing the bytes of thousands of images would slow down every `load`). A listed path that
  does not exist is recorded as missing.

  Args:
    root: the manual directory; paths are recorded relative to it.
    annotations: annotation file paths.
    images: image file paths.

  Returns:
    '<absolute root>|<n> annotation files, <m> images|<blake2b hex digest>'.
  """
  root = os.path.abspath(root)
  digest = hashlib.blake2b(digest_size=20)
  counts = {}
  for kind, paths in (('annotation', annotations), ('image', images)):
    rels = sorted({os.path.relpath(os.path.join(root, p), root) for p in paths})
    counts[kind] = len(rels)
    for rel in rels:
      digest.update(f'{kind}\0{rel}\0'.encode())
      path = os.path.join(root, rel)
      try:
        if kind == 'annotation':
          with open(path, 'rb') as f:
            digest.update(hashlib.file_digest(f, 'blake2b').digest())
        else:
          stat = os.stat(path)
          digest.update(f'{stat.st_size}\0{stat.st_mtime_ns}'.encode())
      except FileNotFoundError:
        digest.update(b'missing')
      digest.update(b'\n')
  summary = f'{counts["annotation"]} annotation files, {counts["image"]} images'
  return f'{root}|{summary}|{digest.hexdigest()}'


def check_landmarks(landmarks: np.ndarray, num_points: int, where: str) -> np.ndarray:
  """Validates a [K, 2] landmark array and returns it as float32."""
  landmarks = np.asarray(landmarks, np.float32)
  if landmarks.shape != (num_points, 2):
    raise DatasetFormatError(
      f'{where}: expected {num_points} landmarks of (x, y), got an array of shape {landmarks.shape}'
    )
  if not np.all(np.isfinite(landmarks)):
    raise DatasetFormatError(f'{where}: landmark coordinates contain NaN/Inf')
  return landmarks


class LandmarkBuilder(tfds.core.GeneratorBasedBuilder):
  """Base class: builds `DatasetInfo` directly (no per-package metadata files needed)."""

  NUM_POINTS: int = 0
  MULTIFACE: bool = False
  # Keep the examples in generation order (tfds `disable_shuffling`; the builder's keys must
  # then be increasing ints), e.g. the frames of a video in order.
  KEEP_ORDER: bool = False
  DESCRIPTION: str = ''
  HOMEPAGE: str = ''

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    """Per-face features beyond the common ones (e.g. COFW's occlusion flags); none here."""
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    # A builder config may override the class defaults with `num_points` / `multiface`.
    num_points = getattr(self.builder_config, 'num_points', None) or self.NUM_POINTS
    multiface = getattr(self.builder_config, 'multiface', self.MULTIFACE)
    features = multiface_features(num_points) if multiface else face_features(num_points)
    if extra := self.extra_features():
      features = tfds.features.FeaturesDict({**features, **extra})
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.DESCRIPTION,
      features=features,
      homepage=self.HOMEPAGE,
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=self.KEEP_ORDER,
    )
