"""WFLW builder on a generated copy of the official layout, its protocol numbers by hand, and
the evaluation command's `run` end to end with a random-weight 98-point model."""

import json
import os

import cv2
import numpy as np
import pytest

from lmjax.core.landmarks import WFLW98
from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, wflw
from lmjax.eval import protocols

RNG = np.random.default_rng(0)
LIST_DIR = os.path.join('WFLW_annotations', 'list_98pt_rect_attr_train_test')


def _face(x0=20.0, y0=15.0, side=60.0):
  """98 random points inside a box, the box and a line's 207 fields (without the path)."""
  points = np.round(RNG.uniform(0, side, (98, 2)) + np.array([x0, y0]), 3)
  box = [x0 - 2, y0 - 3, x0 + side + 2, y0 + side + 1]
  return points, box


def _line(points, box, flags, image):
  fields = [f'{v:.3f}' for v in points.reshape(-1)] + [f'{v:g}' for v in box]
  return ' '.join(fields + [str(f) for f in flags] + [image])


def write_wflw(root, faces):
  """Writes images and the lists; `faces`: split -> [(image rel path, points, box, flags)]."""
  for split, rows in faces.items():
    lines = []
    for rel, points, box, flags in rows:
      path = root / 'WFLW_images' / rel
      path.parent.mkdir(parents=True, exist_ok=True)
      if not path.exists():
        cv2.imwrite(str(path), RNG.integers(0, 255, (96, 110, 3), dtype=np.uint8))
      lines.append(_line(points, box, flags, rel))
    folder = root / LIST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / wflw.LISTS[split]).write_text('\n'.join(lines) + '\n')


@pytest.fixture
def tree(tmp_path):
  root = tmp_path / 'wflw'
  faces = {'train': [], 'test': []}
  for i in range(3):
    faces['train'].append((f'0--Parade/0_Parade_{i}.jpg', *_face(), [0, 0, 0, 0, 0, 0]))
  flags = [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]
  for i, f in enumerate(flags):  # test images 0 and 1 hold two faces each
    faces['test'].append((f'7--Cheering/7_Cheering_{i // 2}.jpg', *_face(x0=10 + 20 * i), f))
  write_wflw(root, faces)
  return root, faces


def _load(split, root, tmp_path):
  return datasets.load('wflw', split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'))


def test_wflw_builder_reads_lists_as_written(tree, tmp_path):
  root, faces = tree
  test = _load('test', root, tmp_path)
  assert len(test) == 4 and datasets.schema_of(test) is WFLW98
  by_id = {}
  for i in range(len(test)):
    ex = datasets.decode(test[i])
    by_id[ex['image_id']] = ex
  assert sorted(by_id) == [f'7--Cheering/7_Cheering_{i // 2}#{i + 1}' for i in range(4)]
  for i, (rel, points, box, flags) in enumerate(faces['test']):
    ex = by_id[f'{os.path.splitext(rel)[0]}#{i + 1}']
    np.testing.assert_allclose(ex['landmarks'], points, atol=1e-4)  # no 1-based shift
    np.testing.assert_allclose(ex['bbox'], box)
    np.testing.assert_array_equal(ex['attributes'], np.array(flags, bool))
    assert ex['visible'].all() and ex['image'].shape == (96, 110, 3)
  assert len(_load('train', root, tmp_path)) == 3


@pytest.mark.parametrize(
  ('damage', 'message'),
  [
    ('drop_field', r'list_98pt_rect_attr_test\.txt:2: expected 207 fields .*, got 206'),
    ('word', r'list_98pt_rect_attr_test\.txt:3: the first 206 fields must be numbers'),
    ('flag', r'list_98pt_rect_attr_test\.txt:1: attribute flags must be 0 or 1'),
    ('box', r'list_98pt_rect_attr_test\.txt:4: face box \(the list rectangle'),
    ('image', r'list_98pt_rect_attr_test\.txt:3: image .*7_Cheering_1\.jpg not found'),
  ],
)
def test_wflw_malformed_list_names_file_and_line(tree, tmp_path, damage, message):
  root, _ = tree
  path = root / LIST_DIR / wflw.LISTS['test']
  lines = path.read_text().splitlines()
  if damage == 'drop_field':
    lines[1] = lines[1].split(' ', 1)[1]
  elif damage == 'word':
    lines[2] = 'x ' + lines[2].split(' ', 1)[1]
  elif damage == 'flag':
    fields = lines[0].split()
    fields[-2] = '2'
    lines[0] = ' '.join(fields)
  elif damage == 'box':
    fields = lines[3].split()
    fields[198] = fields[196]  # x_max = x_min
    lines[3] = ' '.join(fields)
  path.write_text('\n'.join(lines) + '\n')
  if damage == 'image':
    (root / 'WFLW_images' / '7--Cheering' / '7_Cheering_1.jpg').unlink()
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load('test', root, tmp_path)
  assert '\n' not in str(e.value), str(e.value)


def test_wflw_missing_files_are_clear_errors(tree, tmp_path):
  root, _ = tree
  with pytest.raises(DatasetFormatError, match="WFLW has no split 'validation'"):
    _load('validation', root, tmp_path)
  (root / LIST_DIR / wflw.LISTS['train']).unlink()
  with pytest.raises(DatasetFormatError, match=r'list_98pt_rect_attr_train\.txt, which was not'):
    _load('train', root, tmp_path)
  (root / LIST_DIR / wflw.LISTS['test']).write_text('\n')
  with pytest.raises(DatasetFormatError, match='WFLW list has no faces'):
    _load('test', root, tmp_path)


def test_wflw_protocol_by_hand():
  """NME over the outer eye corners 60 / 72; subsets by attribute flag."""
  gt = np.zeros((3, 98, 2))
  gt[:, 72, 0] = [10.0, 20.0, 40.0]  # outer-corner distances 10, 20, 40 (point 60 at 0)
  pred = gt + np.array([0.0, 1.0])  # every point 1 px off: NMEs 10 %, 5 %, 2.5 %
  flags = np.zeros((3, 6), bool)
  flags[0, 0] = flags[2, 0] = True  # pose: faces 0 and 2
  flags[1, 5] = True  # blur: face 1
  box = np.tile([0.0, 0.0, 50.0, 50.0], (3, 1))
  out, curves, ced = protocols.protocol_metrics(
    'wflw', pred, gt, box, np.ones((3, 98), bool), {'attributes': flags}, WFLW98
  )
  assert ced == ('ioc', 0.10) and set(curves) == {'full', 'pose', 'blur'}
  full, pose, blur = (out['subsets'][k] for k in ('full', 'pose', 'blur'))
  assert full['nme_ioc'] == pytest.approx((10 + 5 + 2.5) / 3)
  assert full['fr_10_ioc'] == 0  # 10 % is not above 10 %
  assert pose['num_faces'] == 2 and pose['nme_ioc'] == pytest.approx(6.25)
  assert blur['nme_ioc'] == pytest.approx(5) and blur['fr_10_ioc'] == 0
  # AUC@10 of one face at 5 %: the CED is 1 from 5 % on, half of the range (Simpson on a grid).
  assert blur['auc_10_ioc'] == pytest.approx(50, abs=0.1)
  assert out['subsets']['expression'] == {'num_faces': 0}
  assert 'pose' in protocols.protocol_table(out)


def _random_mcl98(tmp_path) -> str:
  """A random-weight 98-point MCL model folder (width 16) under `tmp_path`."""
  from lmjax.models import registry
  from lmjax.train import checkpoint

  spec = registry.make_spec(
    'mcl', num_points=98, width=16, num_heads=1, variant='gap', size=50, crop_scale=1.1,
    grayscale=True, dataset='wflw',
  )  # fmt: skip
  model = str(tmp_path / 'mcl98')
  checkpoint.export_model(model, registry.init(spec), spec)
  return model


def test_evaluate_on_wflw_fixture(tree, tmp_path, capsys, monkeypatch):
  """`lmjax.evaluate.run` (the command line's body, in process: the subprocess run is
  tests/test_aflw2000_3d.py's) with a random-weight 98-point MCL folder."""
  from lmjax import evaluate

  root, _ = tree
  model = _random_mcl98(tmp_path)
  monkeypatch.setenv('LMJAX_DATA_DIR', str(tmp_path / 'tfds'))
  out = tmp_path / 'eval' / 'm.json'
  evaluate.run(model, 'wflw', 'test', str(out), manual_dir=str(root), batch_size=4, backend='xla')
  metrics = json.loads(out.read_text())
  protocol = metrics['protocol']
  assert metrics['num_faces'] == 4 and protocol['dataset'] == 'wflw'
  assert protocol['subsets']['full']['nme_ioc'] == pytest.approx(metrics['nme_ioc'])
  assert protocol['subsets']['occlusion']['num_faces'] == 2
  for name in ('ced_ioc', 'ced_ipd', 'ced_protocol'):
    assert (tmp_path / 'eval' / f'm_{name}.png').stat().st_size > 0
  stdout = capsys.readouterr().out
  assert 'wflw protocol' in stdout and 'make_up' in stdout


def test_real_wflw_faces_in_native_lists(shared_data, tmp_path):
  """mmpose's WFLW samples (their original 98 points; their COCO box, not WFLW's rectangle)
  written as a native list: read back exactly, every `*_left` point image-left of its partner."""
  folder = shared_data / 'fixtures' / 'mmpose' / 'wflw'
  coco = json.loads((folder / 'test_wflw.json').read_text())
  names = {im['id']: im['file_name'] for im in coco['images']}
  rows = []
  for ann in coco['annotations']:
    points = np.asarray(ann['keypoints'], np.float64).reshape(98, 3)[:, :2]
    x, y, w, h = ann['bbox']
    rel = f'real/{names[ann["image_id"]]}'
    rows.append((rel, points, [x, y, x + w, y + h], [0, 0, 0, 0, 0, 0]))
  root = tmp_path / 'wflw'
  for rel, *_ in rows:
    (root / 'WFLW_images' / 'real').mkdir(parents=True, exist_ok=True)
    (root / 'WFLW_images' / rel).write_bytes((folder / rel.split('/')[1]).read_bytes())
  write_wflw(root, {'test': rows})
  source = _load('test', root, tmp_path)
  assert len(source) == len(rows) == 4
  for i in range(len(source)):
    ex = datasets.decode(source[i])
    lineno = int(ex['image_id'].rsplit('#', 1)[1])
    np.testing.assert_allclose(ex['landmarks'], rows[lineno - 1][1], atol=1e-3)
    left = [i for i, n in enumerate(WFLW98.names) if n.endswith('_left')]
    right = [WFLW98.flip_perm[i] for i in left]
    assert (ex['landmarks'][left, 0] < ex['landmarks'][right, 0]).all()


def test_98_point_face_template_is_a_mirror_symmetric_face():
  """BB-FCN 98 (configs/bbfcn98.py) stores a face template: the 68-point one, interpolated."""
  from lmjax.data import templates
  from lmjax.synthface import shape

  p68 = shape.face_shape()[:, :2]
  p98 = templates.wflw_from_68(p68)
  np.testing.assert_allclose(p98[[60, 72, 54, 76, 82, 16]], p68[[36, 45, 30, 48, 54, 8]])
  np.testing.assert_allclose(p98[11], (p68[5] + p68[6]) / 2)
  assert (p98[38:42, 1] > p98[[37, 36, 35, 34], 1]).all() and (p98[38:42, 1] < p98[96, 1]).all()
  t = templates.face_template(98, 'wflw', 1.1)
  mirrored = np.stack([1 - t[:, 0], t[:, 1]], axis=1)[list(WFLW98.flip_perm)]
  np.testing.assert_allclose(mirrored, t, atol=1e-5)
  assert t.shape == (98, 2) and (t > 0).all() and (t < 1).all()


def test_a_predictor_that_crops_inside_keeps_the_protocol_subsets(tree, tmp_path):
  """An exported whole predictor (no `crop`; `face_crop.predict_images`) is scored with the
  same WFLW attribute subsets as a folder: the per-face extras travel on that path too."""
  from lmjax.eval import face_crop
  from lmjax.mcl.predictor import FacePredictor

  root, _ = tree
  model = _random_mcl98(tmp_path)
  folder = FacePredictor(model, backend='xla')

  class CropsInside:  # what the evaluator sees of `hlo_export.runner.ExportedPredictor`
    outputs, schema, spec = ('points',), folder.schema, folder.spec

    def predict_faces(self, images, boxes):
      return folder.predict_faces(images, boxes)

  source = _load('test', root, tmp_path)
  results = {}
  for name, predictor in (('folder', folder), ('inside', CropsInside())):
    out = tmp_path / name / 'm.json'
    results[name] = face_crop.evaluate_model(predictor, source, str(out), batch_size=4)
  assert results['inside']['protocol']['subsets']['occlusion']['num_faces'] == 2
  inside, folder_subsets = (results[k]['protocol']['subsets'] for k in ('inside', 'folder'))
  assert inside.keys() == folder_subsets.keys()
  for name, numbers in inside.items():
    assert numbers == pytest.approx(folder_subsets[name]), name
