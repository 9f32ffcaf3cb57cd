"""Speed of a whole-predictor ONNX file (`--format=onnx --image_size=480x640`) next to its
model folder's predictor.

Faces per second on one thread (pinned to one core, onnxruntime and XLA with one thread), in
one process, on `_settings.photo_with_face` (a 640×480 photo, a 200-pixel face box), at
batch 1 and batch 32 (the same photo and box 32 times): `load_predictor(FILE).predict_batch`
(onnxruntime: crop, network and mapping in one graph) and `load_predictor(folder)
.predict_batch` (host OpenCV crop, the folder's default network backend, mapping back).

    python -m lmjax.export --checkpoint=pretrained/bbfcn68 --format=onnx --image_size=480x640 \\
        --out=/tmp/bbfcn68.onnx
    python benchmarks/onnx_predictor_speed.py --file=/tmp/bbfcn68.onnx \\
        --checkpoint=pretrained/bbfcn68
"""

from __future__ import annotations

import argparse
import json

import _settings


def measure(path: str, checkpoint: str, repeats: int) -> dict[str, float]:
  """{row name: faces/s}."""
  import numpy as np

  from lmjax.inference import load_predictor

  photo, box = _settings.photo_with_face()
  folder = load_predictor(checkpoint)  # MCL: its default CPU backend (int8 with an int8.onnx)
  predictors = {
    'onnx file': load_predictor(path),
    f'folder ({getattr(folder, "backend", "xla")})': folder,
  }
  out: dict[str, float] = {}
  for n in (1, 32):
    images = [photo] * n
    boxes = np.repeat(np.asarray(box, np.float32)[None], n, axis=0)
    for name, predictor in predictors.items():
      out[f'{name}, batch {n}'] = _settings.rate(
        lambda p=predictor, i=images, b=boxes: p.predict_batch(i, b), n, repeats
      )
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--file', required=True, help='whole-predictor .onnx file')
  parser.add_argument('--checkpoint', required=True, help='its model folder')
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
      print(f'  {name:30s} {value:8.1f} faces/s')
  print(json.dumps(results))


if __name__ == '__main__':
  main()
