"""Face probabilities of boxes in a photo: FaceNet re-scoring of BB-FCN face proposals (§IV-F).

    classifier = FaceClassifier.load('runs/facecls5/models/facecls')
    probs = classifier.score(image, boxes)    # uint8 [H, W, 3], [P, 4] x0 y0 x1 y1 -> [P]

Crop protocol (training and inference share `crop_windows`): a box is scored on the square of
its longer side about its centre, resampled to S × S (S = 24). Resampling is anti-aliased with
fixed shapes: the image is halved repeatedly (2 × 2 means) into a pyramid packed side by side on
one canvas; each window reads the level on which it spans G to 2 G pixels (G = S · supersample;
the finest level for smaller windows), bilinearly on a G × G grid that is then averaged
supersample × supersample down to S × S. Level j has pixel centres x_j = (x + 0.5) / 2^j - 0.5.
Pixels outside the image read as 128 (0 after x / 128 - 1), like the training regions' border.

`score` pads the boxes to a bucket (a power of two ≥ 16) and the image to multiples of 64 pixels
(`image_size` tells the crop where the true image ends; the crops are those of the unpadded
image), so one jitted call crops and classifies all boxes and compiles once per (padded image
shape, box bucket).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry, image_ops
from lmjax.models import facenet
from lmjax.train import checkpoint

MIN_BUCKET = 16  # smallest padded box count
IMAGE_BUCKET = 64  # images are padded to multiples of this (one program per padded shape)
MAX_LEVELS = 10
# Layout of a packed pyramid: (height, width, x offset on the canvas) of every level.
Layout = tuple[tuple[int, int, int], ...]


def pyramid_layout(height: int, width: int, grid: int) -> Layout:
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
  and only the levels `pyramid_layout(h, w, grid)` would build are used.
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


def pyramid_canvas(image: jax.Array, layout: Layout, sizes: jax.Array | None = None) -> jax.Array:
  """float32 [H, W', C]: the levels of `layout` side by side (level 0 = `image` [H, W, C]).

  Each level is the 2 × 2 mean of the previous one, padded by edge replication to even size;
  rows below a smaller level are zero (never read: taps outside a level are masked). With
  `sizes` (`level_sizes` of a padded image) every level is edge-replicated beyond its true
  size first, so the true part of each level equals the pyramid of the unpadded image.
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
    c, s = jnp.cos(angle), jnp.sin(angle)
    linear = jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)  # [P, 2, 2]
    shift = centre - jnp.einsum('pij,pj->pi', linear, centre)
    A = geometry.compose_affine(A, jnp.concatenate([linear, shift[..., None]], axis=-1))
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
  border: float = image_ops.BORDER_VALUE,
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
  layout = pyramid_layout(height, width, grid)
  sizes, levels = level_sizes(layout, grid, image_size)
  flat = pyramid_canvas(image, layout, None if image_size is None else sizes)
  canvas_width = flat.shape[1]
  flat = flat.reshape(-1, channels)
  inv = geometry.invert_affine(window_affines(centre, side, grid, angle, flip).astype(jnp.float32))
  side = jnp.maximum(jnp.asarray(side, jnp.float32), 1e-6)
  level = jnp.clip(jnp.floor(jnp.log2(side / grid)), 0, levels - 1).astype(jnp.int32)
  scale = 2.0 ** -level.astype(jnp.float32)  # [P]
  inv = inv * scale[:, None, None]  # grid -> level pixels: x_j = (x + 0.5) / 2^j - 0.5
  inv = inv.at[:, :, 2].add(0.5 * scale[:, None] - 0.5)
  h, w = (sizes[level, i, None, None] for i in range(2))  # [P, 1, 1]
  offset = jnp.asarray([o for _, _, o in layout], jnp.int32)[level, None, None]
  g = jnp.arange(grid, dtype=jnp.float32)
  m = inv[:, :, :, None, None]  # [P, 2, 3, 1, 1]
  x = m[:, 0, 0] * g + m[:, 0, 1] * g[:, None] + m[:, 0, 2]  # [P, G, G] level pixels
  y = m[:, 1, 0] * g + m[:, 1, 1] * g[:, None] + m[:, 1, 2]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]  # [P, G, G, 1]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)

  def tap(xi: jax.Array, yi: jax.Array) -> jax.Array:
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = jnp.clip(yi, 0, h - 1) * canvas_width + offset + jnp.clip(xi, 0, w - 1)
    return jnp.where(inside[..., None], flat[index], border)  # [P, G, G, C]

  top = tap(x0, y0) * (1 - fx) + tap(x0 + 1, y0) * fx
  bottom = tap(x0, y0 + 1) * (1 - fx) + tap(x0 + 1, y0 + 1) * fx
  out = top * (1 - fy) + bottom * fy
  p = out.shape[0]
  return out.reshape(p, size, supersample, size, supersample, channels).mean(axis=(2, 4))


def crop_boxes(
  image: jax.Array,
  boxes: jax.Array,
  size: int,
  supersample: int = 2,
  image_size: jax.Array | None = None,
) -> jax.Array:
  """float32 [P, S, S, C] pixels of the squares of the longer side of `boxes` [P, 4].

  `image_size` as in `crop_windows` (the true h, w of a padded image).
  """
  centre, side = geometry.box_centre_side(jnp.asarray(boxes, jnp.float32))
  return crop_windows(
    image, centre, side, size=size, supersample=supersample, image_size=image_size
  )


def score_fn(model: facenet.FaceNet, spec: dict[str, Any]):
  """`fn(variables, image [H, W, 3], boxes [P, 4], image_size [2] | None) -> probs [P]`.

  Not jitted; `image_size` is the true (h, w) of a padded image (None: all of it).
  """
  size, supersample = spec['size'], spec['supersample']

  def score(variables, image, boxes, image_size=None):
    crops = crop_boxes(image, boxes, size, supersample, image_size)
    return jax.nn.sigmoid(model.apply(variables, image_ops.normalize_pixels(crops)))

  return score


def bucket_size(n: int) -> int:
  """The padded box count of `n` boxes: the smallest power of two ≥ max(n, MIN_BUCKET)."""
  return max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length())


def pad_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`image` zero-padded at the bottom / right to multiples of IMAGE_BUCKET, and int32 (h, w)."""
  h, w = image.shape[:2]
  shape = (-(-h // IMAGE_BUCKET) * IMAGE_BUCKET, -(-w // IMAGE_BUCKET) * IMAGE_BUCKET)
  padded = np.zeros((*shape, image.shape[2]), image.dtype)
  padded[:h, :w] = image
  return padded, np.int32([h, w])


def check_inputs(image: Any, boxes: Any) -> tuple[np.ndarray, np.ndarray]:
  """Validates `score`'s inputs: (uint8 [H, W, 3] image, float32 [P, 4] boxes).

  Grey images ([H, W] or [H, W, 1] uint8) are repeated to three channels.

  Raises:
    ValueError: naming what was expected and what came.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
    raise ValueError(
      f'expected a uint8 [H, W, 3] RGB (or [H, W] grey) image, got {image.dtype} {image.shape}'
    )
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f'empty image: shape {image.shape}')
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  try:
    boxes = np.asarray(boxes, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'expected boxes [P, 4] (x0, y0, x1, y1): {e}') from None
  if boxes.size == 0:
    return image, np.zeros((0, 4), np.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f'expected boxes [P, 4] (x0, y0, x1, y1), got shape {boxes.shape}')
  if not np.isfinite(boxes).all():
    raise ValueError('boxes contain NaN or infinite coordinates')
  bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
  if len(bad):
    raise ValueError(f'boxes need x1 > x0 and y1 > y0; box {bad[0]} is {boxes[bad[0]].tolist()}')
  return image, boxes


class FaceClassifier:
  """Face / non-face probabilities of boxes, from a `models/facecls` folder."""

  def __init__(self, model: facenet.FaceNet, variables: dict[str, Any], spec: dict[str, Any]):
    self.model, self.variables, self.spec = model, variables, spec
    self._score = jax.jit(score_fn(model, spec))

  @classmethod
  def load(cls, model_dir: str) -> FaceClassifier:
    """Restores the model folder written by `lmjax.facecls.train` (model.json + variables/)."""
    spec = checkpoint.read_model_spec(model_dir)
    if spec.get('experiment') != 'facecls':
      raise ValueError(
        f'{model_dir}: model.json experiment is {spec.get("experiment")!r}, not facecls'
      )
    model = facenet.build_model(spec)
    abstract = jax.eval_shape(lambda: facenet.init_variables(model, spec['size']))
    variables = checkpoint.restore_variables(
      os.path.join(model_dir, checkpoint.VARIABLES_DIR), abstract
    )
    return cls(model, variables, spec)

  def score(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Face probabilities float32 [P] of `boxes` [P, 4] (x0, y0, x1, y1) in `image`.

    Args:
      image: uint8 [H, W, 3] RGB (or [H, W] / [H, W, 1] grey).
      boxes: [P, 4] boxes in image pixels; they may extend past the image (read as grey 128).
        Each is scored on the square of its longer side about its centre.
    """
    image, boxes = check_inputs(image, boxes)
    n = len(boxes)
    if not n:
      return np.zeros(0, np.float32)
    padded = np.tile(np.float32([0, 0, 1, 1]), (bucket_size(n), 1))
    padded[:n] = boxes
    image, image_size = pad_image(image)
    return np.asarray(self._score(self.variables, image, padded, image_size))[:n]
