"""BB-FCN training end to end on tiny synthetic data: stages, HNM switching, resume, evaluate."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from lmjax import evaluate
from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.data.datasets import synthetic
from lmjax.models import bbfcn as bbfcn_models

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = [
  '--config.batch_size=8',
  '--config.eval_batch_size=16',
  '--config.data.synthetic_train=40',
  '--config.data.synthetic_validation=16',
  '--config.negatives.from_photos=16',
  '--config.negatives.synthetic=16',
  '--config.negatives.num_validation=6',
  '--config.stages.backbone.positives=4',
  '--config.stages.branches.positives=6',
  '--config.stages.branches_wm.positives=6',
  '--config.stages.regression.positives=4',
  '--config.model.init=he',
  '--config.log_every=1',
  '--config.validate_every=2',
  '--config.checkpoint_every=3',
]


def run_main(workdir, data_dir, config='configs/bbfcn5.py:runlocal,data=synthetic', extra=()):
  cmd = [
    sys.executable,
    '-m',
    'lmjax.main',
    f'--config={config}',
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    *TINY,
    *extra,
  ]
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def records(workdir, stage):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['stage'] == stage and 'event' not in r]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('bbfcn')
  steps = ['--config.stages.backbone.steps=6', '--config.stages.branches.steps=4']
  # lr 0 and patience 1: the validation loss cannot improve, so HNM must switch on.
  extra = [*steps, '--config.stages.branches.lr=0.0', '--config.loss.patience=1']
  result = run_main(root / 'run', root / 'tfds', extra=extra)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result


def test_two_stages_export_models_and_tables(tiny_run):
  root, result = tiny_run
  work = root / 'run'
  stages = json.loads((work / 'stages.json').read_text())
  assert sorted(stages) == ['backbone', 'bbfcn']
  assert all(stages[name]['num_faces'] == 16 for name in stages)
  for name, variant in (('backbone', 'backbone_only'), ('bbfcn', 'bbfcn')):
    spec = json.loads((work / 'models' / name / 'model.json').read_text())
    assert spec['variant'] == variant and spec['size'] == 32 and spec['refine_size'] == 64
  table = (work / 'table.txt').read_text()
  assert 'per-landmark NME (ipd)' in table and 'eye_left' in table and 'bbfcn' in result.stdout
  # The branch stage froze the backbone: bit-identical to the backbone model's.
  bb = BBFCNPredictor(str(work / 'models' / 'backbone'))
  full = BBFCNPredictor(str(work / 'models' / 'bbfcn'))
  jax.tree_util.tree_map(
    np.testing.assert_array_equal,
    bb.variables['params']['backbone'],
    full.variables['params']['backbone'],
  )
  assert full.outputs == ('points', 'coarse') and bb.outputs == ('points',)


def test_hard_negative_mining_switches_on_at_a_plateau(tiny_run):
  root, result = tiny_run
  work = root / 'run'
  checks = [r for r in records(work, 'branches') if 'val_loss' in r]
  assert [r['step'] for r in checks] == [2, 4]
  assert checks[0]['hnm'] is False and checks[1]['hnm'] is True  # lr 0: no improvement
  train = {r['step']: r['hnm'] for r in records(work, 'branches') if 'loss' in r}
  assert train[1] == 0 and train[4] == 0 and train.get(5) is None
  assert 'hard negative mining ON' in result.stderr


def test_resume_keeps_the_hnm_flag_and_weighting_stage(tiny_run):
  root, _ = tiny_run
  work = root / 'run'
  # Continue the same run with MCL's weighting fine-tuning of the branches (a third stage).
  extra = [
    '--config.stages.backbone.steps=6',
    '--config.stages.branches.steps=4',
    '--config.stages.branches_wm.steps=3',
    '--config.loss.hnm=on',
    '--allow_config_change',  # a finished run continued with another config
  ]
  result = run_main(
    work, root / 'tfds', config='configs/bbfcn5.py:runlocal,data=synthetic,weighting', extra=extra
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'finished earlier; skipping' in result.stderr
  stages = json.loads((work / 'stages.json').read_text())
  assert 'bbfcn_wm' in stages and 'weights u =' in result.stderr
  assert all(r['hnm'] == 1 for r in records(work, 'branches_wm') if 'loss' in r)  # forced


def test_regression_baseline_trains_and_evaluates(tmp_path, tiny_run):
  root, _ = tiny_run
  result = run_main(
    tmp_path / 'reg',
    root / 'tfds',
    config='configs/regfcn5.py:runlocal,data=synthetic',
    extra=['--config.stages.regression.steps=3'],
  )
  assert result.returncode == 0, result.stderr[-3000:]
  stages = json.loads((tmp_path / 'reg' / 'stages.json').read_text())
  assert list(stages) == ['regression'] and np.isfinite(stages['regression']['nme_ipd'])
  assert 'coord_loss' in records(tmp_path / 'reg', 'regression')[0]


def test_evaluate_cli_compares_backbone_and_draws_maps(tiny_run, tmp_path):
  root, _ = tiny_run
  out = tmp_path / 'metrics.json'
  config = synthetic.make_config('face5', num_train=40, num_validation=16, num_test=16)
  results = evaluate.run(
    str(root / 'run' / 'models' / 'bbfcn'),
    'synthetic',
    'validation',
    str(out),
    data_dir=str(root / 'tfds'),
    dataset_config=config,
    viz=str(tmp_path / 'viz'),
    viz_count=3,
  )
  assert results['num_faces'] == 16 and 'backbone_only' in results
  assert len(results['backbone_only']['per_landmark_ipd']) == 5
  assert sorted(os.listdir(tmp_path / 'viz'))[0].startswith('0000_')
  assert len(os.listdir(tmp_path / 'viz')) == 3
  saved = json.loads(out.read_text())
  assert saved['nme_ipd'] == pytest.approx(results['nme_ipd'])


def test_he_rescale_gives_fan_in_variance():
  import jax.numpy as jnp

  from lmjax.models.bbfcn import BBFCN

  model = BBFCN(num_points=3)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 3, 24, 24, 4)))
  scaled = bbfcn_models.he_rescale(params['params'])
  conv2 = np.asarray(scaled['backbone']['conv2']['kernel'])  # fan_in 5·5·20
  assert np.std(conv2) == pytest.approx(np.sqrt(2 / 500), rel=0.05)
  branch = np.asarray(scaled['branches']['conv2']['kernel'])  # [K, 5, 5, 5, 5]: fan_in 125
  assert np.std(branch) == pytest.approx(np.sqrt(2 / 125), rel=0.1)
  deconv = np.asarray(scaled['backbone']['deconv1']['kernel'])  # one input pixel: fan_in 40
  assert np.std(deconv) == pytest.approx(np.sqrt(2 / 40), rel=0.1)
  np.testing.assert_array_equal(scaled['backbone']['conv2']['bias'], 0.0)


def test_model_card_of_a_bbfcn_run(tiny_run, tmp_path):
  from lmjax import model_card

  root, _ = tiny_run
  out = tmp_path / 'bbfcn5'
  card_path = model_card.publish(
    str(root / 'run'), str(out), hardware='test machine', command='python -m lmjax.main ...'
  )
  card = pathlib.Path(card_path).read_text()
  assert card.startswith('# bbfcn5: BB-FCN, 5 points')
  assert 'backbone' in card and 'bbfcn' in card and '64×64 RGB face crop' in card
  assert (out / 'model.json').is_file()
  assert BBFCNPredictor(str(out)).outputs == ('points', 'coarse')
