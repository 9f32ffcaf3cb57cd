"""The one device sampler (lmjax.core.sampling) and the anti-aliased window crops built on it
(lmjax.core.mipmap), against plain numpy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry, mipmap, sampling

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (17, 23, 3)).astype(np.uint8)


def bilinear_reference(image, x, y, border):
  """Per point: the 4 neighbours (pixel centres on integers), `border` outside, in float64."""
  h, w, c = image.shape
  out = np.empty((*x.shape, c))
  for idx in np.ndindex(x.shape):
    x0, y0 = int(np.floor(x[idx])), int(np.floor(y[idx]))
    fx, fy = x[idx] - x0, y[idx] - y0
    px = lambda i, j: image[j, i] if 0 <= i < w and 0 <= j < h else np.full(c, border)
    top = px(x0, y0) * (1 - fx) + px(x0 + 1, y0) * fx
    bottom = px(x0, y0 + 1) * (1 - fx) + px(x0 + 1, y0 + 1) * fx
    out[idx] = top * (1 - fy) + bottom * fy
  return out


def test_sample_bilinear_matches_the_numpy_reference():
  x = RNG.uniform(-3, 26, (9, 7)).astype(np.float32)  # some points outside: border taps
  y = RNG.uniform(-3, 20, (9, 7)).astype(np.float32)
  fn = jax.jit(functools.partial(sampling.sample_bilinear, border=77.0))
  got = np.asarray(fn(IMAGE, x, y))
  assert got.shape == (9, 7, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, bilinear_reference(IMAGE, x, y, 77.0), atol=1e-3)
  # Integer positions read the pixels themselves.
  xi, yi = np.meshgrid(np.arange(23, dtype=np.float32), np.arange(17, dtype=np.float32))
  np.testing.assert_array_equal(fn(IMAGE, xi, yi), IMAGE.astype(np.float32))


def test_sample_bilinear_reads_only_its_window():
  # A 9 × 6 window at column 11 of a canvas reads exactly like that window cut out.
  x = RNG.uniform(-2, 8, (50,)).astype(np.float32)
  y = RNG.uniform(-2, 11, (50,)).astype(np.float32)
  window = sampling.sample_bilinear(IMAGE, x, y, height=9, width=6, column_offset=11)
  np.testing.assert_allclose(window, bilinear_reference(IMAGE[:9, 11:17], x, y, 128.0), atol=1e-3)


def test_warp_affine_identity_shift_and_host_convention():
  identity = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  square = IMAGE[:17, :17]
  np.testing.assert_array_equal(sampling.warp_affine(square, identity, 17), square)
  # Output pixel u reads source u - 2.5 (a half-pixel blend of two neighbours), 0 outside.
  shift = jnp.array([[1.0, 0.0, 2.5], [0.0, 1.0, 0.0]])
  out = np.asarray(sampling.warp_affine(square, shift, 17, border=0.0))
  blend = (square[:, :-1].astype(np.float32) + square[:, 1:]) / 2
  np.testing.assert_allclose(out[:, 3:], blend[:, : 17 - 3], atol=1e-4)
  np.testing.assert_allclose(out[:, 2], square[:, 0] / 2, atol=1e-4)
  np.testing.assert_array_equal(out[:, :2], 0.0)


def test_rotated_window_is_the_rotated_crop():
  # A 48-pixel window centred between pixels: a quarter turn maps its sample grid onto itself,
  # so rotating the window by +90° (x towards y) rotates the crop by a quarter turn.
  image = RNG.integers(0, 256, (120, 130, 3)).astype(np.uint8)
  centre, side = jnp.float32([[53.5, 63.5]]), jnp.float32([48.0])
  crop = functools.partial(mipmap.crop_windows, size=24)
  plain = np.asarray(crop(image, centre, side))[0]
  turned = np.asarray(crop(image, centre, side, angle=jnp.float32([np.pi / 2])))[0]
  np.testing.assert_allclose(turned, np.rot90(plain, k=-1), atol=1e-3)
  mirrored = np.asarray(crop(image, centre, side, flip=jnp.array([True])))[0]
  np.testing.assert_allclose(mirrored, plain[:, ::-1], atol=1e-3)


def test_mip_levels_are_halvings_and_windows_pick_their_level():
  image = RNG.integers(0, 256, (64, 96, 1)).astype(np.uint8)
  layout = mipmap.mip_layout(64, 96, 24)  # halve while the longer side ≥ G · 2^j, G = 24
  assert layout == ((64, 96, 0), (32, 48, 96), (16, 24, 144))
  canvas = np.asarray(mipmap.mip_canvas(image, layout))
  assert canvas.shape == (64, 96 + 48 + 24, 1)
  half = image.astype(np.float64).reshape(32, 2, 48, 2, 1).mean(axis=(1, 3))
  np.testing.assert_allclose(canvas[:32, 96:144], half, atol=1e-4)
  np.testing.assert_array_equal(canvas[32:, 96:144], 0.0)  # below a level: never read
  # A 48-pixel box spans 2 G (G = 12 · 2): read from level 1, its 24 × 24 G-grid averages to the
  # block means of the level-1 pixels it covers, i.e. 4 × 4 means of the image.
  box = np.float32([[15.5, 7.5, 63.5, 55.5]])
  centre, side = geometry.box_centre_side(box)
  got = np.asarray(mipmap.crop_windows(image, centre, side, size=12))[0]
  blocks = image[8:56, 16:64].astype(np.float64).reshape(12, 4, 12, 4, 1).mean(axis=(1, 3))
  np.testing.assert_allclose(got, blocks, atol=1e-3)
