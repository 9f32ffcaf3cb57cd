r"""MCL, Multi-Center Learning (Shao et al.; SPEC §2): the config family of `configs/mcl*.py`.

  python -m lmjax.main --config=configs/mcl.py:points=68,data=synthetic,runlocal \
      --workdir=runs/mcl68_synth
Arguments: `points=68|5|29|98|19` (default 68), `data=300w|mtfl|cofw|wflw|aflw19|synthetic`
(default: the paper's dataset for that count: 300w, mtfl, cofw; wflw for 98, aflw19 for 19),
`width=N` (default 1024 for 68 and 98 points, else 512), `runlocal` (shrink everything for a
2-core CPU), `recipe=paper|fast` (default paper). `configs/mcl68.py`, `mcl5.py` and `mcl29.py`
are the paper's three experiments; `configs/mcl98.py` (WFLW) and `configs/mcl19.py` (AFLW-19)
apply the same recipe to datasets the paper did not use.

Recipes: `paper` (the default) is the paper's schedule below and reproduces it on a GPU.
`fast` is for a fixed CPU budget (about an hour on 2 cores): AdamW with a linear warm-up and a
cosine decay to 0 over each stage, 3,000 pre-training and 200 / 200 / 4 × 50 fine-tuning steps,
heavier pose and scale augmentation (rotation ±30°, box scale 0.75-1.1) and a validation every
250 steps (the learning curve in metrics.jsonl). README "Training recipes" compares the two.

Paper settings (§IV-A): batch 64, SGD momentum 0.9, weight decay 5e-4, lr 0.02 for pre-training
and 0.001 for every fine-tuning step, ×0.3 every 30k iterations, 180k pre-training and 60k
iterations per fine-tuning step, α = 125.
"""

import pathlib
import runpy
import types

import ml_collections

common = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'common.py')))

# Regex of the "first six convolutional layers" (and their BatchNorm) of Algorithm 1, step 2.
FIRST_SIX_CONVS = r'^(conv|bn)(11|12|21|22|31|32)/'
# Steps 4-6: everything but the head being fine-tuned ({head} is that head's index), i.e. the
# shared layers Θ_S (BatchNorm included, run in inference mode) and the other heads.
ALL_BUT_HEAD = r'^(?!heads/{head}/)'
# Per landmark count: the paper's dataset and network width.
DATA = {68: '300w', 5: 'mtfl', 29: 'cofw', 98: 'wflw', 19: 'aflw19'}
WIDTH = {68: 1024, 5: 512, 29: 512, 98: 1024, 19: 512}
RECIPES = ('paper', 'fast')


def get_config(arg=None):
  """The config of argument string `arg` (see the module docstring)."""
  arg = common.parse_arg(arg, points=68, data='', width=0, runlocal=False, recipe='paper')
  if arg.points not in DATA:
    raise ValueError(f'config argument points={arg.points}: expected one of {sorted(DATA)}')
  data, width = arg.data or DATA[arg.points], arg.width or WIDTH[arg.points]
  return mcl_config(arg.points, width, data, arg.runlocal, arg.recipe)


def mcl_config(
  num_points: int, width: int, data: str, runlocal: bool, recipe: str = 'paper'
) -> ml_collections.ConfigDict:
  """Full MCL config for `num_points` landmarks on dataset `data` with training `recipe`."""
  if recipe not in RECIPES:
    raise ValueError(f'config argument recipe={recipe!r}: expected one of {RECIPES}')
  c = ml_collections.ConfigDict()
  c.experiment = 'mcl'
  c.seed = 0
  # A model folder (e.g. pretrained/<name>) the first stage starts from: leaves matched by name
  # and shape (lmjax.train.warm_start); '' starts from scratch.
  c.init_from = ''
  # JAX CPU devices the batch is split over (CPU only). 1 (default) is the safe layout; 0 = one
  # per core is 1.3x faster but experimental: XLA's in-process CPU collectives deadlocked once
  # (lmjax.data.batching.cpu_device_count).
  c.cpu_devices = 1
  # head_bias_init: 'mean_shape' (heads start at the training faces' mean shape; removes the
  # ~500-step plateau of learning it through the bias) or 'zeros'; kernels are N(0, 0.01).
  c.model = dict(
    num_points=num_points, width=width, variant='gap', dtype='float32', head_bias_init='mean_shape'
  )
  c.data = common.data_config(data, num_points)
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
  # `rebox` re-derives the tight landmark box after rotation: right where the protocol box is
  # the tight box of the very points we have, i.e. the 68-point ones (300-W, synthetic face68;
  # `tight_box` in lmjax/data/datasets/table.py, checked by a test).
  c.aug = dict(
    rotation_deg=18.0,
    rebox=num_points == 68,
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
  # optimizer 'sgd' | 'adamw' (momentum = Adam's b1); schedule 'step' (×decay_factor every
  # decay_every steps) | 'cosine' (warm-up, then a cosine to 0 at the stage's last step).
  c.optim = dict(
    optimizer='sgd', schedule='step', momentum=0.9, weight_decay=5e-4, decay_factor=0.3
  )
  # Per stage: iterations, initial lr, lr ×decay_factor every decay_every steps (step
  # schedule), warm-up steps (cosine schedule), frozen regex.
  c.stages = dict(
    bm=dict(steps=180_000, lr=0.02, decay_every=30_000, warmup_steps=0, frozen=''),
    wm_partial=dict(
      steps=60_000, lr=0.001, decay_every=30_000, warmup_steps=0, frozen=FIRST_SIX_CONVS
    ),
    wm=dict(steps=60_000, lr=0.001, decay_every=30_000, warmup_steps=0, frozen=''),
    # per cluster
    mc=dict(steps=60_000, lr=0.001, decay_every=30_000, warmup_steps=0, frozen=ALL_BUT_HEAD),
  )
  c.alpha = 125.0
  c.stop_after = ''  # a stage name to stop after (e.g. 'bm'); '' runs Algorithm 1 to the end
  c.log_every = 100
  c.checkpoint_every = 2_000
  # Steps between validations inside a stage (the learning curve in metrics.jsonl); 0 = at the
  # end of each stage only.
  c.eval_every = 0
  if recipe == 'fast':
    apply_fast_recipe(c)
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


def apply_fast_recipe(c: ml_collections.ConfigDict) -> None:
  """The `fast` recipe for a fixed CPU budget (module docstring; README "Training recipes")."""
  c.optim.update(optimizer='adamw', schedule='cosine', weight_decay=0.05)
  c.stages.bm.update(steps=3_000, lr=1e-3, warmup_steps=100)
  for name, steps in (('wm_partial', 200), ('wm', 200), ('mc', 50)):
    c.stages[name].update(steps=steps, lr=1e-4, warmup_steps=0)
  c.aug.update(rotation_deg=30.0, scale_min=0.75)
  c.eval_every = 250
  c.checkpoint_every = 500
