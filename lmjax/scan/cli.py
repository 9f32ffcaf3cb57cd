"""`lmjax-scan`: landmarks and boxes of every face in images, folders or videos.

    lmjax-scan photo.jpg --checkpoint=pretrained/bbfcn5 --out=viz.png
    lmjax-scan photos/ --checkpoint=pretrained/bbfcn5 --out=drawn/ --json=faces.json
    lmjax-scan clip.mp4 --checkpoint=pretrained/bbfcn5 --out=clip_faces.mp4 --min_face=60

The pyramid depth is `--levels`, or the smallest that finds faces of `--min_face` pixels
(box side) in each image (`pyramid.levels_for_min_face`). Faces come from the scanner's
grouping of landmark detections (`--min_score` on the landmark response), or, with
`--face_classifier`, from proposals re-scored by the face/non-face CNN. `--json` writes
every face (box, score, landmarks; null where a landmark type was not found) per input.
Folders and videos show a progress bar.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Iterator, Sequence
from typing import NoReturn

import cv2
import numpy as np
from absl import flags

from lmjax.scan import detect
from lmjax.viz import draw

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


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
  flags.DEFINE_float('threshold', 0.2, 'candidate response threshold', **kw)
  flags.DEFINE_float('min_score', None, 'face score threshold (see scan.detect)', **kw)
  flags.DEFINE_string(
    'face_classifier', None, 'face/non-face CNN folder (re-scores proposals)', **kw
  )
  flags.DEFINE_bool('backbone_only', False, 'skip the branch refinement', **kw)
  flags.mark_flags_as_mutual_exclusive(['levels', 'min_face'], flag_values=fv)


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
  except flags.Error as e:
    _usage_error(str(e))
  if len(rest) != 1:
    _usage_error(f'expected one input (image file, folder of images or video), got {rest}')
  args = types.SimpleNamespace(**fv.flag_values_dict(), input=rest[0])
  if args.min_face is None:
    args.min_face = 40.0
  return args


class _Runner:
  """The scanner (its programs are cached per image size and depth), faces and drawing."""

  def __init__(self, args):
    from lmjax.scan.scanner import Scanner

    self.args = args
    depth = {'levels': args.levels} if args.levels else {'min_face': args.min_face}
    self.scanner = Scanner.load(
      args.checkpoint, refine=not args.backbone_only, threshold=args.threshold, **depth
    )
    self.classifier = None
    if args.face_classifier:
      from lmjax.facecls.classifier import FaceClassifier

      self.classifier = FaceClassifier.load(args.face_classifier)

  def faces(self, image: np.ndarray) -> list[detect.Face]:
    out = self.scanner.scan(image)
    return detect.faces_from_scan(out, image, self.classifier, self.args.min_score)

  def drawn(self, image: np.ndarray, faces: Sequence[detect.Face]) -> np.ndarray:
    out = image
    for face in faces:
      out = draw.draw_landmarks(out, face.points, face.box, self.scanner.schema)
    return out


def _record(name: str, faces: Sequence[detect.Face]) -> dict:
  nan_to_none = lambda p: [None if np.isnan(v).any() else [float(v[0]), float(v[1])] for v in p]
  return {
    'input': name,
    'faces': [
      {'box': [float(v) for v in f.box], 'score': f.score, 'points': nan_to_none(f.points)}
      for f in faces
    ],
  }


def _video_frames(cap) -> Iterator[np.ndarray]:
  """RGB frames of an open `cv2.VideoCapture` until its end."""
  while True:
    ok, frame = cap.read()
    if not ok:
      return
    yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _scan_video(runner: _Runner, args) -> list[dict]:
  from tqdm import tqdm

  cap = cv2.VideoCapture(args.input)
  if not cap.isOpened():
    raise ValueError(f'{args.input}: cannot open the video')
  total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
  fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
  writer, records = None, []
  try:
    for i, frame in enumerate(tqdm(_video_frames(cap), total=total, desc='frames')):
      faces = runner.faces(frame)
      records.append(_record(f'{args.input}#{i}', faces))
      if args.out:
        if writer is None:
          h, w = frame.shape[:2]
          writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
        writer.write(cv2.cvtColor(runner.drawn(frame, faces), cv2.COLOR_RGB2BGR))
  finally:
    cap.release()
    if writer is not None:
      writer.release()
  if not records:
    raise ValueError(f'{args.input}: no frame could be read')
  return records


def _scan_images(runner: _Runner, args, paths: Sequence[str], folder: bool) -> list[dict]:
  from tqdm import tqdm

  if folder and args.out:
    os.makedirs(args.out, exist_ok=True)
  names = draw.output_names(paths) if folder else [args.out]
  records = []
  for path, name in zip(tqdm(paths, desc='images', disable=not folder), names, strict=True):
    image = draw.read_image(path, '--input')
    faces = runner.faces(image)
    records.append(_record(path, faces))
    if args.out:
      target = os.path.join(args.out, name) if folder else name
      draw.write_image(target, runner.drawn(image, faces))
    if not folder:
      print(f'{path}: {len(faces)} face(s)')
  return records


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns 0, or exits with a message (2 for a bad command line)."""
  args = parse_flags(argv)
  try:
    return _main(args)
  except (draw.DrawError, ValueError, FileNotFoundError) as e:
    raise SystemExit(f'lmjax-scan: {e}') from None


def _main(args) -> int:
  if not os.path.exists(args.input):
    raise FileNotFoundError(f'{args.input} does not exist (expected an image, folder or video)')
  runner = _Runner(args)
  if os.path.isdir(args.input):
    paths = draw.image_files(args.input)
    records = _scan_images(runner, args, paths, folder=True)
  elif args.input.lower().endswith(VIDEO_EXTENSIONS):
    records = _scan_video(runner, args)
  else:
    records = _scan_images(runner, args, [args.input], folder=False)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(records, f, indent=1)
  total = sum(len(r['faces']) for r in records)
  print(f'{len(records)} input(s), {total} face(s)', file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
