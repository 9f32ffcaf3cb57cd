"""BB-FCN's onnxruntime path: the pipeline graph (`lmjax.onnx_export.bbfcn_graph`), the
`BBFCNPredictor` backends (`lmjax.bbfcn.fast_path`) and pretrained/bbfcn5's int8.onnx."""

import json
import pathlib
import shutil

import cv2
import jax
import numpy as np
import pytest

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.data.datasets import mtfl
from lmjax.synthface import render_face_example
from lmjax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDER = str(ROOT / 'pretrained' / 'bbfcn5')
MTFL_FACES = 8


@pytest.fixture(scope='module')
def predictors() -> dict[str, BBFCNPredictor]:
  return {b: BBFCNPredictor(FOLDER, backend=b) for b in ('xla', 'onnx', 'int8')}


def _synthetic_crops(predictor: BBFCNPredictor) -> np.ndarray:
  """4 synthetic faces and 4 crops of uniform noise (whose maps have ties and whole-pixel
  Ave{M, 13} means, where the patch corner's rounding is a knife edge)."""
  faces = [render_face_example(seed, image_size=(160, 160)) for seed in range(4)]
  crops = [predictor.crop(f['image'], f['bbox'])[0] for f in faces]
  noise = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
  return np.concatenate([np.stack(crops), noise])


def _mtfl_faces(data: pathlib.Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
  """The first MTFL training faces (RGB images, rule boxes [N, 4], points [N, 5, 2])."""
  lines = (data / 'mtfl' / 'new_training.txt').read_text().split('\n')[:MTFL_FACES]
  images, points = [], []
  for line in lines:
    name, *values = line.split()
    image = cv2.imread(str(data / 'mtfl' / name.replace('\\', '/')), cv2.IMREAD_COLOR)
    images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    xy = np.asarray(values[:10], np.float32)
    points.append(np.stack([xy[:5], xy[5:]], axis=-1))
  points = np.stack(points)
  return images, mtfl.face_box_np(points), points


def test_onnx_backend_matches_xla(predictors):
  xla, onnx_float = predictors['xla'], predictors['onnx']
  crops = _synthetic_crops(xla)
  want, got = xla.predict_crops(crops), onnx_float.predict_crops(crops)
  np.testing.assert_array_equal(got['origins'], want['origins'])
  for key in ('points', 'coarse'):
    np.testing.assert_allclose(got[key], want[key], atol=1e-3)  # R pixels; observed ~4e-6
  for key in ('maps', 'fine_maps', 'score', 'coarse_score'):
    np.testing.assert_allclose(got[key], want[key], atol=1e-4)
  coarse_only = onnx_float.predict_crops(crops, refine=False)
  np.testing.assert_allclose(coarse_only['points'], want['coarse'], atol=1e-3)


def test_int8_backend_on_real_faces(predictors, shared_data):
  """On MTFL faces the int8 path stays near the float one (500 validation faces: +0.01 NME)."""
  images, boxes, truth = _mtfl_faces(shared_data)
  out = {b: predictors[b].predict_batch(images, boxes) for b in ('xla', 'onnx', 'int8')}
  np.testing.assert_allclose(out['onnx'], out['xla'], atol=1e-3)
  ipd = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=-1)
  nme = {b: np.mean(np.linalg.norm(p - truth, axis=-1).mean(-1) / ipd) for b, p in out.items()}
  assert nme['xla'] < 0.15  # a working model on these faces
  assert abs(nme['int8'] - nme['xla']) < 0.005  # observed 0.0014 (0.14 % of the distance)
  assert np.abs(out['int8'] - out['xla']).max() < 1.5  # px of the 80 × 80 photos; observed 0.42


def test_published_int8_graph_is_the_default_and_within_the_bound():
  report = json.loads((pathlib.Path(FOLDER) / 'int8.onnx.json').read_text())
  assert BBFCNPredictor(FOLDER).backend == 'int8'  # refuses a graph of other weights
  assert report['format'] == 'onnx-int8' and report['validation_faces'] == 500
  assert report['nme_ipd_int8_minus_float32'] <= 0.05
  assert (pathlib.Path(FOLDER) / 'int8.onnx').stat().st_size < 300_000


def test_backend_selection_and_errors(tmp_path):
  plain = tmp_path / 'plain'  # pretrained/bbfcn5 without its int8.onnx
  plain.mkdir()
  shutil.copy(pathlib.Path(FOLDER) / 'model.json', plain)
  shutil.copytree(pathlib.Path(FOLDER) / 'variables', plain / 'variables')
  assert BBFCNPredictor(str(plain)).backend == 'xla'
  assert BBFCNPredictor(str(plain), backend='onnx').backend == 'onnx'
  with pytest.raises(ValueError, match=r"backend 'tpu': expected one of \('auto', 'xla'"):
    BBFCNPredictor(str(plain), backend='tpu')
  with pytest.raises(FileNotFoundError, match=r'int8.onnx: no int8 graph .* lmjax.export'):
    BBFCNPredictor(str(plain), backend='int8')
  _, variables, spec = checkpoint.load_model(str(plain), 'bbfcn')
  retrained = jax.tree_util.tree_map(lambda x: x * 1.01, variables)
  stale = tmp_path / 'stale'  # other weights, the published int8.onnx
  checkpoint.export_model(str(stale), retrained, spec)
  shutil.copy(pathlib.Path(FOLDER) / 'int8.onnx', stale / 'int8.onnx')
  with pytest.raises(ValueError, match='exported from other weights'):
    BBFCNPredictor(str(stale))
  with pytest.raises(ValueError, match=r"backend 'int8' reads a model folder's int8\.onnx"):
    BBFCNPredictor.from_variables(spec, variables, backend='int8')
  backbone = {**spec, 'variant': 'backbone_only'}
  with pytest.raises(ValueError, match=r"only variant 'bbfcn' .* has an ONNX graph"):
    BBFCNPredictor.from_variables(backbone, variables, backend='onnx')
  with pytest.raises(ValueError, match=r'crops: expected \[N, 64, 64, 3\] float32 face crops'):
    BBFCNPredictor(str(plain), backend='onnx').predict_crops(np.zeros((2, 32, 32, 3)))
