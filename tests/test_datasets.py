"""tfds builders for 300-W and MTFL on generated fixtures, plus the real data when present."""

import os

import cv2
import numpy as np
import pytest

from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, mtfl
from lmjax.data.datasets.pts import read_pts, write_pts

RNG = np.random.default_rng(0)


def _face_points(shift: float = 0.0) -> np.ndarray:
  pts = RNG.uniform(20, 80, (68, 2)).astype(np.float32) + shift
  return np.round(pts, 3)


def _write_face(folder, base, ext='.jpg', grey=False, points=None):
  os.makedirs(folder, exist_ok=True)
  image = RNG.integers(0, 255, (100, 120) if grey else (100, 120, 3), dtype=np.uint8)
  cv2.imwrite(os.path.join(folder, base + ext), image)
  points = _face_points() if points is None else points
  write_pts(os.path.join(folder, base + '.pts'), points)
  return points


@pytest.fixture
def tree300w(tmp_path):
  """A tiny 300-W layout: afw 2, helen/trainset 1 (grey PNG), lfpw train/test, helen test, ibug."""
  root = tmp_path / 'w300'
  pts = {}
  pts['afw/1_1'] = _write_face(root / 'afw', '1_1')
  pts['afw/1_2'] = _write_face(root / 'afw', '1_2')
  pts['helen/trainset/h1'] = _write_face(root / 'helen' / 'trainset', 'h1', '.png', grey=True)
  pts['lfpw/trainset/image_0001'] = _write_face(root / 'lfpw' / 'trainset', 'image_0001')
  pts['lfpw/testset/t1'] = _write_face(root / 'lfpw' / 'testset', 't1')
  pts['helen/testset/t2'] = _write_face(root / 'helen' / 'testset', 't2')
  pts['ibug/image_003_1'] = _write_face(root / 'ibug', 'image_003_1')
  return root, pts


def _load(name, split, manual_dir, tmp_path, **kw):
  return datasets.load(
    name, split, manual_dir=str(manual_dir), data_dir=str(tmp_path / 'tfds'), **kw
  )


def test_pts_round_trip_is_one_based_on_disk(tmp_path):
  points = np.array([[0.0, 0.0], [10.5, 20.25]], np.float32)
  write_pts(tmp_path / 'a.pts', points)
  text = (tmp_path / 'a.pts').read_text().splitlines()
  assert text[:3] == ['version: 1', 'n_points:  2', '{'] and text[3] == '1.000 1.000'
  np.testing.assert_allclose(read_pts(tmp_path / 'a.pts'), points)


@pytest.mark.parametrize(
  'body,message',
  [
    ('version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n', 'n_points: 3 but the list has 2'),
    ('version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n', 'point 2: expected "x y"'),
    ('version: 1\nn_points: 2\n1 2\n3 4\n', 'line 3'),
    ('version: 1\n{\n1 2\n}\n', 'no "n_points:"'),
    ('version: 1\nn_points: 2\n{\n1 2\n3 4\n', 'no "}" line'),
  ],
)
def test_malformed_pts_names_file_and_problem(tmp_path, body, message):
  path = tmp_path / 'bad.pts'
  path.write_text(body)
  with pytest.raises(DatasetFormatError, match=r'bad\.pts') as e:
    read_pts(path)
  assert message in str(e.value)


def test_pts_point_count_mismatch(tmp_path):
  write_pts(tmp_path / 'p.pts', np.zeros((67, 2)))
  with pytest.raises(DatasetFormatError, match='expected 68 points, file has 67'):
    read_pts(tmp_path / 'p.pts', 68)


def test_300w_builder_splits_coordinates_and_boxes(tree300w, tmp_path):
  root, pts = tree300w
  counts = {
    s: len(_load('300w', s, root, tmp_path)) for s in ('train', 'common', 'challenging', 'full')
  }
  assert counts == {'train': 4, 'common': 2, 'challenging': 1, 'full': 3}
  source = _load('300w', 'train', root, tmp_path)
  assert datasets.schema_of(source).num_points == 68
  seen = set()
  for i in range(len(source)):
    ex = datasets.decode(source[i])
    seen.add(ex['image_id'])
    assert ex['image'].shape == (100, 120, 3) and ex['image'].dtype == np.uint8
    np.testing.assert_allclose(ex['landmarks'], pts[ex['image_id']], atol=1e-4)
    np.testing.assert_allclose(ex['bbox'], [*ex['landmarks'].min(0), *ex['landmarks'].max(0)])
    assert ex['visible'].all()
  assert seen == {'afw/1_1', 'afw/1_2', 'helen/trainset/h1', 'lfpw/trainset/image_0001'}


def test_300w_missing_split_is_a_clear_error(tree300w, tmp_path):
  root, _ = tree300w
  with pytest.raises(DatasetFormatError, match=r"split 'private' needs the folder.*01_Indoor"):
    _load('300w', 'private', root, tmp_path)
  with pytest.raises(DatasetFormatError, match='not a directory'):
    _load('300w', 'train', tmp_path / 'nowhere', tmp_path)
  with pytest.raises(DatasetFormatError, match="no split 'valid'"):
    _load('300w', 'valid', root, tmp_path)


@pytest.mark.parametrize(
  'damage,message',
  [
    ('no_image', 'no image with this base name'),
    ('bad_image', 'cannot decode image'),
    ('bad_count', 'expected 68 points, file has 5'),
  ],
)
def test_300w_bad_files_name_the_file(tree300w, tmp_path, damage, message):
  root, _ = tree300w
  folder = root / 'afw'
  if damage == 'no_image':
    os.remove(folder / '1_2.jpg')
  elif damage == 'bad_image':
    (folder / '1_2.jpg').write_bytes(b'not a jpeg at all')
  else:
    write_pts(folder / '1_2.pts', np.zeros((5, 2)))
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load('300w', 'train', root, tmp_path)
  assert '1_2' in str(e.value)


def test_300w_rebuilds_when_files_change(tree300w, tmp_path):
  root, _ = tree300w
  assert len(_load('300w', 'train', root, tmp_path)) == 4
  _write_face(root / 'afw', '9_1')
  assert len(_load('300w', 'train', root, tmp_path)) == 5


def _write_mtfl(root, name, rows, attributes, names=None):
  lines = []
  for i, pts in enumerate(rows):
    folder, stem = names[i] if names else ('lfw_5590', f'img_{i}')
    rel = f'{folder}\\{stem}.jpg'
    os.makedirs(root / folder, exist_ok=True)
    cv2.imwrite(
      str(root / folder / f'{stem}.jpg'), RNG.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    )
    fields = [rel, *map(str, pts[:, 0]), *map(str, pts[:, 1])] + (
      ['1', '2', '2', '3'] if attributes else []
    )
    lines.append(' ' + ' '.join(fields))
  (root / name).write_text('\n'.join(lines) + '\n')


def test_mtfl_lists_both_formats_coordinates_as_written(tmp_path):
  root = tmp_path / 'mtfl'
  rows = [
    np.array([[30, 30], [50, 31], [40, 42], [32, 52], [49, 53]], np.float32) + i for i in range(3)
  ]
  _write_mtfl(root, 'new_training.txt', rows, attributes=False)
  _write_mtfl(root, 'testing.txt', rows[:2], attributes=True)
  train = _load('mtfl', 'train', root, tmp_path)
  test = _load('mtfl', 'test', root, tmp_path)
  assert (len(train), len(test)) == (3, 2)
  assert train.dataset_info.metadata['train_list'] == 'new_training.txt'
  by_id = {datasets.decode(train[i])['image_id']: datasets.decode(train[i]) for i in range(3)}
  ex = by_id['lfw_5590/img_1']
  np.testing.assert_allclose(ex['landmarks'], rows[1])
  np.testing.assert_allclose(ex['bbox'], mtfl.face_box_np(rows[1]))
  with pytest.raises(DatasetFormatError, match=r'new_training\.txt'):
    datasets.load(
      'mtfl', 'train', manual_dir=str(root), data_dir=str(tmp_path / 't2'), config='original'
    )


def test_mtfl_drops_known_mislabelled_entries(tmp_path):
  root = tmp_path / 'mtfl'
  rows = [np.array([[30, 30], [50, 31], [40, 42], [32, 52], [49, 53]], np.float32)] * 3
  names = [('net_7876', '0_0_0'), ('net_7876', '_-20_1004_0'), ('lfw_5590', 'a')]
  _write_mtfl(root, 'new_training.txt', rows, attributes=False, names=names)
  train = _load('mtfl', 'train', root, tmp_path)
  ids = sorted(datasets.decode(train[i])['image_id'] for i in range(len(train)))
  assert ids == ['lfw_5590/a', 'net_7876/0_0_0']
  assert train.dataset_info.metadata['train_dropped_bad_labels'] == 1
  kept = datasets.load(
    'mtfl', 'train', manual_dir=str(root), data_dir=str(tmp_path / 'k'), config='keep_bad'
  )
  assert len(kept) == 3


def test_mtfl_face_box_rule():
  pts = np.array([[30, 30], [50, 30], [40, 40], [32, 54], [48, 54]], np.float32)
  # eye distance 20, eye-mouth distance 24 -> side 2.2 * 24 = 52.8, centre (40, 42).
  np.testing.assert_allclose(mtfl.face_box_np(pts), [13.6, 15.6, 66.4, 68.4], rtol=1e-6)
  rotated = pts[:, ::-1].copy()  # a 90-degree rotation with a mirror keeps distances
  box = mtfl.face_box_np(rotated)
  assert box[2] - box[0] == pytest.approx(52.8, rel=1e-6)


def test_mtfl_malformed_line(tmp_path):
  root = tmp_path / 'mtfl'
  root.mkdir()
  (root / 'new_training.txt').write_text('a.jpg 1 2 3\n')
  with pytest.raises(DatasetFormatError, match=r'new_training.txt:1: expected 11 fields'):
    _load('mtfl', 'train', root, tmp_path)


def test_aliases():
  assert datasets.canonical_name('300w') == 'the300w'
  with pytest.raises(KeyError, match='unknown dataset'):
    datasets.canonical_name('afw2')


# ------------------------------------------------------------------------- real data


def _darker_than(image, a, b, radius=1):
  """Mean grey level around point a is below the one around point b."""
  grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)

  def patch(p):
    x, y = np.clip(np.round(p).astype(int), 0, [grey.shape[1] - 1, grey.shape[0] - 1])
    return grey[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1].mean()

  return patch(a) < patch(b)


def test_real_300w_train(shared_data, tmp_path):
  source = _load('300w', 'train', shared_data / '300w', tmp_path)
  assert len(source) == 1675  # 805 LFPW + 870 HELEN train faces in the shared copy.
  darker = inside = 0
  for i in range(0, len(source), 5):
    ex = datasets.decode(source[i])
    h, w = ex['image'].shape[:2]
    lm = ex['landmarks']
    inside += np.mean((lm[:, 0] > -1) & (lm[:, 0] < w) & (lm[:, 1] > -1) & (lm[:, 1] < h))
    # Pupils (eye-centre) are darker than the cheek below them.
    eye = lm[36:42].mean(0)
    cheek = (lm[41] + lm[2]) / 2
    darker += _darker_than(ex['image'], eye, cheek)
  n = len(range(0, len(source), 5))
  assert inside / n > 0.99
  assert darker / n > 0.8, darker / n


def test_real_mtfl_train(shared_data, tmp_path):
  source = _load('mtfl', 'train', shared_data / 'mtfl', tmp_path)
  assert len(source) == 10000 - 2350  # the mislabelled net_7876/_* entries are dropped
  darker, eye_y = 0, []
  idx = range(0, len(source), 20)
  for i in idx:
    ex = datasets.decode(source[i])
    darker += _darker_than(ex['image'], ex['landmarks'][0], ex['landmarks'][2])
    eye_y.append(ex['landmarks'][:2, 1].mean())
  assert darker / len(idx) > 0.75, darker / len(idx)
  # The dropped group had a mean eye y of 3.6 px; the 80×80 faces have their eyes near y = 33.
  assert min(eye_y) > 8 and 25 < np.mean(eye_y) < 40, (min(eye_y), np.mean(eye_y))


def _write_cofw(path, images, phis, boxes, suffix='Tr'):
  """A tiny MATLAB-v7.3-like COFW file: column-major matrices, a cell array of references."""
  import h5py

  with h5py.File(path, 'w') as f:
    refs = []
    for i, image in enumerate(images):
      refs.append(f.create_dataset(f'#refs#/{i}', data=image.T).ref)
    f.create_dataset(f'Is{suffix}', data=np.array(refs, dtype=h5py.ref_dtype)[None, :])
    f.create_dataset(f'phis{suffix}', data=np.asarray(phis, np.float64).T)
    f.create_dataset(f'bboxes{suffix}', data=np.asarray(boxes, np.float64).T)


def test_cofw_builder_reads_hdf5_mat(tmp_path):
  root = tmp_path / 'cofw'
  root.mkdir()
  images = [
    RNG.integers(0, 255, (60, 80, 3), dtype=np.uint8),
    RNG.integers(0, 255, (50, 40), dtype=np.uint8),
  ]  # one greyscale image
  phis = np.zeros((2, 87))
  phis[:, :29] = RNG.uniform(10, 30, (2, 29))
  phis[:, 29:58] = RNG.uniform(10, 30, (2, 29))
  phis[0, 58:60] = 1  # points 0 and 1 of image 0 occluded
  boxes = [[5, 6, 30, 32], [3, 4, 20, 21]]
  _write_cofw(root / 'COFW_train_color.mat', images, phis, boxes)
  source = _load('cofw', 'train', root, tmp_path)
  assert len(source) == 2 and datasets.schema_of(source).num_points == 29
  by_id = {datasets.decode(source[i])['image_id']: datasets.decode(source[i]) for i in range(2)}
  ex = by_id['train/0001']
  np.testing.assert_array_equal(ex['image'], images[0])
  np.testing.assert_allclose(ex['landmarks'][:, 0], phis[0, :29] - 1, rtol=1e-6)
  np.testing.assert_allclose(ex['landmarks'][:, 1], phis[0, 29:58] - 1, rtol=1e-6)
  np.testing.assert_allclose(ex['bbox'], [4, 5, 34, 37])
  assert ex['visible'].all() and ex['occluded'][:2].all() and not ex['occluded'][2:].any()
  grey = by_id['train/0002']['image']
  assert grey.shape == (50, 40, 3) and (grey[..., 0] == images[1]).all()
  with pytest.raises(DatasetFormatError, match=r'COFW_test_color\.mat'):
    _load('cofw', 'test', root, tmp_path)


def test_cofw_bad_file(tmp_path):
  root = tmp_path / 'cofw'
  root.mkdir()
  (root / 'COFW_train_color.mat').write_bytes(b'MATLAB 5.0 MAT-file, not HDF5')
  with pytest.raises(DatasetFormatError, match='cannot open as HDF5'):
    _load('cofw', 'train', root, tmp_path)
