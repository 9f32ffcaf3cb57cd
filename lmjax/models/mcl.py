"""The MCL network (Shao et al., the authors' released extended model; SPEC §2).

    input [B, 50, 50, 1]
    conv11 conv12 pool   32  -> 25×25
    conv21 conv22 pool   64  -> 13×13   (SAME pooling = Caffe's ceil mode)
    conv31 conv32 pool   96  -> 7×7
    conv41 conv42 conv43 128, 128, D
    global average pool  -> [B, D] -> m shape-prediction heads `heads/0..m-1`, each D -> 2n

Every conv is 3×3, stride 1, SAME, with bias, then BatchNorm, then ReLU. Parameter names are
chosen so that freezing and model assembling are path regexes: the "first six conv layers"
of Algorithm 1 are `conv1[12]|conv2[12]|conv3[12]` (with their `bn..` layers), the shared
trunk is everything outside `heads/`.

The `pre_bm` variant is the paper's ablation head (the earlier MCL version): a last pool
(7 -> 4) and a D-unit fully connected layer (+BN, ReLU) replace conv43 + GAP.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

WEIGHT_INIT = nn.initializers.normal(stddev=0.01)
TRUNK = (
  ('conv11', 32),
  ('conv12', 32),
  'pool',
  ('conv21', 64),
  ('conv22', 64),
  'pool',
  ('conv31', 96),
  ('conv32', 96),
  'pool',
  ('conv41', 128),
  ('conv42', 128),
)
FIRST_SIX_CONVS = r'(conv|bn)(11|12|21|22|31|32)/'


def _conv_bn_relu(x: jax.Array, name: str, features: int, train: bool, dtype) -> jax.Array:
  """conv `name` + BatchNorm `bn<suffix>` + ReLU, created in the calling module's scope."""
  x = nn.Conv(features, (3, 3), padding='SAME', kernel_init=WEIGHT_INIT, dtype=dtype, name=name)(x)
  x = nn.BatchNorm(
    use_running_average=not train, momentum=0.99, epsilon=1e-5, dtype=dtype, name='bn' + name[4:]
  )(x)
  return nn.relu(x)


class MCL(nn.Module):
  """MCL landmark regressor.

  Attributes:
    num_points: n, landmarks per face.
    width: D, channels of conv43 (or units of the pre-BM fully connected layer).
    num_heads: m, shape-prediction layers (1 for BM/WM/AM, #clusters for multi-center).
    variant: `gap` (the released extended model) or `pre_bm` (the ablation head).
    dtype: computation dtype (parameters stay float32).
  """

  num_points: int
  width: int = 512
  num_heads: int = 1
  variant: str = 'gap'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Predicts landmarks.

    Args:
      x: [B, S, S, C] crops scaled to [-1, 1).
      train: BatchNorm uses batch statistics (and updates `batch_stats`) when True.

    Returns:
      [B, m, n, 2] landmark coordinates in crop pixels, one set per head.
    """
    x = x.astype(self.dtype)
    for layer in TRUNK:
      if layer == 'pool':
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
      else:
        x = _conv_bn_relu(x, *layer, train=train, dtype=self.dtype)
    if self.variant == 'gap':
      x = _conv_bn_relu(x, 'conv43', self.width, train=train, dtype=self.dtype)  # [B, 7, 7, D]
      feature = x.mean(axis=(1, 2))  # [B, D]
    elif self.variant == 'pre_bm':
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')  # [B, 4, 4, 128]
      x = nn.Dense(self.width, kernel_init=WEIGHT_INIT, dtype=self.dtype, name='fc')(
        x.reshape(x.shape[0], -1)
      )
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.99, epsilon=1e-5, dtype=self.dtype, name='bnfc'
      )(x)
      feature = nn.relu(x)  # [B, D]
    else:
      raise ValueError(f'unknown MCL variant {self.variant!r}; expected gap or pre_bm')
    return Heads(self.num_points, self.num_heads, self.dtype, name='heads')(feature)


class Heads(nn.Module):
  """m shape-prediction layers `0..m-1`, each a D -> 2n linear map (x1, y1, ..., xn, yn).

  The m layers are separate named `Dense` modules so that freezing, copying and assembling
  address them by path (`heads/3/kernel`); m is at most 7, and at inference (AM) it is 1.
  """

  num_points: int
  num_heads: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, feature: jax.Array) -> jax.Array:
    """[B, D] -> [B, m, n, 2] float32 coordinates."""
    outs = [
      nn.Dense(2 * self.num_points, kernel_init=WEIGHT_INIT, dtype=self.dtype, name=str(i))(feature)
      for i in range(self.num_heads)
    ]  # m × [B, 2n]
    out = jnp.stack(outs, axis=1).astype(jnp.float32)  # [B, m, 2n]
    return out.reshape(*out.shape[:2], self.num_points, 2)
