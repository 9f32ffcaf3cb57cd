"""Face / non-face classifier: crop geometry, samplers, tiny training run, resume, loading."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import geometry, image_ops, mipmap
from lmjax.core.geometry import iou
from lmjax.facecls import classifier as face_classifier
from lmjax.facecls import data as facecls_data
from lmjax.facecls.classifier import FaceClassifier

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = [
  '--config.data.synthetic_train=40',
  '--config.data.synthetic_validation=16',
  '--config.negatives.from_photos=16',
  '--config.negatives.synthetic=16',
  '--config.negatives.num_validation=6',
  '--config.batch_size=32',
  '--config.batch.positives=12',
  '--config.batch.partial=10',
  '--config.eval_batch_size=64',
  '--config.stages.facecls.steps=20',
  '--config.log_every=2',
  '--config.validate_every=10',
  '--config.checkpoint_every=10',
]


def load_config(arg=None):
  spec = importlib.util.spec_from_file_location('facecls5', REPO / 'configs' / 'facecls5.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run_main(workdir, root):
  cmd = [
    sys.executable,
    '-m',
    'lmjax.main',
    '--config=configs/facecls5.py:runlocal,data=synthetic',
    f'--workdir={workdir}',
    f'--config.data.data_dir={root / "tfds"}',
    *TINY,
  ]
  # The resumed run reuses the first run's compiled steps from a persistent cache.
  env = {
    **os.environ,
    'XLA_FLAGS': '',
    'JAX_PLATFORMS': 'cpu',
    'JAX_COMPILATION_CACHE_DIR': str(root / 'jax_cache'),
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
    'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
  }
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['stage'] == 'facecls']


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('facecls')
  result = run_main(root / 'run', root)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result


def test_config_args():
  config = load_config('runlocal,data=300w')
  assert config.experiment == 'facecls' and config.model.num_points == 68
  assert config.data.name == '300w' and config.stages.facecls.steps < 1000
  assert load_config().data.name == 'mtfl'
  with pytest.raises(ValueError, match='unknown data'):
    load_config('data=aflw')


def test_crop_maps_boxes_to_the_right_pixels():
  image = np.random.default_rng(0).integers(0, 256, (200, 210, 3)).astype(np.uint8)
  # Pixel centres are integers: the box (a - 0.5, b - 0.5, a + n - 0.5, b + n - 0.5) covers
  # pixels a .. a + n - 1. A 48-pixel box reads level 0, a 96-pixel one the 2 × 2 means
  # (level 1), so the 24 × 24 crops are exact block means.
  boxes = np.float32(
    [[29.5, 39.5, 77.5, 87.5], [19.5, 59.5, 115.5, 155.5], [-48.5, -0.5, 47.5, 95.5]]
  )
  crop = jax.jit(face_classifier.crop_boxes, static_argnums=2)
  crops = np.asarray(crop(image, boxes, 24))
  block = lambda im, k: im.astype(np.float64).reshape(24, k, im.shape[1] // k, k, 3).mean((1, 3))
  np.testing.assert_allclose(crops[0], block(image[40:88, 30:78], 2), atol=1e-3)
  np.testing.assert_allclose(crops[1], block(image[60:156, 20:116], 4), atol=1e-3)
  # Half outside the image: the grey border, then the image's first 48 columns.
  np.testing.assert_array_equal(crops[2][:, :12], 128.0)
  np.testing.assert_allclose(crops[2][:, 12:], block(image[0:96, 0:48], 4), atol=1e-3)
  # A non-square box is read as the square of its longer side about its centre.
  tall = np.float32([[41.5, 39.5, 65.5, 87.5]])
  np.testing.assert_allclose(crop(image, np.tile(tall, (3, 1)), 24)[0], crops[0], atol=1e-3)
  # Padding the image (to share compiled programs) changes no crop: odd sizes, every level.
  small = image[:151, :171]
  padded, true_size, _ = face_classifier.pad_image(small)
  assert padded.shape == (256, 256, 3) and tuple(true_size) == (151, 171)
  edge = np.float32([[100, 120, 190, 160], [-30, 90, 170, 160], [5, 5, 30, 30], [0, 0, 171, 151]])
  np.testing.assert_allclose(
    jax.jit(face_classifier.crop_boxes, static_argnums=(2, 3))(padded, edge, 24, 2, true_size),
    crop(small, edge, 24),
    atol=1e-3,
  )
  # Flip mirrors the crop.
  centre, side = geometry.box_centre_side(boxes[:1])
  flip = lambda im, c, s: mipmap.crop_windows(im, c, s, size=24, flip=jnp.array([True]))
  flipped = jax.jit(flip)(image, centre, side)
  np.testing.assert_allclose(flipped[0], crops[0][:, ::-1], atol=1e-3)


def test_window_samplers_respect_their_iou_ranges():
  params = facecls_data.sample_params(load_config('runlocal,data=synthetic'))
  boxes = jnp.tile(jnp.float32([[40.0, 38.0, 72.0, 73.0]]), (500, 1))
  key = jax.random.key(0)

  @jax.jit
  def sample(key):
    return (
      facecls_data.positive_windows(key, boxes, params),
      facecls_data.partial_windows(key, boxes, 112, params),
      facecls_data.background_windows(key, 100, 64, params),
    )

  pos, part, bg = sample(key)
  assert float(iou(pos, boxes).min()) >= 0.65
  overlap = np.asarray(iou(part, boxes))
  assert overlap.min() >= 0.05 and overlap.max() < 0.3
  assert float(part.min()) >= -0.5 and float(part.max()) <= 111.5
  side = np.asarray(part[:, 2] - part[:, 0]) / 35.0  # every mode occurs
  assert (side < 0.55).any() and ((side > 0.7) & (side < 1.4)).any() and (side > 1.85).any()
  bg = np.asarray(bg)
  assert bg.min() >= -0.5 and bg.max() <= 63.5 + 1e-4


def test_tiny_run_learns_and_exports_a_loadable_model(tiny_run):
  root, result = tiny_run
  work = root / 'run'
  stages = json.loads((work / 'stages.json').read_text())
  val = stages['facecls']
  assert val['num_positive'] == 16 and val['num_negative'] == 16 + 6  # partial + background
  checks = [r for r in records(work) if 'val_loss' in r]
  assert [r['step'] for r in checks] == [10, 20]
  assert checks[1]['val_loss'] < checks[0]['val_loss'] < np.log(2) + 0.05
  assert val['auc'] > 0.65  # 0.84 on the reference machine: well above chance (0.5)
  spec = json.loads((work / 'models' / 'facecls' / 'model.json').read_text())
  assert spec['experiment'] == 'facecls' and spec['size'] == 24
  assert 'facecls validation' in result.stdout

  classifier = FaceClassifier.load(str(work / 'models' / 'facecls'))
  image = np.random.default_rng(1).integers(0, 256, (90, 120, 3)).astype(np.uint8)
  boxes = np.float32([[10, 10, 50, 50], [-20, 30, 40, 100], [60, 5, 119, 80]])
  probs = classifier.score(image, boxes)
  assert probs.shape == (3,) and probs.dtype == np.float32
  assert ((probs > 0) & (probs < 1)).all()
  crops = image_ops.normalize_pixels(face_classifier.crop_boxes(image, boxes, 24))  # no padding
  direct = jax.nn.sigmoid(jax.jit(classifier.model.apply)(classifier.variables, crops))
  np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)
  many = classifier.score(image, np.tile(boxes, (7, 1)))  # 21 boxes: bucket 32
  np.testing.assert_allclose(many[:3], probs, rtol=1e-5, atol=1e-6)
  grey = classifier.score(image[..., 0], boxes)  # grey images are accepted
  assert grey.shape == (3,)
  assert classifier.score(image, np.zeros((0, 4))).shape == (0,)


def test_model_card_of_a_facecls_run(tiny_run, tmp_path):
  from lmjax import model_card

  root, _ = tiny_run
  card = model_card.publish(str(root / 'run'), str(tmp_path / 'facecls5'), 'test CPU')
  with open(card, encoding='utf-8') as f:
    text = f.read()
  assert 'face/non-face CNN' in text and 'facecls 20' in text
  assert '16 faces and 22 non-face windows' in text and 'FaceClassifier.load' in text
  assert (tmp_path / 'facecls5' / 'model.json').is_file()


def test_resume_after_a_kill_repeats_the_same_steps(tiny_run, tmp_path):
  root, _ = tiny_run
  reference = {r['step']: r['loss'] for r in records(root / 'run') if 'loss' in r}
  # What a kill between the checkpoints at 10 and 20 leaves: checkpoint 10, no model yet.
  work = tmp_path / 'killed'
  shutil.copytree(root / 'run', work)
  shutil.rmtree(work / 'ckpt' / 'facecls' / '20')
  shutil.rmtree(work / 'models')
  os.remove(work / 'stages.json')
  result = run_main(work, root)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'resuming from the checkpoint at step 10' in result.stderr
  resumed = [r for r in records(work) if 'loss' in r][len(reference) :]
  assert [r['step'] for r in resumed] == list(range(12, 21, 2))
  for r in resumed:
    assert r['loss'] == reference[r['step']], r['step']
  assert (work / 'models' / 'facecls' / 'model.json').is_file()
  rerun = run_main(work, root)  # finished: nothing to do
  assert rerun.returncode == 0 and 'finished earlier; skipping' in rerun.stderr


def test_bad_inputs_give_clear_errors(tiny_run, tmp_path):
  root, _ = tiny_run
  classifier = FaceClassifier.load(str(root / 'run' / 'models' / 'facecls'))
  image = np.zeros((40, 50, 3), np.uint8)
  box = np.float32([[0, 0, 10, 10]])
  with pytest.raises(ValueError, match='uint8'):
    classifier.score(image.astype(np.float32), box)
  with pytest.raises(ValueError, match=r'\[H, W, 3\]'):
    classifier.score(np.zeros((40, 50, 4), np.uint8), box)
  with pytest.raises(ValueError, match=r'\[H, W, 3\]'):
    classifier.score(np.zeros(40, np.uint8), box)
  with pytest.raises(ValueError, match=r'boxes \[P, 4\]'):
    classifier.score(image, np.float32([0, 0, 10, 10]))
  with pytest.raises(ValueError, match=r'boxes \[P, 4\]'):
    classifier.score(image, np.zeros((2, 3)))
  with pytest.raises(ValueError, match='x1 > x0'):
    classifier.score(image, np.float32([[0, 0, 10, 10], [5, 5, 5, 9]]))
  with pytest.raises(ValueError, match='NaN'):
    classifier.score(image, np.float32([[0, 0, np.nan, 10]]))
  other = tmp_path / 'bbfcn'
  other.mkdir()
  (other / 'model.json').write_text(json.dumps({'experiment': 'bbfcn'}))
  with pytest.raises(ValueError, match='not facecls'):
    FaceClassifier.load(str(other))
  with pytest.raises(FileNotFoundError):
    FaceClassifier.load(str(tmp_path / 'missing'))


def test_pad_image_uses_a_few_square_canvases_and_shrinks_huge_photos():
  sides = set()
  for h, w in [(300, 4000), (1000, 700), (2100, 2100), (480, 640), (4096, 10)]:
    padded, true_size, _ = face_classifier.pad_image(np.zeros((h, w, 3), np.uint8))
    assert padded.shape[0] == padded.shape[1] and tuple(true_size) == (h, w)
    sides.add(padded.shape[0])
  assert sides <= set(face_classifier.CANVAS_SIDES)
  huge = np.zeros((5000, 8000, 3), np.uint8)
  huge[1000:1400, 2000:2400] = 255  # a white square
  boxes = np.float32([[2000, 1000, 2400, 1400], [1.5, 1.5, 7.5, 7.5]])
  padded, true_size, scaled = face_classifier.pad_image(huge, boxes)
  assert padded.shape == (4096, 4096, 3) and tuple(true_size) == (2500, 4000)
  np.testing.assert_allclose(scaled[0], [999.75, 499.75, 1199.75, 699.75])
  np.testing.assert_allclose(scaled[1], [0.5, 0.5, 3.5, 3.5])
  assert padded[600, 1100].tolist() == [255, 255, 255] and padded[400, 900].tolist() == [0, 0, 0]
