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

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from lmjax.scan import detect
from lmjax.viz import draw

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='lmjax-scan', description=__doc__.split('\n')[0])
  p.add_argument('input', help='image file, folder of images, or video file')
  p.add_argument('--checkpoint', required=True, help='BB-FCN model folder')
  p.add_argument('--out', help='drawn image / folder / video (default: nothing drawn)')
  p.add_argument('--json', help='write the faces of every input here')
  depth = p.add_mutually_exclusive_group()
  depth.add_argument('--levels', type=int, help='pyramid levels L')
  depth.add_argument('--min_face', type=float, default=40.0, help='smallest face side, pixels')
  p.add_argument('--threshold', type=float, default=0.2, help='candidate response threshold')
  p.add_argument('--min_score', type=float, help='face score threshold (see face_detect)')
  p.add_argument('--face_classifier', help='face/non-face CNN folder to re-score proposals')
  p.add_argument('--backbone_only', action='store_true', help='skip the branch refinement')
  return p


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
  args = _parser().parse_args(argv)
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
