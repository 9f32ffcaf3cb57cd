"""Host image operations (numpy + OpenCV): files, pixels, the MCL crop, face regions, JPEG.

Images are uint8 [H, W, C] with C = 3 (RGB) or 1 (grey); the geometry (pixel centres on
integers, boxes, affines) is `lmjax.core.geometry`'s. This module owns:
  * image files: `read_image` / `to_rgb` (grey, alpha and 16-bit files become uint8 RGB);
  * pixels: BT.601 grey, the MCL input scaling `x / 128 - 1`, the border value 128;
  * host resampling: `warp` (OpenCV bilinear with an area pre-shrink against aliasing), the
    test-time MCL crop `mcl_crop`, input checks of the predictors;
  * the face-region cache that on-device augmentation samples from (`extract_region`);
  * JPEG re-compression (host-only augmentation).
`rgb_to_grey`, `normalize_pixels` and `flip_image` also accept jax arrays; the on-device
sampler is `lmjax.core.sampling`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from lmjax.core.geometry import (
  MCL_CROP_SCALE,
  MCL_CROP_SIZE,
  Array,
  apply_affine,
  array_module,
  crop_affine,
)

BORDER_VALUE = 128.0  # mid-grey outside the image: 0 after the `x / 128 - 1` input scaling


LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY.


class ImageFileError(ValueError):
  """An image file is missing, cannot be decoded, or has an unsupported pixel format."""


# ----------------------------------------------------------------------------- files
def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image file as uint8 RGB [H, W, 3]; greyscale is replicated to 3 channels.

  Raises:
    ImageFileError: the file is missing or cannot be decoded.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ImageFileError(f'{path}: image file not found')
  data = np.fromfile(path, np.uint8)
  image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
  if image is None:
    raise ImageFileError(f'{path}: cannot decode image (expected a JPEG/PNG/PPM file)')
  return to_rgb(image, path)


def to_rgb(image: np.ndarray, where: str = 'image') -> np.ndarray:
  """OpenCV-decoded array (grey, BGR or BGRA; uint8 or uint16) -> uint8 RGB [H, W, 3].

  Raises:
    ImageFileError: naming `where`, for another dtype or shape.
  """
  if image.dtype == np.uint16:
    image = (image >> 8).astype(np.uint8)
  if image.dtype != np.uint8:
    raise ImageFileError(f'{where}: expected an 8-bit image, got dtype {image.dtype}')
  if image.ndim == 2:
    return np.repeat(image[:, :, None], 3, axis=2)
  if image.ndim == 3 and image.shape[2] == 1:
    return np.repeat(image, 3, axis=2)
  if image.ndim == 3 and image.shape[2] in (3, 4):
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
  raise ImageFileError(f'{where}: unsupported image shape {image.shape}')


# ----------------------------------------------------------------------------- pixels
def flip_image(image: Array) -> Array:
  """Horizontally mirrored image [..., H, W, C]."""
  return image[..., :, ::-1, :]


def rgb_to_grey(image: Array) -> Array:
  """[..., 3] RGB (any dtype) -> float32 [..., 1] grey with BT.601 luma weights."""
  xp = array_module(image)
  weights = xp.asarray(LUMA_WEIGHTS, dtype=xp.float32)
  return (image.astype(xp.float32) @ weights)[..., None]


def normalize_pixels(x: Array) -> Array:
  """Pixels in [0, 255] -> float32 `x / 128 - 1` in [-1, 1) (the MCL input scaling)."""
  xp = array_module(x)
  return x.astype(xp.float32) * (1 / 128) - 1


def denormalize_pixels(x: Array) -> Array:
  """Inverse of `normalize_pixels`: float32 `(x + 1) · 128`."""
  xp = array_module(x)
  return (x.astype(xp.float32) + 1) * 128


# ----------------------------------------------------------------------------- host crops
def warp(
  image: np.ndarray, A: np.ndarray, size: int, border: float = BORDER_VALUE, grey: bool = False
) -> np.ndarray:
  """Resamples `image` onto an S × S grid with `A` (source -> destination pixels).

  Bilinear (`cv2.warpAffine`, which keeps pixel centres on integers; it quantises source
  positions to 1/32 px); pixels outside the image read as `border`.

  Args:
    image: [H, W, C] image (uint8 or float32), C ≤ 4.
    A: [2, 3] affine, image pixels -> output pixels.
    size: S.
    border: value of pixels outside the image.
    grey: uint8 RGB only: convert the part of the image that is read to grey first
      (`to_grey_uint8`), then resample one channel instead of three.

  Returns:
    [S, S, C] image of `image`'s dtype (C = 1 with `grey`).
  """
  if image.ndim != 3:
    raise ValueError(f'expected an [H, W, C] image, got shape {image.shape}')
  image, A = _source_window(image, np.asarray(A, np.float64), size)
  if grey and image.shape[2] == 3:
    if image.dtype != np.uint8:
      raise ValueError(f'warp(grey=True): expected a uint8 RGB image, got {image.dtype}')
    image = to_grey_uint8(image)
  image, A = _antialias(image, A)
  dst_to_src = np.array(_inverse_2x3(A))
  out = cv2.warpAffine(
    image,
    dst_to_src,
    (size, size),
    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    borderMode=cv2.BORDER_CONSTANT,
    borderValue=(border,) * 4,
  )
  return out.reshape(size, size, image.shape[2])


def _source_window(image: np.ndarray, A: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The part of `image` that the S × S output reads, and the affine from its pixels.

  A face crop reads a small part of a large photo; cutting that part out first (with a margin
  covering the bilinear and area-averaging footprints) makes the warp and the anti-aliasing
  cost proportional to the face, not to the photo (0.7 ms instead of 2.2 ms for a 200-pixel
  face in a 640×480 photo). Bilinear outputs are unchanged; where the area pre-shrink runs, its
  resize factor is rounded on the window instead of the photo, which moves some output pixels
  by a few grey levels. One face per call: the [2, 3] arithmetic is done on Python floats
  (numpy's per-call overhead on 2 × 3 arrays cost more than OpenCV's resampling).
  """
  h, w = image.shape[:2]
  (ia, ib, itx), (ic, id_, ity) = _inverse_2x3(A)
  edges = (-0.5, size - 0.5)
  xs = [ia * u + ib * v + itx for u in edges for v in edges]  # output corners -> image pixels
  ys = [ic * u + id_ * v + ity for u in edges for v in edges]
  scale = _scale_2x3(A)
  margin = 2 + (math.ceil(2 / scale) if scale > 0 else max(h, w))
  x0, y0 = math.floor(min(xs)) - margin, math.floor(min(ys)) - margin
  x1, y1 = math.ceil(max(xs)) + margin + 1, math.ceil(max(ys)) + margin + 1
  x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
  full = x0 == 0 and y0 == 0 and x1 == w and y1 == h
  if full or x1 <= x0 or y1 <= y0:  # nothing to cut, or the output lies outside the image
    return image, A
  return image[y0:y1, x0:x1], _after_axis_map(A, 1.0, 1.0, x0, y0)


def _antialias(image: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pre-shrinks `image` with area averaging when `A` downsamples by more than 1.5×.

  Bilinear sampling alone aliases when a large face is shrunk to a 50-pixel crop; area
  resizing to about the output resolution first removes that. Returns the resized image and
  the affine from its pixels (same pixel-centre convention) to the output grid.

  (Measured alternative: an integer factor k = round(1 / scale) takes OpenCV's box-filter path,
  30 µs instead of 130 µs for a 200-pixel face, but moves pretrained/mcl68's validation NME
  from 4.19 to 4.21: models trained on this pre-shrink would need retraining.)
  """
  scale = _scale_2x3(A)
  if scale >= 1 / 1.5:
    return image, A
  h, w = image.shape[:2]
  new_w, new_h = max(round(w * scale), 1), max(round(h * scale), 1)
  fx, fy = new_w / w, new_h / h
  if image.dtype == np.uint8 and (w % new_w or h % new_h):
    # OpenCV's general area resize sums in float32 for uint8 and float32 alike, then rounds to
    # nearest even; on float32 input it runs 2× faster (130 against 270 µs for a 240-pixel RGB
    # window), so the same pixels come out of a float resize + np.rint. Integer factors take
    # OpenCV's fixed-point box-filter path instead, which rounds differently: left as is.
    small = cv2.resize(image.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA)
    small = np.rint(small).astype(np.uint8)
  else:
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
  small = small.reshape(new_h, new_w, image.shape[2])
  # resized pixel x' = (x + 0.5) f - 0.5  =>  x = (x' + 0.5) / f - 0.5
  return small, _after_axis_map(A, 1 / fx, 1 / fy, 0.5 / fx - 0.5, 0.5 / fy - 0.5)


def _inverse_2x3(A: np.ndarray) -> list[list[float]]:
  """Inverse of one [2, 3] affine, on Python floats (`geometry.invert_affine`'s formula)."""
  (a, b, tx), (c, d, ty) = A.tolist()
  det = a * d - b * c
  ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
  return [[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]]


def _after_axis_map(A: np.ndarray, sx: float, sy: float, ox: float, oy: float) -> np.ndarray:
  """`A ∘ m` for one [2, 3] affine A and the axis-aligned map m(x, y) = (sx x + ox, sy y + oy)
  (a window cut or a resize), on Python floats (`geometry.compose_affine`'s result)."""
  (a, b, tx), (c, d, ty) = A.tolist()
  return np.array([[a * sx, b * sy, a * ox + b * oy + tx], [c * sx, d * sy, c * ox + d * oy + ty]])


def _scale_2x3(A: np.ndarray) -> float:
  """sqrt |det| of one [2, 3] affine's linear part: its mean scale."""
  (a, b, _), (c, d, _) = A.tolist()
  return math.sqrt(abs(a * d - b * c))


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] RGB -> uint8 [H, W, 1] grey (rounded); grey input is returned as is."""
  if image.shape[-1] == 1:
    return image
  return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[..., None]


def check_image(image: np.ndarray) -> np.ndarray:
  """Validates a uint8 [H, W, 3] / [H, W, 1] / [H, W] image; returns it as [H, W, C].

  Raises:
    ValueError: naming what was expected and what came.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
    raise ValueError(
      f'expected a uint8 [H, W, 3] RGB or [H, W, 1] image, got {image.dtype} {image.shape}'
    )
  if min(image.shape[:2]) < 8:
    raise ValueError(f'image of {image.shape[1]}x{image.shape[0]} pixels is too small')
  return image


def check_image_and_box(image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
  """Validates a predictor's input: uint8 [H, W, 3] / [H, W, 1] / [H, W] image, box x0 y0 x1 y1.

  Returns:
    (the image as [H, W, C], the box as float64 [4]).

  Raises:
    ValueError: naming what was expected and what came.
  """
  image = check_image(image)
  box = np.asarray(box, np.float64)
  if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
    raise ValueError(f'expected a face box (x0, y0, x1, y1) with x1 > x0, y1 > y0; got {box}')
  return image, box


def mcl_crop(
  image: np.ndarray,
  bbox: np.ndarray,
  size: int = MCL_CROP_SIZE,
  grayscale: bool = True,
  scale: float = MCL_CROP_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
  """The MCL network input for one face box (test-time crop).

  Args:
    image: uint8 [H, W, C] image, C = 3 (RGB) or 1.
    bbox: [4] face box (x0, y0, x1, y1).
    size: S.
    grayscale: convert RGB to grey (uint8, before resampling, as the training region cache
      does: `cache_regions` converts the photo, then resamples).
    scale: crop side / longer box side.

  Returns:
    crop: float32 [S, S, C'] scaled as `x / 128 - 1` (C' = 1 when grayscale).
    A: [2, 3] affine image -> crop pixels (see `to_image_coords`).
  """
  A = crop_affine(np.asarray(bbox, np.float64), size, scale)
  crop = warp(image, A, size, grey=grayscale)  # [S, S, C'] uint8
  return normalize_pixels(crop), A


# ----------------------------------------------------------------------------- region cache
def extract_region(
  image: np.ndarray,
  bbox: np.ndarray,
  landmarks: np.ndarray,
  region_size: int,
  region_scale: float,
  grayscale: bool = False,
) -> dict[str, np.ndarray]:
  """Cuts the square region around a face that training augmentation samples from.

  The region is the square of `region_scale` × the box's longer side centred on the box
  centre, resampled to R × R (bilinear, border 128). Choose `region_scale` with
  `lmjax.core.augment.required_region_scale` so that augmentation never reads outside it.

  Args:
    image: uint8 [H, W, C] image.
    bbox: [4] face box (x0, y0, x1, y1) in image pixels.
    landmarks: [K, 2] landmarks in image pixels.
    region_size: R.
    region_scale: region side / longer box side (≥ 1.65 for the default augmentation, ≥ 2.08
      with `rebox=True`; 2.2 covers both).
    grayscale: store a grey region (uint8 [R, R, 1]); it is 3× smaller.

  Returns:
    dict with `region` uint8 [R, R, C], `landmarks` float32 [K, 2] and `bbox` float32 [4] in
    region pixels, and `affine` float64 [2, 3] (image -> region pixels).
  """
  bbox = np.asarray(bbox, np.float64)
  A = crop_affine(bbox, region_size, region_scale)
  if grayscale:
    image = to_grey_uint8(image)
  corners = apply_affine(bbox.reshape(2, 2), A).reshape(4)
  return {
    'region': warp(image, A, region_size),
    'landmarks': apply_affine(np.asarray(landmarks, np.float64), A).astype(np.float32),
    'bbox': corners.astype(np.float32),
    'affine': A,
  }


def stack_regions(regions: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Stacks `extract_region` outputs into one dataset dict of [N, ...] arrays."""
  if not regions:
    raise ValueError('no regions to stack')
  return {k: np.stack([r[k] for r in regions]) for k in regions[0]}


# ----------------------------------------------------------------------------- JPEG
def jpeg_recompress(image: np.ndarray, quality: int) -> np.ndarray:
  """JPEG-encodes and decodes a uint8 [H, W, C] image (C = 1 or 3, RGB) at `quality`."""
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'expected uint8 [H, W, 1|3], got {image.dtype} {image.shape}')
  colour = image.shape[-1] == 3
  src = image[..., ::-1] if colour else image[..., 0]  # OpenCV wants BGR.
  ok, data = cv2.imencode('.jpg', np.ascontiguousarray(src), [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise RuntimeError('cv2.imencode failed to JPEG-encode the image')
  out = cv2.imdecode(data, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
  return np.ascontiguousarray(out[..., ::-1]) if colour else out[..., None]


def jpeg_recompress_batch(
  images: np.ndarray,
  rng: np.random.Generator,
  quality_range: tuple[int, int] = (30, 95),
  prob: float = 1.0,
) -> np.ndarray:
  """Re-compresses each image of a batch with probability `prob` at a random quality.

  Args:
    images: uint8 [B, H, W, C].
    rng: numpy Generator (seed it per step for reproducible batches).
    quality_range: inclusive range of JPEG qualities, drawn uniformly.
    prob: probability that an image is re-compressed.

  Returns:
    uint8 [B, H, W, C] (a new array; `images` is not modified).
  """
  qualities = rng.integers(quality_range[0], quality_range[1], endpoint=True, size=len(images))
  chosen = rng.random(len(images)) < prob
  out = images.copy()
  for i in np.flatnonzero(chosen):
    out[i] = jpeg_recompress(images[i], int(qualities[i]))
  return out
