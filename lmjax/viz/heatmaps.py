"""Response-map pictures for BB-FCN: the input, its coarse maps and the fine maps side by side.

    panel = heatmap_panel(crop_u8, coarse_maps, fine_maps, points)   # uint8 [H, W, 3]
    write_png('viz.png', panel)

Maps are shown as a colour overlay on the grey input (max over landmark types, each map scaled
to its own [0, max]); fine maps are tiled one per landmark type with the final location marked.
Used by notebooks and by the evaluator's `--viz` option.
"""

from __future__ import annotations

import cv2
import numpy as np

from lmjax.core import image_ops
from lmjax.viz.draw import draw_landmarks


def _colour(values: np.ndarray) -> np.ndarray:
  """[H, W] float -> uint8 [H, W, 3] RGB (0 at the minimum, inferno-like to the maximum)."""
  v = np.asarray(values, np.float32)
  v = (v - v.min()) / max(float(v.max() - v.min()), 1e-8)
  bgr = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, maps: np.ndarray, alpha: float = 0.6) -> np.ndarray:
  """Grey `image` [S, S, 3] uint8 blended with the max over K of `maps` [S, S, K]."""
  positive = np.maximum(np.asarray(maps, np.float32), 0)
  scaled = positive / np.maximum(positive.max(axis=(0, 1), keepdims=True), 1e-8)
  grey = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
  base = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
  heat = _colour(scaled.max(axis=-1)).astype(np.float32)
  return np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)


def heatmap_panel(
  image: np.ndarray,
  coarse: np.ndarray,
  fine: np.ndarray | None = None,
  points: np.ndarray | None = None,
  *,
  scale: int = 4,
) -> np.ndarray:
  """One picture: input (with `points`), coarse-map overlay, and the K fine maps tiled.

  Args:
    image: uint8 [S, S, 3] network input (RGB).
    coarse: [S, S, K] coarse response maps.
    fine: optional [K, P, P] fine (branch) maps.
    points: optional [K, 2] predicted landmarks in input pixels.
    scale: integer enlargement of every panel (nearest neighbour, so pixels stay visible).

  Returns:
    uint8 [H, W, 3] RGB image.
  """
  image = np.asarray(image, np.uint8)
  coarse = np.asarray(coarse)
  if image.ndim != 3 or image.shape[-1] != 3 or coarse.shape[:2] != image.shape[:2]:
    raise ValueError(f'image {image.shape} must be [S, S, 3] and coarse {coarse.shape} [S, S, K]')
  big = lambda a: cv2.resize(a, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
  first = big(image)
  if points is not None:
    first = draw_landmarks(first, (np.asarray(points) + 0.5) * scale - 0.5, radius=scale / 2 + 1)
  panels = [first, big(overlay(image, coarse))]
  if fine is not None:
    fine = np.asarray(fine)
    k, p = fine.shape[0], fine.shape[1]
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    tile = np.zeros((rows * (p + 1), cols * (p + 1), 3), np.uint8)
    for i in range(k):  # a picture, not a hot path
      r, c = divmod(i, cols)
      tile[r * (p + 1) : r * (p + 1) + p, c * (p + 1) : c * (p + 1) + p] = _colour(fine[i])
    side = first.shape[0]
    panels.append(
      cv2.resize(tile, (side * tile.shape[1] // tile.shape[0], side), cv2.INTER_NEAREST)
    )
  height = max(pnl.shape[0] for pnl in panels)
  padded = [np.pad(pnl, ((0, height - pnl.shape[0]), (0, 4), (0, 0))) for pnl in panels]
  return np.concatenate(padded, axis=1)


def prediction_panel(crop: np.ndarray, out: dict[str, np.ndarray], scale: int = 3) -> np.ndarray:
  """`heatmap_panel` of one face from a BB-FCN prediction.

  Args:
    crop: float32 [R, R, 3] network input scaled as x / 128 - 1.
    out: one face's `constrained_predict` outputs (`maps` [S, S, K], `points` [K, 2] in R
      pixels, optional `fine_maps` [K, P, P]).
    scale: panel enlargement.
  """
  image = np.clip(image_ops.denormalize_pixels(np.asarray(crop)), 0, 255).astype(np.uint8)
  size = image.shape[0]
  maps = np.asarray(out['maps'], np.float32)
  coarse = cv2.resize(maps, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
  return heatmap_panel(image, coarse, out.get('fine_maps'), out['points'], scale=scale)


def write_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 RGB image as PNG."""
  if not cv2.imwrite(path, cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR)):
    raise OSError(f'could not write {path!r}')
