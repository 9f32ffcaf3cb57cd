"""The whole head around the 68 landmarks (forehead, skull, ears, neck, torso) and the camera.

Everything here is 3D geometry in the head frame of `shape` and is rotated and projected
together with the landmarks, so that all drawn parts stay consistent under any pose.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.synthface import shape
from lmjax.synthface.canvas import unit_circle

Ellipsoid = tuple[np.ndarray, np.ndarray]  # (centre [3], semi-axes [3]), axis-aligned in the head


@dataclasses.dataclass(frozen=True)
class Camera:
  """Weak-perspective camera: rotate, drop z, scale to pixels, translate.

  Attributes:
    rotation: [3, 3] head-to-camera rotation.
    scale: pixels per head unit.
    offset: [2] pixel position of the head-frame origin.
  """

  rotation: np.ndarray
  scale: float
  offset: np.ndarray

  def rotate(self, vectors: np.ndarray) -> np.ndarray:
    """Head-frame vectors [..., 3] -> camera-frame vectors (head units)."""
    return vectors @ self.rotation.T

  def project(self, points: np.ndarray) -> np.ndarray:
    """Head-frame points [..., 3] -> pixel coordinates [..., 2]."""
    return self.rotate(points)[..., :2] * self.scale + self.offset

  def facing(self, normal: np.ndarray) -> float:
    """Camera-frame z of a head-frame unit normal (> 0: the surface faces the camera)."""
    return float(self.rotate(normal)[2])

  def outline(self, ellipsoid: Ellipsoid, n: int = 40) -> np.ndarray:
    """Pixel outline [n, 2] of a head-frame ellipsoid (the exact orthographic silhouette)."""
    centre, axes = ellipsoid
    m = self.rotation[:2] * axes  # [2, 3]: unit sphere -> image plane (head units)
    chol = np.linalg.cholesky(m @ m.T)
    return self.project(centre) + unit_circle(n) @ chol.T * self.scale


@dataclasses.dataclass(frozen=True)
class Head:
  """A head in the head frame.

  Attributes:
    landmarks: [68, 3] iBUG points.
    forehead: [F, 3] hairline arc from point 0 over the forehead to point 16.
    silhouette: [S, 3] extra surface points (temples, cheekbones) whose projections, with the
      contour, forehead and landmarks, bound the visible skin of the face.
    skull: ellipsoid of the cranium (hair or bald skin).
    shading: ellipsoid whose normals shade the skin.
    hair_curtain: ellipsoid of long hair hanging behind the head.
    torso: ellipsoid of the shoulders.
    neck: [2, N, 3] top and bottom rings of the neck cylinder.
    ears: [2, E, 3] image-left and image-right ear rims.
    ear_normals: [2, 3] outward normals of the ears.
  """

  landmarks: np.ndarray
  forehead: np.ndarray
  silhouette: np.ndarray
  skull: Ellipsoid
  shading: Ellipsoid
  hair_curtain: Ellipsoid
  torso: Ellipsoid
  neck: np.ndarray
  ears: np.ndarray
  ear_normals: np.ndarray


def _ellipsoid(centre, axes) -> Ellipsoid:
  return np.asarray(centre, np.float64), np.asarray(axes, np.float64)


def _ring(centre, u, v, n: int) -> np.ndarray:
  return np.asarray(centre) + unit_circle(n) @ np.array([u, v], np.float64)


def build_head(landmarks: np.ndarray, forehead_height: float = 0.75) -> Head:
  """Builds the head around 68 head-frame landmarks (from `shape.face_shape`).

  Args:
    landmarks: [68, 3] points.
    forehead_height: height of the hairline above the highest brow point (head units).

  Returns:
    The head; its parts scale with the face's width and height.
  """
  p = landmarks
  left, right = p[0], p[16]
  half_w = 0.5 * (right[0] - left[0])
  mid = 0.5 * (left + right)
  hairline = min(p[17:27, 1].min(), mid[1]) - forehead_height
  height = p[8, 1] - hairline  # hairline to chin, about 2.7 units for the mean face
  k = height / 2.7

  psi = np.linspace(np.pi, 0.0, 15)
  rise = np.sin(psi) ** 0.8
  forehead = np.stack(
    [
      mid[0] + half_w * np.cos(psi) * (1.0 - 0.08 * rise),
      left[1] + (hairline - left[1]) * rise,
      left[2] + (p[27, 2] - 0.18 - left[2]) * np.sin(psi),
    ],
    axis=1,
  )

  # Cheekbones and temples: the contour and the forehead arc pulled 8% inwards and brought
  # forwards; under yaw they form the far-side silhouette, hiding the far contour points.
  rim = np.concatenate([p[1:6], p[11:16], forehead[1:5], forehead[-5:-1]])
  silhouette = rim * np.array([0.92, 1.0, 1.0]) + np.array([0.08 * mid[0], 0.0, 0.4])

  # The cranium rises 0.35 k above the hairline (room for hair) and reaches far back.
  skull = _ellipsoid((mid[0], hairline + 0.9 * k, -1.0), (1.04 * half_w, 1.25 * k, 1.3 * k))
  ear_y = 0.5 * (p[17:27, 1].mean() + p[33, 1])  # from the brows to the nose base
  ears, normals = [], []
  for sign, base in ((-1.0, left), (1.0, right)):
    normal = np.array([sign * np.cos(0.6), 0.0, np.sin(0.6)])
    along = np.array([-sign * np.sin(0.6), 0.0, np.cos(0.6)])
    centre = (base[0] + sign * 0.02, ear_y, base[2] - 0.22)
    ears.append(_ring(centre, (0.0, 0.45 * k, 0.0), along * 0.22 * k, 16))
    normals.append(normal)
  neck_top = (mid[0], p[8, 1] - 0.5, -0.75)
  neck_bottom = (mid[0], p[8, 1] + 1.3 * k, -0.85)
  neck_u, neck_v = (0.62 * half_w, 0.0, 0.0), (0.0, 0.0, 0.55 * half_w)
  neck = np.stack([_ring(neck_top, neck_u, neck_v, 16), _ring(neck_bottom, neck_u, neck_v, 16)])
  return Head(
    landmarks=p,
    forehead=forehead,
    silhouette=silhouette,
    skull=skull,
    shading=_ellipsoid((mid[0], 0.25 * k, -0.85), (1.0 * half_w, 1.75 * k, 1.2)),
    hair_curtain=_ellipsoid((mid[0], p[8, 1] - 0.4, -1.15), (1.25 * half_w, 1.9 * k, 0.9)),
    torso=_ellipsoid((mid[0], p[8, 1] + 1.4 * k, -0.95), (3.2 * half_w, 0.6 * k, 0.9)),
    neck=neck,
    ears=np.stack(ears),
    ear_normals=np.stack(normals),
  )


def face_region_points(head: Head) -> np.ndarray:
  """Head-frame points whose projected convex hull is the visible skin of the face."""
  return np.concatenate([head.landmarks, head.forehead, head.silhouette])


def sample_head(rng: np.random.Generator) -> tuple[Head, shape.Pose]:
  """A random person with a random expression and pose."""
  ident = shape.Identity.sample(rng)
  expr = shape.Expression.sample(rng)
  pose = shape.Pose.sample(rng)
  return build_head(shape.face_shape(ident, expr), ident.forehead), pose
