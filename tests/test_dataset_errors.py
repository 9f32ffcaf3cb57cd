"""One-line `DatasetFormatError`s naming the culprit, for broken manual directories.

Each case generates a small valid manual directory for a builder in tmp_path, breaks it, loads
a split and checks the exception type, that the message is one line, and a substring of it.
"""

import os

import cv2
import numpy as np
import pytest

from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, composite
from lmjax.data.datasets.pts import write_pts

_FIVE = np.array([[30, 33], [50, 33], [40, 44], [32, 55], [48, 55]], np.float32)


def _face68(rng) -> np.ndarray:
  return np.round(rng.uniform(20, 70, (68, 2)), 3).astype(np.float32)


def _write_pts_face(folder, stem, rng, points=None):
  os.makedirs(folder, exist_ok=True)
  cv2.imwrite(str(folder / f'{stem}.jpg'), rng.integers(0, 255, (90, 100, 3), dtype=np.uint8))
  write_pts(folder / f'{stem}.pts', _face68(rng) if points is None else points)


def _write_mtfl(root, rows, names=None, list_name='new_training.txt'):
  """An 80×80 MTFL re-release list with one image per row."""
  rng = np.random.default_rng(1)
  lines = []
  for i, pts in enumerate(rows):
    folder, stem = names[i] if names else ('lfw_5590', f'img_{i}')
    os.makedirs(root / folder, exist_ok=True)
    image = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(root / folder / f'{stem}.jpg'), image)
    lines.append(f'{folder}\\{stem}.jpg ' + ' '.join(map(str, [*pts[:, 0], *pts[:, 1]])))
  (root / list_name).write_text('\n'.join(lines) + '\n')


def _write_cofw(path, boxes, num_faces=None):
  """A MATLAB-v7.3-like COFW train file (column-major matrices, a cell array of references)."""
  import h5py

  rng = np.random.default_rng(2)
  n = len(boxes) if num_faces is None else num_faces
  phis = np.zeros((n, 87))
  phis[:, :58] = rng.uniform(10, 30, (n, 58))
  with h5py.File(path, 'w') as f:
    refs = [
      f.create_dataset(f'#refs#/{i}', data=rng.integers(0, 255, (40, 50, 3), np.uint8).T).ref
      for i in range(n)
    ]
    f.create_dataset('IsTr', data=np.array(refs, dtype=h5py.ref_dtype).reshape(1, n))
    f.create_dataset('phisTr', data=phis.T)
    f.create_dataset('bboxesTr', data=np.asarray(boxes, np.float64).reshape(n, 4).T)


# --------------------------------------------------------------------------- breakages


def _300w(root, damage):
  rng = np.random.default_rng(3)
  _write_pts_face(root / 'lfpw' / 'trainset', 'a', rng)
  _write_pts_face(root / 'ibug', 'b', rng)
  if damage == 'empty_challenging':
    os.remove(root / 'ibug' / 'b.pts')
    return 'challenging'
  if damage == 'empty_afw':
    (root / 'afw').mkdir()
    (root / 'afw' / 'notes.txt').write_text('unpacking failed')
    return 'train'
  flat = _face68(rng)
  flat[:, 1] = 40.0  # all points on one row: the tight box has height 0
  write_pts(root / 'lfpw' / 'trainset' / 'a.pts', flat)
  return 'train'


def _mtfl(root, damage):
  rows = [_FIVE, _FIVE + 1]
  if damage == 'empty_list':
    root.mkdir()
    (root / 'new_training.txt').write_text('')
  elif damage == 'blank_lines':
    root.mkdir()
    (root / 'new_training.txt').write_text('\n  \n\n')
  elif damage == 'zero_box':
    _write_mtfl(root, [_FIVE, np.full((5, 2), 40.0, np.float32)])
  else:  # every entry in the known mislabelled group
    _write_mtfl(root, rows, names=[('net_7876', '_a'), ('net_7876', '_b')])
  return 'train'


def _cofw(root, damage):
  root.mkdir()
  path = root / 'COFW_train_color.mat'
  if damage == 'no_faces':
    _write_cofw(path, np.zeros((0, 4)), num_faces=0)
  elif damage == 'zero_width':
    _write_cofw(path, [[5, 6, 30, 32], [3, 4, 0, 21]])
  else:
    _write_cofw(path, [[5, 6, 30, -3]])
  return 'train'


def _afw(root, damage):
  del damage
  rng = np.random.default_rng(4)
  _write_pts_face(root, '7_1', rng)
  flat = _face68(rng)
  flat[:, 0] = 33.0  # all points on one column: the tight box has width 0
  _write_pts_face(root, '7_2', rng, flat)
  return 'test'


def _composite(root, damage):
  del damage
  root.mkdir()
  (root / 'new_training.txt').write_text('\n')
  return 'validation'


BUILDERS = {
  '300w': _300w,
  'mtfl': _mtfl,
  'cofw': _cofw,
  'afw_multiface': _afw,
  'composite_multiface': _composite,
}

CASES = [
  ('300w', 'empty_challenging', r"300-W split 'challenging': folder .*ibug has no \.pts files"),
  ('300w', 'empty_afw', r"300-W split 'train': folder .*afw has no \.pts files"),
  (
    '300w',
    'flat_points',
    r'a\.pts: face box \(tight box of the points\) has width [\d.]+ and height 0; expected both',
  ),
  ('mtfl', 'empty_list', r'new_training\.txt: MTFL list has no entries; expected one line'),
  ('mtfl', 'blank_lines', r'new_training\.txt: MTFL list has no entries'),
  (
    'mtfl',
    'zero_box',
    r'new_training\.txt:2: face box \(MTFL rule: eyes and mouth centre\) has width 0 and height 0',
  ),
  ('mtfl', 'all_known_bad', r'new_training\.txt: all 2 entries have known wrong labels'),
  ('cofw', 'no_faces', r'COFW_train_color\.mat: IsTr, phisTr and bboxesTr hold no faces'),
  (
    'cofw',
    'zero_width',
    r'COFW_train_color\.mat: image 2: face box \(bboxesTr row \(x, y, w, h\)\) has width 0',
  ),
  ('cofw', 'negative_height', r'COFW_train_color\.mat: image 1: .* and height -3; expected both'),
  ('afw_multiface', 'flat_points', r'7_2\.pts: face box \(tight box of the points\) has width 0'),
  ('composite_multiface', 'empty_source', r'new_training\.txt: MTFL list has no entries'),
]


@pytest.mark.parametrize('name,damage,message', CASES, ids=[f'{c[0]}-{c[1]}' for c in CASES])
def test_broken_manual_dir_is_a_one_line_error(tmp_path, name, damage, message):
  root = tmp_path / 'manual'
  split = BUILDERS[name](root, damage)
  config = composite.make_config('mtfl', num_validation=1, num_scenes=1) if 'comp' in name else None
  with pytest.raises(DatasetFormatError, match=message) as e:
    datasets.load(name, split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'), config=config)
  assert '\n' not in str(e.value), str(e.value)


def test_a_second_process_waits_while_a_dataset_is_prepared(tmp_path):
  import fcntl
  import threading

  builder = datasets.get_builder('synthetic', config='face5', data_dir=str(tmp_path))
  folder = os.path.dirname(os.fspath(builder.data_path))
  os.makedirs(folder)
  entered = threading.Event()

  def second():
    with datasets._preparing(builder):
      entered.set()

  with open(os.path.join(folder, 'prepare.lock'), 'a') as held:  # the first preparer
    fcntl.flock(held, fcntl.LOCK_EX)
    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.5)  # blocked while the folder is being prepared
    fcntl.flock(held, fcntl.LOCK_UN)
  thread.join(10)
  assert entered.is_set()
