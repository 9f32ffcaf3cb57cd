"""Run-directory safety: start-up checks, one run per workdir, and the config history.

  check_settings   one-line errors for settings that cannot work, before any data is loaded:
                   a `--workdir` that is a file, log/checkpoint intervals <= 0, negative steps,
                   every stage at 0 steps, a `--config.x.y` override naming no field
  lock             an exclusive `fcntl.flock` on `<workdir>/.lock` (pid and host written in
                   it), held until the process exits: the OS releases it even after kill -9,
                   so a second run in the same workdir is refused while the first one lives
                   (local workdirs only: object stores have no locks)
  record_config    `<workdir>/config.json` is the config in effect and
                   `<workdir>/configs/NNNN_<time>.json` the config of every invocation; a
                   changed config is refused once the workdir has checkpoints or finished
                   stages, unless `allow_change` (`--allow_config_change`) says to continue
                   with it

`UserError` is a mistake the user can fix from its one-line message; `lmjax.main` prints it as
`error: <message>` and exits 1, without a traceback.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from lmjax.core import paths

LOCK_FILE = '.lock'
CONFIG_FILE = 'config.json'
HISTORY_DIR = 'configs'
STAGES_FILE = 'stages.json'  # lmjax.train.stages.STAGES_FILE (not imported: no cycle)
# Fields that do not change what is trained: how often to log / checkpoint, where to stop
# (a run continued past its `stop_after`), how many CPU devices split the batch, and the batch
# size of the (padded) evaluations. A change of these alone is accepted on a re-run.
IGNORED_FIELDS = ('log_every', 'checkpoint_every', 'stop_after', 'cpu_devices', 'eval_batch_size')

_held: list[int] = []  # lock file descriptors, open until the process exits


class UserError(Exception):
  """A setting or run-directory mistake, reported as one line (`error: ...`) and exit 1."""


def check_settings(config: Any, workdir: str) -> None:
  """Raises `UserError` for settings that cannot give a useful run (see the module doc)."""
  if epath.Path(workdir).exists() and not epath.Path(workdir).is_dir():
    raise UserError(f'--workdir={workdir} is an existing file; expected a directory')
  for field in ('log_every', 'checkpoint_every'):
    value = config.get(field)
    if value is not None and value <= 0:
      raise UserError(f'--config.{field}={value}: expected a positive number of steps')
  steps = {
    f'config.stages.{name}.steps': stage.steps
    for name, stage in (config.get('stages') or {}).items()
    if hasattr(stage, 'get') and stage.get('steps') is not None
  }
  for name, value in steps.items():
    if value < 0:
      raise UserError(f'--{name}={value}: expected steps >= 0')
  if steps and not any(steps.values()):
    raise UserError(
      f'every stage has 0 steps ({", ".join(steps)}): nothing would be trained; '
      'set at least one stage steps > 0'
    )


def unknown_field_message(error: Exception, argv: Sequence[str]) -> str | None:
  """`--config.a.b: no such field b (did you mean c?)` for ml_collections' missing-field
  error raised while parsing `argv`; None for any other error."""
  text = str(error.args[0]) if error.args else str(error)
  text = text.strip('\'"').replace('\\n', '\n').replace("\\'", "'")
  match = re.match(r"'?([^'\n]+)'?", text)
  if match is None:
    return None
  field = match.group(1)
  hint = re.search(r'Did you mean "([^"]+)"', text)
  for arg in argv:
    name = arg.split('=', 1)[0]
    if name.startswith('--config.') and field in name[len('--config.') :].split('.'):
      suggestion = f' (did you mean {hint.group(1)}?)' if hint else ''
      return f'{name}: no such field {field}{suggestion}'
  return None


def lock(workdir: str) -> int | None:
  """Takes `<workdir>/.lock` for this process (until it exits); returns the descriptor.

  Raises `UserError` naming the holder's pid and host when another process holds it.
  Remote workdirs (`scheme://`) are not locked: returns None.
  """
  if paths.is_remote(workdir):
    return None
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = [*os.read(fd, 256).decode(errors='replace').split(), '?', '?'][:2]
    os.close(fd)
    raise UserError(
      f'{workdir} is in use by another run (pid {holder[0]} on {holder[1]}, lock {path}); '
      'wait for it to end or stop it, or use another --workdir'
    ) from None
  os.ftruncate(fd, 0)
  os.write(fd, f'{os.getpid()} {socket.gethostname()}\n'.encode())
  _held.append(fd)
  return fd


def unlock(fd: int) -> None:
  """Releases a lock taken by `lock` (the process exiting does the same)."""
  if fd in _held:
    _held.remove(fd)
  os.close(fd)


def has_results(workdir: str) -> bool:
  """Whether `workdir` holds finished stages or any training checkpoint."""
  workdir = epath.Path(workdir)
  if (workdir / STAGES_FILE).is_file():
    return True
  ckpt = workdir / 'ckpt'
  if not ckpt.is_dir():
    return False
  for folder in ckpt.iterdir():
    if folder.is_dir() and any(entry.name.isdigit() for entry in folder.iterdir()):
      return True
  return False


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """Dotted names of the fields that differ (added, removed or changed), minus
  `IGNORED_FIELDS`."""
  a, b = _flatten(old), _flatten(new)
  names = sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
  return [k for k in names if k not in IGNORED_FIELDS]


def record_config(workdir: str, config_json: str, *, allow_change: bool, write: bool = True):
  """Compares the invocation's config with `config.json`, then records it; returns the
  changed fields.

  Raises `UserError` listing the changed fields when the workdir has results and not
  `allow_change`. `write` False (processes other than 0) only checks.
  """
  new = json.loads(config_json)
  path = epath.Path(workdir) / CONFIG_FILE
  changed = []
  if path.is_file():
    changed = changed_fields(json.loads(path.read_text(encoding='utf-8')), new)
  if changed and has_results(workdir) and not allow_change:
    raise UserError(
      f'{workdir} was trained with another config ({path}); changed: {", ".join(changed)}; '
      'use the same config, another --workdir, or --allow_config_change to continue with it'
    )
  if write:
    history = epath.Path(workdir) / HISTORY_DIR
    history.mkdir(parents=True, exist_ok=True)
    count = sum(entry.name.endswith('.json') for entry in history.iterdir())
    stamp = time.strftime('%Y%m%d-%H%M%S')
    paths.write_atomic(history / f'{count + 1:04d}_{stamp}.json', config_json)
    paths.write_atomic(path, config_json)
  return changed


_MISSING = object()


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(tree, Mapping):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(_flatten(value, f'{prefix}{key}' if not prefix else f'{prefix}.{key}'))
  return out
