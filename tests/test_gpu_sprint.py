"""launch/gpu_sprint.py sizes every job's schedule to end before the lease does."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def sprint():
  spec = importlib.util.spec_from_file_location('gpu_sprint', ROOT / 'launch' / 'gpu_sprint.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flag(overrides, name):
  return int(next(o.split('=')[1] for o in overrides if o.startswith(f'--config.{name}=')))


@pytest.mark.parametrize('name', ['mcl68_paper', 'mcl68_fast_scratch'])
def test_mcl_steps_fit_the_time_left(sprint, name):
  info = {'startup_s': 40.0, 'rate1': 180.0}
  steps, overrides = sprint.plan(name, info, available=380.0)
  assert _flag(overrides, 'stages.bm.steps') == steps
  seconds = info['startup_s'] + steps / info['rate1']
  assert 0.7 * 380 < seconds <= 380  # uses most of the time, never more
  if name == 'mcl68_paper':  # the paper's six lr segments
    assert _flag(overrides, 'stages.bm.decay_every') == steps // 6


def test_bbfcn_stages_share_the_time_in_the_paper_proportion(sprint):
  info = {'startup_s': 68.0, 'rate1': 250.0, 'rate2': 86.0, 'transition_s': 26.0}
  (backbone, branches), overrides = sprint.plan('bbfcn68_adamw', info, available=231.0)
  assert branches == 2 * backbone
  assert _flag(overrides, 'stages.backbone.steps') == backbone
  seconds = 68 + 26 + backbone / 250 + branches / 86
  assert 0.7 * 231 < seconds <= 231


def test_too_little_time_skips_the_job(sprint):
  assert sprint.plan('mcl68_paper', {'startup_s': 40.0, 'rate1': 2.0}, available=100.0) is None
