"""The notebooks run top to bottom; `python -m lmjax.draw` draws, reads, writes, rejects inputs."""

import json
import os
import pathlib
import runpy
import subprocess
import sys
import warnings

os.environ.setdefault('MPLBACKEND', 'Agg')

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax import draw as draw_cli
from lmjax import synthface
from lmjax.core import head_pose, landmarks
from lmjax.mcl import train as mcl_train
from lmjax.models import registry
from lmjax.train import checkpoint
from lmjax.viz import draw

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))


def get_config(family: str, arg: str):
  return runpy.run_path(str(ROOT / 'configs' / f'{family}.py'))['get_config'](arg)


# ----------------------------------------------------------------------------- helpers
def code_cells(path: pathlib.Path) -> list[str]:
  """Sources of the code cells of a notebook (IPython magics and shell lines are dropped)."""
  nb = json.loads(path.read_text(encoding='utf-8'))
  cells = []
  for c in nb['cells']:
    if c['cell_type'] != 'code':
      continue
    src = ''.join(c['source'])
    cells.append(
      '\n'.join(line for line in src.splitlines() if not line.lstrip().startswith(('%', '!')))
    )
  return cells


def run_notebook(path: pathlib.Path, monkeypatch) -> dict:
  """Executes every code cell of `path` in order in one fresh namespace, from notebooks/."""
  import matplotlib

  matplotlib.use('Agg', force=True)
  import matplotlib.pyplot as plt

  monkeypatch.setenv('MPLBACKEND', 'Agg')
  monkeypatch.chdir(path.parent)
  namespace = {'__name__': '__main__'}
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='.*non-interactive.*', category=UserWarning)
    for i, src in enumerate(code_cells(path)):
      try:
        exec(compile(src, f'{path.name}[code cell {i}]', 'exec'), namespace)
      finally:
        plt.close('all')
  return namespace


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
  """A freshly initialised 5-point MCL (width 16) exported as a model folder."""
  spec = mcl_train.model_spec(get_config('mcl', 'points=5,width=16,data=synthetic,runlocal'), 1)
  model = registry.build(spec)
  # Jitted, with an `rbg` key: threefry's many initialiser draws compile 3× slower on a CPU.
  init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 50, 50, 1)), train=False))
  variables = init(jax.random.key(0, impl='rbg'))
  directory = str(tmp_path_factory.mktemp('models') / 'mcl5')
  checkpoint.export_model(directory, dict(variables), spec)
  return directory


@pytest.fixture(scope='module')
def bbfcn_model_dir(tmp_path_factory) -> str:
  """A freshly initialised 5-point BB-FCN exported as a model folder."""
  from lmjax.bbfcn import train as bbfcn_train

  spec = bbfcn_train.model_spec(get_config('bbfcn', 'points=5,data=synthetic,runlocal'), 'bbfcn')
  directory = str(tmp_path_factory.mktemp('models') / 'bbfcn5')
  checkpoint.export_model(directory, registry.init(spec), spec)
  return directory


@pytest.fixture
def face_png(tmp_path) -> tuple[str, dict]:
  example = synthface.render_face_example((68, 3, 0))
  path = str(tmp_path / 'face.png')
  cv2.imwrite(path, cv2.cvtColor(example['image'], cv2.COLOR_RGB2BGR))
  return path, example


def read_rgb(path: str) -> np.ndarray:
  return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- notebooks
def test_notebooks_are_clean_nbformat4():
  assert {p.name for p in NOTEBOOKS} >= {'datasets.ipynb', 'mcl_inference.ipynb'}
  for path in NOTEBOOKS:
    nb = json.loads(path.read_text(encoding='utf-8'))
    assert nb['nbformat'] == 4, path.name
    assert nb['metadata']['kernelspec']['name'] == 'python3', path.name
    for c in nb['cells']:
      if c['cell_type'] == 'code':
        assert c['outputs'] == [] and c['execution_count'] is None, f'{path.name}: outputs'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, model_dir, bbfcn_model_dir, monkeypatch):
  monkeypatch.setenv('LMJAX_MODEL_DIR', model_dir)
  monkeypatch.setenv('LMJAX_BBFCN_MODEL_DIR', bbfcn_model_dir)
  monkeypatch.setenv('LMJAX_SCAN_LEVELS', '5')
  monkeypatch.setenv('LMJAX_NOTEBOOK_STEPS', '6')  # train_mcl: a tiny run
  namespace = run_notebook(path, monkeypatch)
  if path.stem in ('mcl_inference', 'bbfcn_inference'):
    assert namespace['predictor'] is not None
    assert namespace['results']['num_faces'] > 0
  if path.stem == 'bbfcn_inference':
    assert 'backbone_only' in namespace['results'] and len(namespace['pictures']) == 2
  if path.stem == 'train_mcl':
    assert [r['step'] for r in namespace['train']][-1] == 6 and namespace['points'].shape == (
      8,
      5,
      2,
    )
  if path.stem == 'landmarker':
    assert namespace['landmarker'] is not None and len(namespace['tracks']) == 8
  if path.stem == 'scanner':
    assert namespace['out']['points'].shape[0] == 5
    assert set(namespace['report']['summary']) == {'bbfcn', 'backbone_only'}


def test_inference_notebook_stops_cleanly_without_a_model(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv('LMJAX_MODEL_DIR', str(tmp_path / 'no_model_here'))
  namespace = run_notebook(ROOT / 'notebooks' / 'mcl_inference.ipynb', monkeypatch)
  assert namespace['predictor'] is None
  assert 'No model folder' in capsys.readouterr().out


# ----------------------------------------------------------------------------- draw_landmarks
def test_draw_landmarks_colours_points_by_cluster_and_draws_the_box():
  image = np.zeros((60, 80), np.uint8)  # grey input comes back as RGB
  points = np.array([[10, 20], [30, 20], [20, 30], [12, 45], [28, 45]], np.float32)
  out = draw.draw_landmarks(image, points, box=(5, 10, 70, 50), schema=5, radius=2)
  assert out.shape == (60, 80, 3) and out.dtype == np.uint8
  assert not image.any()  # the input is not modified
  colors = draw.point_colors(5, landmarks.get_schema(5))
  for (x, y), color in zip(points.astype(int), colors, strict=True):
    np.testing.assert_array_equal(out[y, x], color)
  assert (colors[3] == colors[4]).all() and (colors[0] != colors[1]).any()  # mouth: one cluster
  for y, x in ((30, 70), (10, 40)):  # right and top edges of the box: anti-aliased white
    assert (out[y, x] > 200).all() and len(set(out[y, x])) == 1, out[y, x]
  assert not out[55:, :].any() and not out[:, 75:].any()  # nothing outside box and dots
  plain = draw.draw_landmarks(image, points, radius=2)  # no schema: one colour, no box
  np.testing.assert_array_equal(plain[20, 10], draw.POINT_COLOR)
  assert not plain[30, 70].any()


def test_draw_landmarks_scale_keeps_pixel_centres():
  image = np.zeros((20, 30, 3), np.uint8)
  out = draw.draw_landmarks(image, np.array([[4.0, 7.0]]), scale=3, radius=1)
  assert out.shape == (60, 90, 3)
  weight = out.sum(-1).astype(np.float64)
  ys, xs = np.indices(weight.shape)
  centroid = (xs * weight).sum() / weight.sum(), (ys * weight).sum() / weight.sum()
  np.testing.assert_allclose(
    centroid, (13, 22), atol=0.1
  )  # (4 + 0.5) * 3 - 0.5, (7 + 0.5) * 3 - 0.5


def test_draw_landmarks_survives_diverged_predictions():
  image = np.zeros((40, 50, 3), np.uint8)
  points = np.array([[1e12, 3], [np.nan, 1], [-1e30, 5], [10, 10]])
  out = draw.draw_landmarks(image, points, box=(-1e20, 5, 1e20, 30), radius=1.5)
  np.testing.assert_array_equal(out[10, 10], draw.POINT_COLOR)  # the sane point is drawn
  assert (out[5, 25] > 200).all()  # the box's top edge crosses the image


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    ({'points': np.zeros((5, 3))}, 'shape'),
    ({'points': np.zeros((4, 2)), 'schema': 5}, 'schema 5'),
    ({'box': (10, 0, 5, 8)}, 'x1 > x0'),
    ({'image': np.zeros((8, 8, 3), np.float32)}, 'uint8'),
    ({'scale': 0}, 'scale'),
  ],
)
def test_draw_landmarks_rejects_bad_inputs(kwargs, message):
  args = {'image': np.zeros((8, 8, 3), np.uint8), 'points': np.zeros((5, 2))} | kwargs
  with pytest.raises(ValueError, match=message):
    draw.draw_landmarks(**args)


# ----------------------------------------------------------------------------- command line
def test_cli_draws_one_image(model_dir, face_png, tmp_path, capsys):
  path, example = face_png
  out = str(tmp_path / 'out' / 'drawn.png')
  box = ','.join(f'{v:.2f}' for v in example['bbox'])
  args = [f'--checkpoint={model_dir}', f'--image={path}', f'--out={out}', f'--box={box}']
  assert draw_cli.main([*args, '--scale=2']) == 0
  assert capsys.readouterr().out.strip() == out
  drawn = read_rgb(out)
  assert drawn.shape == (256, 256, 3)
  points = draw_cli.draw_image(model_dir, path, out, np.asarray(example['bbox'], np.float64))
  assert points.shape == (5, 2) and np.isfinite(points).all()
  five = landmarks.get_schema(5)
  pose = head_pose.head_pose(points, five)  # 5 points: the head's axes and angles are drawn
  np.testing.assert_array_equal(
    read_rgb(out), draw.draw_landmarks(example['image'], points, example['bbox'], five, pose=pose)
  )


def test_cli_whole_image_box_and_folder(model_dir, face_png, tmp_path):
  path, example = face_png
  folder = tmp_path / 'faces'
  folder.mkdir()
  for name in ('a.png', 'b.jpg'):
    cv2.imwrite(str(folder / name), cv2.cvtColor(example['image'], cv2.COLOR_RGB2BGR))
  (folder / 'a.pts').write_text('not an image, ignored')
  out_dir = tmp_path / 'drawn'
  assert draw_cli.main([f'--checkpoint={model_dir}', f'--folder={folder}', f'--out={out_dir}']) == 0
  assert sorted(os.listdir(out_dir)) == ['a.png', 'b.png']
  single = str(tmp_path / 'single.png')
  assert draw_cli.main([f'--checkpoint={model_dir}', f'--image={path}', f'--out={single}']) == 0
  np.testing.assert_array_equal(read_rgb(single), read_rgb(str(out_dir / 'a.png')))
  assert draw.output_names(['x/a.png', 'x/a.jpg', 'x/b.png']) == ['a_png.png', 'a_jpg.png', 'b.png']


def test_cli_bad_box_is_a_clear_error(model_dir, face_png, tmp_path):
  path, _ = face_png
  out = tmp_path / 'never.png'
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'lmjax.draw',
      f'--checkpoint={model_dir}',
      f'--image={path}',
      f'--out={out}',
      '--box=10,20,5',
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=False,
  )
  assert result.returncode == 2
  assert '--box' in result.stderr and 'x0,y0,x1,y1' in result.stderr and '10,20,5' in result.stderr
  assert not out.exists()


@pytest.mark.parametrize(
  ('flag', 'message'),
  [
    ('--box=40,10,20,30', 'x1 > x0'),
    ('--box=a,b,c,d', 'four comma-separated numbers'),
    ('--box=500,500,600,600', 'lies outside'),
  ],
)
def test_cli_box_errors(model_dir, face_png, tmp_path, capsys, flag, message):
  path, _ = face_png
  with pytest.raises(SystemExit) as exit_info:
    draw_cli.main([f'--checkpoint={model_dir}', f'--image={path}', f'--out={tmp_path}/o.png', flag])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert '--box' in err and message in err


def test_cli_help_and_usage_errors(capsys):
  with pytest.raises(SystemExit) as exit_info:
    draw_cli.main(['--help'])
  assert exit_info.value.code == 0 and '--checkpoint' in capsys.readouterr().out
  cases = [
    (['--image=a.png', '--out=o.png'], '--checkpoint must have a value'),
    (['--checkpoint=m', '--out=o.png'], 'Exactly one of (image, folder)'),
    (['--checkpoint=m', '--image=a', '--folder=b', '--out=o'], 'Exactly one of (image, folder)'),
    (['--checkpoint=m', '--image=a', '--out=o', '--scale=big'], '--scale=big'),
    (['--checkpoint=m', '--image=a', '--out=o', 'extra'], 'unrecognized arguments: extra'),
  ]
  for argv, message in cases:
    with pytest.raises(SystemExit) as exit_info:
      draw_cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and 'lmjax.draw: error:' in err and message in err, argv


def test_cli_input_errors_name_the_file(model_dir, face_png, tmp_path, capsys):
  garbage = tmp_path / 'garbage.jpg'
  garbage.write_bytes(b'not a jpeg')
  cases = [
    ([f'--image={garbage}'], ['--image', str(garbage), 'cannot read']),
    ([f'--image={tmp_path}/missing.png'], ['--image', 'missing.png', 'no such file']),
    ([f'--folder={tmp_path}'], ['--folder', 'garbage.jpg', 'cannot read']),
    ([f'--folder={tmp_path}/none'], ['--folder', 'not a directory']),
  ]
  for args, parts in cases:
    with pytest.raises(SystemExit) as exit_info:
      draw_cli.main([f'--checkpoint={model_dir}', f'--out={tmp_path}/out', *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert all(p in err for p in parts), (args, err)
  with pytest.raises(SystemExit) as exit_info:
    draw_cli.main([f'--checkpoint={tmp_path}', f'--image={face_png[0]}', f'--out={tmp_path}/o.png'])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert '--checkpoint' in err and 'model.json' in err
