"""Yaw-balanced sampling of training faces (lmjax.data.balance, batching.train_indices)."""

import ml_collections
import numpy as np
import pytest

from lmjax.core import face_pose, landmarks
from lmjax.data import balance, batching

SCHEMA = landmarks.get_schema(5)  # left eye, right eye, nose tip, mouth corners


def _faces(yaws):
  """5-point faces (eyes 20 px apart) with nose offsets `yaws` eye distances from the midline."""
  eyes = np.array([[40.0, 40.0], [60.0, 40.0]])
  faces = []
  for yaw in yaws:
    nose = [50.0 + 20.0 * yaw, 52.0]
    faces.append(np.vstack([eyes, [nose], [[42.0, 62.0], [58.0, 62.0]]]))
  return np.asarray(faces, np.float32)


def test_yaw_bins_match_the_evaluator():
  yaws = [0.0, 0.05, 0.2, 0.3, -0.4]
  np.testing.assert_array_equal(balance.yaw_bin(_faces(yaws), SCHEMA), [0, 0, 1, 2, 2])
  assert len(face_pose.EDGES['yaw']) + 1 == 3


def test_power_interpolates_from_uniform_to_equal_bins():
  faces = _faces([0.0] * 80 + [0.15] * 15 + [0.4] * 5)  # bin shares 0.8 / 0.15 / 0.05
  bins = balance.yaw_bin(faces, SCHEMA)
  uniform = balance.yaw_balance_weights(faces, SCHEMA, 0.0)
  np.testing.assert_allclose(uniform, np.full(100, 0.01))
  equal = balance.yaw_balance_weights(faces, SCHEMA, 1.0)
  np.testing.assert_allclose(np.bincount(bins, weights=equal), [1 / 3] * 3)
  half = balance.yaw_balance_weights(faces, SCHEMA, 0.5)
  shares = np.bincount(bins, weights=half)
  assert shares[2] > 0.05 and shares[2] < 1 / 3 and abs(half.sum() - 1) < 1e-9
  with pytest.raises(ValueError, match=r'data.pose_balance 1.5: expected a power in \[0, 1\]'):
    balance.yaw_balance_weights(faces, SCHEMA, 1.5)


def test_sampling_weights_off_by_default():
  faces = _faces([0.0, 0.4])
  data = ml_collections.ConfigDict({'pose_balance': 0.0})
  assert balance.sampling_weights(data, faces, SCHEMA) is None
  assert balance.sampling_weights(ml_collections.ConfigDict({}), faces, SCHEMA) is None
  data.pose_balance = 1.0
  np.testing.assert_allclose(balance.sampling_weights(data, faces, SCHEMA), [0.5, 0.5])


def test_weighted_train_indices_are_stateless_and_follow_the_weights():
  n, b = 20, 10
  weights = np.full(n, 0.5 / 19)
  weights[7] = 0.5  # one example drawn half of the time
  draws = np.concatenate([batching.train_indices(s, n, b, 3, weights) for s in range(400)])
  assert abs(np.mean(draws == 7) - 0.5) < 0.03
  assert set(np.unique(draws)) == set(range(n))  # the others still come up
  # resume-safe: a step's batch depends only on (seed, step, weights)
  np.testing.assert_array_equal(batching.train_indices(123, n, b, 3, weights), draws[1230:1240])
