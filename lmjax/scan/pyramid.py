"""The scanner's image pyramid (paper §III-E-2): level sizes and the depth for a smallest face.

Level l of an image of h × w pixels is the image scaled by s_l = 32 · 1.16^l / min(h, w): the
smaller side is 32 pixels at level 0 and grows by 1.16 per level. `lmjax.scan.tiling` builds
the levels and packs them into fixed-size tiles.
"""

from __future__ import annotations

import math

BASE_SIDE = 32  # smaller side of level 0
SCALE_STEP = 1.16


def level_side(level):
  """Smaller side of level `level` (32 · 1.16^level); an int, or an int / float array."""
  return BASE_SIDE * SCALE_STEP**level


def levels_for_min_face(min_face: float, smaller_side: int, face_px: float) -> int:
  """Levels L needed so that a face of `min_face` pixels reaches `face_px` at the top level.

  Args:
    min_face: smallest face (box side, in the convention of the model's training boxes) to find.
    smaller_side: min(h, w) of the images.
    face_px: the side such a box has in the backbone's training window (32 / crop_scale).
  """
  need = face_px * smaller_side / (BASE_SIDE * min_face)  # 1.16^(L - 1) >= need
  return max(1, math.ceil(math.log(max(need, 1.0)) / math.log(SCALE_STEP) - 1e-9) + 1)
