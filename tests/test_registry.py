"""The model registry: model.json schema, format migration, build + init, predictor interface."""

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

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.data import templates
from lmjax.inference import load_predictor
from lmjax.mcl.predictor import FacePredictor
from lmjax.models import registry
from lmjax.models.interface import CropPredictor
from lmjax.models.mcl import fold_batch_norm
from lmjax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRETRAINED = sorted(p.parent for p in (ROOT / 'pretrained').glob('*/model.json'))


def _mcl(**overrides):
  fields = dict(
    num_points=5, width=16, num_heads=2, variant='gap', size=50, crop_scale=1.1,
    grayscale=True, dataset='synthetic',
  )  # fmt: skip
  return registry.make_spec('mcl', **{**fields, **overrides})


def _bbfcn(variant='bbfcn', **overrides):
  fields = dict(
    variant=variant, num_points=5, size=32, refine_size=64, crop_scale=1.1, dataset='mtfl',
    face_template=templates.face_template(5, 'mtfl', 1.1),
  )  # fmt: skip
  return registry.make_spec('bbfcn', **{**fields, **overrides})


def _facecls():
  return registry.make_spec(
    'facecls', size=24, supersample=2, widths=(4, 8), hidden=8, crop='square', dataset='mtfl'
  )


def _shapes(tree):
  return jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)


# ------------------------------------------------------------------- schema


@pytest.mark.parametrize('make', [_mcl, _bbfcn, _facecls])
def test_write_read_round_trip(tmp_path, make):
  spec = make()
  assert spec['format'] == registry.FORMAT
  registry.write_spec(str(tmp_path), spec)
  assert registry.read_spec(str(tmp_path)) == spec
  assert json.loads((tmp_path / 'model.json').read_text()) == spec  # plain JSON


def test_make_spec_converts_numpy_and_tuples():
  spec = _bbfcn(num_points=np.int64(5), crop_scale=np.float32(1.25))
  assert type(spec['num_points']) is int and spec['crop_scale'] == 1.25
  assert all(type(v) is float for row in spec['face_template'] for v in row)
  # The stored template reads back as the same float32 values (scans stay identical).
  np.testing.assert_array_equal(
    registry.face_template(spec), templates.face_template(5, 'mtfl', 1.1)
  )
  assert _facecls()['widths'] == [4, 8]


@pytest.mark.parametrize(
  ('change', 'message'),
  [
    (lambda s: s.pop('num_points'), "field 'num_points' missing"),
    (lambda s: s.update(num_points='5'), "field 'num_points' is '5'; expected a positive"),
    (lambda s: s.update(num_points=True), "field 'num_points' is True"),
    (lambda s: s.update(width=0), "field 'width' is 0"),
    (lambda s: s.update(crop_scale=float('nan')), "field 'crop_scale' is nan"),
    (lambda s: s.update(grayscale=1), "field 'grayscale' is 1; expected true or false"),
    (lambda s: s.update(variant='fc'), "field 'variant' is 'fc'; expected 'gap' or 'pre_bm'"),
    (lambda s: s.update(colour=True), "unexpected field 'colour' for a mcl model"),
    (lambda s: s.update(experiment='vit'), "field 'experiment' is 'vit'"),
    (lambda s: s.update(format=registry.FORMAT + 1), 'expected an integer format'),
  ],
)
def test_bad_fields_are_one_line_errors_naming_file_and_field(tmp_path, change, message):
  spec = _mcl()
  change(spec)
  (tmp_path / 'model.json').write_text(json.dumps(spec))
  with pytest.raises(registry.SpecError) as e:
    registry.read_spec(str(tmp_path))
  assert str(e.value).startswith(f'{tmp_path}/model.json: ')
  assert message in str(e.value) and '\n' not in str(e.value)


def test_bad_files_and_families(tmp_path):
  with pytest.raises(FileNotFoundError, match='not an lmjax model folder'):
    registry.read_spec(str(tmp_path))
  (tmp_path / 'model.json').write_text('{"experiment": ')
  with pytest.raises(registry.SpecError, match=r'model\.json: not valid JSON'):
    registry.read_spec(str(tmp_path))
  registry.write_spec(str(tmp_path), _facecls())
  with pytest.raises(registry.SpecError, match="'facecls', not bbfcn"):
    registry.read_spec(str(tmp_path), 'bbfcn')
  with pytest.raises(registry.SpecError, match="'face_template' has 3 rows; expected num_points"):
    _bbfcn(face_template=np.zeros((3, 2)))
  with pytest.raises(registry.SpecError, match="'face_template' is"):
    _bbfcn(face_template=[[0.5, 0.5, 0.5]] * 5)
  with pytest.raises(registry.SpecError, match="field 'hidden' missing"):
    registry.make_spec('facecls', size=24, supersample=2, widths=[4], crop='', dataset='')


def test_export_validates_before_writing(tmp_path):
  bad = {**_mcl(), 'num_heads': -1}
  with pytest.raises(registry.SpecError, match="field 'num_heads' is -1"):
    checkpoint.export_model(str(tmp_path / 'm'), registry.init(_mcl()), bad)
  assert not (tmp_path / 'm').exists()


# ------------------------------------------------------------------- pretrained + migration


@pytest.mark.parametrize('folder', PRETRAINED, ids=lambda p: p.name)
def test_every_pretrained_folder_validates(folder):
  spec = registry.read_spec(str(folder))
  assert spec['format'] == registry.FORMAT
  if spec['experiment'] == 'bbfcn':  # the migration stored what the trainer computes
    expected = templates.face_template(spec['num_points'], spec['dataset'], spec['crop_scale'])
    np.testing.assert_array_equal(registry.face_template(spec), expected)


def test_format_2_folders_read_with_the_papers_map_features(tmp_path):
  old = {**_bbfcn(), 'format': 2}
  old.pop('map_features')
  (tmp_path / 'model.json').write_text(json.dumps(old))
  spec = registry.read_spec(str(tmp_path))
  assert spec['format'] == 2 and spec['map_features'] == 15
  assert registry.validate(spec) == spec  # the implied field may be spelled out
  assert registry.build(spec).map_features == 15
  with pytest.raises(registry.SpecError, match=r"'map_features' is 64; a format-2 folder implies"):
    registry.validate({**spec, 'map_features': 64})
  upgraded = checkpoint.upgrade_model_folder(str(tmp_path))
  assert upgraded['format'] == registry.FORMAT and upgraded['map_features'] == 15
  wide = _bbfcn(num_points=68, size=64, refine_size=128, map_features=64,
                face_template=templates.face_template(68, '300w', 1.1))  # fmt: skip
  assert registry.build(wide).map_features == 64
  assert registry.abstract_variables(wide)['params']['backbone']['maps']['kernel'].shape == (
    1,
    1,
    64,
    68,
  )


def test_format_1_folders_read_and_upgrade(tmp_path):
  old = {k: v for k, v in _bbfcn().items() if k not in ('format', 'face_template')}
  (tmp_path / 'model.json').write_text(json.dumps(old))
  spec = registry.read_spec(str(tmp_path))  # the old form still reads
  assert 'format' not in spec and 'face_template' not in spec
  with pytest.raises(registry.SpecError, match=r"'face_template' missing.*upgrade_model_folder"):
    registry.face_template(spec)
  with pytest.raises(registry.SpecError, match='give its face_template'):
    registry.upgrade_spec(old)
  with pytest.raises(registry.SpecError, match=r"'face_template' missing \(expected a \["):
    registry.make_spec('bbfcn', **{k: v for k, v in old.items() if k != 'experiment'})
  upgraded = checkpoint.upgrade_model_folder(str(tmp_path))
  assert upgraded == _bbfcn() == registry.read_spec(str(tmp_path))
  assert registry.upgrade_spec({k: v for k, v in _mcl().items() if k != 'format'}) == _mcl()


def test_old_pretrained_bbfcn_without_template_gives_the_migration_error(tmp_path):
  folder = tmp_path / 'bbfcn5'
  shutil.copytree(ROOT / 'pretrained' / 'bbfcn5', folder)
  spec = json.loads((folder / 'model.json').read_text())
  del spec['face_template'], spec['format']
  (folder / 'model.json').write_text(json.dumps(spec))
  from lmjax.scan.scanner import Scanner

  with pytest.raises(ValueError, match=r"bbfcn5/model.json: field 'face_template' missing"):
    Scanner.load(str(folder), levels=2)
  assert BBFCNPredictor(str(folder)).outputs == ('points', 'coarse')  # landmarks still load


# ------------------------------------------------------------------- build and init


def test_mcl_build_init_and_folded_layout():
  spec = _mcl()
  variables = registry.init(spec, seed=3)
  assert set(variables) == {'params', 'batch_stats'}
  assert variables['params']['heads']['1']['kernel'].shape == (16, 10)
  assert _shapes(registry.abstract_variables(spec)) == _shapes(variables)
  direct = registry.build(spec).init(jax.random.key(3), jnp.zeros((1, 50, 50, 1)), train=False)
  jax.tree.map(np.testing.assert_array_equal, variables, dict(direct))  # what trainers init
  folded_model = registry.build(spec, batch_norm=False)
  folded = fold_batch_norm(variables)
  out = folded_model.apply(folded, jnp.zeros((2, 50, 50, 1)))
  assert out.shape == (2, 2, 5, 2)
  rgb = registry.init(_mcl(grayscale=False, variant='pre_bm'))
  assert rgb['params']['conv11']['kernel'].shape == (3, 3, 3, 32) and 'fc' in rgb['params']


@pytest.mark.parametrize(
  ('variant', 'top'),
  [('bbfcn', {'backbone', 'branches'}), ('backbone_only', {'backbone', 'branches'}),
   ('regression', {'conv1', 'conv8', 'out'})],
)  # fmt: skip
def test_bbfcn_build_and_init_per_variant(variant, top):
  spec = _bbfcn(variant)
  variables = registry.init(spec)
  assert top <= set(variables['params'])
  assert _shapes(registry.abstract_variables(spec)) == _shapes(variables)
  if variant != 'regression':
    assert variables['params']['branches']['conv1']['kernel'].shape == (5, 5, 5, 4, 5)
  with pytest.raises(ValueError, match='only MCL models have BatchNorm'):
    registry.build(spec, batch_norm=False)


def test_facecls_build_and_init():
  spec = _facecls()
  variables = registry.init(spec)
  assert variables['params']['conv2']['kernel'].shape == (3, 3, 4, 8)
  logits = registry.build(spec).apply(variables, jnp.zeros((3, 24, 24, 3)))
  assert logits.shape == (3,)


# ------------------------------------------------------------------- predictors


def test_predictors_share_the_declared_interface(tmp_path):
  image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
  boxes = [[20, 10, 80, 70], [30, 20, 100, 85]]
  spec = _mcl()
  variables = registry.init(spec)
  mcl = FacePredictor.from_variables(spec, variables, head=1)
  checkpoint.export_model(str(tmp_path / 'mcl'), variables, spec)
  loaded = load_predictor(str(tmp_path / 'mcl'), head=1)
  assert isinstance(mcl, CropPredictor) and mcl.outputs == loaded.outputs == ('points',)
  crops = np.stack([mcl.crop(image, b)[0] for b in boxes])
  out = mcl.predict_crops(crops)
  assert set(out) == {'points'} and out['points'].shape == (2, 5, 2)
  np.testing.assert_allclose(loaded.predict_crops(crops)['points'], out['points'], atol=1e-4)
  assert mcl.predict_faces([], [])['points'].shape == (0, 5, 2)

  bb = BBFCNPredictor.from_variables(_bbfcn(), registry.init(_bbfcn()))
  assert isinstance(bb, CropPredictor) and bb.outputs == ('points', 'coarse')
  faces = bb.predict_faces([image, image], boxes)
  np.testing.assert_allclose(faces['points'], bb.predict_batch([image, image], boxes), atol=1e-4)
  coarse = bb.predict_batch([image, image], boxes, refine=False)
  np.testing.assert_allclose(faces['coarse'], coarse, atol=1e-4)  # same pass, same points
  plain = BBFCNPredictor.from_variables(_bbfcn('backbone_only'), registry.init(_bbfcn()))
  assert plain.outputs == ('points',)
  with pytest.raises(ValueError, match="'facecls'; expected a bbfcn spec"):
    BBFCNPredictor.from_variables(_facecls(), {})
  checkpoint.export_model(str(tmp_path / 'cls'), registry.init(_facecls()), _facecls())
  with pytest.raises(ValueError, match='predicts no landmarks'):
    load_predictor(str(tmp_path / 'cls'))


def test_import_lmjax_is_lazy():
  code = (
    'import sys, lmjax; assert "jax" not in sys.modules; '
    'assert callable(lmjax.load_predictor); assert "jax" in sys.modules; '
    'from lmjax import synthface; print(sorted(lmjax.__all__))'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  assert 'load_predictor' in out.stdout and 'Scanner' in out.stdout


def test_writers_must_use_the_current_format(tmp_path):
  old = {k: v for k, v in _mcl().items() if k != 'format'}
  with pytest.raises(
    registry.SpecError, match=rf"field 'format' is missing; expected {registry.FORMAT}"
  ):
    registry.write_spec(str(tmp_path), old)
  with pytest.raises(registry.SpecError, match="field 'format' is missing"):
    checkpoint.export_model(str(tmp_path / 'm'), registry.init(_mcl()), old)
  assert not (tmp_path / 'model.json').exists() and not (tmp_path / 'm').exists()


def test_a_model_exported_from_two_devices_loads_on_one(tmp_path):
  """Variables saved replicated over a 2-device mesh restore in a 1-device process."""
  assert jax.device_count() == 2  # conftest's fake CPU devices
  spec = _mcl()
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  checkpoint.export_model(
    str(tmp_path / 'm'), jax.device_put(registry.init(spec), replicated), spec
  )
  code = (
    'import jax; from lmjax.train import checkpoint; '
    f'_, v, _ = checkpoint.load_model({str(tmp_path / "m")!r}); '
    'assert jax.device_count() == 1; print(len(jax.tree_util.tree_leaves(v)))'
  )
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  assert int(out.stdout.split()[-1]) == len(jax.tree_util.tree_leaves(registry.init(spec)))
