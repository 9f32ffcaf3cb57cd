"""Face-window proposer training: box targets, batch masks, the loss's masks, a tiny run."""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import mipmap
from lmjax.core.geometry import iou
from lmjax.eval.proposals import proposal_metrics
from lmjax.facecls import proposer_data, proposer_train
from lmjax.models import proposal_net
from lmjax.train import checkpoint
from lmjax.train.workdir import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(arg='runlocal,data=synthetic'):
  spec = importlib.util.spec_from_file_location('proposer5', REPO / 'configs' / 'proposer5.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_config_args():
  config = load_config('runlocal,data=300w')
  assert config.experiment == 'proposer' and config.model.size == proposal_net.WINDOW
  assert config.data.name == '300w' and config.stages.proposer.steps < 1000
  assert load_config('').data.name == 'mtfl'
  config.batch.part = config.batch_size  # positives + part > batch_size
  with pytest.raises(UserError, match='must not exceed batch_size'):
    proposer_data.batch_counts(config)
  config.windows.part_min_iou = 0.7  # above pos_min_iou
  with pytest.raises(UserError, match='part_min_iou'):
    proposer_data.proposer_params(config)


def test_box_targets_of_equal_and_shifted_windows():
  box = jnp.float32([[20.0, 30.0, 44.0, 54.0]])
  np.testing.assert_allclose(proposer_data.box_offsets(box, box), 0.0, atol=1e-7)
  shifted = box + jnp.float32([6.0, -3.0, 6.0, -3.0])  # the window 6 px right, 3 px up
  np.testing.assert_allclose(
    proposer_data.box_offsets(shifted, box), [[-0.25, 0.125, -0.25, 0.125]], atol=1e-6
  )
  # A window twice the box about its centre: the box is its middle half.
  large = jnp.float32([[8.0, 18.0, 56.0, 66.0]])
  np.testing.assert_allclose(proposer_data.box_offsets(large, box), [[0.25, 0.25, -0.25, -0.25]])
  # Unturned, unflipped crops have these offsets; a flip mirrors x (x0 <-> -x1).
  tall = jnp.float32([[22.0, 30.0, 42.0, 54.0]])
  no, yes = jnp.zeros(1, bool), jnp.ones(1, bool)
  plain = proposer_data.crop_offsets(shifted, tall, jnp.zeros(1), no)
  np.testing.assert_allclose(plain, proposer_data.box_offsets(shifted, tall), atol=1e-6)
  flipped = np.asarray(proposer_data.crop_offsets(shifted, tall, jnp.zeros(1), yes))[0]
  np.testing.assert_allclose(flipped, [-plain[0, 2], plain[0, 1], -plain[0, 0], plain[0, 3]])


@pytest.mark.parametrize('angle_deg, flip', [(0.0, False), (25.0, False), (-30.0, True)])
def test_box_targets_follow_the_crop(angle_deg, flip):
  """The target box lands on the bright face square of the turned / mirrored 12 × 12 crop."""
  image = np.zeros((96, 96, 3), np.uint8)
  image[40:56, 28:44] = 255  # the "face": pixels 28..43 × 40..55
  face = np.float32([[27.5, 39.5, 43.5, 55.5]])
  window = np.float32([[23.5, 27.5, 55.5, 59.5]])  # 32 px, the face off its centre
  angle = jnp.float32([np.radians(angle_deg)])
  centre, side = (window[:, :2] + window[:, 2:]) / 2, window[:, 2] - window[:, 0]
  crop = mipmap.crop_windows(
    image, centre, side, size=12, supersample=4, angle=angle, flip=jnp.array([flip])
  )[0, ..., 0]
  target = np.asarray(proposer_data.crop_offsets(window, face, angle, jnp.array([flip])))[0]
  box = target * 12 + np.float32([0, 0, 12, 12])  # in crop pixels (edges at 0 and 12)
  ys, xs = np.mgrid[0:12, 0:12] + 0.5  # pixel centres
  weight = crop / crop.sum()
  np.testing.assert_allclose(
    [(weight * xs).sum(), (weight * ys).sum()], (box[:2] + box[2:]) / 2, atol=0.15
  )


def test_train_batch_labels_masks_and_targets():
  config = load_config()
  pp = proposer_data.proposer_params(config)
  counts = proposer_data.BatchCounts(positives=30, part=30, partial=20, background=10)
  rng = np.random.default_rng(0)
  data = {
    'regions': jnp.asarray(rng.integers(0, 256, (8, 64, 64, 3), np.uint8)),
    'bbox': jnp.tile(jnp.float32([[22.0, 21.0, 42.0, 43.0]]), (8, 1)),
    'negatives': jnp.asarray(rng.integers(0, 256, (5, 48, 48, 3), np.uint8)),
  }
  batch = jax.jit(proposer_data.train_batch, static_argnums=(3, 4))(
    jax.random.key(0), data, jnp.arange(30) % 8, counts, pp
  )
  assert batch['images'].shape == (90, 12, 12, 3) and batch['targets'].shape == (90, 4)
  kinds = np.repeat(['pos', 'part', 'partial', 'bg'], [30, 30, 20, 10])
  np.testing.assert_array_equal(batch['labels'], kinds == 'pos')
  np.testing.assert_array_equal(batch['class_mask'], kinds != 'part')
  has = np.asarray(batch['has_target'])
  assert has[kinds == 'pos'].all() and not has[(kinds == 'partial') | (kinds == 'bg')].any()
  assert has[kinds == 'part'].mean() > 0.9  # the fallback square may miss the range
  # Recover each window from its (rotated) target: the face centre lies within the window.
  centre = (batch['targets'][:, :2] + batch['targets'][:, 2:]) / 2  # offset of centres
  assert float(jnp.abs(centre[:30]).max()) < 0.35
  windows = proposer_data.part_windows(jax.random.key(3), data['bbox'], pp)
  overlap = np.asarray(iou(windows, data['bbox']))
  assert overlap.min() >= 0.4 and overlap.max() < 0.65


def test_loss_masks_windows_without_targets():
  rng = np.random.default_rng(1)
  logits, offsets = jnp.asarray(rng.normal(size=6)), jnp.asarray(rng.normal(size=(6, 4)))
  batch = {
    'labels': jnp.float32([1, 1, 0, 0, 0, 0]),
    'class_mask': jnp.array([True, True, False, True, True, False]),
    'targets': jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
    'has_target': jnp.array([True, True, True, False, False, False]),
  }
  loss, parts = proposer_train.proposer_loss(logits, offsets, batch, 0.5)
  # Changing what the masks hide changes nothing.
  other = dict(batch, labels=batch['labels'].at[2].set(1.0), targets=batch['targets'].at[3:].add(9))
  np.testing.assert_allclose(proposer_train.proposer_loss(logits, offsets, other, 0.5)[0], loss)
  grads = jax.grad(lambda o: proposer_train.proposer_loss(logits, o, batch, 0.5)[0])(offsets)
  assert np.all(np.asarray(grads)[3:] == 0) and np.all(np.abs(np.asarray(grads)[:3]) > 0)
  expected = np.mean(np.sum((np.asarray(offsets - batch['targets'])[:3]) ** 2, axis=-1))
  np.testing.assert_allclose(parts['box_loss'], expected, rtol=1e-5)
  # No window with a target: the box term is 0, not NaN.
  none = dict(batch, has_target=jnp.zeros(6, bool))
  assert float(proposer_train.proposer_loss(logits, offsets, none, 0.5)[1]['box_loss']) == 0.0


def test_proposal_metrics():
  kinds = np.array([0, 0, 0, 0, 1, 2, 2, 3, 4, 4])
  logits = np.array([2.0, 0.1, -0.5, 3.0, 0.2, -3.0, 1.0, 9.0, -0.1, 2.0])
  targets = np.zeros((10, 4))
  offsets = np.full((10, 4), 0.1)
  m = proposal_metrics(logits, offsets, kinds, targets)
  assert m['recall_0.5'] == 0.75 and m['recall_0.7'] == 0.5 and m['rolled_recall_0.5'] == 0.5
  assert m['fpr_background_0.5'] == 0.5 and m['fpr_partial_0.5'] == 1.0
  assert m['offset_mae'] == pytest.approx(0.1) and m['num_positive'] == 4
  with pytest.raises(ValueError, match='expected'):
    proposal_metrics(logits, offsets[:3], kinds, targets)


def test_tiny_run_lowers_the_loss_and_exports(tmp_path):
  config = load_config()
  config.data.data_dir = str(tmp_path / 'tfds')
  config.data.synthetic_train, config.data.synthetic_validation = 40, 16
  config.negatives.update(from_photos=0, synthetic=32, num_validation=6)
  config.update(batch_size=48, eval_batch_size=64, log_every=10, validate_every=40)
  config.batch.update(positives=16, part=8, partial=8)
  config.stages.proposer.update(steps=80, warmup_steps=0, lr=0.01)
  from lmjax.data.datasets import table

  config.data = table.resolve(config.data, config.model.num_points)
  workdir = tmp_path / 'run'
  records = proposer_train.run(config, str(workdir))
  assert 0 <= records['proposer']['recall_0.5'] <= 1
  with open(workdir / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f]
  losses = [r['loss'] for r in lines if 'loss' in r and r['stage'] == 'proposer']
  assert np.mean(losses[-2:]) < 0.8 * losses[0]
  model, variables, spec = checkpoint.load_model(str(workdir / 'models' / 'proposer'), 'proposer')
  assert spec['widths'] == [10, 16, 32] and spec['size'] == 12
  logits, offsets = model.apply(variables, jnp.zeros((1, 30, 40, 3)))
  assert logits.shape == (1, 10, 15) and offsets.shape == (1, 10, 15, 4)
