"""Shared test setup: fake CPU devices for sharding tests and the shared real-data folder."""

import os
import pathlib

# Two host devices let the ('data',) mesh code run sharded on a CPU-only machine.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
# The scanner's persistent compilation cache stays off in the suite (tests that check it turn
# it on in their own subprocesses, with a temporary folder).
os.environ['LMJAX_COMPILATION_CACHE'] = 'off'

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'


@pytest.fixture
def shared_data() -> pathlib.Path:
  """`../shared/data` (research data, never committed); skips the test when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip('../shared/data is not present')
  return SHARED_DATA.resolve()


@pytest.fixture(autouse=True, scope='session')
def _quiet_tfds():
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def bbfcn5_random_dir(tmp_path_factory) -> str:
  """A 5-point BB-FCN model folder with fresh weights (for plumbing tests of the scanner)."""
  from lmjax.data import templates
  from lmjax.models import registry
  from lmjax.train import checkpoint

  spec = registry.make_spec(
    'bbfcn', variant='bbfcn', num_points=5, size=32, refine_size=64, crop_scale=1.1,
    dataset='synthetic', face_template=templates.face_template(5, 'synthetic', 1.1),
  )  # fmt: skip
  path = str(tmp_path_factory.mktemp('model') / 'bbfcn5')
  checkpoint.export_model(path, registry.init(spec), spec)
  return path
