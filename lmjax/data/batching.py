"""Input pipeline: tfds source → cached face regions → fixed-shape, sharded batches.

Training on face crops never waits for the host: every face of a split is resampled once into
a square *region* around its box (`image_ops.extract_region`; 2.2 × the box side at twice the crop
resolution by default, so that the evaluation crop is an exact sub-grid of the region), and the
whole cache is placed on the accelerators. A train step then receives only example indices and
a step number, gathers its regions on device and runs the random crop/affine augmentation
inside the jitted step (`lmjax.core.augment`). JPEG re-compression cannot run under jit, so the
cache can hold JPEG-degraded copies of every region that the step picks at random.

Batches use a `('data',)` mesh: the batch axis is sharded over all devices, the cache is
replicated. Evaluation batches are padded to a fixed size and carry a boolean `_mask`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


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


BATCH_BUCKETS = (1, 8, 32, 128)


def run_bucketed(fn, inputs: np.ndarray, buckets: tuple[int, ...] = BATCH_BUCKETS):
  """`fn` over `inputs` [N, ...] in chunks zero-padded to the smallest bucket that fits.

  Each bucket size compiles once. `fn` returns arrays or a pytree of arrays with a leading
  batch axis; the padded rows are dropped and the chunks concatenated (N > 0).
  """
  outs = []
  for start in range(0, len(inputs), buckets[-1]):
    chunk = inputs[start : start + buckets[-1]]
    padded = np.zeros((next(b for b in buckets if b >= len(chunk)), *chunk.shape[1:]), np.float32)
    padded[: len(chunk)] = chunk
    n = len(chunk)
    outs.append(jax.tree.map(lambda a: np.asarray(a)[:n], fn(padded)))  # noqa: B023 (applied at once)
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)
