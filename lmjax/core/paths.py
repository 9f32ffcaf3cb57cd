"""The one path layer for run folders and model folders: local paths and remote URIs.

Every file lmjax writes into a workdir or a model folder (config.json and its history,
metrics.jsonl, stages.json, logs, commands.txt, model folders, checkpoints) goes through
`etils.epath`, so a workdir may be a local folder or a URI of any scheme epath knows
(`gs://` through gcsfs or TensorFlow's gfile, `s3://` through s3fs, `az://`, `hf://`).
epath is kept rather than fsspec directly: orbax takes its paths, and its local backend is
plain `os` calls.

Object stores have no append, no rename of folders and no file locks, so:

  append_text     local: appends; remote: rewrites the object with the text added
  write_atomic    local: temporary file + rename; remote: one object write (atomic there)
  local_mirror    a local folder that stands in for a remote one where a library can only
                  write locally: absl's log file, and orbax on schemes other than gs://
                  (orbax writes local paths and gs:// itself, through TensorStore)
  copy_tree       a folder copy between any two locations (files only; no symlinks)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from etils import epath

MIRROR_ENV = 'LMJAX_MIRROR_DIR'  # where local mirrors of remote folders live


def absolute(path: str | os.PathLike) -> epath.Path:
  """`path` with a local path made absolute (orbax requires it)."""
  if is_remote(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(os.fspath(path)))


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is a URI (`scheme://...`) rather than a local path."""
  return '://' in os.fspath(path)


def orbax_writes(path: str | os.PathLike) -> bool:
  """Whether orbax reads and writes `path` itself: local paths and `gs://` (TensorStore's
  own GCS driver). Other schemes are checkpointed through a `local_mirror`."""
  return not is_remote(path) or os.fspath(path).startswith('gs://')


def local_mirror(path: str | os.PathLike) -> epath.Path:
  """The local folder standing in for remote folder `path` (`path` itself when local).

  `$LMJAX_MIRROR_DIR/<scheme>/<rest of the URI>` (default root `~/.cache/lmjax/mirror`);
  a URI part that is not a plain name is replaced by a hash, so the mirror stays inside
  the root.
  """
  if not is_remote(path):
    return absolute(path)
  root = os.environ.get(MIRROR_ENV) or os.path.join('~', '.cache', 'lmjax', 'mirror')
  scheme, rest = os.fspath(path).split('://', 1)
  parts = [_safe_part(p) for p in [scheme, *rest.split('/')] if p]
  return epath.Path(os.path.abspath(os.path.expanduser(root))).joinpath(*parts)


def _safe_part(part: str) -> str:
  if part in ('.', '..') or not part.replace('-', '').replace('_', '').replace('.', '').isalnum():
    return hashlib.sha1(part.encode()).hexdigest()[:12]
  return part


def append_text(path: str | os.PathLike, text: str) -> None:
  """Appends `text` to the file `path` (created if missing)."""
  path = epath.Path(path)
  if not is_remote(path):
    with path.open('a', encoding='utf-8') as f:
      f.write(text)
    return
  before = path.read_text(encoding='utf-8') if path.exists() else ''
  path.write_text(before + text, encoding='utf-8')


def write_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes the file `path` so that a reader sees the old or the new text, never a part."""
  path = epath.Path(path)
  if is_remote(path):
    path.write_text(text, encoding='utf-8')
    return
  partial = path.with_name(path.name + '.tmp')
  partial.write_text(text, encoding='utf-8')
  partial.replace(path)


def files(folder: str | os.PathLike) -> Iterator[epath.Path]:
  """Every file under `folder`, depth first (`iterdir`, which all epath backends share:
  `walk` yields scheme-less paths on fsspec backends)."""
  for entry in sorted(epath.Path(folder).iterdir()):
    if entry.is_dir():
      yield from files(entry)
    else:
      yield entry


def copy_tree(source: str | os.PathLike, dest: str | os.PathLike) -> None:
  """Copies folder `source` to `dest` (replacing a `dest` that exists), between any schemes."""
  source, dest = epath.Path(source), epath.Path(dest)
  if dest.exists():
    dest.rmtree()
  dest.mkdir(parents=True, exist_ok=True)
  for item in files(source):
    target = dest.joinpath(*item.relative_to(source).parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(source) or is_remote(dest):
      target.write_bytes(item.read_bytes())  # across backends: epath's copy needs one
    else:
      item.copy(target, overwrite=True)


def tree_size(folder: str | os.PathLike) -> int:
  """Bytes in the files under `folder`."""
  return sum(item.stat().length for item in files(folder))
