"""Warm starts: a run's first stage starts from a published model folder (`config.init_from`).

    variables = warm_start.apply(fresh_variables, 'pretrained/mcl68')

Every leaf of the fresh variables (params and BatchNorm statistics, named `params/conv11/kernel`
and so on) takes the model folder's value when the folder has a leaf of the same name and
shape. The one surgery on names: a multi-head MCL target whose heads the source lacks
(`heads/3/...`) starts from the source's head 0, as the multi-center stages do. Whatever does not
match keeps its fresh value; the log lists what was loaded, what is new and what was dropped,
so a width or landmark-count change is visible at once. A folder that matches nothing is an
error, not a silent fresh start.

Training then accumulates across sessions: each run starts from the last published model with a
fresh schedule, and `python -m lmjax.model_card` records the chain of runs.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from absl import logging

from lmjax.train import checkpoint, surgery

_HEAD = re.compile(r'^(params|batch_stats)/heads/(\d+)/')


def match(target: dict[str, Any], source: dict[str, Any]) -> tuple[dict[str, Any], dict]:
  """(`target` with the matching leaves of `source`, {'loaded', 'new', 'dropped': names}).

  Args:
    target: fresh variables, e.g. {'params': ..., 'batch_stats': ...}.
    source: the variables of a model folder.
  """
  t, s = surgery.flatten(target), surgery.flatten(source)
  out, loaded, new = {}, [], []
  used = set()
  for name, value in t.items():
    candidate = name if name in s else _HEAD.sub(r'\1/heads/0/', name)
    if candidate in s and np.shape(s[candidate]) == np.shape(value):
      out[name] = np.asarray(s[candidate], np.asarray(value).dtype)
      loaded.append(name)
      used.add(candidate)
    else:
      out[name] = value
      new.append(name)
  dropped = [n for n in s if n not in used]
  return surgery.unflatten(out), {'loaded': loaded, 'new': new, 'dropped': dropped}


def apply(target: dict[str, Any], directory: str) -> dict[str, Any]:
  """`target` variables warm-started from the model folder `directory` (see the module doc).

  Raises:
    ValueError: nothing in `directory` matches `target` by name and shape.
  """
  _, source, spec = checkpoint.load_model(directory)
  variables, report = match(target, jax.device_get(source))
  if not report['loaded']:
    raise ValueError(
      f'config.init_from={directory}: none of its {len(report["dropped"])} arrays matches the '
      f'model by name and shape (its model.json: {spec["experiment"]}, '
      f'{spec.get("num_points", "?")} points); expected a folder of the same model family'
    )
  logging.info(
    'warm start from %s: loaded %d arrays, new %d%s, dropped %d%s',
    directory,
    len(report['loaded']),
    len(report['new']),
    _names(report['new']),
    len(report['dropped']),
    _names(report['dropped']),
  )
  return variables


def _names(names: list[str], most: int = 8) -> str:
  if not names:
    return ''
  shown = ', '.join(names[:most]) + (
    f', ... ({len(names) - most} more)' if len(names) > most else ''
  )
  return f' ({shown})'
