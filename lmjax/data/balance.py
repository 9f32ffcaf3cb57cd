"""Pose-balanced sampling of training faces: up-weight the rare yaw bins.

Training sets are mostly frontal (MTFL train: 6 % of faces with strong yaw, the AFLW test: 21 %),
so a model sees few hard poses and the worst yaw bin of the evaluator's report lags the mean.
`yaw_balance_weights` gives each training face the probability

    p_i ∝ share(bin_i) ** -power,

where bin_i is the face's yaw bin in `lmjax.core.face_pose` (the same proxy and edges the
evaluator reports) and share its fraction of the training faces: power 0 keeps uniform
sampling, 1 makes every yaw bin equally likely, values in between interpolate.
`lmjax.data.batching.train_indices` draws each epoch's order from these probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from absl import logging

from lmjax.core import face_pose
from lmjax.core.landmarks import Schema


def yaw_bin(landmarks: np.ndarray, schema: Schema) -> np.ndarray:
  """[N] int yaw bin (0 = near-frontal) of faces with ground truth [N, K, 2]."""
  yaw = face_pose.face_geometry(landmarks, schema)['yaw']
  return np.searchsorted(np.asarray(face_pose.EDGES['yaw']), yaw, side='right')


def yaw_balance_weights(landmarks: np.ndarray, schema: Schema, power: float) -> np.ndarray:
  """Sampling probabilities [N] (summing to 1) of faces with ground truth [N, K, 2].

  Args:
    landmarks: [N, K, 2] training landmarks in any pixel frame (the yaw proxy is a ratio).
    schema: the landmark schema (needs the ipd normaliser and `nose_tip`).
    power: in [0, 1]; 0 = uniform, 1 = equal total probability per non-empty yaw bin.
  """
  return _bin_weights(yaw_bin(landmarks, schema), power)


def _bin_weights(index: np.ndarray, power: float) -> np.ndarray:
  """Probabilities [N] ∝ share(bin) ** -power of faces in yaw bins `index` [N]."""
  if not 0.0 <= power <= 1.0:
    raise ValueError(f'data.pose_balance {power}: expected a power in [0, 1] (0 = uniform)')
  share = np.bincount(index, minlength=len(face_pose.EDGES['yaw']) + 1) / len(index)
  weights = share[index] ** -float(power)
  return weights / weights.sum()


def sampling_weights(data: Any, landmarks: np.ndarray, schema: Schema) -> np.ndarray | None:
  """The training faces' sampling probabilities of config block `data` (`data.pose_balance`,
  absent or 0 = uniform: None), logging the yaw bins' shares before and after."""
  power = float(data.get('pose_balance', 0.0) or 0.0)
  if power == 0.0:
    return None
  index = yaw_bin(landmarks, schema)
  weights = _bin_weights(index, power)
  bins = len(face_pose.EDGES['yaw']) + 1
  before = np.bincount(index, minlength=bins) / len(index)
  after = np.bincount(index, weights=weights, minlength=bins)
  logging.info(
    'pose_balance %g: yaw bins %s sampled %s (were %s)',
    power,
    face_pose.bin_names('yaw'),
    np.round(after, 3).tolist(),
    np.round(before, 3).tolist(),
  )
  return weights
