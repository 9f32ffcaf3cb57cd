"""tfds builders for 300-W, MTFL and COFW on generated fixtures, plus the real data when present.

Also: prepared datasets are rebuilt when an annotation file changes without changing size.
"""

import os
import re

import cv2
import numpy as np
import pytest

from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, common, composite, mtfl
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


# ---------------------------------------------------- content fingerprint: same-size edits


def _edit_same_size(path, line, token=1):
  """Changes the first decimal of number `token` on `line` (0-based) of a text file in place.

  The file keeps its byte size, so a fingerprint of file sizes cannot see the edit.
  """
  text = path.read_text()
  lines = text.split('\n')
  starts = [m.start() for m in re.finditer(r'\S+', lines[line])]
  field = lines[line][starts[token] :].split()[0]
  i = starts[token] + (field.index('.') + 1 if '.' in field else len(field) - 1)
  digit = str((int(lines[line][i]) + 5) % 10)
  lines[line] = lines[line][:i] + digit + lines[line][i + 1 :]
  path.write_text('\n'.join(lines))
  assert len(path.read_text()) == len(text)


def _by_id(source, num_points=None):
  """Decoded examples of a source by image id."""
  examples = (datasets.decode(source[i], num_points) for i in range(len(source)))
  return {ex['image_id']: ex for ex in examples}


def test_fingerprint_sees_annotation_bytes_and_image_stat(tmp_path):
  (tmp_path / 'a.pts').write_text('1.5 2.5\n')
  (tmp_path / 'a.jpg').write_bytes(b'jpeg')
  fingerprint = lambda: common.fingerprint_files(
    str(tmp_path), [str(tmp_path / 'a.pts')], [str(tmp_path / 'a.jpg')]
  )
  first = fingerprint()
  assert first == fingerprint() and '1 annotation files, 1 images' in first
  (tmp_path / 'a.pts').write_text('2.5 1.5\n')  # same size
  second = fingerprint()
  assert second != first
  os.utime(tmp_path / 'a.jpg', ns=(1, 1))
  assert fingerprint() != second


def test_300w_rebuilds_after_same_size_pts_edit(tree300w, tmp_path, caplog):
  root, pts = tree300w
  before = datasets.decode(_load('300w', 'challenging', root, tmp_path)[0])['landmarks']
  np.testing.assert_allclose(before, pts['ibug/image_003_1'], atol=1e-4)
  _edit_same_size(root / 'ibug' / 'image_003_1.pts', 3, token=0)  # x of point 1
  with caplog.at_level('WARNING'):
    after = datasets.decode(_load('300w', 'challenging', root, tmp_path)[0])['landmarks']
  assert after[0, 0] != before[0, 0]
  np.testing.assert_array_equal(after[1:], before[1:])
  assert any(f'the files in {root} changed' in r.getMessage() for r in caplog.records)


def test_300w_empty_folder_blocks_only_its_split(tree300w, tmp_path):
  root, _ = tree300w
  os.remove(root / 'ibug' / 'image_003_1.pts')
  assert len(_load('300w', 'train', root, tmp_path)) == 4
  with pytest.raises(DatasetFormatError, match=r'ibug has no \.pts files'):
    _load('300w', 'challenging', root, tmp_path)


def test_mtfl_rebuilds_after_same_size_list_edit(tmp_path):
  root = tmp_path / 'mtfl'
  rows = [
    np.array([[30, 30], [50, 31], [40, 42], [32, 52], [49, 53]], np.float32) + i for i in (0, 1)
  ]
  _write_mtfl(root, 'new_training.txt', rows, attributes=False)
  before = _by_id(_load('mtfl', 'train', root, tmp_path))['lfw_5590/img_1']['landmarks']
  _edit_same_size(root / 'new_training.txt', 1, token=1)  # x of point 1 on the second line
  after = _by_id(_load('mtfl', 'train', root, tmp_path))['lfw_5590/img_1']['landmarks']
  assert after[0, 0] == before[0, 0] + 0.5
  np.testing.assert_array_equal(after[1:], before[1:])


def test_cofw_rebuilds_after_same_size_mat_edit(tmp_path):
  import h5py

  root = tmp_path / 'cofw'
  root.mkdir()
  path = root / 'COFW_train_color.mat'
  phis = np.zeros((1, 87))
  phis[:, :58] = RNG.uniform(10, 30, (1, 58))
  _write_cofw(path, [RNG.integers(0, 255, (40, 50, 3), dtype=np.uint8)], phis, [[5, 6, 30, 32]])
  before = datasets.decode(_load('cofw', 'train', root, tmp_path)[0])['landmarks']
  size = os.path.getsize(path)
  with h5py.File(path, 'r+') as f:
    f['phisTr'][0, 0] = phis[0, 0] + 3  # x of point 1, overwritten in place
  assert os.path.getsize(path) == size
  after = datasets.decode(_load('cofw', 'train', root, tmp_path)[0])['landmarks']
  assert after[0, 0] == pytest.approx(before[0, 0] + 3)
  np.testing.assert_array_equal(after[1:], before[1:])


def test_afw_multiface_rebuilds_after_same_size_pts_edit(tmp_path):
  root = tmp_path / 'afw'
  root.mkdir()
  image = RNG.integers(0, 255, (100, 120, 3), dtype=np.uint8)
  for k in (1, 2):
    cv2.imwrite(str(root / f'7_{k}.jpg'), image)
    write_pts(root / f'7_{k}.pts', _face_points())
  load = lambda: datasets.decode(
    _load('afw_multiface', 'test', root, tmp_path, config='full68')[0], 68
  )['faces']['landmarks']
  before = load()
  _edit_same_size(root / '7_2.pts', 3, token=0)  # x of point 1 of the second face
  after = load()
  assert after[1, 0, 0] != before[1, 0, 0]
  np.testing.assert_array_equal(after[0], before[0])


def test_composite_rebuilds_after_same_size_source_edit(tmp_path):
  root = tmp_path / 'mtfl'
  base = np.array([[30, 33], [50, 33], [40, 44], [32, 55], [48, 55]], np.float32)
  rows = [base + RNG.uniform(-2, 2, (5, 2)).round(1).astype(np.float32) for _ in range(6)]
  _write_mtfl(root, 'new_training.txt', [r.round(1) for r in rows], attributes=False)
  cfg = composite.make_config('mtfl', num_validation=3, num_scenes=2, max_faces=2)
  load = lambda: _load('composite_multiface', 'validation', root, tmp_path, config=cfg)
  source = load()
  sources = source.dataset_info.metadata['face_sources']
  scene_id, used = next((k, v) for k, v in sorted(sources.items()) if v)
  lines = (root / 'new_training.txt').read_text().split('\n')
  rel = used[0].replace('/', '\\') + '.jpg'
  line = next(i for i, text in enumerate(lines) if text.split()[:1] == [rel])
  before = _by_id(source, 5)[scene_id]['faces']['landmarks']
  _edit_same_size(root / 'new_training.txt', line, token=1)  # x of point 1 of a pasted face
  after = _by_id(load(), 5)[scene_id]['faces']['landmarks']
  assert not np.allclose(after, before)
