"""Head pose (yaw, pitch, roll in degrees) from 2-D landmarks: `cv2.solvePnP` against a 3-D
mean face.

The mean face is the face renderer's (`lmjax.synthface.shape.MEAN_SHAPE`, copied here to 3
decimals because inference code does not import the renderer; a test keeps the two equal), in
its head frame: x to the image's right, y down, z towards the camera, the face about 2 units
wide. The angles follow the renderer's `Pose` (rotation R = Rz(roll) Rx(pitch) Ry(yaw), head
frame to camera frame), so rendered faces measure the estimate against known poses:

  yaw > 0     the nose turns towards the image's right
  pitch > 0   the face turns up
  roll > 0    the face turns clockwise in the image

68-point faces use all 68 points, 5-point faces the eye centres, nose tip and mouth corners
(`lmjax.core.landmarks.five_from_68` of the mean face). The camera is a distant pinhole
(focal length `FOCAL_PER_FACE` times the landmarks' extent, principal point at their centre):
close to the weak perspective of the renderer and of the large-pose benchmarks, and it needs
no image size or calibration. EPnP gives the start, the Levenberg-Marquardt refinement of
`cv2.solvePnP` the result.
"""

from __future__ import annotations

import cv2
import numpy as np

from lmjax.core import landmarks
from lmjax.core.landmarks import Schema

ANGLES = ('yaw', 'pitch', 'roll')
FOCAL_PER_FACE = 100.0  # focal length / landmark extent: nearly weak perspective
MIN_POINTS = 4  # EPnP's minimum

MEAN_FACE_68 = np.array(
  [
    (-1.000, -0.380, -0.830),
    (-0.975, -0.113, -0.798),
    (-0.932, 0.151, -0.745),
    (-0.867, 0.411, -0.666),
    (-0.776, 0.662, -0.561),
    (-0.652, 0.899, -0.427),
    (-0.484, 1.108, -0.266),
    (-0.262, 1.254, -0.094),
    (-0.000, 1.300, 0.020),
    (0.262, 1.254, -0.094),
    (0.484, 1.108, -0.266),
    (0.652, 0.899, -0.427),
    (0.776, 0.662, -0.561),
    (0.867, 0.411, -0.666),
    (0.932, 0.151, -0.745),
    (0.975, -0.113, -0.798),
    (1.000, -0.380, -0.830),
    (-0.860, -0.560, -0.350),
    (-0.710, -0.680, -0.130),
    (-0.530, -0.720, -0.020),
    (-0.360, -0.710, 0.030),
    (-0.180, -0.650, 0.050),
    (0.180, -0.650, 0.050),
    (0.360, -0.710, 0.030),
    (0.530, -0.720, -0.020),
    (0.710, -0.680, -0.130),
    (0.860, -0.560, -0.350),
    (0.000, -0.430, 0.020),
    (0.000, -0.220, 0.130),
    (0.000, -0.010, 0.250),
    (0.000, 0.200, 0.400),
    (-0.240, 0.270, 0.100),
    (-0.120, 0.310, 0.180),
    (0.000, 0.330, 0.240),
    (0.120, 0.310, 0.180),
    (0.240, 0.270, 0.100),
    (-0.630, -0.380, -0.200),
    (-0.520, -0.460, -0.100),
    (-0.360, -0.465, -0.070),
    (-0.230, -0.390, -0.100),
    (-0.360, -0.335, -0.080),
    (-0.510, -0.340, -0.100),
    (0.230, -0.390, -0.100),
    (0.360, -0.465, -0.070),
    (0.520, -0.460, -0.100),
    (0.630, -0.380, -0.200),
    (0.510, -0.340, -0.100),
    (0.360, -0.335, -0.080),
    (-0.370, 0.660, 0.000),
    (-0.240, 0.590, 0.120),
    (-0.090, 0.555, 0.200),
    (0.000, 0.565, 0.210),
    (0.090, 0.555, 0.200),
    (0.240, 0.590, 0.120),
    (0.370, 0.660, 0.000),
    (0.250, 0.750, 0.100),
    (0.110, 0.790, 0.160),
    (0.000, 0.800, 0.170),
    (-0.110, 0.790, 0.160),
    (-0.250, 0.750, 0.100),
    (-0.310, 0.660, 0.030),
    (-0.110, 0.655, 0.160),
    (0.000, 0.655, 0.180),
    (0.110, 0.655, 0.160),
    (0.310, 0.660, 0.030),
    (0.110, 0.655, 0.160),
    (0.000, 0.655, 0.180),
    (-0.110, 0.655, 0.160),
  ],
  np.float64,
)
_FLIP_Z = np.diag([1.0, 1.0, -1.0])  # head frame (z towards the camera) <-> OpenCV (z away)


def has_mean_face(schema: Schema) -> bool:
  """Whether `head_pose` works for `schema` (68 and 5 points)."""
  return schema.num_points in (68, 5)


def mean_face(schema: Schema) -> np.ndarray:
  """The 3-D mean face [K, 3] of a landmark schema (68 or 5 points).

  Raises:
    ValueError: the schema has no 3-D mean face.
  """
  if schema.num_points == 68:
    return MEAN_FACE_68
  if schema.num_points == 5:
    return landmarks.five_from_68(MEAN_FACE_68[None, :, :])[0]
  raise ValueError(
    f'head pose: no 3-D mean face for {schema.num_points}-point landmarks (have 68 and 5)'
  )


def head_pose(points: np.ndarray, schema: Schema) -> np.ndarray:
  """Yaw, pitch and roll in degrees of faces from their landmarks.

  Args:
    points: image-pixel landmarks [K, 2] or [N, K, 2] of `schema`.
    schema: their landmark schema (68 or 5 points).

  Returns:
    float32 [3] or [N, 3]: (yaw, pitch, roll) per face (see the module doc), fitted to its
    finite points (a scanner leaves points it did not find NaN); NaN for a face with fewer
    than `MIN_POINTS` finite points or that the solver cannot fit.
  """
  points = np.asarray(points, np.float64)
  model = mean_face(schema) @ _FLIP_Z
  if points.shape[-2:] != model[:, :2].shape:
    raise ValueError(f'points: expected [..., {schema.num_points}, 2], got {points.shape}')
  flat = points.reshape(-1, *model[:, :2].shape)
  angles = np.array([_solve(model, face) for face in flat], np.float32)
  return angles.reshape(*points.shape[:-2], 3)


def _solve(model: np.ndarray, face: np.ndarray) -> np.ndarray:
  """(yaw, pitch, roll) of one face [K, 2] against model points [K, 3] (OpenCV frame)."""
  found = np.isfinite(face).all(axis=1)
  if found.sum() < MIN_POINTS:
    return np.full(3, np.nan)
  model, face = np.ascontiguousarray(model[found]), np.ascontiguousarray(face[found])
  low, high = face.min(0), face.max(0)
  focal = FOCAL_PER_FACE * max(float(np.max(high - low)), 1e-3)
  centre = (low + high) / 2
  camera = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]])
  ok, rvec, tvec = cv2.solvePnP(model, face, camera, None, flags=cv2.SOLVEPNP_EPNP)
  if ok:
    ok, rvec, tvec = cv2.solvePnP(
      model, face, camera, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
  if not ok:
    return np.full(3, np.nan)
  rotation = _FLIP_Z @ cv2.Rodrigues(rvec)[0] @ _FLIP_Z  # OpenCV -> head-frame convention
  return euler_angles(rotation)


def head_pose_if_known(points: np.ndarray, schema: Schema) -> np.ndarray | None:
  """`head_pose` of `points`, or None for a schema without a 3-D mean face (drawings and
  reports that show the pose where there is one)."""
  return head_pose(points, schema) if has_mean_face(schema) else None


def euler_angles(rotation: np.ndarray) -> np.ndarray:
  """(yaw, pitch, roll) in degrees of a rotation R = Rz(roll) Rx(pitch) Ry(yaw) [3, 3]."""
  pitch = np.arcsin(np.clip(rotation[2, 1], -1.0, 1.0))
  yaw = np.arctan2(-rotation[2, 0], rotation[2, 2])
  roll = np.arctan2(-rotation[0, 1], rotation[1, 1])
  return np.rad2deg([yaw, pitch, roll])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """R = Rz(roll) Rx(pitch) Ry(yaw) [3, 3] of angles in degrees (the renderer's `Pose`)."""
  y, p, r = np.deg2rad([yaw, pitch, roll])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
  return rz @ rx @ ry
