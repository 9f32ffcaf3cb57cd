"""Pose and size of a face from its landmarks, and the bins the evaluator reports them in.

Computed from the landmarks alone, so they work for every landmark scheme (all have eye centres
and a nose tip) without pose annotations: yaw = |nose tip offset from the eye midline, along
the eye line| / eye distance; roll = |angle of the eye line| in degrees; size = eye distance
in pixels. Shared by the evaluator (`lmjax.eval.pose_bins`) and pose-balanced sampling of
training faces (`lmjax.data.balance`).
"""

from __future__ import annotations

import itertools

import numpy as np

from lmjax.core.landmarks import Schema

# Bin edges per axis (a face falls into the first bin whose upper edge exceeds its value).
EDGES = {
  'yaw': (0.1, 0.25),  # eye distances
  'roll': (7.5, 15.0),  # degrees
  'size': (16.0, 24.0, 40.0),  # pixels between the eye centres
}


def bin_names(axis: str) -> list[str]:
  """Readable names of an axis's bins, e.g. ['<0.1', '0.1-0.25', '>=0.25']."""
  edges = EDGES[axis]
  return (
    [f'<{edges[0]:g}']
    + [f'{a:g}-{b:g}' for a, b in itertools.pairwise(edges)]
    + [f'>={edges[-1]:g}']
  )


def face_geometry(gt: np.ndarray, schema: Schema) -> dict[str, np.ndarray]:
  """Per-face yaw proxy, roll (degrees) and eye distance (pixels) of ground truth [N, K, 2]."""
  gt = np.asarray(gt, np.float64)
  left, right = schema.normalisers['ipd']
  eye_l, eye_r = gt[:, list(left)].mean(1), gt[:, list(right)].mean(1)  # [N, 2]
  nose = gt[:, schema.names.index('nose_tip')]  # [N, 2]
  axis = eye_r - eye_l
  distance = np.linalg.norm(axis, axis=-1)  # [N]
  if (distance <= 0).any():
    raise ValueError('ground truth: a face has coinciding eye centres (eye distance 0)')
  unit = axis / distance[:, None]
  offset = np.sum((nose - (eye_l + eye_r) / 2) * unit, axis=-1) / distance
  roll = np.degrees(np.arctan2(axis[:, 1], axis[:, 0]))
  roll = (roll + 90.0) % 180.0 - 90.0  # a mirrored eye order counts like its flip
  return {'yaw': np.abs(offset), 'roll': np.abs(roll), 'size': distance}
