"""A video tracker on a dataset of annotated video frames (300-VW): the 300-VW protocol.

    results = tracking.evaluate_tracker(make_tracker, source, 'metrics.json')

`source` holds one example per frame with the extra features `video_id`, `frame_index`,
`category` and `fps` (`lmjax.data.datasets.the300vw`), the frames of a video together and in
order. Each video is run through a fresh tracker, `make_tracker(fps)` (an object with
`update(frame) -> faces`, each face with `box` [4] and `points` [K, 2], and a `losses` count:
`lmjax.track.VideoTracker`), frame by frame. On each frame the reported face overlapping the
annotated face's box most (IoU >= 0.3, `video_metrics.best_match`) is scored; a frame without
one is *missed*. Reported (percent of the outer-eye-corner distance, the 300-VW normaliser;
`lmjax.eval.video_metrics`) for all test frames and per category (`category_1` …, and
`train` for category 0):

  nme_ioc          mean NME over the found frames
  fr_8_ioc, auc_8_ioc   failure rate and AUC@8 % over all frames, a missed frame as a failure
  jitter_ioc       mean frame-to-frame change of the point errors (pairs of found frames)
  missed_frames    frames without a face matching the annotated one (and `missed_percent`)
  track_losses     tracks the tracker lost (`losses`: each followed by a re-detection scan)

plus per video the same numbers, and a CED plot `<stem>_ced_protocol.png` with a curve per
category; beside them, the face-crop evaluators' numbers and plots over the found frames (the
same JSON keys as for any face dataset: `nme_ioc`, `nme_ipd`, `nme_box`, ...). This module
imports no tracker: the caller passes `make_tracker`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from lmjax.data import datasets
from lmjax.eval import reports, video_metrics

NORMALISER = 'ioc'
CED_THRESHOLD = 0.08
NEEDS = ('video_id', 'frame_index', 'category', 'fps')


@dataclasses.dataclass
class VideoRun:
  """One video run through the tracker: the matched points [T, K, 2] (NaN rows on missed
  frames), the truth [T, K, 2] and face boxes [T, 4], the frames' image ids, the tracker (its
  `losses`) and its seconds."""

  video_id: str
  category: int
  fps: float
  tracker: Any
  points: list = dataclasses.field(default_factory=list)
  truth: list = dataclasses.field(default_factory=list)
  boxes: list = dataclasses.field(default_factory=list)
  image_ids: list = dataclasses.field(default_factory=list)
  last_frame: int = -1
  seconds: float = 0.0


def group_name(category: int) -> str:
  """'train' for category 0, else 'category_<c>'."""
  return 'train' if category == 0 else f'category_{category}'


def run_tracker(
  make_tracker: Callable[[float], Any],
  source: Sequence[Mapping[str, Any]],
  *,
  max_videos: int | None = None,
  progress: str = '',
) -> list[VideoRun]:
  """Runs a fresh `make_tracker(fps)` through each video of `source`, frame by frame.

  Raises:
    ValueError: a source without the video features, or a video whose frames are not together
      and in increasing order (the example index named).
  """
  features = source.dataset_info.features
  missing = [k for k in NEEDS if k not in features]
  if missing:
    raise ValueError(
      f'dataset {source.dataset_info.name!r}: a tracker evaluation needs the per-frame '
      f'features {list(NEEDS)}; it lacks {missing} (a video dataset such as 300vw has them)'
    )
  name = source.dataset_info.name
  runs: list[VideoRun] = []
  for i in tqdm(range(len(source)), desc=progress, disable=not progress, mininterval=2):
    example = datasets.decode(source[i])
    video_id, index = _text(example['video_id']), int(example['frame_index'])
    if not runs or runs[-1].video_id != video_id:
      if any(run.video_id == video_id for run in runs):
        raise ValueError(
          f"{name}: example {i} (video {video_id}) comes after another video's frames; "
          'expected the frames of each video together'
        )
      if max_videos is not None and len(runs) == max_videos:
        break
      fps = float(example['fps'])
      runs.append(VideoRun(video_id, int(example['category']), fps, make_tracker(fps)))
    run = runs[-1]
    if index <= run.last_frame:
      raise ValueError(
        f'{name}: example {i} (video {video_id}) has frame_index {index} after '
        f'{run.last_frame}; expected increasing frames'
      )
    run.last_frame = index
    start = time.perf_counter()
    faces = run.tracker.update(example['image'])
    run.seconds += time.perf_counter() - start
    match = video_metrics.best_match([f.box for f in faces], example['bbox'])
    points = np.full(example['landmarks'].shape, np.nan, np.float32)
    if match is not None:
      points = np.asarray(faces[match].points, np.float32)
    run.points.append(points)
    run.truth.append(np.asarray(example['landmarks'], np.float32))
    run.boxes.append(np.asarray(example['bbox'], np.float32))
    run.image_ids.append(str(example['image_id']))
  return runs


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def score_runs(runs: Sequence[VideoRun], schema) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """The protocol numbers of tracked videos, and group name -> per-frame NMEs (NaN: missed).

  Returns:
    ({normaliser, groups: {all, category_1, ...: summary + num_videos, track_losses},
    videos: {video id: summary + category, track_losses, fps}}, per-frame NMEs per group).
  """
  videos, scored = {}, []
  for run in runs:
    errors = video_metrics.frame_errors(np.stack(run.points), np.stack(run.truth), schema)
    row = video_metrics.summary(errors['nme'], errors['jitter'], NORMALISER)
    losses = int(run.tracker.losses)
    videos[run.video_id] = {**row, 'category': run.category, 'track_losses': losses, 'fps': run.fps}
    scored.append((group_name(run.category), errors, losses))
  names = ['all', *sorted({name for name, _, _ in scored})]
  groups, curves = {}, {}
  for group in names:
    members = [(e, n) for name, e, n in scored if group in ('all', name)]
    nme = np.concatenate([e['nme'] for e, _ in members])
    jitter = np.concatenate([e['jitter'] for e, _ in members])
    groups[group] = {
      **video_metrics.summary(nme, jitter, NORMALISER),
      'num_videos': len(members),
      'track_losses': sum(n for _, n in members),
    }
    curves[group] = nme
  return {'normaliser': NORMALISER, 'groups': groups, 'videos': videos}, curves


def evaluate_tracker(
  make_tracker: Callable[[float], Any],
  source: Sequence[Mapping[str, Any]],
  output: str | os.PathLike,
  *,
  info: Mapping[str, Any] | None = None,
  label: str = 'model',
  title: str = '',
  max_videos: int | None = None,
  predictions: str | os.PathLike | None = None,
  progress: str = '',
) -> dict[str, Any]:
  """Runs and scores a tracker on a video dataset source; writes the JSON and the CED plots.

  Args:
    make_tracker: fps -> a fresh tracker (see the module docstring).
    source: e.g. `lmjax.data.datasets.load('300vw', 'test', ...)`.
    output: metrics JSON path. Beside it: `<stem>_ced_protocol.png` (one curve per category,
      missed frames as failures) and, as for face datasets, `<stem>_ced_ioc.png` and
      `<stem>_ced_ipd.png` of the found frames.
    info: extra JSON keys (the CLI adds dataset, split, checkpoint, detector).
    label: the legend label of the ioc / ipd CED curves.
    title: the plots' title.
    max_videos: run only the first N videos.
    predictions: optional `.npz` of `image_ids` and `pred` [N, K, 2] (NaN rows: missed).
    progress: label of a progress bar over the frames (none when empty).

  Returns:
    The dict written to `output`: `protocol` (`score_runs`), `num_videos`, `num_frames`,
    `frames_per_second` (tracker time only), the `info` keys, and the face-crop evaluators'
    numbers (`reports.compute_metrics`: `num_faces`, `nme_ioc`, `nme_ipd`, `nme_box`, failure
    rates, AUCs, per-landmark and pose-bin errors) over the found frames.
  """
  runs = run_tracker(make_tracker, source, max_videos=max_videos, progress=progress)
  if not runs:
    raise ValueError(f'{source.dataset_info.name}: the split has no frames to track')
  schema = datasets.schema_of(source)
  protocol, curves = score_runs(runs, schema)
  points = np.concatenate([np.stack(r.points) for r in runs])  # [N, K, 2], NaN rows: missed
  truth = np.concatenate([np.stack(r.truth) for r in runs])  # [N, K, 2]
  boxes = np.concatenate([np.stack(r.boxes) for r in runs])  # [N, 4]
  found = np.isfinite(points).all(axis=(1, 2))
  seconds = sum(run.seconds for run in runs)
  results: dict[str, Any] = {}
  if found.any():
    results = reports.compute_metrics(points[found], truth[found], boxes[found], schema)
  results.update(
    protocol={'dataset': source.dataset_info.name, **protocol},
    num_videos=len(runs),
    num_frames=len(points),
    frames_per_second=len(points) / seconds if seconds > 0 else None,
    **(info or {}),
  )
  reports.write_results(results, output)
  stem = os.path.splitext(os.fspath(output))[0]
  plotted = {g: np.where(np.isfinite(v), v, np.inf) for g, v in curves.items()}
  heading = f'{title} ({len(runs)} videos, {len(points)} frames)'.strip()
  reports.plot_ced(
    plotted, CED_THRESHOLD, f'{stem}_ced_protocol.png', title=heading, normaliser=NORMALISER
  )
  if found.any():
    nmes = reports.per_image_nmes(points[found], truth[found], boxes[found], schema)
    for norm, thr in (('ioc', 0.08), ('ipd', 0.10)):
      found_heading = f'{title} ({int(found.sum())} found frames)'.strip()
      reports.plot_ced(
        {label: nmes[norm]}, thr, f'{stem}_ced_{norm}.png', title=found_heading, normaliser=norm
      )
  if predictions:
    ids = [i for run in runs for i in run.image_ids]
    reports.save_predictions(predictions, ids, points)
  return results


def tracking_table(results: Mapping[str, Any]) -> str:
  """A text table of `evaluate_tracker`'s numbers: one line per group (all, categories)."""
  protocol = results['protocol']
  keys = (
    'num_videos', 'num_frames', f'nme_{NORMALISER}', f'fr_8_{NORMALISER}',
    f'auc_8_{NORMALISER}', f'jitter_{NORMALISER}', 'missed_frames', 'track_losses',
  )  # fmt: skip
  heading = (
    f'{protocol["dataset"]} tracking (percent of the outer-eye-corner distance; missed = no '
    'face matching the annotated one; FR/AUC count missed frames as failures)'
  )
  return heading + '\n' + reports.format_table(protocol['groups'], keys)
