"""Draws predicted landmarks on images: `draw_landmarks` for notebooks, and a command line.

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

import argparse
import math
import os
import sys
from collections.abc import Sequence

import numpy as np

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


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog='python -m lmjax.draw',
    description='Draws the landmarks a model folder predicts on an image (or a folder of them).',
  )
  parser.add_argument('--checkpoint', required=True, help='model folder (model.json + variables/)')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--image', help='image file (face crop, or give --box)')
  source.add_argument('--folder', help='folder of images, each drawn with its whole-image box')
  parser.add_argument('--out', required=True, help='output PNG (with --folder: output folder)')
  parser.add_argument('--box', help='face box x0,y0,x1,y1 in pixels (default: the whole image)')
  parser.add_argument('--head', type=int, default=0, help='prediction head of the model')
  parser.add_argument('--scale', type=float, default=1.0, help='enlarge the output image')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status (2 with a message for bad inputs)."""
  parser = _parser()
  args = parser.parse_args(argv)
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
    parser.exit(2, f'{parser.prog}: error: {e}\n')
  except FileNotFoundError as e:  # from reading the model folder
    parser.exit(2, f'{parser.prog}: error: --checkpoint: {e}\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
