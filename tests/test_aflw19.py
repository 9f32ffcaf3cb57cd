"""AFLW-19 builder on a generated `AFLWinfo_release.mat` (MATLAB v5 and v7.3), its protocol
numbers by hand, and the evaluation command's `run` end to end with a random-weight 19-point
model."""

import json

import cv2
import numpy as np
import pytest
import scipy.io

from lmjax.core.landmarks import AFLW19
from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, aflw19
from lmjax.eval import protocols

RNG = np.random.default_rng(0)
NAMES = ['0/image00002.jpg', '2/image00004.jpg', '3/image00006.jpg', '3/image00006.jpg']
NAMES += ['0/image00008.jpg', '2/image00010.jpg']
N = len(NAMES)
TINY = aflw19.Aflw19Config(name='tiny', num_train=4)


def make_info():
  """The variables of a 6-face AFLWinfo_release.mat (MATLAB shapes)."""
  points = RNG.uniform(20, 70, (N, 19, 2)).round(2)
  lo, hi = points.min(1) - 5, points.max(1) + 5
  mask = np.ones((N, 19))
  mask[RNG.permutation(N)[:2], 12] = 0  # two faces with the nose wing hidden
  return {
    'data': np.concatenate([points[..., 0], points[..., 1]], axis=1),
    'bbox': np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1),  # left right top bottom
    'mask_new': mask,
    'ra': (RNG.permutation(N) + 1.0)[None, :],
    'nameList': NAMES,
  }


def write_v5(path, info):
  cells = np.empty((N, 1), object)
  for i, name in enumerate(info['nameList']):
    cells[i, 0] = name
  arrays = {k: v for k, v in info.items() if k != 'nameList'}
  scipy.io.savemat(str(path), {**arrays, 'nameList': cells})


def write_v73(path, info):
  """MATLAB v7.3 layout: arrays transposed, the cell array as references to char arrays."""
  import h5py

  with h5py.File(path, 'w', userblock_size=512) as f:
    for name, value in info.items():
      if name != 'nameList':
        f.create_dataset(name, data=np.asarray(value, np.float64).T)
    refs = []
    for i, s in enumerate(info['nameList']):
      chars = f.create_dataset(f'#refs#/{i}', data=np.array([[ord(c)] for c in s], np.uint16))
      chars.attrs['MATLAB_class'] = np.bytes_('char')
      refs.append(chars.ref)
    f.create_dataset('nameList', data=np.array([refs], dtype=h5py.ref_dtype))  # [N, 1]^T
  with open(path, 'r+b') as f:
    f.write(b'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .'.ljust(116))


@pytest.fixture(params=['v5', 'v73'])
def tree(tmp_path, request):
  root = tmp_path / 'aflw'
  for name in set(NAMES):
    path = root / 'data' / 'flickr' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), RNG.integers(0, 255, (90, 100, 3), np.uint8))
  info = make_info()
  (write_v5 if request.param == 'v5' else write_v73)(root / aflw19.INFO, info)
  return root, info


def _load(root, tmp_path, split, config=TINY):
  return datasets.load(
    'aflw19', split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'), config=config
  )


def test_builder_splits_by_ra_and_reads_boxes_and_visibility(tree, tmp_path):
  root, info = tree
  order = info['ra'][0].astype(int) - 1
  for split, rows in (('train', order[:4]), ('test', order[4:])):
    source = _load(root, tmp_path, split)
    assert len(source) == len(rows) and datasets.schema_of(source) is AFLW19
    by_id = {ex['image_id']: ex for ex in (datasets.decode(source[i]) for i in range(len(source)))}
    assert sorted(by_id) == sorted(f'{NAMES[r][:-4]}#{r + 1}' for r in rows)
    for r in rows:
      ex = by_id[f'{NAMES[r][:-4]}#{r + 1}']
      np.testing.assert_allclose(ex['landmarks'][:, 0], info['data'][r, :19], rtol=1e-6)
      np.testing.assert_allclose(ex['landmarks'][:, 1], info['data'][r, 19:], rtol=1e-6)
      left, right, top, bottom = info['bbox'][r]
      np.testing.assert_allclose(ex['bbox'], [left, top, right, bottom], rtol=1e-6)
      np.testing.assert_array_equal(ex['visible'], info['mask_new'][r] > 0)
  # The protocol's 20,000 training faces leave this 6-face file no test split.
  with pytest.raises(DatasetFormatError, match="split 'test' is empty"):
    _load(root, tmp_path / 'default', 'test', config=None)


@pytest.mark.parametrize(
  ('damage', 'message'),
  [
    ('ra', r'AFLWinfo_release\.mat: ra \(6 values\) is not a permutation of 1 … 6'),
    ('data', r'AFLWinfo_release\.mat: data has shape \(6, 36\); expected \[6, 38\]'),
    ('mask', r'AFLWinfo_release\.mat: mask_new row 3 holds values not 0/1'),
    ('box', r'AFLWinfo_release\.mat: face 2 \(2/image00004\.jpg\): face box'),
    ('image', r'AFLWinfo_release\.mat: face 5: image .*image00008\.jpg not found'),
  ],
)
def test_malformed_info_names_file_and_face(tmp_path, damage, message):
  root = tmp_path / 'aflw'
  for name in set(NAMES):
    path = root / 'data' / 'flickr' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((90, 100, 3), np.uint8))
  info = make_info()
  info['ra'] = np.arange(1.0, N + 1)[None, :]  # identity order: face 5 is a test face
  if damage == 'ra':
    info['ra'][0, 1] = 1
  elif damage == 'data':
    info['data'] = info['data'][:, :36]
  elif damage == 'mask':
    info['mask_new'][2, 0] = 2
  elif damage == 'box':
    info['bbox'][1, 1] = info['bbox'][1, 0]  # right = left
  elif damage == 'image':
    (root / 'data' / 'flickr' / '0' / 'image00008.jpg').unlink()
  write_v5(root / aflw19.INFO, info)
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load(root, tmp_path, 'test')
  assert '\n' not in str(e.value), str(e.value)


def test_missing_file_and_unknown_split(tmp_path):
  (tmp_path / 'aflw').mkdir()
  with pytest.raises(DatasetFormatError, match=r'AFLW-19 needs .*AFLWinfo_release\.mat'):
    _load(tmp_path / 'aflw', tmp_path, 'train')
  with pytest.raises(DatasetFormatError, match="AFLW-19 has no split 'frontal'"):
    _load(tmp_path / 'aflw', tmp_path, 'frontal')


def test_protocol_by_hand():
  """NME over √(w·h) of the given box, invisible points left out; frontal = all visible."""
  gt = RNG.uniform(0, 50, (2, 19, 2))
  box = np.array([[0.0, 0.0, 40.0, 10.0], [0.0, 0.0, 20.0, 20.0]])  # sizes 20, 20
  pred = gt.copy()
  pred[:, :, 0] += 1.0  # 1 px everywhere ...
  pred[1, 5, 0] += 99.0  # ... and 100 px on point 5 of face 1, which is invisible
  visible = np.ones((2, 19), bool)
  visible[1, 5] = False
  out, curves, ced = protocols.protocol_metrics('aflw19', pred, gt, box, visible, {}, AFLW19)
  assert ced == ('box', 0.07) and set(curves) == {'full', 'frontal'}
  assert out['subsets']['full']['nme_box'] == pytest.approx(5.0)  # 1 / 20 for both faces
  assert out['subsets']['frontal']['num_faces'] == 1
  assert out['subsets']['frontal']['nme_box'] == pytest.approx(5.0)
  assert out['subsets']['full']['fr_8_box'] == 0


def test_evaluate_on_aflw19_fixture(tmp_path, capsys, monkeypatch):
  """`lmjax.evaluate.run` in process (alias `aflw-19`) with a random-weight 19-point MCL."""
  from lmjax import evaluate
  from lmjax.models import registry
  from lmjax.train import checkpoint

  root = tmp_path / 'aflw'
  for name in set(NAMES):
    path = root / 'data' / 'flickr' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), RNG.integers(0, 255, (90, 100, 3), np.uint8))
  info = make_info()
  write_v5(root / aflw19.INFO, info)
  spec = registry.make_spec(
    'mcl', num_points=19, width=16, num_heads=1, variant='gap', size=50, crop_scale=1.1,
    grayscale=True, dataset='aflw19',
  )  # fmt: skip
  model = str(tmp_path / 'mcl19')
  checkpoint.export_model(model, registry.init(spec), spec)
  monkeypatch.setenv('LMJAX_DATA_DIR', str(tmp_path / 'tfds'))
  out = tmp_path / 'eval' / 'm.json'
  # The protocol's 20,000 training faces take all 6 faces: evaluate `train`.
  evaluate.run(model, 'aflw-19', 'train', str(out), manual_dir=str(root), backend='xla')
  metrics = json.loads(out.read_text())
  protocol = metrics['protocol']
  assert metrics['num_faces'] == N and protocol['dataset'] == 'aflw19'
  assert protocol['subsets']['full']['nme_box'] == pytest.approx(metrics['nme_box'])
  frontal = int((info['mask_new'] > 0).all(axis=1).sum())
  assert protocol['subsets']['frontal']['num_faces'] == frontal
  assert (tmp_path / 'eval' / 'm_ced_protocol.png').stat().st_size > 0
  stdout = capsys.readouterr().out
  assert 'aflw19 protocol' in stdout and 'frontal' in stdout
