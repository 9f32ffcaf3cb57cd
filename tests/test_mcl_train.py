"""MCL Algorithm 1 end to end on tiny synthetic data: stages, assembling, resume after kill."""

import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax import evaluate, model_card
from lmjax.core import geometry
from lmjax.data.datasets import synthetic
from lmjax.mcl import predictor as inference
from lmjax.train import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
  spec = importlib.util.spec_from_file_location(name, REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


# Tiny run: 5 points (4 clusters), narrow network, a handful of steps per stage.
TINY = [
  '--config.model.width=32',
  '--config.batch_size=8',
  '--config.eval_batch_size=16',
  '--config.data.synthetic_train=48',
  '--config.data.synthetic_validation=16',
  '--config.stages.bm.steps=6',
  '--config.stages.wm_partial.steps=2',
  '--config.stages.wm.steps=2',
  '--config.stages.mc.steps=2',
  '--config.log_every=1',
  '--config.checkpoint_every=3',
]


def run_main(workdir, data_dir, extra=(), wait=True):
  cmd = [
    sys.executable,
    '-m',
    'lmjax.main',
    '--config=configs/mcl5.py:runlocal,data=synthetic',
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    *TINY,
    *extra,
  ]
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  if wait:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  return subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )


def losses_by_step(workdir, stage='bm'):
  out = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['stage'] == stage and 'event' not in record:  # not a (re)start marker
        out[record['step']] = record['loss']
  return out


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('mcl')
  result = run_main(root / 'run', root / 'tfds')
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result


def test_algorithm1_runs_every_stage_and_assembles(full_run):
  root, result = full_run
  work = root / 'run'
  stages = json.loads((work / 'stages.json').read_text())
  expected = ['am', 'bm', 'mc_0', 'mc_1', 'mc_2', 'mc_3', 'wm', 'wm_partial']
  assert sorted(stages) == expected
  for name in expected:
    assert (work / 'models' / name / 'model.json').is_file()
    assert stages[name]['num_faces'] == 16 and stages[name]['elapsed_s'] >= 0
  assert stages['bm']['elapsed_s'] > 0  # seconds of the stage (stages.json, for model cards)
  table = (work / 'table.txt').read_text()
  assert all(row in table for row in ('BM', 'WM', 'AM')) and 'nme_ipd' in table
  assert 'AM' in result.stdout
  # The assembled model reproduces each cluster's head of the last multi-center model.
  mc = checkpoint.load_model(str(work / 'models' / 'mc_3'))
  am = checkpoint.load_model(str(work / 'models' / 'am'))
  x = jax.random.normal(jax.random.key(0), (2, 50, 50, 1))
  multi = mc[0].apply(mc[1], x)
  single = am[0].apply(am[1], x)
  for i, cluster in enumerate([(0,), (1,), (2,), (3, 4)]):
    np.testing.assert_allclose(single[:, 0, list(cluster)], multi[:, i, list(cluster)], atol=1e-5)
  # wm_partial froze conv11…conv32 (and their BN scale/bias): bit-identical to BM's.
  bm = checkpoint.load_model(str(work / 'models' / 'bm'))
  wm_partial = checkpoint.load_model(str(work / 'models' / 'wm_partial'))
  for layer in ('conv11', 'conv32', 'bn21'):
    for name, value in bm[1]['params'][layer].items():
      np.testing.assert_array_equal(wm_partial[1]['params'][layer][name], value)
  assert not np.array_equal(
    wm_partial[1]['params']['conv41']['kernel'], bm[1]['params']['conv41']['kernel']
  )
  # The multi-center stages train head i only: the trunk equals WM's bit for bit.
  wm = checkpoint.load_model(str(work / 'models' / 'wm'))
  np.testing.assert_array_equal(
    mc[1]['params']['conv43']['kernel'], wm[1]['params']['conv43']['kernel']
  )


def test_rerun_skips_finished_stages(full_run):
  root, _ = full_run
  before = (root / 'run' / 'metrics.jsonl').read_text()
  result = run_main(root / 'run', root / 'tfds')
  assert result.returncode == 0, result.stderr[-3000:]
  assert (root / 'run' / 'metrics.jsonl').read_text() == before  # no step was re-run
  assert 'finished earlier; skipping' in result.stderr


def test_kill_mid_stage_and_resume_gives_identical_losses(full_run, tmp_path):
  root, _ = full_run
  reference = losses_by_step(root / 'run')  # the uninterrupted run: bm steps 1..6
  work = tmp_path / 'killed'
  extra = ['--config.stages.bm.steps=400']  # long enough to be killed mid-stage
  proc = run_main(work, root / 'tfds', extra, wait=False)
  ckpt = work / 'ckpt' / 'bm'
  deadline = time.time() + 300
  while time.time() < deadline and not (ckpt.is_dir() and any(ckpt.glob('3'))):
    time.sleep(0.5)
  while time.time() < deadline and max(losses_by_step(work) or [0]) < 4:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert max(losses_by_step(work)) >= 4  # it ran past the checkpoint at step 3
  assert not (work / 'stages.json').exists()
  extra = ['--config.stages.bm.steps=6', '--config.stop_after=bm', '--allow_config_change']
  result = run_main(work, root / 'tfds', extra)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'resuming from the checkpoint at step' in result.stderr
  resumed = {}
  with open(work / 'metrics.jsonl') as f:
    for line in f:
      record = json.loads(line)
      if record['stage'] == 'bm' and 'event' not in record:
        resumed[record['step']] = record['loss']  # later records overwrite earlier ones
  for step in range(1, 7):
    assert resumed[step] == reference[step], step


def test_evaluate_cli_and_predictor(full_run, tmp_path):
  root, _ = full_run
  model_dir = str(root / 'run' / 'models' / 'am')
  out = tmp_path / 'metrics.json'
  results = evaluate.run(
    model_dir,
    'synthetic',
    'validation',
    str(out),
    data_dir=str(root / 'tfds'),
    predictions=str(tmp_path / 'preds.npz'),
    batch_size=5,
    dataset_config=synthetic.make_config('face5', num_train=48, num_validation=16, num_test=16),
  )
  saved = json.loads(out.read_text())
  for key in (
    'num_faces',
    'nme_ioc',
    'nme_ipd',
    'nme_box',
    'fr_8_ioc',
    'fr_10_ipd',
    'auc_8_ioc',
    'auc_10_ipd',
  ):
    assert key in saved
  assert saved['num_faces'] == 16 and saved['nme_ipd'] == pytest.approx(results['nme_ipd'])
  preds = np.load(tmp_path / 'preds.npz')
  assert preds['pred'].shape == (16, 5, 2) and len(preds['image_ids']) == 16
  assert (tmp_path / 'metrics_ced_ioc.png').stat().st_size > 1000
  # The predictor maps crops back to image pixels: single and batched calls agree.
  predictor = inference.FacePredictor(model_dir)
  image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
  one = predictor.predict(image, [20, 10, 80, 70])
  batch = predictor.predict_batch([image, image], [[20, 10, 80, 70], [20, 10, 80, 70]])
  np.testing.assert_allclose(batch[0], one, atol=1e-4)
  assert results['num_faces'] == 16
  with pytest.raises(ValueError, match='face box'):
    predictor.predict(image, [50, 10, 20, 70])


def test_folded_predictor_matches_the_trained_model(full_run):
  root, _ = full_run
  model_dir = str(root / 'run' / 'models' / 'mc_3')  # four heads, trained BN statistics
  image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
  for head in (0, 3):
    folded = inference.FacePredictor(model_dir, head=head).predict(image, [20, 10, 80, 70])
    plain = inference.FacePredictor(model_dir, head=head, fold_bn=False).predict(
      image, [20, 10, 80, 70]
    )
    np.testing.assert_allclose(folded, plain, atol=1e-3)
  with pytest.raises(ValueError, match='4 heads'):
    inference.FacePredictor(model_dir, head=4)


def test_model_card_from_the_run(full_run, tmp_path):
  root, _ = full_run
  work = root / 'run'
  assert (
    'lmjax.main --config=configs/mcl5.py:runlocal,data=synthetic'
    in (work / 'commands.txt').read_text()
  )
  out = tmp_path / 'pretrained' / 'tiny5'
  card_path = model_card.publish(str(work), str(out), hardware='test machine')
  card = pathlib.Path(card_path).read_text()
  stages = json.loads((work / 'stages.json').read_text())
  assert '--config.stages.bm.steps=6' in card and 'test machine' in card
  assert 'bm 6, wm_partial 2, wm 2, mc 2' in card
  for stage in ('bm', 'wm_partial', 'wm', 'mc_0', 'mc_3', 'am'):
    assert f'\n{stage} ' in card, stage  # a row of the validation table
  assert f'{stages["am"]["nme_ipd"]:.2f}' in card
  seconds = model_card.training_seconds(stages)
  assert seconds == pytest.approx(sum(s['elapsed_s'] for s in stages.values())) and seconds > 0
  assert f'training time: {seconds / 3600:.2f} h' in card
  assert (out / 'model.json').is_file() and (out / 'variables').is_dir()
  inference.FacePredictor(str(out))  # the published folder loads
  # The command line (absl flags) publishes the same folder and prints the card's path.
  cli = [sys.executable, '-m', 'lmjax.model_card', f'--workdir={work}', '--hardware=test machine']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run(
    [*cli, f'--out={tmp_path / "cli"}', '--stage=bm'],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == str(tmp_path / 'cli' / 'MODEL_CARD.md')
  assert 'The `bm` model' in (tmp_path / 'cli' / 'MODEL_CARD.md').read_text()
  missing = subprocess.run(cli, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0 and '--out' in missing.stderr


def test_model_card_time_comes_from_every_stage_record():
  assert model_card.training_seconds({'bm': {'elapsed_s': 2.5}, 'wm': {'elapsed_s': 1.0}}) == 3.5
  assert model_card.training_seconds({'bm': {'elapsed_s': 2.5}, 'wm': {'nme_ipd': 3.0}}) is None


def test_missing_dataset_is_a_clear_error(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'lmjax.main',
      '--config=configs/mcl68.py',
      f'--workdir={tmp_path}',
      f'--config.data.manual_dir={tmp_path / "no_300w"}',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert 'data=synthetic' in result.stderr and 'no_300w' in result.stderr
  assert 'Traceback' not in result.stderr


def test_heads_start_at_the_mean_shape():
  from types import SimpleNamespace

  from lmjax.mcl import train
  from lmjax.models.mcl import MCL

  config = load_config('mcl5', 'runlocal,data=synthetic')
  rng = np.random.default_rng(0)
  bbox = np.tile(np.array([[20.0, 20.0, 80.0, 80.0]], np.float32), (3, 1))  # crop = 66 px
  points = rng.uniform(30, 70, (3, 5, 2)).astype(np.float32)
  visible = np.ones((3, 5), bool)
  visible[0, 2] = False  # excluded from the mean of landmark 2
  cache = SimpleNamespace(landmarks=points, bbox=bbox, visible=visible)
  mean = train.mean_crop_shape(cache, config)
  crop = [
    geometry.apply_affine(points[i].astype(np.float64), geometry.crop_affine(bbox[i]))
    for i in range(3)
  ]
  np.testing.assert_allclose(mean[0], np.mean([c[0] for c in crop], axis=0), atol=1e-4)
  np.testing.assert_allclose(mean[2], np.mean([c[2] for c in crop[1:]], axis=0), atol=1e-4)
  assert mean.min() > 0 and mean.max() < 49  # inside the 50-pixel crop
  model = MCL(5, width=16, num_heads=2)
  variables = train.with_head_bias(model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1))), mean)
  out = model.apply(variables, jnp.zeros((1, 50, 50, 1)))  # [1, 2, 5, 2]
  np.testing.assert_allclose(out[0, 1], mean, atol=0.05)  # N(0, 0.01) kernels: ~bias
  cache.visible = np.zeros((3, 5), bool)
  with pytest.raises(ValueError, match='invisible in every training face'):
    train.mean_crop_shape(cache, config)


def test_warm_start_from_a_published_model_and_the_chain_on_its_card(full_run, tmp_path):
  root, _ = full_run
  first = tmp_path / 'pub' / 'tiny5'
  model_card.publish(str(root / 'run'), str(first), hardware='test machine')
  assert len(json.loads((first / model_card.CHAIN_FILE).read_text())) == 1
  work = tmp_path / 'warm'
  extra = [f'--config.init_from={first}', '--config.stop_after=bm']
  result = run_main(work, root / 'tfds', extra=extra)
  assert result.returncode == 0, result.stderr[-3000:]
  # Same architecture: every array of the published AM model (params and BatchNorm statistics)
  # is loaded, nothing is new or dropped.
  loaded = re.search(
    rf'warm start from {re.escape(str(first))}: loaded (\d+) arrays, new 0, dropped 0$',
    result.stderr,
    re.M,
  )
  assert loaded and int(loaded.group(1)) == len(
    jax.tree_util.tree_leaves(checkpoint.load_model(str(first))[1])
  )
  # The second link of the chain: publishing into the warm-start folder itself keeps the first.
  stages = json.loads((work / 'stages.json').read_text())
  assert list(stages) == ['bm']
  card = pathlib.Path(model_card.publish(str(work), str(first), 'test machine', stage='bm'))
  chain = json.loads((first / model_card.CHAIN_FILE).read_text())
  assert [c['init_from'] for c in chain] == ['', str(first)]
  assert chain[1]['seconds'] == pytest.approx(stages['bm']['elapsed_s'])
  assert set(chain[0]['steps']) == {'bm', 'wm_partial', 'wm', 'mc'}  # the full run
  assert list(chain[1]['steps']) == ['bm']  # stop_after=bm: only the stage it trained
  text = card.read_text()
  assert '## Warm-start chain' in text and 'over 2 runs' in text
  assert f'--config.init_from={first}' in text
