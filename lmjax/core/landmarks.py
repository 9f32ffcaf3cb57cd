"""Facial landmark schemas: point names, flip permutations, MCL clusters, normalisers.

Conventions (SPEC §2):
  * Indices are 0-based.
  * "left" always means *image-left* (the subject's right side on a frontal face).
  * A flip permutation `perm` re-orders points after a horizontal flip:
    `new[i] = old[perm[i]]` together with `x' = (W - 1) - x`. Every permutation is an
    involution (`perm[perm[i]] == i`).
  * A normaliser is a pair of index groups `(left, right)`; its distance is
    `|mean(points[left]) - mean(points[right])|`. Named normalisers:
      - `ioc`: outer eye corners (300-W 36/45). The 5-point set has no corners, so its `ioc`
        is the eye-centre distance (what the 5-point literature calls inter-ocular).
      - `ipd`: eye centres / pupils (MCL's normaliser; 68 points: mean of 36-41 vs 42-47).
    The face-box normaliser `sqrt(w * h)` needs the box and lives in `lmjax.eval.metrics`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

IndexGroup = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Schema:
  """One landmark annotation scheme.

  Attributes:
    name: short identifier, e.g. "68".
    names: one name per point; left/right points carry the token "left"/"right".
    flip_perm: horizontal-flip permutation, `new[i] = old[flip_perm[i]]`.
    normalisers: name -> (left index group, right index group).
    clusters: MCL clusters (semantic face parts), or empty when MCL does not define them.
    cluster_names: one name per cluster.
  """

  name: str
  names: tuple[str, ...]
  flip_perm: tuple[int, ...]
  normalisers: dict[str, tuple[IndexGroup, IndexGroup]]
  clusters: tuple[IndexGroup, ...] = ()
  cluster_names: tuple[str, ...] = ()

  def __post_init__(self):
    n = len(self.names)
    if len(self.flip_perm) != n or sorted(self.flip_perm) != list(range(n)):
      raise ValueError(f'schema {self.name}: flip_perm is not a permutation of {n} points')
    if len(self.clusters) != len(self.cluster_names):
      raise ValueError(
        f'schema {self.name}: {len(self.clusters)} clusters but '
        f'{len(self.cluster_names)} cluster names'
      )
    if self.clusters:
      flat = sorted(i for c in self.clusters for i in c)
      if flat != list(range(n)):
        raise ValueError(f'schema {self.name}: clusters must partition the {n} points')

  @property
  def num_points(self) -> int:
    return len(self.names)

  @property
  def mcl_normaliser(self) -> str:
    """The normaliser of the MCL loss and of MCL's reported errors (eye centres)."""
    return 'ipd'

  def cluster_of(self) -> np.ndarray:
    """[K] int array: the cluster index of every point (requires clusters)."""
    if not self.clusters:
      raise ValueError(f'schema {self.name} defines no MCL clusters')
    out = np.empty(self.num_points, np.int32)
    for i, c in enumerate(self.clusters):
      out[list(c)] = i
    return out

  def normaliser_distance(self, points: np.ndarray, kind: str) -> np.ndarray:
    """Normalising distance for `points` [..., K, 2] -> [...] (numpy or jax arrays)."""
    if kind not in self.normalisers:
      raise KeyError(
        f'schema {self.name} has no normaliser {kind!r}; known: {sorted(self.normalisers)}'
      )
    left, right = self.normalisers[kind]
    a = points[..., list(left), :].mean(axis=-2)
    b = points[..., list(right), :].mean(axis=-2)
    return ((a - b) ** 2).sum(axis=-1) ** 0.5


def _range(a: int, b: int) -> IndexGroup:
  """Inclusive integer range as a tuple."""
  return tuple(range(a, b + 1))


def _names_from_pairs(n: int, pairs: dict[str, tuple[int, int]], centre: dict[str, int]):
  """Point names from (left index, right index) pairs plus unpaired centre points."""
  names = [''] * n
  for base, (left, right) in pairs.items():
    names[left], names[right] = f'{base}_left', f'{base}_right'
  for base, i in centre.items():
    names[i] = base
  missing = [i for i, s in enumerate(names) if not s]
  if missing:
    raise ValueError(f'points without a name: {missing}')
  return tuple(names)


# --------------------------------------------------------------------------- 5 points
# MTFL / AFLW-5: left eye centre, right eye centre, nose tip, left / right mouth corner.
FIVE = Schema(
  name='5',
  names=('eye_left', 'eye_right', 'nose_tip', 'mouth_left', 'mouth_right'),
  flip_perm=(1, 0, 2, 4, 3),
  normalisers={'ioc': ((0,), (1,)), 'ipd': ((0,), (1,))},
  clusters=((0,), (1,), (2,), (3, 4)),
  cluster_names=('eye_left', 'eye_right', 'nose', 'mouth'),
)

# --------------------------------------------------------------------------- 29 points
# COFW (LFPW-29 markup).
_COFW_PAIRS = {
  'brow_outer': (0, 1),
  'brow_inner': (2, 3),
  'brow_top': (4, 6),
  'brow_bottom': (5, 7),
  'eye_outer': (8, 9),
  'eye_inner': (10, 11),
  'eye_top': (12, 14),
  'eye_bottom': (13, 15),
  'pupil': (16, 17),
  'nostril': (18, 19),
  'mouth_corner': (22, 23),
}
_COFW_CENTRE = {
  'nose_tip': 20,
  'nose_base': 21,
  'lip_upper_top': 24,
  'lip_upper_bottom': 25,
  'lip_lower_top': 26,
  'lip_lower_bottom': 27,
  'chin': 28,
}
_COFW_FLIP = (
  1, 0, 3, 2, 6, 7, 4, 5, 9, 8, 11, 10, 14, 15, 12, 13, 17, 16, 19, 18, 20, 21, 23, 22,
  24, 25, 26, 27, 28,
)  # fmt: skip
COFW29 = Schema(
  name='29',
  names=_names_from_pairs(29, _COFW_PAIRS, _COFW_CENTRE),
  flip_perm=_COFW_FLIP,
  normalisers={'ioc': ((8,), (9,)), 'ipd': ((16,), (17,))},
  clusters=(
    (0, 2, 4, 5, 8, 10, 12, 13, 16),
    (1, 3, 6, 7, 9, 11, 14, 15, 17),
    _range(18, 21),
    _range(22, 27),
    (28,),
  ),
  cluster_names=('eye_brow_left', 'eye_brow_right', 'nose', 'mouth', 'chin'),
)

# --------------------------------------------------------------------------- 68 points
# The paper's seven clusters of the dense sets (68 points, and 98 by analogy): brow + eye each
# side, nose, mouth, and the contour cut into left, chin and right.
_SEVEN_CLUSTERS = (
  'eye_brow_left',
  'eye_brow_right',
  'nose',
  'mouth',
  'contour_left',
  'chin',
  'contour_right',
)
# iBUG / 300-W markup.
_IBUG_PAIRS = {
  **{f'contour_{k}': (k, 16 - k) for k in range(8)},
  **{f'brow_{k}': (17 + k, 26 - k) for k in range(5)},  # k = 0 is the outer end
  'nose_wing_outer': (31, 35),
  'nose_wing_inner': (32, 34),
  'eye_outer_corner': (36, 45),
  'eye_upper_outer': (37, 44),
  'eye_upper_inner': (38, 43),
  'eye_inner_corner': (39, 42),
  'eye_lower_inner': (40, 47),
  'eye_lower_outer': (41, 46),
  'mouth_corner': (48, 54),
  'lip_upper_1': (49, 53),
  'lip_upper_2': (50, 52),
  'lip_lower_1': (59, 55),
  'lip_lower_2': (58, 56),
  'mouth_inner_corner': (60, 64),
  'lip_upper_inner': (61, 63),
  'lip_lower_inner': (67, 65),
}
_IBUG_CENTRE = {
  'chin': 8,
  'nose_bridge_0': 27,
  'nose_bridge_1': 28,
  'nose_bridge_2': 29,
  'nose_tip': 30,
  'nose_base': 33,
  'lip_upper_top': 51,
  'lip_lower_bottom': 57,
  'lip_upper_inner_centre': 62,
  'lip_lower_inner_centre': 66,
}
IBUG68 = Schema(
  name='68',
  names=_names_from_pairs(68, _IBUG_PAIRS, _IBUG_CENTRE),
  flip_perm=(
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
  ),
  normalisers={'ioc': ((36,), (45,)), 'ipd': (_range(36, 41), _range(42, 47))},
  clusters=(
    _range(17, 21) + _range(36, 41),
    _range(22, 26) + _range(42, 47),
    _range(27, 35),
    _range(48, 67),
    _range(0, 5),
    _range(6, 10),
    _range(11, 16),
  ),
  cluster_names=_SEVEN_CLUSTERS,
)

# --------------------------------------------------------------------------- 98 points
# WFLW markup.
_WFLW_PAIRS = {
  **{f'contour_{k}': (k, 32 - k) for k in range(16)},
  **{f'brow_upper_{k}': (33 + k, 46 - k) for k in range(5)},
  **{f'brow_lower_{k}': (38 + k, 50 - k) for k in range(4)},
  'nose_wing_outer': (55, 59),
  'nose_wing_inner': (56, 58),
  'eye_outer_corner': (60, 72),
  'eye_upper_1': (61, 71),
  'eye_upper_2': (62, 70),
  'eye_upper_3': (63, 69),
  'eye_inner_corner': (64, 68),
  'eye_lower_1': (65, 75),
  'eye_lower_2': (66, 74),
  'eye_lower_3': (67, 73),
  'mouth_corner': (76, 82),
  'lip_upper_1': (77, 81),
  'lip_upper_2': (78, 80),
  'lip_lower_1': (87, 83),
  'lip_lower_2': (86, 84),
  'mouth_inner_corner': (88, 92),
  'lip_upper_inner': (89, 91),
  'lip_lower_inner': (95, 93),
  'pupil': (96, 97),
}
_WFLW_CENTRE = {
  'chin': 16,
  'nose_bridge_0': 51,
  'nose_bridge_1': 52,
  'nose_bridge_2': 53,
  'nose_tip': 54,
  'nose_base': 57,
  'lip_upper_top': 79,
  'lip_lower_bottom': 85,
  'lip_upper_inner_centre': 90,
  'lip_lower_inner_centre': 94,
}
_WFLW_FLIP = (
  *range(32, -1, -1),                                                       # contour
  46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38,  # brows
  51, 52, 53, 54, 59, 58, 57, 56, 55,                                       # nose
  72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65,           # eyes
  *range(82, 75, -1), 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93,  # mouth
  97, 96,                                                                   # pupils
)  # fmt: skip
WFLW98 = Schema(
  name='98',
  names=_names_from_pairs(98, _WFLW_PAIRS, _WFLW_CENTRE),
  flip_perm=_WFLW_FLIP,
  normalisers={'ioc': ((60,), (72,)), 'ipd': ((96,), (97,))},
  # MCL's seven 68-point clusters carried over part by part (WFLW is the 68-point markup with
  # denser contour, brows and eyes plus the two pupils): each brow with its eye and pupil, the
  # nose, the mouth, and the contour cut where the 68-point one is (68-point contour point j
  # is WFLW point 2j, so chin 6-10 becomes 12-20; the in-between points 11 and 21 go to the
  # side contours, which keeps the clusters mirror images of each other).
  clusters=(
    _range(33, 41) + _range(60, 67) + (96,),
    _range(42, 50) + _range(68, 75) + (97,),
    _range(51, 59),
    _range(76, 95),
    _range(0, 11),
    _range(12, 20),
    _range(21, 32),
  ),
  cluster_names=_SEVEN_CLUSTERS,
)

# --------------------------------------------------------------------------- AFLW
# AFLW-21: brows (3 each), eyes (corner, centre, corner), ears, nose (3), mouth (3), chin.
_AFLW21_PAIRS = {
  'brow_outer': (0, 5),
  'brow_centre': (1, 4),
  'brow_inner': (2, 3),
  'eye_outer_corner': (6, 11),
  'eye_centre': (7, 10),
  'eye_inner_corner': (8, 9),
  'ear': (12, 16),
  'nose_wing': (13, 15),
  'mouth_corner': (17, 19),
}
AFLW21 = Schema(
  name='21',
  names=_names_from_pairs(21, _AFLW21_PAIRS, {'nose_tip': 14, 'mouth_centre': 18, 'chin': 20}),
  flip_perm=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 16, 15, 14, 13, 12, 19, 18, 17, 20),
  normalisers={'ioc': ((6,), (11,)), 'ipd': ((7,), (10,))},
)
# AFLW-19: AFLW-21 without the two ears.
_AFLW19_PAIRS = {
  **{k: v for k, v in _AFLW21_PAIRS.items() if k != 'ear'},
  'nose_wing': (12, 14),
  'mouth_corner': (15, 17),
}
AFLW19 = Schema(
  name='19',
  names=_names_from_pairs(19, _AFLW19_PAIRS, {'nose_tip': 13, 'mouth_centre': 16, 'chin': 18}),
  flip_perm=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 14, 13, 12, 17, 16, 15, 18),
  normalisers={'ioc': ((6,), (11,)), 'ipd': ((7,), (10,))},
  # MCL's clusters by analogy with the 29-point (COFW) ones: each brow with its eye, the nose,
  # the mouth, the chin.
  clusters=((0, 1, 2, 6, 7, 8), (3, 4, 5, 9, 10, 11), (12, 13, 14), (15, 16, 17), (18,)),
  cluster_names=('eye_brow_left', 'eye_brow_right', 'nose', 'mouth', 'chin'),
)

SCHEMAS: dict[str, Schema] = {s.name: s for s in (FIVE, AFLW19, AFLW21, COFW29, IBUG68, WFLW98)}


def get_schema(num_points: int | str) -> Schema:
  """Schema for a landmark count (5, 19, 21, 29, 68, 98)."""
  key = str(num_points)
  if key not in SCHEMAS:
    raise KeyError(f'no landmark schema with {num_points} points; known: {sorted(SCHEMAS)}')
  return SCHEMAS[key]


def five_from_68(points: np.ndarray) -> np.ndarray:
  """5-point labels derived from 68 points: eye centres, nose tip, mouth corners.

  Args:
    points: [..., 68, 2] coordinates (numpy or jax).

  Returns:
    [..., 5, 2] in the `FIVE` order (image-left eye first).
  """
  eye_l = points[..., 36:42, :].mean(axis=-2)
  eye_r = points[..., 42:48, :].mean(axis=-2)
  xp = np if isinstance(points, np.ndarray) else jnp
  return xp.stack(
    [eye_l, eye_r, points[..., 30, :], points[..., 48, :], points[..., 54, :]], axis=-2
  )
