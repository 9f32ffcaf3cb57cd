"""Inference speed of MCL68 (D = 1024, 50×50 grey input): faces per second.

Each setting runs in its own subprocess so that thread settings take effect before JAX starts:

  * cpu_1thread: JAX on CPU pinned to one core (sched_setaffinity) with
                 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1";
  * cpu_all:     JAX on CPU with every core of this machine;
  * gpu:         the default JAX backend, when it is a GPU (skipped otherwise).

Rows (median over repeats, each repeat timing a loop of calls with `block_until_ready`):

  * model, BN kept:   the flax module as trained (`MCL.apply`, eval mode) on ready crops;
  * model, BN folded: what `FacePredictor` runs (`fold_batch_norm`, conv + ReLU only);
  * crop + model:     `FacePredictor.predict(image, box)`: a 640×480 photo with a ~200-pixel
                      face box, the host crop (`mcl_crop`), transfer, forward, mapping back;
  * compile:          lower + compile of the batch-1 forward (seconds, reported separately).

The batch-128 rows run the same calls on 128 faces at once (`predict_batch` for crop + model).
Weights are a fresh initialisation with non-trivial BatchNorm statistics (speed does not
depend on their values) unless `--checkpoint` names a model folder. Run:

  python benchmarks/mcl_speed.py [--repeats 7] [--checkpoint pretrained/mcl68]

The last line printed is one JSON object; `mcl68_faces_per_s_1thread` is the crop + model
figure at batch 1 on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _settings import photo_with_face, pin_to_one_core, run_children
from _settings import rate as measure_rate

SETTINGS = ('cpu_1thread', 'cpu_all', 'gpu')
BIG_BATCH = 128


def _model_folder(directory: str) -> str:
  """Exports a freshly initialised MCL68 with random BatchNorm statistics; returns its path."""
  import pathlib
  import runpy

  import jax
  import jax.numpy as jnp

  from lmjax.mcl import train as mcl_train
  from lmjax.models import registry
  from lmjax.train import checkpoint

  mcl_config = runpy.run_path(
    str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'mcl.py')
  )['get_config']
  spec = mcl_train.model_spec(mcl_config('points=68,data=synthetic'), 1)
  model = registry.build(spec)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 50, 50, 1)), train=False))(
    jax.random.key(0)
  )
  keys = iter(jax.random.split(jax.random.key(1), 100))
  stats = jax.tree_util.tree_map(
    lambda a: jax.random.uniform(next(keys), a.shape, minval=0.1, maxval=2.0),
    variables['batch_stats'],
  )
  path = os.path.join(directory, 'mcl68')
  checkpoint.export_model(path, {'params': variables['params'], 'batch_stats': stats}, spec)
  return path


def measure(setting: str, repeats: int, checkpoint: str | None) -> dict:
  """Runs inside the child process: every row for one setting."""
  pin_to_one_core(setting)
  import jax
  import numpy as np

  from lmjax.mcl.predictor import FacePredictor

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    folder = checkpoint or _model_folder(tmp)
    lean = FacePredictor(folder)  # BatchNorm folded
    full = FacePredictor(folder, fold_bn=False)
  if lean.spec['num_points'] != 68:
    raise SystemExit(f'--checkpoint: expected a 68-point MCL model folder, got {lean.spec}')

  photo, box = photo_with_face()  # 640×480 with a 200-pixel synthetic face

  rows = {}
  crop, _ = lean.crop(photo, box)
  one = jax.device_put(crop[None], device)
  start = time.perf_counter()  # before any forward pass of this process has been compiled
  jax.jit(lambda v, x: lean.model.apply(v, x, train=False)).lower(lean.variables, one).compile()
  compile_s = time.perf_counter() - start
  for batch in (1, BIG_BATCH):
    crops = jax.device_put(np.repeat(crop[None], batch, axis=0), device)
    for name, predictor in (('model, BN kept', full), ('model, BN folded', lean)):
      fwd = lambda p=predictor, c=crops: p._forward(p.variables, c).block_until_ready()
      rows[(name, batch)] = measure_rate(fwd, batch, repeats)
  rows[('crop + model', 1)] = measure_rate(lambda: lean.predict(photo, box), 1, repeats)
  photos, boxes = [photo] * BIG_BATCH, [box] * BIG_BATCH
  rows[('crop + model', BIG_BATCH)] = measure_rate(
    lambda: lean.predict_batch(photos, boxes), BIG_BATCH, repeats, budget_s=3.0
  )

  return {
    'device': f'{device.platform}: {device.device_kind}',
    'rows': [[name, batch, rate] for (name, batch), rate in rows.items()],
    'compile_s': compile_s,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--checkpoint', help='68-point MCL model folder (default: random weights)')
  parser.add_argument('--settings', default=','.join(SETTINGS))
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.child, args.repeats, args.checkpoint)))
    return

  child_args = [f'--repeats={args.repeats}']
  if args.checkpoint:
    child_args.append(f'--checkpoint={args.checkpoint}')
  results = run_children(__file__, args.settings, child_args)

  print(f'MCL68 inference, faces/s (median of {args.repeats} repeats)')
  print(f'{"setting":<12} {"device":<26} {"rows":<18} {"batch":>5} {"faces/s":>9} {"ms/face":>8}')
  for setting, out in results.items():
    for name, batch, rate in out['rows']:
      print(
        f'{setting:<12} {out["device"][:26]:<26} {name:<18} {batch:>5} {rate:>9.1f} '
        f'{1000 / rate:>8.3f}'
      )
    print(
      f'{setting:<12} {out["device"][:26]:<26} {"compile (batch 1)":<18} {"":>5} '
      f'{out["compile_s"]:>8.2f}s'
    )

  summary = {}
  keys = {
    ('crop + model', 1): 'mcl68_faces_per_s',
    ('model, BN folded', 1): 'mcl68_model_faces_per_s',
    ('model, BN kept', 1): 'mcl68_model_bn_kept_faces_per_s',
    ('crop + model', BIG_BATCH): f'mcl68_faces_per_s_batch{BIG_BATCH}',
    ('model, BN folded', BIG_BATCH): f'mcl68_model_faces_per_s_batch{BIG_BATCH}',
  }
  suffix = {'cpu_1thread': '1thread', 'cpu_all': 'cpu_all', 'gpu': 'gpu'}
  for setting, out in results.items():
    for name, batch, rate in out['rows']:
      if (name, batch) in keys:
        summary[f'{keys[name, batch]}_{suffix[setting]}'] = round(rate, 1)
    summary[f'mcl68_compile_s_{suffix[setting]}'] = round(out['compile_s'], 2)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
