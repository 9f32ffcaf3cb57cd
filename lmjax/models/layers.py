"""Layers shared by the model families.

`max_pool_2x2` replaces `flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')` (SAME
padding, i.e. Caffe's ceil mode: odd sides padded with -inf) with the same values and a cheaper
gradient. Forward, it is that very reduce_window. Its gradient is written out (`custom_vjp`) as
an elementwise mask over the 2×2 cells (`cell == max`) that XLA fuses into the neighbouring ops,
where reduce_window's own gradient (select-and-scatter) is a slow loop on CPU: 5.4× faster for
MCL's three pools, forward + backward at batch 64 on one core (233 -> 43 ms, 13 % of an MCL68
training step), and +5 % MCL68 train images/s on two threads against computing the forward as
a reshape + max too (130-135 against 123-128; `benchmarks/train_speed.py`, 2026-12-04).

One difference in the gradient: on ties (several cells equal to the maximum) every tied cell
gets it, where select-and-scatter gives it to the first. Every pool here follows a ReLU, where
ties are zeros whose ReLU gradient is zero anyway, so training is unchanged.
"""

from __future__ import annotations

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


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max pool with stride 2 and ceil-mode padding.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, ceil(H / 2), ceil(W / 2), C].
  """
  init = jnp.array(-jnp.inf, x.dtype)
  return lax.reduce_window(x, init, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'SAME')


def _pool_forward(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  pooled = max_pool_2x2(x)
  return pooled, (x, pooled)


def _pool_backward(residuals, grad: jax.Array) -> tuple[jax.Array]:
  """The incoming gradient [B, h, w, C] to every cell equal to its 2×2 maximum [B, H, W, C]."""
  x, pooled = residuals
  batch, height, width, channels = x.shape
  cells = _cells(x)
  is_max = cells == pooled[:, :, None, :, None, :]
  spread = jnp.where(is_max, grad[:, :, None, :, None, :], jnp.zeros((), grad.dtype))
  spread = spread.reshape(batch, 2 * cells.shape[1], 2 * cells.shape[3], channels)
  return (spread[:, :height, :width],)


max_pool_2x2.defvjp(_pool_forward, _pool_backward)


def max_pool_2x2_reshaped(x: jax.Array) -> jax.Array:
  """`max_pool_2x2`'s values as a reshape + max over the 2×2 cells ([B, H, W, C] ->
  [B, ceil(H / 2), ceil(W / 2), C]), for converters that cannot take reduce_window (jax2onnx
  0.17's ONNX MaxPool of it fails in onnxruntime: "Unsupported pooling size")."""
  return _cells(x).max(axis=(2, 4))
