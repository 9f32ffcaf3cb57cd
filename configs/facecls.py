r"""Face / non-face classifier (FaceNet, 24 × 24; BB-FCN §IV-F): family of `configs/facecls5.py`.

  python -m lmjax.main --config=configs/facecls.py:data=synthetic,runlocal --workdir=runs/facecls
Arguments: `data=mtfl|300w|synthetic|cofw` (default mtfl; the model has the dataset's landmark
count, which the classifier ignores), `runlocal` (shrink everything for a 2-core CPU).

The BB-FCN paper re-scores its face proposals with cascade CNN's Net-12; this trains
`lmjax.models.facenet.FaceNet` on 24 × 24 crops of the same faces and the same negative cache as
BB-FCN (`lmjax.data.negatives.build_negative_cache`). Per step, on device:
  positives    square windows with IoU ≥ `windows.pos_min_iou` (0.65) to the face box
  partial      windows of the face regions with IoU in [neg_min_iou, neg_max_iou) = [0.05, 0.3):
               shifted, too small or too large (what wrong landmark proposals look like)
  background   re-crops of the negative cache (photo windows away from faces, clutter)
Windows with IoU in [0.3, 0.65) are never shown (neither label fits them).
"""

import pathlib
import runpy
import types

import ml_collections

common = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'common.py')))


def get_config(arg=None):
  """The config of argument string `arg` (see the module docstring)."""
  arg = common.parse_arg(arg, runlocal=False, data='mtfl')
  return facecls_config(arg.data, arg.runlocal)


def facecls_config(data: str, runlocal: bool) -> ml_collections.ConfigDict:
  """Full face-classifier config on dataset `data`."""
  if data not in common.POINTS:
    raise ValueError(f'unknown data={data!r}; known: {sorted(common.POINTS)}')
  num_points = min(common.POINTS[data])  # the classifier ignores landmarks: the fewest will do
  c = ml_collections.ConfigDict()
  c.experiment = 'facecls'
  c.seed = 0
  # A model folder (e.g. pretrained/<name>) the first stage starts from: leaves matched by name
  # and shape (lmjax.train.warm_start); '' starts from scratch.
  c.init_from = ''
  # JAX CPU devices the batch is split over (CPU only). 1 (default) is the safe layout; 0 = one
  # per core is 1.3x faster but experimental: XLA's in-process CPU collectives deadlocked once
  # (lmjax.data.batching.cpu_device_count).
  c.cpu_devices = 1
  # size: the crop side; supersample: grid points per crop pixel and axis (anti-aliasing).
  c.model = dict(num_points=num_points, size=24, supersample=2, widths=(16, 32, 64), hidden=64)
  c.data = common.data_config(data, num_points)  # the MCL / BB-FCN configs' validation faces
  # Face regions cached once at 3.2 × the box (room for the too-large and shifted negatives;
  # the box is then 35 pixels, above the 24-pixel crop).
  c.input = dict(
    region_size=112,
    region_scale=3.2,
    grayscale=False,
    jpeg_variants=0,
    jpeg_prob=0.0,
    jpeg_quality_min=30,
    jpeg_quality_max=90,
  )
  # Positive squares: side max(w, h) × s, s log-uniform in 1/pos_max_scale..pos_max_scale,
  # centre shifted by ≤ pos_max_shift × side; `tries` candidates per window (rejection).
  c.windows = dict(
    pos_min_iou=0.65,
    pos_max_scale=1.25,
    pos_max_shift=0.15,
    neg_min_iou=0.05,
    neg_max_iou=0.3,
    tries=16,
  )
  c.aug = dict(
    rotation_deg=10.0,
    flip_prob=0.5,
    brightness=25.6,
    contrast_min=0.8,
    contrast_max=1.2,
    gray_prob=0.1,
  )
  # The BB-FCN negative cache, cut at `size` pixels; each step re-crops a square of
  # min_crop..1 × its side.
  c.negatives = dict(
    from_photos=6000,
    per_photo=2,
    min_side_frac=0.1,
    synthetic=2000,
    num_validation=500,
    size=64,
    min_crop=0.5,
  )
  # Per step: `positives` face windows, `partial` partial-face windows, the rest background.
  c.batch_size = 128
  c.batch = dict(positives=48, partial=40)
  c.eval_batch_size = 512
  c.optim = dict(momentum=0.9, weight_decay=5e-4, decay_factor=0.1, clip_norm=0.0)
  c.stages = dict(facecls=dict(steps=40_000, lr=0.01, decay_every=25_000))
  c.validate_every = 1_000
  c.log_every = 100
  c.checkpoint_every = 2_000
  if runlocal:
    c.batch_size = 64
    c.batch.positives = 24
    c.batch.partial = 20
    c.eval_batch_size = 256
    c.negatives.from_photos = 300
    c.negatives.synthetic = 200
    c.negatives.num_validation = 100
    c.stages.facecls.steps = 500
    c.stages.facecls.decay_every = 400
    c.validate_every = 100
    c.log_every = 50
    c.checkpoint_every = 100
  return c
