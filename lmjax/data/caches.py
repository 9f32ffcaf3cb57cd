"""Face-region caches: a tfds split → every face resampled once into a square region.

Training on face crops never waits for the host: every face of a split is resampled once into
a square *region* around its box (`image_ops.extract_region`; 2.2 × the box side at twice the
crop resolution by default, so that the evaluation crop is an exact sub-grid of the region),
and the whole cache is placed on the accelerators. A train step then receives only example
indices and a step number, gathers its regions on device and runs the random crop/affine
augmentation inside the jitted step (`lmjax.core.augment`). JPEG re-compression cannot run under
jit, so the cache can hold JPEG-degraded copies of every region that the step picks at random.
`load_caches` is the one loader of all trainers: (train, validation) caches of `config.data`
(resolved through the dataset table), never falling back to another dataset.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh
from tqdm import tqdm

from lmjax.core import geometry, image_ops
from lmjax.data import batching, datasets
from lmjax.data.datasets import table


@dataclasses.dataclass
class RegionCache:
  """Every face of a split as a fixed-size region, ready to be placed on device.

  Attributes:
    regions: uint8 [N, V, R, R, C]; V variants per face (0 = clean, >0 = JPEG-degraded).
    landmarks: float32 [N, K, 2] in region pixels.
    visible: bool [N, K].
    bbox: float32 [N, 4] face box in region pixels.
    region_to_image: float32 [N, 2, 3] affine mapping region pixels to original image pixels.
    image_landmarks: float32 [N, K, 2] ground truth in original image pixels.
    image_bbox: float32 [N, 4] face box in original image pixels.
    image_ids: N identifiers.
  """

  regions: np.ndarray
  landmarks: np.ndarray
  visible: np.ndarray
  bbox: np.ndarray
  region_to_image: np.ndarray
  image_landmarks: np.ndarray
  image_bbox: np.ndarray
  image_ids: list[str]

  def __len__(self) -> int:
    return len(self.image_ids)

  def crop_to_image_affines(self, size: int, crop_scale: float) -> np.ndarray:
    """float64 [N, 2, 3]: test-crop pixels (the square of `crop_scale` × the box, resampled to
    `size`) -> original image pixels, face by face."""
    A = geometry.crop_affine(self.bbox.astype(np.float64), size, crop_scale)  # region -> crop
    return geometry.compose_affine(
      self.region_to_image.astype(np.float64), geometry.invert_affine(A)
    )

  def crop_to_image(self, crop_points: np.ndarray, size: int, crop_scale: float) -> np.ndarray:
    """Maps points [N, ..., K, 2] in test-crop pixels back to original image pixels."""
    to_image = self.crop_to_image_affines(size, crop_scale)
    extra = crop_points.ndim - 3  # e.g. the head axis of MCL predictions
    to_image = to_image.reshape(len(self), *([1] * extra), 2, 3)
    return geometry.apply_affine(crop_points.astype(np.float64), to_image).astype(np.float32)

  def device_arrays(self, mesh: Mesh) -> dict[str, jax.Array]:
    """The arrays a jitted step reads, replicated over `mesh`."""
    keys = ('regions', 'landmarks', 'visible', 'bbox')
    return batching.replicate({k: getattr(self, k) for k in keys}, mesh)


def cache_regions(
  source: Sequence[Mapping[str, Any]],
  *,
  region_size: int,
  region_scale: float,
  grayscale: bool,
  jpeg_variants: int = 0,
  jpeg_quality: tuple[int, int] = (30, 90),
  seed: int = 0,
  progress: bool = True,
) -> RegionCache:
  """Resamples every face of `source` into a region of `region_size`² pixels.

  Args:
    source: random-access examples with image, landmarks, visible, bbox, image_id.
    region_size: R, side of the cached region in pixels.
    region_scale: region side / longer side of the face box.
    grayscale: store one luma channel instead of RGB.
    jpeg_variants: number of extra JPEG-degraded copies per face (quality uniform in
      `jpeg_quality`, drawn from `seed` and the face index).
    jpeg_quality: inclusive quality range of the degraded copies.
    seed: seed of the JPEG qualities.
    progress: show a progress bar.

  Returns:
    The filled `RegionCache`.
  """
  n = len(source)
  if n == 0:
    raise ValueError('cannot cache an empty split')
  it = tqdm(range(n), desc='caching face regions', disable=not progress, mininterval=2)
  fields: dict[str, list] = {
    k: []
    for k in (
      'regions',
      'landmarks',
      'visible',
      'bbox',
      'region_to_image',
      'image_landmarks',
      'image_bbox',
      'image_ids',
    )
  }
  for i in it:
    ex = datasets.decode(source[i])
    image = ex['image']
    if grayscale:
      image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    reg = image_ops.extract_region(image, ex['bbox'], ex['landmarks'], region_size, region_scale)
    variants = [reg['region']]
    rng = np.random.default_rng([seed, i])
    for _ in range(jpeg_variants):
      quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
      variants.append(image_ops.jpeg_recompress(reg['region'], quality))
    fields['regions'].append(np.stack(variants))
    fields['landmarks'].append(reg['landmarks'])
    fields['visible'].append(ex['visible'])
    fields['bbox'].append(reg['bbox'])
    fields['region_to_image'].append(geometry.invert_affine(reg['affine']))
    fields['image_landmarks'].append(ex['landmarks'])
    fields['image_bbox'].append(ex['bbox'])
    fields['image_ids'].append(ex['image_id'])
  ids = fields.pop('image_ids')
  arrays = {k: np.stack(v) for k, v in fields.items()}
  arrays['regions'] = (
    arrays['regions'].reshape(n, jpeg_variants + 1, region_size, region_size, -1).astype(np.uint8)
  )
  for k in ('landmarks', 'bbox', 'region_to_image', 'image_landmarks', 'image_bbox'):
    arrays[k] = arrays[k].astype(np.float32)
  arrays['visible'] = arrays['visible'].astype(np.bool_)
  return RegionCache(**arrays, image_ids=ids)


def split_train_validation(
  cache: RegionCache, num_validation: int, seed: int = 0
) -> tuple[RegionCache, RegionCache]:
  """Deterministic random split of a cache into (train, validation) by face.

  The rule is `lmjax.data.datasets.table.held_out_split` (by image id, then seeded shuffle).
  """
  train, val = table.held_out_split(cache.image_ids, num_validation, seed)
  return subset(cache, train), subset(cache, val)


def subset(cache: RegionCache, index: np.ndarray) -> RegionCache:
  """The faces of `cache` at `index`."""
  kw = {
    f.name: getattr(cache, f.name)[index]
    for f in dataclasses.fields(cache)
    if f.name != 'image_ids'
  }
  return RegionCache(**kw, image_ids=[cache.image_ids[i] for i in index])


def missing_data_message(data: ml_collections.ConfigDict) -> str:
  """What to do when the dataset of a resolved `config.data` block is not on disk."""
  return (
    f'dataset {data.name!r} expects its official files in '
    f'{os.path.abspath(data.manual_dir)!r} (set --config.data.manual_dir=DIR to '
    'point elsewhere; the README lists the layout per dataset). To run without any '
    'download on the embedded synthetic faces instead, add `:data=synthetic` to the config '
    'path, e.g. --config=configs/mcl68.py:runlocal,data=synthetic'
  )


def load_caches(
  config: ml_collections.ConfigDict,
) -> tuple[RegionCache, RegionCache]:
  """(train, validation) region caches of `config.data`; never falls back to another dataset.

  `config.data` fields left at None take the dataset table's value (`datasets.table.resolve`).
  The validation set is `data.val_split` when set, else `num_validation` faces carved
  deterministically out of the training split.

  Raises:
    datasets.DatasetFormatError: the dataset's files are missing, with instructions.
  """
  d = table.resolve(config.data, config.model.num_points)
  kwargs = dict(
    manual_dir=d.manual_dir or None, data_dir=d.data_dir or None, config=builder_config(d)
  )
  try:
    train_source = datasets.load(d.name, d.train_split, **kwargs)
    val_source = datasets.load(d.name, d.val_split, **kwargs) if d.val_split else None
  except datasets.DatasetFormatError as e:
    raise datasets.DatasetFormatError(f'{e}\n\n{missing_data_message(d)}') from None
  schema = datasets.schema_of(train_source)
  if schema.num_points != config.model.num_points:
    raise ValueError(
      f'dataset {d.name!r} has {schema.num_points} landmarks but the model is '
      f'configured for {config.model.num_points}'
    )
  i = config.input
  cache_kw = dict(
    region_size=i.region_size,
    region_scale=i.region_scale,
    grayscale=i.grayscale,
    jpeg_quality=(i.jpeg_quality_min, i.jpeg_quality_max),
    seed=config.seed,
  )
  train = cache_regions(train_source, jpeg_variants=i.jpeg_variants, **cache_kw)
  if val_source is not None:
    val = cache_regions(val_source, **cache_kw)
  else:
    train, val = split_train_validation(train, d.num_validation, d.split_seed)
    val.regions = val.regions[:, :1]  # validation never sees JPEG copies
  logging.info('%s: %d train / %d validation faces', d.name, len(train), len(val))
  return train, val


def builder_config(d: ml_collections.ConfigDict):
  """The tfds builder config of a resolved `config.data` block (`datasets.table.resolve`): a
  config name, or a resized synthetic config."""
  if d.name == 'synthetic' and (d.synthetic_train or d.synthetic_validation):
    from lmjax.data.datasets import synthetic

    return synthetic.make_config(
      d.builder_config,
      num_train=d.synthetic_train or None,
      num_validation=d.synthetic_validation or None,
      num_test=d.synthetic_validation or None,  # the test split is not used by training
    )
  return d.builder_config or None
