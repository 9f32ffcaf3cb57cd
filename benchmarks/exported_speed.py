"""Speed of an exported whole predictor (`lmjax.export --format=stablehlo|onnx|tflite`) next to
its model folder's predictor.

Faces per second on one thread (pinned to one core, XLA_FLAGS for one thread, onnxruntime with
one thread), in one process, on `_settings.photo_with_face` (a 640×480 photo, a 200-pixel face
box), at batch 1 and batch 32 (the same photo and box 32 times):

  * file: `load_predictor(FILE).predict_batch` (StableHLO: crop and network in one XLA program;
          ONNX: one onnxruntime graph; TFLite: the interpreter; export at `--image_size=480x640`
          or, for StableHLO, `any`);
  * stablehlo call: for a .stablehlo file also the bare `jax.export.deserialize(file).call`,
          jitted, on a stacked batch (no lmjax in the loop);
  * folder xla / folder default: `load_predictor(folder).predict_batch` with backend 'xla'
          and with the folder's default CPU backend ('int8' when it has an int8.onnx): the host
          OpenCV crop, the network, mapping back.

    python -m lmjax.export --checkpoint=pretrained/mcl68 --format=stablehlo \\
        --out=/tmp/mcl68.stablehlo
    taskset -c 1 python benchmarks/exported_speed.py --file=/tmp/mcl68.stablehlo \\
        --checkpoint=pretrained/mcl68
    python -m lmjax.export --checkpoint=pretrained/bbfcn68 --format=onnx --image_size=480x640 \\
        --out=/tmp/bbfcn68.onnx
    taskset -c 1 python benchmarks/exported_speed.py --file=/tmp/bbfcn68.onnx \\
        --checkpoint=pretrained/bbfcn68
"""

from __future__ import annotations

import argparse
import json

import _settings


def measure(path: str, checkpoint: str, repeats: int) -> dict[str, float]:
  """{row name: faces/s}."""
  import jax
  import numpy as np

  from lmjax.inference import load_predictor

  photo, box = _settings.photo_with_face()
  predictors = {
    'file': load_predictor(path),
    'folder xla': load_predictor(checkpoint, backend='xla'),
  }
  default = load_predictor(checkpoint)
  if getattr(default, 'backend', 'xla') != 'xla':
    predictors['folder default'] = default
  call = None
  if path.endswith('.stablehlo'):
    with open(path, 'rb') as f:
      call = jax.jit(jax.export.deserialize(bytearray(f.read())).call)
  out: dict[str, float] = {}
  for n in (1, 32):
    images = np.repeat(photo[None], n, axis=0)
    boxes = np.repeat(np.asarray(box, np.float32)[None], n, axis=0)
    if call is not None:
      out[f'stablehlo call, batch {n}'] = _settings.rate(
        lambda i=images, b=boxes: np.asarray(call(i, b)), n, repeats
      )
    for name, predictor in predictors.items():
      row = f'{name} ({getattr(predictor, "backend", "xla")}), batch {n}'
      out[row] = _settings.rate(
        lambda p=predictor, i=list(images), b=boxes: p.predict_batch(i, b), n, repeats
      )
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--file', required=True, help='exported .stablehlo, .onnx or .tflite file')
  parser.add_argument('--checkpoint', default='pretrained/mcl68', help='its model folder')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--child', default='')
  args = parser.parse_args()
  if args.child:
    _settings.pin_to_one_core(args.child)
    print(json.dumps(measure(args.file, args.checkpoint, args.repeats)))
    return
  forwarded = [f'--file={args.file}', f'--checkpoint={args.checkpoint}']
  results = _settings.run_children(
    __file__, 'cpu_1thread', [*forwarded, f'--repeats={args.repeats}']
  )
  for setting, rows in results.items():
    print(f'{setting}:')
    for name, value in rows.items():
      print(f'  {name:40s} {value:8.1f} faces/s')
  print(json.dumps(results))


if __name__ == '__main__':
  main()
