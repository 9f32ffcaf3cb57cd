"""Inference speed of MCL68 (D = 1024, 50×50 grey input): faces per second, with dlib as peer.

Each setting runs in its own subprocess so that thread settings take effect before JAX starts:

  * cpu_1thread: pinned to one core (sched_setaffinity; run the script under `taskset -c N` to
                 choose the core), XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
                 intra_op_parallelism_threads=1", onnxruntime with one thread;
  * cpu_all:     every core of this machine;
  * gpu:         the default JAX backend, when it is a GPU (xla rows only; skipped otherwise).

Rows (median over repeats, each repeat timing a loop of calls), per `FacePredictor` backend
(`lmjax.mcl.predictor`: xla = the jitted flax model, onnx = its float32 ONNX graph in
onnxruntime, int8 = the model folder's int8.onnx):

  * model:            the network alone on ready crops (xla also with BatchNorm kept);
  * crop + model:     `FacePredictor.predict(image, box)`: a 640×480 photo with a ~200-pixel
                      face box, the host crop (`mcl_crop`), the network, mapping back;
  * dlib ERT 68:      dlib's 68-point shape predictor (`face_recognition_models`' model) on the
                      same photo and box, RGB and grey input: the tool people use instead,
                      measured in the same process (skipped when dlib is not installed:
                      `pip install dlib-bin face-recognition-models`; its model is for
                      non-commercial use, so it is a benchmark peer only, never a dependency);
  * stablehlo crop + model: the whole predictor exported with `jax.export` (`python -m
                      lmjax.export --format=stablehlo`: crop, network and mapping back in one
                      XLA program, `lmjax.hlo_export`), deserialised and called on the photo
                      and box; by default the model folder exported in memory (symbolic N, H,
                      W), `--stablehlo=FILE` times a written file instead (`--padded` files
                      get the sizes input);
  * compile:          lower + compile of the batch-1 xla forward (seconds, reported separately).

The batch-128 rows run the same calls on 128 faces at once (`predict_batch` for crop + model).
The model is `--checkpoint` (default pretrained/mcl68, whose int8.onnx gives the int8 rows);
`--checkpoint=random` is a fresh initialisation with non-trivial BatchNorm statistics (speed
does not depend on the values; no int8 rows). Run:

  taskset -c 1 python benchmarks/mcl_speed.py [--repeats 7] [--checkpoint pretrained/mcl68]

The last line printed is one JSON object: `mcl68_faces_per_s_1thread` is the crop + model
figure at batch 1 on one CPU thread of the default backend ('auto': int8 where the folder has
it), `mcl68_<backend>_faces_per_s_1thread` each backend's, `dlib68_faces_per_s_1thread` dlib's
(RGB input, as the issue measured it), `mcl68_stablehlo_faces_per_s[_batch128]_<setting>` the
exported predictor's and `mcl68_stablehlo_over_xla[_batch128]_<setting>` its ratio to the xla
crop + model row of the same run: timings on a shared machine vary 1.5-2x between runs, the
ratio much less. (`benchmarks/exported_speed.py` times the export of any folder, BB-FCN too.)
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


def _dlib_rates(photo, box, repeats: int) -> dict:
  """dlib's 68-point ERT on the photo and box, RGB and grey: {row: faces/s}; {} without dlib."""
  try:
    import dlib
    import face_recognition_models
  except ImportError:
    return {}
  import cv2

  predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
  rect = dlib.rectangle(*(round(float(v)) for v in box))
  grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
  return {
    ('dlib ERT 68 (RGB)', 1): measure_rate(lambda: predictor(photo, rect), 1, repeats),
    ('dlib ERT 68 (grey)', 1): measure_rate(lambda: predictor(grey, rect), 1, repeats),
  }


def _stablehlo_call(predictor, path: str):
  """`fn(images [N, H, W, 3], boxes [N, 4]) -> points` of the predictor exported with
  jax.export (serialised and read back, as a file would be), or of the file `path`."""
  import jax
  import numpy as np

  if path:
    with open(path, 'rb') as f:
      data = bytearray(f.read())
  else:
    from lmjax.hlo_export import stablehlo

    function = stablehlo.predictor_function(predictor)
    data = stablehlo.export_function(function, None).serialize()
  exported = jax.export.deserialize(data)
  call = jax.jit(exported.call)
  if len(exported.in_avals) == 3:  # a --padded file: the pictures are the whole images
    sizes = lambda images: np.tile(np.int32(images.shape[1:3]), (len(images), 1))
    return lambda images, boxes: np.asarray(call(images, boxes, sizes(images)))
  return lambda images, boxes: np.asarray(call(images, boxes))


def measure(setting: str, repeats: int, checkpoint: str, stablehlo_file: str = '') -> dict:
  """Runs inside the child process: every row for one setting."""
  pin_to_one_core(setting)
  import jax
  import numpy as np

  from lmjax.mcl.predictor import FacePredictor

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    folder = _model_folder(tmp) if checkpoint == 'random' else checkpoint
    backends = ['xla'] if setting == 'gpu' else ['xla', 'onnx']
    if setting != 'gpu' and os.path.isfile(os.path.join(folder, 'int8.onnx')):
      backends.append('int8')
    predictors = {b: FacePredictor(folder, backend=b) for b in backends}
    full = FacePredictor(folder, fold_bn=False, backend='xla')
    default = FacePredictor(folder).backend
  lean = predictors['xla']
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
    crops = np.repeat(crop[None], batch, axis=0)
    on_device = jax.device_put(crops, device)
    fwd = lambda c=on_device: full._forward(full.variables, c).block_until_ready()
    rows[('xla model, BN kept', batch)] = measure_rate(fwd, batch, repeats)
    for name, predictor in predictors.items():
      if name == 'xla':
        fwd = lambda c=on_device: lean._forward(lean.variables, c).block_until_ready()
      else:
        fwd = lambda p=predictor, c=crops: p.predict_crops(c)
      rows[(f'{name} model', batch)] = measure_rate(fwd, batch, repeats)
  photos, boxes = [photo] * BIG_BATCH, [box] * BIG_BATCH
  exported = _stablehlo_call(lean, stablehlo_file)
  for batch in (1, BIG_BATCH):
    images = np.repeat(photo[None], batch, axis=0)
    corners = np.repeat(np.asarray(box, np.float32)[None], batch, axis=0)
    rows[('stablehlo crop + model', batch)] = measure_rate(
      lambda i=images, b=corners: exported(i, b), batch, repeats, budget_s=3.0 if batch > 1 else 1.0
    )
  for name, predictor in predictors.items():
    rows[(f'{name} crop + model', 1)] = measure_rate(
      lambda p=predictor: p.predict(photo, box), 1, repeats
    )
    rows[(f'{name} crop + model', BIG_BATCH)] = measure_rate(
      lambda p=predictor: p.predict_batch(photos, boxes), BIG_BATCH, repeats, budget_s=3.0
    )
  if setting != 'gpu':
    rows.update(_dlib_rates(photo, box, repeats))

  return {
    'device': f'{device.platform}: {device.device_kind}',
    'rows': [[name, batch, rate] for (name, batch), rate in rows.items()],
    'compile_s': compile_s,
    'default_backend': default,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument(
    '--checkpoint',
    default='pretrained/mcl68',
    help='68-point MCL model folder, or "random" for fresh weights (default pretrained/mcl68)',
  )
  parser.add_argument('--settings', default=','.join(SETTINGS))
  parser.add_argument(
    '--stablehlo', default='', help='an exported .stablehlo of --checkpoint to time (default: '
    'the folder exported in memory)'
  )  # fmt: skip
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.child, args.repeats, args.checkpoint, args.stablehlo)))
    return

  child_args = [
    f'--repeats={args.repeats}', f'--checkpoint={args.checkpoint}', f'--stablehlo={args.stablehlo}'
  ]  # fmt: skip
  results = run_children(__file__, args.settings, child_args)

  print(f'MCL68 inference, faces/s (median of {args.repeats} repeats)')
  print(f'{"setting":<12} {"device":<26} {"rows":<24} {"batch":>5} {"faces/s":>9} {"ms/face":>8}')
  for setting, out in results.items():
    for name, batch, rate in out['rows']:
      print(
        f'{setting:<12} {out["device"][:26]:<26} {name:<24} {batch:>5} {rate:>9.1f} '
        f'{1000 / rate:>8.3f}'
      )
    print(
      f'{setting:<12} {out["device"][:26]:<26} {"compile (batch 1)":<24} {"":>5} '
      f'{out["compile_s"]:>8.2f}s'
    )

  summary = {}
  suffix = {'cpu_1thread': '1thread', 'cpu_all': 'cpu_all', 'gpu': 'gpu'}
  for setting, out in results.items():
    rates = {(name, batch): rate for name, batch, rate in out['rows']}
    tag = suffix[setting]
    for backend in ('xla', 'onnx', 'int8'):
      for what, key in (('crop + model', 'faces_per_s'), ('model', 'model_faces_per_s')):
        for batch, more in ((1, ''), (BIG_BATCH, f'_batch{BIG_BATCH}')):
          if (f'{backend} {what}', batch) in rates:
            rate = rates[f'{backend} {what}', batch]
            summary[f'mcl68_{backend}_{key}{more}_{tag}'] = round(rate, 1)
    for batch, more in ((1, ''), (BIG_BATCH, f'_batch{BIG_BATCH}')):
      if ('stablehlo crop + model', batch) in rates:
        rate = rates['stablehlo crop + model', batch]
        summary[f'mcl68_stablehlo_faces_per_s{more}_{tag}'] = round(rate, 1)
        ratio = rate / rates['xla crop + model', batch]
        summary[f'mcl68_stablehlo_over_xla{more}_{tag}'] = round(ratio, 3)
    default = out['default_backend']
    summary[f'mcl68_faces_per_s_{tag}'] = summary[f'mcl68_{default}_faces_per_s_{tag}']
    summary[f'mcl68_default_backend_{tag}'] = default
    if ('dlib ERT 68 (RGB)', 1) in rates:
      summary[f'dlib68_faces_per_s_{tag}'] = round(rates['dlib ERT 68 (RGB)', 1], 1)
      summary[f'dlib68_grey_faces_per_s_{tag}'] = round(rates['dlib ERT 68 (grey)', 1], 1)
    summary[f'mcl68_compile_s_{tag}'] = round(out['compile_s'], 2)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
