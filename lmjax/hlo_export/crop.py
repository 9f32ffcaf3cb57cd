"""The MCL test-time face crop inside a jax graph: `image_ops.mcl_crop`, pixel for pixel.

    crops, A = mcl_crops(images, boxes, size=50, grayscale=True, scale=1.1)
    points = image_points(crop_points, A)               # crop pixels -> image pixels

`lmjax.core.image_ops.mcl_crop` cuts one face on the host with OpenCV; this module computes the
same uint8 crop for a batch of faces with jax ops only, so that a whole predictor (image + box
-> image-pixel landmarks) can be jitted and exported. Each step copies what OpenCV does:
  * grey: `cv2.COLOR_RGB2GRAY` in fixed point, (9798 R + 19235 G + 3735 B + 2^14) >> 15;
  * the source window `image_ops._source_window` cuts (crop corners + margin, clipped to the
    image; the whole image when the crop lies outside it);
  * the area pre-shrink of `image_ops._antialias` (scale < 1 / 1.5): `cv2.resize(INTER_AREA)`
    of the window to round(side × scale) pixels, as overlap weights: OpenCV's fast path when
    both factors are integers (exact sums; 2 × 2 rounds half up, other areas round
    sum · float(1 / area)), else normalised float32 weights, rows first, then columns, rounded;
  * `cv2.warpAffine` bilinear (OpenCV 5 interpolates in floats, no 1/32-pixel grid): float32
    lerps along x then y, border 128, rounded to uint8. OpenCV 4 quantises positions to 1/32
    pixel; against it the crops would differ by a few grey levels.
The crop affine is axis-aligned (`geometry.crop_affine`), so the pre-shrink is separable: per
face, [P, W] and [P, H] weight matrices cut a P × P patch of the pre-shrunk window out of the
whole image (P = ceil(1.5 (S - 1)) + 4 covers any scale), then the S × S bilinear samples are
gathered from it. The geometry (window, pre-shrink size, sample positions) runs in float64
under `jax.enable_x64`, in the host's order of operations, so that crop edges on integers
round the same way (`stablehlo.export_function` traces so); float32 otherwise. What remains:
float32 sums in another order than OpenCV's, which round a .5 the other way in about 1 crop
pixel in 3 % of pre-shrunk faces (one grey level).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lmjax.core.image_ops import BORDER_VALUE

GREY_WEIGHTS_Q15 = (9798, 19235, 3735)  # OpenCV's RGB2GRAY fixed-point weights (sum 2^15)
ANTIALIAS_BELOW = 1 / 1.5  # `image_ops._antialias` pre-shrinks below this scale


def _fixed(x):
  """`x` materialised as computed: XLA may not fuse or reassociate across it (`_geometry`)."""
  return jax.lax.optimization_barrier(x)


def patch_size(size: int) -> int:
  """P: the pre-shrunk pixels one S-pixel crop axis reads (sample spacing ≤ 1.5 + margins)."""
  return math.ceil(1.5 * (size - 1)) + 4


def grey_q15(images: jnp.ndarray) -> jnp.ndarray:
  """uint8 [..., 3] RGB -> float32 [...] grey, exactly `cv2.cvtColor(RGB2GRAY)`."""
  x = images.astype(jnp.int32)
  r, g, b = GREY_WEIGHTS_Q15
  y = (x[..., 0] * r + x[..., 1] * g + x[..., 2] * b + (1 << 14)) >> 15
  return y.astype(jnp.float32)


def _window(lo, hi, margin, extent):
  """Window [start, stop) of one axis: `_source_window`'s cut, before the whole-image rule."""
  start = jnp.maximum(jnp.floor(lo) - margin, 0)
  stop = jnp.minimum(jnp.ceil(hi) + margin + 1, extent)
  return start, stop


def _area_weights(first, count, start, length, new, extent):
  """INTER_AREA weights of pre-shrunk pixels first + (0..P-1) over the image pixels of one axis.

  The window [start, start + length) (image pixels) shrinks to `new` pixels; pixel i averages
  window cells [i c, (i + 1) c), c = 1 / (new / length) as OpenCV computes it. Returns the
  overlaps [N, P, extent] (pixels outside [0, new) get zero rows), the cell widths [N, P] that
  normalise them, `inside` [N, P] and whether c is an integer [N] (OpenCV's fast path when
  both axes are).
  """
  i = first[:, None] + jnp.arange(count, dtype=first.dtype)[None]  # [N, P]
  cell = _fixed(1 / _fixed(new / length))  # [N]
  f1 = _fixed(i * cell[:, None])
  f2 = f1 + cell[:, None]
  src = jnp.arange(extent, dtype=first.dtype)[None, None] - start[:, None, None]  # window coords
  lo = jnp.maximum(f1[..., None], src)
  hi = jnp.minimum(jnp.minimum(f2[..., None], src + 1), length[:, None, None])
  overlap = jnp.maximum(hi - lo, 0.0)
  inside = (i >= 0) & (i < new[:, None])
  overlap = jnp.where(inside[..., None] & (src >= 0), overlap, 0.0)
  width = jnp.maximum(jnp.minimum(cell[:, None], length[:, None] - f1), 1e-6)
  return overlap, width, inside, jnp.floor(cell) == cell


def _sample_grid(sy, sx, oy, ox):
  """Integer corners (y0 [N, S], x0 [N, S], int32) and float32 fractions (ay, ax) of the
  bilinear samples at rows `sy` and columns `sx` of a patch of pre-shrunk pixels oy + i, ox + j."""
  qy, qx = sy - oy[:, None], sx - ox[:, None]
  y0, x0 = jnp.floor(qy), jnp.floor(qx)
  ay, ax = (qy - y0).astype(jnp.float32), (qx - x0).astype(jnp.float32)
  return y0.astype(jnp.int32), x0.astype(jnp.int32), ay, ax


def _bilinear(patch, y0, x0, ay, ax):
  """Bilinear samples [N, S, S, C] of `patch` [N, P, P, C] at the grid of `_sample_grid`;
  samples off the patch read the border value.

  Interpolated as OpenCV 5 does, in float32: two lerps along x, one along y, then rounded.
  """
  p = patch.shape[1]

  def rows(i):  # [N, S, P, C]: patch rows i [N, S], border outside
    ok = (i >= 0) & (i < p)
    out = jnp.take_along_axis(patch, jnp.clip(i, 0, p - 1)[:, :, None, None], axis=1)
    return jnp.where(ok[:, :, None, None], out, BORDER_VALUE)

  def cols(r, j):  # [N, S, S, C]: columns j [N, S] of rows r
    ok = (j >= 0) & (j < p)
    out = jnp.take_along_axis(r, jnp.clip(j, 0, p - 1)[:, None, :, None], axis=2)
    return jnp.where(ok[:, None, :, None], out, BORDER_VALUE)

  r0, r1 = rows(y0), rows(y0 + 1)
  a = ax[:, None, :, None]
  c00, c01, c10, c11 = cols(r0, x0), cols(r0, x0 + 1), cols(r1, x0), cols(r1, x0 + 1)
  top = c00 + a * (c01 - c00)
  bottom = c10 + a * (c11 - c10)
  return jnp.round(top + ay[:, :, None, None] * (bottom - top))


def _geometry(boxes, size: int, scale: float, h, w) -> dict[str, jnp.ndarray]:
  """Per face [N] (images of h × w pixels: scalars or [N]), `image_ops.mcl_crop`'s numbers in
  its order of operations: the crop affine (x_crop = s x + t), the source window, the
  pre-shrunk size and the sample positions [N, S] in pre-shrunk pixels.

  float64 under `jax.enable_x64` (as the host computes), else float32. Every step is
  materialised (`_fixed`) so that XLA neither fuses a · b + c into an FMA nor reassociates
  (it rewrites (a / b) / c as a / (b · c)): a crop edge the host computes as exactly 158.0
  must not become 157.99999999999997, one window pixel further.
  """
  dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
  b = boxes.astype(dtype)
  cx, cy = _fixed((b[:, 0] + b[:, 2]) / 2), _fixed((b[:, 1] + b[:, 3]) / 2)
  side = _fixed(scale * jnp.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))
  s = _fixed(size / side)
  half = _fixed(side / 2)
  tx = _fixed(_fixed(-_fixed(cx - half) * s) - 0.5)
  ty = _fixed(_fixed(-_fixed(cy - half) * s) - 0.5)
  ia = _fixed(s / _fixed(s * s))  # `_inverse_2x3`
  mean_scale = _fixed(jnp.sqrt(jnp.abs(_fixed(s * s))))
  margin = 2 + jnp.ceil(_fixed(2 / mean_scale))
  hf, wf = jnp.asarray(h, dtype), jnp.asarray(w, dtype)
  itx, ity = _fixed(-_fixed(ia * tx)), _fixed(-_fixed(ia * ty))
  lo, hi = _fixed(ia * -0.5), _fixed(ia * (size - 0.5))
  x0, x1 = _window(_fixed(lo + itx), _fixed(hi + itx), margin, wf)
  y0, y1 = _window(_fixed(lo + ity), _fixed(hi + ity), margin, hf)
  whole = (x1 <= x0) | (y1 <= y0)
  x0, y0 = jnp.where(whole, 0.0, x0), jnp.where(whole, 0.0, y0)
  ww, wh = jnp.where(whole, wf, x1 - x0), jnp.where(whole, hf, y1 - y0)
  shrink = mean_scale < ANTIALIAS_BELOW
  nw = jnp.where(shrink, jnp.maximum(jnp.round(_fixed(ww * mean_scale)), 1), ww)
  nh = jnp.where(shrink, jnp.maximum(jnp.round(_fixed(wh * mean_scale)), 1), wh)
  fx, fy = _fixed(nw / ww), _fixed(nh / wh)
  # A3 = A ∘ window cut ∘ pre-shrink (`_after_axis_map` twice); its inverse gives the samples
  tx2, ty2 = _fixed(_fixed(s * x0) + tx), _fixed(_fixed(s * y0) + ty)
  ax3 = jnp.where(shrink, _fixed(s * _fixed(1 / fx)), s)
  ay3 = jnp.where(shrink, _fixed(s * _fixed(1 / fy)), s)
  ox, oy = _fixed(_fixed(0.5 / fx) - 0.5), _fixed(_fixed(0.5 / fy) - 0.5)
  tx3 = jnp.where(shrink, _fixed(_fixed(s * ox) + tx2), tx2)
  ty3 = jnp.where(shrink, _fixed(_fixed(s * oy) + ty2), ty2)
  det = _fixed(ax3 * ay3)
  iax, iay = _fixed(ay3 / det), _fixed(ax3 / det)
  u = jnp.arange(size, dtype=dtype)[None]
  sx = _fixed(iax[:, None] * u) + _fixed(-_fixed(iax * tx3))[:, None]  # [N, S]
  sy = _fixed(iay[:, None] * u) + _fixed(-_fixed(iay * ty3))[:, None]
  return dict(s=s, tx=tx, ty=ty, x0=x0, y0=y0, ww=ww, wh=wh, nw=nw, nh=nh, sx=sx, sy=sy)


def crop_plan(
  boxes: jnp.ndarray,
  size: int,
  scale: float,
  image_hw: tuple,
  sizes: jnp.ndarray | None = None,
) -> dict[str, jnp.ndarray]:
  """Everything of N faces' crops that depends on the boxes only (not on the pixels).

  Args:
    boxes: float32 [N, 4] face boxes (x0, y0, x1, y1), image pixels.
    size, scale: S and crop side / longer box side.
    image_hw: (H, W) of the images (may be symbolic under `jax.export`).
    sizes: optional int32 [N, 2] (height, width) of each image's top-left picture.

  Returns:
    wy [N, P, H], wx [N, P, W] float32 pre-shrink weights, fast bool [N] (OpenCV's integer
    area path), area float32 [N], inside bool [N, P, P] (pre-shrunk pixels in the window),
    y0, x0 int32 [N, S] and ay, ax float32 [N, S] (the bilinear grid), A [N, 2, 3] affines.
  """
  h, w = image_hw
  if sizes is None:
    g = _geometry(boxes, size, scale, h, w)
  else:
    g = _geometry(boxes, size, scale, sizes[:, 0], sizes[:, 1])
  p = patch_size(size)
  ox = jnp.where(g['nw'] <= p, 0.0, jnp.floor(g['sx'][:, 0]))
  oy = jnp.where(g['nh'] <= p, 0.0, jnp.floor(g['sy'][:, 0]))
  wy, cell_y, in_y, int_y = _area_weights(oy, p, g['y0'], g['wh'], g['nh'], h)  # [N, P, H]
  wx, cell_x, in_x, int_x = _area_weights(ox, p, g['x0'], g['ww'], g['nw'], w)  # [N, P, W]
  fast = int_x & int_y  # OpenCV sums whole cells exactly, then rounds half up
  y0, x0, ay, ax = _sample_grid(g['sy'], g['sx'], oy, ox)
  zero = jnp.zeros_like(g['s'])
  A = jnp.stack(
    [jnp.stack([g['s'], zero, g['tx']], -1), jnp.stack([zero, g['s'], g['ty']], -1)], -2
  )
  return dict(
    wy=jnp.where(fast[:, None, None], wy, wy / cell_y[..., None]).astype(jnp.float32),
    wx=jnp.where(fast[:, None, None], wx, wx / cell_x[..., None]).astype(jnp.float32),
    fast=fast,
    area=((g['ww'] / g['nw']) * (g['wh'] / g['nh'])).astype(jnp.float32),
    inside=in_y[:, :, None] & in_x[:, None, :],
    y0=y0,
    x0=x0,
    ay=ay,
    ax=ax,
    A=A,
  )


def resample(pixels: jnp.ndarray, plan: dict[str, jnp.ndarray]) -> jnp.ndarray:
  """float32 crops [N, S, S, C] (x / 128 - 1) of pixels float32 [N, H, W, C] by `crop_plan`,
  in float32 like OpenCV."""
  wy, wx, fast = plan['wy'], plan['wx'], plan['fast'][:, None, None, None]
  patch = jnp.einsum('nqw,nhwc->nhqc', wx, pixels)  # OpenCV's order: rows first, then columns
  patch = jnp.einsum('nph,nhqc->npqc', wy, patch)  # [N, P, P, C]
  area = plan['area'][:, None, None, None]
  two_by_two = area == 4
  patch = jnp.where(
    fast,
    jnp.where(two_by_two, jnp.floor(patch / 4 + 0.5), jnp.round(patch * (1 / area))),
    jnp.round(patch),
  )  # fast path: 2 × 2 rounds half up ((s + 2) >> 2), other areas round s · float(1 / area)
  patch = jnp.where(plan['inside'][..., None], patch, BORDER_VALUE)
  crops = _bilinear(patch, plan['y0'], plan['x0'], plan['ay'], plan['ax'])
  return crops * (1 / 128) - 1


def crop_pixels(images: jnp.ndarray, grayscale: bool) -> jnp.ndarray:
  """uint8 [N, H, W, 3] RGB -> float32 [N, H, W, C] pixels the crop resamples."""
  return grey_q15(images)[..., None] if grayscale else images.astype(jnp.float32)


def mcl_crops(
  images: jnp.ndarray,
  boxes: jnp.ndarray,
  size: int,
  grayscale: bool,
  scale: float,
  sizes: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The MCL network inputs of N faces, as `image_ops.mcl_crop` cuts each one.

  Args:
    images: uint8 [N, H, W, 3] RGB (H, W may be symbolic under `jax.export`).
    boxes: float32 [N, 4] face boxes (x0, y0, x1, y1), image pixels.
    size: S.
    grayscale: grey crops (converted before resampling, as the host does).
    scale: crop side / longer box side.
    sizes: optional int32 [N, 2] (height, width) of each image's top-left part that holds the
      picture, the rest being padding (never read): the crops of those smaller images.

  Returns:
    crops: float32 [N, S, S, C] scaled as `x / 128 - 1` (C = 1 grey, else 3).
    A: float32 [N, 2, 3] image -> crop affines (`geometry.crop_affine`).
  """
  plan = crop_plan(boxes, size, scale, images.shape[1:3], sizes)
  return resample(crop_pixels(images, grayscale), plan), plan['A']


def image_points(points: jnp.ndarray, A: jnp.ndarray) -> jnp.ndarray:
  """Crop-pixel points [N, K, 2] -> float32 image pixels through square crop affines [N, 2, 3]
  (x_crop = s x + t, in the affines' precision)."""
  s = A[:, 0, 0][:, None, None]
  return ((points.astype(A.dtype) - A[:, None, :, 2]) / s).astype(jnp.float32)
