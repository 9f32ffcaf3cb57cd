"""Remote workdirs (`lmjax.core.paths`): every file of a run goes through etils.epath, tested
on an `s3://` served by a local folder (`tests/fake_s3.py`) — the path epath takes for s3://."""

import json
import os
import pathlib
import subprocess
import sys

import fake_s3
import numpy as np
import pytest
from etils import epath

from lmjax.core import paths
from lmjax.inference import load_predictor
from lmjax.train import checkpoint, writer

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """(root folder behind s3://, mirror folder)."""
  root, mirror = tmp_path / 's3root', tmp_path / 'mirror'
  (root / 'bucket').mkdir(parents=True)
  monkeypatch.setenv(fake_s3.ROOT_ENV, str(root))
  monkeypatch.setenv(paths.MIRROR_ENV, str(mirror))
  fake_s3.register()
  return root, mirror


def test_path_helpers_on_a_remote_scheme(bucket):
  root, mirror = bucket
  assert paths.is_remote('s3://bucket/x') and not paths.is_remote('runs/x')
  assert paths.orbax_writes('gs://b/x') and paths.orbax_writes('runs/x')
  assert not paths.orbax_writes('s3://bucket/x')
  paths.append_text('s3://bucket/run/log.txt', 'a\n')
  paths.append_text('s3://bucket/run/log.txt', 'b\n')
  paths.write_atomic('s3://bucket/run/sub/x.json', '{}')
  assert (root / 'bucket/run/log.txt').read_text() == 'a\nb\n'
  assert (root / 'bucket/run/sub/x.json').read_text() == '{}'
  paths.copy_tree('s3://bucket/run', 's3://bucket/copy')
  assert sorted(p.relative_to(root).as_posix() for p in (root / 'bucket/copy').rglob('*.*')) == [
    'bucket/copy/log.txt',
    'bucket/copy/sub/x.json',
  ]
  assert paths.tree_size('s3://bucket/copy') == 6
  assert paths.local_mirror('s3://bucket/run/ckpt') == epath.Path(mirror / 's3/bucket/run/ckpt')
  escaping = paths.local_mirror('s3://b/../x')  # stays inside the mirror root
  assert '..' not in escaping.parts and escaping.is_relative_to(epath.Path(mirror / 's3/b'))


def test_variables_and_stage_checkpoints_through_a_mirror(bucket, tmp_path):
  root, mirror = bucket
  variables = {'params': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}}
  checkpoint.save_variables('s3://bucket/model/variables', variables)
  back = checkpoint.restore_variables('s3://bucket/model/variables')
  np.testing.assert_array_equal(back['params']['w'], variables['params']['w'])
  with pytest.raises(FileNotFoundError, match='s3://bucket/none: no such checkpoint'):
    checkpoint.restore_variables('s3://bucket/none')

  ckpts = checkpoint.StageCheckpoints('s3://bucket/run/ckpt/bm', max_to_keep=2)
  for step in (1, 2, 3):
    ckpts.save(step, {'step': np.full((), step, np.int32), 'w': np.full(3, step, np.float32)})
  ckpts.close()
  stage = root / 'bucket/run/ckpt/bm'
  assert json.loads((stage / checkpoint.UPLOADED_FILE).read_text()) == [2, 3]
  assert sorted(p.name for p in stage.iterdir() if p.is_dir()) == ['2', '3']  # 1 deleted

  # Another machine: an empty mirror; and a stale mirror step that was never uploaded.
  local = mirror / 's3/bucket/run/ckpt/bm'
  for entry in local.iterdir():
    if entry.is_dir():
      epath.Path(entry).rmtree()
  (local / '7').mkdir()
  again = checkpoint.StageCheckpoints('s3://bucket/run/ckpt/bm', max_to_keep=2)
  assert again.latest_step() == 3
  abstract = {'step': np.zeros((), np.int32), 'w': np.zeros(3, np.float32)}
  restored = again.restore(abstract)
  assert int(restored['step']) == 3 and restored['w'].tolist() == [3, 3, 3]
  assert again.step_folder(3) == 's3://bucket/run/ckpt/bm/3'
  (stage / '9').mkdir()  # an upload a kill cut short: not in uploaded.json
  (stage / '9' / 'part').write_text('x')
  again.save(4, {'step': np.full((), 4, np.int32), 'w': np.full(3, 4, np.float32)})
  again.close()
  assert json.loads((stage / checkpoint.UPLOADED_FILE).read_text()) == [3, 4]
  assert sorted(p.name for p in stage.iterdir() if p.is_dir()) == ['3', '4']


def test_a_training_run_in_an_s3_workdir_writes_and_resumes_there(bucket, tmp_path):
  """config, history, commands, logs, metrics, checkpoints, model folders and stages.json
  land under s3://; nothing is written in the current folder; a second machine (empty
  mirror) resumes from the remote checkpoint."""
  root, mirror = bucket
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  cmd = [
    sys.executable,
    str(REPO / 'tests' / 'fake_s3.py'),
    'lmjax.main',
    f'--config={REPO}/configs/mcl5.py:runlocal,data=synthetic',
    '--workdir=s3://bucket/run',
    '--config.model.width=32',
    '--config.batch_size=8',
    '--config.eval_batch_size=16',
    '--config.data.synthetic_train=48',
    '--config.data.synthetic_validation=16',
    f'--config.data.data_dir={tmp_path / "tfds"}',
    '--config.stages.bm.steps=6',
    '--config.log_every=2',
    '--config.checkpoint_every=3',
    '--config.stop_after=bm',
  ]
  run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert not list(cwd.iterdir())  # no `s3:` folder: every write went through epath
  work = root / 'bucket/run'
  assert json.loads((work / 'config.json').read_text())['experiment'] == 'mcl'
  assert len(list((work / 'configs').glob('0001_*.json'))) == 1
  assert 'lmjax.main' in (work / 'commands.txt').read_text()
  assert '[bm] step 6/6' in (work / 'train.INFO').read_text()
  records = writer.read_metrics(str(work / 'metrics.jsonl'))
  assert [r['step'] for r in records if 'loss' in r] == [2, 4, 6]
  assert 'bm' in json.loads((work / 'stages.json').read_text())
  assert (work / 'models/bm/model.json').is_file() and (work / 'models/bm/variables').is_dir()
  assert json.loads((work / 'ckpt/bm' / checkpoint.UPLOADED_FILE).read_text()) == [3, 6]

  # The run died after its last checkpoint, before the stage was recorded; the next attempt
  # runs on another machine (no mirror).
  (work / 'stages.json').unlink()
  epath.Path(work / 'models').rmtree()
  epath.Path(mirror).rmtree()
  rerun = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'resuming from the checkpoint at step 6' in rerun.stderr
  assert 'bm' in json.loads((work / 'stages.json').read_text())
  assert (work / 'models/bm/model.json').is_file()
  assert len(list((work / 'configs').glob('*.json'))) == 2
  assert not list(cwd.iterdir())

  # The remote model folder serves predictions like a local one.
  remote = load_predictor('s3://bucket/run/models/bm', backend='xla')
  local = load_predictor(str(work / 'models/bm'), backend='xla')
  image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8)
  box = np.array([16, 16, 80, 80], np.float32)
  np.testing.assert_array_equal(remote.predict(image, box), local.predict(image, box))
