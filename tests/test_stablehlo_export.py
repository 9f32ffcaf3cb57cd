"""StableHLO export of whole predictors (`python -m lmjax.export --format=stablehlo`,
`lmjax.hlo_export`): the crop in jax ops, parity with the folder's predictor (MCL and BB-FCN),
reloading with jax alone, and the exported file behind `load_predictor` / the evaluator."""

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from lmjax.core import image_ops
from lmjax.hlo_export import crop, stablehlo
from lmjax.hlo_export.runner import ExportedPredictor
from lmjax.inference import load_predictor
from lmjax.mcl.predictor import FacePredictor

ROOT = pathlib.Path(__file__).resolve().parents[1]
MCL68 = str(ROOT / 'pretrained' / 'mcl68')
TOLERANCE_PX = 0.01  # the parity bound
SIZE = (240, 320)


@pytest.fixture(scope='module')
def predictor():
  return FacePredictor(MCL68, backend='xla')


@pytest.fixture(scope='module')
def exported_file(tmp_path_factory) -> str:
  """mcl68 exported with symbolic N, H, W (the export itself checks synthetic faces)."""
  path = str(tmp_path_factory.mktemp('export') / 'mcl68.stablehlo')
  stablehlo.export_stablehlo(MCL68, path)
  return path


def test_crop_in_jax_is_the_host_crop():
  """`crop.mcl_crops` cuts `image_ops.mcl_crop`'s uint8 crops: plain, shrunk (area pre-filter),
  across the image edges; at most a few pixels one grey level off (float rounding ties)."""
  image, boxes = stablehlo.synthetic_faces(SIZE, seed=1)
  images = np.repeat(image[None], len(boxes), axis=0)
  with jax.enable_x64(True):
    got, _ = jax.jit(lambda a, b: crop.mcl_crops(a, b, 50, True, 1.1))(images, boxes)
  got = np.round((np.asarray(got) + 1) * 128)
  want = np.stack([image_ops.mcl_crop(image, b.astype(np.float64))[0] for b in boxes])
  want = np.round((want + 1) * 128)
  diff = np.abs(got - want)
  assert diff.max() <= 1
  assert (diff > 0).sum() <= 0.002 * diff.size


def test_sidecar_and_synthetic_parity(exported_file):
  info = json.loads(pathlib.Path(exported_file + '.json').read_text())
  assert info['format'] == 'stablehlo' and info['num_points'] == 68
  assert info['image_size'] is None and 'cpu' in info['platforms']
  assert info['parity']['max_diff_px'] <= TOLERANCE_PX
  assert info['bytes'] == pathlib.Path(exported_file).stat().st_size


def test_parity_on_a_fixed_size_export(predictor):
  """--image_size=HxW: fixed H, W, symbolic N; odd batch sizes run the same program."""
  exported = stablehlo.export_function(stablehlo.predictor_function(predictor), SIZE)
  assert str(exported.in_avals[0].shape[0]) == 'n' and exported.in_avals[0].shape[1:] == (*SIZE, 3)
  image, boxes = stablehlo.synthetic_faces(SIZE, seed=2)
  for count in (1, 3):
    images = np.repeat(image[None], count, axis=0)
    assert stablehlo.max_difference(exported, predictor, images, boxes[:count]) <= TOLERANCE_PX


def _face_windows(folder: pathlib.Path, count: int, side: int = 256):
  """`count` real 300-W faces, each cut to a side × side picture around its face (one shape
  for one compiled program; the face box from its landmarks, partly across some edges)."""
  images, boxes = [], []
  for pts in sorted(folder.glob('*.pts'))[:count]:
    lines = pts.read_text().split('{')[1].split('}')[0].split()
    points = np.asarray(lines, np.float64).reshape(-1, 2)
    image = image_ops.read_image(pts.with_suffix('.jpg'))
    lo, hi = points.min(0), points.max(0)
    scale = (side * 0.6) / max(hi - lo)
    A = np.array([[scale, 0, 0], [0, scale, 0]])
    A[:, 2] = side / 2 - scale * (lo + hi) / 2 + np.array([len(images) * 9 - 20, 0])
    images.append(image_ops.warp(image, A, side))
    boxes.append(np.concatenate([scale * lo + A[:, 2], scale * hi + A[:, 2]]))
  return np.stack(images), np.asarray(boxes, np.float32)


def test_parity_on_real_faces(shared_data, exported_file, predictor):
  """A handful of 300-W faces: in their own photo (symbolic H, W) and cut to one size."""
  folder = shared_data / '300w' / 'lfpw' / 'trainset'
  exported = ExportedPredictor(exported_file, pad_to=1)  # exact: each image at its size
  images, boxes = _face_windows(folder, 6)
  want = predictor.predict_faces(list(images), boxes.astype(np.float64))['points']
  assert np.abs(exported.predict_batch(images, boxes) - want).max() <= TOLERANCE_PX
  pts = sorted(folder.glob('*.pts'))[0]
  photo = image_ops.read_image(pts.with_suffix('.jpg'))
  points = np.asarray(pts.read_text().split('{')[1].split('}')[0].split(), float).reshape(-1, 2)
  box = np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
  got = exported.predict_batch([photo], [box])
  assert np.abs(got - predictor.predict_batch([photo], [box.astype(np.float64)])).max() <= (
    TOLERANCE_PX
  )


def test_padded_export_gives_the_unpadded_points(tmp_path, predictor):
  """--padded: pictures of two sizes padded to one canvas (the third input tells their sizes)
  give the points of the pictures themselves, faces across the bottom and right edges too."""
  path = str(tmp_path / 'padded.stablehlo')
  info = stablehlo.export_stablehlo(MCL68, path, padded=True)
  assert info['padded'] and 'sizes' in info['inputs']
  exported = ExportedPredictor(path, pad_to=256)
  pictures, boxes = [], []
  for size, seed in (((240, 320), 4), ((200, 250), 5)):
    image, b = stablehlo.synthetic_faces(size, seed=seed)
    pictures += [image] * 3
    boxes.append(b[-3:])  # edge faces
  boxes = np.concatenate(boxes)
  want = predictor.predict_faces(pictures, boxes.astype(np.float64))['points']
  assert np.abs(exported.predict_batch(pictures, boxes) - want).max() <= TOLERANCE_PX


@pytest.mark.parametrize('backbone_only', [False, True])
def test_bbfcn_export(tmp_path, backbone_only):
  """BB-FCN folders: RGB crops at the branch resolution, backbone and branches in the graph
  (or the backbone-only points), checked by the export itself and again here on edge faces."""
  from lmjax.bbfcn.predictor import BBFCNPredictor

  folder = str(ROOT / 'pretrained' / 'bbfcn5')
  path = str(tmp_path / 'bbfcn5.stablehlo')
  info = stablehlo.export_stablehlo(folder, path, backbone_only=backbone_only)
  assert info['num_points'] == 5 and info['backbone_only'] == backbone_only
  image, boxes = stablehlo.synthetic_faces(SIZE, seed=6)
  want = BBFCNPredictor(folder, backend='xla').predict_faces(
    [image] * 3, boxes[-3:].astype(np.float64)
  )
  got = ExportedPredictor(path).predict_batch([image] * 3, boxes[-3:])
  assert np.abs(got - want['coarse' if backbone_only else 'points']).max() <= TOLERANCE_PX


def test_reloads_with_jax_alone(exported_file, tmp_path):
  """The file runs in a process that imports only jax and numpy (no lmjax), same points."""
  image, boxes = stablehlo.synthetic_faces(SIZE, seed=3)
  images = np.repeat(image[None], 2, axis=0)
  np.savez(tmp_path / 'inputs.npz', images=images, boxes=boxes[:2])
  script = textwrap.dedent(f"""
    import sys
    import jax
    import numpy as np
    data = np.load({str(tmp_path / 'inputs.npz')!r})
    with open({exported_file!r}, 'rb') as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    points = np.asarray(exported.call(data['images'], data['boxes']))
    np.save({str(tmp_path / 'points.npy')!r}, points)
    assert not any(m.split('.')[0] == 'lmjax' for m in sys.modules), 'lmjax was imported'
  """)
  subprocess.run([sys.executable, '-c', script], check=True, cwd=tmp_path, timeout=120)
  points = np.load(tmp_path / 'points.npy')
  want = ExportedPredictor(exported_file).predict_batch(images, boxes[:2])
  assert points.shape == (2, 68, 2)
  np.testing.assert_allclose(points, want, atol=1e-4)


def test_load_predictor_and_errors(exported_file):
  exported = load_predictor(exported_file)
  assert isinstance(exported, ExportedPredictor) and exported.schema.num_points == 68
  assert not hasattr(exported, 'crop')  # the face-crop evaluator takes predict_images
  with pytest.raises(ValueError, match='head and backend are fixed'):
    load_predictor(exported_file, backend='int8')
  with pytest.raises(FileNotFoundError, match='not found'):
    load_predictor(exported_file + '.missing.stablehlo')


def test_cli_errors_are_one_line(tmp_path):
  """tflite without TensorFlow, int8, --backbone_only of MCL, a bad --image_size: one line."""
  cases = [
    ('--format=tflite', f'--checkpoint={MCL68}', 'TensorFlow'),
    ('--format=stablehlo', '--int8', f'--checkpoint={MCL68}', '--int8 quantises ONNX'),
    ('--format=stablehlo', '--backbone_only', f'--checkpoint={MCL68}', 'not a BB-FCN'),
    ('--format=stablehlo', '--image_size=big', f'--checkpoint={MCL68}', '--image_size'),
  ]
  for *args, message in cases:
    if 'tflite' in args[0] and _has_tensorflow():
      continue
    run = subprocess.run(
      [sys.executable, '-m', 'lmjax.export', *args, f'--out={tmp_path / "x.stablehlo"}'],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=120,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and message in lines[0], lines


def _has_tensorflow() -> bool:
  import importlib.util

  return importlib.util.find_spec('tensorflow') is not None


def _write_300w_windows(source: pathlib.Path, out: pathlib.Path, count: int, side: int = 256):
  """`count` 300-W faces of `source` as side × side .png + .pts pairs in `out` (a 300-W
  folder of one picture size; the face scaled to 0.6 side, its points moved along)."""
  import cv2

  out.mkdir(parents=True)
  for pts in sorted(source.glob('*.pts'))[:count]:
    points = np.asarray(pts.read_text().split('{')[1].split('}')[0].split(), float).reshape(-1, 2)
    lo, hi = points.min(0), points.max(0)
    scale = side * 0.6 / max(hi - lo)
    A = np.array([[scale, 0, 0], [0, scale, 0]])
    A[:, 2] = side / 2 - scale * (lo + hi) / 2
    image = image_ops.warp(image_ops.read_image(pts.with_suffix('.jpg')), A, side)
    cv2.imwrite(str(out / f'{pts.stem}.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    moved = points * scale + A[:, 2]
    body = '\n'.join(f'{x:.3f} {y:.3f}' for x, y in moved)
    (out / pts.name).write_text(f'version: 1\nn_points: 68\n{{\n{body}\n}}\n')


def test_validation_parity_goes_to_the_sidecar_and_the_card(shared_data, exported_file, tmp_path):
  """`lmjax.export --manual_dir`: exported vs folder on a dataset's faces (here 4 real 300-W
  faces of one picture size, so one program compiles) into `<out>.json` and the model card."""
  import shutil

  from lmjax.hlo_export import validation

  folder = tmp_path / 'mcl68'
  shutil.copytree(MCL68, folder)
  _write_300w_windows(
    shared_data / '300w' / 'lfpw' / 'trainset', tmp_path / '300w' / 'lfpw' / 'trainset', 4
  )
  out = str(tmp_path / 'mcl68.stablehlo')
  shutil.copy(exported_file, out)
  shutil.copy(exported_file + '.json', out + '.json')
  sidecar = json.loads(pathlib.Path(exported_file + '.json').read_text())
  kwargs = dict(dataset='300w', manual_dir=str(tmp_path / '300w'), split='train')
  info = validation.record(out, sidecar, str(folder), data_dir=str(tmp_path / 'tfds'), **kwargs)
  v = info['validation_parity']
  assert v['faces'] == 4 and v['max_diff_px'] <= TOLERANCE_PX
  assert abs(v['nme_ioc']['difference']) <= 0.05 and 1 < v['nme_ioc']['folder_xla'] < 20
  assert json.loads(pathlib.Path(out + '.json').read_text())['validation_parity'] == v
  card = (folder / 'MODEL_CARD.md').read_text()
  section = card.split(validation.CARD_SECTION)[1]
  assert f'max {v["max_diff_px"]:.2g} px' in section and '4 300w train faces' in section
  assert f'NME ioc {v["nme_ioc"]["folder_xla"]:.3f}' in section
