"""Layers shared by the model families.

`max_pool_2x2` replaces `flax.linen.max_pool(x, (2, 2), strides=(2, 2), ...)`: the same values
(SAME padding, i.e. Caffe's ceil mode, pads odd sides with -inf), written as a reshape and a
max over the 2×2 cells. Its gradient is then an elementwise mask that XLA fuses into the
neighbouring ops, where `reduce_window`'s gradient (select-and-scatter) is a slow loop on CPU:
5.4× faster for MCL's three pools, forward + backward at batch 64 on one core (233 -> 43 ms),
13 % of an MCL68 training step (`benchmarks/train_speed.py`).

One difference in the gradient: on ties (several cells equal to the maximum) it is shared
between them, where select-and-scatter gives it to the first. Every pool here follows a ReLU,
where ties are zeros whose ReLU gradient is zero anyway, so training is unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max pool with stride 2 and ceil-mode padding.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, ceil(H / 2), ceil(W / 2), C].
  """
  batch, height, width, channels = x.shape
  pad_h, pad_w = height % 2, width % 2
  if pad_h or pad_w:
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
  cells = x.reshape(batch, (height + pad_h) // 2, 2, (width + pad_w) // 2, 2, channels)
  return cells.max(axis=(2, 4))
