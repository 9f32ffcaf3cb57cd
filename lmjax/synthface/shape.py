"""3D face geometry: the 68-point mean shape, identity and expression deformation, head pose.

Head frame: x points to image-right on a frontal face (the subject's left), y points down,
z points towards the camera. One unit is half the face width at the ears (about 7 cm); the
origin lies between the eyes, behind the nose bridge. Point order is the iBUG 68 order of
`lmjax.core.landmarks.IBUG68`.

Pose angles in degrees, applied as `R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`:
  * yaw > 0 turns the face towards image-right (the image-left cheek comes into view),
  * pitch > 0 tilts the face up,
  * roll > 0 rotates the face clockwise in the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.core import head_pose
from lmjax.core.landmarks import IBUG68

NUM_POINTS = 68
CONTOUR = np.arange(0, 17)
BROWS = (np.arange(17, 22), np.arange(22, 27))
NOSE = np.arange(27, 36)
EYES = (np.arange(36, 42), np.arange(42, 48))
MOUTH = np.arange(48, 68)
# Upper / lower lid points of each eye, paired top-to-bottom: 37<->41, 38<->40, 43<->47, 44<->46.
LIDS = ((np.array([37, 38]), np.array([41, 40])), (np.array([43, 44]), np.array([47, 46])))
MOUTH_CORNERS = np.array([48, 54, 60, 64])
LOWER_LIP = np.array([55, 56, 57, 58, 59, 65, 66, 67])
UPPER_LIP_INNER = np.array([61, 62, 63])
UPPER_LIP_OUTER = np.array([49, 50, 51, 52, 53])
MOUTH_LINE_Y = 0.66

# Hand-placed points of the image-left half and the centre line; the image-right half is the
# mirror image (x -> -x) through the iBUG flip permutation.
_HALF = {
  # Brows, outer end first.
  17: (-0.86, -0.56, -0.35),
  18: (-0.71, -0.68, -0.13),
  19: (-0.53, -0.72, -0.02),
  20: (-0.36, -0.71, 0.03),
  21: (-0.18, -0.65, 0.05),
  # Nose bridge to tip, then the base (outer wing, nostril, subnasale).
  27: (0.0, -0.43, 0.02),
  28: (0.0, -0.22, 0.13),
  29: (0.0, -0.01, 0.25),
  30: (0.0, 0.20, 0.40),
  31: (-0.24, 0.27, 0.10),
  32: (-0.12, 0.31, 0.18),
  33: (0.0, 0.33, 0.24),
  # Image-left eye: outer corner, upper outer, upper inner, inner corner, lower inner, lower outer.
  36: (-0.63, -0.38, -0.20),
  37: (-0.52, -0.46, -0.10),
  38: (-0.36, -0.465, -0.07),
  39: (-0.23, -0.39, -0.10),
  40: (-0.36, -0.335, -0.08),
  41: (-0.51, -0.34, -0.10),
  # Outer lips: corner, upper lip to the cupid's bow, lower lip.
  48: (-0.37, 0.66, 0.00),
  49: (-0.24, 0.59, 0.12),
  50: (-0.09, 0.555, 0.20),
  51: (0.0, 0.565, 0.21),
  57: (0.0, 0.80, 0.17),
  58: (-0.11, 0.79, 0.16),
  59: (-0.25, 0.75, 0.10),
  # Inner lips (closed mouth: upper and lower inner lines coincide).
  60: (-0.31, 0.66, 0.03),
  61: (-0.11, 0.655, 0.16),
  62: (0.0, 0.655, 0.18),
  66: (0.0, 0.655, 0.18),
  67: (-0.11, 0.655, 0.16),
}


def jaw_contour(
  squareness: float = 2.3, taper: float = 0.12, top: float = -0.38, chin: float = 1.30
) -> np.ndarray:
  """The 17 contour points (0-16), evenly spaced along a superellipse-shaped jaw.

  Args:
    squareness: superellipse exponent; 2 is elliptic, larger is a squarer jaw.
    taper: how much narrower the jaw is at the chin level than at the ears.
    top: y of points 0 and 16 (about eye level).
    chin: y of the chin (point 8).

  Returns:
    [17, 3] points from the image-left ear to the image-right ear.
  """
  phi = np.linspace(0.0, np.pi, 241)
  c, s = np.cos(phi), np.sin(phi)
  reach = np.abs(c) ** (2.0 / squareness)
  y = top + (chin - top) * np.abs(s) ** (2.0 / squareness)
  x = -np.sign(c) * reach * (1.0 - taper * (y - top) / (chin - top))
  z = -0.85 * np.abs(x) ** 1.5 + 0.02
  dense = np.stack([x, y, z], axis=1)
  arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense[:, :2], axis=0), axis=1))])
  targets = np.linspace(0.0, arc[-1], 17)
  return np.stack([np.interp(targets, arc, dense[:, k]) for k in range(3)], axis=1)


def _mean_shape() -> np.ndarray:
  points = np.full((NUM_POINTS, 3), np.nan)
  points[CONTOUR] = jaw_contour()
  for i, p in _HALF.items():
    points[i] = p
    points[IBUG68.flip_perm[i]] = (-p[0], p[1], p[2])
  assert not np.isnan(points).any()
  return points


MEAN_SHAPE = _mean_shape()


@dataclasses.dataclass(frozen=True)
class Identity:
  """Person-specific shape parameters (1.0 / 0.0 give the mean face)."""

  width: float = 1.0
  height: float = 1.0
  depth: float = 1.0
  eye_spacing: float = 0.0  # outward shift of each eye
  eye_size: float = 1.0
  eye_height: float = 0.0  # downward shift of both eyes
  brow_height: float = 0.0  # upward shift of the brows
  brow_arch: float = 0.0
  nose_length: float = 1.0
  nose_width: float = 1.0
  nose_depth: float = 1.0
  mouth_width: float = 1.0
  mouth_height: float = 0.0  # downward shift of the mouth
  upper_lip: float = 1.0  # lip thickness factors
  lower_lip: float = 1.0
  jaw_squareness: float = 2.3
  jaw_taper: float = 0.12
  chin_length: float = 0.0
  forehead: float = 0.75  # hairline height above the brows
  warp: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((3, 5)))
  jitter: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((NUM_POINTS, 3)))

  @classmethod
  def sample(cls, rng: np.random.Generator) -> Identity:
    """A random person: independent factors plus a smooth warp and tiny per-point jitter."""
    u = rng.uniform
    return cls(
      width=u(0.86, 1.14),
      height=u(0.88, 1.12),
      depth=u(0.8, 1.2),
      eye_spacing=u(-0.05, 0.05),
      eye_size=u(0.8, 1.25),
      eye_height=u(-0.04, 0.04),
      brow_height=u(-0.05, 0.08),
      brow_arch=u(-0.03, 0.06),
      nose_length=u(0.82, 1.18),
      nose_width=u(0.8, 1.3),
      nose_depth=u(0.7, 1.3),
      mouth_width=u(0.82, 1.2),
      mouth_height=u(-0.05, 0.05),
      upper_lip=u(0.5, 1.5),
      lower_lip=u(0.6, 1.5),
      jaw_squareness=u(1.8, 3.2),
      jaw_taper=u(0.0, 0.25),
      chin_length=u(-0.12, 0.12),
      forehead=u(0.55, 0.95),
      warp=rng.normal(0.0, 0.025, (3, 5)),
      jitter=rng.normal(0.0, 0.006, (NUM_POINTS, 3)),
    )


@dataclasses.dataclass(frozen=True)
class Expression:
  """Facial expression parameters (all zero: neutral face)."""

  mouth_open: float = 0.0  # jaw drop in head units
  smile: float = 0.0  # < 0 is a frown
  brow_raise: float = 0.0  # < 0 is a frown (inner brows down)
  eye_close: tuple[float, float] = (0.0, 0.0)  # image-left, image-right; 1 = shut

  @classmethod
  def sample(cls, rng: np.random.Generator) -> Expression:
    """A random expression; neutral-ish faces are the most frequent."""
    mouth_open = rng.uniform(0.0, 0.4) if rng.random() < 0.45 else 0.0
    blink = rng.random()
    if blink < 0.08:  # both eyes (nearly) shut
      close = (rng.uniform(0.7, 1.0),) * 2
    elif blink < 0.14:  # a wink or a squint on one side
      close = tuple(rng.permutation([rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.3)]))
    else:
      close = tuple(rng.uniform(-0.15, 0.35, 2))
    return cls(
      mouth_open=mouth_open,
      smile=rng.uniform(-0.5, 1.0),
      brow_raise=rng.uniform(-1.0, 1.0),
      eye_close=(float(close[0]), float(close[1])),
    )


@dataclasses.dataclass(frozen=True)
class Pose:
  """Head rotation in degrees (see the module docstring for the conventions)."""

  yaw: float = 0.0
  pitch: float = 0.0
  roll: float = 0.0

  @classmethod
  def sample(
    cls,
    rng: np.random.Generator,
    max_yaw: float = 45.0,
    max_pitch: float = 25.0,
    max_roll: float = 35.0,
  ) -> Pose:
    """Mostly near-frontal poses (clipped normals) with a uniform tail over the full range."""
    limits = np.array([max_yaw, max_pitch, max_roll])
    if rng.random() < 0.3:
      angles = rng.uniform(-limits, limits)
    else:
      angles = np.clip(rng.normal(0.0, limits / 2.2), -limits, limits)
    return cls(*map(float, angles))

  def matrix(self) -> np.ndarray:
    """[3, 3] rotation from the head frame to the camera frame: Rz(roll) Rx(pitch) Ry(yaw),
    the convention `lmjax.core.head_pose` estimates."""
    return head_pose.rotation_matrix(self.yaw, self.pitch, self.roll)


def _scale_about(points: np.ndarray, centre: np.ndarray, factor) -> np.ndarray:
  return centre + (points - centre) * factor


def _apply_identity(p: np.ndarray, ident: Identity) -> None:
  """Identity deformation of the inner points, in place (the contour is rebuilt separately)."""
  for side, sign in ((0, -1.0), (1, 1.0)):
    eye = EYES[side]
    centre = p[eye].mean(axis=0)
    p[eye] = _scale_about(p[eye], centre, ident.eye_size)
    p[eye, 0] += sign * ident.eye_spacing
    p[eye, 1] += ident.eye_height
    brow = BROWS[side]
    p[brow, 0] += sign * ident.eye_spacing * 0.7
    p[brow, 1] += ident.eye_height - ident.brow_height
    arch = np.array([0.3, 0.8, 1.0, 0.6, 0.0])
    p[brow, 1] -= ident.brow_arch * (arch if sign < 0 else arch[::-1])
  top = p[27].copy()
  p[NOSE, 1] = top[1] + (p[NOSE, 1] - top[1]) * ident.nose_length
  p[NOSE, 0] *= ident.nose_width
  p[NOSE, 2] = top[2] + (p[NOSE, 2] - top[2]) * ident.nose_depth
  # Lip thickness about the mouth line, then width and vertical position.
  p[UPPER_LIP_OUTER, 1] = MOUTH_LINE_Y + (p[UPPER_LIP_OUTER, 1] - MOUTH_LINE_Y) * ident.upper_lip
  lower_outer = np.arange(55, 60)
  p[lower_outer, 1] = MOUTH_LINE_Y + (p[lower_outer, 1] - MOUTH_LINE_Y) * ident.lower_lip
  p[MOUTH, 0] *= ident.mouth_width
  p[MOUTH, 1] += ident.mouth_height + (ident.nose_length - 1.0) * 0.6


def _apply_expression(p: np.ndarray, expr: Expression) -> None:
  """Expression deformation, in place."""
  s = expr.smile
  corners_x = np.sign(p[MOUTH_CORNERS, 0])
  p[MOUTH_CORNERS, 0] += corners_x * 0.06 * s
  p[MOUTH_CORNERS, 1] -= 0.07 * s
  p[[49, 53, 55, 59], 1] -= 0.03 * s
  o = expr.mouth_open
  p[LOWER_LIP, 1] += o
  p[UPPER_LIP_INNER, 1] -= 0.12 * o
  p[MOUTH_CORNERS, 1] += 0.35 * o
  p[MOUTH, 0] *= 1.0 - 0.15 * o
  chin_level = np.clip((p[CONTOUR, 1] - 0.3) / (p[8, 1] - 0.3), 0.0, 1.0)
  p[CONTOUR, 1] += o * 0.85 * chin_level**1.5
  b = expr.brow_raise
  for brow in BROWS:
    p[brow, 1] -= 0.07 * b
    if b < 0:  # frown: inner ends down and together
      inner = brow[-1] if brow[0] == 17 else brow[0]
      p[inner, 1] -= 0.04 * b
      p[inner, 0] *= 1.0 + 0.15 * b
  for (upper, lower), c in zip(LIDS, expr.eye_close, strict=True):
    gap = p[lower, 1] - p[upper, 1]
    p[upper, 1] += c * gap * 0.85
    p[lower, 1] -= c * gap * 0.15


def face_shape(ident: Identity | None = None, expr: Expression | None = None) -> np.ndarray:
  """The 68 landmarks of a person with an expression, in the head frame.

  Args:
    ident: identity parameters (None: the mean face).
    expr: expression parameters (None: neutral).

  Returns:
    [68, 3] float64 points.
  """
  ident = ident or Identity()
  expr = expr or Expression()
  p = MEAN_SHAPE.copy()
  p[CONTOUR] = jaw_contour(ident.jaw_squareness, ident.jaw_taper, chin=1.30 + ident.chin_length)
  _apply_identity(p, ident)
  _apply_expression(p, expr)
  p *= np.array([ident.width, ident.height, ident.depth])
  # Smooth warp: each coordinate gets a quadratic polynomial of (x, y).
  x, y = p[:, 0], p[:, 1] - 0.3
  basis = np.stack([x, y, x * x - 0.4, x * y, y * y - 0.6], axis=1)
  return p + basis @ ident.warp.T + ident.jitter
