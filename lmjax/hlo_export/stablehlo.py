"""A model folder's whole predictor as a serialised `jax.export` (StableHLO) with a sidecar.

    report = export_stablehlo('pretrained/mcl68', 'mcl68.stablehlo', image_size=None)

The exported function is `points = f(images, boxes)`:
  images: uint8 [N, H, W, 3] RGB; N symbolic; H, W fixed by `image_size` or symbolic (None).
  boxes:  float32 [N, 4] face boxes (x0, y0, x1, y1) in image pixels (pixel centres on
          integers), as `FacePredictor.predict_faces` takes them.
  points: float32 [N, K, 2] landmarks (x, y) in image pixels.
Inside: the folder predictor's crop (`crop.mcl_crops`, `image_ops.mcl_crop` in jax ops), its
network (MCL: BatchNorm folded, one head; BB-FCN: backbone and branches), and the crop ->
image mapping. Reload it with jax alone:

    exported = jax.export.deserialize(open(path, 'rb').read())
    points = exported.call(images, boxes)

With `padded=True` (`--padded`) it is `points = f(images, boxes, sizes)`, sizes int32 [N, 2]
the (height, width) of the picture in each image's top-left corner, the rest padding that is
never read: pictures of many sizes padded to a few canvas sizes give the points of the
unpadded pictures with few compilations (each new H, W of a symbolic-size export compiles
again, about 4 s for mcl68 on one core). Padding without `sizes` changes the crops of faces
whose crop window reaches the picture's bottom or right edge: they read the padding (the host
clips the window at the picture's edge and samples grey 128 past it).

`<path>.json` holds the conventions, the model spec and the parity check: before writing, the
export is run on faces of a synthetic picture (several sizes, some past the image edges, some
shrunk with the area pre-filter) and compared with the folder's predictor on XLA; more than
`PARITY_TOLERANCE_PX` is an error. MCL and BB-FCN folders (BB-FCN: RGB crops at the branch
resolution and `constrained_predict`; `backbone_only` exports its backbone-only points).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.hlo_export import crop

PARITY_TOLERANCE_PX = 0.01
PLATFORMS = ('cpu', 'cuda')
CONVENTIONS = {
  'inputs': {
    'images': 'uint8 [N, H, W, 3] RGB',
    'boxes': 'float32 [N, 4] face boxes (x0, y0, x1, y1), image pixels, pixel centres on integers',
  },
  'outputs': {'points': 'float32 [N, K, 2] landmarks (x, y), image pixels'},
  'call': 'jax.export.deserialize(data).call(images, boxes)',
}
PADDED_SIZES = (
  'int32 [N, 2] (height, width) of the picture in the top-left corner of each image; the '
  'rest is padding, never read (--padded exports)'
)


def predictor_function(
  predictor, padded: bool = False, backbone_only: bool = False
) -> Callable[..., jax.Array]:
  """`f(images [N, H, W, 3] uint8, boxes [N, 4] [, sizes [N, 2] int32]) -> points [N, K, 2]`
  of a `FacePredictor` or `BBFCNPredictor` (`backbone_only`: its backbone-only points); with
  `padded`, `sizes` (height, width) say which top-left part of each image is the picture."""
  spec, variables = predictor.spec, predictor.variables
  if spec['experiment'] == 'mcl':
    size, grey = spec['size'], spec['grayscale']
    network = lambda crops: predictor._forward(variables, crops)
  else:  # BB-FCN: RGB crops at the branch resolution, `constrained_predict` in one pass
    size, grey = spec['refine_size'], False
    forward = predictor._forward[not backbone_only]
    network = lambda crops: forward(variables, crops)['points']

  def fn(images, boxes, sizes=None):
    crops, A = crop.mcl_crops(images, boxes, size, grey, spec['crop_scale'], sizes)
    with jax.enable_x64(False):  # the network as the predictor traces it (float32, int32)
      points = network(crops.astype(jnp.float32))
    return crop.image_points(points, A)

  return fn if padded else (lambda images, boxes: fn(images, boxes))


def parse_image_size(text: str | None) -> tuple[int, int] | None:
  """'HxW' -> (H, W); '' / None / 'any' -> None (symbolic H and W)."""
  if not text or text == 'any':
    return None
  try:
    h, w = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise ValueError(f'--image_size: expected HxW (e.g. 480x640) or any, got {text!r}') from None
  if min(h, w) < 8:
    raise ValueError(f'--image_size: images of at least 8x8 pixels, got {text!r}')
  return h, w


def export_function(
  fn, image_size: tuple[int, int] | None, padded: bool = False, platforms=PLATFORMS
):
  """`jax.export.Exported` of `fn` with a symbolic batch (and symbolic H, W without a size);
  `padded`: `fn` takes a third argument, sizes int32 [N, 2].

  Traced with 64-bit floats on, so the crop geometry runs in float64 as on the host (inputs and
  outputs stay uint8 / float32; callers need no x64 flag).
  """
  if image_size is None:
    n, h, w = jax.export.symbolic_shape('n, h, w')
  else:
    (n,), (h, w) = jax.export.symbolic_shape('n'), image_size
  args = (
    jax.ShapeDtypeStruct((n, h, w, 3), jnp.uint8),
    jax.ShapeDtypeStruct((n, 4), jnp.float32),
  )
  if padded:
    args = (*args, jax.ShapeDtypeStruct((n, 2), jnp.int32))
  with jax.enable_x64(True):
    return jax.export.export(jax.jit(fn), platforms=platforms)(*args)


def synthetic_faces(image_size: tuple[int, int] | None, seed: int = 0):
  """A smooth random picture (uint8 [H, W, 3]) and face boxes [M, 4] covering the crop cases:
  small faces, faces shrunk by the area pre-filter, faces across the image edges."""
  h, w = image_size or (240, 320)
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))
  ys = np.linspace(0, coarse.shape[0] - 1.001, h)
  xs = np.linspace(0, coarse.shape[1] - 1.001, w)
  y0, x0 = ys.astype(int), xs.astype(int)
  ay, ax = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  top = coarse[y0][:, x0] * (1 - ax) + coarse[y0][:, x0 + 1] * ax
  bottom = coarse[y0 + 1][:, x0] * (1 - ax) + coarse[y0 + 1][:, x0 + 1] * ax
  image = top * (1 - ay) + bottom * ay + rng.normal(0, 12, (h, w, 3))
  image = np.clip(image, 0, 255).astype(np.uint8)
  side = min(h, w)
  sides = np.array([0.15, 0.3, 0.5, 0.8, 1.2, 0.4, 0.6, 0.25]) * side
  cx = np.array([0.5, 0.3, 0.7, 0.5, 0.5, 0.05, 0.95, 0.9]) * w
  cy = np.array([0.5, 0.4, 0.6, 0.5, 0.5, 0.5, 0.1, 0.9]) * h
  aspect = np.array([1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.8, 1.0])
  boxes = np.stack(
    [cx - sides / 2, cy - sides * aspect / 2, cx + sides / 2, cy + sides * aspect / 2], axis=1
  )
  return image, boxes.astype(np.float32)


def max_difference(exported, predictor, images, boxes, key: str = 'points') -> float:
  """Max |exported - predictor| in image pixels over faces (images [M, H, W, 3], boxes [M, 4]),
  against the predictor's `key` output ('coarse': BB-FCN backbone only); a padded export gets
  the images in twice their size (sizes: the originals')."""
  args = [jnp.asarray(images), jnp.asarray(boxes, jnp.float32)]
  if len(exported.in_avals) == 3:
    m, h, w, _ = images.shape
    canvas = exported.in_avals[0].shape[1:3]
    ch, cw = (2 * h, 2 * w) if not all(isinstance(d, int) for d in canvas) else canvas
    padded = np.zeros((m, ch, cw, 3), np.uint8)
    padded[:, :h, :w] = images
    args = [jnp.asarray(padded), args[1], jnp.asarray(np.tile([h, w], (m, 1)), jnp.int32)]
  got = np.asarray(exported.call(*args))
  want = predictor.predict_faces(list(images), boxes.astype(np.float64))[key]
  return float(np.abs(got - want).max())


def export_stablehlo(
  checkpoint: str,
  out: str,
  *,
  head: int = 0,
  image_size: tuple[int, int] | None = None,
  padded: bool = False,
  backbone_only: bool = False,
) -> dict[str, Any]:
  """Writes the serialised export of `checkpoint`'s predictor to `out` and `<out>.json`.

  `padded`: the function takes a third input, sizes int32 [N, 2] (module docstring).
  `backbone_only`: a BB-FCN folder's points without its branches (the backbone-only ablation).

  Returns:
    the sidecar dict (conventions, spec, parity numbers, file size).

  Raises:
    ValueError: not an MCL folder, or a bad head.
    RuntimeError: the export differs from the predictor by more than `PARITY_TOLERANCE_PX`.
  """
  from lmjax.bbfcn.predictor import BBFCNPredictor
  from lmjax.mcl.predictor import FacePredictor
  from lmjax.models import registry

  spec = registry.read_spec(checkpoint)
  family = spec['experiment']
  if family not in ('mcl', 'bbfcn'):
    raise ValueError(f'{checkpoint}: a {family} model predicts no landmarks; nothing to export')
  if family == 'bbfcn':
    if head:
      raise ValueError(f'--head={head}: {checkpoint} is a BB-FCN model (no shape heads)')
    predictor = BBFCNPredictor(checkpoint, backend='xla')
    if backbone_only and 'coarse' not in predictor.outputs:
      raise ValueError(f'--backbone_only: {checkpoint} has no branches (variant {spec["variant"]})')
  else:
    if backbone_only:
      raise ValueError(f'--backbone_only: {checkpoint} is an MCL model, not a BB-FCN one')
    predictor = FacePredictor(checkpoint, head=head, backend='xla')
  function = predictor_function(predictor, padded, backbone_only)
  exported = export_function(function, image_size, padded)
  synthetic = image_size
  if padded:  # pictures smaller than the canvas
    synthetic = tuple(max(v * 3 // 4, 8) for v in image_size) if image_size else None
  image, boxes = synthetic_faces(synthetic)
  images = np.repeat(image[None], len(boxes), axis=0)
  key = 'coarse' if backbone_only else 'points'
  diff = max_difference(exported, predictor, images, boxes, key)
  if diff > PARITY_TOLERANCE_PX:
    raise RuntimeError(f'the stablehlo export differs from the model by {diff:.4f} px')
  data = exported.serialize()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'wb') as f:
    f.write(data)
  h, w = image_size or ('H', 'W')
  conventions = json.loads(json.dumps(CONVENTIONS))
  shapes = {'images': f'uint8 [N, {h}, {w}, 3]', 'boxes': 'float32 [N, 4]'}
  if padded:
    conventions['inputs']['sizes'] = PADDED_SIZES
    conventions['call'] = 'jax.export.deserialize(data).call(images, boxes, sizes)'
    shapes['sizes'] = 'int32 [N, 2]'
  sidecar = {
    **conventions,
    'padded': padded,
    'backbone_only': backbone_only,
    'format': 'stablehlo',
    'model': os.path.basename(os.path.normpath(checkpoint)),
    'checkpoint': checkpoint,
    'head': head,
    'num_points': spec['num_points'],
    'image_size': list(image_size) if image_size else None,
    'input_shapes': shapes,
    'platforms': list(exported.platforms),
    'jax_version': jax.__version__,
    'calling_convention_version': exported.calling_convention_version,
    'bytes': len(data),
    'parity': {
      'reference': f"{type(predictor).__name__}.predict_faces(...)['{key}'] (XLA)",
      'synthetic_faces': len(boxes),
      'max_diff_px': diff,
      'tolerance_px': PARITY_TOLERANCE_PX,
    },
    'spec': spec,
  }
  with open(out + '.json', 'w') as f:
    json.dump(sidecar, f, indent=2, sort_keys=True)
  return sidecar
