"""Head-pose accuracy on rendered faces with known pose (`lmjax.core.head_pose`).

Faces from the synthetic renderer (`lmjax.synthface`: identity, expression, occluders and
camera effects, poses with |yaw| <= 45, |pitch| <= 25, |roll| <= 35 degrees) carry the exact
yaw, pitch and roll they were drawn with. The pose is estimated from:

  * gt 68 / gt 5:   the exact landmarks (68 points; the 5 derived ones): the error of the
                    mean-face fit alone (identity and expression differ from the mean face);
  * <model>:        the landmarks a model folder predicts from the tight landmark box
                    (default pretrained/mcl68, trained on 300-W photos: rendered faces are
                    another domain, so this row includes its landmark errors there).

Mean absolute error in degrees per angle, overall and per |yaw| bin, and the time of one pose
fit. Run:

  python benchmarks/head_pose.py [--faces 600] [--checkpoint pretrained/mcl68]

The last line printed is one JSON object (`head_pose_<source>_mae_<angle>_deg`,
`head_pose_fit_ms`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lmjax.core import head_pose, landmarks
from lmjax.synthface import render_face_example

YAW_BINS = ((0, 15), (15, 30), (30, 46))  # |yaw| in degrees
SEED_OFFSET = 10_000  # faces not used by the unit tests


def _errors(estimate: np.ndarray, truth: np.ndarray, yaw: np.ndarray) -> dict[str, list]:
  error = np.abs(estimate - truth)
  rows = {'all': error.mean(0).tolist()}
  for lo, hi in YAW_BINS:
    inside = (np.abs(yaw) >= lo) & (np.abs(yaw) < hi)
    rows[f'|yaw| {lo}-{min(hi, 45)}'] = error[inside].mean(0).tolist() if inside.any() else None
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--faces', type=int, default=600)
  parser.add_argument('--checkpoint', default='pretrained/mcl68')
  args = parser.parse_args()

  examples = [render_face_example(SEED_OFFSET + i) for i in range(args.faces)]
  truth = np.stack([e['pose'] for e in examples]).astype(np.float64)
  gt68 = np.stack([e['landmarks'] for e in examples])
  sources = {
    'gt 68': (gt68, landmarks.IBUG68),
    'gt 5': (landmarks.five_from_68(gt68), landmarks.FIVE),
  }
  if args.checkpoint:
    from lmjax.inference import load_predictor

    predictor = load_predictor(args.checkpoint)
    images = [e['image'] for e in examples]
    boxes = [e['bbox'] for e in examples]
    sources[args.checkpoint.rstrip('/').split('/')[-1]] = (
      predictor.predict_batch(images, boxes),
      predictor.schema,
    )

  results, fit_ms = {}, None
  for name, (points, schema) in sources.items():
    start = time.perf_counter()
    estimate = head_pose.head_pose(points, schema)
    if name == 'gt 68':
      fit_ms = (time.perf_counter() - start) / len(points) * 1e3
    results[name] = _errors(estimate, truth, truth[:, 0])

  counts = {f'{lo}-{min(hi, 45)}': int(((abs(truth[:, 0]) >= lo) & (abs(truth[:, 0]) < hi)).sum())
            for lo, hi in YAW_BINS}  # fmt: skip
  print(f'{args.faces} rendered faces; faces per |yaw| bin: {counts}')
  print(f'{"source":<10} {"subset":<12} {"yaw":>6} {"pitch":>6} {"roll":>6}   (MAE, degrees)')
  for name, rows in results.items():
    for subset, values in rows.items():
      cells = ' '.join(f'{v:6.2f}' for v in values) if values else '     -'
      print(f'{name:<10} {subset:<12} {cells}')
  print(f'pose fit: {fit_ms:.3f} ms per 68-point face')
  summary = {'head_pose_faces': args.faces, 'head_pose_fit_ms': round(fit_ms, 4)}
  for name, rows in results.items():
    key = name.replace(' ', '')
    for angle, value in zip(head_pose.ANGLES, rows['all'], strict=True):
      summary[f'head_pose_{key}_mae_{angle}_deg'] = round(value, 3)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
