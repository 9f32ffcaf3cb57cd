"""The face-crop evaluator: padding, coordinates, declared outputs, and parity with the
code paths it replaces (training validation on a region cache, the CLI on decoded faces)."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import augment, geometry, landmarks
from lmjax.data import batching, caches
from lmjax.eval import face_crop, reports
from lmjax.models import registry
from lmjax.models.interface import CropPredictor
from lmjax.synthface import scene

FIVE = landmarks.get_schema(5)


class ShiftPredictor(CropPredictor):
  """Fake model: 'points' = a fixed crop-pixel shape + the crop's mean value, 'coarse' = that
  + 1, and an extra output ('maps') that is not a point set."""

  def __init__(self, outputs=('points',), k=5, size=8):
    self.spec, self.schema, self.outputs = {'size': size}, landmarks.get_schema(k), outputs
    self.shape = np.arange(2 * k, dtype=np.float32).reshape(k, 2)
    self.seen = []  # the batch sizes predict_crops was called with

  def crop(self, image, box):
    A = geometry.crop_affine(np.asarray(box, np.float64), self.spec['size'], 1.0)
    return np.full((self.spec['size'],) * 2 + (1,), image.mean(), np.float32), A

  def predict_crops(self, crops):
    self.seen.append(len(crops))
    points = self.shape + crops.mean(axis=(1, 2, 3))[:, None, None]
    return {'points': points, 'coarse': points + 1, 'maps': np.zeros((len(crops), 3))}


def _faces(n, k=5, start=0):
  """n FaceCrops rows: crop value i, crop -> image = scale 2 and shift (10 i, 5)."""
  crop_to_image = np.zeros((n, 2, 3))
  crop_to_image[:, 0, 0] = crop_to_image[:, 1, 1] = 2.0
  crop_to_image[:, 0, 2], crop_to_image[:, 1, 2] = 10.0 * (start + np.arange(n)), 5.0
  values = (start + np.arange(n, dtype=np.float32))[:, None, None, None]
  gt = np.tile(np.linspace(0, 40, 2 * k).reshape(1, k, 2), (n, 1, 1)).astype(np.float32)
  return face_crop.FaceCrops(
    crops=np.broadcast_to(values, (n, 8, 8, 1)).astype(np.float32),
    crop_to_image=crop_to_image,
    landmarks=gt,
    bbox=np.tile([0, 0, 40, 40], (n, 1)).astype(np.float32),
    visible=np.ones((n, k), bool),
    image_ids=[f'face{start + i}' for i in range(n)],
  )


def test_predict_pads_batches_maps_to_image_pixels_and_scores_declared_outputs():
  predictor = ShiftPredictor(outputs=('points', 'coarse'))
  calls = []
  pred = face_crop.predict(
    predictor, [_faces(4), _faces(3, start=4)], 4, on_batch=lambda f, o: calls.append((f, o))
  )
  assert predictor.seen == [4, 4]  # the short batch is padded to the fixed size
  assert [len(f) for f, _ in calls] == [4, 3] and calls[1][1]['maps'].shape == (3, 3)
  i = np.arange(7, dtype=np.float64)[:, None, None]
  crop_points = predictor.shape + i  # what the fake predicts for crop value i
  want = 2 * crop_points + np.stack([10 * i[..., 0], np.full((7, 1), 5.0)], axis=-1)
  np.testing.assert_allclose(pred.points, want, rtol=1e-6)
  np.testing.assert_allclose(pred.coarse, want + 2, rtol=1e-6)  # +1 crop pixel, scale 2
  assert pred.image_ids == [f'face{j}' for j in range(7)] and pred.points.dtype == np.float32
  metrics = face_crop.score(pred, FIVE)
  expected = reports.compute_metrics(pred.points, pred.landmarks, pred.bbox, FIVE, pred.visible)
  assert metrics['nme_ipd'] == pytest.approx(expected['nme_ipd'])
  assert metrics['num_faces'] == 7 and metrics['backbone_only']['num_faces'] == 7
  assert metrics['backbone_only']['nme_box'] != metrics['nme_box']


def test_only_declared_outputs_are_scored_and_bad_input_is_named():
  pred = face_crop.predict(ShiftPredictor(), [_faces(2)], 2)
  assert pred.coarse is None and 'backbone_only' not in face_crop.score(pred, FIVE)
  with pytest.raises(ValueError, match='batches: expected 1 to 2 faces per batch, got 3'):
    face_crop.predict(ShiftPredictor(), [_faces(3)], 2)
  with pytest.raises(ValueError, match=r'predictor\.outputs'):
    face_crop.predict(ShiftPredictor(outputs=('coarse',)), [_faces(2)], 2)
  with pytest.raises(ValueError, match='batch_size'):
    face_crop.predict(ShiftPredictor(), [_faces(2)], 0)
  with pytest.raises(ValueError, match='at least one face'):
    face_crop.predict(ShiftPredictor(), [], 2)


def _examples(n, k=5):
  """Synthetic faces (5 points) as dataset examples."""
  out = []
  for i in range(n):
    ex = scene.render_face_example((7, i), (96, 96))
    points = landmarks.five_from_68(ex['landmarks'])
    box = np.array([*points.min(0) - 4, *points.max(0) + 4], np.float32)
    out.append({'image': ex['image'], 'landmarks': points, 'visible': np.ones(k, bool),
                'bbox': box, 'image_id': f'synth/{i}'.encode()})  # fmt: skip
  return out


class _Source(list):
  """A random-access face source with the feature spec `datasets.schema_of` reads."""

  dataset_info = types.SimpleNamespace(features={'landmarks': types.SimpleNamespace(shape=(5, 2))})


def test_evaluate_model_writes_json_ced_and_predictions(tmp_path):
  source = _Source(_examples(3))
  out = tmp_path / 'm' / 'metrics.json'
  results = face_crop.evaluate_model(
    ShiftPredictor(), source, out, batch_size=2, predictions=tmp_path / 'p.npz',
    info={'dataset': 'synthetic'}, label='fake', title='synthetic test',
  )  # fmt: skip
  saved = json.loads(out.read_text())
  assert saved['dataset'] == 'synthetic' and saved['num_faces'] == 3
  assert saved['nme_ipd'] == pytest.approx(results['nme_ipd'])
  assert (tmp_path / 'm' / 'metrics_ced_ipd.png').stat().st_size > 1000
  preds = np.load(tmp_path / 'p.npz')
  assert list(preds['image_ids']) == ['synth/0', 'synth/1', 'synth/2']
  with pytest.raises(ValueError, match='predicts 68 landmarks but the dataset has 5'):
    face_crop.evaluate_model(ShiftPredictor(k=68), source, tmp_path / 'x.json')


# --------------------------------------------------------------- parity with the old code paths
@pytest.fixture(scope='module')
def cache():
  return caches.cache_regions(
    _examples(7), region_size=64, region_scale=2.2, grayscale=False, progress=False
  )


def test_mcl_cache_validation_equals_the_trainer_path(cache):
  """Same numbers as `lmjax.mcl.train.predict_cache` + `compute_metrics` computed today."""
  from lmjax.mcl.predictor import FacePredictor

  spec = registry.validate({
    'experiment': 'mcl', 'num_points': 5, 'width': 4, 'num_heads': 2, 'variant': 'gap',
    'size': 32, 'crop_scale': 1.1, 'grayscale': True, 'dataset': 'synthetic',
  })  # fmt: skip
  model, variables = registry.build(spec), registry.init(spec, seed=3)
  params = augment.AugmentParams.none(size=32, crop_scale=1.1, grayscale=True)

  @jax.jit
  def old_predict(variables, regions, bbox):  # the trainer's fused crop + forward
    n = regions.shape[0]
    crops, _ = augment.augment_batch(
      regions, jnp.zeros((n, 5, 2)), bbox, jax.random.key(0), jnp.zeros(n, jnp.int32), params
    )
    return model.apply(variables, crops, train=False)

  mesh, outs = batching.make_mesh(), []
  for batch in batching.eval_batches({'regions': cache.regions[:, 0], 'bbox': cache.bbox}, 4):
    mask = batch.pop('_mask')
    outs.append(np.asarray(old_predict(variables, **batching.shard(batch, mesh)))[mask])
  old_points = cache.crop_to_image(np.concatenate(outs), 32, 1.1)[:, 1]  # head 1
  old = reports.compute_metrics(
    old_points, cache.image_landmarks, cache.image_bbox, FIVE, visible=cache.visible
  )
  predictor = FacePredictor.from_variables(spec, variables, head=1, fold_bn=False)
  pred = face_crop.predict(predictor, face_crop.cache_batches(cache, params, 4), 4)
  np.testing.assert_allclose(pred.points, old_points, atol=1e-4)
  new = face_crop.evaluate_cache(predictor, cache, params, 4)
  for key in ('nme_ioc', 'nme_ipd', 'nme_box', 'fr_10_ipd', 'auc_8_ioc'):
    assert new[key] == pytest.approx(old[key], rel=1e-5, abs=1e-6), key
  assert new['num_faces'] == 7 and 'backbone_only' not in new


def test_bbfcn_cache_validation_and_cli_path_equal_the_old_ones(cache):
  """BB-FCN: the trainer's `predict_cache` and the CLI's `predict_batch(with_coarse=True)`."""
  from lmjax.bbfcn.predictor import BBFCNPredictor, predict_fn

  spec = registry.validate({
    'experiment': 'bbfcn', 'variant': 'bbfcn', 'num_points': 5, 'size': 32, 'refine_size': 64,
    'crop_scale': 1.1, 'dataset': 'synthetic',
  })  # fmt: skip
  model, variables = registry.build(spec), registry.init(spec, seed=1)
  params = augment.AugmentParams.none(size=64, crop_scale=1.1, grayscale=False)
  crop = jax.jit(
    lambda r, p, b: augment.augment_batch(
      r, p, b, jax.random.key(0), jnp.zeros(r.shape[0], jnp.int32), params
    )[0]
  )
  arrays = {'regions': cache.regions[:, 0], 'points': cache.landmarks, 'bbox': cache.bbox}
  images = []
  for batch in batching.eval_batches(arrays, 256):
    mask = batch.pop('_mask')
    images.append(np.asarray(crop(batch['regions'], batch['points'], batch['bbox']))[mask])
  fn, points = jax.jit(predict_fn(model, spec, True)), []
  for batch in batching.eval_batches({'images': np.concatenate(images)}, 4):
    mask = batch.pop('_mask')
    points.append(np.asarray(fn(variables, batch['images'])['points'])[mask])
  old_points = cache.crop_to_image(np.concatenate(points), 64, 1.1)
  predictor = BBFCNPredictor.from_variables(spec, variables)
  pred = face_crop.predict(predictor, face_crop.cache_batches(cache, params, 4), 4)
  np.testing.assert_allclose(pred.points, old_points, atol=1e-3)
  new = face_crop.score(pred, FIVE)
  old = reports.compute_metrics(
    old_points, cache.image_landmarks, cache.image_bbox, FIVE, visible=cache.visible
  )
  assert new['nme_ipd'] == pytest.approx(old['nme_ipd'], rel=1e-4)
  assert 'backbone_only' in new

  # The CLI path: decoded examples, the predictor's own crop of each box.
  examples = _examples(5)
  images, boxes = [e['image'] for e in examples], [e['bbox'] for e in examples]
  out = predictor.predict_faces(images, boxes)
  pred = face_crop.predict(predictor, face_crop.source_batches(predictor, examples, 2), 2)
  np.testing.assert_allclose(pred.points, out['points'], atol=1e-3)
  np.testing.assert_allclose(pred.coarse, out['coarse'], atol=1e-3)
