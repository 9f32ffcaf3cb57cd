"""Pose and size bins from the ground truth: the yaw / roll / size proxies and the per-bin NMEs."""

import numpy as np
import pytest

from lmjax.core import landmarks
from lmjax.eval import pose_bins, reports

FIVE = landmarks.get_schema(5)


def face(centre=(40.0, 40.0), eye_distance=20.0, yaw=0.0, roll_deg=0.0):
  """5 points (eyes, nose tip, mouth corners) of a face with the given proxies."""
  d = eye_distance
  local = np.array([[-d / 2, 0], [d / 2, 0], [yaw * d, 0.5 * d], [-0.4 * d, d], [0.4 * d, d]])
  a = np.radians(roll_deg)
  rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  return local @ rot.T + np.asarray(centre)


def test_face_geometry_recovers_yaw_roll_and_size():
  gt = np.stack([face(yaw=0.3, roll_deg=20.0, eye_distance=30.0), face(yaw=-0.05, roll_deg=-5.0)])
  g = pose_bins.face_geometry(gt, FIVE)
  np.testing.assert_allclose(g['yaw'], [0.3, 0.05], atol=1e-9)
  np.testing.assert_allclose(g['roll'], [20.0, 5.0], atol=1e-9)
  np.testing.assert_allclose(g['size'], [30.0, 20.0], atol=1e-9)
  flipped = gt[:, [1, 0, 2, 4, 3]]  # eye order mirrored: the same roll magnitude
  np.testing.assert_allclose(pose_bins.face_geometry(flipped, FIVE)['roll'], [20.0, 5.0])


def test_bins_count_faces_and_average_their_errors():
  gt = np.stack([face(yaw=0.0)] * 6 + [face(yaw=0.4)] * 6)
  nmes = {k: np.array([0.02] * 6 + [0.08] * 6) for k in ('ioc', 'ipd', 'box')}
  bins = pose_bins.pose_bins(nmes, gt, FIVE)
  assert bins['yaw']['<0.1'] == {'num_faces': 6, 'nme_ioc': 2.0, 'nme_ipd': 2.0, 'nme_box': 2.0}
  assert bins['yaw']['>=0.25']['num_faces'] == 6
  assert bins['yaw']['>=0.25']['nme_ipd'] == pytest.approx(8.0)
  assert bins['yaw']['0.1-0.25'] == {
    'num_faces': 0, 'nme_ioc': None, 'nme_ipd': None, 'nme_box': None
  }  # fmt: skip
  assert bins['worst_bin'] == 'yaw/>=0.25'
  assert bins['worst_bin_ratio'] == pytest.approx(0.08 / 0.05)
  assert 'worst bin yaw/>=0.25: 1.60' in pose_bins.bins_table(bins)


def test_compute_metrics_reports_the_bins_and_rejects_degenerate_faces():
  gt = np.stack([face(eye_distance=10.0 + i) for i in range(8)])
  metrics = reports.compute_metrics(gt + 0.5, gt, np.tile([20.0, 20.0, 60.0, 70.0], (8, 1)), FIVE)
  assert sum(row['num_faces'] for row in metrics['pose_bins']['size'].values()) == 8
  bad = gt.copy()
  bad[0, 1] = bad[0, 0]
  with pytest.raises(ValueError, match='eye distance 0'):
    pose_bins.face_geometry(bad, FIVE)
