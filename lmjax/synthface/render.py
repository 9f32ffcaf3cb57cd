"""Draws one head (body, hair, ears, shaded skin, facial features) onto a canvas.

Parts are painted back to front: shoulders, long hair, neck, skull, ears, the face skin (the
convex hull of the projected face surface points, which hides far-side contour points under
yaw), then the features (`features.py`). Occlusion therefore follows from drawing order.
"""

from __future__ import annotations

import cv2
import numpy as np

from lmjax.synthface import features
from lmjax.synthface.appearance import Appearance
from lmjax.synthface.canvas import Canvas, Patch, convex_hull, intersect, smooth_curve
from lmjax.synthface.head import Camera, Ellipsoid, Head, face_region_points


def shaded(
  camera: Camera,
  ellipsoid: Ellipsoid,
  colour: np.ndarray,
  look: Appearance,
  box: tuple[int, int, int, int],
  rng: np.random.Generator,
  texture: float = 0.04,
) -> Patch:
  """Colour patch over `box` of a Lambert-shaded ellipsoid with a faint blotchy texture.

  Pixels outside the ellipsoid's silhouette get the normal of its rim.

  Args:
    camera: projects the head frame to pixels.
    ellipsoid: (centre, semi-axes) in the head frame.
    colour: RGB albedo.
    look: the light.
    box: (y0, y1, x0, x1) canvas region to cover.
    rng: randomness of the texture.
    texture: relative amplitude of the texture.

  Returns:
    RGB patch [y1 - y0, x1 - x0, 3].
  """
  y0, y1, x0, x1 = box
  h, w = y1 - y0, x1 - x0
  step = 1 + (h * w > 1600) + (h * w > 8000)  # shading is smooth: compute it coarser
  centre, axes = ellipsoid
  rot = camera.rotation
  a = (rot @ np.diag(1.0 / axes**2) @ rot.T).astype(np.float32)  # camera-frame quadric
  c = camera.project(centre)
  xs = (np.arange(x0, x1, step, dtype=np.float32) - c[0]) / camera.scale
  ys = (np.arange(y0, y1, step, dtype=np.float32) - c[1]) / camera.scale
  dx, dy = np.meshgrid(xs, ys)
  b = a[0, 2] * dx + a[1, 2] * dy
  q = a[0, 0] * dx * dx + 2 * a[0, 1] * dx * dy + a[1, 1] * dy * dy
  dz = (-b + np.sqrt(np.maximum(b * b - a[2, 2] * (q - 1.0), 0.0))) / a[2, 2]
  n = np.stack([dx, dy, dz], axis=-1) @ a.T
  n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-9
  light = look.light.astype(np.float32)
  half = light + np.float32([0.0, 0.0, 1.0])
  # Wrapped Lambert (soft terminator) and a Blinn-Phong highlight.
  lambert = np.maximum((n @ light + 0.4) / 1.4, 0.0)
  spec = np.maximum(n @ (half / np.linalg.norm(half)), 0.0) ** 24
  terms = np.stack([look.ambient + look.diffuse * lambert, look.specular * spec], axis=-1)
  if step > 1:
    terms = cv2.resize(terms, (w, h), interpolation=cv2.INTER_LINEAR)
  shade = terms[..., 0]
  if texture > 0:
    coarse = rng.normal(0.0, texture, (h // 3 + 2, w // 3 + 2)).astype(np.float32)
    shade = shade * (1.0 + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC))
  rgb = shade[..., None] * colour.astype(np.float32) + terms[..., 1:]
  return Patch(y0, x0, np.clip(rgb, 0.0, 1.0))


def _box(canvas: Canvas, points: np.ndarray) -> tuple[int, int, int, int] | None:
  x0, y0 = np.floor(points.min(axis=0)).astype(int) - 2
  x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 3
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, canvas.width), min(y1, canvas.height)
  return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


def _hair_strands(
  canvas: Canvas, camera: Camera, head: Head, look: Appearance, rng: np.random.Generator
) -> None:
  """Strands running from the crown down the skull, in lighter and darker hair colours."""
  centre, axes = head.skull
  lon = rng.uniform(0.0, 2.0 * np.pi, 24)[:, None]
  lat = np.linspace(0.15, rng.uniform(1.4, 1.9), 6)[None, :]
  x, y, z = (
    np.sin(lat) * np.cos(lon),
    np.broadcast_to(-np.cos(lat), (24, 6)),
    np.sin(lat) * np.sin(lon),
  )
  pts = np.stack([x, y, z], axis=-1) * axes + centre  # [24 strands, 6, 3]
  strands = camera.project(pts)
  width = max(camera.scale * 0.025, 1.0)
  for group, tone in ((strands[::2], 1.5), (strands[1::2], 0.6)):
    mask = canvas.stroke(list(group), width)
    canvas.paint(mask, np.clip(look.hair * tone + 0.03, 0, 1), 0.35)


def _body(camera: Camera, head: Head) -> np.ndarray:
  """Pixel outline of the shoulders (the torso ellipsoid) continued far down the image."""
  shoulders = camera.outline(head.torso, 48)
  down = camera.rotate(np.array([0.0, 1.0, 0.0]))[:2]
  down /= np.linalg.norm(down) + 1e-9
  return convex_hull(np.concatenate([shoulders, shoulders + down * 12.0 * camera.scale]))


def draw_head(
  canvas: Canvas, head: Head, camera: Camera, look: Appearance, rng: np.random.Generator
) -> None:
  """Paints a full head onto `canvas`.

  Args:
    canvas: target canvas.
    head: geometry in the head frame.
    camera: pose, scale and position.
    look: colours, styles and light.
    rng: randomness of textures and strands.
  """
  s = camera.scale
  face_hull = convex_hull(camera.project(face_region_points(head)))
  skull = camera.outline(head.skull)
  curtain = camera.outline(head.hair_curtain)
  neck = convex_hull(camera.project(head.neck.reshape(-1, 3)))
  torso = _body(camera, head)
  head_box = _box(canvas, np.concatenate([face_hull, skull, neck]))
  if head_box is None:
    return
  skin = shaded(camera, head.shading, look.skin, look, head_box, rng, 0.02)
  torso_box = _box(canvas, torso)
  if torso_box is not None:
    cloth = shaded(camera, head.torso, look.clothes, look, torso_box, rng, 0.08)
    canvas.paint(canvas.polygon([torso]), cloth)
  long_hair = look.hair_style == 'long'
  hair_box = _box(canvas, np.concatenate([skull, curtain]) if long_hair else skull)
  hair = None
  if look.hair_style != 'bald' and hair_box is not None:
    hair = shaded(camera, head.skull, look.hair, look, hair_box, rng, 0.12)
    if long_hair:
      canvas.paint(canvas.polygon([curtain]), hair)
  neck_mask = canvas.polygon([neck])
  canvas.paint(neck_mask, skin)
  jaw_shadow = canvas.stroke(camera.project(head.landmarks[2:15]), s * 0.3, blur=s * 0.08)
  canvas.paint(intersect(jaw_shadow, neck_mask), (0.0, 0.0, 0.0), 0.5)
  canvas.paint(canvas.polygon([skull]), skin if hair is None else hair)
  if hair is not None:
    _hair_strands(canvas, camera, head, look, rng)
  for ear, normal in zip(head.ears, head.ear_normals, strict=True):
    if camera.facing(normal) > 0.05:
      canvas.paint(canvas.polygon([smooth_curve(camera.project(ear), True, 3)]), skin)
      inner = camera.project(ear * 0.6 + ear.mean(axis=0) * 0.4)
      canvas.paint(
        canvas.stroke(smooth_curve(inner, True, 2), s * 0.03, closed=True), (0.0, 0.0, 0.0), 0.3
      )
  canvas.paint(canvas.polygon([face_hull]), skin)
  if look.hair_style == 'fringe' and hair is not None:
    features.draw_fringe(canvas, head, camera, hair, rng)
  features.draw_features(canvas, head, camera, look, skin, rng)
