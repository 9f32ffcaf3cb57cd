"""Inference speed of BB-FCN in the constrained setting: milliseconds per face.

Each setting runs in its own subprocess (see `_settings.py`): cpu_1thread (one pinned core,
single-threaded XLA), cpu_all (every core), gpu (when the default backend is a GPU).

Rows (median over repeats of a timed loop with `block_until_ready`), per backend of
`BBFCNPredictor` (`lmjax.bbfcn.fast_path`): `xla` (the jitted flax pipeline), `onnx` (the float32
ONNX graph of the whole pipeline, onnxruntime) and `int8` (the model folder's `int8.onnx`, when
`--checkpoint` has one):

  * full pipeline:  `BBFCNPredictor.predict(image, box)` on a 640×480 photo with a ~200-pixel
                    face box: host crop at R, backbone on the S × S downsample, Ave{M, 13},
                    24 × 24 patches, K branches in one batched call, Ave{M_f, 13}, mapping back
                    to the photo (the paper's 9 ms CPU / 1.8 ms GPU for 5 points);
  * model:          the network part alone on ready crops (backbone + branches; XLA: the jitted
                    function on device arrays, ONNX: `predict_crops`);
  * backbone only:  XLA without the branches (the ablation);
  * compile:        XLA lower + compile of the batch-1 full model (seconds, reported separately);
  * CPU time:       cpu_1thread only: the CPU time (`time.process_time`) of one `predict`, per
                    backend: what the call costs its core, much less stretched than the wall-clock
                    rows when other processes share the core.

Batch-128 rows run 128 faces per call (`predict_batch`). Weights are a fresh initialisation
(speed does not depend on their values) unless `--checkpoint` names a BB-FCN model folder.

  python benchmarks/bbfcn_speed.py [--points 5|68] [--repeats 7] [--checkpoint pretrained/bbfcn5]

The last line printed is one JSON object. Its keys without a backend name are the default
backend's (`default_backend`, what `BBFCNPredictor(folder)` runs: `int8` where the folder has
an `int8.onnx` and the setting is a CPU one, else `xla`), except `..._backbone_ms_per_face_...`
(XLA); `bbfcn5_ms_per_face_1thread` is the full pipeline at batch 1 on one CPU thread (goal
≤ 2 ms). `bbfcn5_<backend>_ms_per_face_<setting>`, `..._model_ms_per_face_...` and
`..._cpu_ms_per_face_1thread` give every backend.
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


def _model_folder(directory: str, points: int) -> str:
  """Exports a freshly initialised BB-FCN for `points` landmarks; returns its path."""
  import pathlib
  import runpy

  from lmjax.bbfcn import train
  from lmjax.models import registry
  from lmjax.train import checkpoint

  bbfcn_config = runpy.run_path(
    str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'bbfcn.py')
  )['get_config']
  spec = train.model_spec(bbfcn_config(f'points={points},data=synthetic'), 'bbfcn')
  variables = registry.init(spec)
  path = os.path.join(directory, f'bbfcn{points}')
  checkpoint.export_model(path, variables, spec)
  return path


def cpu_ms_per_call(fn, repeats: int, budget_s: float = 1.0) -> float:
  """CPU milliseconds of one call: median over `repeats` loops of `time.process_time`.

  On a pinned single-threaded process this is the time the call ran on its core, which other
  processes sharing the core stretch far less than the wall time the rows measure.
  """
  fn()
  start = time.perf_counter()
  fn()
  calls = max(1, int(budget_s / repeats / max(time.perf_counter() - start, 1e-6)))
  samples = []
  for _ in range(repeats):
    start = time.process_time()
    for _ in range(calls):
      fn()
    samples.append((time.process_time() - start) / calls * 1000)
  return sorted(samples)[len(samples) // 2]


def _backend_rows(predictor, crop, photo, box, device, repeats: int) -> dict:
  """{(row, batch): faces/s} of one predictor (its `backend`); see the module docstring."""
  import jax
  import numpy as np

  rows = {}
  for batch in (1, BIG_BATCH):
    crops = np.repeat(crop[None], batch, axis=0)
    if predictor.backend == 'xla':
      crops = jax.device_put(crops, device)
      for name, refine in (('model', True), ('backbone only', False)):
        fwd = lambda r=refine, c=crops: jax.block_until_ready(
          predictor._forward[r](predictor.variables, c)
        )
        rows[name, batch] = measure_rate(fwd, batch, repeats)
    else:
      rows['model', batch] = measure_rate(
        lambda c=crops: predictor.predict_crops(c), batch, repeats
      )
  rows['full pipeline', 1] = measure_rate(lambda: predictor.predict(photo, box), 1, repeats)
  photos, boxes = [photo] * BIG_BATCH, [box] * BIG_BATCH
  rows['full pipeline', BIG_BATCH] = measure_rate(
    lambda: predictor.predict_batch(photos, boxes), BIG_BATCH, repeats, budget_s=3.0
  )
  return rows


def measure(setting: str, repeats: int, points: int, checkpoint: str | None) -> dict:
  """Runs inside the child process: every row for one setting."""
  pin_to_one_core(setting)
  import jax

  from lmjax.bbfcn import predictor as bbfcn_predictor
  from lmjax.bbfcn.predictor import BBFCNPredictor
  from lmjax.onnx_export.folder import INT8_FILE

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    predictor = BBFCNPredictor(checkpoint or _model_folder(tmp, points), backend='xla')
  if 'coarse' not in predictor.outputs:  # no branches
    raise SystemExit(f'--checkpoint: expected a BB-FCN model with branches, got {predictor.spec}')
  photo, box = photo_with_face()  # 640×480 with a 200-pixel synthetic face

  crop, _ = predictor.crop(photo, box)
  one = jax.device_put(crop[None], device)
  fn = bbfcn_predictor.predict_fn(predictor.model, predictor.spec, True)
  start = time.perf_counter()
  jax.jit(fn).lower(predictor.variables, one).compile()
  compile_s = time.perf_counter() - start
  backends = ['xla'] + (['onnx'] if device.platform == 'cpu' else [])
  if device.platform == 'cpu' and os.path.isfile(os.path.join(checkpoint or '', INT8_FILE)):
    backends.append('int8')
  rows, cpu_ms = {}, {}
  for backend in backends:
    p = BBFCNPredictor(checkpoint, backend=backend) if backend != 'xla' else predictor
    for (name, batch), rate in _backend_rows(p, crop, photo, box, device, repeats).items():
      rows[backend, name, batch] = rate
    if setting == 'cpu_1thread':
      cpu_ms[backend] = cpu_ms_per_call(lambda p=p: p.predict(photo, box), repeats)
  default = BBFCNPredictor(checkpoint).backend if checkpoint else 'xla'
  return {
    'device': f'{device.platform}: {device.device_kind}',
    'rows': [[backend, name, batch, rate] for (backend, name, batch), rate in rows.items()],
    'compile_s': compile_s,
    'cpu_ms': cpu_ms,
    'default_backend': default,
    'spec': predictor.spec,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--points', type=int, default=5, choices=(5, 68))
  parser.add_argument('--checkpoint', help='BB-FCN model folder (default: random weights)')
  parser.add_argument('--settings', default=','.join(SETTINGS))
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.child, args.repeats, args.points, args.checkpoint)))
    return

  child_args = [f'--repeats={args.repeats}', f'--points={args.points}']
  if args.checkpoint:
    child_args.append(f'--checkpoint={args.checkpoint}')
  results = run_children(__file__, args.settings, child_args)

  name = f'bbfcn{args.points}'
  print(f'BB-FCN ({args.points} points) constrained inference (median of {args.repeats} repeats)')
  print(
    f'{"setting":<12} {"device":<26} {"backend":<8} {"rows":<15} {"batch":>5} {"faces/s":>9} '
    f'{"ms/face":>8}'
  )
  for setting, out in results.items():
    for backend, row, batch, rate in out['rows']:
      print(
        f'{setting:<12} {out["device"][:26]:<26} {backend:<8} {row:<15} {batch:>5} '
        f'{rate:>9.1f} {1000 / rate:>8.3f}'
      )
    print(
      f'{setting:<12} {out["device"][:26]:<26} {"xla":<8} {"compile (b1)":<15} {"":>5} '
      f'{out["compile_s"]:>8.2f}s'
    )
    for backend, ms in out['cpu_ms'].items():
      print(f'{setting:<12} {"CPU time (process_time) of predict":<37} {backend:<8} {ms:>8.3f} ms')
  summary = {}
  keys = {
    ('full pipeline', 1): f'{name}_ms_per_face',
    ('model', 1): f'{name}_model_ms_per_face',
    ('backbone only', 1): f'{name}_backbone_ms_per_face',
    ('full pipeline', BIG_BATCH): f'{name}_ms_per_face_batch{BIG_BATCH}',
    ('model', BIG_BATCH): f'{name}_model_ms_per_face_batch{BIG_BATCH}',
  }
  suffix = {'cpu_1thread': '1thread', 'cpu_all': 'cpu_all', 'gpu': 'gpu'}
  for setting, out in results.items():
    for backend, row, batch, rate in out['rows']:
      if (row, batch) not in keys:
        continue
      ms = round(1000 / rate, 3)
      if backend == out['default_backend'] or row == 'backbone only':
        summary[f'{keys[row, batch]}_{suffix[setting]}'] = ms
      key = keys[row, batch].replace(name, f'{name}_{backend}', 1)
      summary[f'{key}_{suffix[setting]}'] = ms
    summary[f'{name}_compile_s_{suffix[setting]}'] = round(out['compile_s'], 2)
    summary[f'default_backend_{suffix[setting]}'] = out['default_backend']
    for backend, ms in out['cpu_ms'].items():
      summary[f'{name}_{backend}_cpu_ms_per_face_{suffix[setting]}'] = round(ms, 3)
      if backend == out['default_backend']:
        summary[f'{name}_cpu_ms_per_face_{suffix[setting]}'] = round(ms, 3)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
