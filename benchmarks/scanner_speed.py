"""Speed of the BB-FCN scanner (both modes) against MTCNN at equal reach, on VGA and on photos.

Each setting runs in its own subprocess (see `_settings.py`): cpu_1thread, cpu_all, gpu (when
the default backend is a GPU). Both detectors look for faces down to `min_face` = 20, 40 and
80 pixels (the scanner's depth is `pyramid.levels_for_min_face`, MTCNN's `min_face_size`),
on a 640×480 (VGA) scene and on a folder of 8 images from 393×524 to 2592×3872 (synthetic
scenes resized to the sizes of a real photo collection). Rows:

  * scan min_face=m:  images/s (median over repeats) of `Scanner.scan(image)`: the pyramid
                      packed into tiles on the host, the tile program (backbone, peaks,
                      patches) per tile (8 on a GPU), the candidates merged on the host, the
                      detection program (NMS per type, branches, face grouping) and the copies
                      to and from the device;
  * backbone only:    `scan` without the branch refinement;
  * cascade min_face=m: images/s of the cascade mode (`lmjax.scan.cascade`: ProposalNet
                      proposals, face-classifier re-scoring, BB-FCN int8 per box) of
                      `--checkpoint` (default `pretrained/bbfcn5`) with its default proposer
                      and classifier folders (skipped, with a message, when they are missing);
                      on the folder too, timed interleaved with the pyramid scan;
  * folder min_face=40: seconds per image over one pass of the folder (after one warm-up;
                      cpu_all and gpu only);
  * stablehlo scan min_face=40: the same scan exported at the VGA canvas (`python -m
                      lmjax.export --scanner`, `lmjax.hlo_export.scan_graph`: pyramid resize,
                      tiles, both programs and the merge in one XLA program), read back and
                      called on the image (and its first call, compile included);
  * first scan:       seconds of the first VGA scan (both programs compiled; the persistent
                      compilation cache is off in the benchmark);
  * step S tile T:    with `--variants S:T,...`, the same scan with `scale_step` S and `tile`
                      T (0: the default tile), timed interleaved with the default scanner (one
                      scan of each in turn per repeat, so a busy machine slows both alike; the
                      min–max over repeats is printed as the noise), also on the folder; their
                      JSON keys end in `_step{S}_tile{T}`.

Weights are a fresh initialisation (speed does not depend on them) unless `--checkpoint` names
a BB-FCN folder. MTCNN (`pip install mtcnn`, which needs TensorFlow) is timed on the same
image and folder in its own process (all cores) when `--peer_python` (default: this
interpreter) can import it; otherwise the benchmark says so and prints the scanner's figures.
With `--recall_images N` MTCNN (min_face 20) and the scanner (L = 20) also detect the first N
scenes of a multi-face set (default the embedded synthetic `scene5` test split; `--dataset
composite_multiface --manual_dir DIR` for real faces), scored with the same recall@e% (top 30
per type); each variant at the depth whose top level reaches at least L = 20's. Then a table
puts, for the pyramid, the cascade and MTCNN at every `min_face`, the landmark recall @10 / @5 %
and the face proposal recall @3 / @20 on those scenes next to their cpu_all speed
(`benchmarks/_scan_recall.py`; MTCNN's boxes in its own convention against the MTFL rule's).
`--real_photos N --real_dir DIR/300w` adds the same for the first N held-out 300-W photos (the
validation faces `lmjax.main` holds out of train, at their stored size, 68 points reduced to 5;
only the annotated face of a photo counts) at `min_face` 20.

MTCNN (mtcnn 1.0.0) is run with its P-Net pyramid corrected (`_mtcnn_scales`): the package
counts its levels as if the first scale were 1, so with a `min_face_size` well above 12 its
smallest levels fall under 12 px, P-Net fails on them and `detect_faces` returns no face at all
(every VGA scene at 40 and 80); its figures at 40 / 80 before this fix timed that failure.

  python benchmarks/scanner_speed.py [--checkpoint pretrained/bbfcn5] [--repeats 5]
      [--settings cpu_1thread,cpu_all,gpu] [--recall_images 50] [--variants 1.41:0,1.41:512]

The last line printed is one JSON object: `scan_vga_min40_img_per_s_cpu_all`,
`mtcnn_vga_min40_img_per_s_cpu_all` (and min20 / min80), `stablehlo_scan_vga_min40_img_per_s_..`
(and `_first_s_..`), `scan_folder_min40_s_per_img_cpu_all`,
`mtcnn_folder_min40_s_per_img_cpu_all`, the same speed keys with `pyramid_` and `cascade_` in
place of `scan_` (the `scan_` keys are the mode of `--scan_mode`, default
`lmjax.scan.modes.DEFAULT_MODE`), and with the recall sets `scenes_{mode}_min{m}_recall10`
(and `_recall5`, `_proposals3`, `_proposals20`), `real300w_{mode}_min20_...`, ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _scan_recall import TOP, Scores, real_photos
from _settings import child_env, pin_to_one_core, run_children
from _settings import rate as measure_rate

SETTINGS = ('cpu_1thread', 'cpu_all', 'gpu')
MIN_FACES = (20, 40, 80)  # equal reach: the smallest face box (pixels) both detectors look for
# The varied-size folder (H, W): the range of a real photo collection (393 to 3872 px a side).
FOLDER_SIZES = ((393, 524), (480, 640), (768, 1024), (1280, 1163), (1200, 1600), (1536, 2048),
                (1944, 2592), (2592, 3872))  # fmt: skip
VGA = (480, 640)
BBFCN5 = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pretrained', 'bbfcn5')
MTCNN_KEYS = ('left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right')


def vga_scene(seed: int = 3):
  from lmjax import synthface

  return synthface.render_scene(seed, VGA, max_faces=5)['image']


def _cascade_loader(checkpoint: str | None):
  """`fn(min_face) -> CascadeScanner` of `checkpoint` (default `pretrained/bbfcn5`) with its
  default proposer and classifier, or a function returning None when they are missing."""
  from lmjax.scan.cascade import CascadeScanner

  folder = checkpoint or BBFCN5
  try:
    CascadeScanner.load(folder)
  except ValueError as e:
    print(f'cascade rows skipped: {e}', file=sys.stderr)
    return lambda min_face: None
  return lambda min_face: CascadeScanner.load(folder, min_face=min_face)


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


def folder_images() -> list:
  """The varied-size folder: synthetic scenes resized to the sizes of real photo collections."""
  import cv2

  from lmjax import synthface

  out = []
  for i, (h, w) in enumerate(FOLDER_SIZES):
    scene = synthface.render_scene(100 + i, (480, 640) if w >= h else (640, 480), max_faces=4)
    out.append(cv2.resize(scene['image'], (w, h), interpolation=cv2.INTER_LINEAR))
  return out


def seconds_per_image(fn, images) -> float:
  """Mean seconds per image of one pass over `images` (after one warm-up call)."""
  return interleaved_seconds_per_image({'': fn}, images)['']


def interleaved_seconds_per_image(fns: dict, images) -> dict:
  """{name: mean seconds per image} of one pass over `images`, each image scanned by every fn
  in turn (after one warm-up call of each), so that a busy machine slows them alike."""
  for fn in fns.values():
    fn(images[0])
  seconds = dict.fromkeys(fns, 0.0)
  for im in images:
    for name, fn in fns.items():
      start = time.perf_counter()
      fn(im)
      seconds[name] += time.perf_counter() - start
  return {name: total / len(images) for name, total in seconds.items()}


def _exported_scan(scanner):
  """`fn(image)` of `scanner`'s scan exported with jax.export at the VGA canvas (serialised and
  read back, as the file of `python -m lmjax.export --scanner --canvas=480x640` would be)."""
  import jax

  from lmjax.hlo_export import scan_export, scan_graph

  exported = scan_export.export_function(scan_graph.scan_function(scanner, VGA), VGA)
  return jax.jit(jax.export.deserialize(exported.serialize()).call)


def parse_variants(text: str) -> list[tuple[float, int]]:
  """'1.41:0,1.26:512' -> [(scale_step, tile), ...] (tile 0: the default)."""
  out = []
  for item in filter(None, text.split(',')):
    step, _, tile = item.partition(':')
    try:
      out.append((float(step), int(tile or 0)))
    except ValueError:
      raise SystemExit(f'--variants: {item!r}; expected STEP:TILE, e.g. 1.41:512') from None
  return out


def variant_name(step: float, tile: int) -> str:
  return f'step{step:g}_tile{tile}'


def interleaved_rates(fns: dict, repeats: int) -> dict:
  """{name: (median, min, max) images/s} of one call of each fn in turn, `repeats` times."""
  for fn in fns.values():
    fn()  # warm-up (and compilation)
  seconds = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      seconds[name].append(time.perf_counter() - start)
  rates = lambda ts: sorted(1 / t for t in ts)
  return {name: (rates(ts)[len(ts) // 2], rates(ts)[0], rates(ts)[-1])
          for name, ts in seconds.items()}  # fmt: skip


def measure(setting: str, repeats: int, checkpoint: str | None, variants: list) -> dict:
  """Inside the child process: every row of one setting."""
  pin_to_one_core(setting)
  os.environ['LMJAX_COMPILATION_CACHE'] = 'off'  # "first scan" compiles, whatever ran before
  import jax
  import numpy as np

  from lmjax.scan.scanner import Scanner

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return {}
  base = _load_base(checkpoint)
  image = vga_scene()
  rows, compile_s, folder, noise = [], {}, {}, {}
  cascade_of = _cascade_loader(checkpoint)
  for min_face in MIN_FACES:
    make = lambda refine, m=min_face, **kw: Scanner(
      base.spec, base.variables, min_face=m, refine=refine, **kw
    )
    sc = make(True)
    start = time.perf_counter()
    sc.scan(image)  # compiles the two programs (once for every image size)
    compile_s[min_face] = time.perf_counter() - start
    budget = 2.0 if min_face >= 80 else 6.0
    rate = lambda fn, n=1, b=budget: measure_rate(fn, n, repeats, budget_s=b)
    levels = sc.levels_for(min(image.shape[:2]))
    others = {variant_name(*v): make(True, scale_step=v[0], tile=v[1]) for v in variants}
    if others:  # the default and the variants in turn, `repeats` times
      scans = {'': sc.scan, **{name: o.scan for name, o in others.items()}}
      rates = interleaved_rates({name: lambda f=f: f(image) for name, f in scans.items()}, repeats)
    else:
      rates = {'': (rate(lambda s=sc: s.scan(image)),) * 3}
    rows.append([f'scan min_face={min_face} (L={levels})', 1, rates[''][0]])
    noise[f'min{min_face}'] = rates[''][1:]
    for name, other in others.items():
      lv = other.levels_for(min(image.shape[:2]))
      rows.append([f'scan min_face={min_face} {name} (L={lv})', 1, rates[name][0]])
      noise[f'min{min_face}_{name}'] = rates[name][1:]
    plain = make(False)
    rows.append([f'backbone only min_face={min_face}', 1, rate(lambda s=plain: s.scan(image))])
    cascade = cascade_of(min_face)
    if cascade is not None:
      start = time.perf_counter()
      cascade.scan(image)
      compile_s[f'{min_face}_cascade'] = time.perf_counter() - start
      levels_c = cascade.levels_for(min(image.shape[:2]))
      row = f'cascade min_face={min_face} (P-levels={levels_c})'
      rows.append([row, 1, rate(lambda c=cascade: c.scan(image))])
    if min_face == 40:  # the same scan exported at the VGA canvas (`lmjax.export --scanner`)
      call = _exported_scan(sc)
      start = time.perf_counter()
      jax.block_until_ready(call(image))
      exported_first_s = time.perf_counter() - start
      row = f'stablehlo scan min_face=40 (L={levels})'
      rows.append([row, 1, rate(lambda c=call: jax.block_until_ready(c(image)))])
    if min_face == 40 and setting != 'cpu_1thread':  # the folder: all cores (or the GPU)
      scans = {'': sc.scan, **{name: o.scan for name, o in others.items()}}
      if cascade is not None:
        scans['cascade'] = cascade.scan
      for name, seconds in interleaved_seconds_per_image(scans, folder_images()).items():
        folder[f'{min_face}{"_" + name if name else ""}'] = seconds
  return {
    'device': f'{device.platform}: {device.device_kind}',
    'rows': rows,
    'noise': noise,
    'compile_s': compile_s,
    'stablehlo_first_s': exported_first_s,
    'folder_s_per_img': folder,
    'spec': base.spec,
    'faces_found': int(np.sum(sc.scan(image)['face_valid'])),
  }


# ------------------------------------------------------------------------- MTCNN (the peer)
def _mtcnn_scales(width, height, min_face_size, scale_factor, min_size=12):
  """MTCNN's P-Net pyramid, every level at least `min_size` pixels a side: scales
  (min_size / min_face_size) · scale_factor^l. (mtcnn 1.0.0's `build_scale_pyramid` counts the
  levels as if the first scale were 1, so with min_face_size > min_size its last levels fall
  under 12 px and P-Net fails on them: `detect_faces` then returns no face at all — on every
  VGA scene at min_face_size 40 or 80.)"""
  import numpy as np

  first = min_size / min_face_size
  top = min(width, height) * first
  count = (
    0 if top < min_size else int(np.floor(np.log(min_size / top) / np.log(scale_factor) + 1e-9)) + 1
  )
  return first * scale_factor ** np.arange(count)


def _mtcnn(min_face: int):
  """An MTCNN detector looking for faces of at least `min_face` pixels: `fn(image) -> faces`
  (with mtcnn ≥ 1.0, its P-Net pyramid is `_mtcnn_scales`)."""
  from mtcnn import MTCNN

  try:
    from mtcnn.stages import stage_pnet

    stage_pnet.build_scale_pyramid = _mtcnn_scales
  except (ImportError, AttributeError):  # mtcnn < 1.0
    pass

  try:  # mtcnn < 1.0: a constructor argument
    detector = MTCNN(min_face_size=min_face)
    return detector.detect_faces
  except TypeError:  # mtcnn >= 1.0: an argument of detect_faces
    detector = MTCNN()
    return lambda image: detector.detect_faces(image, min_face_size=min_face)


def mtcnn_child(repeats: int, scenes_path: str | None, out_path: str | None) -> dict:
  """Inside the peer process: MTCNN on the VGA image and the folder (all cores), and the scenes."""
  import numpy as np

  folder_dir = os.path.dirname(scenes_path or out_path)
  image = np.load(os.path.join(folder_dir, 'vga.npy'))
  stored = np.load(os.path.join(folder_dir, 'folder.npz'))
  folder = [stored[name] for name in sorted(stored.files)]
  result = {}
  for min_face in MIN_FACES:
    detect = _mtcnn(min_face)
    fps = measure_rate(lambda d=detect: d(image), 1, repeats, budget_s=5.0)
    result[f'mtcnn_vga_min{min_face}_img_per_s_cpu_all'] = fps
    if min_face == 40:
      result['mtcnn_folder_min40_s_per_img_cpu_all'] = seconds_per_image(detect, folder)
  if scenes_path:  # every image at every reach: points, scores and boxes (x0, y0, x1, y1)
    stored = np.load(scenes_path)
    found = {}
    for min_face in MIN_FACES:
      detect = _mtcnn(min_face)
      points, scores, boxes = [], [], []
      for name in sorted(stored.files):
        faces = detect(stored[name])
        points.append(np.array([[f['keypoints'][k] for k in MTCNN_KEYS] for f in faces], float))
        scores.append(np.array([f['confidence'] for f in faces], float))
        xywh = np.array([f['box'] for f in faces], float).reshape(-1, 4)
        boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
      for key, val in (('points', points), ('scores', scores), ('boxes', boxes)):
        found[f'{key}_min{min_face}'] = np.array([*val, None], object)[:-1]
    np.savez(out_path, names=np.array(sorted(stored.files)), **found)
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


def run_peer(args, images, faces, real=((), ())) -> dict:
  """MTCNN speed, and its recall on `images` (key 'recall', min_face 20; 'scores' per reach:
  `_scan_recall.Scores` results) and on the `real` (images, faces) photos ('real_scores'),
  through `--peer_python`; {} when it is unavailable."""
  import numpy as np

  probe = subprocess.run([args.peer_python, '-c', 'import mtcnn'], capture_output=True)
  if probe.returncode != 0:
    print('MTCNN: not importable by --peer_python; skipped (pip install mtcnn)', file=sys.stderr)
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    np.save(os.path.join(tmp, 'vga.npy'), vga_scene())
    np.savez(
      os.path.join(tmp, 'folder.npz'), **{f'{i:02d}': im for i, im in enumerate(folder_images())}
    )
    scenes, preds = os.path.join(tmp, 'scenes.npz'), os.path.join(tmp, 'mtcnn.npz')
    named = {f'image_{i:05d}': im for i, im in enumerate(images)}
    named.update({f'real_{i:05d}': im for i, im in enumerate(real[0])})
    np.savez(scenes, **named)
    cmd = [args.peer_python, __file__, '--child=mtcnn', f'--repeats={args.repeats}',
           f'--peer_io={scenes if named else ""},{preds}']  # fmt: skip
    proc = subprocess.run(cmd, env=child_env('cpu_all'), capture_output=True, text=True)
    if proc.returncode != 0:
      print(f'MTCNN failed:\n{proc.stderr[-3000:]}', file=sys.stderr)
      return {}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if named:
      got = np.load(preds, allow_pickle=True)
      names = list(got['names'])
      for prefix, (ims, gts) in (('image_', (images, faces)), ('real_', real)):
        rows = [names.index(f'{prefix}{i:05d}') for i in range(len(ims))]
        if not rows:
          continue
        if prefix == 'image_':
          out['recall'] = _recall(got['points_min20'][rows], got['scores_min20'][rows], gts)
        per_reach = {}
        for min_face in MIN_FACES:
          acc = Scores({'dataset': 'mtfl'})  # its boxes against the MTFL rule's, as the scans'
          for r, gt in zip(rows, gts, strict=True):
            found = (got[f'{k}_min{min_face}'][r] for k in ('points', 'scores', 'boxes'))
            acc.add_faces(*found, gt)
          per_reach[min_face] = acc.result()
        out['scores' if prefix == 'image_' else 'real_scores'] = per_reach
  return out


RECALL_LEVELS = 20  # the scanner's depth for the recall (scale step 1.16)


def scanner_recall(args, images, faces, step: float = 1.16) -> tuple[int, dict]:
  """(L, recall (top 30 per type)) of the scanner on the same scenes as MTCNN: L = 20 levels
  at the default step, else the fewest levels of `step` whose top level is at least as large."""
  from lmjax.eval import multiface_metrics as mm
  from lmjax.eval import reports
  from lmjax.scan import pyramid
  from lmjax.scan.scanner import Scanner

  top = pyramid.level_side(RECALL_LEVELS - 1) / pyramid.BASE_SIDE
  levels = pyramid.levels_for_min_face(1.0, 1, top * pyramid.BASE_SIDE, step)  # step^(L-1) ≥ top
  sc = Scanner.load(args.checkpoint, levels=levels, scale_step=step)
  acc = mm.RecallAccumulator((30,))
  for im, gt in zip(images, faces, strict=True):
    o = sc.scan(im)
    acc.add(o['points'], o['score'], gt['landmarks'], gt['bbox'], o['valid'], gt['visible'])
  return levels, reports.plain(acc.result(30))


def _print_table(results: dict) -> dict:
  """Prints the rows of every setting; returns the JSON figures (`scan_vga_min40_img_per_s_..`)."""
  print(f'{"setting":<12} {"device":<24} {"row":<46} {"img/s":>9} {"ms/img":>9}  (min–max)')
  summary = {}
  for setting, out in results.items():
    dev = out['device'][:24]
    for row, _, rate in out['rows']:
      words = row.split()
      noise = ''
      if row.startswith('scan min_face='):
        name = '' if words[2].startswith('(') else f'_{words[2]}'  # a variant's name
        low, high = out['noise'][f'min{words[1].split("=")[1]}{name}']
        noise = f'  ({low:.2f}–{high:.2f})' if high > low else ''
        summary[f'scan_vga_min{words[1].split("=")[1]}_img_per_s_{setting}{name}'] = round(rate, 2)
      if row.startswith('cascade min_face='):
        summary[f'cascade_vga_min{words[1].split("=")[1]}_img_per_s_{setting}'] = round(rate, 2)
      if row.startswith('stablehlo scan min_face=40'):
        summary[f'stablehlo_scan_vga_min40_img_per_s_{setting}'] = round(rate, 2)
      print(f'{setting:<12} {dev:<24} {row:<46} {rate:>9.2f} {1000 / rate:>9.1f}{noise}')
    for key, seconds in out['folder_s_per_img'].items():
      min_face, _, name = key.partition('_')
      row = f'folder min_face={min_face} {name} (s/img)'.replace('  ', ' ')
      print(f'{setting:<12} {dev:<24} {row:<46} {1 / seconds:>9.2f} {1000 * seconds:>9.1f}')
      if name == 'cascade':
        summary[f'cascade_folder_min{min_face}_s_per_img_{setting}'] = round(seconds, 3)
        continue
      suffix = f'_{name}' if name else ''
      summary[f'scan_folder_min{min_face}_s_per_img_{setting}{suffix}'] = round(seconds, 3)
    for key, seconds in out['compile_s'].items():
      min_face, _, name = str(key).partition('_')
      row = f'first {name or "scan"} min_face={min_face} (s)'
      print(f'{setting:<12} {dev:<24} {row:<46} {seconds:>9.2f}')
      prefix = 'cascade' if name else 'scan'
      summary[f'{prefix}_vga_min{min_face}_first_s_{setting}'] = round(seconds, 2)
    seconds = out['stablehlo_first_s']
    print(f'{setting:<12} {dev:<24} {"first stablehlo scan min_face=40 (s)":<46} {seconds:>9.2f}')
    summary[f'stablehlo_scan_vga_min40_first_s_{setting}'] = round(seconds, 2)
  return summary


def _mode_keys(summary: dict, default_mode: str) -> dict:
  """`pyramid_*` copies of the pyramid's `scan_*` speed keys; with `default_mode` 'cascade' the
  `scan_*` keys report the cascade (the scanner's default mode)."""
  out = dict(summary)
  for key, value in summary.items():
    if key.startswith(('scan_vga_min', 'scan_folder_min')):
      out[f'pyramid_{key[len("scan_") :]}'] = value
  if default_mode == 'cascade':
    for key, value in summary.items():
      if key.startswith('cascade_'):
        out[f'scan_{key[len("cascade_") :]}'] = value
  return out


def mode_table(args, summary: dict, images, faces, real, peer: dict) -> dict:
  """Landmark and proposal recall of both scan modes and MTCNN at every reach, next to their
  cpu_all speed; on the composite scenes, and with the real photos at min_face 20."""
  from lmjax.eval import multiface
  from lmjax.scan import modes

  out = {}
  sets = [('scenes', images, faces, MIN_FACES, peer.get('scores', {}))]
  if real[0]:
    sets.append(('real300w', *real, (20,), peer.get('real_scores', {})))
  for label, ims, gts, reaches, mtcnn in sets:
    if not ims:
      continue
    print(f'{label}: {len(ims)} images; recall (top {TOP} per type, mean) and proposal recall')
    print(f'  {"detector":<9} {"min_face":>8} {"VGA img/s":>10} {"folder s/img":>13} '
          f'{"@10%":>6} {"@5%":>6} {"prop@3":>7} {"prop@20":>8}')  # fmt: skip
    for mode in ('pyramid', 'cascade', 'mtcnn'):
      for min_face in reaches:
        if mode == 'mtcnn':
          r = mtcnn.get(min_face)
        else:
          scanner = modes.load(args.checkpoint, mode, min_face=min_face,
                               detections=max(multiface.MS))  # fmt: skip
          acc = Scores(scanner.spec)
          for im, gt in zip(ims, gts, strict=True):
            acc.add_scan(scanner.scan(im), gt)
          r = acc.result()
        if r is None:
          continue
        vga = summary.get(f'{mode}_vga_min{min_face}_img_per_s_cpu_all', float('nan'))
        folder = summary.get(f'{mode}_folder_min{min_face}_s_per_img_cpu_all', float('nan'))
        print(f'  {mode:<9} {min_face:>8} {vga:>10.2f} {folder:>13.3f} {r["recall10"]:>6.1f} '
              f'{r["recall5"]:>6.1f} {r["proposals3"]:>7.1f} {r["proposals20"]:>8.1f}')  # fmt: skip
        for key, value in r.items():
          out[f'{label}_{mode}_min{min_face}_{key}'] = value
  return out


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
  parser.add_argument('--variants', default='', help='scanner variants STEP:TILE,.. (see doc)')
  parser.add_argument('--scan_mode', choices=('pyramid', 'cascade'),
                      help='the mode of the scan_* keys (default: the code default)')  # fmt: skip
  parser.add_argument('--real_photos', type=int, default=0, help='held-out 300-W photos')
  parser.add_argument('--real_dir', help='the 300-W folder (manual_dir) for --real_photos')
  parser.add_argument('--child', help=argparse.SUPPRESS)
  parser.add_argument('--peer_io', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child == 'mtcnn':
    scenes, out = args.peer_io.split(',')
    print(json.dumps(mtcnn_child(args.repeats, scenes or None, out)))
    return
  if args.child:
    variants = parse_variants(args.variants)
    print(json.dumps(measure(args.child, args.repeats, args.checkpoint, variants)))
    return

  from lmjax.scan.modes import DEFAULT_MODE

  args.scan_mode = args.scan_mode or DEFAULT_MODE
  variants = parse_variants(args.variants)  # a bad list fails before any work
  if (args.recall_images or args.real_photos) and not args.checkpoint:
    raise SystemExit('--recall_images, --real_photos need --checkpoint (a trained BB-FCN)')
  if args.real_photos and not args.real_dir:
    raise SystemExit('--real_photos needs --real_dir (the 300-W folder)')
  child_args = [f'--repeats={args.repeats}', f'--variants={args.variants}']
  if args.checkpoint:
    child_args.append(f'--checkpoint={args.checkpoint}')
  results = {} if args.settings == 'none' else run_children(__file__, args.settings, child_args)
  print(
    f'BB-FCN pyramid scanner on a 640×480 image (median of {args.repeats} repeats) and on a '
    f'folder of {len(FOLDER_SIZES)} sizes ({FOLDER_SIZES[0]} to {FOLDER_SIZES[-1]})'
  )
  summary = _mode_keys(_print_table(results), args.scan_mode)
  images, faces = _scenes(args, args.recall_images) if args.recall_images else ([], [])
  real = real_photos(args.real_dir, args.real_photos) if args.real_photos else ([], [])
  peer = run_peer(args, images, faces, real)
  for key, value in peer.items():
    if key.startswith('mtcnn_'):
      print(f'{"cpu_all":<12} {"MTCNN (TensorFlow)":<24} {key:<46} {value:>9.3f}')
      summary[key] = round(value, 3)
  if images:
    scored = [('BB-FCN scanner', 'scan', scanner_recall(args, images, faces))]
    for step in sorted({step for step, _ in variants}):  # the tile does not change detections
      scored.append(
        (f'  step {step:g}', f'scan_step{step:g}', scanner_recall(args, images, faces, step))
      )
    if peer.get('recall'):
      scored.append(('MTCNN', 'mtcnn', (None, peer['recall'])))
    print(f'recall (top 30 per type) on {len(images)} {args.dataset} scenes, mean over types:')
    for name, key, (levels, r) in scored:
      at = '  '.join(f'@{e}% {100 * r[f"mean_recall_{e}"]:5.1f}' for e in (5, 10, 25))
      per_type = ' '.join(f'{100 * v:5.1f}' for v in r['recall_10'])
      label = f'{name} L={levels}' if levels else name
      print(f'  {label:<24} {at}   @10% per type (LE RE N LM RM): {per_type}')
      summary[f'{key}_recall10_m30'] = round(100 * r['mean_recall_10'], 2)
  if images or real[0]:
    summary.update(mode_table(args, summary, images, faces, real, peer))
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
