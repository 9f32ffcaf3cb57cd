"""Shared parts of the experiment configs: argument strings, dataset names, the data block.

Config files import only ml_collections and their sibling config files. `config_flags` loads a
config file by path (`SourceFileLoader`), not as a module of a package, from any working
directory; so a config file loads its siblings by path too, e.g. in `configs/mcl.py`:

    path = str(pathlib.Path(__file__).parent / 'common.py')
    common = types.SimpleNamespace(**runpy.run_path(path))

The datasets themselves (tfds name, default folder, builder config per landmark count,
validation split) live in `lmjax/data/datasets/table.py`; a config names the dataset and leaves
those fields at None ("the table's value", resolved at run time), or overrides them:
`--config.data.manual_dir=/path/to/300w`.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# Landmark counts of each dataset a config can name (those of the dataset table; a test keeps
# the two equal).
POINTS = {
  '300w': (68,),
  'mtfl': (5,),
  'cofw': (29,),
  'wflw': (98,),
  'aflw19': (19,),
  'synthetic': (68, 5),
}


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a config argument string `'a,b=1,c=x'` into a ConfigDict typed like `defaults`.

  A bare name sets a boolean to True. Values are converted to the type of the default (a bool
  accepts true/false/1/0).

  Raises:
    ValueError: an unknown name (the message lists the known ones) or a value of the wrong type.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}; known: {sorted(defaults)}')
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f'config argument {key!r} needs a value ({key}=...)')
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'config argument {key}={value!r}: expected true/false')
      out[key] = value.lower() in ('true', '1')
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(
          f'config argument {key}={value!r}: expected {type(default).__name__}'
        ) from None
  return out


def check_data(data: str, num_points: int, known=tuple(POINTS)) -> None:
  """Raises a one-line ValueError unless dataset `data` (one of `known`) has `num_points`."""
  if data not in known:
    raise ValueError(f'unknown data={data!r}; known: {sorted(known)}')
  if num_points not in POINTS[data]:
    counts = ' or '.join(map(str, POINTS[data]))
    raise ValueError(f'data={data} has {counts} landmarks, not {num_points}')


def data_config(data: str, num_points: int) -> dict:
  """The `config.data` block naming dataset `data` (validated for `num_points` landmarks).

  The None fields take the dataset table's value at run time (`lmjax.data.datasets.table`):
  manual_dir (folder of the official files), builder_config, val_split ('' = carve
  `num_validation` faces out of train) and num_validation.
  """
  check_data(data, num_points)
  return dict(
    name=data,
    manual_dir=config_dict.placeholder(str),
    data_dir='',  # where prepared datasets live ('' = $LMJAX_DATA_DIR or ~/.cache/lmjax/tfds)
    builder_config=config_dict.placeholder(str),
    train_split='train',
    val_split=config_dict.placeholder(str),
    num_validation=config_dict.placeholder(int),
    split_seed=0,
    # Yaw-balanced sampling of the training faces (lmjax.data.balance): sampling weight
    # ∝ share of the face's yaw bin ** -pose_balance; 0 = uniform (the papers), 1 = equal bins.
    pose_balance=0.0,
    # synthetic only: split sizes (0 keeps the builder's defaults)
    synthetic_train=0,
    synthetic_validation=0,
  )
