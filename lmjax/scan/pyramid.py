"""The scanner's image pyramid (paper §III-E-2): level sizes and the depth for a smallest face.

Level l of an image of h × w pixels is the image scaled by s_l = 32 · step^l / min(h, w): the
smaller side is 32 pixels at level 0 and grows by `step` per level (the paper's 1.16 by
default; a coarser step such as 1.41 scans about half the pixels at the same reach, at the cost
of the backbone seeing faces up to √step off the size it was trained on). `lmjax.scan.tiling`
builds the levels and packs them into fixed-size tiles.
"""

from __future__ import annotations

import math

BASE_SIDE = 32  # smaller side of level 0
SCALE_STEP = 1.16  # the paper's step between levels


def level_side(level, step: float = SCALE_STEP):
  """Smaller side of level `level` (32 · step^level); an int, or an int / float array."""
  return BASE_SIDE * step**level


def check_step(step: float) -> float:
  """`step` if it is a usable scale step between levels (1 < step ≤ 2), else a ValueError."""
  if not 1.0 < step <= 2.0:
    raise ValueError(f'scale_step is {step}; expected a number above 1 and at most 2')
  return step


def levels_for_min_face(
  min_face: float, smaller_side: int, face_px: float, step: float = SCALE_STEP
) -> int:
  """Levels L needed so that a face of `min_face` pixels reaches `face_px` at the top level.

  Args:
    min_face: smallest face (box side, in the convention of the model's training boxes) to find.
    smaller_side: min(h, w) of the images.
    face_px: the side such a box has in the backbone's training window (32 / crop_scale).
    step: scale step between levels.
  """
  need = face_px * smaller_side / (BASE_SIDE * min_face)  # step^(L - 1) >= need
  return max(1, math.ceil(math.log(max(need, 1.0)) / math.log(step) - 1e-9) + 1)
