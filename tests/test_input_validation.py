"""Bad inputs are one-line errors: predictor images and boxes, model folders, `python -m
lmjax.evaluate` and `python -m lmjax.draw` (issue 14)."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lmjax import draw as draw_cli
from lmjax.inference import load_predictor
from lmjax.models import registry
from lmjax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE = np.zeros((64, 80, 3), np.uint8)  # W = 80, H = 64
GOOD = (10.0, 8.0, 50.0, 48.0)
INF, NAN = float('inf'), float('nan')


# ----------------------------------------------------------------------------- model folders
@pytest.fixture(scope='module')
def model_dirs(tmp_path_factory) -> dict[str, str]:
  """Freshly initialised 5-point MCL (width 16) and BB-FCN model folders."""
  root = tmp_path_factory.mktemp('models')
  specs = {
    'mcl': registry.make_spec(
      'mcl', num_points=5, width=16, num_heads=1, variant='gap', size=50, crop_scale=1.1,
      grayscale=True, dataset='synthetic',
    ),
    'bbfcn': registry.make_spec(
      'bbfcn', variant='bbfcn', num_points=5, size=32, refine_size=64, crop_scale=1.1,
      dataset='synthetic', face_template=[[0.5, 0.5]] * 5,
    ),
  }  # fmt: skip
  for family, spec in specs.items():
    checkpoint.export_model(str(root / family), registry.init(spec), spec)
  return {family: str(root / family) for family in specs}


@pytest.fixture(scope='module')
def predictors(model_dirs):
  return {family: load_predictor(path) for family, path in model_dirs.items()}


def _truncate_variables(folder: pathlib.Path) -> None:
  """Halves every array chunk file of `variables/` (an interrupted copy)."""
  chunks = [p for p in (folder / 'variables').rglob('*') if p.is_file() and p.parent.name == 'd']
  assert chunks
  for p in chunks:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _break_json(folder: pathlib.Path) -> None:
  (folder / 'model.json').write_text('{"experiment": "mcl",\n  "size": }\n')


BREAKERS = {
  'no_model_json': lambda f: (f / 'model.json').unlink(),
  'bad_json': _break_json,
  'no_variables': lambda f: shutil.rmtree(f / 'variables'),
  'truncated_variables': _truncate_variables,
}


def broken_copy(model_dir: str, tmp_path: pathlib.Path, how: str) -> str:
  """A copy of `model_dir` under `tmp_path`, broken as BREAKERS[how] says."""
  folder = tmp_path / how
  shutil.copytree(model_dir, folder)
  BREAKERS[how](folder)
  return str(folder)


# ----------------------------------------------------------------------------- predictors
BATCH = ([IMAGE] * 4, [GOOD] * 4)


def _batch(i: int, image=None, box=None):
  images, boxes = list(BATCH[0]), list(BATCH[1])
  if image is not None:
    images[i] = image
  if box is not None:
    boxes[i] = box
  return images, boxes


PREDICTOR_CASES = [
  (
    'predict',
    IMAGE,
    (10, 10, INF, 50),
    'box: expected a face box with finite coordinates, got (10, 10, inf, 50)',
  ),
  ('predict', IMAGE, (10, NAN, 40, 50), 'box: expected a face box with finite coordinates'),
  ('predict', IMAGE, (200, 200, 300, 300), 'box: (200, 200, 300, 300) lies outside image (80×64'),
  (
    'predict',
    IMAGE,
    (1e7, 1e7, 1e7 + 50, 1e7 + 50),
    '(10000000, 10000000, 10000050, 10000050) lies',
  ),
  ('predict', IMAGE, (-100, -100, -50, -50), 'lies outside image'),
  ('predict', IMAGE, (80, 10, 120, 50), 'lies outside image'),  # left of x = W - 1 only
  (
    'predict',
    IMAGE,
    (10, 10, 10 + 1e-6, 10 + 1e-6),
    'box: expected a face box (x0, y0, x1, y1) with x1 - x0 >= 1 and y1 - y0 >= 1 pixel',
  ),
  ('predict', IMAGE, (10, 10, 10.5, 40), 'x1 - x0 >= 1'),
  ('predict', IMAGE, (40, 10, 20, 50), 'x1 - x0 >= 1'),
  (
    'predict',
    IMAGE,
    (1, 2, 3),
    'box: expected a face box of 4 numbers (x0, y0, x1, y1), got shape (3,)',
  ),
  ('predict', IMAGE, 'a,b,c,d', 'box: expected a face box of 4 numbers'),
  ('predict', IMAGE.astype(np.float32), GOOD, 'image: expected a uint8 [H, W] or [H, W, 1] grey'),
  ('predict', np.zeros((64, 80, 4), np.uint8), GOOD, 'got uint8 (64, 80, 4)'),
  ('predict', np.zeros((0, 0, 3), np.uint8), GOOD, 'image: expected a uint8'),
  ('predict', np.zeros((6, 80), np.uint8), GOOD, 'at least 8×8 pixels, got uint8 (6, 80)'),
  ('predict', None, GOOD, 'image: expected a uint8'),
  ('crop', IMAGE, (200, 200, 300, 300), 'box: (200, 200, 300, 300) lies outside image'),
  (
    'predict_batch',
    *_batch(3, box=(0, 0, INF, 9)),
    'boxes[3]: expected a face box with finite coordinates',
  ),
  (
    'predict_batch',
    *_batch(1, box=(90, 0, 99, 9)),
    'boxes[1]: (90, 0, 99, 9) lies outside images[1]',
  ),
  (
    'predict_batch',
    *_batch(2, box=(5, 5, 5, 9)),
    'boxes[2]: expected a face box (x0, y0, x1, y1) with x1 - x0 >= 1',
  ),
  ('predict_batch', *_batch(2, image=np.zeros((4, 4), np.uint8)), 'images[2]: expected a uint8'),
  ('predict_faces', *_batch(0, box=(-9, -9, -1, -1)), 'boxes[0]: (-9, -9, -1, -1) lies outside'),
  ('predict_faces', [IMAGE], [GOOD, GOOD], 'expected one box per image, got 1 images and 2 boxes'),
]


@pytest.mark.parametrize('family', ['mcl', 'bbfcn'])
@pytest.mark.parametrize(('call', 'image', 'box', 'message'), PREDICTOR_CASES)
def test_predictors_reject_bad_inputs(predictors, family, call, image, box, message):
  with pytest.raises(ValueError) as e:
    getattr(predictors[family], call)(image, box)  # lists of faces for the batch calls
  assert message in str(e.value) and '\n' not in str(e.value), str(e.value)


@pytest.mark.parametrize('family', ['mcl', 'bbfcn'])
def test_predictors_accept_boxes_partly_outside_and_grey_images(predictors, family):
  predictor = predictors[family]
  images = [IMAGE, IMAGE[:, :, 0], IMAGE[:, :, :1]]
  boxes = [(-20, -30, 30, 20), (0, 0, 1, 1), (60, 40, 200, 150)]  # overlapping, 1-pixel, corner
  points = predictor.predict_batch(images, boxes)
  assert points.shape == (3, 5, 2) and np.isfinite(points).all()


# ----------------------------------------------------------------------------- model folders
@pytest.mark.parametrize(
  ('how', 'error', 'message'),
  [
    ('no_model_json', FileNotFoundError, 'no_model_json is not an lmjax model folder'),
    ('bad_json', registry.SpecError, 'bad_json/model.json: not valid JSON (line 2 col 11'),
    ('no_variables', checkpoint.ModelFolderError, 'no_variables/variables: missing (incomplete'),
    ('truncated_variables', checkpoint.ModelFolderError, 'variables: cannot be read (corrupt'),
  ],
)
@pytest.mark.parametrize('load', ['load_model', 'load_predictor'])
def test_broken_model_folders_are_one_line_errors(model_dirs, tmp_path, how, error, message, load):
  folder = broken_copy(model_dirs['mcl'], tmp_path, how)
  fn = checkpoint.load_model if load == 'load_model' else load_predictor
  with pytest.raises(error) as e:
    fn(folder)
  assert message in str(e.value) and '\n' not in str(e.value), str(e.value)


# ----------------------------------------------------------------------------- evaluate CLI
def run_evaluate(args: list[str], tmp_path: pathlib.Path, **env: str):
  """`python -m lmjax.evaluate ARGS` in a subprocess (datasets prepared under `tmp_path`)."""
  environ = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'LMJAX_DATA_DIR': str(tmp_path / 'tfds')}
  environ.pop('LMJAX_VERBOSE', None)
  cmd = [sys.executable, '-m', 'lmjax.evaluate', f'--output={tmp_path}/m.json', *args]
  return subprocess.run(
    cmd, cwd=ROOT, env={**environ, **env}, capture_output=True, text=True, timeout=300
  )


EVALUATE_CASES = [
  ('no_model_json', ['--dataset=300w'], 'is not an lmjax model folder: model.json is missing'),
  ('bad_json', ['--dataset=300w'], 'model.json: not valid JSON (line 2 col 11'),
  ('no_variables', ['--dataset=300w'], 'variables: missing (incomplete model folder'),
  ('truncated_variables', ['--dataset=300w'], 'variables: cannot be read (corrupt'),
  (None, ['--dataset=nope'], "--dataset: unknown dataset 'nope'"),
  (None, ['--dataset=300w', '--manual_dir={tmp}/missing'], '{tmp}/missing'),
  (None, ['--dataset=300w', '--manual_dir={tmp}', '--split=common'], '{tmp}'),
  (None, ['--dataset=300w', '--manual_dir={tmp}', '--split=bogus'], "'bogus'"),
  (None, ['--dataset=cofw', '--manual_dir={tmp}', '--split=bogus'], "'bogus'"),
]


@pytest.mark.parametrize(('how', 'args', 'message'), EVALUATE_CASES)
def test_evaluate_cli_prints_one_error_line(model_dirs, tmp_path, how, args, message):
  folder = broken_copy(model_dirs['mcl'], tmp_path, how) if how else model_dirs['mcl']
  args = [a.format(tmp=tmp_path) for a in args]
  result = run_evaluate([f'--checkpoint={folder}', *args], tmp_path)
  lines = result.stderr.splitlines()
  assert result.returncode != 0
  assert len(lines) == 1 and lines[0].startswith('error:'), result.stderr[-3000:]
  assert message.format(tmp=tmp_path) in lines[0], lines[0]


@pytest.mark.parametrize('verbose', [['--verbose'], []])
def test_evaluate_cli_verbose_shows_the_traceback(model_dirs, tmp_path, verbose):
  env = {} if verbose else {'LMJAX_VERBOSE': '1'}
  args = [f'--checkpoint={model_dirs["mcl"]}', '--dataset=nope', *verbose]
  result = run_evaluate(args, tmp_path, **env)
  assert result.returncode != 0
  assert 'Traceback' in result.stderr and "unknown dataset 'nope'" in result.stderr


# ----------------------------------------------------------------------------- draw CLI
@pytest.fixture
def face_png(tmp_path) -> str:
  import cv2

  path = str(tmp_path / 'face.png')
  cv2.imwrite(path, np.full((64, 80, 3), 128, np.uint8))
  return path


DRAW_CASES = [  # the checkpoint does not exist: every check comes before loading the model
  (['--out={tmp}/drawn'], "--out: '{tmp}/drawn' has no extension"),
  (['--out={tmp}/drawn.xyz'], "--out: OpenCV cannot write '.xyz' files"),
  (['--out={tmp}/face.png/o.png'], "--out: '{tmp}/face.png' lies below the file"),
  (['--out={tmp}'], "--out: '{tmp}' is a folder"),
  (
    ['--out={tmp}/o.png', '--box=10,10,10.000001,10.000001'],
    '--box: expected a face box (x0, y0, x1, y1) with x1 - x0 >= 1',
  ),
  (
    ['--out={tmp}/o.png', '--box=1e7,1e7,10000050,10000050'],
    '--box: (10000000, 10000000, 10000050, 10000050) lies',
  ),
  (['--out={tmp}/o.png', '--box=-100,-100,-50,-50'], "lies outside '{tmp}/face.png' (80×64"),
  (['--out={tmp}/o.png', '--box=10,10,inf,50'], '--box: expected four'),
  (['--out={tmp}/o.png', '--image={tmp}/tiny.png'], "--image: '{tmp}/tiny.png': expected a uint8"),
  (['--out={tmp}/face.png/drawn', '--folder={tmp}'], "--out: '{tmp}/face.png/drawn' lies below"),
]


@pytest.mark.parametrize(('args', 'message'), DRAW_CASES)
def test_draw_cli_checks_inputs_before_any_work(face_png, tmp_path, capsys, args, message):
  import cv2

  cv2.imwrite(str(tmp_path / 'tiny.png'), np.zeros((4, 4, 3), np.uint8))
  args = [a.format(tmp=tmp_path) for a in args]
  if not any(a.startswith(('--image', '--folder')) for a in args):
    args.append(f'--image={face_png}')
  with pytest.raises(SystemExit) as exit_info:
    draw_cli.main([f'--checkpoint={tmp_path}/no_model', *args])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
  assert err.startswith('python -m lmjax.draw: error: ') and message.format(tmp=tmp_path) in err


@pytest.mark.parametrize('how', ['bad_json', 'no_variables', 'truncated_variables'])
def test_draw_cli_names_a_broken_model_folder(model_dirs, tmp_path, face_png, capsys, how):
  folder = broken_copy(model_dirs['mcl'], tmp_path, how)
  with pytest.raises(SystemExit) as exit_info:
    draw_cli.main([f'--checkpoint={folder}', f'--image={face_png}', f'--out={tmp_path}/o.png'])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
  assert f'--checkpoint: {folder}/' in err
