"""Layers shared by the model families.

`max_pool_2x2` replaces `flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')` (SAME
padding, i.e. Caffe's ceil mode: odd sides padded with -inf) with the same values and the same
gradient, computed faster. Forward, it is that very reduce_window. Its gradient is written out
(`custom_vjp`) as elementwise selects over the 2×2 cells that XLA fuses into the neighbouring
ops, where reduce_window's own gradient (select-and-scatter) is a slow loop on CPU (5.4×
faster for MCL's three pools, forward + backward at batch 64 on one core).

Which cell gets the gradient is decided once, in the forward pass, by a tournament over the
cell's four values (`_winner`: the first maximum in row-major order, as select-and-scatter
picks), and kept as an int8 index. The backward pass only reads that index. An earlier
version compared the input with the pooled maximum in the backward pass (`cell == max`), and
so did the autodiff of a reshape + max: under `jax.jit` on CPU, XLA recomputes the input
(BatchNorm + ReLU) inside the backward fusion with different rounding from the forward's, the
comparison then misses, and the gradient of that window is dropped. In MCL68 that changed the
gradients of every layer before the third pool by 35-120 % (jaxlib 0.10.2; correct op by op,
and with `--xla_cpu_use_fusion_emitters=false`). `tests/test_layers.py` checks whole models
under jit against select-and-scatter.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _cells(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, ceil(H / 2), 2, ceil(W / 2), 2, C], odd sides padded with -inf."""
  batch, height, width, channels = x.shape
  pad_h, pad_w = height % 2, width % 2
  if pad_h or pad_w:
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
  return x.reshape(batch, (height + pad_h) // 2, 2, (width + pad_w) // 2, 2, channels)


def _winner(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, h, w, C] int8: which of each 2×2 cell's values is its first maximum
  (0 top left, 1 top right, 2 bottom left, 3 bottom right)."""
  cells = _cells(x)
  top_left, top_right = cells[:, :, 0, :, 0], cells[:, :, 0, :, 1]
  bottom_left, bottom_right = cells[:, :, 1, :, 0], cells[:, :, 1, :, 1]
  top = jnp.where(top_left >= top_right, 0, 1).astype(jnp.int8)
  bottom = jnp.where(bottom_left >= bottom_right, 2, 3).astype(jnp.int8)
  top_wins = jnp.maximum(top_left, top_right) >= jnp.maximum(bottom_left, bottom_right)
  return jnp.where(top_wins, top, bottom)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max pool with stride 2 and ceil-mode padding.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, ceil(H / 2), ceil(W / 2), C].
  """
  return _pool(x.shape[1], x.shape[2], x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _pool(height: int, width: int, x: jax.Array) -> jax.Array:
  del height, width  # the backward pass's crop of the padded cells
  init = jnp.array(-jnp.inf, x.dtype)
  return lax.reduce_window(x, init, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'SAME')


def _pool_forward(height: int, width: int, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return _pool(height, width, x), _winner(x)


def _pool_backward(height: int, width: int, winner: jax.Array, grad: jax.Array):
  """The incoming gradient [B, h, w, C] to each cell's winner: [B, H, W, C]."""
  batch, cells_h, cells_w, channels = grad.shape
  zero = jnp.zeros((), grad.dtype)
  rows = [
    jnp.stack([jnp.where(winner == 2 * row + col, grad, zero) for col in (0, 1)], axis=3)
    for row in (0, 1)
  ]  # 2 × [B, h, w, 2, C]
  spread = jnp.stack(rows, axis=2).reshape(batch, 2 * cells_h, 2 * cells_w, channels)
  return (spread[:, :height, :width],)


_pool.defvjp(_pool_forward, _pool_backward)


def max_pool_2x2_reshaped(x: jax.Array) -> jax.Array:
  """`max_pool_2x2`'s values as a reshape + max over the 2×2 cells ([B, H, W, C] ->
  [B, ceil(H / 2), ceil(W / 2), C]), for converters that cannot take reduce_window (jax2onnx
  0.17's ONNX MaxPool of it fails in onnxruntime: "Unsupported pooling size"). Not for
  training: its autodiff gradient has the miscompiled `cell == max` comparison (see above)."""
  return _cells(x).max(axis=(2, 4))
