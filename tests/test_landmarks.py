"""Landmark schemas: permutations, names, clusters, normalisers (and real fixtures)."""

import json

import numpy as np
import pytest

from lmjax.core import landmarks

ALL = sorted(landmarks.SCHEMAS.values(), key=lambda s: s.num_points)


def _swap_side(name: str) -> str:
  if name.endswith('_left'):
    return name[:-5] + '_right'
  if name.endswith('_right'):
    return name[:-6] + '_left'
  return name


@pytest.mark.parametrize('schema', ALL, ids=lambda s: s.name)
def test_flip_perm_is_involution_and_swaps_named_sides(schema):
  perm = np.asarray(schema.flip_perm)
  np.testing.assert_array_equal(perm[perm], np.arange(schema.num_points))
  for i, j in enumerate(perm):
    assert schema.names[j] == _swap_side(schema.names[i]), (schema.name, i, j)
  assert len(set(schema.names)) == schema.num_points


def test_68_permutation_matches_spec_literal():
  spec = [
    *range(16, -1, -1),
    *range(26, 16, -1),
    27,
    28,
    29,
    30,
    35,
    34,
    33,
    32,
    31,
    45,
    44,
    43,
    42,
    47,
    46,
    39,
    38,
    37,
    36,
    41,
    40,
    *range(54, 47, -1),
    *range(59, 54, -1),
    *range(64, 59, -1),
    67,
    66,
    65,
  ]
  assert list(landmarks.IBUG68.flip_perm) == spec
  assert landmarks.FIVE.flip_perm == (1, 0, 2, 4, 3)


def test_clusters_partition_points_and_match_spec():
  s = landmarks.IBUG68
  assert len(s.clusters) == 7
  assert s.clusters[0] == (17, 18, 19, 20, 21, 36, 37, 38, 39, 40, 41)
  assert s.clusters[3] == tuple(range(48, 68))
  assert len(landmarks.COFW29.clusters) == 5 and len(landmarks.FIVE.clusters) == 4
  np.testing.assert_array_equal(landmarks.FIVE.cluster_of(), [0, 1, 2, 3, 3])
  with pytest.raises(ValueError, match='defines no MCL clusters'):
    landmarks.AFLW21.cluster_of()


def test_clusters_are_flip_symmetric():
  """Flipping maps every cluster onto a cluster (left eye <-> right eye, ...)."""
  for s in (landmarks.FIVE, landmarks.AFLW19, landmarks.COFW29, landmarks.IBUG68, landmarks.WFLW98):
    clusters = {frozenset(c) for c in s.clusters}
    for c in s.clusters:
      assert frozenset(s.flip_perm[i] for i in c) in clusters


# WFLW's mirror pairs as the LAB / HRNet releases list them (0-based; unlisted points map to
# themselves): contour, brows, eyes, nose wings, outer and inner lips, pupils.
WFLW_PAIRS = [
  *[(k, 32 - k) for k in range(16)],
  *[(33 + k, 46 - k) for k in range(5)],
  *[(38 + k, 50 - k) for k in range(4)],
  *[(60 + k, 72 - k) for k in range(5)],
  (65, 75), (66, 74), (67, 73), (55, 59), (56, 58),
  (76, 82), (77, 81), (78, 80), (87, 83), (86, 84),
  (88, 92), (89, 91), (95, 93), (96, 97),
]  # fmt: skip


def test_wflw_flip_perm_is_the_official_one_and_clusters_mirror_68():
  s = landmarks.WFLW98
  expected = list(range(98))
  for a, b in WFLW_PAIRS:
    expected[a], expected[b] = b, a
  assert list(s.flip_perm) == expected
  assert s.normalisers['ioc'] == ((60,), (72,))
  assert s.cluster_names == landmarks.IBUG68.cluster_names
  # Cluster of every 68-point contour point j is that of WFLW contour point 2j.
  c68, c98 = landmarks.IBUG68.cluster_of(), s.cluster_of()
  assert [c68[j] for j in range(17)] == [c98[2 * j] for j in range(17)]
  assert c98[96] == c98[60] and c98[97] == c98[72]


def test_normaliser_distances_on_hand_made_points():
  pts = np.zeros((68, 2), np.float32)
  pts[36:42] = [10.0, 20.0]
  pts[42:48] = [40.0, 20.0]
  pts[36] = [4.0, 20.0]
  pts[45] = [50.0, 24.0]
  s = landmarks.IBUG68
  assert s.normaliser_distance(pts, 'ioc') == pytest.approx(np.hypot(46, 4))
  # Eye centres: left (5*10 + 4)/6 = 9, right (5*40 + 50)/6 = 41.667, y right = 20.667.
  assert s.normaliser_distance(pts, 'ipd') == pytest.approx(np.hypot(41.0 + 2 / 3 - 9, 2 / 3))
  with pytest.raises(KeyError, match='no normaliser'):
    s.normaliser_distance(pts, 'box')
  batch = np.stack([pts, pts * 2])
  np.testing.assert_allclose(
    s.normaliser_distance(batch, 'ioc'), [np.hypot(46, 4), 2 * np.hypot(46, 4)]
  )


def test_five_from_68_and_get_schema():
  pts = np.random.default_rng(0).uniform(0, 100, (3, 68, 2)).astype(np.float32)
  five = landmarks.five_from_68(pts)
  assert five.shape == (3, 5, 2)
  np.testing.assert_allclose(five[:, 0], pts[:, 36:42].mean(1), rtol=1e-6)
  np.testing.assert_allclose(five[:, 2], pts[:, 30])
  np.testing.assert_allclose(five[:, 4], pts[:, 54])
  assert landmarks.get_schema(68) is landmarks.IBUG68
  with pytest.raises(KeyError, match='no landmark schema with 7 points'):
    landmarks.get_schema(7)


@pytest.mark.parametrize(
  'folder,num_points', [('aflw', 19), ('cofw', 29), ('wflw', 98), ('300w', 68), ('300wlp', 68)]
)
def test_left_points_are_image_left_on_real_fixtures(shared_data, folder, num_points):
  """On real annotated faces every `*_left` point lies left of its `*_right` partner."""
  path = shared_data / 'fixtures' / 'mmpose' / folder / f'test_{folder}.json'
  schema = landmarks.get_schema(num_points)
  for ann in json.loads(path.read_text())['annotations']:
    kp = np.asarray(ann['keypoints'], np.float32).reshape(-1, 3)[:, :2]
    assert kp.shape == (num_points, 2)
    for i, j in enumerate(schema.flip_perm):
      if schema.names[i].endswith('_left'):
        assert kp[i, 0] < kp[j, 0], (folder, schema.names[i])
