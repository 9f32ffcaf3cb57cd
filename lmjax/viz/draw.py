"""Landmarks drawn on images, and image files in and out, for notebooks and command lines.

`draw_landmarks` draws points as small anti-aliased dots (coloured per MCL cluster when the
landmark schema has clusters) and the face box as a thin white line; coordinates are image
pixels with pixel centres on integers (the lmjax convention). The helpers read and write image
files, parse and check `x0,y0,x1,y1` boxes and list the images of a folder with one-line errors
(`DrawError`). The command line over them is `python -m lmjax.draw`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from lmjax.core import head_pose, image_ops, landmarks

# Distinct colours (RGB) that stay visible on skin, hair and dark backgrounds; cluster i uses
# PALETTE[i % len(PALETTE)]. Points of a schema without clusters use POINT_COLOR.
PALETTE = (
  (255, 70, 70),  # red
  (70, 170, 255),  # blue
  (255, 215, 0),  # yellow
  (255, 80, 255),  # magenta
  (0, 230, 120),  # green
  (0, 235, 235),  # cyan
  (255, 150, 30),  # orange
  (185, 130, 255),  # violet
)


POINT_COLOR = (0, 235, 120)


BOX_COLOR = (255, 255, 255)


OUTLINE_COLOR = (0, 0, 0)


IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.pgm', '.png', '.ppm', '.tif', '.tiff', '.webp')


_SHIFT = 4  # cv2 fractional bits: coordinates and radii are drawn at 1/16 pixel precision


_ONE = 1 << _SHIFT


class DrawError(ValueError):
  """A bad command-line input (unreadable image, malformed box, empty folder)."""


def point_colors(num_points: int, schema: landmarks.Schema | None = None) -> np.ndarray:
  """[K, 3] uint8 RGB colour of every point: per MCL cluster, or one colour without clusters."""
  if schema is None or not schema.clusters:
    return np.tile(np.array(POINT_COLOR, np.uint8), (num_points, 1))
  return np.array(PALETTE, np.uint8)[schema.cluster_of() % len(PALETTE)]


def _as_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
    raise ValueError(
      f'image: expected uint8 [H, W, 3] RGB, [H, W, 1] or [H, W] grey, '
      f'got {image.dtype} {image.shape}'
    )
  if image.ndim == 2:
    return np.repeat(image[:, :, None], 3, axis=2)
  return image.copy()


def _fixed(values: np.ndarray) -> list[int]:
  """Pixel coordinates as cv2 fixed-point integers (pixel centres on integers)."""
  return [round(float(v) * _ONE) for v in np.ravel(values)]


def draw_landmarks(
  image: np.ndarray,
  points: np.ndarray,
  box: Sequence[float] | np.ndarray | None = None,
  schema: landmarks.Schema | int | str | None = None,
  *,
  scale: float = 1.0,
  radius: float | None = None,
  pose: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
  """A copy of `image` with the landmarks as small anti-aliased dots and the face box.

  Args:
    image: uint8 [H, W, 3] RGB, [H, W, 1] or [H, W] grey (grey is drawn on in colour).
    points: [K, 2] landmarks (x, y) in image pixels; NaN points (and points too far outside
      the image to touch it) are not drawn.
    box: optional face box (x0, y0, x1, y1) in image pixels.
    schema: landmark schema (or its point count); with MCL clusters every cluster gets its own
      colour (`PALETTE`), otherwise all points are `POINT_COLOR`.
    scale: enlarge the image by this factor (bicubic) before drawing, so that small faces
      (e.g. 128-pixel synthetic images) show distinct dots; coordinates follow.
    radius: dot radius in output pixels; default 1.2 % of the face size (the box's longer side,
      else the points' extent), at least 1.
    pose: optional (yaw, pitch, roll) in degrees (`lmjax.core.head_pose`): the head's axes
      from the nose tip (x red, y green, z blue; half the face size) and the angles as text
      above the face. Not drawn when NaN.

  Returns:
    uint8 [H', W', 3] RGB image, H' = round(scale × H) (the input is not modified).

  Raises:
    ValueError: wrong shapes or dtype, a point count that does not match `schema`, a box
      without x1 > x0 and y1 > y0, or a non-positive scale / radius.
  """
  out = _as_rgb(image)
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f'points: expected shape [K, 2], got {points.shape}')
  if isinstance(schema, int | str):
    schema = landmarks.get_schema(schema)
  if schema is not None and schema.num_points != len(points):
    raise ValueError(f'{len(points)} points but schema {schema.name} has {schema.num_points}')
  if not (math.isfinite(scale) and scale > 0):
    raise ValueError(f'scale: expected a positive number, got {scale}')
  if box is not None:
    box = np.asarray(box, np.float64)
    if box.shape != (4,) or not (np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]):
      raise ValueError(f'box: expected (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box}')
  if scale != 1.0:
    h, w = out.shape[:2]
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    out = cv2.resize(out, size, interpolation=cv2.INTER_CUBIC)
    fx, fy = size[0] / w, size[1] / h
    factor = np.array([fx, fy])
    points = (points + 0.5) * factor - 0.5  # pixel centres stay on integers
    if box is not None:
      box = (box + 0.5) * np.tile(factor, 2) - 0.5

  h, w = out.shape[:2]
  if box is not None:  # clipped far outside the image: same drawing, no int32 overflow in cv2
    box = np.clip(box, -w - h, 2 * (w + h))
  finite = np.isfinite(points).all(axis=1)
  if box is not None:  # the face size
    extent = float(np.max(box[2:] - box[:2]))
  elif finite.any():
    inside = np.clip(points[finite], -w - h, 2 * (w + h))
    extent = float(np.max(inside.max(axis=0) - inside.min(axis=0)))
  else:
    extent = 0.0
  if radius is None:
    radius = max(1.0, 0.012 * extent)
  if not radius > 0:
    raise ValueError(f'radius: expected a positive number, got {radius}')
  radius = min(radius, w + h)
  line = max(1.0, radius / 2)  # width of the box line and of the dots' dark rim

  if box is not None:
    x0, y0, x1, y1 = _fixed(box)
    for color, width in ((OUTLINE_COLOR, line + 2), (BOX_COLOR, line)):
      cv2.rectangle(out, (x0, y0), (x1, y1), color, round(width), cv2.LINE_AA, _SHIFT)
  colors = point_colors(len(points), schema)
  rim, fill = round((radius + 0.5 * line) * _ONE), round(radius * _ONE)
  margin = radius + line
  shown = finite & (np.abs(points - np.array([w, h]) / 2) < np.array([w, h]) / 2 + margin).all(1)
  for point, color in zip(points[shown], colors[shown], strict=True):
    centre = tuple(_fixed(point))
    cv2.circle(out, centre, rim, OUTLINE_COLOR, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(out, centre, fill, tuple(int(c) for c in color), -1, cv2.LINE_AA, _SHIFT)
  if pose is not None and np.isfinite(pose).all() and finite.any():
    _draw_pose(out, points, finite, schema, np.asarray(pose, np.float64), extent, line)
  return out


AXIS_COLORS = ((230, 40, 40), (40, 200, 40), (60, 110, 255))  # head x, y, z


def _draw_pose(out, points, finite, schema, pose, extent: float, line: float) -> None:
  """The head's axes (weak perspective: the rotation's first two rows) and the angles."""
  names = schema.names if schema is not None else ()
  nose = points[names.index('nose_tip')] if 'nose_tip' in names else None
  origin = nose if nose is not None and np.isfinite(nose).all() else points[finite].mean(0)
  axes = head_pose.rotation_matrix(*pose)[:2].T * (0.5 * extent)  # [3, 2] image directions
  for direction, color in zip(axes, AXIS_COLORS, strict=True):
    ends = [tuple(_fixed(p)) for p in (origin, origin + direction)]
    cv2.line(out, *ends, OUTLINE_COLOR, round(line + 2), cv2.LINE_AA, _SHIFT)
    cv2.line(out, *ends, color, round(line), cv2.LINE_AA, _SHIFT)
  text = 'yaw {:+.0f} pitch {:+.0f} roll {:+.0f}'.format(*pose)
  size = max(0.3, extent / 500)
  (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
  low, high = points[finite].min(0), points[finite].max(0)
  above = low[1] - 4 * line  # the text's baseline: above the points, else below them
  y = above if above - height >= 0 else high[1] + 4 * line + height
  x = np.clip(low[0], 0, max(out.shape[1] - width, 0))
  corner = (int(x), int(min(y, out.shape[0] - 2)))
  pad = max(1, round(height / 4))  # a dark label behind the text
  cv2.rectangle(
    out,
    (corner[0] - pad, corner[1] - height - pad),
    (corner[0] + width + pad, corner[1] + pad),
    OUTLINE_COLOR,
    -1,
  )
  cv2.putText(out, text, corner, cv2.FONT_HERSHEY_SIMPLEX, size, BOX_COLOR, 1, cv2.LINE_AA)


# ----------------------------------------------------------------------------- file I/O
def read_image(path: str, flag: str = '--image') -> np.ndarray:
  """uint8 [H, W, 3] RGB image at `path` (`lmjax.core.image_ops.read_image`: grey, alpha and
  16-bit images are converted).

  Raises:
    DrawError: the file is missing or OpenCV cannot decode it; the message names `flag`.
  """
  if not os.path.isfile(path):
    raise DrawError(f'{flag}: no such file {path!r} (expected an image file)')
  try:
    return image_ops.read_image(path)
  except image_ops.ImageFileError:
    raise DrawError(
      f'{flag}: cannot read {path!r} as an image (expected a file OpenCV can decode, e.g. '
      f'{", ".join(IMAGE_EXTENSIONS)})'
    ) from None


def write_image(path: str, image: np.ndarray) -> None:
  """Writes a uint8 RGB image as PNG at `path`, creating parent directories."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
    raise DrawError(f'--out: could not write {path!r}')


def parse_box(text: str) -> np.ndarray:
  """`x0,y0,x1,y1` -> float64 [4]; raises DrawError unless four numbers with x1 > x0, y1 > y0."""
  expected = 'expected four comma-separated numbers x0,y0,x1,y1 with x1 > x0 and y1 > y0'
  try:
    box = np.array([float(v) for v in text.split(',')], np.float64)
  except ValueError:
    raise DrawError(f'--box: {expected}, got {text!r}') from None
  if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
    raise DrawError(f'--box: {expected}, got {text!r}')
  return box


def whole_image_box(image: np.ndarray) -> np.ndarray:
  """(0, 0, W-1, H-1): the box through the centres of the border pixels."""
  h, w = image.shape[:2]
  return np.array([0.0, 0.0, max(w - 1, 1), max(h - 1, 1)])


def check_box_in_image(box: np.ndarray, image: np.ndarray, path: str) -> None:
  """Raises DrawError when `box` does not overlap the image at all."""
  h, w = image.shape[:2]
  if box[2] < 0 or box[3] < 0 or box[0] > w - 1 or box[1] > h - 1:
    raise DrawError(
      f'--box: {tuple(float(v) for v in box)} lies outside {path!r} ({w}×{h} pixels); '
      f'expected a box overlapping the image, in pixel coordinates'
    )


def image_files(folder: str) -> list[str]:
  """Sorted image files (by extension, `IMAGE_EXTENSIONS`) directly inside `folder`."""
  if not os.path.isdir(folder):
    raise DrawError(f'--folder: {folder!r} is not a directory')
  names = sorted(
    n
    for n in os.listdir(folder)
    if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, n))
  )
  if not names:
    raise DrawError(f'--folder: no image files ({", ".join(IMAGE_EXTENSIONS)}) in {folder!r}')
  return [os.path.join(folder, n) for n in names]


def output_names(paths: Sequence[str]) -> list[str]:
  """`<stem>.png` per input, or `<name>.png` (extension kept) where stems collide."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  return [
    (s if stems.count(s) == 1 else os.path.basename(p).replace('.', '_')) + '.png'
    for s, p in zip(stems, paths, strict=True)
  ]
