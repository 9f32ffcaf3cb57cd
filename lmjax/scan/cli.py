"""`lmjax-scan`: landmarks and boxes of every face in images, folders or videos.

    lmjax-scan photo.jpg --checkpoint=pretrained/bbfcn5 --out=viz.png
    lmjax-scan photos/ --checkpoint=pretrained/bbfcn5 --out=drawn/ --json=faces.json
    lmjax-scan clip.mp4 --checkpoint=pretrained/bbfcn5 --out=clip_faces.mp4 --min_face=60
    lmjax-scan clip.mp4 --checkpoint=pretrained/bbfcn5 --landmarks=pretrained/mcl68 --json=t.json

Faces are found by the cascade (`--scan_mode=cascade`, the default; `lmjax.scan.cascade`): a
ProposalNet (`--proposer` folder, default `proposer5` beside the checkpoint or in `pretrained/`)
proposes face boxes down to `--min_face` pixels (box side; or the reach of a `--levels`-level
pyramid), the face/non-face CNN (`--face_classifier`, default `facecls5` found alike; `none`: no
re-scoring) re-scores them, and BB-FCN marks each box. `--scan_mode=pyramid` is the paper's
scan (§III-E-2), ~28× slower on a CPU: the BB-FCN backbone over the whole pyramid, `--levels`
deep or the smallest that finds faces of `--min_face` pixels (`pyramid.levels_for_min_face`);
its faces come from the grouping of landmark detections (`--min_score` on the landmark
response, `--threshold` on the coarse maps), or, with `--face_classifier`, from proposals
re-scored by the face/non-face CNN. `--json` writes every face (box, score, landmarks; null
where a landmark type was not found) per input.
Folders and videos show a progress bar.

Videos are tracked (`lmjax.track.VideoTracker`): the whole frame is scanned every
`--key_interval` frames and when a track is lost; on the other frames each face's landmarks
come from the box-given predictor of `--landmarks` (default: the checkpoint) in a box placed on
its previous landmarks, smoothed by a One Euro filter (`--nosmooth`: raw). Their `--json` holds
per frame every face's `track_id`, box, points, confidence (calibrated models) and pose.
`--notrack` scans every frame instead (needed for `--face_classifier`).

Every flag and output path is checked before the model loads (one-line error, exit 2): numbers
in range, `--out` / `--json` below folders that exist or can be created and are writable,
`--out` with an extension cv2 can write (an image for an image, a video for a video, a folder
for a folder). In a folder, an image that cannot be read or scanned is reported (one warning
line) and skipped; the others are still drawn and written to `--json`, and the command ends
with a summary and exit status 1 if any input failed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import types
from collections.abc import Sequence
from typing import NoReturn

import cv2
import numpy as np
from absl import flags

from lmjax.core import head_pose, image_ops
from lmjax.scan import detect, modes
from lmjax.viz import draw

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')
VIDEO_FOURCC = 'mp4v'
MAX_LEVELS = 40  # 32 · 1.16^39 ≈ 10^4 pixels: the top level of any sensible pyramid
# Flags users try for the positional input (named in the error message).
INPUT_FLAGS = ('input', 'inputs', 'folder', 'image', 'images', 'video', 'dir', 'path')


PROG = 'lmjax-scan'
USAGE = f'usage: {PROG} INPUT --checkpoint=DIR [--out=PATH] [--json=FILE] [flags]'


def define_flags(fv: flags.FlagValues) -> None:
  """Defines the command's flags on `fv` (the input is the one positional argument)."""
  kw = dict(flag_values=fv)
  flags.DEFINE_string('checkpoint', None, 'BB-FCN model folder', required=True, **kw)
  flags.DEFINE_string('out', None, 'drawn image / folder / video (default: nothing drawn)', **kw)
  flags.DEFINE_string('json', None, 'write the faces of every input here', **kw)
  flags.DEFINE_integer('levels', None, 'pyramid levels L (not with --min_face)', **kw)
  flags.DEFINE_float('min_face', None, 'smallest face side, pixels (default 40)', **kw)
  flags.DEFINE_float('threshold', 0.2, 'pyramid: candidate response threshold', **kw)
  flags.DEFINE_float('scale_step', 1.16, 'smaller-side ratio between pyramid levels', **kw)
  flags.DEFINE_float('min_score', None, 'face score threshold (see scan.detect)', **kw)
  flags.DEFINE_string(
    'face_classifier', None, 'face/non-face CNN folder (re-scores proposals)', **kw
  )
  flags.DEFINE_bool('backbone_only', False, 'skip the branch refinement', **kw)
  flags.DEFINE_enum(
    'scan_mode', modes.DEFAULT_MODE, list(modes.SCAN_MODES),
    'pyramid: the paper BB-FCN pyramid scan; cascade: proposer boxes, then BB-FCN per face',
    **kw,
  )  # fmt: skip
  flags.DEFINE_string('proposer', None, 'cascade: ProposalNet folder (default: proposer5)', **kw)
  flags.DEFINE_float('proposal_threshold', None, 'cascade: proposer probability threshold', **kw)
  flags.DEFINE_bool('track', True, 'videos: track faces (--notrack: scan every frame)', **kw)
  flags.DEFINE_string('landmarks', None, 'videos: landmark model (default: checkpoint)', **kw)
  flags.DEFINE_integer('key_interval', 30, 'videos: scan every this many frames (0: on loss)', **kw)
  flags.DEFINE_bool('smooth', True, 'videos: One Euro smoothing of tracked landmarks', **kw)
  flags.mark_flags_as_mutual_exclusive(['levels', 'min_face'], flag_values=fv)
  _check_number(fv, 'levels', lambda v: 1 <= v <= MAX_LEVELS, f'an integer 1 to {MAX_LEVELS}')
  _check_number(fv, 'min_face', lambda v: v > 0, 'a positive number of pixels')
  _check_number(fv, 'threshold', lambda v: 0 <= v <= 1, 'a number from 0 to 1')
  _check_number(fv, 'scale_step', lambda v: 1 < v <= 2, 'a number above 1 and at most 2')
  _check_number(fv, 'min_score', lambda v: v >= 0, 'a number >= 0')
  _check_number(fv, 'proposal_threshold', lambda v: 0 <= v < 1, 'a number from 0 to below 1')
  _check_number(fv, 'key_interval', lambda v: v >= 0, 'an integer >= 0')


def _check_number(fv: flags.FlagValues, name: str, ok, expected: str) -> None:
  """Registers a parse-time check of a numeric flag: unset, or finite and `ok` (else one line
  `flag --NAME=VALUE: expected EXPECTED`)."""
  flags.register_validator(
    name,
    lambda v: v is None or (math.isfinite(v) and ok(v)),
    f'expected {expected}',
    flag_values=fv,
  )


def _usage_error(message: str) -> NoReturn:
  print(f'{USAGE}\n{PROG}: error: {message}', file=sys.stderr)
  raise SystemExit(2)


def parse_flags(argv: Sequence[str] | None) -> types.SimpleNamespace:
  """The flag values and `input` of `argv` (without the program name; default `sys.argv[1:]`),
  parsed on a fresh `FlagValues`; `--help` prints the flags and exits 0, a bad command line
  exits 2 with a message."""
  fv = flags.FlagValues()
  define_flags(fv)
  args = list(sys.argv[1:] if argv is None else argv)
  if {'-h', '--help'} & set(args):
    print(f'{USAGE}\n\n{__doc__.split(chr(10))[0]}\n{fv.get_help(include_special_flags=False)}')
    raise SystemExit(0)
  try:
    rest = fv([PROG, *args])[1:]
  except flags.UnrecognizedFlagError as e:
    _usage_error(_unknown_flag_message(e, args))
  except flags.Error as e:
    _usage_error(str(e))
  if len(rest) != 1:
    _usage_error(f'expected one input (image file, folder of images or video), got {rest}')
  args = types.SimpleNamespace(**fv.flag_values_dict(), input=rest[0])
  if args.min_face is None:
    args.min_face = 40.0
  if args.scan_mode != 'cascade' and (args.proposer or args.proposal_threshold is not None):
    _usage_error('--proposer, --proposal_threshold: settings of --scan_mode=cascade')
  if args.scan_mode == 'cascade' and fv['threshold'].present:
    _usage_error(
      '--threshold: a setting of --scan_mode=pyramid (the cascade has --proposal_threshold)'
    )
  return args


def _unknown_flag_message(e: flags.UnrecognizedFlagError, args: Sequence[str]) -> str:
  """absl's message, or for `--input=x` / `--folder x` one that says inputs are positional."""
  if e.flagname not in INPUT_FLAGS:
    return str(e)
  i = next((i for i, a in enumerate(args) if a.lstrip('-').split('=', 1)[0] == e.flagname), None)
  if i is None:
    return str(e)
  typed, value = args[i], args[i].partition('=')[2]
  if not value and i + 1 < len(args) and not args[i + 1].startswith('-'):
    typed, value = f'{typed} {args[i + 1]}', args[i + 1]
  example = f'{PROG} {value or "INPUT"} --checkpoint=DIR'
  return f'unknown flag {typed!r}: the input is positional, e.g. {example!r}'


def _kind(path: str) -> str:
  """'folder', 'video' (by extension) or 'image'."""
  if os.path.isdir(path):
    return 'folder'
  return 'video' if path.lower().endswith(VIDEO_EXTENSIONS) else 'image'


def _check_parent(flag: str, path: str, folder: str) -> None:
  """Usage error unless `folder` exists or can be created, and is writable."""
  base = os.path.abspath(folder)
  while not os.path.lexists(base):
    base = os.path.dirname(base)
  if not os.path.isdir(base):
    _usage_error(f'{flag}={path}: {base} is a file, not a folder (expected a path below folders)')
  if not os.access(base, os.W_OK | os.X_OK):
    _usage_error(f'{flag}={path}: folder {base} is not writable')


def _check_file(flag: str, path: str) -> None:
  """Usage error unless `path` can be written as a file."""
  if os.path.isdir(path):
    _usage_error(f'{flag}={path}: is a folder (expected a file name)')
  _check_parent(flag, path, os.path.dirname(os.path.abspath(path)))
  if os.path.exists(path) and not os.access(path, os.W_OK):
    _usage_error(f'{flag}={path}: the file is not writable')


def _video_writer(path: str, fps: float, size: tuple[int, int]):
  """An open `cv2.VideoWriter` (codec `VIDEO_FOURCC`), or None when cv2 cannot write `path`."""
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, size)
  if writer.isOpened():
    return writer
  writer.release()
  return None


def _can_write_video(ext: str) -> bool:
  """Whether cv2 opens a video writer for `ext` files (tried on a scratch file)."""
  with tempfile.TemporaryDirectory() as scratch:
    writer = _video_writer(os.path.join(scratch, f'probe{ext}'), 25.0, (64, 64))
    if writer is not None:
      writer.release()
    return writer is not None


def check_outputs(args) -> None:
  """Usage error (exit 2) for an `--out` / `--json` that cannot be written, before any work."""
  kind = _kind(args.input)
  if kind == 'video' and args.track and args.face_classifier:
    _usage_error('--face_classifier: tracking a video does not use it (add --notrack)')
  if args.json:
    _check_file('--json', args.json)
  out = args.out
  if not out:
    return
  ext = os.path.splitext(out)[1].lower()
  if kind == 'folder':
    folder_only = 'but the input is a folder (expected a folder)'
    if os.path.exists(out) and not os.path.isdir(out):
      _usage_error(f'--out={out}: is a file, {folder_only}')
    if not os.path.isdir(out) and ext in (*draw.IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS):
      _usage_error(f'--out={out}: has a file extension, {folder_only}')
    _check_parent('--out', out, out)
    return
  _check_file('--out', out)
  if os.path.exists(out) and os.path.samefile(out, args.input):
    _usage_error(f'--out={out}: is the input (expected a new file name)')
  if kind == 'video':
    if ext not in VIDEO_EXTENSIONS:
      _usage_error(f'--out={out}: expected a video file name ({", ".join(VIDEO_EXTENSIONS)})')
    if not _can_write_video(ext):
      _usage_error(f'--out={out}: cv2 cannot write {ext} videos here (expected e.g. .mp4, .avi)')
  elif not ext:
    _usage_error(f'--out={out}: no file extension (expected an image file name, e.g. .png)')
  elif not cv2.haveImageWriter(out):
    _usage_error(f'--out={out}: cv2 cannot write {ext} images (expected e.g. .png, .jpg)')


class _Runner:
  """The scanner (its programs are cached per image size and depth), faces and drawing."""

  def __init__(self, args):
    self.args = args
    depth = {'levels': args.levels} if args.levels else {'min_face': args.min_face}
    common = dict(refine=not args.backbone_only, scale_step=args.scale_step, **depth)
    self.classifier, self.min_score = None, args.min_score
    if args.scan_mode == 'cascade':  # the classifier re-scores inside the cascade
      self.scanner = modes.load(
        args.checkpoint, 'cascade', proposer=args.proposer,
        classifier=None if args.face_classifier == 'none' else args.face_classifier or 'auto',
        proposal_threshold=args.proposal_threshold, **common,
      )  # fmt: skip
      if self.min_score is None:
        self.min_score = detect.DEFAULT_MIN_SCORE['classifier']
      return
    self.scanner = modes.load(args.checkpoint, 'pyramid', threshold=args.threshold, **common)
    if args.face_classifier and args.face_classifier != 'none':
      from lmjax.facecls.classifier import FaceClassifier

      self.classifier = FaceClassifier.load(args.face_classifier)

  def faces(self, image: np.ndarray) -> list[detect.Face]:
    out = self.scanner.scan(image)
    return detect.faces_from_scan(out, image, self.classifier, self.min_score)

  def drawn(self, image: np.ndarray, faces: Sequence, schema=None) -> np.ndarray:
    """`image` with the faces' landmarks, boxes and poses (of `schema`, default the scanner's)."""
    out, schema = image, schema or self.scanner.schema
    for face in faces:
      pose = head_pose.head_pose_if_known(face.points, schema)
      out = draw.draw_landmarks(out, face.points, face.box, schema, pose=pose)
    return out

  def record(self, name: str, faces: Sequence[detect.Face]) -> dict:
    """The JSON record of one input: box, score, points (null where not found) and pose
    ({yaw, pitch, roll} in degrees; null when not enough points were found) per face."""
    nan_to_none = lambda p: [None if np.isnan(v).any() else [float(v[0]), float(v[1])] for v in p]
    records = []
    for f in faces:
      record = {'box': [float(v) for v in f.box], 'score': f.score, 'points': nan_to_none(f.points)}
      pose = head_pose.head_pose_if_known(f.points, self.scanner.schema)
      if pose is not None:
        angles = dict(zip(head_pose.ANGLES, map(float, pose), strict=True))
        record['pose'] = None if np.isnan(pose).any() else angles
      records.append(record)
    return {'input': name, 'faces': records}


def _video_tracker(runner: _Runner, args, fps: float):
  """A `VideoTracker` over the runner's scanner and the `--landmarks` predictor."""
  from lmjax.inference import Landmarker, load_predictor
  from lmjax.track.one_euro import OneEuroConfig
  from lmjax.track.tracker import TrackerConfig, VideoTracker

  predictor = load_predictor(args.landmarks or args.checkpoint)
  landmarker = Landmarker(predictor, runner.scanner, runner.min_score)
  smoothing = OneEuroConfig() if args.smooth else None
  config = TrackerConfig(fps=fps, key_interval=args.key_interval, smoothing=smoothing)
  return VideoTracker(landmarker, config)


def _scan_video(runner: _Runner, args) -> list[dict]:
  from tqdm import tqdm

  from lmjax.track import video

  clip = video.open_video(args.input)
  tracker = _video_tracker(runner, args, clip.fps) if args.track else None
  writer, records = None, []
  try:
    for i, frame in enumerate(tqdm(clip.frames(), total=clip.count or None, desc='frames')):
      if tracker is None:
        faces = runner.faces(frame)
        records.append(runner.record(f'{args.input}#{i}', faces))
      else:
        faces = tracker.update(frame)
        records.append(video.frame_record(args.input, i, faces))
      if args.out:
        if writer is None:
          h, w = frame.shape[:2]
          os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
          writer = _video_writer(args.out, clip.fps, (w, h))
          if writer is None:
            raise ValueError(f'--out={args.out}: cv2 cannot open a video writer for it')
        drawn = runner.drawn(frame, faces, tracker and tracker.schema)
        writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
  finally:
    clip.capture.release()
    if writer is not None:
      writer.release()
  if not records:
    raise ValueError(f'{args.input}: no frame could be read (not a video, or an empty one)')
  if tracker is not None:
    print(f'tracking: {tracker.scans} scan(s), {tracker.losses} track(s) lost', file=sys.stderr)
  return records


def _folder_images(folder: str) -> list[str]:
  """Sorted files with an image extension (`draw.IMAGE_EXTENSIONS`) directly inside `folder`;
  broken links are kept so that they are reported as unreadable."""
  paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
  paths = [
    p
    for p in paths
    if p.lower().endswith(draw.IMAGE_EXTENSIONS) and (os.path.isfile(p) or os.path.islink(p))
  ]
  if not paths:
    raise ValueError(f'{folder}: no image files ({", ".join(draw.IMAGE_EXTENSIONS)}) in it')
  return paths


def _reason(e: Exception, path: str) -> str:
  """One line saying why `path` failed (without repeating the path)."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  line = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
  return line.removeprefix(f'{path}: ')


def _scan_folder(runner: _Runner, args) -> tuple[list[dict], int]:
  """Records of the readable images of a folder and the number that failed (each reported)."""
  from tqdm import tqdm

  paths = _folder_images(args.input)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
  records, failed = [], 0
  for path, name in zip(tqdm(paths, desc='images'), draw.output_names(paths), strict=True):
    try:
      image = image_ops.read_image(path)
      faces = runner.faces(image)
      if args.out:
        draw.write_image(os.path.join(args.out, name), runner.drawn(image, faces))
    except (ValueError, OSError, cv2.error) as e:
      failed += 1
      tqdm.write(f'{PROG}: warning: skipped {path}: {_reason(e, path)}', file=sys.stderr)
      continue
    records.append(runner.record(path, faces))
  return records, failed


def _scan_image(runner: _Runner, args, image: np.ndarray) -> list[dict]:
  faces = runner.faces(image)
  if args.out:
    draw.write_image(args.out, runner.drawn(image, faces))
  print(f'{args.input}: {len(faces)} face(s)')
  return [runner.record(args.input, faces)]


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns 0, or 1 when some image of a folder failed (the others
  are still written); exits with a message otherwise (2 for a bad command line or output path,
  1 for a failed scan)."""
  args = parse_flags(argv)
  try:
    return _main(args)
  except (ValueError, OSError) as e:
    raise SystemExit(f'{PROG}: {e}') from None


def _main(args) -> int:
  if not os.path.exists(args.input):
    raise FileNotFoundError(f'{args.input} does not exist (expected an image, folder or video)')
  check_outputs(args)
  kind = _kind(args.input)
  image = draw.read_image(args.input, 'INPUT') if kind == 'image' else None
  runner = _Runner(args)
  failed = 0
  if kind == 'folder':
    records, failed = _scan_folder(runner, args)
  elif kind == 'video':
    records = _scan_video(runner, args)
  else:
    records = _scan_image(runner, args, image)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(records, f, indent=1)
  total = sum(len(r['faces']) for r in records)
  unit = 'frame(s)' if kind == 'video' else 'input(s)'
  print(f'{len(records)} {unit} scanned, {failed} failed, {total} face(s)', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
