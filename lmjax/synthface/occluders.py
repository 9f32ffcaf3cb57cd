"""Occluders drawn over part of a face: objects, sunglasses, glasses, hands and scarves.

Landmarks under an occluder keep their exact positions (the 300-W convention: `visible` stays
True); the occluder only hides the image evidence.
"""

from __future__ import annotations

import numpy as np

from lmjax.synthface.appearance import skin_tone
from lmjax.synthface.background import blob, ramp, smooth_noise
from lmjax.synthface.canvas import Canvas, Patch, ellipse_points, rectangle_points

KINDS = ('rect', 'ellipse', 'blob', 'sunglasses', 'glasses', 'hand', 'scarf')
_KIND_P = (0.14, 0.12, 0.14, 0.16, 0.1, 0.2, 0.14)


def _box_side(points: np.ndarray) -> float:
  w, h = np.ptp(points, axis=0)
  return float(np.sqrt(max(w * h, 1.0)))


def _textured(canvas: Canvas, mask: Patch | None, rng: np.random.Generator) -> None:
  """Paints `mask` in a flat colour or in a two-colour noise/stripe texture."""
  if mask is None:
    return
  c0, c1 = rng.uniform(0, 1, (2, 3)).astype(np.float32)
  if rng.random() < 0.5:
    canvas.paint(mask, c0)
    return
  h, w = mask.data.shape
  if rng.random() < 0.5:
    t = np.clip(0.5 + 0.35 * smooth_noise(rng, h, w, rng.uniform(2, 10), 1), 0, 1)
  else:
    stripes = ramp(h, w, rng.uniform(0, np.pi)) * (2 * np.pi / rng.uniform(3, 12))
    t = (np.sin(stripes) > 0)[..., None]
  canvas.paint(mask, Patch(mask.y0, mask.x0, (c0 + t * (c1 - c0)).astype(np.float32)))


def _eyewear(canvas: Canvas, p: np.ndarray, rng: np.random.Generator, dark: bool) -> None:
  """Two lenses centred on the eyes, a bridge and temple arms to the contour."""
  side = _box_side(p)
  centres = [p[36:42].mean(axis=0), p[42:48].mean(axis=0)]
  axis = centres[1] - centres[0]
  axis /= np.linalg.norm(axis) + 1e-9
  angle = float(np.arctan2(axis[1], axis[0]))
  widths = [np.linalg.norm(p[39] - p[36]), np.linalg.norm(p[45] - p[42])]
  size = rng.uniform(0.7, 0.95)
  lenses = [
    ellipse_points(c, (size * w + 1, 0.7 * size * max(widths) + 1), angle)
    for c, w in zip(centres, widths, strict=True)
  ]
  if dark:
    tint = rng.uniform(0.0, 0.25, 3)
    canvas.paint(canvas.polygon(lenses), tint, rng.uniform(0.85, 0.97))
  else:
    canvas.paint(canvas.polygon(lenses), (0.85, 0.9, 0.95), 0.12)
  frame = rng.uniform(0, 0.6, 3) if rng.random() < 0.7 else rng.uniform(0, 1, 3)
  thick = max(1.0, side * rng.uniform(0.015, 0.04))
  inner = [centres[0] + axis * (size * widths[0] + 1), centres[1] - axis * (size * widths[1] + 1)]
  outer = [centres[0] - axis * (size * widths[0] + 1), centres[1] + axis * (size * widths[1] + 1)]
  lines = [np.array(inner), np.array([outer[0], p[0]]), np.array([outer[1], p[16]])]
  canvas.paint(canvas.stroke(lines, thick), frame)
  canvas.paint(canvas.stroke(lenses, thick, closed=True), frame)


def _hand(canvas: Canvas, p: np.ndarray, rng: np.random.Generator) -> None:
  """A palm with four fingers and a thumb, over the lower face, a cheek or an eye."""
  side = _box_side(p)
  target = p[rng.choice([8, 57, 62, 4, 12, 30, 36, 45])] + rng.normal(0, 0.1 * side, 2)
  angle = rng.uniform(-np.pi, np.pi)
  up = np.array([np.cos(angle), np.sin(angle)])
  across = np.array([-up[1], up[0]])
  scale = side * rng.uniform(0.8, 1.2)
  palm_centre = target - up * 0.2 * scale
  palm = ellipse_points(palm_centre, (0.2 * scale, 0.24 * scale), angle + np.pi / 2)
  fingers = []
  for k, length in enumerate(rng.uniform(0.28, 0.4, 4) * scale):
    base = palm_centre + up * 0.16 * scale + across * (k - 1.5) * 0.1 * scale
    spread = (k - 1.5) * rng.uniform(0.05, 0.2)
    tip = base + (up * np.cos(spread) + across * np.sin(spread)) * length
    fingers.append(np.array([base, tip]))
  thumb_base = palm_centre - across * 0.15 * scale
  fingers.append(np.array([thumb_base, thumb_base - across * 0.2 * scale + up * 0.12 * scale]))
  colour = np.clip(skin_tone(rng) * rng.uniform(0.6, 1.05), 0, 1)
  width = 0.09 * scale
  canvas.paint(canvas.stroke(fingers, width + 2), colour * 0.55)
  canvas.paint(canvas.polygon([palm]), colour)
  canvas.paint(canvas.stroke(fingers, width), colour)


def _scarf(canvas: Canvas, p: np.ndarray, rng: np.random.Generator) -> None:
  """Cloth covering the face below a line between the nose and the chin."""
  side = _box_side(p)
  centre = p.mean(axis=0)
  down = p[8] - p[27]
  down /= np.linalg.norm(down) + 1e-9
  jaw = centre + (p[2:15] - centre) * 1.12
  jaw[4:9] += down * 0.25 * side  # hangs below the chin
  t = rng.uniform(0.0, 0.8)
  top = (1 - t) * p[33] + t * p[57]
  left, right = jaw[0] + t * (jaw[2] - jaw[0]), jaw[-1] + t * (jaw[-3] - jaw[-1])
  mask = canvas.polygon([np.concatenate([[left, top, right], jaw[::-1]])])
  _textured(canvas, mask, rng)


def draw_occluder(
  canvas: Canvas, points: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> None:
  """Draws one random occluder over the face with 68 projected `points` [68, 2].

  Args:
    canvas: the canvas holding the face.
    points: projected landmarks of the face.
    rng: randomness.
    kind: one of KINDS, or None to choose at random.
  """
  kind = kind or KINDS[rng.choice(len(KINDS), p=_KIND_P)]
  side = _box_side(points)
  centre = points[rng.integers(len(points))] + rng.normal(0, 0.1 * side, 2)
  size = rng.uniform(0.12, 0.3) * side
  if kind == 'rect':
    half = rng.uniform(0.4, 1.2, 2) * size
    _textured(canvas, canvas.polygon([rectangle_points(centre, half, rng.uniform(0, np.pi))]), rng)
  elif kind == 'ellipse':
    axes = rng.uniform(0.5, 1.2, 2) * size
    _textured(canvas, canvas.polygon([ellipse_points(centre, axes, rng.uniform(0, np.pi))]), rng)
  elif kind == 'blob':
    _textured(canvas, canvas.polygon([blob(rng, centre, size * 1.2)]), rng)
  elif kind in ('sunglasses', 'glasses'):
    _eyewear(canvas, points, rng, dark=kind == 'sunglasses')
  elif kind == 'hand':
    _hand(canvas, points, rng)
  elif kind == 'scarf':
    _scarf(canvas, points, rng)
  else:
    raise ValueError(f'unknown occluder {kind!r}; known: {KINDS}')
