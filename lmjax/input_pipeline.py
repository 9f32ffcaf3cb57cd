"""Input pipeline: tfds source → cached face regions → fixed-shape, sharded batches.

Training on face crops never waits for the host: every face of a split is resampled once into
a square *region* around its box (`pp.extract_region`; 2.2 × the box side at twice the crop
resolution by default, so that the evaluation crop is an exact sub-grid of the region), and the
whole cache is placed on the accelerators. A train step then receives only example indices and
a step number, gathers its regions on device and runs the random crop/affine augmentation
inside the jitted step (`lmjax.augment`). JPEG re-compression cannot run under jit, so the
cache can hold JPEG-degraded copies of every region that the step picks at random.

Batches use a `('data',)` mesh: the batch axis is sharded over all devices, the cache is
replicated. Evaluation batches are padded to a fixed size and carry a boolean `_mask`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cv2
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from lmjax import datasets, pp


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

  def crop_to_image(self, crop_points: np.ndarray, size: int, crop_scale: float) -> np.ndarray:
    """Maps points [N, ..., K, 2] in test-crop pixels (the square of `crop_scale` × the box,
    resampled to `size`) back to original image pixels, face by face."""
    A = pp.crop_affine(self.bbox.astype(np.float64), size, crop_scale)  # region -> crop
    to_image = pp.compose_affine(self.region_to_image.astype(np.float64), pp.invert_affine(A))
    extra = crop_points.ndim - 3  # e.g. the head axis of MCL predictions
    to_image = to_image.reshape(len(self), *([1] * extra), 2, 3)
    return pp.apply_affine(crop_points.astype(np.float64), to_image).astype(np.float32)

  def device_arrays(self, mesh: Mesh) -> dict[str, jax.Array]:
    """The arrays a jitted step reads, replicated over `mesh`."""
    replicated = NamedSharding(mesh, PartitionSpec())
    keys = ('regions', 'landmarks', 'visible', 'bbox')
    return {k: jax.device_put(getattr(self, k), replicated) for k in keys}


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
    reg = pp.extract_region(image, ex['bbox'], ex['landmarks'], region_size, region_scale)
    variants = [reg['region']]
    rng = np.random.default_rng([seed, i])
    for _ in range(jpeg_variants):
      quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
      variants.append(pp.jpeg_recompress(reg['region'], quality))
    fields['regions'].append(np.stack(variants))
    fields['landmarks'].append(reg['landmarks'])
    fields['visible'].append(ex['visible'])
    fields['bbox'].append(reg['bbox'])
    fields['region_to_image'].append(pp.invert_affine(reg['affine']))
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

  Faces are ordered by image id before shuffling, so the split depends only on the set of
  faces and the seed, not on the order tfds stored them in.
  """
  if not 0 < num_validation < len(cache):
    raise ValueError(f'num_validation must be in (0, {len(cache)}), got {num_validation}')
  order = np.argsort(np.asarray(cache.image_ids))
  perm = order[np.random.default_rng(seed).permutation(len(cache))]
  return subset(cache, np.sort(perm[num_validation:])), subset(
    cache, np.sort(perm[:num_validation])
  )


def subset(cache: RegionCache, index: np.ndarray) -> RegionCache:
  """The faces of `cache` at `index`."""
  kw = {
    f.name: getattr(cache, f.name)[index]
    for f in dataclasses.fields(cache)
    if f.name != 'image_ids'
  }
  return RegionCache(**kw, image_ids=[cache.image_ids[i] for i in index])


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D `('data',)` mesh over `devices` (default: all devices)."""
  devices = list(devices or jax.devices())
  return Mesh(np.asarray(devices), ('data',))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays whose leading axis is the batch."""
  return NamedSharding(mesh, PartitionSpec('data'))


def train_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Example indices of train step `step`: epoch-wise shuffles, stateless in the step.

  The epoch permutation depends only on (seed, epoch), so a resumed run draws exactly the
  batches it would have drawn without the interruption. A batch that crosses an epoch end
  continues with the next epoch's permutation.
  """
  start = step * batch_size
  out = np.empty(batch_size, np.int32)
  filled = 0
  while filled < batch_size:
    epoch, offset = divmod(start + filled, num_examples)
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    take = min(batch_size - filled, num_examples - offset)
    out[filled : filled + take] = perm[offset : offset + take]
    filled += take
  return out


def shard(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a host batch on the mesh, batch axis sharded over `'data'`."""
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }


def eval_batches(
  arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-size batches over arrays sharing a leading axis; the last one is padded.

  Every batch has exactly `batch_size` rows and a bool `_mask` [B] marking real rows, so an
  evaluation step compiles once.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    batch = {}
    for k, v in arrays.items():
      chunk = v[start:stop]
      if stop - start < batch_size:
        pad = np.zeros((batch_size - (stop - start), *chunk.shape[1:]), chunk.dtype)
        chunk = np.concatenate([chunk, pad])
      batch[k] = chunk
    batch['_mask'] = np.arange(batch_size) < (stop - start)
    yield batch
