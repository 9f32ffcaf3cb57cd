"""FaceNet: the small face / non-face CNN that re-scores BB-FCN face proposals (paper §IV-F).

The paper refines its proposals with Net-12, the first network of cascade CNN (Li et al.); this
is a Net-12/24-style classifier on 24 × 24 RGB crops (x / 128 - 1):

    input [B, 24, 24, 3]
    conv1   16, 3×3 SAME, ReLU   -> [B, 24, 24, 16]
    pool    2×2 s2               -> 12
    conv2   32, 3×3 SAME, ReLU   -> [B, 12, 12, 32]
    pool    2×2 s2               -> 6
    conv3   64, 3×3 SAME, ReLU   -> [B, 6, 6, 64]
    flatten, fc 64, ReLU         -> [B, 64]
    logit   1 (linear)           -> [B]   face logit (sigmoid: face probability)

Flattening (not global average pooling) keeps where in the window each feature fired, which is
what tells a centred face from a window that holds half a face. About 171k parameters with the
default widths. Kernels use flax's LeCun-normal default, biases start at zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.models.layers import max_pool_2x2


class FaceNet(nn.Module):
  """Face / non-face logits of square crops.

  Attributes:
    widths: output channels of the 3 × 3 convolutions; a 2 × 2 pool follows all but the last.
    hidden: width of the fully connected layer before the logit.
  """

  widths: Sequence[int] = (16, 32, 64)
  hidden: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, S, S, 3] crops (x / 128 - 1) -> [B] float32 face logits."""
    x = x.astype(jnp.float32)
    for i, width in enumerate(self.widths):
      if i:
        x = max_pool_2x2(x)
      x = nn.relu(nn.Conv(width, (3, 3), padding='SAME', name=f'conv{i + 1}')(x))
    x = nn.relu(nn.Dense(self.hidden, name='fc')(x.reshape(x.shape[0], -1)))
    return nn.Dense(1, name='logit')(x)[:, 0]
