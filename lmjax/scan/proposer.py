"""The cascade's first stage: face windows of a whole photo from the ProposalNet (P-Net style).

    stage = ProposerStage(net_fn, params)              # net_fn(variables, x) -> logits, offsets
    found = stage.propose(variables, image, min_face)  # numpy: 'boxes' [P, 4], 'score', ...

The pyramid (`window_scales`): level l scales the photo by (12 / min_face) · factor^l, from the
largest level (a face of `min_face` pixels fills the net's 12 × 12 window) down while the
smaller side is at least 12 pixels. Its levels are packed into fixed-size tiles
(`lmjax.scan.tiling.pack_sizes`; the largest level is resized straight from the photo with area
averaging, the others from it), so a photo of any size runs the same two programs:

    per chunk of tiles (`chunk_windows`, jitted): ProposalNet maps --sigmoid--> face probability
        of every 12 × 12 window at stride 2; windows kept where the probability is above
        `threshold`, a 3×3 local maximum, the window's centre pixel is owned by a piece and
        the whole window lies in that piece; best `candidates` (validity mask) with their
        boxes (window + regressed offsets) in tile pixels
    (host) boxes mapped to photo pixels, chunks merged: best `candidates` overall
    `select_proposals` (jitted): NMS (IoU `nms_iou`), best `proposals`, made square
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry, image_ops, nms
from lmjax.models.proposal_net import STRIDE, WINDOW
from lmjax.scan import tiling

DEFAULT_FACTOR = 0.709  # side ratio between levels (1 / √2 in area), as MTCNN
MARGIN = WINDOW // 2  # a window whose centre a piece owns lies inside the piece


@dataclasses.dataclass(frozen=True)
class ProposerParams:
  """Static settings of the proposer stage (each distinct value compiles its own programs).

  Attributes:
    threshold: minimum face probability of a window.
    factor: side ratio between consecutive pyramid levels (0 < factor < 1).
    candidates: windows kept per chunk of tiles, and over the whole photo before NMS.
    proposals: proposals kept after NMS (P).
    nms_iou: IoU above which a window suppresses a weaker one.
    tile: tile side in pixels of the packed pyramid (0: `tiling.TILE`).
  """

  threshold: float = 0.5
  factor: float = DEFAULT_FACTOR
  candidates: int = 512
  proposals: int = 64
  nms_iou: float = 0.5
  tile: int = 128


def window_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
  """Scales (level pixels per photo pixel) of the proposer's pyramid, largest first.

  Level l is (WINDOW / min_face) · factor^l, while the smaller side stays ≥ WINDOW pixels; a
  photo whose largest level is already smaller than that gets none.
  """
  smaller, top = min(height, width), WINDOW / min_face
  if smaller * top < WINDOW:
    return []
  count = 1 + math.floor(math.log(WINDOW / (smaller * top)) / math.log(factor) + 1e-9)
  return [top * factor**lv for lv in range(count)]


def chunk_windows(
  net_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
  tiles: jax.Array,
  owner: jax.Array,
  rects: jax.Array,
  params: ProposerParams,
) -> dict[str, jax.Array]:
  """Program 1: the best `candidates` face windows of one chunk of tiles.

  Args:
    net_fn: [C, T, T, 3] (x / 128 - 1) -> (logits [C, H', W'], offsets [C, H', W', 4]).
    tiles: uint8 [C, T, T, 3] packed pyramid pieces (`lmjax.scan.tiling`).
    owner: int32 [C, T, T] chunk-local piece owning each pixel, -1 for none.
    rects: int32 [MAX_PIECES, 4] (x0, y0, x1, y1) of each chunk-local piece in its tile.
    params: static `ProposerParams`.

  Returns:
    'score' [N] face probability (-inf in empty slots), 'box' [N, 4] (x0, y0, x1, y1) tile
    pixels (pixel centres on integers), 'tile' [N], 'piece' [N] chunk-local piece (-1 for
    empty slots), with N = min(candidates, C · H' · W').
  """
  logits, offsets = net_fn(image_ops.normalize_pixels(tiles))  # [C, H', W'], [C, H', W', 4]
  _, rows, cols = logits.shape
  top = np.arange(rows) * STRIDE  # window top row / left column in the tile
  left = np.arange(cols) * STRIDE
  centre = WINDOW // 2
  piece = owner[:, top + centre][:, :, left + centre]  # [C, H', W'] owner of the window centre
  rect = rects[jnp.maximum(piece, 0)]  # [C, H', W', 4]
  inside = (
    (left[None, None, :] >= rect[..., 0])
    & (top[None, :, None] >= rect[..., 1])
    & (left[None, None, :] + WINDOW <= rect[..., 2])
    & (top[None, :, None] + WINDOW <= rect[..., 3])
  )
  prob = jnp.where((piece >= 0) & inside, jax.nn.sigmoid(logits), -jnp.inf)
  pooled = jax.lax.reduce_window(prob, -jnp.inf, jax.lax.max, (1, 3, 3), (1, 1, 1), 'SAME')
  keep = (prob >= pooled) & (prob > params.threshold)
  flat = jnp.where(keep, prob, -jnp.inf).reshape(-1)
  score, index = jax.lax.top_k(flat, min(params.candidates, flat.shape[0]))
  tile, cell = index // (rows * cols), index % (rows * cols)
  i, j = cell // cols, cell % cols
  x0, y0 = (j * STRIDE).astype(jnp.float32) - 0.5, (i * STRIDE).astype(jnp.float32) - 0.5
  window = jnp.stack([x0, y0, x0 + WINDOW, y0 + WINDOW], axis=-1)  # [N, 4] pixel edges
  box = window + offsets[tile, i, j] * WINDOW
  piece = jnp.where(jnp.isfinite(score), piece[tile, i, j], -1)
  return {'score': score, 'box': box, 'tile': tile, 'piece': piece}


def select_proposals(
  boxes: jax.Array, score: jax.Array, level: jax.Array, valid: jax.Array, params: ProposerParams
) -> dict[str, jax.Array]:
  """Program 2: NMS over a photo's merged windows [N] -> best `proposals` [P], made square.

  Returns 'boxes' [P, 4] squares of the longer side about each box's centre, 'score' [P]
  (0 where invalid), 'level' [P] their pyramid level (0: the largest), 'valid' [P].
  """
  keep = nms.nms(boxes, score, valid, params.nms_iou)
  index, ok = nms.top_valid(score, keep, min(params.proposals, score.shape[0]))
  centre, side = geometry.box_centre_side(boxes[index])
  return {
    'boxes': geometry.centred_boxes(centre, side),
    'score': jnp.where(ok, score[index], 0.0),
    'level': level[index],
    'valid': ok,
  }


def merge_windows(
  found: list[dict[str, np.ndarray]], parts: list[tiling.Chunk], layout: tiling.Layout, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(boxes [count, 4] photo pixels, score, level (0: the largest), valid [count]): the best
  windows of all chunks, their tile boxes mapped through their piece and level to the photo."""
  shift, level = tiling.piece_table(layout)
  boxes, scores, levels = [], [], []
  for out, part in zip(found, parts, strict=True):
    ok = out['piece'] >= 0
    glob = tiling.global_pieces(part, out['piece'])
    scale = layout.level_scale[level[glob]]  # [N, 2] (sx, sy)
    edges = out['box'] + np.tile(shift[glob], 2)  # level pixels
    boxes.append((edges + 0.5) / np.tile(scale, 2) - 0.5)
    scores.append(np.where(ok, out['score'], -np.inf))
    levels.append(len(layout.level_scale) - 1 - level[glob])
  boxes, scores, levels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(levels)
  order = np.argsort(-scores, kind='stable')[:count]
  out_boxes = np.zeros((count, 4), np.float32)
  out_score = np.full(count, -np.inf, np.float32)
  out_level = np.zeros(count, np.int32)
  out_boxes[: len(order)], out_score[: len(order)] = boxes[order], scores[order]
  out_level[: len(order)] = levels[order]
  valid = np.isfinite(out_score)
  return out_boxes, np.where(valid, out_score, 0.0).astype(np.float32), out_level, valid


class ProposerStage:
  """The proposer's two jitted programs: whatever the photos, they compile once each.

  Args:
    net_fn: `fn(variables, x [C, T, T, 3]) -> (logits [C, H', W'], offsets [C, H', W', 4])`.
    params: `ProposerParams`.
  """

  def __init__(self, net_fn, params: ProposerParams):
    self.params = params
    self.chunk = tiling.chunk_size()
    self.windows = jax.jit(
      lambda v, tiles, owner, rects: chunk_windows(
        lambda x: net_fn(v, x), tiles, owner, rects, params
      )
    )
    self.select = jax.jit(lambda b, s, lv, ok: select_proposals(b, s, lv, ok, params))

  def levels(self, image_shape, min_face: float) -> int:
    """Pyramid levels of a photo of `image_shape` (H, W, ...) for faces of ≥ `min_face` px."""
    return len(window_scales(*image_shape[:2], min_face, self.params.factor))

  def propose(self, variables, image: np.ndarray, min_face: float) -> dict[str, np.ndarray]:
    """Proposals of a uint8 [H, W, 3] photo (numpy `select_proposals` outputs)."""
    params = self.params
    height, width = image.shape[:2]
    scales = window_scales(height, width, min_face, params.factor)
    count = params.candidates
    if not scales:  # the photo is smaller than a face of min_face: nothing to scan
      boxes, score = np.zeros((count, 4), np.float32), np.zeros(count, np.float32)
      level, valid = np.zeros(count, np.int32), np.zeros(count, bool)
    else:
      sizes = tiling.scaled_sizes(height, width, scales[::-1])  # smallest level first
      layout = tiling.pack_sizes(image, sizes, params.tile or None, MARGIN)
      parts = tiling.chunks(layout, self.chunk)
      found = [
        jax.device_get(self.windows(variables, part.tiles, part.owner, part.rects))
        for part in parts
      ]
      boxes, score, level, valid = merge_windows(found, parts, layout, count)
    return jax.device_get(self.select(boxes, score, level, valid))

  def compiled(self) -> int:
    """Programs compiled so far (at most 2)."""
    return self.windows._cache_size() + self.select._cache_size()
