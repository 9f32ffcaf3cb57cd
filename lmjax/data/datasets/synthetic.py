"""The embedded synthetic dataset: rendered faces with exact landmarks, no download needed.

Faces come from `lmjax.synthface` (a 3D face model with identity, expression and pose, drawn
with skin shading, hair, occluders, clutter and camera effects). Configs:

  face68 (default)  one face per 128×128 image, 68 points
  face5             the same images with `landmarks.five_from_68` points
  scene68 / scene5  320×240 scenes with 0-5 faces (some empty, as negatives)

Splits and default sizes: face configs train 4000 / validation 500 / test 500; scene configs
train 1000 / validation 200 / test 200. `bbox` is the tight box of the 68 ground-truth points
(the 300-W protocol; also for the 5-point configs) and `visible` is all True: positions are
exact even where a face is occluded or leaves the frame. The contour points are projections
of the 3D jaw (the 3D-landmark convention): under yaw the far-side ones lie hidden inside the
face region instead of sliding to its visible outline as 300-W annotators place them.

Determinism: example i of a split is rendered from the seed (stream, split seed, i), so it is
identical on every build, whatever the number of worker processes, and face5 / scene5 show
exactly the images of face68 / scene68.

Other sizes: `make_config` returns a config with a size-specific name (tfds refuses a custom
config named like a predefined one, and the name keeps builds of different sizes apart)::

  config = synthetic.make_config('face68', num_train=64, num_validation=16, num_test=16)
  builder = synthetic.Synthetic(config=config, data_dir=..., file_format='array_record')
  builder.download_and_prepare()
  train = builder.as_data_source(split='train')

Splits of `PARALLEL_MIN` or more examples are rendered in `spawn`ed worker processes (one per
core, at most `MAX_WORKERS`); as usual with multiprocessing, a script that builds the dataset
must guard its entry point with `if __name__ == '__main__':`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from lmjax import synthface
from lmjax.core import landmarks as lm
from lmjax.data.datasets import common

SPLIT_SEEDS = {'train': 1, 'validation': 2, 'test': 3}
_STREAMS = {False: 68, True: 320}  # seed stream of single faces / scenes
PARALLEL_MIN = 400
MAX_WORKERS = 8


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """Landmark set, single faces or scenes, image size (height, width) and split sizes."""

  num_points: int = 68
  multiface: bool = False
  image_size: tuple[int, int] = (128, 128)
  num_train: int = 4000
  num_validation: int = 500
  num_test: int = 500

  def split_sizes(self) -> dict[str, int]:
    return {'train': self.num_train, 'validation': self.num_validation, 'test': self.num_test}


def _face_config(name: str, num_points: int) -> SyntheticConfig:
  return SyntheticConfig(
    name=name, num_points=num_points, description=f'one face per 128×128 image, {num_points} points'
  )


def _scene_config(name: str, num_points: int) -> SyntheticConfig:
  return SyntheticConfig(
    name=name,
    num_points=num_points,
    multiface=True,
    image_size=(240, 320),
    num_train=1000,
    num_validation=200,
    num_test=200,
    description=f'320×240 scenes with 0-5 faces, {num_points} points',
  )


CONFIGS = {
  'face68': _face_config('face68', 68),
  'face5': _face_config('face5', 5),
  'scene68': _scene_config('scene68', 68),
  'scene5': _scene_config('scene5', 5),
}


def make_config(
  base: str = 'face68',
  *,
  num_train: int | None = None,
  num_validation: int | None = None,
  num_test: int | None = None,
  image_size: tuple[int, int] | None = None,
) -> SyntheticConfig:
  """A predefined config with other split sizes or image size, under its own name.

  Args:
    base: one of `CONFIGS`.
    num_train: train size (None keeps the base size); likewise the other sizes.
    num_validation: validation size.
    num_test: test size.
    image_size: (height, width).

  Returns:
    The base config itself when nothing changes, else a copy named e.g. `face68_64_16_16`
    (plus `_HxW` when the image size differs).
  """
  if base not in CONFIGS:
    raise KeyError(f'unknown synthetic config {base!r}; known: {sorted(CONFIGS)}')
  cfg = CONFIGS[base]
  changes = {
    k: v
    for k, v in (
      ('num_train', num_train),
      ('num_validation', num_validation),
      ('num_test', num_test),
      ('image_size', image_size),
    )
    if v is not None
  }
  if all(getattr(cfg, k) == v for k, v in changes.items()):
    return cfg
  new = dataclasses.replace(cfg, **changes)
  name = f'{base}_{new.num_train}_{new.num_validation}_{new.num_test}'
  if new.image_size != cfg.image_size:
    name += f'_{new.image_size[0]}x{new.image_size[1]}'
  return dataclasses.replace(new, name=name)


def _render(task: tuple[bool, tuple[int, int], tuple[int, ...]]) -> dict:
  """Worker: renders one example and encodes its image (top level, so it pickles)."""
  multiface, image_size, seed = task
  if multiface:
    out = synthface.render_scene(seed, image_size)
  else:
    out = synthface.render_face_example(seed, image_size)
  out['image'] = common.encode_png(out['image'])
  return out


def _rendered(tasks: list, workers: int) -> Iterator[dict]:
  """Renders `tasks` in order, in a pool of `workers` processes when workers > 1."""
  if workers <= 1:
    yield from map(_render, tasks)
    return
  with multiprocessing.get_context('spawn').Pool(workers) as pool:
    yield from pool.imap(_render, tasks, chunksize=8)


def _labels(points68: np.ndarray, boxes: np.ndarray, num_points: int) -> dict[str, np.ndarray]:
  """Label features of one face ([68, 2] points, [4] box) or of stacked faces ([N, ...])."""
  points = points68 if num_points == 68 else lm.five_from_68(points68)
  return {
    'landmarks': points.astype(np.float32),
    'visible': np.ones(points.shape[:-1], np.bool_),
    'bbox': boxes.astype(np.float32),
  }


def _num_workers(num_examples: int) -> int:
  """Worker processes for a split: one per core for big splits, none inside a daemon."""
  if num_examples < PARALLEL_MIN or multiprocessing.current_process().daemon:
    return 1
  return min(os.cpu_count() or 1, MAX_WORKERS)


class Synthetic(common.LandmarkBuilder):
  """Procedurally rendered faces (68 or 5 points; single faces or multi-face scenes)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS: ClassVar[list[SyntheticConfig]] = list(CONFIGS.values())
  DEFAULT_CONFIG_NAME = 'face68'
  NUM_POINTS = 68
  DESCRIPTION = (
    'Synthetic faces rendered from a 3D face model with exact landmarks (lmjax.synthface).'
  )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {
      split: self._generate_examples(split, n)
      for split, n in self.builder_config.split_sizes().items()
      if n > 0
    }

  def _generate_examples(self, split: str, num_examples: int):
    cfg = self.builder_config
    stream = _STREAMS[cfg.multiface]
    tasks = [
      (cfg.multiface, tuple(cfg.image_size), (stream, SPLIT_SEEDS[split], i))
      for i in range(num_examples)
    ]
    for i, out in enumerate(_rendered(tasks, _num_workers(num_examples))):
      image_id = f'{split}_{i:06d}'
      example = {'image': out['image'], 'image_id': image_id}
      if cfg.multiface:
        points = np.array([f['landmarks'] for f in out['faces']], np.float32).reshape(-1, 68, 2)
        boxes = np.array([f['bbox'] for f in out['faces']], np.float32).reshape(-1, 4)
        example['faces'] = _labels(points, boxes, cfg.num_points)
      else:
        example.update(_labels(out['landmarks'], out['bbox'], cfg.num_points))
      yield i, example
