"""Speed of the BB-FCN pyramid scanner on a 640×480 (VGA) image, and MTCNN as a peer.

Each setting runs in its own subprocess (see `_settings.py`): cpu_1thread, cpu_all, gpu (when
the default backend is a GPU). Rows, images/s (median over repeats, `block_until_ready`):

  * scan:          `Scanner.scan(image)`: the pyramid packed into tiles on the host, the
                   tile program (backbone, peaks, patches) per tile (8 on a GPU), the
                   candidates merged on the host, the detection program (NMS per type,
                   branches, face grouping) and the copies to and from the device;
  * backbone only: `scan` without the branch refinement;
  * compile:       the first scan (both programs compiled; reported separately, seconds).

L = 7 and L = 20 pyramid levels (paper: 30 FPS at L = 7 on a Titan X; our goal ≥ 300 images/s on
an H100). Weights are a fresh initialisation (the program has fixed shapes, so speed does not
depend on them) unless `--checkpoint` names a BB-FCN folder.

MTCNN (`pip install mtcnn`, which needs TensorFlow) is timed on the same image in its own
process when `--peer_python` (default: this interpreter) can import it; with
`--recall_images N` it also detects the first N scenes of a multi-face set (default the
embedded synthetic `scene5` test split; `--dataset composite_multiface --manual_dir DIR` for
real faces), and its 5 points are scored with the same recall@e% (top 30 per type) as the
scanner's, which runs on the same scenes.

  python benchmarks/scanner_speed.py [--checkpoint pretrained/bbfcn5] [--repeats 5]
      [--settings cpu_1thread,cpu_all,gpu] [--recall_images 50]

The last line printed is one JSON object (`scan_vga_l7_img_per_s_cpu_1thread`, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _settings import child_env, pin_to_one_core, run_children
from _settings import rate as measure_rate

SETTINGS = ('cpu_1thread', 'cpu_all', 'gpu')
LEVELS = (7, 20)
VGA = (480, 640)
MTCNN_KEYS = ('left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right')


def vga_scene(seed: int = 3):
  from lmjax import synthface

  return synthface.render_scene(seed, VGA, max_faces=5)['image']


def _load_base(checkpoint: str | None):
  import pathlib
  import runpy

  from lmjax.bbfcn import train
  from lmjax.models import registry
  from lmjax.scan.scanner import Scanner

  if checkpoint:
    return Scanner.load(checkpoint)
  bbfcn_config = runpy.run_path(
    str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'bbfcn.py')
  )['get_config']
  spec = train.model_spec(bbfcn_config('points=5,data=mtfl'), 'bbfcn')
  return Scanner(spec, registry.init(spec))


def measure(setting: str, repeats: int, checkpoint: str | None) -> dict:
  """Inside the child process: every row of one setting."""
  pin_to_one_core(setting)
  import jax
  import numpy as np

  from lmjax.scan.scanner import Scanner

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return {}
  base = _load_base(checkpoint)
  image = vga_scene()
  rows, compile_s = [], {}
  for levels in LEVELS:
    make = lambda refine, lv=levels: Scanner(base.spec, base.variables, levels=lv, refine=refine)
    sc = make(True)
    start = time.perf_counter()
    sc.scan(image)  # compiles the two programs (once for every image size)
    compile_s[levels] = time.perf_counter() - start
    budget = 2.0 if levels == 7 else 6.0
    rate = lambda fn, n=1, b=budget: measure_rate(fn, n, repeats, budget_s=b)
    rows.append([f'scan L={levels}', 1, rate(lambda s=sc: s.scan(image))])
    plain = make(False)
    rows.append([f'backbone only L={levels}', 1, rate(lambda s=plain: s.scan(image))])
  return {
    'device': f'{device.platform}: {device.device_kind}',
    'rows': rows,
    'compile_s': compile_s,
    'spec': base.spec,
    'faces_found': int(np.sum(sc.scan(image)['face_valid'])),
  }


# ------------------------------------------------------------------------- MTCNN (the peer)
def mtcnn_child(repeats: int, scenes_path: str | None, out_path: str | None) -> dict:
  """Inside the peer process: MTCNN on the VGA image (all cores), and on the scenes."""
  import numpy as np
  from mtcnn import MTCNN

  detector = MTCNN()
  image = np.load(os.path.join(os.path.dirname(scenes_path or out_path), 'vga.npy'))
  fps = measure_rate(lambda: detector.detect_faces(image), 1, repeats, budget_s=5.0)
  result = {'mtcnn_vga_img_per_s_cpu_all': fps}
  if scenes_path:
    stored = np.load(scenes_path)
    points, scores = [], []
    for name in sorted(stored.files):
      im = stored[name]
      faces = detector.detect_faces(im)
      points.append(np.array([[f['keypoints'][k] for k in MTCNN_KEYS] for f in faces], float))
      scores.append(np.array([f['confidence'] for f in faces], float))
    np.savez(out_path, points=np.array(points, object), scores=np.array(scores, object))
  return result


def _scenes(args, count: int):
  """(images, faces) of the first `count` scenes of the recall set."""
  from lmjax.data import datasets

  if args.dataset == 'synthetic':
    source = datasets.load('synthetic', 'test', config='scene5', data_dir=args.data_dir)
  else:
    source = datasets.load(args.dataset, args.split, manual_dir=args.manual_dir, config='mtfl')
  exs = [datasets.decode(source[i], 5) for i in range(min(count, len(source)))]
  return [e['image'] for e in exs], [e['faces'] for e in exs]


def _recall(points_per_image, scores_per_image, faces) -> dict:
  """recall@5/10/25 % per type (top 30) of (image → [F', 5, 2] points, [F'] scores)."""
  import numpy as np

  from lmjax.eval import multiface_metrics as mm
  from lmjax.eval import reports

  acc = mm.RecallAccumulator((30,))
  for pts, sc, gt in zip(points_per_image, scores_per_image, faces, strict=True):
    pts = np.asarray(pts, float).reshape(-1, 5, 2)[:30]
    sc = np.asarray(sc, float)[:30]
    det = np.zeros((5, 30, 2))
    det[:, : len(pts)] = pts.transpose(1, 0, 2)
    valid = np.zeros((5, 30), bool)
    valid[:, : len(pts)] = True
    score = np.zeros((5, 30))
    score[:, : len(sc)] = sc
    acc.add(det, score, gt['landmarks'], gt['bbox'], valid, gt['visible'])
  return reports.plain(acc.result(30))


def run_peer(args, images, faces) -> dict:
  """MTCNN speed (+ recall on `images`) through `--peer_python`; {} when it is unavailable."""
  import numpy as np

  probe = subprocess.run([args.peer_python, '-c', 'import mtcnn'], capture_output=True)
  if probe.returncode != 0:
    print('MTCNN: not importable by --peer_python; skipped (pip install mtcnn)', file=sys.stderr)
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    np.save(os.path.join(tmp, 'vga.npy'), vga_scene())
    scenes, preds = os.path.join(tmp, 'scenes.npz'), os.path.join(tmp, 'mtcnn.npz')
    np.savez(scenes, **{f'image_{i:05d}': im for i, im in enumerate(images)})
    cmd = [args.peer_python, __file__, '--child=mtcnn', f'--repeats={args.repeats}',
           f'--peer_io={scenes if images else ""},{preds}']  # fmt: skip
    proc = subprocess.run(cmd, env=child_env('cpu_all'), capture_output=True, text=True)
    if proc.returncode != 0:
      print(f'MTCNN failed:\n{proc.stderr[-3000:]}', file=sys.stderr)
      return {}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if images:
      got = np.load(preds, allow_pickle=True)
      out['recall'] = _recall(got['points'], got['scores'], faces)
  return out


def scanner_recall(args, images, faces) -> dict:
  """The scanner's recall (top 30 per type, L = 20) on the same scenes as MTCNN."""
  from lmjax.eval import multiface_metrics as mm
  from lmjax.eval import reports
  from lmjax.scan.scanner import Scanner

  sc = Scanner.load(args.checkpoint, levels=20)
  acc = mm.RecallAccumulator((30,))
  for im, gt in zip(images, faces, strict=True):
    o = sc.scan(im)
    acc.add(o['points'], o['score'], gt['landmarks'], gt['bbox'], o['valid'], gt['visible'])
  return reports.plain(acc.result(30))


def _print_table(results: dict) -> dict:
  """Prints the rows of every setting; returns the JSON figures (`scan_vga_l7_img_per_s_gpu`)."""
  print(f'{"setting":<12} {"device":<24} {"row":<24} {"batch":>5} {"img/s":>9} {"ms/img":>9}')
  summary = {}
  for setting, out in results.items():
    for row, batch, rate in out['rows']:
      dev = out['device'][:24]
      print(f'{setting:<12} {dev:<24} {row:<24} {batch:>5} {rate:>9.2f} {1000 / rate:>9.1f}')
      if row.startswith('scan L=') and batch == 1:
        summary[f'scan_vga_l{row[7:]}_img_per_s_{setting}'] = round(rate, 2)
    for levels, seconds in out['compile_s'].items():
      print(f'{setting:<12} {out["device"][:24]:<24} {f"compile L={levels}":<24} {"":>5} '
            f'{seconds:>8.2f}s')  # fmt: skip
      summary[f'scan_vga_l{levels}_compile_s_{setting}'] = round(seconds, 2)
  return summary


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--checkpoint', help='BB-FCN model folder (default: random weights)')
  parser.add_argument('--settings', default=','.join(SETTINGS), help="or 'none' (peer only)")
  parser.add_argument('--peer_python', default=sys.executable, help='python that has mtcnn')
  parser.add_argument('--recall_images', type=int, default=0, help='scenes for the recall')
  parser.add_argument('--dataset', default='synthetic', help='synthetic or composite_multiface')
  parser.add_argument('--manual_dir', help='source folder of composite_multiface')
  parser.add_argument('--split', default='validation')
  parser.add_argument('--data_dir', help='prepared datasets (default ~/.cache/lmjax/tfds)')
  parser.add_argument('--child', help=argparse.SUPPRESS)
  parser.add_argument('--peer_io', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child == 'mtcnn':
    scenes, out = args.peer_io.split(',')
    print(json.dumps(mtcnn_child(args.repeats, scenes or None, out)))
    return
  if args.child:
    print(json.dumps(measure(args.child, args.repeats, args.checkpoint)))
    return

  child_args = [f'--repeats={args.repeats}']
  if args.checkpoint:
    child_args.append(f'--checkpoint={args.checkpoint}')
  results = {} if args.settings == 'none' else run_children(__file__, args.settings, child_args)
  print(f'BB-FCN pyramid scanner on a 640×480 image (median of {args.repeats} repeats)')
  summary = _print_table(results)
  images, faces = _scenes(args, args.recall_images) if args.recall_images else ([], [])
  peer = run_peer(args, images, faces)
  if peer:
    fps = peer['mtcnn_vga_img_per_s_cpu_all']
    print(f'{"cpu_all":<12} {"MTCNN (TensorFlow)":<24} {"detect_faces":<24} {1:>5} {fps:>9.2f} '
          f'{1000 / fps:>9.1f}')  # fmt: skip
    summary['mtcnn_vga_img_per_s_cpu_all'] = round(fps, 2)
  if images:
    if not args.checkpoint:
      raise SystemExit('--recall_images needs --checkpoint (a trained BB-FCN)')
    ours = scanner_recall(args, images, faces)
    print(f'recall (top 30 per type) on {len(images)} {args.dataset} scenes, mean over types:')
    for name, r in (('BB-FCN scanner L=20', ours), ('MTCNN', peer.get('recall'))):
      if r:
        at = '  '.join(f'@{e}% {100 * r[f"mean_recall_{e}"]:5.1f}' for e in (5, 10, 25))
        per_type = ' '.join(f'{100 * v:5.1f}' for v in r['recall_10'])
        print(f'  {name:<20} {at}   @10% per type (LE RE N LM RM): {per_type}')
        key = 'scan' if name.startswith('BB') else 'mtcnn'
        summary[f'{key}_recall10_m30'] = round(100 * r['mean_recall_10'], 2)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
