"""Times the default-size build of the synthetic `face68` dataset (train 4000 / val 500 / test 500).

Run from the repository root:

  python benchmarks/synthetic_build.py [--config face68] [--repeats 1]

Prints the per-example render time (one process), the wall-clock and CPU time (this process
plus its worker processes) of the build into a fresh temporary data_dir, the load average at
the start (other work on the machine slows the wall clock), and a final JSON line such as
{"synthetic_face68_build_s": 31.2, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time

from lmjax import synthface
from lmjax.data.datasets import synthetic


def render_ms(config: synthetic.SyntheticConfig, n: int = 100) -> float:
  """Median milliseconds to render one example of `config` in this process."""
  render = synthface.render_scene if config.multiface else synthface.render_face_example
  times = []
  for i in range(n):
    start = time.perf_counter()
    render((99, 0, i), tuple(config.image_size))
    times.append(time.perf_counter() - start)
  return 1000.0 * statistics.median(times)


def _cpu_seconds() -> float:
  """User + system CPU seconds of this process and of its finished children."""
  return sum(
    r.ru_utime + r.ru_stime
    for r in (
      resource.getrusage(resource.RUSAGE_SELF),
      resource.getrusage(resource.RUSAGE_CHILDREN),
    )
  )


def build_seconds(config: synthetic.SyntheticConfig) -> tuple[float, float]:
  """(wall, CPU) seconds of `download_and_prepare` into a fresh temporary directory."""
  data_dir = tempfile.mkdtemp(prefix='synthetic_bench_')
  try:
    builder = synthetic.Synthetic(config=config, data_dir=data_dir, file_format='array_record')
    start, cpu = time.perf_counter(), _cpu_seconds()
    builder.download_and_prepare()
    return time.perf_counter() - start, _cpu_seconds() - cpu
  finally:
    shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='face68', choices=sorted(synthetic.CONFIGS))
  parser.add_argument('--repeats', type=int, default=1)
  args = parser.parse_args()
  config = synthetic.CONFIGS[args.config]
  sizes = config.split_sizes()
  total = sum(sizes.values())
  load = os.getloadavg()[0]
  per_image = render_ms(config)
  builds = [build_seconds(config) for _ in range(args.repeats)]
  build = statistics.median(wall for wall, _ in builds)
  cpu = statistics.median(cpu for _, cpu in builds)
  rows = [
    ('config', args.config),
    ('examples (train/validation/test)', '/'.join(str(n) for n in sizes.values())),
    ('cpu cores', str(os.cpu_count())),
    ('load average (1 min) at start', f'{load:.1f}'),
    ('render ms / example (1 process)', f'{per_image:.2f}'),
    ('build s (median of repeats)', f'{build:.1f}'),
    ('build ms / example', f'{1000.0 * build / total:.2f}'),
    ('build CPU s (all processes)', f'{cpu:.1f}'),
  ]
  width = max(len(k) for k, _ in rows)
  for key, value in rows:
    print(f'{key:<{width}}  {value}')
  print(
    json.dumps(
      {
        f'synthetic_{args.config}_build_s': round(build, 2),
        f'synthetic_{args.config}_render_ms': round(per_image, 2),
        f'synthetic_{args.config}_build_cpu_s': round(cpu, 1),
      }
    )
  )


if __name__ == '__main__':
  main()
