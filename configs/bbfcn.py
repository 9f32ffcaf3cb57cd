r"""BB-FCN (Liu et al.; SPEC §3): the config family of `configs/bbfcn*.py` and `configs/regfcn*.py`.

  python -m lmjax.main --config=configs/bbfcn.py:points=5,data=synthetic,runlocal \
      --workdir=runs/bbfcn5_synth
Arguments: `points=5|68|98` (default 5), `data=mtfl|300w|wflw|synthetic` (default mtfl for 5
points, 300w for 68, wflw for 98), `variant=bbfcn|backbone_only|regression`, `weighting`,
`runlocal` (shrink everything for a 2-core CPU).

Paper settings (§III-E): batch 40, positive:negative images 1:1 for the backbone and 4:1 for the
branches, SGD momentum 0.9, weight decay 5e-4, N(0, 0.01) init; backbone lr 1e-3 for 25k
iterations; branches lr 1e-4 for 30k then 1e-5 for 20k; Rc = 5 %, Rf = 3 %.

Variants (`config.variant`):
  bbfcn          backbone stage, then branch stage (the paper's model)
  backbone_only  the backbone stage alone (the ablation "coarse" of Table I / Fig. 10)
  regression     the §IV-C regression-FCN baseline, trained like the backbone
`weighting=True` adds MCL's weighting fine-tuning (eq. 5) to the branches: a `branches_wm`
stage that fine-tunes them with u_k from the branch model's validation errors.

Options beyond the paper, each defaulting to the paper's value (README "Pretrained models" has
what they did for the 68-point backbone): `model.map_features` (deconv2 width, 15),
`loss.neg_per_pos` (negatives per positive pixel, 1), `optim.optimizer` / `optim.schedule`
(sgd / step; adamw / cosine with `stages.<stage>.warmup_steps`).
"""

import pathlib
import runpy
import types

import ml_collections

common = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'common.py')))

# Per landmark count: the paper's dataset.
DATA = {5: 'mtfl', 68: '300w', 98: 'wflw'}

VARIANTS = ('bbfcn', 'backbone_only', 'regression')


def get_config(arg=None):
  """The config of argument string `arg` (see the module docstring)."""
  arg = common.parse_arg(arg, points=5, data='', variant='bbfcn', weighting=False, runlocal=False)
  if arg.points not in DATA:
    raise ValueError(f'config argument points={arg.points}: expected one of {sorted(DATA)}')
  data = arg.data or DATA[arg.points]
  return bbfcn_config(arg.points, data, arg.runlocal, arg.variant, arg.weighting)


def bbfcn_config(
  num_points: int, data: str, runlocal: bool, variant: str = 'bbfcn', weighting: bool = False
) -> ml_collections.ConfigDict:
  """Full BB-FCN config for `num_points` landmark types on dataset `data`."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown variant={variant!r}; known: {VARIANTS}')
  if weighting and variant != 'bbfcn':
    raise ValueError('weighting fine-tuning applies to the branch stage: needs variant=bbfcn')
  dense = num_points > 5
  c = ml_collections.ConfigDict()
  c.experiment = 'bbfcn'
  c.variant = variant
  c.seed = 0
  # A model folder (e.g. pretrained/<name>) the first stage starts from: leaves matched by name
  # and shape (lmjax.train.warm_start); '' starts from scratch.
  c.init_from = ''
  # JAX CPU devices the batch is split over (CPU only). 1 (default) is the safe layout; 0 = one
  # per core is 1.3x faster but experimental: XLA's in-process CPU collectives deadlocked once
  # (lmjax.data.batching.cpu_device_count).
  c.cpu_devices = 1
  # size: backbone input S; refine_size: the branches' image R = 2 S (the paper's 64 for 32).
  # init: 'paper' = N(0, 0.01) kernels, zero biases; 'he' = the same draws rescaled to
  # N(0, 2 / fan_in) (a deviation that trains much faster from scratch; see he_rescale).
  # map_features: channels of deconv2, which the K maps are a 1×1 linear read-out of (paper:
  # 15, enough for 5 maps; see lmjax.models.bbfcn.Backbone for why 68 maps need more).
  c.model = dict(
    num_points=num_points,
    size=64 if dense else 32,
    refine_size=128 if dense else 64,
    init='paper',
    map_features=15,
  )
  c.data = common.data_config(data, num_points)  # the MCL configs' validation faces
  # Face regions cached once at 2 × R for 2.2 × the box; the test crop is crop_scale × the box.
  region = 2 * (128 if dense else 64)
  c.input = dict(
    crop_scale=1.1,
    region_size=region,
    region_scale=2.2,
    grayscale=False,
    jpeg_variants=0,
    jpeg_prob=0.0,
    jpeg_quality_min=30,
    jpeg_quality_max=90,
  )
  # Positive windows: square side max(w, h) × s, s log-uniform in 1/max_scale..max_scale, centre
  # shifted by ≤ max_shift × side, kept only with IoU > 0.5 to the face box (paper §III-E).
  c.aug = dict(
    window_max_scale=1.3,
    window_max_shift=0.15,
    rotation_deg=15.0,
    flip_prob=0.5,
    brightness=25.6,
    contrast_min=0.8,
    contrast_max=1.2,
  )
  c.negatives = dict(
    from_photos=3000,  # face-free windows cut from the training photos
    per_photo=2,
    min_side_frac=0.1,  # smallest window side / shorter photo side
    synthetic=2000,  # procedural clutter backgrounds (stand-in for Pascal VOC)
    num_validation=300,
  )
  c.loss = dict(
    neg_per_pos=1,  # random (or hard) negatives selected per positive pixel of a map (paper: 1)
    empty_neg_ratio=0.01,  # share of pixels selected in maps without positives
    # Hard negative mining: 'auto' switches on when the validation loss has not improved for
    # `patience` evaluations; 'on' / 'off' force it.
    hnm='auto',
    patience=3,
    branch_jitter=2.0,  # ± R pixels added to the coarse location when cutting branch patches
    # branches_wm stage: 'eq5' = MCL's weights from the branch model's validation errors;
    # 'uniform' = u_k = 1, the control (same extra fine-tuning steps without the weighting).
    wm_weights='eq5',
  )
  c.batch_size = 40
  c.eval_batch_size = 200
  # clip_norm > 0 clips the global gradient norm first (not in the paper; 0 = off).
  # optimizer 'sgd' | 'adamw' and schedule 'step' | 'cosine' as in the MCL configs
  # (lmjax.train.optim); the paper: SGD with step decay.
  c.optim = dict(
    optimizer='sgd',
    schedule='step',
    momentum=0.9,
    weight_decay=5e-4,
    decay_factor=0.1,
    clip_norm=10.0 if dense else 0.0,
  )
  # Per stage: iterations, lr, lr × decay_factor every decay_every steps, positive share.
  # The loss is the paper's per-image sum (see losses.selective_loss), so the paper's rates
  # hold for its 5-point, 32-pixel model. Dense models sum ~35× more selected pixels per
  # image, but even 1e-4 (3× the rate scaled down by that) left the 68-point backbone on its
  # initial plateau for 200 steps, while 1e-3 with the gradient clipped to norm 10 learns
  # (300-W, He init; 1e-3 unclipped diverged at step 10). Dense configs use that; the paper
  # gives no rates for them.
  lr_backbone, lr_branch = (1e-3, 3e-4) if dense else (1e-3, 1e-4)
  # warmup_steps: linear warm-up of the cosine schedule (optim.schedule='cosine' only).
  c.stages = dict(
    backbone=dict(steps=25_000, lr=lr_backbone, decay_every=10**9, positives=20, warmup_steps=0),
    branches=dict(steps=50_000, lr=lr_branch, decay_every=30_000, positives=32, warmup_steps=0),
    branches_wm=dict(
      steps=20_000 if weighting else 0,
      lr=lr_branch / 10,
      decay_every=10**9,
      positives=32,
      warmup_steps=0,
    ),
    regression=dict(steps=25_000, lr=lr_backbone, decay_every=10**9, positives=20, warmup_steps=0),
  )
  c.validate_every = 1_000
  c.stop_after = ''  # a stage name to stop after (e.g. 'backbone'); '' runs every stage
  c.log_every = 100
  c.checkpoint_every = 2_000
  if runlocal:
    c.eval_batch_size = 100
    c.negatives.from_photos = 300
    c.negatives.synthetic = 200
    c.negatives.num_validation = 60
    c.stages.backbone.steps = 400
    c.stages.regression.steps = 400
    c.stages.branches.steps = 200
    c.stages.branches.decay_every = 150
    if weighting:
      c.stages.branches_wm.steps = 60
    c.validate_every = 100
    c.log_every = 50
    c.checkpoint_every = 100
  return c
