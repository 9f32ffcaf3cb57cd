"""The scanner's whole-image scan exported at a fixed canvas (`lmjax.export --scanner`,
`lmjax.hlo_export.scan_export`): OpenCV's pyramid resize in jax ops, parity with
`Scanner.scan`, letterboxing of other sizes and reloading with jax alone."""

import json
import pathlib
import subprocess
import sys
import textwrap
import types

import cv2
import jax
import numpy as np
import pytest

from lmjax import export
from lmjax.hlo_export import resize, scan_export
from lmjax.hlo_export.runner import ExportedPredictor
from lmjax.hlo_export.scan_runner import ExportedScanner
from lmjax.scan import tiling
from lmjax.scan.scanner import Scanner

ROOT = pathlib.Path(__file__).resolve().parents[1]
BBFCN5 = str(ROOT / 'pretrained' / 'bbfcn5')
CANVAS = (120, 160)
LEVELS = 4  # one tile: a small program to compile


@pytest.fixture(scope='module')
def exported_file(tmp_path_factory) -> str:
  """bbfcn5's scan of the canvas (its parity is checked by the tests, not by the export:
  one compilation of the exported program fewer)."""
  path = str(tmp_path_factory.mktemp('scan') / 'scan.stablehlo')
  scan_export.export_scanner(BBFCN5, path, CANVAS, levels=LEVELS, scenes=0)
  return path


@pytest.fixture(scope='module')
def exported(exported_file):
  return ExportedScanner(exported_file)


@pytest.fixture(scope='module')
def scanner():
  return Scanner.load(BBFCN5, levels=LEVELS)


@pytest.mark.parametrize(
  'sizes, mode',
  [
    ((96, 128, 37, 49), 'area'),
    ((96, 128, 48, 64), 'area_2x2'),
    ((96, 128, 32, 32), 'area_fast'),
    ((40, 50, 58, 73), 'linear'),
  ],
)
def test_resize_in_jax_is_opencvs(sizes, mode):
  """The pyramid resize (`tiling._resize`, OpenCV) redone with static taps: at most one grey
  level off on under 0.5 % of the pixels (float sums in another order)."""
  h, w, rows, cols = sizes
  noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
  image = cv2.GaussianBlur(noise, (0, 0), 1.5)
  how = resize.plan(h, w, rows, cols)
  assert how.mode == mode
  got = np.asarray(jax.jit(lambda x: resize.apply(x.astype(np.float32), how))(image))
  diff = np.abs(got - tiling._resize(image, rows, cols))
  assert got.shape == (rows, cols, 3) and diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_sidecar_and_parity_with_the_host_scan(exported_file, exported, scanner):
  """Same detections as `Scanner.scan` (OpenCV pyramid on the host) on synthetic scenes."""
  info = json.loads(pathlib.Path(exported_file + '.json').read_text())
  assert info['kind'] == 'scanner' and info['canvas'] == list(CANVAS) and info['levels'] == LEVELS
  assert info['bytes'] == pathlib.Path(exported_file).stat().st_size
  check = scan_export.parity(exported.scan, scanner, scan_export.synthetic_scenes(5, CANVAS, 2))
  assert check['detections'][0] == check['detections'][1] > 0, check
  assert check['matched_detections'] == check['detections'][0], check
  assert check['max_matched_px'] <= 1.0 and check['matched_faces'] == check['faces'][0], check


def test_letterboxed_pictures_map_back(exported, scanner):
  """A 240 × 300 picture is scaled by 0.5 onto the 120 × 160 canvas (grey on the right):
  its detections are the host scan of that canvas, in the picture's own pixels."""
  picture = scan_export.synthetic_scenes(5, (240, 300), 1)[0]
  canvas, scale = exported.letterbox(picture)
  assert canvas.shape == (*CANVAS, 3) and np.all(canvas[:, 150:] == 128)
  np.testing.assert_allclose(scale, 0.5)
  want = scanner.scan(canvas)
  for key in ('points', 'faces'):
    want[key] = (want[key] + 0.5) / 0.5 - 0.5
  check = scan_export.compare_scans(want, exported.scan(picture))
  assert check['detections'][0] == check['detections'][1] > 0, check
  assert check['matched_detections'] == check['detections'][0], check


def test_reloads_with_jax_alone(exported_file, exported, tmp_path):
  """The file runs in a process that imports only jax and numpy: the same detections."""
  image = scan_export.synthetic_scenes(5, CANVAS, 1)[0]
  np.save(tmp_path / 'image.npy', image)
  script = textwrap.dedent(f"""
    import sys
    import jax
    import numpy as np
    with open({exported_file!r}, 'rb') as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    out = exported.call(np.load({str(tmp_path / 'image.npy')!r}))
    np.savez({str(tmp_path / 'out.npz')!r}, **jax.device_get(out))
    assert not any(m.split('.')[0] == 'lmjax' for m in sys.modules), 'lmjax was imported'
  """)
  subprocess.run([sys.executable, '-c', script], check=True, cwd=tmp_path, timeout=120)
  out = np.load(tmp_path / 'out.npz')
  want = exported.scan(image)
  assert out['points'].shape == (5, 30, 2) and out['valid'].any()
  np.testing.assert_array_equal(out['valid'], want['valid'])
  np.testing.assert_allclose(out['points'], want['points'], atol=1e-4)


def test_errors(exported_file):
  """Bad canvases, a non-BB-FCN folder, a scanner file given as a predictor: one clear line."""
  with pytest.raises(ValueError, match='--canvas: the scanner export needs a fixed HxW'):
    scan_export.parse_canvas('any')
  with pytest.raises(ValueError, match='--canvas: expected HxW'):
    scan_export.parse_canvas('big')
  with pytest.raises(ValueError, match="'experiment' is 'mcl', not bbfcn"):
    scan_export.export_scanner(str(ROOT / 'pretrained' / 'mcl5'), 'x', CANVAS)
  with pytest.raises(ValueError, match='a whole-image scanner export'):
    ExportedPredictor(exported_file)
  flags = types.SimpleNamespace(format='onnx', int8=False, padded=False, head=0)
  with pytest.raises(ValueError, match='--scanner exports --format=stablehlo only'):
    export.export_scanner(flags)
  flags.format, flags.padded = 'stablehlo', True
  with pytest.raises(ValueError, match='--scanner takes --canvas'):
    export.export_scanner(flags)
  with pytest.raises(ValueError, match='not the sidecar of a scanner export'):
    ExportedScanner(str(ROOT / 'pretrained' / 'mcl5' / 'int8.onnx'))
