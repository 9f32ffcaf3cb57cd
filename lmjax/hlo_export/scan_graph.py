"""The BB-FCN pyramid scanner of one fixed canvas as a single jittable function.

    fn = scan_function(Scanner.load(folder, min_face=40), canvas=(480, 640))
    out = jax.jit(fn)(image)          # image uint8 [480, 640, 3] -> `scanner.detect`'s dict

`lmjax.scan.scanner.Scanner.scan` resizes the pyramid on the host (OpenCV), packs it into
tiles (`lmjax.scan.tiling`), runs the backbone program per chunk of tiles, merges the chunks'
candidates on the host and runs the detection program. For a fixed canvas and depth every
size in that chain is static (level sizes, pieces, tile layout), so here it is one function:

  canvas --`resize.apply` (OpenCV's INTER_AREA / INTER_LINEAR as constant weights)--> levels
    (top level from the canvas, the others from the top level, as `tiling.pack`)
  levels --static slices--> the T tiles of `tiling.pack`'s layout (grey elsewhere)
  T tiles --`scanner.tile_candidates` (all tiles as one chunk)--> best candidates per type
  candidates --`merge`: level offsets, scales (the host merge in jax ops)--> `scanner.detect`

With all tiles in one chunk the best `candidates` per type come straight from one top-k, which
is what the host merge of per-tile top-ks keeps too (ties aside). What differs from the host
scan is only the resize: one grey level on a few pixels (`lmjax.hlo_export.resize`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.hlo_export import resize
from lmjax.models.bbfcn import BBFCN
from lmjax.scan import pyramid, scanner, tiling


@dataclasses.dataclass(frozen=True)
class CanvasLayout:
  """The static pyramid of a canvas: level sizes, resize plans and the packed tile layout.

  Attributes:
    canvas: (H, W).
    sizes: (rows, cols) of each level.
    plans: resize plan of each level (the top level's from the canvas, the others' from it).
    layout: `tiling.Layout` of the canvas (its tiles are unused; pieces, owner, scales are).
    piece_shift: float32 [P, 2] level pixels minus tile pixels of each piece (x, y).
    piece_level: int32 [P] level of each piece.
    rects: int32 [P, 4] (x0, y0, x1, y1) of each piece in its tile.
    level_scale: float32 [L, 2] (sx, sy) level pixels per canvas pixel.
    iso_scale: float32 [L] nominal scale 32 · 1.16^l / min(H, W) of each level.
  """

  canvas: tuple[int, int]
  sizes: list[tuple[int, int]]
  plans: list[resize.Plan]
  layout: tiling.Layout
  piece_shift: np.ndarray
  piece_level: np.ndarray
  rects: np.ndarray
  level_scale: np.ndarray
  iso_scale: np.ndarray


def canvas_layout(canvas: tuple[int, int], levels: int) -> CanvasLayout:
  """The `CanvasLayout` of an H × W canvas scanned with `levels` levels."""
  height, width = canvas
  sizes = tiling.level_sizes(height, width, levels)
  layout = tiling.pack(np.zeros((height, width, 3), np.uint8), levels)
  top = sizes[-1]
  plans = [resize.plan(*top, *size) for size in sizes[:-1]] + [resize.plan(height, width, *top)]
  pieces = layout.pieces
  return CanvasLayout(
    canvas=(height, width),
    sizes=sizes,
    plans=plans,
    layout=layout,
    piece_shift=np.array([(p.lx0 - p.x0, p.ly0 - p.y0) for p in pieces], np.float32),
    piece_level=np.array([p.level for p in pieces], np.int32),
    rects=np.array([(p.x0, p.y0, p.x0 + p.width, p.y0 + p.height) for p in pieces], np.int32),
    level_scale=layout.level_scale.astype(np.float32),
    iso_scale=(pyramid.level_side(np.arange(levels)) / min(height, width)).astype(np.float32),
  )


def packed_tiles(image: jax.Array, plan: CanvasLayout) -> jax.Array:
  """uint8 [H, W, 3] canvas -> uint8 [T, TILE, TILE, 3]: `tiling.pack`'s tiles, in jax ops."""
  top_index = len(plan.sizes) - 1
  top = resize.apply(image.astype(jnp.float32), plan.plans[top_index])
  levels = {top_index: top}
  tiles = jnp.full((len(plan.layout.tiles), tiling.TILE, tiling.TILE, 3), tiling.GREY, jnp.float32)
  for p in plan.layout.pieces:
    if p.level not in levels:
      levels[p.level] = resize.apply(top, plan.plans[p.level])
    part = levels[p.level][p.ly0 : p.ly0 + p.height, p.lx0 : p.lx0 + p.width]
    tiles = tiles.at[p.tile, p.y0 : p.y0 + p.height, p.x0 : p.x0 + p.width].set(part)
  return tiles.astype(jnp.uint8)


def owner_map(plan: CanvasLayout) -> jax.Array:
  """int32 [T, TILE, TILE] `tiling.Layout.owner` built from the pieces' owned rectangles
  (a few slice updates instead of a T × 256 × 256 constant in the exported file)."""
  shape = (len(plan.layout.tiles), tiling.TILE, tiling.TILE)
  owner = jnp.full(shape, -1, jnp.int32)
  for i, p in enumerate(plan.layout.pieces):
    x0, y0, x1, y1 = p.own
    owner = owner.at[p.tile, y0:y1, x0:x1].set(i)
  return owner


def merge(found: dict[str, jax.Array], plan: CanvasLayout, count: int) -> dict[str, jax.Array]:
  """`scanner.merge_candidates` of one chunk holding every tile, in jax ops: the `cand` dict
  of `scanner.detect` (found: `tile_candidates` with global piece indices)."""
  piece = found['piece']  # [K, k]
  valid = (piece >= 0) & jnp.isfinite(found['value'])
  at = jnp.maximum(piece, 0)
  shift = jnp.asarray(plan.piece_shift)[at]  # [K, k, 2]
  level = jnp.asarray(plan.piece_level)[at]  # empty slots: piece 0's, as on the host
  cand = {
    'value': jnp.where(valid, found['value'], 0.0),
    'valid': valid,
    'xy': found['xy'].astype(jnp.float32) + shift,
    'origin': found['origin'].astype(jnp.float32) + shift,
    'level': level,
    'patches': found['patches'],
  }
  pad = count - piece.shape[1]
  if pad > 0:  # fewer canvas pixels than candidates (tiny canvases)
    cand = {
      key: jnp.pad(val, [(0, 0), (0, pad)] + [(0, 0)] * (val.ndim - 2)) for key, val in cand.items()
    }
  cand['scale'] = jnp.asarray(plan.level_scale)[cand['level']]  # [K, M, 2]
  cand['iso_scale'] = jnp.asarray(plan.iso_scale)[cand['level']]  # [K, M]
  return cand


def scan_function(scan: scanner.Scanner, canvas: tuple[int, int]):
  """`fn(image uint8 [H, W, 3]) -> scanner.detect's dict` of `scan`'s model at one canvas.

  Args:
    scan: a `Scanner`: its model, variables, face template and `ScanParams`; the depth is
      the one it uses for the canvas (`levels`, or from `min_face` and min(H, W)).
    canvas: (H, W) of the images the function takes.
  """
  levels = scan.levels_for(min(canvas))
  plan = canvas_layout(canvas, levels)
  params = dataclasses.replace(scan.params, levels=levels)
  model, variables = scan.model, scan.variables
  coarse = lambda x: model.apply(variables, x, method=BBFCN.coarse)
  fine = (lambda p: model.apply(variables, p, method=BBFCN.fine)) if params.refine else None
  template = jnp.asarray(scan.template)

  def fn(image):
    tiles = packed_tiles(image, plan)
    found = scanner.tile_candidates(coarse, tiles, owner_map(plan), jnp.asarray(plan.rects), params)
    cand = merge(found, plan, params.candidates)
    return scanner.detect(fine, cand, template, scan.spec['crop_scale'], params)

  return fn
