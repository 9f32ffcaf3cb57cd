"""Config -> optax chain: SGD + momentum (the papers) or AdamW (the fast CPU recipe), weight
decay on kernels only, a step or warm-up + cosine learning-rate schedule, freezing.

The chain is `[clip_by_global_norm] -> optimiser -> freeze(frozen)`, the optimiser being
`add_decayed_weights (kernels) -> sgd(momentum)` or `adamw(mask=kernels)`: the freeze comes
last, so neither weight decay nor momentum can move a frozen leaf. Clipping is optional and off
unless a config asks for it.
"""

from __future__ import annotations

from typing import Any

import optax

from lmjax.train import surgery

# Weight decay applies to conv / dense kernels only: not to biases, not to BatchNorm.
DECAY_PATTERN = r'(^|/)kernel$'
OPTIMIZERS = ('sgd', 'adamw')
SCHEDULES = ('step', 'cosine')


def learning_rate_schedule(base_lr: float, decay_every: int, decay_factor: float) -> optax.Schedule:
  """`base_lr × decay_factor ** floor(step / decay_every)` (Caffe's `step` policy)."""
  return optax.exponential_decay(
    base_lr, transition_steps=decay_every, decay_rate=decay_factor, staircase=True
  )


def cosine_schedule(base_lr: float, num_steps: int, warmup_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `base_lr` over `warmup_steps`, then a cosine to 0 at `num_steps`."""
  warmup_steps = min(warmup_steps, max(num_steps - 1, 0))
  if warmup_steps == 0:
    return optax.cosine_decay_schedule(base_lr, decay_steps=max(num_steps, 1))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=base_lr,
    warmup_steps=warmup_steps,
    decay_steps=max(num_steps, warmup_steps + 1),
    end_value=0.0,
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
  optimizer: str = 'sgd',
  schedule: str = 'step',
  warmup_steps: int = 0,
  num_steps: int = 0,
) -> optax.GradientTransformation:
  """An optimiser with weight decay on kernels, and the leaves matching `frozen` frozen.

  Args:
    params: the parameter tree (for the path masks).
    learning_rate: initial (step schedule) or peak (cosine schedule) learning rate.
    decay_every: steps between learning-rate decays (step schedule).
    decay_factor: multiplicative decay (0.3 in MCL; step schedule).
    momentum: SGD momentum (sgd), Adam's first-moment decay b1 (adamw).
    weight_decay: sgd: L2 coefficient added to the gradient of every kernel; adamw: decoupled
      decay (times the learning rate) of every kernel.
    frozen: regex over leaf names (`conv11/kernel`, `heads/0/bias`, ...); None freezes
      nothing.
    clip_norm: if > 0, gradients are first clipped to this global norm (not in either paper;
      BB-FCN's dense configs use it against the large first gradients of He-scaled kernels).
    optimizer: 'sgd' (both papers) or 'adamw'.
    schedule: 'step' (both papers: `learning_rate_schedule`) or 'cosine' (`cosine_schedule`
      over `num_steps` with `warmup_steps`).
    warmup_steps: linear warm-up steps of the cosine schedule.
    num_steps: the stage's length, where the cosine schedule reaches 0.

  Raises:
    ValueError: an unknown optimizer or schedule, or a cosine schedule without num_steps.
  """
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optim.optimizer={optimizer!r}; expected one of {OPTIMIZERS}')
  if schedule not in SCHEDULES:
    raise ValueError(f'optim.schedule={schedule!r}; expected one of {SCHEDULES}')
  if schedule == 'step':
    lr = learning_rate_schedule(learning_rate, decay_every, decay_factor)
  elif num_steps <= 0:
    raise ValueError(f'the cosine schedule needs the stage length (num_steps={num_steps})')
  else:
    lr = cosine_schedule(learning_rate, num_steps, warmup_steps)
  kernels = surgery.path_mask(params, DECAY_PATTERN)
  if optimizer == 'sgd':
    update = [optax.add_decayed_weights(weight_decay, mask=kernels), optax.sgd(lr, momentum)]
  else:
    update = [optax.adamw(lr, b1=momentum, weight_decay=weight_decay, mask=kernels)]
  clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm > 0 else []
  return optax.chain(*clip, *update, optax.freeze(surgery.path_mask(params, frozen)))


def from_config(params: Any, stage: Any, optim: Any, frozen: str | None = None):
  """`make_optimizer` from a stage config (`lr`, `decay_every`, `steps`, optional
  `warmup_steps`) and the `optim` config (`momentum`, `weight_decay`, `decay_factor`; optional
  `clip_norm`, `optimizer`, `schedule`)."""
  return make_optimizer(
    params,
    learning_rate=stage.lr,
    decay_every=stage.decay_every,
    decay_factor=optim.decay_factor,
    momentum=optim.momentum,
    weight_decay=optim.weight_decay,
    frozen=frozen,
    clip_norm=optim.get('clip_norm', 0.0),
    optimizer=optim.get('optimizer', 'sgd'),
    schedule=optim.get('schedule', 'step'),
    warmup_steps=stage.get('warmup_steps', 0),
    num_steps=stage.get('steps', 0),
  )
