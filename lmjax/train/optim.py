"""Config -> optax chain: SGD + momentum, decoupled-from-BN weight decay, step decay, freezing.

The chain is `[clip_by_global_norm] -> add_decayed_weights (kernels only) -> sgd(momentum) ->
freeze(frozen)`: the freeze comes last, so neither weight decay nor momentum can move a frozen
leaf. Clipping is optional and off unless a config asks for it.
"""

from __future__ import annotations

from typing import Any

import optax

from lmjax.train import surgery

# Weight decay applies to conv / dense kernels only: not to biases, not to BatchNorm.
DECAY_PATTERN = r'(^|/)kernel$'


def learning_rate_schedule(base_lr: float, decay_every: int, decay_factor: float) -> optax.Schedule:
  """`base_lr × decay_factor ** floor(step / decay_every)` (Caffe's `step` policy)."""
  return optax.exponential_decay(
    base_lr, transition_steps=decay_every, decay_rate=decay_factor, staircase=True
  )


def make_optimizer(
  params: Any,
  *,
  learning_rate: float,
  decay_every: int,
  decay_factor: float,
  momentum: float,
  weight_decay: float,
  frozen: str | None = None,
  clip_norm: float = 0.0,
) -> optax.GradientTransformation:
  """SGD with momentum, weight decay on kernels, and the leaves matching `frozen` frozen.

  Args:
    params: the parameter tree (for the path masks).
    learning_rate: initial learning rate.
    decay_every: steps between learning-rate decays.
    decay_factor: multiplicative decay (0.3 in MCL).
    momentum: SGD momentum.
    weight_decay: L2 coefficient added to the gradient of every kernel.
    frozen: regex over leaf names (`conv11/kernel`, `heads/0/bias`, ...); None freezes
      nothing.
    clip_norm: if > 0, gradients are first clipped to this global norm (not in either paper;
      BB-FCN's dense configs use it against the large first gradients of He-scaled kernels).
  """
  clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []
  return optax.chain(
    *clip,
    optax.add_decayed_weights(weight_decay, mask=surgery.path_mask(params, DECAY_PATTERN)),
    optax.sgd(learning_rate_schedule(learning_rate, decay_every, decay_factor), momentum=momentum),
    optax.freeze(surgery.path_mask(params, frozen)),
  )


def from_config(params: Any, stage: Any, optim: Any, frozen: str | None = None):
  """`make_optimizer` from a stage config (`lr`, `decay_every`) and the `optim` config
  (`momentum`, `weight_decay`, `decay_factor`, optional `clip_norm`)."""
  return make_optimizer(
    params,
    learning_rate=stage.lr,
    decay_every=stage.decay_every,
    decay_factor=optim.decay_factor,
    momentum=optim.momentum,
    weight_decay=optim.weight_decay,
    frozen=frozen,
    clip_norm=optim.get('clip_norm', 0.0),
  )
