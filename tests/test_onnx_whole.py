"""Whole predictors as ONNX (`python -m lmjax.export --format=onnx --image_size=HxW`,
`lmjax.hlo_export.onnx_whole` / `onnx_file` / `onnx_runner`): the crop in the graph, parity with the
folder's predictor on real faces, the BB-FCN tracing stand-ins, loading and errors. The export
needs jax2onnx (the `onnx` extra): those tests skip without it."""

import importlib.util
import pathlib
import sys
import types

import numpy as np
import pytest

from lmjax.core import image_ops
from lmjax.hlo_export import onnx_bbfcn
from lmjax.hlo_export.onnx_runner import OnnxPredictor
from lmjax.inference import load_predictor

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_stablehlo_export import _face_windows

ROOT = pathlib.Path(__file__).resolve().parents[1]
MCL68 = str(ROOT / 'pretrained' / 'mcl68')
TOLERANCE_PX = 0.01  # the fp32 parity bound
CANVAS = (256, 256)
needs_jax2onnx = pytest.mark.skipif(
  importlib.util.find_spec('jax2onnx') is None, reason='jax2onnx not installed (onnx extra)'
)


@pytest.fixture(scope='module')
def mcl68_onnx(tmp_path_factory) -> str:
  """mcl68's whole predictor on a 256 × 256 canvas (the export checks synthetic faces)."""
  from lmjax.hlo_export import onnx_file

  path = str(tmp_path_factory.mktemp('onnx') / 'mcl68.onnx')
  onnx_file.export_predictor(MCL68, path, CANVAS)
  return path


def test_bbfcn_tracing_stand_ins_match_inference():
  """The three steps swapped in while jax2onnx traces BB-FCN give the originals' numbers."""
  import jax

  from lmjax.bbfcn import inference
  from lmjax.core import heatmaps

  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  maps = rng.uniform(0, 1, (2, 32, 32, 4)).astype(np.float32)
  origins = rng.integers(0, 32 - 24, (2, 4, 2)).astype(np.int32)
  onnx_bbfcn.resize_matrix(32, 12)  # outside the jit, as `bbfcn_graph` does

  def both(module):  # one compiled program per side
    return jax.jit(
      lambda x, m, o: (
        module.resize_to(x, 12),
        *(module.top_mean(m, 13)),
        module.extract_patches(x, m, o),
      )
    )(images, maps, origins)

  mine = both(onnx_bbfcn)
  theirs = both(types.SimpleNamespace(**vars(inference), top_mean=heatmaps.top_mean))
  np.testing.assert_allclose(mine[0], theirs[0], atol=1e-5)  # resize: summation order
  for got, want in zip(mine[1:], theirs[1:], strict=True):
    np.testing.assert_array_equal(got, want)


@needs_jax2onnx
def test_mcl_parity_on_real_faces(shared_data, mcl68_onnx):
  """Real 300-W faces cut to pictures smaller than the canvas: ≤ 0.01 px from the folder."""
  from lmjax.mcl.predictor import FacePredictor

  predictor = OnnxPredictor(mcl68_onnx)
  assert predictor.info['parity']['max_diff_px'] <= TOLERANCE_PX
  assert predictor.image_size == CANVAS and predictor.schema.num_points == 68
  images, boxes = _face_windows(shared_data / '300w' / 'lfpw' / 'trainset', 12, side=200)
  want = FacePredictor(MCL68, backend='xla').predict_faces(list(images), boxes.astype(np.float64))
  got = predictor.predict_batch(list(images), boxes)
  assert np.abs(got - want['points']).max() <= TOLERANCE_PX


@needs_jax2onnx
def test_loading_and_one_line_errors(mcl68_onnx, tmp_path):
  assert isinstance(load_predictor(mcl68_onnx), OnnxPredictor)
  with pytest.raises(ValueError, match='head and backend are fixed'):
    load_predictor(mcl68_onnx, backend='int8')
  with pytest.raises(ValueError, match='network without'):
    OnnxPredictor(str(ROOT / 'pretrained' / 'mcl68' / 'int8.onnx'))  # takes crops
  with pytest.raises(FileNotFoundError, match='not found'):
    OnnxPredictor(str(tmp_path / 'missing.onnx'))
  (tmp_path / 'junk.onnx').write_bytes(b'\x00not a model')
  with pytest.raises(ValueError, match='not an ONNX file'):
    OnnxPredictor(str(tmp_path / 'junk.onnx'))
  big = np.zeros((300, 200, 3), np.uint8)
  with pytest.raises(ValueError, match=r'images\[0\]: 300x200 pixels do not fit'):
    OnnxPredictor(mcl68_onnx).predict_batch([big], [[10, 10, 90, 90]])


def test_export_flags_are_checked():
  from lmjax.export import export_onnx_predictor

  with pytest.raises(ValueError, match='needs a fixed canvas --image_size=HxW'):
    export_onnx_predictor(str(ROOT / 'pretrained' / 'bbfcn5'), 'x.onnx', 'any')
  with pytest.raises(ValueError, match='not a BB-FCN one'):
    export_onnx_predictor(MCL68, 'x.onnx', '64x64', backbone_only=True)


def test_grey_pictures_are_repeated(mcl68_onnx):
  """A grey [h, w] picture gives the points of its RGB copy."""
  if importlib.util.find_spec('jax2onnx') is None:
    pytest.skip('jax2onnx not installed (onnx extra)')
  grey = np.random.default_rng(3).integers(0, 256, (120, 150), np.uint8)
  predictor = OnnxPredictor(mcl68_onnx)
  box = [[20, 15, 110, 105]]
  np.testing.assert_array_equal(
    predictor.predict_batch([grey], box),
    predictor.predict_batch([image_ops.check_image(np.repeat(grey[..., None], 3, 2))], box),
  )


def _real_crops(predictor, folder: pathlib.Path, start: int, count: int):
  """The predictor's crops [M, R, R, 3] of `count` 300-W faces (box: the points' bounds) and
  their ground truth in crop pixels [M, 68, 2]."""
  crops, truth = [], []
  for pts in sorted(folder.glob('*.pts'))[start : start + count]:
    text = pts.read_text().split('{')[1].split('}')[0].split()
    points = np.asarray(text, np.float64).reshape(-1, 2) - 1  # 1-based -> 0-based
    image = image_ops.read_image(pts.with_suffix('.jpg'))
    crop, affine = predictor.crop(image, np.concatenate([points.min(0), points.max(0)]))
    crops.append(crop)
    truth.append(points @ affine[:, :2].T + affine[:, 2])
  return np.stack(crops).astype(np.float32), np.stack(truth)


def _nme_ioc(points, truth) -> float:
  """Mean point error / outer-eye-corner distance (points 36 and 45), percent."""
  ioc = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
  return float(100 * (np.linalg.norm(points - truth, axis=-1).mean(-1) / ioc).mean())


@needs_jax2onnx
def test_bbfcn68_backbone_float32_and_int8_on_real_faces(shared_data):
  """BB-FCN68's backbone-only network as ONNX on real 300-W faces: float32 within 0.01 px of
  JAX; int8 (calibrated on 48 LFPW faces) within 0.05 NME ioc of float32 on 40 HELEN faces.
  (With branches, near-tied map cells make a few points differ: module `onnx_file`.)"""
  from lmjax.bbfcn.predictor import BBFCNPredictor
  from lmjax.onnx_export import int8
  from lmjax.onnx_export.session import OnnxNetwork

  predictor = BBFCNPredictor(str(ROOT / 'pretrained' / 'bbfcn68'))
  network = onnx_bbfcn.bbfcn_graph(predictor, refine=False)
  root = shared_data / '300w'
  calibration, _ = _real_crops(predictor, root / 'lfpw' / 'trainset', 0, 48)
  crops, truth = _real_crops(predictor, root / 'helen' / 'trainset', 0, 40)
  exact = OnnxNetwork(network)(crops)
  want = predictor.predict_crops(crops, refine=False)['points']
  assert np.abs(exact - want).max() <= TOLERANCE_PX
  convs = [n.name for n in network.graph.node if n.op_type == 'Conv']
  quantized = int8.quantize(network, calibration, convs[:1], ('Conv', 'ConvTranspose'))
  approx = OnnxNetwork(quantized)(crops)
  assert not np.array_equal(approx, exact)  # it is quantised
  assert abs(_nme_ioc(approx, truth) - _nme_ioc(exact, truth)) <= 0.05
