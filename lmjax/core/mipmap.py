"""Anti-aliased square window crops on device, read from a mip map (jittable, fixed shapes).

A mip map here is the stack of 2×-halved copies of an image (each level the 2 × 2 mean of the
previous one), packed side by side on one canvas so that one gather serves every level. A
window of side `side` resampled to S × S reads the level on which it spans G to 2 G pixels
(G = S · supersample; the finest level for smaller windows) with `lmjax.core.sampling`'s
bilinear sampler on a G × G grid, which is then averaged supersample × supersample down to
S × S. Level j has pixel centres x_j = (x + 0.5) / 2^j - 0.5. Pixels outside the image read as
the border value (128, 0 after x / 128 - 1).

Images may be padded to a few shapes (`image_size` gives the true h, w, possibly traced): every
level is then edge-replicated beyond its true size, so the crops equal those of the unpadded
image and padded images share one compiled program. The face classifier's crops are
`crop_windows` (`lmjax.facecls`), in training and at inference alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.core import geometry, sampling
from lmjax.core.image_ops import BORDER_VALUE

MAX_LEVELS = 10
# Layout of a packed mip map: (height, width, x offset on the canvas) of every level.
Layout = tuple[tuple[int, int, int], ...]


def mip_layout(height: int, width: int, grid: int) -> Layout:
  """Static layout of the levels: halve while the image's longer side reaches 2 × `grid`."""
  layout, h, w, offset = [(height, width, 0)], height, width, width
  while len(layout) < MAX_LEVELS and max(height, width) >= grid * 2 ** len(layout):
    h, w = -(-h // 2), -(-w // 2)
    layout.append((h, w, offset))
    offset += w
  return tuple(layout)


def level_sizes(
  layout: Layout, grid: int, image_size: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """True sizes int32 [L, 2] (h_j, w_j) of the levels and the number of levels in use.

  Without `image_size` the image fills the layout; with it (int [2], h w, may be traced) the
  image is its top-left part and the rest is padding: level j is ceil(h / 2^j) × ceil(w / 2^j)
  and only the levels `mip_layout(h, w, grid)` would build are used.
  """
  if image_size is None:
    return jnp.asarray([(h, w) for h, w, _ in layout], jnp.int32), jnp.int32(len(layout))
  hw = jnp.asarray(image_size, jnp.int32)
  j = jnp.arange(len(layout), dtype=jnp.int32)
  step = jnp.left_shift(1, j)  # 2^j
  sizes = (hw[None] + step[:, None] - 1) // step[:, None]  # [L, 2]
  levels = 1 + jnp.sum((j >= 1) & (jnp.max(hw) >= grid * step))
  return sizes, levels


def _replicate_edges(level: jax.Array, hw: jax.Array) -> jax.Array:
  """`level` [H, W, C] with rows ≥ h and columns ≥ w replaced by copies of the last ones."""
  rows = jnp.minimum(jnp.arange(level.shape[0]), hw[0] - 1)
  cols = jnp.minimum(jnp.arange(level.shape[1]), hw[1] - 1)
  return level[rows][:, cols]


def mip_canvas(image: jax.Array, layout: Layout, sizes: jax.Array | None = None) -> jax.Array:
  """float32 [H, W', C]: the levels of `layout` side by side (level 0 = `image` [H, W, C]).

  Each level is the 2 × 2 mean of the previous one, padded by edge replication to even size;
  rows below a smaller level are zero (never read: taps outside a level are masked). With
  `sizes` (`level_sizes` of a padded image) every level is edge-replicated beyond its true
  size first, so the true part of each level equals the mip map of the unpadded image.
  """
  level = image.astype(jnp.float32)
  height, channels = image.shape[0], image.shape[2]
  if sizes is not None:
    level = _replicate_edges(level, sizes[0])
  parts = [level]
  for j, (h, w, _) in enumerate(layout[1:], 1):
    pad = ((0, 2 * h - level.shape[0]), (0, 2 * w - level.shape[1]), (0, 0))
    level = jnp.pad(level, pad, mode='edge').reshape(h, 2, w, 2, channels).mean(axis=(1, 3))
    if sizes is not None:
      level = _replicate_edges(level, sizes[j])
    parts.append(jnp.pad(level, ((0, height - h), (0, 0), (0, 0))))
  return jnp.concatenate(parts, axis=1)


def window_affines(
  centre: jax.Array,
  side: jax.Array,
  grid: int,
  angle: jax.Array | None = None,
  flip: jax.Array | None = None,
) -> jax.Array:
  """[P, 2, 3] affines image -> G × G grid of square windows (`centre` [P, 2], `side` [P]).

  `angle` [P] (radians) rotates the window about its centre; `flip` bool [P] mirrors it.
  """
  A = geometry.square_affine(centre, side, grid)
  if angle is not None:
    A = geometry.compose_affine(A, geometry.rotation_about(centre, angle))
  if flip is not None:
    mirror = jnp.array([[-1.0, 0.0, grid - 1.0], [0.0, 1.0, 0.0]])
    A = jnp.where(flip[:, None, None], geometry.compose_affine(mirror, A), A)
  return A


def crop_windows(
  image: jax.Array,
  centre: jax.Array,
  side: jax.Array,
  *,
  size: int,
  supersample: int = 2,
  angle: jax.Array | None = None,
  flip: jax.Array | None = None,
  border: float = BORDER_VALUE,
  image_size: jax.Array | None = None,
) -> jax.Array:
  """Square windows of one image resampled to S × S, anti-aliased (jittable, fixed shapes).

  Args:
    image: [H, W, C] image (any real dtype; values as pixels, e.g. uint8).
    centre: [P, 2] window centres (x, y) in image pixels.
    side: [P] window sides in image pixels (> 0).
    size: S.
    supersample: grid points per output pixel and axis (G = S · supersample).
    angle: optional [P] rotations (radians) of the windows about their centres.
    flip: optional bool [P] horizontal mirroring.
    border: value of pixels outside the image.
    image_size: optional int [2] (h, w), may be traced: the image is `image`'s top-left
      h × w part, the rest is padding (read as outside). The crops equal those of the
      unpadded image, so images padded to a few shapes share one compiled program.

  Returns:
    float32 [P, S, S, C] in the image's value range.
  """
  height, width, channels = image.shape
  grid = size * supersample
  layout = mip_layout(height, width, grid)
  sizes, levels = level_sizes(layout, grid, image_size)
  canvas = mip_canvas(image, layout, None if image_size is None else sizes)  # [H, W', C]
  inv = geometry.invert_affine(window_affines(centre, side, grid, angle, flip).astype(jnp.float32))
  side = jnp.maximum(jnp.asarray(side, jnp.float32), 1e-6)
  level = jnp.clip(jnp.floor(jnp.log2(side / grid)), 0, levels - 1).astype(jnp.int32)  # [P]
  scale = 2.0 ** -level.astype(jnp.float32)  # [P]
  inv = inv * scale[:, None, None]  # grid -> level pixels: x_j = (x + 0.5) / 2^j - 0.5
  inv = inv.at[:, :, 2].add(0.5 * scale[:, None] - 0.5)
  h, w = (sizes[level, i, None, None] for i in range(2))  # [P, 1, 1]
  offset = jnp.asarray([o for _, _, o in layout], jnp.int32)[level, None, None]  # [P, 1, 1]
  x, y = sampling.affine_grid(inv, grid)  # [P, G, G] level pixels
  out = sampling.sample_bilinear(
    canvas, x, y, border=border, height=h, width=w, column_offset=offset
  )  # [P, G, G, C]
  p = out.shape[0]
  return out.reshape(p, size, supersample, size, supersample, channels).mean(axis=(2, 4))
