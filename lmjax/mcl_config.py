"""The MCL experiment config, shared by `configs/mcl{5,29,68}.py` (imports only ml_collections).

Paper settings (Shao et al. §IV-A): batch 64, SGD momentum 0.9, weight decay 5e-4, lr 0.02 for
pre-training and 0.001 for every fine-tuning step, ×0.3 every 30k iterations, 180k pre-training
and 60k iterations per fine-tuning step, α = 125. `runlocal` shrinks the schedule for a 2-core
CPU; the data table below says where each dataset lives and how its face box behaves.
"""

from __future__ import annotations

import ml_collections

# Regex of the "first six convolutional layers" (and their BatchNorm) of Algorithm 1, step 2.
FIRST_SIX_CONVS = r'^(conv|bn)(11|12|21|22|31|32)/'
# Steps 4-6: everything but the head being fine-tuned ({head} is that head's index), i.e. the
# shared layers Θ_S (BatchNorm included, run in inference mode) and the other heads.
ALL_BUT_HEAD = r'^(?!heads/{head}/)'

DATA = {
  # name: (tfds name, default manual dir, builder config per point count, validation split
  #        or '' to carve `num_validation` faces out of train, num_validation, rebox)
  '300w': ('300w', 'data/300w', {}, '', 200, True),
  'mtfl': ('mtfl', 'data/mtfl', {}, '', 500, False),
  'cofw': ('cofw', 'data/cofw', {}, '', 100, False),
  'synthetic': ('synthetic', '', {68: 'face68', 5: 'face5'}, 'validation', 0, True),
}


def data_config(num_points: int, data: str) -> dict:
  """The `config.data` fields of dataset `data` (shared by the MCL and BB-FCN configs)."""
  if data not in DATA:
    raise ValueError(f'unknown data={data!r}; known: {sorted(DATA)}')
  tfds_name, manual_dir, builder_configs, val_split, num_val, _ = DATA[data]
  if builder_configs and num_points not in builder_configs:
    raise ValueError(f'data={data} has no {num_points}-point variant')
  return dict(
    name=tfds_name,
    manual_dir=manual_dir,
    data_dir='',
    builder_config=builder_configs.get(num_points, ''),
    train_split='train',
    val_split=val_split,
    num_validation=num_val,
    split_seed=0,
    # synthetic only: split sizes (0 keeps the builder's defaults)
    synthetic_train=0,
    synthetic_validation=0,
  )


def mcl_config(num_points: int, width: int, data: str, runlocal: bool) -> ml_collections.ConfigDict:
  """Full MCL config for `num_points` landmarks on dataset `data`."""
  data_fields = data_config(num_points, data)  # validates `data`
  rebox = DATA[data][-1]
  c = ml_collections.ConfigDict()
  c.experiment = 'mcl'
  c.seed = 0
  # head_bias_init: 'mean_shape' (heads start at the training faces' mean shape; removes the
  # ~500-step plateau of learning it through the bias) or 'zeros'; kernels are N(0, 0.01).
  c.model = dict(
    num_points=num_points, width=width, variant='gap', dtype='float32', head_bias_init='mean_shape'
  )
  c.data = data_fields
  # Face regions cached once (2.2× the box at twice the crop resolution: the evaluation crop
  # is then an exact sub-grid), with one JPEG-degraded copy picked with probability jpeg_prob.
  c.input = dict(
    size=50,
    crop_scale=1.1,
    region_size=100,
    region_scale=2.2,
    grayscale=True,
    jpeg_variants=1,
    jpeg_prob=0.3,
    jpeg_quality_min=30,
    jpeg_quality_max=90,
  )
  # `rebox` re-derives the tight landmark box after rotation: right where the protocol box
  # is the tight box of the very points we have (300-W, synthetic 68).
  c.aug = dict(
    rotation_deg=18.0,
    rebox=rebox and num_points == 68,
    scale_min=0.9,
    scale_max=1.1,
    translate=0.05,
    flip_prob=0.5,
    brightness=25.6,
    contrast_min=0.8,
    contrast_max=1.2,
  )
  c.batch_size = 64
  c.eval_batch_size = 256
  c.optim = dict(momentum=0.9, weight_decay=5e-4, decay_factor=0.3)
  # Per stage: iterations, initial lr, lr ×decay_factor every decay_every steps, frozen regex.
  c.stages = dict(
    bm=dict(steps=180_000, lr=0.02, decay_every=30_000, frozen=''),
    wm_partial=dict(steps=60_000, lr=0.001, decay_every=30_000, frozen=FIRST_SIX_CONVS),
    wm=dict(steps=60_000, lr=0.001, decay_every=30_000, frozen=''),
    mc=dict(steps=60_000, lr=0.001, decay_every=30_000, frozen=ALL_BUT_HEAD),  # per cluster
  )
  c.alpha = 125.0
  c.stop_after = ''  # a stage name to stop after (e.g. 'bm'); '' runs Algorithm 1 to the end
  c.log_every = 100
  c.checkpoint_every = 2_000
  if runlocal:
    c.batch_size = 32
    c.eval_batch_size = 128
    c.input.jpeg_variants = 0
    c.stages.bm.steps = 600
    c.stages.wm_partial.steps = 60
    c.stages.wm.steps = 60
    c.stages.mc.steps = 25
    c.log_every = 50
    c.checkpoint_every = 200
  return c
