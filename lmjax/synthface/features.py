"""Facial features drawn through the exact projected landmarks.

Every outline below is a curve that passes through the projected iBUG points of its part, so
the labels lie on the drawn features by construction: lids through 36-47, brows around
17-26, the nose ridge and base through 27-35, lips through 48-67, pupils at the eye centres
(the mean of the six lid points, the 5-point convention).
"""

from __future__ import annotations

import numpy as np

from lmjax.synthface.appearance import Appearance
from lmjax.synthface.canvas import (
  Canvas,
  Patch,
  convex_hull,
  ellipse_points,
  intersect,
  smooth_curve,
  unit_circle,
)
from lmjax.synthface.head import Camera, Head

_DARK = np.array([0.05, 0.035, 0.03])
_LIGHT = np.array([1.0, 1.0, 1.0])
_BROW_TAPER = np.array([0.5, 0.85, 1.0, 1.0, 0.85])  # outer end to inner end
_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])


def _circle(n: int) -> np.ndarray:
  """[n, 3] unit circle in the head's xy plane (a disc facing forwards)."""
  return unit_circle(n) @ np.stack([_X, _Y])


def _front_light(camera: Camera, look: Appearance) -> float:
  """Light intensity on a surface facing the head's forward direction."""
  return look.ambient + look.diffuse * max(float(camera.rotate(_Z) @ look.light), 0.0)


def _draw_eye(
  canvas: Canvas, p3: np.ndarray, camera: Camera, look: Appearance, light: float
) -> None:
  """One eye from its six head-frame points (corner, upper lid, corner, lower lid)."""
  p = camera.project(p3)
  s = camera.scale
  upper = smooth_curve(p[[0, 1, 2, 3]])
  lower = smooth_curve(p[[3, 4, 5, 0]])
  eye = canvas.polygon([np.concatenate([upper, lower[1:-1]])])
  canvas.paint(eye, np.clip(look.sclera * light, 0, 1))
  centre = p3.mean(axis=0)
  ring = centre + 0.2 * np.linalg.norm(p3[3] - p3[0]) * _circle(20)  # iris
  radius = np.linalg.norm(ring[0] - centre) * s
  glint = camera.project(centre) + look.light[:2] * radius * 0.45
  for mask, colour, opacity in (
    (canvas.polygon([camera.project(ring)]), np.clip(look.iris * light, 0, 1), 1.0),
    (canvas.stroke(camera.project(ring), s * 0.012, closed=True), _DARK, 0.5),
    (canvas.polygon([camera.project(0.42 * ring + 0.58 * centre)]), _DARK, 1.0),  # pupil
    (canvas.disc(glint, max(0.5, 0.16 * radius)), _LIGHT, 0.8),
    (canvas.stroke(upper, s * 0.04, blur=s * 0.015), _DARK, 0.35),  # lid shadow
  ):
    canvas.paint(intersect(mask, eye), colour, opacity)
  crease = smooth_curve(camera.project(p3[[0, 1, 2, 3]] - 0.07 * _Y))
  canvas.paint(canvas.stroke([crease, lower], s * 0.012), _DARK, 0.3)
  canvas.paint(canvas.stroke(upper, s * 0.022 * look.eyeliner), _DARK, 0.9)


def _brow_outline(p3: np.ndarray, camera: Camera, thickness: np.ndarray) -> np.ndarray:
  """Closed outline of a brow band around its five points (thickness per point)."""
  half = thickness[:, None] * _Y
  upper = smooth_curve(camera.project(p3 - 0.45 * half))
  lower = smooth_curve(camera.project(p3 + 0.55 * half))
  return np.concatenate([upper, lower[::-1]])


def _draw_nose(
  canvas: Canvas, p3: np.ndarray, camera: Camera, look: Appearance, skin: Patch
) -> None:
  """Nose from points 27-35 (`p3` [9, 3]): body, shaded flank, nostrils, base and wings."""
  s = camera.scale
  wing_top = [p3[4] + (0.03, -0.12, 0.02), p3[8] + (-0.03, -0.12, 0.02)]
  bridge = [
    p3[k] + sx * w * _X - d * _Z
    for k, w, d in ((0, 0.08, 0.05), (1, 0.09, 0.07))
    for sx in (-1.0, 1.0)
  ]
  body = np.concatenate([p3, bridge, wing_top])
  canvas.paint(canvas.polygon([convex_hull(camera.project(body))]), skin)
  # The flank facing away from the light is darker.
  lit = [float(camera.rotate(sx * 0.7 * _X + 0.7 * _Z) @ look.light) for sx in (-1.0, 1.0)]
  dark = int(lit[1] < lit[0])
  wing, nostril, sx = (4, 5, -1.0) if dark == 0 else (8, 7, 1.0)
  flank = [
    p3[0],
    p3[1] + sx * 0.09 * _X,
    wing_top[dark],
    p3[wing],
    p3[nostril],
    p3[3],
    p3[2],
    p3[1],
  ]
  opacity = float(np.clip(0.6 * abs(lit[0] - lit[1]) + 0.08, 0.08, 0.4))
  canvas.paint(canvas.polygon([camera.project(np.array(flank))], blur=s * 0.03), _DARK, opacity)
  base = smooth_curve(camera.project(p3[4:9]))
  under = base + camera.rotate(0.03 * _Y)[:2] * s
  canvas.paint(canvas.stroke(under, s * 0.05, blur=s * 0.02), _DARK, 0.25)
  nostrils, lines = [], [base]
  for i, outer, sx in ((5, 4, -1.0), (7, 8, 1.0)):
    centre = 0.6 * p3[i] + 0.4 * p3[6] - 0.02 * _Y
    circle = _circle(12)
    nostrils.append(
      camera.project(centre + 0.045 * circle * (1.0, 0.4, 0.0) + 0.012 * circle[:, 1:2] * _Z)
    )
    o = p3[outer]
    wing = o + np.array([[0.0, 0.0, 0.0], [-sx * 0.005, -0.08, 0.03], [-sx * 0.07, -0.13, 0.08]])
    lines.append(smooth_curve(camera.project(wing)))
  canvas.paint(canvas.polygon(nostrils), _DARK, 0.75)
  canvas.paint(canvas.stroke(lines, s * 0.014), _DARK, 0.33)
  canvas.paint(canvas.stroke(camera.project(p3[1:4]), s * 0.03, blur=s * 0.015), _LIGHT, 0.12)
  canvas.paint(canvas.disc(camera.project(p3[3]), s * 0.04, blur=s * 0.015), _LIGHT, 0.2)


def _draw_mouth(
  canvas: Canvas, p3: np.ndarray, camera: Camera, look: Appearance, light: float
) -> None:
  """Lips and mouth opening from points 48-67 (`p3` [20, 3])."""
  s = camera.scale
  p = camera.project(p3)
  upper_outer = smooth_curve(p[0:7])
  lower_outer = smooth_curve(p[[6, 7, 8, 9, 10, 11, 0]])
  upper_inner = smooth_curve(p[12:17])
  lower_inner = smooth_curve(p[[16, 17, 18, 19, 12]])
  lips = np.clip(look.lips * light, 0, 1)
  canvas.paint(canvas.polygon([np.concatenate([upper_outer, upper_inner[::-1]])]), lips * 0.85)
  canvas.paint(canvas.polygon([np.concatenate([lower_outer, lower_inner[::-1]])]), lips)
  gap = np.linalg.norm(p3[18] - p3[14])
  inside = canvas.polygon([np.concatenate([upper_inner, lower_inner[1:-1]])])
  if gap > 0.015 and inside is not None:
    canvas.paint(inside, (0.12, 0.03, 0.03))
    down = camera.rotate(min(0.07, 0.5 * gap) * _Y)[:2] * s
    teeth = canvas.polygon([np.concatenate([upper_inner, upper_inner[::-1] + down])])
    canvas.paint(intersect(teeth, inside), np.clip(np.array([0.92, 0.9, 0.82]) * light, 0, 1))
  canvas.paint(canvas.stroke(upper_inner, s * 0.015), _DARK, 0.6)
  canvas.paint(canvas.disc(0.5 * (p[9] + p[18]), s * 0.05, blur=s * 0.03), _LIGHT, 0.15)
  corners = [ellipse_points(c, (s * 0.018, s * 0.018), n=8) for c in (p[0], p[6])]
  canvas.paint(canvas.polygon(corners), _DARK, 0.4)


def _beard_outline(p3: np.ndarray) -> np.ndarray:
  """Head-frame outline of the beard area: the lower jaw and around the mouth."""
  return np.concatenate(
    [
      p3[2:15],
      [
        p3[54] + (0.1, -0.05, -0.02),
        p3[35] + (0.05, 0.06, 0.0),
        p3[33] + (0.0, 0.05, 0.0),
        p3[31] + (-0.05, 0.06, 0.0),
        p3[48] + (-0.1, -0.05, -0.02),
      ],
    ]
  )


def draw_fringe(
  canvas: Canvas, head: Head, camera: Camera, hair: Patch, rng: np.random.Generator
) -> None:
  """Hair falling over the forehead, ending above the brows."""
  arc = head.forehead[2:-2]
  brow_top = head.landmarks[17:27, 1].min() - 0.06
  reach = rng.uniform(0.3, 0.9) + rng.uniform(-0.12, 0.12, len(arc))
  low = arc.copy()
  low[:, 1] = arc[:, 1] + np.clip(reach, 0.0, 1.0) * (brow_top - arc[:, 1])
  low[:, 2] += 0.05
  outline = np.concatenate([camera.project(arc), smooth_curve(camera.project(low))[::-1]])
  canvas.paint(canvas.polygon([outline], blur=camera.scale * 0.01), hair)


def draw_features(
  canvas: Canvas,
  head: Head,
  camera: Camera,
  look: Appearance,
  skin: Patch,
  rng: np.random.Generator,
) -> None:
  """Paints beard, eye sockets, eyes, brows, nose and mouth of `head`.

  Args:
    canvas: target canvas (the face skin is already painted).
    head: geometry in the head frame.
    camera: pose, scale and position.
    look: colours and light.
    skin: shaded skin colour patch covering the face.
    rng: randomness of the beard texture.
  """
  p3 = head.landmarks
  s = camera.scale
  light = _front_light(camera, look)
  if look.beard > 0:
    beard = canvas.polygon([camera.project(_beard_outline(p3))], blur=s * 0.04)
    if beard is not None:
      stubble = rng.uniform(0.3, 1.0, beard.data.shape).astype(np.float32)
      canvas.paint(Patch(beard.y0, beard.x0, beard.data * stubble), look.hair, look.beard)
  for brow, eye, taper in (
    (p3[17:22], p3[36:42], _BROW_TAPER),
    (p3[22:27], p3[42:48], _BROW_TAPER[::-1]),
  ):
    socket = np.concatenate([camera.project(brow + 0.06 * _Y), camera.project(eye[[3, 2, 1, 0]])])
    canvas.paint(canvas.polygon([socket], blur=s * 0.05), _DARK, 0.15)
    _draw_eye(canvas, eye, camera, look, light)
    outline = _brow_outline(brow, camera, look.brow_thickness * taper)
    canvas.paint(canvas.polygon([outline], blur=s * 0.006), look.brow, 0.9)
  _draw_nose(canvas, p3[27:36], camera, look, skin)
  _draw_mouth(canvas, p3[48:68], camera, look, light)
