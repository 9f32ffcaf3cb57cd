"""FDDB builder on a generated copy of the official layout and the discrete-ROC protocol by
hand (the evaluation command on this layout: tests/test_scan_eval.py, which has the scanner)."""

import math

import cv2
import numpy as np
import pytest

from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, fddb
from lmjax.eval import fddb_roc

RNG = np.random.default_rng(0)
SIZE = (90, 120)  # height, width
# fold -> [(image path as in the lists, [ellipse (a, b, angle, cx, cy)])]
FOLDS = {
  1: [
    ('2002/08/11/big/img_591', [(30.0, 20.0, 0.0, 60.0, 45.0)]),
    (
      '2002/08/26/big/img_265',
      [(20.0, 10.0, math.pi / 2, 30.0, 40.0), (12.0, 9.0, 1.2, 112.0, 8.0)],
    ),
  ],
  2: [('2003/01/13/big/img_421', [(25.5, 17.25, -1.4, 62.0, 50.0)])],
}


def write_fddb(root, folds=FOLDS):
  """The official layout: FDDB-folds/FDDB-fold-NN{,-ellipseList}.txt and originalPics/…jpg."""
  (root / 'FDDB-folds').mkdir(parents=True)
  for fold, images in folds.items():
    names, lines = [], []
    for name, ellipses in images:
      path = root / 'originalPics' / f'{name}.jpg'
      path.parent.mkdir(parents=True, exist_ok=True)
      cv2.imwrite(str(path), RNG.integers(0, 255, (*SIZE, 3), dtype=np.uint8))
      names.append(name)
      lines += [name, str(len(ellipses))] + [
        ' '.join(f'{v:f}' for v in e) + '  1' for e in ellipses
      ]
    (root / 'FDDB-folds' / f'FDDB-fold-{fold:02d}.txt').write_text('\n'.join(names) + '\n')
    (root / 'FDDB-folds' / f'FDDB-fold-{fold:02d}-ellipseList.txt').write_text(
      '\n'.join(lines) + '\n'
    )
  return root


@pytest.fixture
def tree(tmp_path):
  return write_fddb(tmp_path / 'fddb')


def _load(split, root, tmp_path):
  return datasets.load_split('fddb', split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'))


def test_fddb_builder_reads_folds_ellipses_and_boxes(tree, tmp_path):
  test = _load('test', tree, tmp_path)
  assert len(test) == 3 and test.dataset_info.metadata['num_faces'] == 4
  examples = [test[i] for i in range(3)]
  assert [str(e['image_id'], 'utf-8') for e in examples] == [n for f in (1, 2) for n, _ in FOLDS[f]]
  assert [int(e['fold']) for e in examples] == [1, 1, 2]
  second = fddb.decode_faces(examples[1])
  np.testing.assert_allclose(second['ellipse'], FOLDS[1][1][1], atol=1e-5)
  # a = 20 along the vertical (angle π/2), b = 10 across: box 20 wide, 40 high.
  np.testing.assert_allclose(second['bbox'][0], [20, 20, 40, 60], atol=1e-4)
  # the second face's box leaves the image at the top and right: clipped to the pixel centres.
  a, b, t = 12.0, 9.0, 1.2
  half_w, half_h = (
    math.hypot(a * math.cos(t), b * math.sin(t)),
    math.hypot(a * math.sin(t), b * math.cos(t)),
  )
  np.testing.assert_allclose(second['bbox'][1], [112 - half_w, 0, 119, 8 + half_h], atol=1e-4)
  assert examples[0]['image'].shape == (*SIZE, 3)
  fold2 = _load('fold_02', tree, tmp_path)
  assert len(fold2) == 1 and fold2[0]['image_id'] == b'2003/01/13/big/img_421'
  with pytest.raises(DatasetFormatError, match=r'fold_05.*folds present: \[1, 2\]'):
    _load('fold_05', tree, tmp_path)
  with pytest.raises(DatasetFormatError, match="FDDB stores one split 'test'"):
    _load('train', tree, tmp_path)


@pytest.mark.parametrize(
  ('damage', 'message'),
  [
    ('count', r'FDDB-fold-01-ellipseList\.txt:4: expected face 2 of 2 of .*img_591.* got 1'),
    ('short', r'FDDB-fold-01-ellipseList\.txt:5: .*img_265\' declares 2 faces but the file ends'),
    ('word', r'FDDB-fold-01-ellipseList\.txt:3: minor_axis_radius \'2O\.000000\' is not a number'),
    ('last', r'FDDB-fold-02-ellipseList\.txt:3: last field is 0; expected 1'),
    ('not_count', r'FDDB-fold-01-ellipseList\.txt:5: expected the face count .* got \'two\''),
    ('image', r'FDDB-fold-02-ellipseList\.txt:1: image .*img_421\.jpg not found'),
    ('order', r'FDDB-fold-01-ellipseList\.txt:1: image 1 is .*img_591.* but .*FDDB-fold-01\.txt:1'),
    ('unlisted', r'FDDB-fold-01-ellipseList\.txt:4: image .*img_265. is not in .*fold-01\.txt'),
    ('unannotated', r'FDDB-fold-01-ellipseList\.txt: ends after 2 images, but .*01\.txt:3 lists'),
    ('empty_fold', r'FDDB-fold-01\.txt: fold list has no images'),
  ],
)
def test_fddb_malformed_files_name_file_and_line(tree, tmp_path, damage, message):
  folder = tree / 'FDDB-folds'
  path = folder / (
    'FDDB-fold-02-ellipseList.txt' if damage == 'last' else 'FDDB-fold-01-ellipseList.txt'
  )
  lines = path.read_text().splitlines()
  if damage == 'count':
    lines[1] = '2'  # img_591 declares 2 faces: the next image's path is read as its second
  elif damage == 'short':
    del lines[6]
  elif damage == 'word':
    lines[2] = lines[2].replace('20.000000', '2O.000000', 1)
  elif damage == 'last':
    lines[2] = lines[2][:-1] + '0'
  elif damage == 'not_count':
    lines[4] = 'two'
  elif damage == 'order':
    (folder / 'FDDB-fold-01.txt').write_text('2002/08/26/big/img_265\n2002/08/11/big/img_591\n')
  elif damage in ('unlisted', 'unannotated', 'empty_fold'):
    listed = {'unlisted': ['2002/08/11/big/img_591'], 'empty_fold': []}.get(
      damage, ['2002/08/11/big/img_591', '2002/08/26/big/img_265', '2002/08/26/big/img_266']
    )
    (folder / 'FDDB-fold-01.txt').write_text(''.join(f'{n}\n' for n in listed))
  path.write_text('\n'.join(lines) + '\n')
  if damage == 'image':
    (tree / 'originalPics' / '2003/01/13/big/img_421.jpg').unlink()
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load('test', tree, tmp_path)
  assert '\n' not in str(e.value), str(e.value)


def test_fddb_missing_folds_and_rebuild(tree, tmp_path):
  assert len(_load('test', tree, tmp_path)) == 3
  (tree / 'FDDB-folds' / 'FDDB-fold-02-ellipseList.txt').unlink()
  with pytest.raises(DatasetFormatError, match=r'FDDB-fold-02\.txt: fold list without its ellipse'):
    _load('test', tree, tmp_path)
  (tree / 'FDDB-folds' / 'FDDB-fold-02.txt').unlink()
  assert len(_load('test', tree, tmp_path)) == 2  # fingerprint changed: rebuilt with fold 1 only
  for name in ('FDDB-fold-01.txt', 'FDDB-fold-01-ellipseList.txt'):
    (tree / 'FDDB-folds' / name).unlink()
  with pytest.raises(DatasetFormatError, match=r'FDDB-folds: no FDDB-fold-NN\.txt found'):
    _load('test', tree, tmp_path)


def test_region_overlaps_by_hand():
  # A circle of radius 1.5 at (10, 10) holds exactly the 3 × 3 pixels 9..11 (corners: 2 <= 2.25).
  circle = [1.5, 1.5, 0.0, 10.0, 10.0]
  boxes = [[9, 9, 11, 11], [9, 9, 11, 13], [9, 9, 11, 14], [9, 9, 11, 15], [20, 20, 30, 30]]
  np.testing.assert_allclose(
    fddb_roc.region_overlaps(boxes, [circle], (40, 40))[:, 0], [1.0, 9 / 15, 9 / 18, 9 / 21, 0.0]
  )
  # a = 3, b = 1: 7 pixels along the major axis and the 2 beside the centre. Along x at angle 0,
  # along y at angle π/2; the column x = 10, y = 7..13 (7 pixels) meets 3 or 7 of them.
  column = [[10, 7, 10, 13]]
  flat = fddb_roc.region_overlaps(column, [[3, 1, 0.0, 10, 10]], (40, 40))
  upright = fddb_roc.region_overlaps(column, [[3, 1, math.pi / 2, 10, 10]], (40, 40))
  np.testing.assert_allclose([flat[0, 0], upright[0, 0]], [3 / 13, 7 / 9])
  # Only the image's pixels count: at the corner 4 of the circle's pixels remain, as of the box.
  corner = fddb_roc.region_overlaps([[-5, -5, 1, 1]], [[1.5, 1.5, 0, 0, 0]], (40, 40))
  assert corner[0, 0] == 1.0


def test_matching_is_the_max_sum_assignment():
  # Greedy would give d0 to f0 (0.9) and leave d1 with nothing; the sum is larger crosswise.
  assert fddb_roc.matched_true_positives([[0.9, 0.6], [0.6, 0.0]]) == 2
  assert fddb_roc.matched_true_positives([[0.9, 0.4], [0.4, 0.0]]) == 1
  assert fddb_roc.matched_true_positives([[0.5]]) == 0  # the ratio must exceed 0.5
  assert fddb_roc.matched_true_positives(np.zeros((0, 2))) == 0


def test_discrete_roc_two_detections_for_one_face_and_recall_at_fp():
  circle = [[1.5, 1.5, 0.0, 10.0, 10.0]]
  roc = fddb_roc.DiscreteRocAccumulator()
  # Image 1: the exact box (score 0.6) and a loose one (IoU 0.6, score 0.9) compete for a face.
  roc.add([[9, 9, 11, 11], [9, 9, 11, 13]], [0.6, 0.9], circle, (40, 40))
  # Image 2: two faces; a box on the first (0.7), one on nothing (0.95).
  faces = [circle[0], [1.5, 1.5, 0.0, 30.0, 30.0]]
  roc.add([[9, 9, 11, 11], [0, 0, 3, 3]], [0.7, 0.95], faces, (40, 40))
  r = roc.result(fp_at=(0, 1, 2, 3))
  np.testing.assert_allclose(r['thresholds'], [0.95, 0.9, 0.7, 0.6])
  np.testing.assert_array_equal(r['true_positives'], [0, 1, 2, 2])
  np.testing.assert_array_equal(r['false_positives'], [1, 1, 1, 2])
  np.testing.assert_allclose(r['true_positive_rate'], [0, 1 / 3, 2 / 3, 2 / 3])
  assert r['num_faces'] == 3 and r['num_detections'] == 4 and r['num_images'] == 2
  assert r['recall_at_0_fp'] == 0.0 and r['recall_at_1_fp'] == pytest.approx(2 / 3)
  assert r['recall_at_2_fp'] == pytest.approx(2 / 3) and np.isnan(r['recall_at_3_fp'])
  with pytest.raises(ValueError, match=r'boxes: expected shape \[D, 4\]'):
    roc.add([[0, 0, 1]], [0.5], circle, (40, 40))
