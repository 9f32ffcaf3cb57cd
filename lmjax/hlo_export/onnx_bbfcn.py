"""The ONNX graph of a BB-FCN network (backbone and branches) through jax2onnx.

    model = bbfcn_graph(predictor, refine=True)
    input  'crops'  float32 [N, R, R, 3]  (the predictor's RGB crops, x / 128 - 1)
    output 'points' float32 [N, K, 2]     crop-pixel landmarks (`constrained_predict`'s
                                           'points'; refine=False: the backbone-only ones)

jax2onnx 0.17 cannot convert three steps of `lmjax.bbfcn.inference` with a symbolic batch
(`jax.image.resize`, the integer `%` of `heatmaps.top_mean`, the vmapped `dynamic_slice` of
the branch patches), so while tracing they are swapped (`traceable`) for equivalents that give
the same numbers: the bilinear resize as two constant matrices (the resize of an identity),
`index % w` as `index - (index / w) w` on non-negative indices, the P × P patches as one-hot
row and column matrices. `tests/test_onnx_whole.py` checks the three against the originals.
The backbone's max pools are traced as a reshape + max (`layers.max_pool_2x2_reshaped`, the
same values): jax2onnx's MaxPool of the reduce_window fails in onnxruntime.
"""

from __future__ import annotations

import contextlib
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from lmjax.hlo_export import onnx_convert

INPUT, OUTPUT = 'crops', 'points'


@functools.lru_cache(maxsize=16)
def resize_matrix(source: int, target: int) -> np.ndarray:
  """[target, source] float32: `jax.image.resize(bilinear)` of one axis as a matrix."""
  eye = np.eye(source, dtype=np.float32)
  with jax.ensure_compile_time_eval():
    return np.asarray(jax.image.resize(eye, (target, source), method='bilinear'))


def resize_to(x: jax.Array, size: int) -> jax.Array:
  """`inference.resize_to` ([B, H, H, C] -> [B, size, size, C]) as two matrix products."""
  m = jnp.asarray(resize_matrix(x.shape[1], size))
  return jnp.einsum('ph,nhwc,qw->npqc', m, x, m)


def top_mean(maps: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """`heatmaps.top_mean` ([B, H, W, K] -> [B, K, 2], [B, K]) without an integer remainder."""
  b, h, w, k = maps.shape
  flat = jnp.moveaxis(maps, -1, 1).reshape(b, k, h * w)
  values, index = jax.lax.top_k(flat, n)  # [B, K, n]
  row = jax.lax.div(index, jnp.int32(w))  # index >= 0: truncation is the floor
  xy = jnp.stack([index - row * w, row], axis=-1).astype(jnp.float32)
  return jnp.mean(xy, axis=2), jnp.mean(values, axis=-1)


def extract_patches(images: jax.Array, maps: jax.Array, origins: jax.Array) -> jax.Array:
  """`inference.extract_patches` (-> [B, K, P, P, C + 1]) with one-hot selection matrices."""
  from lmjax.models.bbfcn import PATCH

  grid = jnp.arange(images.shape[1], dtype=jnp.int32)
  steps = jnp.arange(PATCH, dtype=jnp.int32)

  def one_hot(start):  # [B, K] -> [B, K, P, R]
    return (start[..., None, None] + steps[:, None] == grid).astype(images.dtype)

  rows, cols = one_hot(origins[..., 1]), one_hot(origins[..., 0])
  rgb = jnp.einsum('bkpr,brsc,bkqs->bkpqc', rows, images, cols)
  heat = jnp.einsum('bkpr,brsk,bkqs->bkpq', rows, maps, cols)
  return jnp.concatenate([rgb, heat[..., None]], axis=-1)


@contextlib.contextmanager
def traceable():
  """Swaps the steps jax2onnx cannot convert for their equivalents (module docstring)."""
  from lmjax.bbfcn import inference
  from lmjax.core import heatmaps
  from lmjax.models import bbfcn, layers

  with (
    mock.patch.object(bbfcn, 'max_pool_2x2', layers.max_pool_2x2_reshaped),
    mock.patch.object(inference, 'resize_to', resize_to),
    mock.patch.object(inference, 'extract_patches', extract_patches),
    mock.patch.object(heatmaps, 'top_mean', lambda maps, n=heatmaps.TOP_N: top_mean(maps, n)),
  ):
    yield


def bbfcn_graph(predictor, refine: bool = True) -> onnx.ModelProto:
  """The network of a `BBFCNPredictor` as ONNX ('crops' [N, R, R, 3] -> 'points' [N, K, 2]).

  `refine=False`: the backbone-only points (the predictor's 'coarse' output).
  """
  from lmjax.bbfcn.predictor import predict_fn

  spec = predictor.spec
  size = spec['refine_size']
  network = predict_fn(predictor.model, spec, refine and 'coarse' in predictor.outputs)
  for source, target in ((size, spec['size']), (spec['size'], size)):
    resize_matrix(source, target)  # outside the trace: jax2onnx patches jax.image.resize
  fn = lambda crops: network(predictor.variables, crops)['points']
  with traceable():
    return onnx_convert.to_onnx(
      fn, [(('N', size, size, 3), np.float32)], [INPUT], [OUTPUT], name='bbfcn'
    )
