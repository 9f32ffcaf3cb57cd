"""Batches on the `('data',)` mesh: train indices, sharding, and the padded batch runner.

Training reads its examples from a device-resident cache (`lmjax.data.caches`), so a train
step receives only example indices: `train_indices` draws them as a pure function of the step
(epoch-wise shuffles; a resumed run draws the same batches) and `shard` places them with the
batch axis split over all devices, while `replicate` puts the cache and the state on every
device. Evaluation and inference batches are padded to fixed sizes (`padded_batches`, one
compile per size); `run_bucketed` runs a function over them and drops the padding again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def cpu_device_count(requested: int, batch_sizes: Iterable[int]) -> int:
  """How many JAX CPU devices a training process should use.

  On a CPU, XLA runs one device's program with a shared intra-op thread pool, which many of
  the ops of a train step (the convolution gradients, the fused elementwise passes) do not use:
  MCL68's forward + backward at batch 64 does 66 images/s on 2 cores as one device and 88-91
  as two devices of one thread each, the batch split between them (`benchmarks/train_speed.py`
  measures both). Training can split the batch over one CPU device per core
  (`--config.cpu_devices=0`), but this is experimental and off by default: in one MCL5 run
  the two devices' programs deadlocked in an all-gather after switching to the
  `wm_partial` stage (XLA aborted after its 40 s collective timeout; the run resumed from its
  last checkpoint), most likely both intra-op threads waiting in collectives of one device
  while the other device's program had no thread to run on.

  Args:
    requested: the config's `cpu_devices` (default 1); 0 = one per core this process may run on.
    batch_sizes: every per-step batch size of the run; the count must divide each.

  Returns:
    `requested` when positive, else the largest count <= the usable cores that divides every
    batch size.
  """
  if requested > 0:
    return requested
  sizes = [int(b) for b in batch_sizes if int(b) > 0]
  count = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  common = math.gcd(*sizes) if sizes else 1
  count = max(1, count or 1)
  while common % count:
    count -= 1
  return count


def use_cpu_devices(count: int) -> None:
  """Makes the CPU backend expose `count` devices; call before JAX first touches a device.

  `XLA_FLAGS=--xla_force_host_platform_device_count=N`, when set, wins (as in the tests).
  Accelerator backends are unaffected: `jax.devices()` stays the GPUs / TPUs where there are.
  """
  if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
    return
  jax.config.update('jax_num_cpu_devices', count)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D `('data',)` mesh over `devices` (default: all devices)."""
  devices = list(devices or jax.devices())
  return Mesh(np.asarray(devices), ('data',))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays whose leading axis is the batch."""
  return NamedSharding(mesh, PartitionSpec('data'))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays every device holds whole (parameters, train state, the region cache)."""
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree of host arrays on every device of the mesh."""
  return jax.device_put(tree, replicated_sharding(mesh))


def train_indices(
  step: int, num_examples: int, batch_size: int, seed: int, weights: np.ndarray | None = None
) -> np.ndarray:
  """Example indices of train step `step`: epoch-wise shuffles, stateless in the step.

  The epoch order depends only on (seed, epoch), so a resumed run draws exactly the batches it
  would have drawn without the interruption. A batch that crosses an epoch end continues with
  the next epoch's order. Without `weights` an epoch is a permutation (every example once);
  with sampling probabilities `weights` [num_examples] (e.g. `lmjax.data.balance`) it is
  `num_examples` draws with replacement.
  """
  start = step * batch_size
  out = np.empty(batch_size, np.int32)
  filled = 0
  while filled < batch_size:
    epoch, offset = divmod(start + filled, num_examples)
    rng = np.random.default_rng([seed, epoch])
    if weights is None:
      perm = rng.permutation(num_examples)
    else:
      perm = rng.choice(num_examples, num_examples, p=weights)
    take = min(batch_size - filled, num_examples - offset)
    out[filled : filled + take] = perm[offset : offset + take]
    filled += take
  return out


def shard(batch: Any, mesh: Mesh) -> Any:
  """Places a global host batch (a pytree of arrays) on the mesh, batch axis over `'data'`.

  Every process passes the same global batch (e.g. the `train_indices` of a step, a pure
  function of the step) and places only the rows of its own devices, so a run of several
  processes trains on exactly the batches of a single process.
  """
  sharding = batch_sharding(mesh)

  def place(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree_util.tree_map(place, batch)


BATCH_BUCKETS = (1, 8, 32, 128)


def padded_batches(
  inputs: Any, buckets: Sequence[int] = BATCH_BUCKETS
) -> Iterator[tuple[Any, int]]:
  """(batch, count) pairs over `inputs`, every batch zero-padded to a fixed size.

  Chunks hold at most `max(buckets)` rows and each is padded to the smallest bucket size that
  fits it, so a jitted function of the batches compiles once per bucket size (a single size
  gives fixed-size batches). Padding rows are zeros of the input's dtype.

  Args:
    inputs: an array [N, ...] or a pytree of arrays sharing the leading axis N > 0.
    buckets: the batch sizes to pad to.

  Yields:
    The batch (the structure of `inputs`) and how many of its leading rows are real.
  """
  leaves = jax.tree_util.tree_leaves(inputs)
  n = len(leaves[0]) if leaves else 0
  if n == 0 or any(len(x) != n for x in leaves):
    shapes = [np.shape(x) for x in leaves]
    raise ValueError(f'inputs: expected arrays sharing a leading axis N > 0, got shapes {shapes}')
  sizes = sorted(buckets)
  for start in range(0, n, sizes[-1]):
    count = min(sizes[-1], n - start)
    size = next(s for s in sizes if s >= count)
    yield _padded_rows(inputs, start, count, size), count


def eval_batches(
  arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
  """`padded_batches` of a dict at one size, the real rows marked by a bool `_mask` [B]."""
  for batch, count in padded_batches(dict(arrays), (batch_size,)):
    yield {**batch, '_mask': np.arange(batch_size) < count}


def run_bucketed(
  fn: Callable[[Any], Any],
  inputs: Any,
  buckets: Sequence[int] = BATCH_BUCKETS,
  mesh: Mesh | None = None,
) -> Any:
  """`fn` over the `padded_batches` of `inputs`; the padding is dropped from its outputs.

  The one padded batch runner of training-time validation and inference.

  Args:
    fn: maps a batch (the structure of `inputs`, leading axis = bucket size) to an array or a
      pytree of arrays with a leading batch axis, e.g. a jitted forward pass.
    inputs: an array [N, ...] or a pytree of arrays sharing the leading axis N > 0.
    buckets: the batch sizes to pad to.
    mesh: when given, each batch is sharded over its `'data'` axis (`shard`), so the bucket
      sizes must divide over the devices.

  Returns:
    `fn`'s outputs for the N real rows, concatenated along the leading axis.
  """
  outs = []
  for batch, count in padded_batches(inputs, buckets):
    out = fn(batch if mesh is None else shard(batch, mesh))
    outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:count], out))  # noqa: B023 (used at once)
  return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *outs)


def _padded_rows(inputs: Any, start: int, count: int, size: int) -> Any:
  """Rows start … start + count - 1 of every array, zero rows appended up to `size` rows."""

  def pad(x):
    x = np.asarray(x[start : start + count])
    return np.concatenate([x, np.zeros((size - count, *x.shape[1:]), x.dtype)])

  return jax.tree_util.tree_map(pad, inputs)
