"""Throughput of the jitted, batched on-device augmentation (`lmjax.core.augment`).

Measures crops/s of `make_augmenter(AugmentParams(), IBUG68.flip_perm)` at batch 64, 68
landmarks, 50×50 grey output, from 100×100 and 128×128 grey regions (and 128×128 RGB regions
converted to grey). Each setting runs in its own subprocess:

  * cpu_all:     JAX on CPU with every core of this machine;
  * cpu_1thread: JAX on CPU pinned to one core (sched_setaffinity) with
                 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1";
  * gpu:         the default JAX backend, when it is a GPU (skipped otherwise).

Compile time (lower + compile) is reported separately from the steady-state time, which is the
median over repeats of one call each, timed with `block_until_ready`. Run:

  python benchmarks/augment_speed.py [--repeats 30]

The last line printed is a JSON object, e.g.
`{"augment_crops_per_s_cpu_all": ..., "augment_crops_per_s_cpu_1thread": ..., ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _settings import child_env, pin_to_one_core

SETTINGS = ('cpu_all', 'cpu_1thread', 'gpu')
REGIONS = ((100, 1), (128, 1), (128, 3))  # (region size R, region channels)


def measure(setting: str, batch: int, repeats: int) -> list[dict]:
  """Runs inside the child process: times every region configuration."""
  pin_to_one_core(setting)
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lmjax.core import augment as aug
  from lmjax.core.landmarks import IBUG68

  device = jax.devices()[0]
  if setting == 'gpu' and device.platform != 'gpu':
    return []
  params = aug.AugmentParams()
  rng = np.random.default_rng(0)
  rows = []
  for size, channels in REGIONS:
    half = size / (2 * 2.2)  # face box of a region cut at region_scale 2.2
    c = (size - 1) / 2
    bboxes = np.tile(np.array([c - half, c - half, c + half, c + half], np.float32), (batch, 1))
    points = rng.uniform(c - half, c + half, (batch, IBUG68.num_points, 2)).astype(np.float32)
    regions = rng.integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
    args = jax.device_put((regions, points, bboxes), device)
    key = jax.random.key(0)
    fn = aug.make_augmenter(params, IBUG68.flip_perm)
    seeds = lambda step: jnp.arange(batch) + step * batch

    start = time.perf_counter()
    compiled = fn.lower(*args, key, seeds(0)).compile()
    compile_s = time.perf_counter() - start
    step_seeds = [jax.device_put(seeds(i), device) for i in range(repeats + 3)]
    for s in step_seeds[:3]:
      jax.block_until_ready(compiled(*args, key, s))
    times = []
    for s in step_seeds[3:]:
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args, key, s))
      times.append(time.perf_counter() - start)
    median = float(np.median(times))
    rows.append(
      {
        'setting': setting,
        'device': str(device.device_kind),
        'region': size,
        'channels': channels,
        'batch': batch,
        'compile_s': compile_s,
        'ms_per_batch': 1e3 * median,
        'crops_per_s': batch / median,
      }
    )
  return rows


def run_child(setting: str, batch: int, repeats: int) -> list[dict]:
  """Runs `measure` for one setting in a fresh process; [] when unavailable."""
  cmd = [sys.executable, __file__, '--child', setting, f'--batch={batch}', f'--repeats={repeats}']
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = child_env(setting)
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [root, env.get('PYTHONPATH')]))
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    if setting != 'gpu':
      sys.stderr.write(proc.stderr)
    return []
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--child', choices=SETTINGS, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.child, args.batch, args.repeats)))
    return

  rows = [r for s in SETTINGS for r in run_child(s, args.batch, args.repeats)]
  print(
    f'{"setting":<12} {"device":<24} {"region":>9} {"batch":>5} {"compile s":>9} '
    f'{"ms/batch":>9} {"crops/s":>10}'
  )
  for r in rows:
    region = f'{r["region"]}x{r["channels"]}'
    print(
      f'{r["setting"]:<12} {r["device"]:<24} {region:>9} {r["batch"]:>5} '
      f'{r["compile_s"]:>9.2f} {r["ms_per_batch"]:>9.2f} {r["crops_per_s"]:>10.0f}'
    )
  summary = {}
  for r in rows:
    suffix = (
      '' if (r['region'], r['channels']) == REGIONS[0] else f'_r{r["region"]}c{r["channels"]}'
    )
    summary[f'augment_crops_per_s_{r["setting"]}{suffix}'] = round(r['crops_per_s'], 1)
    summary[f'augment_compile_s_{r["setting"]}{suffix}'] = round(r['compile_s'], 3)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
