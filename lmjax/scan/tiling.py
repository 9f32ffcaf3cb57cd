"""The scanner's pyramid packed into fixed-size tiles, so that every photo runs the same programs.

The pyramid of an h × w image has L levels; level l is the image resized so that its smaller
side is 32 · step^l pixels (`pyramid.level_side`). Instead of one canvas per level (whose shape
would depend on the photo's size and aspect ratio, one compiled program per photo size), the
levels are cut into pieces and packed into square tiles of `TILE` pixels:

* a level that fits in a tile is one piece; a larger one is cut into the fewest equal pieces
  that fit, overlapping by 2 · `MARGIN`, and each pixel is *owned* by exactly one piece, at
  least `MARGIN` pixels inside the cut edges (so the backbone sees `MARGIN` pixels of real
  context around every owned pixel);
* pieces are shelf-packed into tiles, `GAP` grey pixels apart; tile pixels outside every
  piece are grey (0 after x / 128 - 1, like the canvas padding before).

The levels are resized here on the host with OpenCV (area averaging when shrinking), the top
level straight from the photo and the others from the top level, so a 12-megapixel photo is
never sent to the device at more than the resolution its deepest level needs. Tiles then go to
the device a chunk at a time (`lmjax.scan.scanner`; one tile per call on a CPU, where padding a
chunk with grey tiles would cost their full backbone, `ACCELERATOR_CHUNK` on a GPU / TPU): the
number of compiled programs no longer depends on the photos, only on the scanner's settings.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import cv2
import jax
import numpy as np

from lmjax.scan import pyramid

TILE = 256  # tile side (pixels; divisible by 4 for the backbone)
MARGIN = 24  # owned pixels lie at least this far inside a piece's cut edges
GAP = 16  # grey pixels between packed pieces
ACCELERATOR_CHUNK = 8  # tiles per device call on a GPU / TPU (1 on a CPU)
MAX_PIECES = 64  # pieces per chunk (the per-chunk piece table is padded to this)
GREY = 128


@dataclasses.dataclass(frozen=True)
class Piece:
  """A rectangle of one pyramid level placed in a tile.

  Attributes:
    level: pyramid level l.
    tile: tile index.
    x0, y0: top-left corner in the tile.
    width, height: size in pixels (the same in the tile and the level).
    lx0, ly0: top-left corner in the level.
    own: (x0, y0, x1, y1) owned rectangle in tile pixels (end exclusive).
  """

  level: int
  tile: int
  x0: int
  y0: int
  width: int
  height: int
  lx0: int
  ly0: int
  own: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Layout:
  """The packed pyramid of one image.

  Attributes:
    tiles: uint8 [T, TILE, TILE, 3].
    owner: int32 [T, TILE, TILE] index into `pieces` of the piece owning each pixel, -1 if none.
    pieces: the pieces, in index order.
    level_scale: float64 [L, 2] (sx, sy) level pixels per image pixel of each level.
  """

  tiles: np.ndarray
  owner: np.ndarray
  pieces: list[Piece]
  level_scale: np.ndarray


def level_sizes(
  height: int, width: int, levels: int, step: float = pyramid.SCALE_STEP
) -> list[tuple[int, int]]:
  """(rows, cols) of each level of an image: smaller side 32 · step^l, aspect kept."""
  smaller = min(height, width)
  scales = [pyramid.level_side(lv, step) / smaller for lv in range(levels)]
  return scaled_sizes(height, width, scales)


def scaled_sizes(height: int, width: int, scales) -> list[tuple[int, int]]:
  """(rows, cols) of an image scaled by each of `scales` (level pixels per image pixel)."""
  return [(max(1, round(height * s)), max(1, round(width * s))) for s in scales]


def cuts(
  length: int, tile: int | None = None, margin: int = MARGIN
) -> list[tuple[int, int, int, int]]:
  """Pieces (start, size, own_start, own_end) along one axis of `length` level pixels.

  One piece when the axis fits in a tile (of `tile` pixels, default `TILE`); else the fewest
  equal pieces of at most `tile` pixels whose neighbours overlap by at least 2 · `margin`
  (default `MARGIN`), each owning up to the middle of its overlaps.
  """
  tile = tile or TILE
  if length <= tile:
    return [(0, length, 0, length)]
  count = math.ceil((length - 2 * margin) / (tile - 2 * margin))
  size = math.ceil((length + (count - 1) * 2 * margin) / count)
  starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
  bounds = [0] + [(a + size + b) // 2 for a, b in itertools.pairwise(starts)] + [length]
  return [(start, size, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def _place(sizes: list[tuple[int, int]], tile: int) -> list[tuple[int, int, int]]:
  """First-fit decreasing shelf packing of (height, width) rectangles (each ≤ tile) into tiles.

  Tallest first; each goes on the first shelf (of any tile) with room, else on a new shelf in
  the first tile with room, else in a new tile. Returns (tile, x0, y0) per rectangle.
  """
  shelves: list[list[int]] = []  # [tile, y, height, next free x]
  tile_bottom: list[int] = []  # per tile: first free y
  spots: list[tuple[int, int, int]] = [(0, 0, 0)] * len(sizes)
  for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
    h, w = sizes[i]
    shelf = next((s for s in shelves if s[2] >= h and s[3] + w <= tile), None)
    if shelf is None:
      index = next((t for t, y in enumerate(tile_bottom) if y + h <= tile), None)
      if index is None:
        index = len(tile_bottom)
        tile_bottom.append(0)
      shelf = [index, tile_bottom[index], h, 0]
      tile_bottom[index] += h + GAP
      shelves.append(shelf)
    spots[i] = (shelf[0], shelf[3], shelf[1])
    shelf[3] += w + GAP
  return spots


def _resize(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
  shrink = rows < image.shape[0] or cols < image.shape[1]
  method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  return cv2.resize(image, (cols, rows), interpolation=method)


def pack(
  image: np.ndarray, levels: int, step: float = pyramid.SCALE_STEP, tile: int | None = None
) -> Layout:
  """The L-level pyramid of a uint8 [H, W, 3] image packed into tiles (see the module doc).

  Args:
    image: uint8 [H, W, 3].
    levels: L.
    step: scale step between levels (`pyramid.level_side`).
    tile: tile side in pixels (default `TILE`; a multiple of 4 for the backbone).
  """
  return pack_sizes(image, level_sizes(*image.shape[:2], levels, step), tile)


def pack_sizes(
  image: np.ndarray, sizes: list[tuple[int, int]], tile: int | None = None, margin: int = MARGIN
) -> Layout:
  """Any pyramid of a uint8 [H, W, 3] image packed into tiles: level l is `sizes[l]` (rows,
  cols), sizes growing with l; the last (largest) level is resized from the image, the others
  from it. `margin`: owned pixels lie at least this far inside cut edges (the context a network
  needs around a pixel it owns; `MARGIN` for the backbone).
  """
  tile = tile or TILE
  height, width = image.shape[:2]
  levels = len(sizes)
  rects = []  # (level, ly0, lx0, rows, cols, own y0, own y1, own x0, own x1) in level pixels
  for lv, (rows, cols) in enumerate(sizes):
    for ys, h, oy0, oy1 in cuts(rows, tile, margin):
      for xs, w, ox0, ox1 in cuts(cols, tile, margin):
        rects.append((lv, ys, xs, h, w, oy0, oy1, ox0, ox1))
  spots = _place([(r[3], r[4]) for r in rects], tile)
  num_tiles = max(t for t, _, _ in spots) + 1
  tiles = np.full((num_tiles, tile, tile, 3), GREY, np.uint8)
  owner = np.full((num_tiles, tile, tile), -1, np.int32)
  top = _resize(image, *sizes[-1])
  level_images = {levels - 1: top}
  pieces = []
  for index, ((lv, ys, xs, h, w, oy0, oy1, ox0, ox1), (t, x0, y0)) in enumerate(
    zip(rects, spots, strict=True)
  ):
    if lv not in level_images:
      level_images[lv] = _resize(top, *sizes[lv])
    tiles[t, y0 : y0 + h, x0 : x0 + w] = level_images[lv][ys : ys + h, xs : xs + w]
    own = (x0 + ox0 - xs, y0 + oy0 - ys, x0 + ox1 - xs, y0 + oy1 - ys)
    owner[t, own[1] : own[3], own[0] : own[2]] = index
    pieces.append(Piece(lv, t, x0, y0, w, h, xs, ys, own))
  scale = np.array([(c / width, r / height) for r, c in sizes], np.float64)
  return Layout(tiles, owner, pieces, scale)


@dataclasses.dataclass(frozen=True)
class Chunk:
  """C tiles of a layout as one device call's input.

  Attributes:
    tiles: uint8 [C, TILE, TILE, 3] (grey tiles pad the last chunk).
    owner: int32 [C, TILE, TILE] chunk-local piece index, -1 where no piece owns a pixel.
    rects: int32 [MAX_PIECES, 4] (x0, y0, x1, y1) of each chunk-local piece in its tile.
    pieces: global piece index of each chunk-local piece.
  """

  tiles: np.ndarray
  owner: np.ndarray
  rects: np.ndarray
  pieces: list[int]


def chunk_size() -> int:
  """Tiles per device call on the default backend (1 on a CPU, `ACCELERATOR_CHUNK` else)."""
  return 1 if jax.default_backend() == 'cpu' else ACCELERATOR_CHUNK


def chunks(layout: Layout, size: int) -> list[Chunk]:
  """The layout's tiles in chunks of `size`, owners renumbered per chunk."""
  out = []
  for first in range(0, len(layout.tiles), size):
    ids = range(first, min(first + size, len(layout.tiles)))
    members = [i for i, p in enumerate(layout.pieces) if p.tile in ids]
    if len(members) > MAX_PIECES:
      raise ValueError(f'{len(members)} pieces in one chunk; the table holds {MAX_PIECES}')
    tiles = np.full((size, *layout.tiles.shape[1:]), GREY, np.uint8)
    owner = np.full((size, *layout.owner.shape[1:]), -1, np.int32)
    tiles[: len(ids)] = layout.tiles[first : first + len(ids)]
    local = np.full(len(layout.pieces), -1, np.int32)
    local[members] = np.arange(len(members), dtype=np.int32)
    glob = layout.owner[first : first + len(ids)]
    owner[: len(ids)] = np.where(glob >= 0, local[np.maximum(glob, 0)], -1)
    rects = np.zeros((MAX_PIECES, 4), np.int32)
    for j, i in enumerate(members):
      p = layout.pieces[i]
      rects[j] = (p.x0, p.y0, p.x0 + p.width, p.y0 + p.height)
    out.append(Chunk(tiles, owner, rects, members))
  return out


def piece_table(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
  """(shift float32 [P, 2], level int32 [P]) of the layout's pieces: level pixels minus tile
  pixels (x, y), and pyramid level (one zero row for a layout without pieces)."""
  pieces = layout.pieces
  shift = np.array([(p.lx0 - p.x0, p.ly0 - p.y0) for p in pieces] or [(0, 0)], np.float32)
  level = np.array([p.level for p in pieces] or [0], np.int32)
  return shift, level


def global_pieces(part: Chunk, local: np.ndarray) -> np.ndarray:
  """int32 layout piece index of the chunk-local piece indices `local` (0 where `local` < 0)."""
  table = np.asarray([*part.pieces, 0], np.int32)
  return table[np.where(local >= 0, local, len(part.pieces))]
