"""The scanner on photos of any size: a bounded number of compiled programs, a persistent
compilation cache across processes, and no growth of the process's memory maps."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from lmjax.data import templates
from lmjax.models import registry
from lmjax.scan import scanner, tiling

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _model():
  spec = registry.make_spec(
    'bbfcn', variant='bbfcn', num_points=5, size=32, refine_size=64, crop_scale=1.1,
    dataset='mtfl', face_template=templates.face_template(5, 'mtfl', 1.1),
  )  # fmt: skip
  return spec, registry.init(spec)


def _photo(rng, height, width):
  """A uint8 photo of the given size: a random 24 × 32 image on a black canvas (cheap)."""
  photo = np.zeros((int(height), int(width), 3), np.uint8)
  photo[:24, :32] = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
  return photo


@pytest.fixture(autouse=True)
def _small_tiles(monkeypatch):
  """64-pixel tiles: the same programs and counts, far fewer pixels to run the backbone on."""
  monkeypatch.setattr(tiling, 'TILE', 64)


class _Compiles:
  """Counts the programs this process builds (compiled, or loaded from a compilation cache)."""

  def __init__(self):
    self.count = 0
    jax.monitoring.register_event_duration_secs_listener(self._on)

  def _on(self, event, duration, **kwargs):
    if event == '/jax/core/compile/backend_compile_duration':
      self.count += 1


def test_fifty_photo_sizes_compile_at_most_eight_programs():
  sc = scanner.Scanner(*_model(), min_face=1000, detections=4, candidates=16)
  rng = np.random.default_rng(0)
  compiles = _Compiles()
  sizes = rng.integers(300, 4001, (50, 2))
  for h, w in sizes:
    out = sc.scan(_photo(rng, h, w))
  assert out['points'].shape == (5, 4, 2)
  assert len({sc.levels_for(min(h, w)) for h, w in sizes}) > 3  # the depth did vary
  assert sc.compiled_programs() == 2
  assert compiles.count <= 8, compiles.count


def test_memory_maps_stay_bounded_over_many_photos():
  if not os.path.exists('/proc/self/maps'):
    pytest.skip('needs /proc/self/maps (Linux)')

  def count_maps():
    with open('/proc/self/maps') as f:
      return sum(1 for _ in f)

  sc = scanner.Scanner(*_model(), levels=3, detections=2, candidates=8)
  rng = np.random.default_rng(1)
  sizes = rng.integers(300, 4001, (300, 2))
  for h, w in sizes[:20]:
    sc.scan(_photo(rng, h, w))
  before = count_maps()
  for h, w in sizes[20:]:
    sc.scan(_photo(rng, h, w))
  assert count_maps() - before < 100, (before, count_maps())
  assert sc.compiled_programs() == 2


SCRIPT = """
import json, sys
import jax
import numpy as np
sys.path.insert(0, {tests!r})
import test_scan_compiles as t
EVENT = '/jax/compilation_cache/'
NAMES = {{EVENT + 'compile_requests_use_cache': 'requests', EVENT + 'cache_hits': 'hits',
         EVENT + 'cache_misses': 'misses'}}
events = {{'requests': 0, 'hits': 0, 'misses': 0}}
def on_event(event, **kw):
  if event in NAMES:
    events[NAMES[event]] += 1
from lmjax.scan import scanner, tiling
tiling.TILE = 64
sc = scanner.Scanner(*t._model(), levels=4, detections=4, candidates=16)
jax.block_until_ready(sc.variables)
jax.monitoring.register_event_listener(on_event)  # counts the scans' programs only
rng = np.random.default_rng(0)
for h, w in [(300, 400), (1000, 700)]:
  sc.scan(t._photo(rng, h, w))
print(json.dumps(events))
"""


def test_a_second_process_compiles_nothing(tmp_path):
  env = {**os.environ, 'LMJAX_COMPILATION_CACHE': str(tmp_path / 'xla')}
  script = SCRIPT.format(tests=str(ROOT / 'tests'))
  runs = []
  for _ in range(2):
    proc = subprocess.run(
      [sys.executable, '-c', script], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  assert runs[0]['misses'] == runs[0]['requests'] >= 2  # the first process compiles them
  assert runs[1] == {'requests': runs[0]['requests'], 'hits': runs[0]['requests'], 'misses': 0}
  assert any((tmp_path / 'xla').iterdir())
