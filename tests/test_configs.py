"""The experiment configs in `configs/`: every file and argument loads, through `config_flags`
from any working directory, and gives the settings the experiments ran with; the data block
resolves against the dataset table."""

import os
import pathlib
import runpy
import subprocess
import sys

import ml_collections
import pytest

from lmjax.data.datasets import table

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / 'configs').glob('*.py') if p.stem != 'common')


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  return runpy.run_path(str(REPO / 'configs' / f'{name}.py'))['get_config'](arg)


def resolved(config: ml_collections.ConfigDict) -> dict:
  """The config as a dict, with its data block filled from the dataset table."""
  out = config.to_dict()
  out['data'] = table.resolve(config.data, config.model.num_points).to_dict()
  return out


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize('arg', [None, 'runlocal'])
def test_every_config_loads(path, arg):
  config = load_config(path.stem, arg)
  assert config.experiment in ('mcl', 'bbfcn', 'facecls', 'proposer') and config.batch_size > 0
  assert f'--config=configs/{path.stem}.py' in runpy.run_path(str(path))['__doc__']


def test_config_args():
  config = load_config('mcl68', 'runlocal,data=synthetic')
  assert config.data.name == 'synthetic' and config.stages.bm.steps < 1000
  assert resolved(config)['data']['builder_config'] == 'face68'
  with pytest.raises(ValueError, match='unknown config argument'):
    load_config('mcl68', 'fast')
  with pytest.raises(ValueError, match=r"config argument points='x': expected int"):
    load_config('mcl', 'points=x')
  with pytest.raises(ValueError, match='data=mtfl has 5 landmarks, not 68'):
    load_config('mcl68', 'data=mtfl')
  with pytest.raises(ValueError, match='unknown data'):
    load_config('bbfcn5', 'data=aflw')
  with pytest.raises(ValueError, match="recipe='slow': expected one of"):
    load_config('mcl5', 'recipe=slow')


@pytest.mark.parametrize('name', ['mcl68', 'mcl5', 'mcl29'])
def test_fast_recipe_changes_only_optimiser_schedule_augmentation_and_lengths(name):
  paper, fast = load_config(name).to_dict(), load_config(name, 'recipe=fast').to_dict()
  assert paper == load_config(name, 'recipe=paper').to_dict()  # the paper stays the default
  assert (paper['optim']['optimizer'], paper['optim']['schedule']) == ('sgd', 'step')
  assert (fast['optim']['optimizer'], fast['optim']['schedule']) == ('adamw', 'cosine')
  assert fast['stages']['bm']['steps'] == 3000 and fast['eval_every'] > 0
  assert fast['aug']['rotation_deg'] > paper['aug']['rotation_deg']
  changed = {k for k in paper if paper[k] != fast[k]}
  assert changed == {'optim', 'stages', 'aug', 'eval_every', 'checkpoint_every'}
  assert load_config(name, 'recipe=fast,runlocal').stages.bm.steps < 1000


# Settings of the experiments as they ran before the configs moved to `configs/` (computed from
# `lmjax/*_config.py` at commit 2802fa0): (config, arg, dotted field, value), data resolved.
BEFORE = [
  ('mcl68', None, 'model.width', 1024),
  ('mcl68', None, 'aug.rebox', True),
  ('mcl68', None, 'input.jpeg_variants', 1),
  ('mcl68', None, 'stages.bm.steps', 180_000),
  ('mcl68', None, 'data.manual_dir', 'data/300w'),
  ('mcl68', None, 'data.num_validation', 200),
  ('mcl68', None, 'data.val_split', ''),
  ('mcl68', 'runlocal,data=synthetic', 'aug.rebox', True),
  ('mcl68', 'runlocal,data=synthetic', 'data.val_split', 'validation'),
  ('mcl68', 'runlocal,data=synthetic', 'input.jpeg_variants', 0),
  ('mcl5', None, 'model.width', 512),
  ('mcl5', None, 'aug.rebox', False),
  ('mcl5', None, 'data.manual_dir', 'data/mtfl'),
  ('mcl5', None, 'data.num_validation', 500),
  ('mcl5', 'runlocal,data=synthetic', 'data.builder_config', 'face5'),
  ('mcl5', 'runlocal,data=synthetic', 'aug.rebox', False),
  ('mcl5', 'runlocal,data=synthetic', 'stages.mc.steps', 25),
  ('mcl29', None, 'data.manual_dir', 'data/cofw'),
  ('mcl29', None, 'data.num_validation', 100),
  ('mcl29', None, 'stages.wm_partial.frozen', r'^(conv|bn)(11|12|21|22|31|32)/'),
  ('bbfcn68', None, 'model.size', 64),
  ('bbfcn68', None, 'optim.clip_norm', 10.0),
  ('bbfcn68', None, 'stages.branches.lr', 3e-4),
  ('bbfcn68', None, 'model.map_features', 15),
  ('bbfcn68', None, 'loss.neg_per_pos', 1),
  ('bbfcn68', None, 'optim.optimizer', 'sgd'),
  ('bbfcn68', 'weighting', 'stages.branches_wm.steps', 20_000),
  ('bbfcn68', 'weighting', 'stages.branches_wm.lr', 3e-4 / 10),
  ('bbfcn5', None, 'model.refine_size', 64),
  ('bbfcn5', None, 'stages.branches_wm.steps', 0),
  ('bbfcn5', 'runlocal,data=synthetic,weighting', 'stages.branches_wm.steps', 60),
  ('bbfcn5', 'runlocal,data=synthetic,weighting', 'data.builder_config', 'face5'),
  ('bbfcn5', 'runlocal', 'input.region_size', 128),
  ('bbfcn5', 'variant=backbone_only', 'variant', 'backbone_only'),
  ('regfcn5', None, 'variant', 'regression'),
  ('regfcn68', 'runlocal,data=synthetic', 'data.builder_config', 'face68'),
  ('regfcn68', 'runlocal,data=synthetic', 'stages.regression.steps', 400),
  ('facecls5', None, 'model.num_points', 5),
  ('facecls5', None, 'negatives.from_photos', 6000),
  ('facecls5', 'runlocal,data=synthetic', 'data.builder_config', 'face5'),
  ('facecls5', 'runlocal,data=synthetic', 'batch.positives', 24),
  ('facecls5', 'data=300w', 'model.num_points', 68),
  ('facecls5', 'data=cofw', 'data.num_validation', 100),
  ('proposer5', None, 'model.size', 12),
  ('proposer5', None, 'negatives.from_photos', 20_000),
  ('proposer5', None, 'stages.proposer.steps', 40_000),
  ('proposer5', None, 'batch.positives', 40),
  ('proposer5', 'runlocal,data=synthetic', 'data.builder_config', 'face5'),
]


@pytest.mark.parametrize(('name', 'arg', 'field', 'value'), BEFORE)
def test_settings_are_those_the_experiments_ran_with(name, arg, field, value):
  got = resolved(load_config(name, arg))
  for key in field.split('.'):
    got = got[key]
  assert got == value


@pytest.mark.parametrize(
  ('name', 'family_arg'),
  [
    ('mcl68', 'points=68'),
    ('mcl5', 'points=5'),
    ('mcl29', 'points=29'),
    ('bbfcn5', 'points=5'),
    ('bbfcn68', 'points=68'),
    ('mcl98', 'points=98'),
    ('mcl19', 'points=19'),
    ('bbfcn98', 'points=98'),
    ('regfcn5', 'points=5,variant=regression'),
    ('regfcn68', 'points=68,variant=regression'),
    ('facecls5', ''),
    ('proposer5', ''),
  ],
)
def test_experiment_files_are_their_family_with_arguments(name, family_arg):
  family = name.rstrip('0123456789').replace('regfcn', 'bbfcn')
  for arg in ('', ',runlocal'):
    expected = load_config(family, (family_arg + arg).strip(','))
    assert load_config(name, arg.strip(',') or None).to_dict() == expected.to_dict()


def test_configs_and_dataset_table_agree():
  common = runpy.run_path(str(REPO / 'configs' / 'common.py'))
  assert common['POINTS'] == {k: tuple(e.builder_configs) for k, e in table.TABLE.items()}
  # MCL's rebox is on exactly where the dataset's box is the tight box of the model's points.
  for name, counts in common['POINTS'].items():
    for points in counts:
      config = load_config('mcl', f'points={points},data={name}')
      assert config.aug.rebox == (points in table.entry(name).tight_box), (name, points)


def test_resolve_fills_only_what_the_config_leaves_open():
  config = load_config('mcl68', 'data=synthetic')
  assert config.data.manual_dir is None and config.data.builder_config is None
  config.data.num_validation = 7
  data = table.resolve(config.data, 68)
  assert (data.builder_config, data.val_split, data.num_validation) == ('face68', 'validation', 7)
  assert table.resolve(data, 68) == data  # idempotent
  with pytest.raises(ValueError, match=r'config\.data\.name: unknown dataset'):
    table.resolve({'name': 'aflw'}, 5)
  with pytest.raises(ValueError, match=r'5 or 68 landmarks, but config\.model\.num_points is 29'):
    table.resolve({'name': 'synthetic'}, 29)


@pytest.mark.parametrize('absolute', [False, True])
def test_config_flags_loads_configs_from_any_directory(tmp_path, absolute):
  path = REPO / 'configs' / 'bbfcn68.py'
  flag = str(path) if absolute else os.path.relpath(path, tmp_path)  # '../../.../configs/...'
  script = (
    'from absl import app\n'
    'from ml_collections import config_flags\n'
    "c = config_flags.DEFINE_config_file('config', lock_config=True)\n"
    'app.run(lambda _: print(c.value.data.manual_dir, c.value.stages.branches_wm.steps))\n'
  )
  result = subprocess.run(
    [sys.executable, '-c', script, f'--config={flag}:weighting,runlocal',
     '--config.data.manual_dir=/x/300w'],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=120,
  )  # fmt: skip
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['/x/300w', '60']
