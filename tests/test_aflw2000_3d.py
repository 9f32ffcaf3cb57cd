"""AFLW2000-3D builder on generated `.jpg` + `.mat` pairs (MATLAB v5 and v7.3), the pose
conversion, the protocol numbers by hand, and `python -m lmjax.evaluate --dataset=aflw2000`
end to end with `pretrained/mcl68`."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io

from lmjax.core import head_pose
from lmjax.core.landmarks import IBUG68
from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, aflw2000_3d
from lmjax.eval import protocols

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)
SIZE = 120  # image side
FLIP_Y = np.diag([1.0, -1.0, 1.0])


def project(pitch, yaw, roll, scale=25.0):
  """pt3d_68 [3, 68] of the 3-D mean face posed as 3DDFA does (model y up, R = Rx Ry Rz,
  image y = H + 1 - y, 1-based)."""
  (cx, cy, cz), (sx, sy, sz) = np.cos([pitch, yaw, roll]), np.sin([pitch, yaw, roll])
  rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
  ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
  rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
  model = (head_pose.MEAN_FACE_68 @ FLIP_Y).T  # [3, 68], y up
  v = scale * (rx @ ry @ rz) @ model + np.array([[SIZE / 2], [SIZE / 2 + 1], [0.0]])
  return np.stack([v[0], SIZE + 1 - v[1], v[2]])


def pose_para(pitch, yaw, roll):
  return np.array([[pitch, yaw, roll, 60.0, 61.0, 0.0, 0.001]])


def write_v5(path, pt3d, pose):
  scipy.io.savemat(str(path), {'pt3d_68': pt3d, 'Pose_Para': pose, 'roi': np.zeros((1, 4))})


def write_v73(path, pt3d, pose):
  """MATLAB v7.3 layout: 512-byte MATLAB header (HDF5 user block), arrays stored transposed."""
  import h5py

  with h5py.File(path, 'w', userblock_size=512) as f:
    for name, value in (('pt3d_68', pt3d), ('Pose_Para', pose)):
      f.create_dataset(name, data=np.asarray(value, np.float64).T)
      f[name].attrs['MATLAB_class'] = np.bytes_('double')
  header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Fri Dec  4 2026 HDF5 schema 1.00 .'
  with open(path, 'r+b') as f:
    f.write(header.ljust(116, b' '))


# (name, pitch, yaw, roll) in degrees, writer
FACES = [
  ('image00002', -10.0, 20.0, 15.0, write_v5),
  ('image00004', 5.0, -45.0, -5.0, write_v73),
  ('image00006', 0.0, 70.0, 0.0, write_v5),
]


@pytest.fixture
def tree(tmp_path):
  folder = tmp_path / 'aflw' / 'AFLW2000'
  folder.mkdir(parents=True)
  truth = {}
  for name, pitch, yaw, roll, write in FACES:
    angles = np.deg2rad([pitch, yaw, roll])
    pt3d = project(*angles)
    write(folder / f'{name}.mat', pt3d, pose_para(*angles))
    cv2.imwrite(str(folder / f'{name}.jpg'), RNG.integers(0, 255, (SIZE, SIZE, 3), np.uint8))
    truth[name] = pt3d
  return tmp_path / 'aflw', truth


def _load(root, tmp_path, split='test'):
  return datasets.load('aflw2000', split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'))


def test_pose_conversion_single_angles():
  r = np.deg2rad(25.0)
  np.testing.assert_allclose(aflw2000_3d.pose_from_pose_para(0, r, 0), [-25, 0, 0], atol=1e-9)
  np.testing.assert_allclose(aflw2000_3d.pose_from_pose_para(r, 0, 0), [0, 25, 0], atol=1e-9)
  np.testing.assert_allclose(aflw2000_3d.pose_from_pose_para(0, 0, r), [0, 0, 25], atol=1e-9)


def test_builder_reads_v5_and_v73_mat_files(tree, tmp_path):
  root, truth = tree
  source = _load(root, tmp_path)
  assert len(source) == 3 and datasets.schema_of(source) is IBUG68
  for i in range(3):
    ex = datasets.decode(source[i])
    name = ex['image_id']
    _, pitch, yaw, roll, _ = next(f for f in FACES if f[0] == name)
    expected = truth[name][:2].T - 1  # 1-based MATLAB -> 0-based
    np.testing.assert_allclose(ex['landmarks'], expected, atol=1e-4)
    np.testing.assert_allclose(ex['bbox'], [*expected.min(0), *expected.max(0)], atol=1e-4)
    want = aflw2000_3d.pose_from_pose_para(*np.deg2rad([pitch, yaw, roll]))
    np.testing.assert_allclose(ex['head_pose'], want, atol=1e-4)
    # The landmark-based estimator agrees with the converted annotation on these clean faces.
    estimate = head_pose.head_pose(ex['landmarks'], IBUG68)
    assert np.abs(protocols.angle_error(estimate, ex['head_pose'])).max() < 3, (name, estimate)
    assert ex['visible'].all() and ex['image'].shape == (SIZE, SIZE, 3)
  with pytest.raises(DatasetFormatError, match="AFLW2000-3D has no split 'train'"):
    _load(root, tmp_path, 'train')


@pytest.mark.parametrize(
  ('damage', 'message'),
  [
    ('no_pose', r"image00004\.mat: missing variable\(s\) \['Pose_Para'\]; found \['pt3d_68'\]"),
    ('shape', r'image00002\.mat: pt3d_68 has shape \(3, 67\); expected \[3, 68\]'),
    ('garbage', r'image00006\.mat: cannot read as a MATLAB \.mat file'),
    ('no_image', r'image00004\.mat: no image with this base name'),
  ],
)
def test_malformed_files_name_the_file(tree, tmp_path, damage, message):
  root, truth = tree
  folder = root / 'AFLW2000'
  if damage == 'no_pose':
    write_v73(folder / 'image00004.mat', truth['image00004'], np.zeros((1, 7)))
    import h5py

    with h5py.File(folder / 'image00004.mat', 'a') as f:
      del f['Pose_Para']
  elif damage == 'shape':
    write_v5(folder / 'image00002.mat', truth['image00002'][:, :67], pose_para(0, 0, 0))
  elif damage == 'garbage':
    (folder / 'image00006.mat').write_bytes(b'not a MATLAB file at all' * 10)
  elif damage == 'no_image':
    (folder / 'image00004.jpg').unlink()
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load(root, tmp_path)
  assert '\n' not in str(e.value), str(e.value)


def test_protocol_by_hand():
  """NME over √(w·h) of the tight landmark box, |yaw| bins, head-pose MAE."""
  base = project(*np.deg2rad([0.0, 0.0, 0.0]))[:2].T - 1  # [68, 2]
  gt = np.stack([base, base, base, base])
  box = np.tile([*base.min(0), *base.max(0)], (4, 1))
  size = np.sqrt(np.prod(base.max(0) - base.min(0)))
  pred = gt + np.array([0.0, 1.0]) * np.array([1, 2, 3, 4])[:, None, None]  # 1..4 px off
  truth = np.array([[10.0, 0, 0], [45.0, 0, 0], [-75.0, 0, 0], [30.0, 0, 0]])
  out, curves, ced = protocols.protocol_metrics(
    'aflw2000_3d', pred, gt, box, np.ones((4, 68), bool), {'head_pose': truth}, IBUG68
  )
  nme = 100 * np.array([1, 2, 3, 4]) / size
  sub = out['subsets']
  assert ced == ('box', 0.07) and sub['full']['nme_box'] == pytest.approx(nme.mean())
  assert sub['yaw_0-30']['num_faces'] == 2  # |yaw| 10 and exactly 30
  assert sub['yaw_0-30']['nme_box'] == pytest.approx((nme[0] + nme[3]) / 2)
  assert sub['yaw_30-60']['nme_box'] == pytest.approx(nme[1])
  assert sub['yaw_60-90']['nme_box'] == pytest.approx(nme[2])
  assert out['balanced_nme_box'] == pytest.approx(((nme[0] + nme[3]) / 2 + nme[1] + nme[2]) / 3)
  # The ground-truth points show a frontal face: the estimator's yaw error is |truth yaw|.
  gt_mae = out['pose_mae_from_ground_truth']
  assert gt_mae['yaw'] == pytest.approx(np.mean([10, 45, 75, 30]), abs=1.0)
  assert gt_mae['num_failed'] == 0 and out['pose_mae']['num_faces'] == 4
  assert 'yaw_60-90' in protocols.protocol_table(out) and set(curves) >= {'full'}


def test_pose_mae_and_angle_wrap():
  est = np.array([[170.0, 1.0, -2.0], [np.nan, 0, 0], [10.0, 3.0, 4.0]])
  truth = np.array([[-170.0, 0.0, 0.0], [0, 0, 0], [0.0, 0.0, 0.0]])
  m = protocols.pose_mae(est, truth)
  assert m['num_failed'] == 1 and m['num_faces'] == 2
  assert m['yaw'] == pytest.approx((20 + 10) / 2)  # 170 vs -170 is 20 degrees apart
  assert m['pitch'] == pytest.approx(2.0) and m['roll'] == pytest.approx(3.0)
  assert m['mean'] == pytest.approx((20 + 1 + 2 + 10 + 3 + 4) / 6)


def test_evaluate_cli_on_aflw2000_fixture(tree, tmp_path):
  root, _ = tree
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'LMJAX_DATA_DIR': str(tmp_path / 'tfds')}
  out = tmp_path / 'eval' / 'm.json'
  cmd = [
    sys.executable, '-m', 'lmjax.evaluate', f'--checkpoint={ROOT}/pretrained/mcl68',
    '--dataset=aflw2000', f'--manual_dir={root}', f'--output={out}', '--batch_size=4',
  ]  # fmt: skip
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(out.read_text())
  protocol = metrics['protocol']
  assert metrics['num_faces'] == 3 and metrics['split'] == 'test'
  assert protocol['subsets']['full']['nme_box'] == pytest.approx(metrics['nme_box'])
  assert [protocol['subsets'][f'yaw_{b}']['num_faces'] for b in protocols.YAW_BINS] == [1, 1, 1]
  assert protocol['pose_mae']['num_faces'] + protocol['pose_mae']['num_failed'] == 3
  for name in ('ced_ioc', 'ced_ipd', 'ced_protocol'):
    assert (tmp_path / 'eval' / f'm_{name}.png').stat().st_size > 0
  assert 'aflw2000_3d protocol' in result.stdout and 'pose_mae' in result.stdout
