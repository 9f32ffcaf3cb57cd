"""Parsing of config-file arguments: `configs/mcl68.py:runlocal,data=synthetic`.

Imports only ml_collections, so config files stay cheap to load.
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses `'a,b=1,c=x'` into a ConfigDict typed like `defaults`.

  A bare name sets a boolean flag to True. Values are converted to the type of the default
  (bool accepts true/false/1/0). Unknown names are an error, listing the known ones.
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
      out[key] = type(default)(value)
  return out
