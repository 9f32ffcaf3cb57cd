"""BB-FCN: backbone-branches fully convolutional network (Liu et al.; SPEC §3).

Backbone (coarse maps; S = 32 for 5 points, 64 for dense sets, any S divisible by 4):

    input [B, S, S, 3]
    conv1 conv2              20, 5×5    -> [B, S, S, 20]
    pool                     2×2 s2     -> S/2
    conv3 conv4              30, 5×5    -> [B, S/2, S/2, 30]
    pool                     2×2 s2     -> S/4
    conv5 conv6              40, 5×5    -> [B, S/4, S/4, 40]
    deconv1                  30, 2×2 s2 -> S/2
    conv7                    30, 5×5    -> [B, S/2, S/2, 30]
    deconv2                  F, 2×2 s2  -> S       (F = map_features: the paper's 15)
    maps (linear)            K, 1×1     -> [B, S, S, K] coarse response maps

Branches (K branches with the same structure, parameters stacked on a leading K axis):

    input [B, K, P, P, 4]    RGB patch + coarse map k (P = 24)
    conv1 .. conv4           5, 5×5     -> [B, K, P, P, 5]
    map (linear)             1, 1×1     -> [B, K, P, P] fine response maps

(computed for all K at once by `StackedConv`: block-diagonal dense convs over groups of 5
branches; im2col + a matmul batched over K as the alternative lowering).
`RegressionFCN` is the paper's §IV-C coordinate-regression baseline (see its docstring).

Every conv is stride 1, SAME, with bias; ReLU follows every conv and deconv except the last
1×1 layer. Kernels are drawn from N(0, 0.01) and biases start at zero (paper §III-E).

Choices the paper leaves open: (1) it never names a nonlinearity; the outputs are response maps
regressed with a squared error to 0/1 disc targets and thresholded at test time (eq. 4-6), so
the last layer is linear, as in the FCNs it cites (a final ReLU would leave pixels with negative
responses without gradient, a sigmoid would saturate the squared error). (2) Pools are 2×2
stride 2 exactly as §III says ("the size of the max-pooling operator is set to 2 × 2, and the
stride for pooling is 2"); the deconvolutions are 2×2 stride 2, so the maps come back at input
resolution only when S is divisible by 4, which is checked.

Freezing the backbone during the branch stage is the path regex `^backbone/`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.models.layers import max_pool_2x2

WEIGHT_INIT = nn.initializers.normal(stddev=0.01)
TRUNK = (
  ('conv1', 20),
  ('conv2', 20),
  'pool',
  ('conv3', 30),
  ('conv4', 30),
  'pool',
  ('conv5', 40),
  ('conv6', 40),
)
BRANCH = (('conv1', 5), ('conv2', 5), ('conv3', 5), ('conv4', 5))
PATCH = 24  # P, the side of a branch input (paper §III-C)


def _conv(x: jax.Array, name: str, features: int, kernel: int, dtype) -> jax.Array:
  """Stride-1 SAME conv `name` with bias, created in the calling module's scope."""
  return nn.Conv(
    features, (kernel, kernel), padding='SAME', kernel_init=WEIGHT_INIT, dtype=dtype, name=name
  )(x)


def _trunk(x: jax.Array, dtype) -> jax.Array:
  """conv1..conv6 with two 2×2 stride-2 pools: [B, H, W, 3] -> [B, H/4, W/4, 40]."""
  if x.shape[1] % 4 or x.shape[2] % 4:
    raise ValueError(f'BB-FCN input height and width must be divisible by 4, got {x.shape}')
  x = x.astype(dtype)
  for layer in TRUNK:
    x = max_pool_2x2(x) if layer == 'pool' else nn.relu(_conv(x, *layer, 5, dtype))
  return x


class Backbone(nn.Module):
  """Coarse landmark response maps at input resolution (fully convolutional).

  The K maps are affine in the F = `map_features` channels of deconv2 at each pixel, so at
  most F + 1 of them are linearly independent: the paper's F = 15 serves its 5 maps, not 68
  disc maps. Widening F (`model.map_features`, default 15) lowers a 68-point backbone's loss
  faster, but did not by itself make it localise within 300 CPU steps; with He init, AdamW and
  3,600 + 7,200 GPU steps the 64-wide model does (README, "Why bbfcn68 did not localise").

  Attributes:
    num_points: K, landmark types (one output map each).
    map_features: F, channels of deconv2 (the paper's 15).
    dtype: computation dtype (parameters stay float32).
  """

  num_points: int
  map_features: int = 15
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, 3] images (H, W divisible by 4) -> [B, H, W, K] float32 coarse maps."""
    x = _trunk(x, self.dtype)  # [B, H/4, W/4, 40]
    layers = (('deconv1', 30, 'conv7'), ('deconv2', self.map_features, None))
    for name, features, conv in layers:
      x = nn.ConvTranspose(
        features, (2, 2), strides=(2, 2), kernel_init=WEIGHT_INIT, dtype=self.dtype, name=name
      )(x)
      x = nn.relu(x)  # [B, H/2, W/2, 30], then [B, H, W, F]
      if conv:
        x = nn.relu(_conv(x, conv, 30, 5, self.dtype))
    return _conv(x, 'maps', self.num_points, 1, self.dtype).astype(jnp.float32)  # [B, H, W, K]


class Branch(nn.Module):
  """One branch: [B, P, P, 4] (RGB patch + one coarse map) -> [B, P, P] fine map."""

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    for name, features in BRANCH:
      x = nn.relu(_conv(x, name, features, 5, self.dtype))
    return _conv(x, 'map', 1, 1, self.dtype)[..., 0].astype(jnp.float32)  # [B, P, P]


class StackedConv(nn.Module):
  """K independent stride-1 SAME convolutions, conv k applied to the slice k of the K axis.

  Two lowerings of the same parameters (kernel [K, s, s, C, O], bias [K, O]):

  * `group_size=G > 0`, input [B, H, W, K, C]: the K convs in ⌈K/G⌉ groups of G; each group is
    ONE ordinary conv over its G·C stacked channels with a block-diagonal [s, s, G·C, G·O]
    kernel (G× the useful FLOPs, but XLA's fast dense conv kernels). The groups are a static,
    unrolled sequence of ⌈K/G⌉ convs (14 for 68 points at G = 5; one for 5 points).
  * `group_size=0`, input [K, B, H, W, C]: im2col (s² shifted views concatenated on channels)
    and one matmul batched over K.

  Measured on one CPU thread (forward, [B, K, 24, 24, 4] branch inputs, ms per face): K = 5:
  block 1.41, im2col 1.85 at B = 1; 1.46 vs 8.9 at B = 128. K = 68: groups of 4 6.8, of 8
  12.1, im2col 78.5 at B = 1 (7.3 vs 176 at B = 32). `nn.vmap(Branch)` and a
  `feature_group_count=K` conv (what vmap lowers to) are slower still on XLA:CPU (K = 5, B = 1:
  7.7 ms), and their backward pass at B=16, K=68 did not finish in 250 s.

  Attributes:
    features: output channels per branch.
    kernel_size: s (square kernel).
    group_size: branches per block-diagonal conv; 0 selects im2col.
    dtype: computation dtype (parameters stay float32).
  """

  features: int
  kernel_size: int
  group_size: int = 5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, K, C] -> [B, H, W, K, O] (grouped), or [K, B, H, W, C] -> [K, B, H, W, O]."""
    k = x.shape[3] if self.group_size else x.shape[0]
    c, s, o = x.shape[-1], self.kernel_size, self.features
    kernel = self.param('kernel', WEIGHT_INIT, (k, s, s, c, o))
    bias = self.param('bias', nn.initializers.zeros, (k, o))
    kernel, bias, x = kernel.astype(self.dtype), bias.astype(self.dtype), x.astype(self.dtype)
    lo, hi = (s - 1) // 2, s // 2  # SAME padding, as nn.Conv
    if self.group_size:
      b, h, w = x.shape[:3]
      outs = []
      for g0 in range(0, k, self.group_size):  # static: ⌈K/G⌉ dense convs
        g = min(self.group_size, k - g0)
        eye = jnp.eye(g, dtype=self.dtype)[:, None, None, None, :, None]  # [G,1,1,1,G,1]
        block = kernel[g0 : g0 + g, :, :, :, None, :] * eye  # [G, s, s, C, G, O]
        y = jax.lax.conv_general_dilated(
          x[:, :, :, g0 : g0 + g].reshape(b, h, w, g * c),
          block.transpose(1, 2, 0, 3, 4, 5).reshape(s, s, g * c, g * o),
          (1, 1),
          ((lo, hi), (lo, hi)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        )
        outs.append(y.reshape(b, h, w, g, o))
      return jnp.concatenate(outs, axis=3) + bias
    h, w = x.shape[2:4]
    x = jnp.pad(x, ((0, 0), (0, 0), (lo, hi), (lo, hi), (0, 0)))
    cols = [x[:, :, i : i + h, j : j + w] for i in range(s) for j in range(s)]
    cols = jnp.concatenate(cols, axis=-1)  # [K, B, H, W, s·s·C], ordered as the kernel
    y = jnp.einsum('kbhwi,kio->kbhwo', cols, kernel.reshape(k, s * s * c, o))
    return y + bias[:, None, None, None]


class Branches(nn.Module):
  """K `Branch`es with stacked parameters (leading K axis), run in one batched call.

  Parameters are `conv1..conv4`, `map`, each kernel [K, s, s, C_in, C_out] and bias [K, C_out],
  so `params['branches']` sliced at k is the parameter tree of a `Branch` (see `StackedConv`
  for why this is not `nn.vmap(Branch)`, and for its lowerings; they share the parameters).

  Attributes:
    num_points: K, landmark types (one branch each).
    group_size: branches per block-diagonal dense conv (0: im2col instead).
    dtype: computation dtype (parameters stay float32).
  """

  num_points: int
  group_size: int = 5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, patches: jax.Array) -> jax.Array:
    """[B, K, P, P, 4] patches (P = 24 in the paper) -> [B, K, P, P] float32 fine maps."""
    if patches.shape[1] != self.num_points:
      raise ValueError(f'expected {self.num_points} branch inputs on axis 1, got {patches.shape}')
    grouped = self.group_size > 0
    # Layouts: [B, P, P, K, C] for the block-diagonal lowering, [K, B, P, P, C] for im2col.
    x = patches.transpose(0, 2, 3, 1, 4) if grouped else jnp.moveaxis(patches, 1, 0)
    for name, features in BRANCH:
      x = nn.relu(StackedConv(features, 5, self.group_size, self.dtype, name=name)(x))
    x = StackedConv(1, 1, self.group_size, self.dtype, name='map')(x)[..., 0]
    x = x.transpose(0, 3, 1, 2) if grouped else jnp.moveaxis(x, 0, 1)  # [B, K, P, P]
    return x.astype(jnp.float32)


class BBFCN(nn.Module):
  """Backbone + branches; `init` with both inputs creates `backbone/...` and `branches/...`.

  Attributes:
    num_points: K, landmark types.
    map_features: F, the backbone's deconv2 channels (see `Backbone`).
    dtype: computation dtype (parameters stay float32).
  """

  num_points: int
  map_features: int = 15
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.backbone = Backbone(self.num_points, self.map_features, self.dtype)
    self.branches = Branches(self.num_points, dtype=self.dtype)

  def coarse(self, x: jax.Array) -> jax.Array:
    """[B, S, S, 3] face crops -> [B, S, S, K] coarse maps."""
    return self.backbone(x)

  def fine(self, patches: jax.Array) -> jax.Array:
    """[B, K, 24, 24, 4] patches -> [B, K, 24, 24] fine maps."""
    return self.branches(patches)

  def __call__(self, x: jax.Array, patches: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(coarse(x), fine(patches)); the stages are independent (cropping happens outside)."""
    return self.coarse(x), self.fine(patches)


class RegressionFCN(nn.Module):
  """The regression-FCN baseline of paper §IV-C ("an FCN with nine convolutional layers").

  The paper gives it exactly: conv1..conv6 and the two pools as in the backbone, then
  C(30, 2×2) C(30, 4×4) C(15, 1×1) (here `conv7`, `conv8`, `out` with 3K channels), so a 32×32
  input "generates a 15 × 8 × 8 response map, each pixel of which corresponds to a 4 × 4 region
  of the input image", with "every three channels ... as a group" giving "the probability of
  existence and the regressed two-dimensional location of the corresponding landmark type in a
  4 × 4 region". It is fully convolutional, so the same pyramid scanner can run it (`dense`).

  Left open by the paper and chosen here: the group is ordered (score, dx, dy); the score is
  linear, trained like the backbone's maps; (dx, dy) are linear offsets in cell units from the
  cell centre (0 = centre), so a cell (i, j) predicts x = 4 j + 1.5 + 4 dx in input pixels
  (pixel centres on integers). `__call__` reads each type's point off its best-scoring cell.

  Attributes:
    num_points: K, landmark types.
    dtype: computation dtype (parameters stay float32).
  """

  num_points: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def dense(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-cell predictions.

    Args:
      x: [B, H, W, 3] images, H and W divisible by 4.

    Returns:
      scores [B, H/4, W/4, K] and points [B, H/4, W/4, K, 2] (x, y) in input pixels.
    """
    x = _trunk(x, self.dtype)  # [B, h, w, 40]
    x = nn.relu(_conv(x, 'conv7', 30, 2, self.dtype))
    x = nn.relu(_conv(x, 'conv8', 30, 4, self.dtype))
    out = _conv(x, 'out', 3 * self.num_points, 1, self.dtype).astype(jnp.float32)
    out = out.reshape(*out.shape[:3], self.num_points, 3)  # [B, h, w, K, 3]
    h, w = out.shape[1:3]
    cells = jnp.stack(jnp.meshgrid(jnp.arange(w), jnp.arange(h)), axis=-1)  # [h, w, 2] (j, i)
    points = 4.0 * (cells[:, :, None, :] + out[..., 1:]) + 1.5  # [B, h, w, K, 2] (x, y)
    return out[..., 0], points

  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, H, W, 3] images -> [B, K, 2] (x, y) in input pixels, from each best cell."""
    scores, points = self.dense(x)
    b, h, w, k = scores.shape
    best = jnp.argmax(scores.reshape(b, h * w, k), axis=1)  # [B, K]
    points = points.reshape(b, h * w, k, 2)
    return jnp.take_along_axis(points, best[:, None, :, None], axis=1)[:, 0]  # [B, K, 2]


def he_rescale(params: Any) -> Any:
  """Kernels drawn from N(0, 0.01) rescaled to He's N(0, 2 / fan_in) (biases unchanged).

  The paper's N(0, 0.01) shrinks the signal ~5× per 5×5×20 layer of the 12-layer backbone,
  so the first thousands of SGD steps mostly learn biases; this keeps the same random
  directions at a scale that propagates (BB-FCN configs: `model.init = 'he'`, a deviation).
  """

  def rescale(path, x):
    if path[-1].key != 'kernel':
      return x
    fan_in = int(np.prod(x.shape[-4 if x.ndim == 5 else 0 : -1]))
    if path[-2].key.startswith('deconv'):  # stride = kernel: each output sees one input pixel
      fan_in = x.shape[-2]
    return x * (np.sqrt(2.0 / fan_in) / 0.01)

  return jax.tree_util.tree_map_with_path(rescale, params)
