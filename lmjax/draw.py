"""`python -m lmjax.draw`: predicted landmarks drawn on images (the library is `lmjax.viz.draw`).

    python -m lmjax.draw --checkpoint=runs/mcl68/models/am --image=face.jpg --out=face.png \
        [--box=x0,y0,x1,y1] [--scale=2]
    python -m lmjax.draw --checkpoint=runs/mcl68/models/am --folder=faces/ --out=drawn/

Without `--box` the whole image is the face box, i.e. the image is taken to be a face crop
(the box runs through the centres of the border pixels, (0, 0, W-1, H-1)). `--folder` draws
every image of a folder (not recursive; other files such as `.pts` are ignored) with its whole
image as the box and writes `<out>/<name>.png`. Points are small anti-aliased dots, coloured
per MCL cluster when the model's landmark schema has clusters; the box is a thin white line.

Coordinates are image pixels with pixel centres on integers (the lmjax convention).

Inputs are checked before any work, each failure one line `python -m lmjax.draw: error: ...`
(exit 2): the `--out` path (an extension OpenCV can write, e.g. `.png`, and a parent folder
that exists or can be created), the image files, and the box with the predictors' own check
(`lmjax.models.interface.check_face`: finite, sides of at least 1 pixel, overlapping the image).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import cv2
import numpy as np
from absl import flags

from lmjax.core import head_pose
from lmjax.models.interface import check_face
from lmjax.viz.draw import (
  IMAGE_EXTENSIONS,
  DrawError,
  draw_landmarks,
  image_files,
  output_names,
  parse_box,
  read_image,
  whole_image_box,
  write_image,
)


# ----------------------------------------------------------------------------- commands
def draw_image(
  checkpoint: str,
  image_path: str,
  out: str,
  box: np.ndarray | None = None,
  *,
  head: int = 0,
  scale: float = 1.0,
) -> np.ndarray:
  """Predicts the landmarks of one face and writes the drawing to `out`; returns the points."""
  image = read_image(image_path)
  if box is None:
    box = whole_image_box(image)
  check_image_box(image, box, image_path)
  check_output_file(out)  # before loading the model
  from lmjax.inference import load_predictor

  predictor = load_predictor(checkpoint, head=head)
  points = predictor.predict(image, box)
  pose = head_pose.head_pose_if_known(points, predictor.schema)
  drawn = draw_landmarks(image, points, box, predictor.schema, scale=scale, pose=pose)
  write_image(out, drawn)
  return points


def draw_folder(
  checkpoint: str,
  folder: str,
  out_dir: str,
  *,
  head: int = 0,
  scale: float = 1.0,
  batch_size: int = 32,
  progress: bool = True,
) -> list[str]:
  """Draws every image of `folder` (whole image as the box) into `out_dir`; returns the PNGs."""
  from tqdm import tqdm

  from lmjax.inference import load_predictor

  paths = image_files(folder)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise DrawError(f'--out: {out_dir!r} exists and is not a directory (expected a folder)')
  check_output_folder(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  outputs = [os.path.join(out_dir, n) for n in output_names(paths)]
  pairs = list(zip(paths, outputs, strict=True))
  predictor = load_predictor(checkpoint, head=head)
  with tqdm(total=len(paths), desc='drawing', unit='image', disable=not progress) as bar:
    for start in range(0, len(pairs), batch_size):
      chunk = pairs[start : start + batch_size]
      images = [read_image(p, '--folder') for p, _ in chunk]
      boxes = [whole_image_box(im) for im in images]
      for (path, _), im, b in zip(chunk, images, boxes, strict=True):
        check_image_box(im, b, path, '--folder')
      points = predictor.predict_batch(images, boxes)
      for (_, dst), im, b, pts in zip(chunk, images, boxes, points, strict=True):
        pose = head_pose.head_pose_if_known(pts, predictor.schema)
        write_image(dst, draw_landmarks(im, pts, b, predictor.schema, scale=scale, pose=pose))
        bar.update()
  return outputs


# ----------------------------------------------------------------------------- input checks
def check_image_box(image: np.ndarray, box: np.ndarray, path: str, flag: str = '--image') -> None:
  """Raises DrawError (`--box: ...`, or `<flag>: '<path>': ...` for the image) unless the
  predictors accept the image at `path` and the box (`check_face`)."""
  try:
    check_face(image, box, image_name=repr(path), box_name='--box')
  except ValueError as e:
    message = str(e)
    raise DrawError(message if message.startswith('--box') else f'{flag}: {message}') from None


def check_output_folder(path: str, flag: str = '--out') -> None:
  """Raises DrawError unless the folder `path` exists or can be created (no regular file on
  its way, the nearest existing folder writable)."""
  parent = os.path.abspath(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise DrawError(f'{flag}: {path!r} lies below the file {parent!r} (expected a folder path)')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise DrawError(f'{flag}: cannot create files in {parent!r} (permission denied)')


def check_output_file(path: str) -> None:
  """Raises DrawError unless `--out` can be written as an image: an extension OpenCV writes
  (e.g. `.png`), not a folder, and a parent folder that exists or can be created."""
  expected = f'expected an image file name such as drawn.png ({", ".join(IMAGE_EXTENSIONS)})'
  if os.path.isdir(path) or path.endswith(('/', os.sep)):
    raise DrawError(f'--out: {path!r} is a folder; {expected}')
  if not os.path.splitext(path)[1]:
    raise DrawError(f'--out: {path!r} has no extension; {expected}')
  if not cv2.haveImageWriter(path):
    raise DrawError(f'--out: OpenCV cannot write {os.path.splitext(path)[1]!r} files; {expected}')
  check_output_folder(os.path.dirname(os.path.abspath(path)))


PROG = 'python -m lmjax.draw'
DESCRIPTION = 'Draws the landmarks a model folder predicts on an image (or a folder of them).'


def define_flags(fv: flags.FlagValues) -> None:
  """Defines the command's flags on `fv`."""
  kw = dict(flag_values=fv)
  flags.DEFINE_string(
    'checkpoint', None, 'model folder (model.json + variables/)', required=True, **kw
  )
  flags.DEFINE_string('image', None, 'image file (face crop, or give --box)', **kw)
  flags.DEFINE_string('folder', None, 'folder of images, each drawn with its whole-image box', **kw)
  flags.mark_flags_as_mutual_exclusive(['image', 'folder'], required=True, flag_values=fv)
  flags.DEFINE_string('out', None, 'output PNG (with --folder: output folder)', required=True, **kw)
  flags.DEFINE_string(
    'box', None, 'face box x0,y0,x1,y1 in pixels (default: the whole image)', **kw
  )
  flags.DEFINE_integer('head', 0, 'prediction head of the model', **kw)
  flags.DEFINE_float('scale', 1.0, 'enlarge the output image', **kw)


def _error(message: str) -> NoReturn:
  print(f'{PROG}: error: {message}', file=sys.stderr)
  raise SystemExit(2)


def parse_flags(argv: Sequence[str] | None) -> flags.FlagValues:
  """The parsed flags of `argv` (without the program name; default `sys.argv[1:]`), on a fresh
  `FlagValues`; `--help` prints them and exits 0, a bad command line exits 2 with a message."""
  fv = flags.FlagValues()
  define_flags(fv)
  args = list(sys.argv[1:] if argv is None else argv)
  if {'-h', '--help'} & set(args):
    print(f'usage: {PROG} --checkpoint=DIR (--image=FILE | --folder=DIR) --out=PATH [flags]\n')
    print(f'{DESCRIPTION}\n{fv.get_help(include_special_flags=False)}')
    raise SystemExit(0)
  try:
    rest = fv([PROG, *args])
  except flags.Error as e:
    _error(str(e))
  if len(rest) > 1:
    _error(f'unrecognized arguments: {" ".join(rest[1:])}')
  return fv


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status (2 with a message for bad inputs)."""
  args = parse_flags(argv)
  try:
    if not (math.isfinite(args.scale) and args.scale > 0):
      raise DrawError(f'--scale: expected a positive number, got {args.scale}')
    if args.folder is not None:
      if args.box is not None:
        raise DrawError('--box: not allowed with --folder (every image is its own face box)')
      outputs = draw_folder(
        args.checkpoint, args.folder, args.out, head=args.head, scale=args.scale
      )
      print('\n'.join(outputs))
    else:
      box = None if args.box is None else parse_box(args.box)
      draw_image(args.checkpoint, args.image, args.out, box, head=args.head, scale=args.scale)
      print(args.out)
  except DrawError as e:
    _error(str(e))
  except (FileNotFoundError, ValueError) as e:  # reading the model folder: missing, corrupt
    _error(f'--checkpoint: {e}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
