"""Video face tracking (`lmjax.track`) against scanning every frame, on rendered sequences.

Sequences from `lmjax.synthface.sequence` (one person each, exact 68 landmarks in every frame,
per-frame sensor noise): a static head (jitter), a turning head (yaw ±40°, pitch ±12°), a
moving head (crosses 60 % of the width and back, 2 face sizes/s at 30 frames/s), a scaling head
(face side 0.25 -> 0.5 -> 0.25 of the height) and a moving head with an occluding bar passing
over it. Three methods, one landmarker (default: pretrained/mcl68 behind the pretrained/bbfcn5
scanner):

  * scan:    `Landmarker.detect` on every frame (the pyramid scan, then the landmarks);
  * track:   `VideoTracker` without smoothing (scans on key frames and after losses);
  * smooth:  `VideoTracker` with the default One Euro filter (`OneEuroConfig`).

Per method and sequence kind: NME (mean point error / outer-eye-corner distance of the truth,
%, frames where the face was not found count as missed, not in the NME), jitter (on the static
head: mean frame-to-frame change of the point errors, % of the eye distance), lag (on the
moving heads: the error of the points' centroid along the direction of motion divided by the
speed, in frames), frames/s (landmarker and tracker time only, after a warm-up), tracking
losses and missed frames (the metric code is `lmjax.eval.video_metrics`, which the 300-VW
evaluation uses too). Run:

  python benchmarks/video_tracking.py [--people 2] [--frames 60]

With `--write_300vw DIR` it only writes the same rendered sequences as a 300-VW tree (MJPG
`vid.avi` + `annot/*.pts` per video, 30 frames/s; static and turning heads under category-1
ids, moving and scaling under category 2, occluded under category 3) for
`python -m lmjax.evaluate --dataset=300vw --manual_dir=DIR`, and exits.

The last line printed is one JSON object (`video_nme_<method>_<kind>`, `video_jitter_<method>`,
`video_lag_<method>_frames`, `video_fps_<method>`, `video_losses_<method>`,
`video_jitter_ratio_smoothed_vs_scan`, `video_nme_added_smoothed_vs_scan_moving`,
`video_fps_ratio_track_vs_scan`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

import lmjax
from lmjax.core import landmarks
from lmjax.data.datasets import the300vw
from lmjax.eval import video_metrics
from lmjax.synthface import sequence

IMAGE_SIZE = (240, 320)
KINDS = ('static', 'turning', 'moving', 'scaling', 'occluded')
METHODS = ('scan', 'track', 'smooth')
SEED_OFFSET = 20_000  # people not used by the unit tests
FPS = 30.0


def _render(kind: str, person: int, frames: int) -> dict:
  traj = sequence.trajectory('moving' if kind == 'occluded' else kind, frames, IMAGE_SIZE)
  return sequence.render_sequence(
    SEED_OFFSET + person, traj, IMAGE_SIZE, occluder=kind == 'occluded'
  )


def _video_id(kind: str, person: int) -> str:
  """A 300-VW test video id for a rendered sequence (static, turning: category 1; moving,
  scaling: category 2; occluded: category 3)."""
  category, offset = {
    'static': (1, 0), 'turning': (1, 10), 'moving': (2, 0), 'scaling': (2, 10), 'occluded': (3, 0)
  }[kind]  # fmt: skip
  return the300vw.CATEGORIES[category][offset + person]


def write_300vw(folder: str, people: int, frames: int) -> None:
  """The benchmark's sequences as a 300-VW tree in `folder`."""
  for person in range(people):
    for kind in KINDS:
      clip = _render(kind, person, frames)
      video_id = _video_id(kind, person)
      the300vw.write_video(os.path.join(folder, video_id), clip['frames'], clip['landmarks'], FPS)
      print(f'{folder}/{video_id}: {kind}, person {person}, {frames} frames')


def _run(method: str, landmarker, clip: dict, config) -> tuple[np.ndarray, float, int]:
  """Points [T, 68, 2] (NaN where missed), seconds, losses."""
  n = len(clip['frames'])
  points = np.full((n, 68, 2), np.nan)
  tracker = None if method == 'scan' else lmjax.VideoTracker(landmarker, config)
  start = time.perf_counter()
  for i, frame in enumerate(clip['frames']):
    faces = landmarker.detect(frame) if tracker is None else tracker.update(frame)
    match = video_metrics.best_match([f.box for f in faces], clip['bbox'][i])
    if match is not None:
      points[i] = faces[match].points
  seconds = time.perf_counter() - start
  return points, seconds, 0 if tracker is None else tracker.losses


def _metrics(points: np.ndarray, clip: dict) -> dict:
  """Per-frame NMEs and jitters of the found frames, lags, missed count
  (`lmjax.eval.video_metrics`, outer-eye-corner normaliser)."""
  gt = clip['landmarks']
  errors = video_metrics.frame_errors(points, gt, landmarks.IBUG68)
  return {
    'nme': errors['nme'][errors['found']].tolist(),
    'jitter': errors['jitter'][np.isfinite(errors['jitter'])].tolist(),
    'lag': video_metrics.lag_frames(points, gt).tolist(),
    'missed': int((~errors['found']).sum()),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--people', type=int, default=2)
  parser.add_argument('--frames', type=int, default=60)
  parser.add_argument('--model', default='pretrained/mcl68')
  parser.add_argument('--detector', default='pretrained/bbfcn5')
  parser.add_argument('--min_face', type=float, default=48.0)
  parser.add_argument('--write_300vw', default=None, help='write the sequences as 300-VW; exit')
  args = parser.parse_args()
  if args.write_300vw:
    write_300vw(args.write_300vw, args.people, args.frames)
    return
  landmarker = lmjax.Landmarker.load(args.model, args.detector, min_face=args.min_face)
  configs = {
    'scan': None,
    'track': lmjax.TrackerConfig(smoothing=None),
    'smooth': lmjax.TrackerConfig(),
  }
  acc = {m: {k: {'nme': [], 'jitter': [], 'lag': [], 'missed': 0} for k in KINDS} for m in METHODS}
  seconds = dict.fromkeys(METHODS, 0.0)
  losses = dict.fromkeys(METHODS, 0)
  frames = 0
  for person in range(args.people):
    for kind in KINDS:
      clip = _render(kind, person, args.frames)
      if not frames:  # warm-up: compile every program the runs use
        landmarker.detect(clip['frames'][0])
        landmarker.detect(clip['frames'][0], boxes=[clip['bbox'][0]])
      frames += len(clip['frames'])
      for method in METHODS:
        points, sec, lost = _run(method, landmarker, clip, configs[method])
        seconds[method] += sec
        losses[method] += lost
        for key, value in _metrics(points, clip).items():
          acc[method][kind][key] += value
  summary = {}
  mean = lambda v: float(np.mean(v)) if len(v) else float('nan')
  print(f'{args.people} people x {len(KINDS)} sequences x {args.frames} frames, {IMAGE_SIZE}')
  print(
    f'{"method":<8} '
    + ' '.join(f'{k:>9}' for k in KINDS)
    + '   jitter   lag  frames/s  losses missed'
  )
  for method in METHODS:
    nme = {k: 100 * mean(acc[method][k]['nme']) for k in KINDS}
    jitter = 100 * mean(acc[method]['static']['jitter'])
    lag = mean(acc[method]['moving']['lag'] + acc[method]['occluded']['lag'])
    fps = frames / seconds[method]
    missed = sum(acc[method][k]['missed'] for k in KINDS)
    cells = ' '.join(f'{nme[k]:9.2f}' for k in KINDS)
    print(
      f'{method:<8} {cells}   {jitter:6.3f} {lag:5.2f} {fps:9.1f} {losses[method]:7d} {missed:6d}'
    )
    for k in KINDS:
      summary[f'video_nme_{method}_{k}'] = round(nme[k], 3)
    summary[f'video_jitter_{method}'] = round(jitter, 4)
    summary[f'video_lag_{method}_frames'] = round(lag, 3)
    summary[f'video_fps_{method}'] = round(fps, 2)
    summary[f'video_losses_{method}'] = losses[method]
    summary[f'video_missed_{method}'] = missed
  print('NME and jitter in % of the eye-corner distance; lag in frames (moving and occluded).')
  summary['video_jitter_ratio_smoothed_vs_scan'] = round(
    summary['video_jitter_scan'] / summary['video_jitter_smooth'], 3
  )
  summary['video_jitter_ratio_smoothed_vs_track'] = round(
    summary['video_jitter_track'] / summary['video_jitter_smooth'], 3
  )
  summary['video_nme_added_smoothed_vs_scan_moving'] = round(
    summary['video_nme_smooth_moving'] / summary['video_nme_scan_moving'] - 1, 4
  )
  summary['video_fps_ratio_track_vs_scan'] = round(
    summary['video_fps_smooth'] / summary['video_fps_scan'], 2
  )
  summary['video_config'] = {k: str(v) for k, v in dataclasses.asdict(configs['smooth']).items()}
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
