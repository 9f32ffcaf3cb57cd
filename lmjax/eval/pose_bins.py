"""Errors per pose and face-size bin: a validation that looks like the test, not only its mean.

A mean NME hides the faces a model fails on. The bins here are computed from the ground-truth
landmarks of each face, so they work for every landmark scheme (all have eye centres and a nose
tip) without pose annotations:

  yaw   |nose tip offset from the eye midline, along the eye line| / eye distance. A frontal
        face has ~0; the nose of a face turned by ~45° sits a third of an eye distance aside.
  roll  |angle of the eye line| in degrees (in-plane rotation).
  size  eye distance in image pixels (resolution of the face).

`pose_bins` returns, per axis and bin, the number of faces and the mean NME under every
normaliser, and `worst_bin_ratio`: the worst bin's mean ipd NME over the overall mean, among
bins with at least `MIN_FACES` faces (the issue's "worst pose bin within 1.6× its mean").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmjax.core.face_pose import EDGES, bin_names, face_geometry
from lmjax.core.landmarks import Schema

MIN_FACES = 5  # a bin with fewer faces is reported but not used for the worst-bin ratio


def pose_bins(nmes: dict[str, np.ndarray], gt: np.ndarray, schema: Schema) -> dict[str, Any]:
  """Mean NMEs (percent) per bin of every axis.

  Args:
    nmes: normaliser -> [N] per-face NMEs as ratios (`reports.per_image_nmes`).
    gt: [N, K, 2] ground-truth landmarks (image pixels).
    schema: the landmark scheme.

  Returns:
    {axis: {bin name: {'num_faces': n, 'nme_<norm>': percent or None when empty}},
     'worst_bin_ratio': float | None, 'worst_bin': 'axis/bin' | None}.
  """
  geometry = face_geometry(gt, schema)
  overall = float(np.mean(nmes['ipd']))
  out: dict[str, Any] = {}
  worst, worst_name = None, None
  for axis, values in geometry.items():
    index = np.searchsorted(np.asarray(EDGES[axis]), values, side='right')  # [N] bin of each face
    out[axis] = {}
    for b, name in enumerate(bin_names(axis)):
      members = index == b
      row: dict[str, Any] = {'num_faces': int(members.sum())}
      for norm, nme in nmes.items():
        row[f'nme_{norm}'] = 100 * float(np.mean(nme[members])) if members.any() else None
      out[axis][name] = row
      if row['num_faces'] >= MIN_FACES and overall > 0:
        ratio = float(np.mean(nmes['ipd'][members])) / overall
        if worst is None or ratio > worst:
          worst, worst_name = ratio, f'{axis}/{name}'
  out['worst_bin_ratio'] = worst
  out['worst_bin'] = worst_name
  return out


def bins_table(bins: dict[str, Any], normaliser: str = 'ipd') -> str:
  """A text table: one line per axis and bin (faces, NME), then the worst-bin ratio."""
  lines = [f'NME ({normaliser}, percent) per pose / size bin of the ground truth']
  for axis in EDGES:
    for name, row in bins[axis].items():
      value = row[f'nme_{normaliser}']
      shown = '-' if value is None else f'{value:6.2f}'
      lines.append(f'  {axis:<5} {name:>9}  {row["num_faces"]:>6} faces  {shown}')
  if bins['worst_bin_ratio'] is not None:
    lines.append(
      f'  worst bin {bins["worst_bin"]}: {bins["worst_bin_ratio"]:.2f} × the mean '
      f'(bins of ≥ {MIN_FACES} faces)'
    )
  return '\n'.join(lines)
