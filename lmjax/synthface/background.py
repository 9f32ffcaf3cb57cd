"""Cluttered backgrounds and the camera effects applied to finished images."""

from __future__ import annotations

import cv2
import numpy as np

from lmjax.synthface.appearance import skin_tone
from lmjax.synthface.canvas import Canvas, ellipse_points, rectangle_points, smooth_curve


def smooth_noise(
  rng: np.random.Generator, height: int, width: int, cell: float, channels: int = 3
) -> np.ndarray:
  """Zero-mean, roughly unit-variance noise that varies over about `cell` pixels."""
  gh, gw = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
  coarse = rng.standard_normal((gh, gw, channels), np.float32)
  out = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
  return out.reshape(height, width, channels)


def ramp(height: int, width: int, angle: float) -> np.ndarray:
  """[H, W] float32 coordinate along the direction `angle` (pixels)."""
  x = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle))
  y = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))
  return x + y


def _base(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A gradient, blotchy texture, stripes or grain, in random colours."""
  c0, c1 = rng.uniform(0.0, 1.0, (2, 3)).astype(np.float32)
  kind = rng.choice(4, p=[0.35, 0.3, 0.2, 0.15])
  if kind == 0:  # linear gradient
    t = ramp(height, width, rng.uniform(0, 2 * np.pi))
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    return c0 + t[..., None] * (c1 - c0)
  if kind == 1:  # blotches
    t = smooth_noise(rng, height, width, rng.uniform(6, 40), 1)
    return c0 + np.clip(0.5 + 0.3 * t, 0, 1) * (c1 - c0)
  if kind == 2:  # stripes / waves
    t = ramp(height, width, rng.uniform(0, np.pi)) * (2 * np.pi / rng.uniform(3, 30))
    t = 0.5 + 0.5 * np.sin(t)
    return c0 + t[..., None] * (c1 - c0)
  grain = smooth_noise(rng, height, width, rng.uniform(1, 3))
  return np.clip(c0 + 0.15 * grain, 0, 1)


def _random_shape(canvas: Canvas, rng: np.random.Generator) -> None:
  """One clutter item: rectangle, ellipse, blob, polyline or a skin-coloured distractor."""
  h, w = canvas.height, canvas.width
  centre = rng.uniform([0, 0], [w, h])
  size = rng.uniform(0.04, 0.45) * min(h, w)
  colour = rng.uniform(0, 1, 3)
  kind = rng.integers(5)
  if kind == 0:
    half = rng.uniform(0.3, 1.0, 2) * size
    mask = canvas.polygon([rectangle_points(centre, half, rng.uniform(0, np.pi))])
  elif kind == 1:
    mask = canvas.polygon(
      [ellipse_points(centre, rng.uniform(0.2, 1.0, 2) * size, rng.uniform(0, np.pi))]
    )
  elif kind == 2:
    mask = canvas.polygon([blob(rng, centre, size)])
  elif kind == 3:
    points = centre + rng.normal(0, size, (rng.integers(2, 5), 2))
    mask = canvas.stroke(points, rng.uniform(1, 4))
  else:  # something face-coloured that is not a face
    colour = skin_tone(rng) * rng.uniform(0.7, 1.1)
    mask = canvas.polygon(
      [ellipse_points(centre, (size * 0.5, size * 0.65), rng.uniform(0, np.pi))],
      blur=rng.uniform(0, 2),
    )
  canvas.paint(mask, np.clip(colour, 0, 1), rng.uniform(0.5, 1.0))


def blob(rng: np.random.Generator, centre: np.ndarray, size: float) -> np.ndarray:
  """A random smooth closed shape of about `size` radius."""
  n = int(rng.integers(5, 9))
  angles = np.sort(rng.uniform(0, 2 * np.pi, n))
  radii = size * rng.uniform(0.5, 1.0, n)
  points = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
  return smooth_curve(points, closed=True, samples=4)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A random cluttered background, float32 RGB [height, width, 3] in [0, 1]."""
  canvas = Canvas(_base(rng, height, width))
  for _ in range(int(rng.integers(1, 12))):
    _random_shape(canvas, rng)
  if rng.random() < 0.3:
    canvas.image = cv2.GaussianBlur(canvas.image, (0, 0), rng.uniform(0.5, 2.5))
  return canvas.image


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] -> uint8 (rounded, clipped)."""
  return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def camera_effects(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Colour cast, contrast, gamma, greyscale, blur, sensor noise and JPEG artefacts.

  Args:
    image: float RGB [H, W, 3] in [0, 1].
    rng: randomness.

  Returns:
    uint8 RGB [H, W, 3].
  """
  img = image * rng.uniform(0.85, 1.15, 3).astype(np.float32)
  img = (img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
  img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.75, 1.35)
  if rng.random() < 0.1:
    img = np.repeat(img @ np.float32([[0.299], [0.587], [0.114]]), 3, axis=2)
  if rng.random() < 0.4:
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
  elif rng.random() < 0.1:
    length = int(rng.integers(3, 7))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    img = cv2.filter2D(img, -1, kernel / kernel.sum())
  # Uniform sensor noise (std up to 0.04) from random bytes, much cheaper than normals.
  noise = np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape).astype(np.float32)
  img = img + (noise - 127.5) * np.float32(rng.uniform(0.0, 0.04) * np.sqrt(3.0) / 127.5)
  out = to_uint8(img)
  if rng.random() < 0.25:
    ok, buf = cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out
  return out
