"""Anti-aliased drawing on a float RGB canvas through small region-of-interest masks.

OpenCV anti-aliases only 8-bit images, so every shape is first drawn as an 8-bit coverage
mask over its bounding box (sub-pixel vertices via `shift`), then alpha-blended into the float
canvas with a flat colour or a per-pixel colour field. Pixel centres are at integer coordinates,
the convention of the landmark labels.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclasses.dataclass(frozen=True)
class Patch:
  """An array placed on the canvas with its top-left pixel at (y0, x0).

  A mask patch holds alpha [h, w] in [0, 1]; a colour patch holds RGB [h, w, 3].
  """

  y0: int
  x0: int
  data: np.ndarray

  @property
  def box(self) -> tuple[int, int, int, int]:
    return self.y0, self.y0 + self.data.shape[0], self.x0, self.x0 + self.data.shape[1]

  def crop(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The part of the data inside canvas rows y0:y1 and columns x0:x1."""
    return self.data[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]


def intersect(a: Patch | None, b: Patch | None) -> Patch | None:
  """Product of two masks over their overlap; None when either is None or they are disjoint."""
  if a is None or b is None:
    return None
  (ay0, ay1, ax0, ax1), (by0, by1, bx0, bx1) = a.box, b.box
  y0, y1, x0, x1 = max(ay0, by0), min(ay1, by1), max(ax0, bx0), min(ax1, bx1)
  if y0 >= y1 or x0 >= x1:
    return None
  return Patch(y0, x0, a.crop(y0, y1, x0, x1) * b.crop(y0, y1, x0, x1))


@functools.cache
def _catmull_rom_weights(samples: int) -> np.ndarray:
  """[samples, 4] uniform Catmull-Rom weights of (P0, P1, P2, P3) for u in [0, 1)."""
  u = np.linspace(0.0, 1.0, samples, endpoint=False)
  powers = np.stack([np.ones_like(u), u, u * u, u**3], axis=1)
  basis = 0.5 * np.array([[0, 2, 0, 0], [-1, 0, 1, 0], [2, -5, 4, -1], [-1, 3, -3, 1]])
  return powers @ basis


def smooth_curve(points: np.ndarray, closed: bool = False, samples: int = 6) -> np.ndarray:
  """Catmull-Rom spline through `points` [N, 2] (it passes through every point).

  Args:
    points: control points, N >= 2.
    closed: whether the curve returns to the first point.
    samples: points per segment.

  Returns:
    [M, 2] dense polyline; an open curve starts and ends at the end points.
  """
  p = np.asarray(points, np.float64)
  if closed:
    ext = np.concatenate([p[-1:], p, p[:2]])
  else:
    ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
  windows = ext[np.arange(len(ext) - 3)[:, None] + np.arange(4)]  # [S, 4, 2]
  curve = np.einsum('uk,skd->sud', _catmull_rom_weights(samples), windows).reshape(-1, 2)
  return curve if closed else np.concatenate([curve, p[-1:]])


def convex_hull(points: np.ndarray) -> np.ndarray:
  """Convex hull [M, 2] of points [N, 2]."""
  return cv2.convexHull(points.astype(np.float32))[:, 0, :].astype(np.float64)


@functools.cache
def unit_circle(n: int) -> np.ndarray:
  """[n, 2] points (cos t, sin t) of the unit circle, t = 0, 2π/n, ... (read-only, cached)."""
  t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
  circle = np.stack([np.cos(t), np.sin(t)], axis=1)
  circle.flags.writeable = False
  return circle


def ellipse_points(centre, axes, angle: float = 0.0, n: int = 24) -> np.ndarray:
  """[n, 2] polygon of an ellipse with semi-axes `axes` rotated by `angle` radians."""
  local = unit_circle(n) * axes
  c, s = np.cos(angle), np.sin(angle)
  return local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def rectangle_points(centre, half_sizes, angle: float = 0.0) -> np.ndarray:
  """[4, 2] corners of a rectangle with half side lengths `half_sizes` rotated by `angle`."""
  local = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half_sizes
  c, s = np.cos(angle), np.sin(angle)
  return local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


class Canvas:
  """A float32 RGB image in [0, 1] with anti-aliased mask drawing and blending."""

  def __init__(self, image: np.ndarray):
    self.image = np.ascontiguousarray(image, np.float32)
    self.height, self.width = self.image.shape[:2]

  def _mask(self, points: list[np.ndarray], pad: float, blur: float, draw) -> Patch | None:
    """Runs `draw(mask, [fixed-point int32 arrays])` on the bounding box of `points`."""
    allp = points[0] if len(points) == 1 else np.concatenate(points)
    pad = pad + 3.0 * blur + 2.0
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    x0, y0 = max(int(lo[0] - pad), 0), max(int(lo[1] - pad), 0)
    x1, y1 = min(int(hi[0] + pad) + 2, self.width), min(int(hi[1] + pad) + 2, self.height)
    if x0 >= x1 or y0 >= y1:
      return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    origin = np.array([x0, y0], np.float64)
    draw(mask, [np.rint((q - origin) * _ONE).astype(np.int32) for q in points])
    alpha = mask.astype(np.float32) * (1.0 / 255.0)
    if blur > 0:
      alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return Patch(y0, x0, alpha)

  def polygon(self, polygons: list[np.ndarray], blur: float = 0.0) -> Patch | None:
    """Coverage mask of one or more filled polygons."""
    return self._mask(
      polygons, 1.0, blur, lambda m, f: cv2.fillPoly(m, f, 255, cv2.LINE_AA, _SHIFT)
    )

  def stroke(
    self,
    points: np.ndarray | list[np.ndarray],
    thickness: float,
    closed: bool = False,
    blur: float = 0.0,
  ) -> Patch | None:
    """Coverage mask of one polyline [N, 2] (or a list of them), with round joins.

    The thickness is rounded to whole pixels (OpenCV's limit); 1 px lines stay anti-aliased.
    """
    lines = [points] if isinstance(points, np.ndarray) else list(points)
    width = max(round(thickness), 1)
    return self._mask(
      lines,
      width / 2 + 1,
      blur,
      lambda m, f: cv2.polylines(m, f, closed, 255, width, cv2.LINE_AA, _SHIFT),
    )

  def disc(self, centre, radius: float, blur: float = 0.0) -> Patch | None:
    """Coverage mask of a filled circle."""
    return self.polygon([ellipse_points(centre, (radius, radius), n=max(8, int(radius * 4)))], blur)

  def paint(self, mask: Patch | None, colour, opacity: float = 1.0) -> None:
    """Blends `colour` into the canvas through `mask` (a no-op for a None mask).

    Args:
      mask: coverage mask.
      colour: an RGB triple, or a colour `Patch` (which paints only where it overlaps the mask).
      opacity: multiplies the mask.
    """
    if mask is None or opacity <= 0:
      return
    y0, y1, x0, x1 = mask.box
    alpha = mask.data
    if isinstance(colour, Patch):
      cy0, cy1, cx0, cx1 = colour.box
      y0, y1, x0, x1 = max(y0, cy0), min(y1, cy1), max(x0, cx0), min(x1, cx1)
      if y0 >= y1 or x0 >= x1:
        return
      alpha = mask.crop(y0, y1, x0, x1)
      target = colour.crop(y0, y1, x0, x1).reshape(y1 - y0, -1)
    else:
      target = np.repeat(np.asarray(colour, np.float32)[None], x1 - x0, axis=0).ravel()
    # Rows of the region as [h, w * 3] so that numpy loops over long contiguous runs.
    region = self.image[y0:y1, x0:x1].reshape(y1 - y0, -1)
    delta = target - region
    delta *= np.repeat(alpha * np.float32(opacity), 3, axis=1)
    region += delta
