"""Composite multi-face scenes: real held-out faces pasted onto procedural backgrounds.

An evaluation set for an unconstrained landmark scanner. A scene is an `image_size` (h, w)
cluttered background (`synthface.background.background`) with 0 to `max_faces` real faces: the
photo region around each face box, enlarged `context`× (clipped to the photo), resized so that
the longer box side is log-uniform in `face_size` px, scaled in brightness by up to
±`brightness` and pasted with a soft elliptical alpha mask (also feathered along the photo's
border). Rejection sampling keeps every pasted region off the other faces' boxes; a face that
does not fit shrinks, and is dropped if it does not fit at the smallest size. Landmarks and box
go through the pixels' affine; `visible` = the point lies in the image.

Source faces are the validation faces training holds out of the `train` split of
`lmjax.data.datasets.load(source, 'train')` (default builder config):
`caches.split_train_validation(num_validation, split_seed)` with the training defaults
(MTFL 500, 300-W 200, seed 0; `lmjax.data.datasets.table`). They are dealt to the scenes
from successive shuffles, so each is used at most ⌈faces needed / num_validation⌉ ≤
`max_face_uses` times. The manual directory is the source's folder. Configs:

  mtfl        MTFL faces, 5 points, box = `mtfl.face_box`
  the300w     300-W faces, 5 points (`landmarks.five_from_68`), box = tight box of the 68 points
  the300w68   300-W faces, 68 points

Split `validation` (`num_scenes`, default 200). Scene i depends only on (seed, i) and the
config; metadata `face_sources` lists the source image ids of each scene's faces. Other
field values: `make_config`.
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.core import image_ops
from lmjax.core import landmarks as lm
from lmjax.data.datasets import common, mtfl, table, the300w
from lmjax.synthface.background import background, to_uint8

SPLIT = 'validation'
_SPLIT_SEED = 2
_ELLIPSE_WIDTH = 0.9  # alpha ellipse: width / height
SOURCES = {'mtfl': mtfl, '300w': the300w}
MANUAL_DOWNLOAD_INSTRUCTIONS = (
  'composite_multiface pastes the held-out validation faces of MTFL or 300-W: the manual '
  'directory is the source dataset folder.\n'
  f'MTFL: {mtfl.MANUAL_DOWNLOAD_INSTRUCTIONS}300-W: {the300w.MANUAL_DOWNLOAD_INSTRUCTIONS}'
)


@dataclasses.dataclass
class CompositeConfig(tfds.core.BuilderConfig):
  """Source faces, landmark set, scene layout and size of the `validation` split."""

  source: str = 'mtfl'
  num_points: int = 5
  num_validation: int = 500
  split_seed: int = 0
  num_scenes: int = 200
  image_size: tuple[int, int] = (480, 640)
  max_faces: int = 6
  face_size: tuple[float, float] = (40.0, 200.0)
  context: float = 1.6
  feather: float = 0.15
  brightness: float = 0.15
  max_face_uses: int = 4
  jpeg_quality: int = 95  # 0 stores lossless PNG
  seed: int = 0


CONFIGS = {
  'mtfl': CompositeConfig('mtfl'),
  'the300w': CompositeConfig('the300w', source='300w', num_validation=200),
  'the300w68': CompositeConfig('the300w68', source='300w', num_points=68, num_validation=200),
}


def make_config(base: str = 'mtfl', **changes) -> CompositeConfig:
  """A predefined config with other field values, named e.g. `mtfl_num_scenes10`."""
  if base not in CONFIGS:
    raise KeyError(f'unknown composite config {base!r}; known: {sorted(CONFIGS)}')
  cfg = CONFIGS[base]
  changes = {k: v for k, v in changes.items() if getattr(cfg, k) != v}
  if not changes:
    return cfg
  text = lambda v: 'x'.join(map(str, v)) if isinstance(v, tuple | list) else str(v)
  name = '_'.join([base, *(f'{k}{text(v)}' for k, v in sorted(changes.items()))])
  return dataclasses.replace(cfg, name=name, **changes)


def check_config(cfg: CompositeConfig) -> None:
  """Raises ValueError for a source or landmark set the builder cannot produce."""
  if cfg.source not in SOURCES:
    raise ValueError(f'composite source must be one of {sorted(SOURCES)}, got {cfg.source!r}')
  if cfg.num_points not in ((5,) if cfg.source == 'mtfl' else (5, 68)):
    raise ValueError(f'composite source {cfg.source!r} cannot give {cfg.num_points} points')


def fingerprint(manual_dir: str) -> str:
  """Content fingerprints of the MTFL and 300-W files in `manual_dir`, with the builder versions.

  Used to detect a stale prepared dataset: editing a source annotation rebuilds the scenes.
  """
  return (
    f'mtfl {mtfl.Mtfl.VERSION}: {mtfl.fingerprint(manual_dir)} | '
    f'300w {the300w.The300w.VERSION}: {the300w.fingerprint(manual_dir)}'
  )


def check_split(manual_dir: str, split: str, builder_config: CompositeConfig | None = None):
  """Raises a clear error for an unknown split or when the source's train split is missing."""
  cfg = builder_config or CONFIGS['mtfl']
  if split != SPLIT:
    raise common.DatasetFormatError(f'composite_multiface has no split {split!r} (only {SPLIT})')
  check_config(cfg)
  SOURCES[cfg.source].check_split(manual_dir, 'train', None)


def validation_indices(image_ids: list[str], num_validation: int, seed: int) -> np.ndarray:
  """Sorted indices of the faces the training caches hold out (`table.held_out_split`)."""
  return table.held_out_split(image_ids, num_validation, seed)[1]


def _rngs(cfg: CompositeConfig, i: int) -> tuple[np.random.Generator, np.random.Generator]:
  """(layout, background) generators of scene i."""
  seq = np.random.SeedSequence([cfg.seed, _SPLIT_SEED, i])
  return tuple(np.random.default_rng(s) for s in seq.spawn(2))


def deal_faces(cfg: CompositeConfig, num_faces: int) -> list[np.ndarray]:
  """Per scene, positions in the validation set of the faces it shows (before placement)."""
  counts = [int(_rngs(cfg, i)[0].integers(0, cfg.max_faces + 1)) for i in range(cfg.num_scenes)]
  rounds = -(-sum(counts) // num_faces)
  if rounds > cfg.max_face_uses:
    raise ValueError(
      f'{cfg.num_scenes} scenes need {sum(counts)} faces, i.e. each of the {num_faces} '
      f'validation faces {rounds} times (max_face_uses={cfg.max_face_uses})'
    )
  pool = np.concatenate(
    [np.random.default_rng([cfg.seed, 7, r]).permutation(num_faces) for r in range(rounds)]
    or [np.zeros(0, int)]
  )
  return np.split(pool[: sum(counts)], np.cumsum(counts)[:-1])


def _overlaps(a, b) -> bool:
  return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _patch(face: dict, side: float, cfg: CompositeConfig):
  """A face's photo region resized for a box side of `side` px, with its soft mask.

  Returns:
    (patch uint8, alpha float32, scale [2], offset [2]): patch px = photo px × scale + offset.
  """
  image, box = face['image'], face['bbox'].astype(np.float64)
  h, w = image.shape[:2]
  centre, own = (box[:2] + box[2:]) / 2, float(np.max(box[2:] - box[:2]))
  half = cfg.context * own / 2
  x0, y0 = (max(0, round(c - half)) for c in centre)
  x1, y1 = min(w, round(centre[0] + half) + 1), min(h, round(centre[1] + half) + 1)
  crop = image[y0:y1, x0:x1]
  size = np.maximum(np.round(np.array([x1 - x0, y1 - y0]) * side / own), 1).astype(int)
  scale = size / [x1 - x0, y1 - y0]
  interp = cv2.INTER_AREA if side < own else cv2.INTER_LINEAR
  patch = cv2.resize(crop, tuple(int(s) for s in size), interpolation=interp)
  offset = 0.5 * scale - 0.5 - np.array([x0, y0]) * scale  # photo -> patch: p * scale + offset
  xs, ys = np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32)
  c = centre * scale + offset
  rx, ry = _ELLIPSE_WIDTH * half * scale[0], half * scale[1]  # a head is taller than wide
  r = np.hypot((xs[None, :] - c[0]) / rx, (ys[:, None] - c[1]) / ry)
  feather_px = max(cfg.feather * half * float(scale.min()), 1.0)
  edge = np.minimum.outer(  # distance to the border of the clipped photo region
    np.minimum(ys + 0.5, size[1] - 0.5 - ys), np.minimum(xs + 0.5, size[0] - 0.5 - xs)
  )
  alpha = np.clip((1 - r) / cfg.feather, 0, 1) * np.clip(edge / feather_px, 0, 1)
  return patch, alpha.astype(np.float32), scale, offset


def compose_scene(cfg: CompositeConfig, i: int, faces: list[dict]) -> tuple[np.ndarray, list]:
  """Scene i with `faces` (decoded source examples): uint8 image and the placed faces.

  Returns:
    (image [H, W, 3], list of (index into `faces`, landmarks [K, 2], bbox [4])).
  """
  layout, bg_rng = _rngs(cfg, i)
  layout.integers(0, cfg.max_faces + 1)  # the face count, drawn by `deal_faces`
  height, width = cfg.image_size
  canvas = background(bg_rng, height, width)
  lo, hi = np.log(cfg.face_size[0]), np.log(cfg.face_size[1])
  sides = np.exp(layout.uniform(lo, hi, len(faces)))
  placed, out = [], []  # placed: (box, region) in scene pixels
  for j in np.argsort(-sides, kind='stable'):
    side = float(sides[j])
    for _ in range(8):
      patch, alpha, scale, offset = _patch(faces[j], side, cfg)
      box = faces[j]['bbox'] * np.tile(scale, 2) + np.tile(offset, 2)
      ph, pw = patch.shape[:2]
      lo_xy, hi_xy = np.ceil(-box[:2]), np.floor([width - 1, height - 1] - box[2:])
      hit = None
      for _ in range(30 if np.all(lo_xy <= hi_xy) else 0):
        dx, dy = (int(layout.integers(a, b + 1)) for a, b in zip(lo_xy, hi_xy, strict=True))
        moved = box + np.array([dx, dy, dx, dy])
        region = np.array([dx, dy, dx + pw, dy + ph], float)
        if all(not _overlaps(region, b) and not _overlaps(moved, r) for b, r in placed):
          hit = dx, dy, moved, region
          break
      if hit or side <= cfg.face_size[0]:
        break
      side = max(side * 0.85, cfg.face_size[0])
    if hit is None:
      continue
    dx, dy, moved, region = hit
    placed.append((moved, region))
    gain = 1 + layout.uniform(-cfg.brightness, cfg.brightness)
    sx0, sy0, sx1, sy1 = max(dx, 0), max(dy, 0), min(dx + pw, width), min(dy + ph, height)
    p = patch[sy0 - dy : sy1 - dy, sx0 - dx : sx1 - dx].astype(np.float32) * (gain / 255.0)
    a = alpha[sy0 - dy : sy1 - dy, sx0 - dx : sx1 - dx, None]
    canvas[sy0:sy1, sx0:sx1] = a * np.clip(p, 0, 1) + (1 - a) * canvas[sy0:sy1, sx0:sx1]
    points = faces[j]['landmarks'] * scale + offset + [dx, dy]
    out.append((int(j), points.astype(np.float32), moved.astype(np.float32)))
  return to_uint8(canvas), out


def _decode_face(example: dict, num_points: int) -> dict:
  """A skip-decoded source example as {image, landmarks (num_points), bbox, image_id}."""
  raw = np.frombuffer(example['image'], np.uint8)
  image = image_ops.to_rgb(cv2.imdecode(raw, cv2.IMREAD_UNCHANGED), 'source image')
  points = example['landmarks'].astype(np.float32)
  if num_points != len(points):
    points = lm.five_from_68(points)
  image_id = example['image_id'].decode('utf-8')
  return {'image': image, 'landmarks': points, 'bbox': example['bbox'], 'image_id': image_id}


class CompositeMultiface(common.LandmarkBuilder):
  """Held-out MTFL / 300-W faces pasted at varied scales onto cluttered 640×480 scenes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  MULTIFACE = True
  NUM_POINTS = 5
  DESCRIPTION = 'Real validation faces (MTFL or 300-W) composited into multi-face scenes.'
  BUILDER_CONFIGS = list(CONFIGS.values())
  DEFAULT_CONFIG_NAME = 'mtfl'

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    from lmjax.data import datasets

    cfg = self.builder_config
    check_config(cfg)
    manual_dir = os.fspath(dl_manager.manual_dir)
    self.info.metadata['fingerprint'] = fingerprint(manual_dir)
    root = os.fspath(self.data_dir_root)
    datasets.load(cfg.source, 'train', manual_dir=manual_dir, data_dir=root)  # prepares it
    source = datasets.get_builder(cfg.source, data_dir=root).as_data_source(
      split='train',
      decoders={'image': tfds.decode.SkipDecoding()},  # decoded when pasted
    )
    ids = [source[i]['image_id'].decode('utf-8') for i in range(len(source))]
    val = validation_indices(ids, cfg.num_validation, cfg.split_seed)
    scenes = deal_faces(cfg, len(val))
    logging.info('composite %s: %d of %d source faces', cfg.name, len(val), len(ids))
    self.info.metadata['num_source_faces'] = len(val)
    self.info.metadata['face_sources'] = {}
    return {SPLIT: self._generate_examples(source, val, scenes)}

  def _generate_examples(self, source, val: np.ndarray, scenes: list[np.ndarray]):
    cfg = self.builder_config
    k = cfg.num_points
    for i, picks in enumerate(scenes):
      faces = [_decode_face(source[int(val[p])], k) for p in picks]
      image, placed = compose_scene(cfg, i, faces)
      image_id = f'{SPLIT}_{i:06d}'
      self.info.metadata['face_sources'][image_id] = [faces[j]['image_id'] for j, _, _ in placed]
      points = np.array([p for _, p, _ in placed], np.float32).reshape(-1, k, 2)
      yield (
        image_id,
        {
          'image': common.encode_jpeg(image, cfg.jpeg_quality)
          if cfg.jpeg_quality
          else common.encode_png(image),
          'image_id': image_id,
          'faces': {
            'landmarks': points,
            'visible': common.inside_image(points, *cfg.image_size),
            'bbox': np.array([b for _, _, b in placed], np.float32).reshape(-1, 4),
          },
        },
      )
