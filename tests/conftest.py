"""Shared test setup: fake CPU devices for sharding tests and the shared real-data folder."""

import os
import pathlib

# Two host devices let the ('data',) mesh code run sharded on a CPU-only machine.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')

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
