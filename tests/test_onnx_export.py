"""ONNX export of MCL networks (`lmjax.onnx_export`, `python -m lmjax.export`) and the
`FacePredictor` backends that run them."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import onnx
import pytest

from lmjax.mcl.predictor import FacePredictor
from lmjax.models import registry
from lmjax.models.mcl import fold_batch_norm
from lmjax.onnx_export import graph, int8
from lmjax.onnx_export.session import OnnxNetwork
from lmjax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLOAT_ATOL_PX = 0.01  # the fp32 parity bound (observed ~1e-5)


def _mcl_variables(spec, seed=0):
  """Fresh MCL variables whose BatchNorm statistics are far from the identity (so folding
  matters) but of the scale of each layer's activations, and a head that outputs tens of
  pixels (so the comparisons are not between near-zeros)."""
  variables = registry.init(spec, seed)
  rng = np.random.default_rng(seed)
  stats = {
    name: {
      'mean': rng.uniform(-0.01, 0.01, s['mean'].shape).astype(np.float32),
      'var': rng.uniform(1e-4, 1e-2, s['var'].shape).astype(np.float32),
    }
    for name, s in variables['batch_stats'].items()
  }
  params = dict(variables['params'])
  raw = registry.build(spec).apply({'params': params, 'batch_stats': stats}, _crops(spec), False)
  gain = 20.0 / float(np.std(raw))  # head outputs with a spread of ~20 px around 25 px
  params['heads'] = {
    k: {'kernel': v['kernel'] * gain, 'bias': v['bias'] + 25.0} for k, v in params['heads'].items()
  }
  return {'params': params, 'batch_stats': stats}


def _spec(variant='gap', grayscale=True, num_heads=1):
  return registry.make_spec(
    'mcl', num_points=5, width=24, num_heads=num_heads, variant=variant, size=50,
    grayscale=grayscale, crop_scale=1.1, dataset='synthetic',
  )  # fmt: skip


@pytest.fixture(scope='module')
def mcl_dir(tmp_path_factory) -> str:
  spec = _spec(num_heads=2)
  path = str(tmp_path_factory.mktemp('model') / 'mcl5')
  checkpoint.export_model(path, _mcl_variables(spec), spec)
  return path


def _crops(spec, n=6, seed=0):
  channels = 1 if spec['grayscale'] else 3
  shape = (n, spec['size'], spec['size'], channels)
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize(
  'variant,grayscale,head', [('gap', True, 0), ('gap', False, 1), ('pre_bm', True, 0)]
)
def test_graph_matches_flax_model(variant, grayscale, head):
  spec = _spec(variant, grayscale, num_heads=2)
  variables = _mcl_variables(spec)
  crops = _crops(spec)
  expected = registry.build(spec).apply(variables, crops, train=False)[:, head]
  folded = jax.tree_util.tree_map(np.asarray, fold_batch_norm(variables)['params'])
  model = graph.mcl_graph(spec, folded, head)
  got = OnnxNetwork(model, threads=1)(crops)
  assert got.shape == (6, 5, 2)
  assert float(np.std(expected)) > 1.0  # the comparison is not between near-constants
  np.testing.assert_allclose(got, expected, atol=FLOAT_ATOL_PX)
  meta = graph.metadata(model)
  assert meta[graph.FINGERPRINT_KEY] == graph.fingerprint(folded)
  assert meta[graph.HEAD_KEY] == str(head)


def test_graph_refuses_unfolded_params_and_bad_head():
  spec = _spec()
  variables = _mcl_variables(spec)
  with pytest.raises(ValueError, match='fold them first'):
    graph.mcl_graph(spec, {**variables['params'], 'bn11': {}})
  with pytest.raises(ValueError, match='head 3'):
    graph.mcl_graph(spec, fold_batch_norm(variables)['params'], head=3)


def test_fingerprint_changes_with_any_weight():
  params = jax.tree_util.tree_map(np.asarray, fold_batch_norm(_mcl_variables(_spec()))['params'])
  changed = jax.tree_util.tree_map(np.copy, params)
  changed['conv42']['bias'][3] += 1e-3
  assert graph.fingerprint(params) != graph.fingerprint(changed)
  assert graph.fingerprint(params) == graph.fingerprint(jax.tree_util.tree_map(np.copy, params))


def test_int8_quantisation_keeps_float_layers_and_metadata():
  spec = _spec()
  folded = jax.tree_util.tree_map(np.asarray, fold_batch_norm(_mcl_variables(spec))['params'])
  model = graph.mcl_graph(spec, folded)
  crops = _crops(spec, 64)
  quantized = int8.quantize(model, crops)
  ops = {n.name: n.op_type for n in quantized.graph.node}
  assert 'QuantizeLinear' in ops.values() and 'DequantizeLinear' in ops.values()
  # The kept-float layers read float weights: no DequantizeLinear produces their kernels.
  kernels = {n.name: n.input[1] for n in quantized.graph.node if n.name in int8.KEEP_FLOAT}
  assert kernels == {'conv11': 'conv11.kernel', 'head': 'head.kernel'}
  meta = graph.metadata(quantized)
  assert meta[int8.QUANTIZED_KEY] == 'int8'
  assert meta[graph.FINGERPRINT_KEY] == graph.fingerprint(folded)
  exact, approx = OnnxNetwork(model)(crops), OnnxNetwork(quantized)(crops)
  spread = float(exact.std())
  assert float(np.abs(approx - exact).mean()) < 0.05 * spread  # close, not equal
  with pytest.raises(ValueError, match=r"no node named \['conv99'\]"):
    int8.quantize(model, crops, keep_float=('conv99',))
  with pytest.raises(ValueError, match='calibration'):
    int8.quantize(model, crops[0])


def test_predictor_backends_agree(mcl_dir):
  image = np.random.default_rng(1).integers(0, 256, (120, 140, 3), np.uint8)
  boxes = [[20, 15, 100, 95], [40, 30, 120, 110]]
  xla = FacePredictor(mcl_dir, head=1, backend='xla')
  onnx_backend = FacePredictor(mcl_dir, head=1, backend='onnx')
  assert (xla.backend, onnx_backend.backend) == ('xla', 'onnx')
  np.testing.assert_allclose(
    onnx_backend.predict_batch([image] * 2, boxes),
    xla.predict_batch([image] * 2, boxes),
    atol=FLOAT_ATOL_PX,
  )
  assert FacePredictor(mcl_dir, fold_bn=False).backend == 'xla'  # only xla runs BN unfolded


def test_auto_backend_takes_a_matching_int8_file_and_refuses_a_stale_one(mcl_dir, tmp_path):
  folder = tmp_path / 'mcl5'
  shutil.copytree(mcl_dir, folder)
  assert FacePredictor(str(folder)).backend == 'onnx'  # on CPU, without int8.onnx
  with pytest.raises(FileNotFoundError, match=r'int8\.onnx: no int8 graph.*lmjax\.export'):
    FacePredictor(str(folder), backend='int8')
  predictor = FacePredictor(str(folder), backend='xla')
  params = jax.tree_util.tree_map(np.asarray, predictor.variables['params'])
  spec = predictor.spec
  quantized = int8.quantize(graph.mcl_graph(spec, params), _crops(spec, 32))
  onnx.save(quantized, folder / 'int8.onnx')
  auto = FacePredictor(str(folder))
  assert auto.backend == 'int8'
  crops = _crops(spec, 4, seed=3)
  np.testing.assert_allclose(
    auto.predict_crops(crops)['points'], predictor.predict_crops(crops)['points'], atol=2.0
  )
  with pytest.raises(ValueError, match='predicts head 0, not head 1'):
    FacePredictor(str(folder), head=1, backend='int8')
  other = registry.init(spec, 7)  # retrained into the same folder
  shutil.rmtree(folder / 'variables')
  checkpoint.save_variables(str(folder / 'variables'), other)
  with pytest.raises(ValueError, match='exported from other weights'):
    FacePredictor(str(folder))


def test_backend_argument_errors(mcl_dir):
  with pytest.raises(ValueError, match="backend 'tpu'"):
    FacePredictor(mcl_dir, backend='tpu')
  with pytest.raises(ValueError, match='fold_bn=True'):
    FacePredictor(mcl_dir, fold_bn=False, backend='onnx')
  spec, variables = registry.read_spec(mcl_dir), checkpoint.load_model(mcl_dir)[1]
  with pytest.raises(ValueError, match='has no folder'):
    FacePredictor.from_variables(spec, variables, backend='int8')
  predictor = FacePredictor(mcl_dir, backend='onnx')
  with pytest.raises(ValueError, match=r'crops: expected \[N, 50, 50, 1\]'):
    predictor.predict_crops(np.zeros((2, 48, 48, 1), np.float32))


def test_export_cli_writes_a_float_graph_that_reloads_without_lmjax(mcl_dir, tmp_path):
  out = tmp_path / 'net.onnx'
  cmd = [sys.executable, '-m', 'lmjax.export', f'--checkpoint={mcl_dir}', f'--out={out}']
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
  report = json.loads((tmp_path / 'net.onnx.json').read_text())
  assert report['format'] == 'onnx' and report['float32_max_diff_px_random_crops'] < 1e-3
  script = (
    'import numpy as np, onnxruntime as ort, sys; '
    f's = ort.InferenceSession({str(out)!r}); '
    'x = np.zeros((3, 50, 50, 1), np.float32); '
    "print(s.run(None, {'crops': x})[0].shape); "
    "assert not [m for m in sys.modules if m.startswith('lmjax')]"
  )
  done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
  assert done.stdout.strip() == '(3, 5, 2)'


def test_export_cli_errors_are_one_line(bbfcn5_random_dir, tmp_path):
  folder = tmp_path / 'backbone'
  shutil.copytree(bbfcn5_random_dir, folder)
  spec = json.loads((folder / 'model.json').read_text())
  (folder / 'model.json').write_text(json.dumps({**spec, 'variant': 'backbone_only'}))
  cmd = [
    sys.executable, '-m', 'lmjax.export', f'--checkpoint={folder}', f'--out={tmp_path / "x.onnx"}',
  ]  # fmt: skip
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
    f"error: {folder}: a BB-FCN 'backbone_only' model; only variant 'bbfcn' (backbone + "
    'branches) exports to onnx (stablehlo exports every variant)'
  )


@pytest.mark.parametrize('name', ['mcl68', 'mcl5'])
def test_published_int8_graphs_match_their_weights_and_report(name):
  folder = ROOT / 'pretrained' / name
  report = json.loads((folder / 'int8.onnx.json').read_text())
  predictor = FacePredictor(str(folder))  # refuses a graph of other weights
  assert predictor.backend == 'int8'
  assert report['format'] == 'onnx-int8' and report['validation_faces'] >= 200
  assert abs(report['nme_ioc_int8_minus_float32']) <= 0.05


def test_int8_parity_on_real_validation_faces(shared_data):
  """Re-measures pretrained/mcl68's int8 graph on the 300-W faces held out of training."""
  from lmjax import export

  folder = str(ROOT / 'pretrained' / 'mcl68')
  spec = registry.read_spec(folder)
  calibration, validation, params = export._calibration_and_validation(
    spec, '300w', str(shared_data / '300w'), None, 64
  )
  del calibration
  xla = FacePredictor(folder, backend='xla')
  quantized = OnnxNetwork(str(pathlib.Path(folder) / 'int8.onnx'))
  report = export._parity(xla, quantized, validation, params)
  assert report['validation_faces'] == 200
  assert abs(report['nme_ioc_int8_minus_float32']) <= 0.05
  onnx_float = FacePredictor(folder, backend='onnx')
  crops = np.concatenate([b.crops for b in _validation_batches(validation, params)])
  np.testing.assert_allclose(
    onnx_float.predict_crops(crops)['points'], xla.predict_crops(crops)['points'],
    atol=FLOAT_ATOL_PX,
  )  # fmt: skip


def _validation_batches(cache, params):
  from lmjax.eval import face_crop

  return face_crop.cache_batches(cache, params, 128)


def test_model_card_section_is_replaced_not_repeated(tmp_path):
  from lmjax import export

  card = tmp_path / 'MODEL_CARD.md'
  card.write_text('# model\n\n## Validation\n\nx\n\n## Chain\n\ny\n')
  report = {
    'calibration': {'faces': 8, 'dataset': 'synthetic'},
    'validation_faces': 4,
    'float32': {'nme_ioc': 4.0, 'nme_ipd': 5.0, 'worst_bin': 'yaw/>=0.25', 'worst_bin_ratio': 1.2},
    'int8': {'nme_ioc': 4.01, 'nme_ipd': 5.02, 'worst_bin': 'yaw/>=0.25', 'worst_bin_ratio': 1.21},
  }
  export._update_model_card(str(tmp_path), 'int8.onnx', report)
  report['int8']['nme_ioc'] = 4.02
  export._update_model_card(str(tmp_path), 'int8.onnx', report)
  text = card.read_text()
  assert text.count(export.CARD_SECTION) == 1
  assert '4.000 (float32) -> 4.020 (int8)' in text and '## Chain\n\ny' in text
