"""Region caches, stateless train batches, sharding over a ('data',) mesh, padded eval batches."""

import jax
import numpy as np
import pytest

from lmjax.core import geometry
from lmjax.data import batching, caches
from lmjax.data.datasets import common


def _source(n=6, k=5):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    image = rng.integers(0, 255, (60 + i, 80, 3), dtype=np.uint8)
    points = rng.uniform(20, 50, (k, 2)).astype(np.float32)
    out.append(
      {
        'image': image,
        'landmarks': points,
        'visible': np.ones(k, bool),
        'bbox': common.tight_box(points),
        'image_id': f'img{i}'.encode(),
      }
    )
  return out


def test_cache_regions_geometry_and_jpeg_variants():
  source = _source()
  cache = caches.cache_regions(
    source, region_size=40, region_scale=2.2, grayscale=True, jpeg_variants=2, progress=False
  )
  assert cache.regions.shape == (6, 3, 40, 40, 1) and cache.regions.dtype == np.uint8
  assert cache.image_ids == [f'img{i}' for i in range(6)]
  # Region -> image affine maps the cached landmarks back onto the originals.
  back = geometry.apply_affine(cache.landmarks.astype(np.float64), cache.region_to_image)
  np.testing.assert_allclose(back, cache.image_landmarks, atol=1e-3)
  # Variant 0 is the clean region; the JPEG copies differ from it but only a little.
  diff = np.abs(cache.regions[:, 1:].astype(int) - cache.regions[:, :1].astype(int))
  assert diff.max() > 0 and diff.mean() < 40


def test_split_train_validation_is_deterministic_and_disjoint():
  cache = caches.cache_regions(
    _source(10), region_size=16, region_scale=2.2, grayscale=True, progress=False
  )
  train, val = caches.split_train_validation(cache, 3, seed=1)
  _, val2 = caches.split_train_validation(cache, 3, seed=1)
  assert val.image_ids == val2.image_ids and len(train) == 7 and len(val) == 3
  assert not set(train.image_ids) & set(val.image_ids)
  # Independent of the order the source stored the faces in.
  reordered = caches.subset(cache, np.arange(10)[::-1])
  _, val3 = caches.split_train_validation(reordered, 3, seed=1)
  assert sorted(val3.image_ids) == sorted(val.image_ids)
  with pytest.raises(ValueError, match='num_validation'):
    caches.split_train_validation(cache, 10)


def test_train_indices_are_stateless_epoch_permutations():
  n, b = 10, 4
  steps = [batching.train_indices(s, n, b, seed=3) for s in range(5)]  # 20 = 2 epochs
  flat = np.concatenate(steps)
  assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
  # Same step -> same batch, whatever happened before (resume-safe).
  np.testing.assert_array_equal(batching.train_indices(3, n, b, seed=3), steps[3])
  assert not np.array_equal(batching.train_indices(3, n, b, seed=4), steps[3])


def test_eval_batches_pad_with_mask():
  arrays = {'x': np.arange(7), 'y': np.ones((7, 2))}
  batches = list(batching.eval_batches(arrays, 3))
  assert [b['x'].shape for b in batches] == [(3,)] * 3
  np.testing.assert_array_equal(batches[-1]['_mask'], [True, False, False])
  np.testing.assert_array_equal(batches[-1]['x'], [6, 0, 0])
  assert sum(int(b['_mask'].sum()) for b in batches) == 7


def test_shard_over_data_mesh():
  mesh = batching.make_mesh()
  assert mesh.axis_names == ('data',) and mesh.size == jax.device_count()
  batch = batching.shard({'idx': np.arange(4 * mesh.size)}, mesh)
  assert batch['idx'].sharding.spec == jax.sharding.PartitionSpec('data')
  assert len(batch['idx'].addressable_shards) == mesh.size
  cache = caches.cache_regions(
    _source(2), region_size=16, region_scale=2.2, grayscale=True, progress=False
  )
  data = cache.device_arrays(mesh)
  assert data['regions'].sharding.is_fully_replicated


def test_cpu_device_count_divides_every_batch(monkeypatch):
  monkeypatch.setattr(batching.os, 'sched_getaffinity', lambda pid: set(range(4)), raising=False)
  assert batching.cpu_device_count(0, [64]) == 4
  assert batching.cpu_device_count(0, [40, 20, 32]) == 4
  assert batching.cpu_device_count(0, [30]) == 3
  assert batching.cpu_device_count(0, [7]) == 1
  assert batching.cpu_device_count(3, [64]) == 3  # an explicit count is kept
