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
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import numpy as np
from absl import flags

from lmjax.viz.draw import (
  DrawError,
  check_box_in_image,
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
  check_box_in_image(box, image, image_path)
  from lmjax.inference import load_predictor

  predictor = load_predictor(checkpoint, head=head)
  points = predictor.predict(image, box)
  write_image(out, draw_landmarks(image, points, box, predictor.schema, scale=scale))
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
  os.makedirs(out_dir, exist_ok=True)
  outputs = [os.path.join(out_dir, n) for n in output_names(paths)]
  pairs = list(zip(paths, outputs, strict=True))
  predictor = load_predictor(checkpoint, head=head)
  with tqdm(total=len(paths), desc='drawing', unit='image', disable=not progress) as bar:
    for start in range(0, len(pairs), batch_size):
      chunk = pairs[start : start + batch_size]
      images = [read_image(p, '--folder') for p, _ in chunk]
      boxes = [whole_image_box(im) for im in images]
      points = predictor.predict_batch(images, boxes)
      for (_, dst), im, b, pts in zip(chunk, images, boxes, points, strict=True):
        write_image(dst, draw_landmarks(im, pts, b, predictor.schema, scale=scale))
        bar.update()
  return outputs


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
  except FileNotFoundError as e:  # from reading the model folder
    _error(f'--checkpoint: {e}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
