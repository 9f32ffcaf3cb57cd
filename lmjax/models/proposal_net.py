"""ProposalNet: the scanner's cheap face-window proposer (a P-Net-style fully convolutional net).

BB-FCN's pyramid scan runs the whole backbone on every pixel of every level; its cascade mode
(`lmjax.scan.cascade`) first finds candidate face windows with this much smaller network,
trained on 12 × 12 windows (face / non-face logit and the face box relative to the window):

    input  [B, H, W, 3]  (x / 128 - 1; 12 × 12 in training)
    conv1  10, 3×3 VALID, ReLU   -> H - 2
    pool   2×2 s2 (floor)        -> (H - 2) // 2
    conv2  16, 3×3 VALID, ReLU   -> (H - 2) // 2 - 2
    conv3  32, 3×3 VALID, ReLU   -> (H - 2) // 2 - 4
    face   1, 1×1 (linear)       -> logits [B, H', W']
    box    4, 1×1 (linear)       -> offsets [B, H', W', 4]

with H' = `output_size(H)`. Every layer is valid (no padding), so on a whole image the output
cell (i, j) is exactly the network applied to the 12 × 12 window whose top-left input pixel is
(row 2i, column 2j): one pass scores every window at stride `STRIDE`. The box offsets are
(x0, y0, x1, y1) of the face box minus those of the window, in window sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

WINDOW = 12  # input side in training: the window every output cell sees
STRIDE = 2  # input pixels between neighbouring output cells


def output_size(side: int) -> int:
  """Output cells along an input axis of `side` pixels (0 when it is under `WINDOW`)."""
  return max(0, (side - 2) // 2 - 4) if side >= WINDOW else 0


class ProposalNet(nn.Module):
  """Face logits and box offsets of every 12 × 12 window at stride 2.

  Attributes:
    widths: output channels of conv1, conv2, conv3.
  """

  widths: Sequence[int] = (10, 16, 32)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, 3] (x / 128 - 1) -> (logits [B, H', W'], offsets [B, H', W', 4]) float32."""
    if len(self.widths) != 3:
      raise ValueError(f'ProposalNet widths has {len(self.widths)} entries; expected 3')
    if x.shape[1] < WINDOW or x.shape[2] < WINDOW:
      raise ValueError(f'ProposalNet input is {x.shape}; expected height and width ≥ {WINDOW}')
    x = x.astype(jnp.float32)
    x = nn.relu(nn.Conv(self.widths[0], (3, 3), padding='VALID', name='conv1')(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
    x = nn.relu(nn.Conv(self.widths[1], (3, 3), padding='VALID', name='conv2')(x))
    x = nn.relu(nn.Conv(self.widths[2], (3, 3), padding='VALID', name='conv3')(x))
    logits = nn.Conv(1, (1, 1), name='face')(x)[..., 0]
    offsets = nn.Conv(4, (1, 1), name='box')(x)
    return logits, offsets
