"""The dataset table: what training needs to know about each dataset a config can name.

A config's `data` block names a dataset (`config.data.name`) and holds overrides; the fields it
leaves at None are filled from this table at run time by `resolve`:

    data = table.resolve(config.data, config.model.num_points)
    source = datasets.load(data.name, data.train_split, manual_dir=data.manual_dir or None, ...)

The module imports no builder; the configs in `configs/` name these datasets (and
`configs/common.py` lists their landmark counts, checked against this table by a test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ml_collections
import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
  """Defaults of one dataset.

  Attributes:
    tfds_name: name (or alias) for `lmjax.data.datasets.load`.
    manual_dir: default folder of the official files ('' = the builder needs none).
    builder_configs: landmark count -> tfds builder config ('' = the builder's default); its
      keys are the landmark counts the dataset offers.
    val_split: validation split, or '' to carve `num_validation` faces out of `train`.
    num_validation: faces held out of `train` when `val_split` is ''.
    tight_box: landmark counts whose protocol face box is the tight box of those very points
      (so re-deriving it after a rotation is right: MCL's `aug.rebox`).
  """

  tfds_name: str
  manual_dir: str
  builder_configs: Mapping[int, str]
  val_split: str
  num_validation: int
  tight_box: tuple[int, ...] = ()


TABLE: dict[str, Entry] = {
  '300w': Entry('300w', 'data/300w', {68: ''}, '', 200, tight_box=(68,)),
  'mtfl': Entry('mtfl', 'data/mtfl', {5: ''}, '', 500),
  'cofw': Entry('cofw', 'data/cofw', {29: ''}, '', 100),
  'wflw': Entry('wflw', 'data/wflw', {98: ''}, '', 500),
  'aflw19': Entry('aflw19', 'data/aflw', {19: ''}, '', 500),
  'synthetic': Entry('synthetic', '', {68: 'face68', 5: 'face5'}, 'validation', 0, (68,)),
}

# `config.data` fields that default to the table (None in a config = "the table's value").
TABLE_FIELDS = ('manual_dir', 'builder_config', 'val_split', 'num_validation')


def entry(name: str) -> Entry:
  """The table entry of dataset `name`.

  Raises:
    ValueError: `name` is not in the table.
  """
  if name not in TABLE:
    raise ValueError(f'config.data.name: unknown dataset {name!r}; expected one of {sorted(TABLE)}')
  return TABLE[name]


def resolve(data: Mapping, num_points: int) -> ml_collections.ConfigDict:
  """A copy of a config's `data` block with every None field taken from the table.

  Args:
    data: `config.data` (a ConfigDict or a plain mapping) naming the dataset in `name`.
    num_points: the model's landmark count (selects the builder config).

  Returns:
    An unlocked ConfigDict with the same fields, none of them None.

  Raises:
    ValueError: unknown dataset, or one without `num_points` landmarks.
  """
  e = entry(data['name'])
  if num_points not in e.builder_configs:
    raise ValueError(
      f'config.data.name: dataset {data["name"]!r} has {_counts(e)} landmarks, but '
      f'config.model.num_points is {num_points}'
    )
  defaults = {
    'manual_dir': e.manual_dir,
    'builder_config': e.builder_configs[num_points],
    'val_split': e.val_split,
    'num_validation': e.num_validation,
  }
  items = data.to_dict() if isinstance(data, ml_collections.ConfigDict) else dict(data)
  filled = {k: defaults[k] if v is None and k in defaults else v for k, v in items.items()}
  return ml_collections.ConfigDict({**filled, **{k: defaults[k] for k in defaults.keys() - filled}})


def _counts(e: Entry) -> str:
  return ' or '.join(str(k) for k in sorted(e.builder_configs))


def held_out_split(
  image_ids: list[str], num_validation: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation) sorted indices when `num_validation` faces are carved out of a split.

  Faces are ordered by image id before shuffling, so the split depends only on the set of
  faces and the seed, not on the order tfds stored them in. The training caches and the
  composite multi-face builder (which pastes exactly the held-out faces) share this rule.
  """
  n = len(image_ids)
  if not 0 < num_validation < n:
    raise ValueError(f'num_validation must be in (0, {n}), got {num_validation}')
  order = np.argsort(np.asarray(image_ids))
  perm = order[np.random.default_rng(seed).permutation(n)]
  return np.sort(perm[num_validation:]), np.sort(perm[:num_validation])
