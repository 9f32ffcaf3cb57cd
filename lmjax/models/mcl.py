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

from lmjax.models.layers import max_pool_2x2

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
BN_EPSILON = 1e-5


def _conv_bn_relu(
  x: jax.Array, name: str, features: int, train: bool, dtype, batch_norm: bool = True
) -> jax.Array:
  """conv `name` + BatchNorm `bn<suffix>` + ReLU, created in the calling module's scope.

  With `batch_norm=False` the BatchNorm is left out: the layout of a model whose BatchNorm has
  been folded into the convolutions (`fold_batch_norm`).
  """
  x = nn.Conv(features, (3, 3), padding='SAME', kernel_init=WEIGHT_INIT, dtype=dtype, name=name)(x)
  if not batch_norm:
    return nn.relu(x)
  x = nn.BatchNorm(
    use_running_average=not train,
    momentum=0.99,
    epsilon=BN_EPSILON,
    dtype=dtype,
    name='bn' + name[4:],
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
    batch_norm: False for the inference layout with BatchNorm folded into the convolutions
      and the fully connected layer (`fold_batch_norm`); such a model cannot be trained.
  """

  num_points: int
  width: int = 512
  num_heads: int = 1
  variant: str = 'gap'
  dtype: jnp.dtype = jnp.float32
  batch_norm: bool = True

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
        x = max_pool_2x2(x)
      else:
        x = _conv_bn_relu(x, *layer, train, self.dtype, self.batch_norm)
    if self.variant == 'gap':
      x = _conv_bn_relu(x, 'conv43', self.width, train, self.dtype, self.batch_norm)  # [B,7,7,D]
      feature = x.mean(axis=(1, 2))  # [B, D]
    elif self.variant == 'pre_bm':
      x = max_pool_2x2(x)  # [B, 4, 4, 128]
      x = nn.Dense(self.width, kernel_init=WEIGHT_INIT, dtype=self.dtype, name='fc')(
        x.reshape(x.shape[0], -1)
      )
      if self.batch_norm:
        x = nn.BatchNorm(
          use_running_average=not train,
          momentum=0.99,
          epsilon=BN_EPSILON,
          dtype=self.dtype,
          name='bnfc',
        )(x)
      feature = nn.relu(x)  # [B, D]
    else:
      raise ValueError(f'unknown MCL variant {self.variant!r}; expected gap or pre_bm')
    return Heads(self.num_points, self.num_heads, self.dtype, name='heads')(feature)


def fold_batch_norm(variables: dict, epsilon: float = BN_EPSILON) -> dict:
  """Inference variables of `MCL(..., batch_norm=False)` equal to `variables` at eval time.

  Every BatchNorm `bn<k>` that follows the layer `conv<k>` (or `fc`) is folded into it with its
  running statistics: with s = scale / sqrt(var + eps), kernel' = kernel · s (per output
  channel) and bias' = (bias − mean) · s + beta. This removes four elementwise passes per layer
  from the forward pass (about 10 % of MCL68's CPU time at batch 1).

  Args:
    variables: {'params', 'batch_stats'} of a trained `MCL` (batch_norm=True).
    epsilon: the BatchNorm epsilon the model was built with.

  Returns:
    {'params': ...} for the BatchNorm-free layout (heads unchanged).
  """
  params, stats = variables['params'], variables['batch_stats']
  folded = {}
  for name, layer in params.items():
    bn_name = 'bnfc' if name == 'fc' else 'bn' + name[4:] if name.startswith('conv') else None
    if bn_name is None:
      folded[name] = layer
      continue
    if bn_name not in params or bn_name not in stats:
      raise ValueError(f'fold_batch_norm: {name} has no BatchNorm {bn_name} to fold')
    bn, moments = params[bn_name], stats[bn_name]
    s = bn['scale'] / jnp.sqrt(moments['var'] + epsilon)  # [C_out]
    folded[name] = {
      'kernel': layer['kernel'] * s,
      'bias': (layer['bias'] - moments['mean']) * s + bn['bias'],
    }
  return {'params': {k: v for k, v in folded.items() if not k.startswith('bn')}}


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
