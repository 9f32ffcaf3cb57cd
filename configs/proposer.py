r"""Face-window proposer (ProposalNet, 12 × 12, P-Net-style): family of `configs/proposer5.py`.

  python -m lmjax.main --config=configs/proposer.py:data=synthetic,runlocal --workdir=runs/prop
Arguments: `data=mtfl|300w|synthetic|cofw` (default mtfl; the proposer ignores landmarks),
`runlocal` (shrink everything for a 2-core CPU).

The cascade scanner's first stage (`lmjax.models.proposal_net`) scans a 1.41-step image pyramid
at stride 2, so the face box of a scanned face is off any window by up to ~1.19 × in size and a
pixel in place, and real photos have rolled, blurred, grey and badly lit faces. It is trained
on the face classifier's data (`configs/facecls.py`: same faces, negative cache and window
samplers) at 12 × 12 with, per step, on device (`lmjax.facecls.proposer_data`):
  positives    IoU ≥ 0.65 with the face box: face label and box target
  part         IoU in [0.4, 0.65): box target only (MTCNN's part faces)
  partial      IoU in [0.05, 0.3): non-face (shifted, too small, too large)
  background   re-crops of the negative cache (12 px and up of 48-pixel cuts): non-face
every window turned by up to ± 30°, flipped, colour-jittered, sometimes grey or blurred. The
batch holds 40 % positives among the labelled windows: a proposer is tuned for recall (the
face classifier and BB-FCN's predictor reject what it lets through).
"""

import pathlib
import runpy
import types

facecls = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'facecls.py')))
common = facecls.common


def get_config(arg=None):
  """The config of argument string `arg` (see the module docstring)."""
  arg = common.parse_arg(arg, runlocal=False, data='mtfl')
  return proposer_config(arg.data, arg.runlocal)


def proposer_config(data: str, runlocal: bool):
  """Full proposer config on dataset `data`: the face classifier's, changed where it differs."""
  c = facecls.facecls_config(data, runlocal=False)
  c.experiment = 'proposer'
  c.model = dict(num_points=c.model.num_points, size=12, supersample=2, widths=(10, 16, 32))
  # Face regions at 3.2 × the box in 64 pixels (box ≈ 20 px, above the 12-pixel window).
  c.input.region_size = 64
  # Positives also cover the pyramid's quantisation (±19 % in size, ±1 px at 12 px: ±0.08).
  c.windows.pos_max_scale = 1.3
  c.windows.pos_max_shift = 0.15
  c.windows.part_min_iou = 0.4
  c.windows.part_max_scale = 1.6
  c.windows.part_max_shift = 0.35
  c.aug = dict(
    rotation_deg=30.0,
    flip_prob=0.5,
    brightness=40.0,
    contrast_min=0.6,
    contrast_max=1.4,
    gray_prob=0.2,
    blur_prob=0.3,
  )
  # Every MTFL photo with room gives up to 4 face-free windows (~19k), plus 4000 synthetic.
  c.negatives.update(from_photos=20_000, per_photo=4, synthetic=4000)
  c.negatives.size = 48
  c.negatives.min_crop = 0.25  # 12-48 px of the 48-pixel cuts: textures at many scales
  c.batch_size = 128
  c.batch = dict(positives=40, part=24, partial=24)  # the rest (40): background
  c.loss = dict(box_weight=0.5)  # MTCNN's P-Net weight of the box term
  c.optim = dict(
    optimizer='adamw',
    schedule='cosine',
    momentum=0.9,
    weight_decay=1e-4,
    decay_factor=0.1,
    clip_norm=0.0,
  )
  c.stages = dict(proposer=dict(steps=40_000, lr=3e-3, decay_every=40_000, warmup_steps=300))
  c.eval_batch_size = 1024
  if runlocal:
    c.batch_size = 64
    c.batch = dict(positives=20, part=12, partial=12)
    c.eval_batch_size = 256
    c.negatives.from_photos = 300
    c.negatives.synthetic = 200
    c.negatives.num_validation = 100
    c.stages.proposer.steps = 500
    c.stages.proposer.decay_every = 500
    c.stages.proposer.warmup_steps = 50
    c.validate_every = 100
    c.log_every = 50
    c.checkpoint_every = 100
  return c
