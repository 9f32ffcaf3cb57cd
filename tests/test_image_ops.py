"""The MCL crop (lmjax.core.image_ops) and the on-device augmentation (lmjax.core.augment)."""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import augment as aug
from lmjax.core import geometry, image_ops, sampling
from lmjax.core.landmarks import COFW29, FIVE, IBUG68

BBOX = np.array([70.0, 50.0, 150.0, 140.0])
# Five dots inside BBOX (LE, RE, nose, LM, RM), asymmetric, with distinct brightness so that
# each can be told apart after a flip.
DOTS = np.array([[90, 75], [132, 72], [108, 98], [92, 122], [128, 125]], np.float64) + 0.3
DOT_PEAKS = np.array([100.0, 140.0, 180.0, 220.0, 255.0])
REGION_SIZE, REGION_SCALE = 128, 2.2


def smooth_image(seed: int = 0, shape=(200, 240, 3)) -> np.ndarray:
  """Smooth random uint8 image (bilinear samplers agree on it up to rounding)."""
  noise = np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)
  blurred = cv2.GaussianBlur(noise, (0, 0), 3)
  return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).reshape(shape)


def dot_image(shape=(200, 240), sigma: float = 2.5) -> np.ndarray:
  """Black uint8 RGB image with a Gaussian dot at each of DOTS."""
  ys, xs = np.mgrid[: shape[0], : shape[1]]
  image = np.zeros(shape)
  for (x, y), peak in zip(DOTS, DOT_PEAKS, strict=True):
    image += peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
  return np.repeat(np.round(image).astype(np.uint8)[..., None], 3, axis=2)


def window_centroids(crop: np.ndarray, centres: np.ndarray, radius: float = 6.0):
  """Intensity centroids [K, 2] and masses [K] of a grey crop [S, S, 1] around `centres`."""
  ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
  out, mass = [], []
  for cx, cy in centres:
    w = crop[..., 0] * (((xs - cx) ** 2 + (ys - cy) ** 2) <= radius**2)
    out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    mass.append(w.sum())
  return np.array(out), np.array(mass)


def batch_of(region: dict[str, np.ndarray], n: int) -> tuple[jax.Array, ...]:
  return tuple(
    jnp.asarray(np.repeat(region[k][None], n, 0)) for k in ('region', 'landmarks', 'bbox')
  )


# ----------------------------------------------------------------------------- host crop
def test_crop_affine_pixel_centre_convention():
  A = geometry.crop_affine(BBOX, size=50, scale=1.1)
  side = 1.1 * 90.0
  left, top = 110.0 - side / 2, 95.0 - side / 2
  corners = np.array([[left, top], [110.0, 95.0], [left + side, top + side]])
  np.testing.assert_allclose(
    geometry.apply_affine(corners, A), [[-0.5, -0.5], [24.5, 24.5], [49.5, 49.5]]
  )


def test_crop_inverse_round_trip():
  rng = np.random.default_rng(1)
  points = rng.uniform(0, 300, (8, 68, 2)).astype(np.float32)
  xy0 = rng.uniform(0, 200, (8, 2))
  boxes = np.concatenate([xy0, xy0 + rng.uniform(20, 150, (8, 2))], axis=1)
  A = geometry.crop_affine(boxes, 50)  # [8, 2, 3]
  back = geometry.to_image_coords(geometry.apply_affine(points, A), A)
  assert np.abs(back - points).max() < 0.01
  # The jax versions give the same numbers.
  back_jax = geometry.to_image_coords(geometry.apply_affine(jnp.asarray(points), jnp.asarray(A)), A)
  assert np.abs(np.asarray(back_jax) - points).max() < 0.01


def test_mcl_crop_lands_landmarks_on_features():
  crop, A = image_ops.mcl_crop(dot_image(), BBOX, size=50, grayscale=True)
  assert crop.shape == (50, 50, 1) and crop.dtype == np.float32
  assert crop.min() >= -1.0 and crop.max() < 1.0
  expected = geometry.apply_affine(DOTS, A)
  found, _ = window_centroids(image_ops.denormalize_pixels(crop), expected)
  np.testing.assert_allclose(found, expected, atol=0.1)


def test_region_composes_with_crop():
  region = image_ops.extract_region(smooth_image(), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  assert region['region'].shape == (REGION_SIZE, REGION_SIZE, 3)
  direct = geometry.crop_affine(BBOX, 50)
  via_region = geometry.compose_affine(
    geometry.crop_affine(region['bbox'].astype(np.float64), 50), region['affine']
  )
  np.testing.assert_allclose(via_region, direct, atol=1e-4)
  np.testing.assert_allclose(
    region['landmarks'], geometry.apply_affine(DOTS, region['affine']), atol=1e-4
  )


def test_host_warp_matches_jnp_sampler():
  image = smooth_image(2)
  rotation = np.array([[np.cos(0.3), -np.sin(0.3), 30.0], [np.sin(0.3), np.cos(0.3), -40.0]])
  # 128 px for a 162 px square: a mild downscale that `warp` samples without pre-shrinking.
  A = geometry.compose_affine(
    geometry.crop_affine(BBOX, 128, scale=1.8), rotation
  )  # partly outside
  host = image_ops.warp(image, A, 128).astype(np.float32)
  device = np.asarray(jax.jit(sampling.warp_affine, static_argnums=2)(image, jnp.asarray(A), 128))
  assert (host == 128).all(axis=-1).any()  # the border is exercised
  diff = np.abs(host - device)
  assert diff.mean() < 0.5
  assert diff[8:-8, 8:-8].max() <= 1.0


def test_warp_antialiases_strong_downscaling_and_keeps_geometry():
  # One-pixel stripes shrunk 6x: plain bilinear sampling aliases into stripes of 0/255,
  # area pre-shrinking gives a flat grey.
  stripes = np.zeros((300, 300, 1), np.uint8)
  stripes[:, ::2] = 255
  A = geometry.crop_affine(np.array([0.0, 0.0, 299.0, 299.0]), 50, scale=300 / 299)
  out = image_ops.warp(stripes, A, 50).astype(np.float32)[5:-5, 5:-5]
  assert out.std() < 10 and abs(out.mean() - 127.5) < 10
  # A bright 6x6 block keeps its mapped position after the pre-shrink.
  block = np.zeros((300, 300, 1), np.uint8)
  block[147:153, 177:183] = 255
  out = image_ops.warp(block, A, 50)[..., 0].astype(np.float64)
  ys, xs = np.mgrid[:50, :50]
  centroid = np.array([(xs * out).sum(), (ys * out).sum()]) / out.sum()
  np.testing.assert_allclose(
    centroid, geometry.apply_affine(np.array([[179.5, 149.5]]), A)[0], atol=0.15
  )


def test_warp_reads_only_the_faces_window_of_a_large_photo(monkeypatch):
  rng = np.random.default_rng(4)
  photo = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), np.uint8), (0, 0), 3)
  whole = lambda image, A, size: (image, A)
  for box, size in (((300.0, 200.0, 340.0, 240.0), 50), ((100.0, 50.0, 420.0, 370.0), 50)):
    A = geometry.crop_affine(np.array(box), size, scale=1.1)
    window = image_ops.warp(photo, A, size)
    with monkeypatch.context() as m:
      m.setattr(image_ops, '_source_window', whole)
      reference = image_ops.warp(photo, A, size)
    diff = np.abs(window.astype(int) - reference)
    if box[2] - box[0] < 1.5 * size:  # bilinear only: same up to cv2's fixed-point rounding
      assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    else:  # area pre-shrink: the resize factor is rounded on the window
      assert diff.mean() < 3, diff.mean()
  # The window is a small part of the photo; a crop entirely outside the photo is all border.
  A = geometry.crop_affine(np.array([300.0, 200.0, 340.0, 240.0]), 50, scale=1.1)
  cut, _ = image_ops._source_window(photo, A, 50)
  assert cut.shape[0] * cut.shape[1] < 60 * 60
  far = image_ops.warp(photo, geometry.crop_affine(np.array([2000.0, 0.0, 2040.0, 40.0]), 50), 50)
  assert (far == image_ops.BORDER_VALUE).all()


@pytest.mark.parametrize('channels', [1, 3])
def test_area_preshrink_equals_opencv_uint8_resize(channels):
  """The float32 route of `_antialias` gives OpenCV's uint8 INTER_AREA pixels exactly."""
  rng = np.random.default_rng(channels)
  for h, w, scale in ((240, 240, 0.29), (173, 211, 0.41), (97, 64, 0.6), (240, 240, 1 / 3)):
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, channels), np.uint8), (0, 0), 2)
    image = image.reshape(h, w, channels)
    A = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    got, _ = image_ops._antialias(image, A)
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    want = cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(got.shape)
    np.testing.assert_array_equal(got, want)


def test_grey_matches_opencv():
  image = smooth_image(3)
  ours = image_ops.rgb_to_grey(image)
  assert ours.shape == (*image.shape[:2], 1)
  assert (
    np.abs(ours - image_ops.to_grey_uint8(image)).max() <= 0.51
  )  # OpenCV uses fixed-point weights
  np.testing.assert_allclose(np.asarray(image_ops.rgb_to_grey(jnp.asarray(image))), ours, atol=1e-3)


# ----------------------------------------------------------------------------- flips
@pytest.mark.parametrize('schema', [FIVE, COFW29, IBUG68])
def test_flip_twice_is_identity(schema):
  rng = np.random.default_rng(4)
  image = rng.integers(0, 256, (50, 50, 1), dtype=np.uint8)
  points = rng.integers(0, 49 * 256, (schema.num_points, 2)).astype(np.float32) / 256
  np.testing.assert_array_equal(image_ops.flip_image(image_ops.flip_image(image)), image)
  twice = geometry.flip_landmarks(
    geometry.flip_landmarks(points, 50, schema.flip_perm), 50, schema.flip_perm
  )
  np.testing.assert_array_equal(twice, points)


def test_flip_permutation_semantics():
  points = np.random.default_rng(5).uniform(0, 49, (68, 2)).astype(np.float32)
  flipped = geometry.flip_landmarks(points, 50, IBUG68.flip_perm)
  mirror = lambda p: np.array([49 - p[0], p[1]])
  for new, old in [(36, 45), (45, 36), (0, 16), (8, 8), (30, 30), (48, 54), (17, 26)]:
    np.testing.assert_allclose(flipped[new], mirror(points[old]))
  five = points[:5]
  flipped5 = geometry.flip_landmarks(five, 50, FIVE.flip_perm)
  for new, old in [(0, 1), (1, 0), (2, 2), (3, 4), (4, 3)]:
    np.testing.assert_allclose(flipped5[new], mirror(five[old]))


def test_augment_flip_equals_mirrored_crop():
  region = image_ops.extract_region(smooth_image(6), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  params = aug.AugmentParams(brightness=0.0, contrast_range=(1.0, 1.0))
  draw = aug.sample_draw(jax.random.key(3), params)
  apply = jax.jit(aug.apply_draw, static_argnames=('params', 'flip_perm'))
  args = (region['region'], region['landmarks'], region['bbox'])
  crop, points = apply(*args, draw._replace(flip=jnp.array(False)), params, FIVE.flip_perm)
  crop_f, points_f = apply(*args, draw._replace(flip=jnp.array(True)), params, FIVE.flip_perm)
  np.testing.assert_allclose(crop_f, image_ops.flip_image(crop), atol=1e-3)
  np.testing.assert_allclose(
    points_f, geometry.flip_landmarks(points, 50, FIVE.flip_perm), atol=1e-4
  )


# ----------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize('rebox', [False, True])
def test_augmentation_keeps_landmarks_on_features(rebox):
  params = aug.AugmentParams(
    normalize=False, rebox=rebox, brightness=0.0, contrast_range=(1.0, 1.0)
  )
  assert aug.required_region_scale(params) <= REGION_SCALE
  region = image_ops.extract_region(dot_image(), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  n = 16
  seeds = jnp.arange(n)
  crops, points = aug.make_augmenter(params, FIVE.flip_perm)(
    *batch_of(region, n), jax.random.key(7), seeds
  )
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(7), seeds)
  flips = np.asarray(jax.vmap(lambda k: aug.sample_draw(k, params).flip)(keys))
  assert 0 < flips.sum() < n
  checked = 0
  for crop, pts, flip in zip(np.asarray(crops), np.asarray(points), flips, strict=True):
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]  # index 0 stays image-left
    # Scale < 1 can push points near the crop edge; check the dots seen whole.
    whole = np.all((pts >= 5) & (pts <= 44), axis=1)
    found, mass = window_centroids(crop, pts[whole])
    assert np.abs(found - pts[whole]).max() < 0.5
    source = np.asarray(FIVE.flip_perm) if flip else np.arange(5)
    np.testing.assert_array_equal(np.argsort(mass), np.argsort(DOT_PEAKS[source][whole]))
    checked += whole.sum()
    if rebox:  # the crop is the MCL crop of the tight box of the (rotated) points
      lo, hi = pts.min(axis=0), pts.max(axis=0)
      side = (hi - lo).max()
      assert 50 / (1.1 * 1.1) - 1e-3 <= side <= 50 / (1.1 * 0.9) + 1e-3
      assert np.abs((lo + hi) / 2 - 24.5).max() <= 0.05 * side + 1e-3
  assert checked >= (n if rebox else 3 * n)  # with rebox the outer dots touch the crop edge


@pytest.mark.parametrize('rebox', [False, True])
def test_required_region_scale_keeps_crops_inside(rebox):
  params = aug.AugmentParams(rebox=rebox)
  scale = aug.required_region_scale(params) + 1e-6
  corners = BBOX[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(4, 2)  # worst case for `rebox`
  region = image_ops.extract_region(smooth_image(), BBOX, corners, 32, scale)
  keys = jax.random.split(jax.random.key(0), 1000)
  affine = lambda k: aug.augment_affine(
    region['landmarks'], region['bbox'], aug.sample_draw(k, params), params
  )
  affines = jax.jit(jax.vmap(affine))(keys)  # [N, 2, 3]
  crop_corners = jnp.array([[-0.5, -0.5], [49.5, -0.5], [-0.5, 49.5], [49.5, 49.5]])
  back = np.asarray(geometry.to_image_coords(crop_corners, affines))  # [N, 4, 2] region pixels
  assert back.min() >= -0.5 - 1e-3 and back.max() <= 31.5 + 1e-3
  assert back.min() < 2 and back.max() > 29  # and not much looser than needed


def test_same_key_same_sample_different_keys_differ():
  region = image_ops.extract_region(smooth_image(8), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  fn = jax.jit(aug.augment_crop, static_argnames=('params', 'flip_perm'))
  args = (region['region'], region['landmarks'], region['bbox'])
  params = aug.AugmentParams()
  a = fn(*args, jax.random.key(1), params, FIVE.flip_perm)
  b = fn(*args, jax.random.key(1), params, FIVE.flip_perm)
  c = fn(*args, jax.random.key(2), params, FIVE.flip_perm)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert np.abs(np.asarray(a[0]) - np.asarray(c[0])).mean() > 0.01
  assert np.abs(np.asarray(a[1]) - np.asarray(c[1])).mean() > 0.1


def test_batch_matches_single_examples():
  region = image_ops.extract_region(smooth_image(9), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  params = aug.AugmentParams(grayscale=False)
  seeds = jnp.array([3, 11, 3, 7])
  crops, points = aug.make_augmenter(params, FIVE.flip_perm)(
    *batch_of(region, 4), jax.random.key(0), seeds
  )
  assert crops.shape == (4, 50, 50, 3) and points.shape == (4, 5, 2)
  np.testing.assert_array_equal(crops[0], crops[2])  # same seed, same sample
  single = jax.jit(functools.partial(aug.augment_crop, params=params, flip_perm=FIVE.flip_perm))
  for i, seed in enumerate(np.asarray(seeds)):
    key = jax.random.fold_in(jax.random.key(0), seed)
    crop, pts = single(region['region'], region['landmarks'], region['bbox'], key)
    np.testing.assert_allclose(crops[i], crop, atol=1e-5)
    np.testing.assert_allclose(points[i], pts, atol=1e-4)


def test_none_equals_host_mcl_crop():
  region = image_ops.extract_region(smooth_image(10), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  crop, points = jax.jit(aug.augment_crop, static_argnames=('params', 'flip_perm'))(
    region['region'],
    region['landmarks'],
    region['bbox'],
    jax.random.key(0),
    aug.AugmentParams.none(),
  )
  host, A = image_ops.mcl_crop(region['region'], region['bbox'], size=50, grayscale=True)
  diff = np.abs(np.asarray(crop) - host) * 128  # grey levels
  assert diff.mean() < 0.4 and diff.max() <= 1.0
  np.testing.assert_allclose(points, geometry.apply_affine(region['landmarks'], A), atol=1e-3)


def test_pixel_jitter_and_ranges():
  region = image_ops.extract_region(smooth_image(11), BBOX, DOTS, REGION_SIZE, REGION_SCALE)
  args = (*batch_of(region, 8), jax.random.key(5), jnp.arange(8))
  geometric = aug.AugmentParams(brightness=0.0, contrast_range=(1.0, 1.0))
  plain, _ = aug.make_augmenter(geometric, FIVE.flip_perm)(*args)
  jittered, _ = aug.make_augmenter(aug.AugmentParams(), FIVE.flip_perm)(*args)
  assert np.abs(np.asarray(plain) - np.asarray(jittered)).mean() > 0.02
  assert jittered.min() >= -1.0 and jittered.max() <= 255 / 128 - 1
  raw, _ = aug.make_augmenter(aug.AugmentParams(normalize=False), FIVE.flip_perm)(*args)
  assert raw.min() >= 0.0 and raw.max() <= 255.0
  np.testing.assert_allclose(image_ops.normalize_pixels(raw), jittered, atol=1e-5)


def test_params_validation():
  with pytest.raises(ValueError):
    aug.AugmentParams(scale_range=(1.1, 0.9))
  with pytest.raises(ValueError):
    aug.AugmentParams(flip_prob=1.5)
  with pytest.raises(ValueError, match='flip permutation'):
    aug.augment_crop(
      jnp.zeros((8, 8, 1), jnp.uint8),
      jnp.zeros((5, 2)),
      jnp.ones(4),
      jax.random.key(0),
      aug.AugmentParams(),
    )
  assert hash(aug.AugmentParams.none()) == hash(aug.AugmentParams.none())


# ----------------------------------------------------------------------------- JPEG
@pytest.mark.parametrize('channels', [1, 3])
def test_jpeg_recompress(channels):
  image = smooth_image(12, (64, 64, channels))
  out = image_ops.jpeg_recompress(image, 90)
  assert out.shape == image.shape and out.dtype == np.uint8
  assert 0 < np.abs(out.astype(int) - image).mean() < 4  # lossy but close
  assert np.abs(image_ops.jpeg_recompress(image, 30).astype(int) - image).mean() < 12


def test_jpeg_recompress_keeps_rgb_order():
  red = np.zeros((32, 32, 3), np.uint8)
  red[..., 0] = 220
  out = image_ops.jpeg_recompress(red, 50).astype(int)
  assert abs(out[..., 0].mean() - 220) < 4 and out[..., 2].mean() < 4


def test_jpeg_recompress_batch():
  images = np.stack([smooth_image(s, (32, 32, 3)) for s in range(4)])
  a = image_ops.jpeg_recompress_batch(images, np.random.default_rng(0))
  b = image_ops.jpeg_recompress_batch(images, np.random.default_rng(0))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, images)
  untouched = image_ops.jpeg_recompress_batch(images, np.random.default_rng(0), prob=0.0)
  np.testing.assert_array_equal(untouched, images)


def test_read_image_converts_file_formats(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3)).astype(np.uint8)
  cv2.imwrite(str(tmp_path / 'c.png'), rgb[..., ::-1])  # OpenCV writes BGR
  np.testing.assert_array_equal(image_ops.read_image(tmp_path / 'c.png'), rgb)
  bgra = np.concatenate([rgb[..., ::-1], np.full((6, 7, 1), 9, np.uint8)], axis=-1)
  cv2.imwrite(str(tmp_path / 'a.png'), bgra)
  np.testing.assert_array_equal(image_ops.read_image(tmp_path / 'a.png'), rgb)
  cv2.imwrite(str(tmp_path / 'g16.png'), np.full((4, 5), 0x3456, np.uint16))
  grey = image_ops.read_image(tmp_path / 'g16.png')
  assert grey.shape == (4, 5, 3) and grey.dtype == np.uint8 and (grey == 0x34).all()
  (tmp_path / 'bad.png').write_bytes(b'not an image')
  with pytest.raises(image_ops.ImageFileError, match=r'bad\.png: cannot decode image'):
    image_ops.read_image(tmp_path / 'bad.png')
  with pytest.raises(image_ops.ImageFileError, match=r'none\.png: image file not found'):
    image_ops.read_image(tmp_path / 'none.png')
  with pytest.raises(image_ops.ImageFileError, match='x: expected an 8-bit image'):
    image_ops.to_rgb(np.zeros((2, 2), np.float32), 'x')
