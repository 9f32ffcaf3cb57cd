"""Dataset registry: names, aliases, building and random-access loading of tfds builders.

    source = lmjax.data.datasets.load('300w', 'train', manual_dir='../shared/data/300w')
    example = lmjax.data.datasets.decode(source[0])   # numpy dict, image_id as str

Building never needs TensorFlow: builders store encoded images in array_record files and
`load` returns `tfds.data_source` random-access readers. A prepared dataset remembers a
content fingerprint of its manual directory (the bytes of every annotation file; path, size and
modification time of every image) and is rebuilt, with a warning naming the folder, when it
changes. What training needs to know about each dataset a config can name (default folder,
builder config per landmark count, validation split) is the table in
`lmjax.data.datasets.table`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from lmjax.data.datasets.common import DatasetFormatError

__all__ = [
  'DatasetFormatError',
  'canonical_name',
  'decode',
  'get_builder',
  'load',
  'load_split',
  'schema_of',
]

# tfds name -> module defining the builder.
MODULES = {
  'the300w': 'lmjax.data.datasets.the300w',
  'the300vw': 'lmjax.data.datasets.the300vw',
  'mtfl': 'lmjax.data.datasets.mtfl',
  'synthetic': 'lmjax.data.datasets.synthetic',
  'cofw': 'lmjax.data.datasets.cofw',
  'wflw': 'lmjax.data.datasets.wflw',
  'aflw2000_3d': 'lmjax.data.datasets.aflw2000_3d',
  'aflw19': 'lmjax.data.datasets.aflw19',
  'afw_multiface': 'lmjax.data.datasets.afw_multiface',
  'composite_multiface': 'lmjax.data.datasets.composite',
  'fddb': 'lmjax.data.datasets.fddb',
}
ALIASES = {
  '300w': 'the300w',
  '300-w': 'the300w',
  '300vw': 'the300vw',
  '300-vw': 'the300vw',
  'aflw2000': 'aflw2000_3d',
  'aflw2000-3d': 'aflw2000_3d',
  'aflw-19': 'aflw19',
}


def canonical_name(name: str) -> str:
  """tfds name of a dataset, accepting CLI aliases such as `300w`."""
  key = ALIASES.get(name.lower(), name.lower())
  if key not in MODULES:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(MODULES) + sorted(ALIASES)}')
  return key


def _module(name: str):
  return importlib.import_module(MODULES[canonical_name(name)])


def default_data_dir() -> str:
  """Where prepared datasets are written: $LMJAX_DATA_DIR or ~/.cache/lmjax/tfds."""
  return os.environ.get('LMJAX_DATA_DIR', os.path.expanduser('~/.cache/lmjax/tfds'))


def get_builder(
  name: str, *, config: str | tfds.core.BuilderConfig | None = None, data_dir: str | None = None
) -> tfds.core.DatasetBuilder:
  """Instantiates the builder of `name` writing array_record files under `data_dir`."""
  module = _module(name)
  cls = next(
    v
    for v in vars(module).values()
    if isinstance(v, type)
    and issubclass(v, tfds.core.GeneratorBasedBuilder)
    and v.__module__ == module.__name__
  )
  return cls(config=config, data_dir=data_dir or default_data_dir(), file_format='array_record')


def load(
  name: str,
  split: str,
  *,
  manual_dir: str | None = None,
  data_dir: str | None = None,
  config: str | tfds.core.BuilderConfig | None = None,
) -> Sequence[Mapping[str, Any]]:
  """Prepares `name` if needed and returns a random-access source of `split`.

  Args:
    name: dataset name or alias (`300w`, `300vw`, `mtfl`, `cofw`, `wflw`, `aflw2000`, `aflw19`,
      `synthetic`, `afw_multiface`, `fddb`, ...).
    split: split name, e.g. `train`, `common`, `test`.
    manual_dir: folder with the official files (datasets that need one).
    data_dir: where prepared datasets live (default `default_data_dir()`).
    config: builder config name or object.

  Raises:
    DatasetFormatError: the manual directory or the files of `split` are missing.
  """
  module = _module(name)
  builder = get_builder(name, config=config, data_dir=data_dir)
  manual = bool(getattr(module, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))
  if manual:
    if not manual_dir or not os.path.isdir(manual_dir):
      raise DatasetFormatError(
        f'dataset {name!r} reads the official files from a manual directory, but '
        f'{manual_dir!r} is not a directory.\n{module.MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    module.check_split(manual_dir, split, builder.builder_config)
  # One process prepares a dataset at a time: a second run started meanwhile waits, then finds
  # it prepared (two concurrent builds of one folder fail in tfds' final rename).
  with _preparing(builder):
    builder = get_builder(name, config=config, data_dir=data_dir)  # as another run left it
    download_config = tfds.download.DownloadConfig()
    if manual:
      reason = _stale_reason(builder, split, module.fingerprint(manual_dir), manual_dir)
      stale = reason is not None
      if stale:
        logging.warning(
          'dataset %s (config %s) in %s: %s; rebuilding.',
          name,
          builder.builder_config.name if builder.builder_config else None,
          os.fspath(builder.data_path),
          reason,
        )
      mode = tfds.download.GenerateMode
      download_config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        download_mode=mode.REUSE_CACHE_IF_EXISTS if stale else mode.REUSE_DATASET_IF_EXISTS,
      )
    builder.download_and_prepare(download_config=download_config)
  if split not in builder.info.splits:
    raise DatasetFormatError(
      f'dataset {name!r} has no split {split!r}; prepared splits: {sorted(builder.info.splits)}'
    )
  return builder.as_data_source(split=split)


VALIDATION = 'validation'


def load_split(name: str, split: str, **kwargs) -> Sequence[Mapping[str, Any]]:
  """`load`, plus the split `validation` of datasets that have none (300-W, MTFL, COFW, WFLW,
  AFLW-19), and the splits that are views of a stored one (FDDB's `fold_01` .. `fold_10`:
  `fddb.fold_indices` of `test`).

  There, `validation` is the faces `lmjax.main` holds out of `train`
  (`table.held_out_split`, seed 0, the table's `num_validation`), so evaluating it reproduces
  the validation figures of a run's `stages.json` and a model card. Keyword arguments are
  `load`'s.
  """
  from lmjax.data.datasets import table

  module = _module(name)
  if split in getattr(module, 'FOLD_SPLITS', {}):
    source = load(name, module.SPLIT, **kwargs)
    return _Subset(source, module.fold_indices(source, split))
  entry = table.TABLE.get(name) or table.TABLE.get(canonical_name(name))
  carves = entry is not None and not entry.val_split
  if split != VALIDATION or not carves:
    try:
      return load(name, split, **kwargs)
    except DatasetFormatError as e:
      if carves and 'no split' in str(e):
        raise DatasetFormatError(
          f"{e} (or '{VALIDATION}': the faces lmjax.main holds out of 'train')"
        ) from None
      raise
  return held_out(name, **kwargs)[1]


def held_out(
  name: str, **kwargs
) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
  """(the training faces `lmjax.main` trains on, the validation faces it holds out) of a dataset
  whose validation faces are carved out of `train` (`table.held_out_split`, seed 0, the table's
  `num_validation`), as data sources. Keyword arguments are `load`'s."""
  from lmjax.data.datasets import table

  entry = table.TABLE.get(name) or table.TABLE.get(canonical_name(name))
  if entry is None or entry.val_split:
    raise ValueError(f'{name}: its validation faces are not carved out of train')
  source = load(name, 'train', **kwargs)
  ids = [str(decode(source[i])['image_id']) for i in range(len(source))]
  train, validation = table.held_out_split(ids, entry.num_validation)
  return _Subset(source, train), _Subset(source, validation)


class _Subset:
  """The examples of a data source at `index`, as a data source (len, [], dataset_info)."""

  def __init__(self, source: Any, index: np.ndarray):
    self.source, self.index = source, index
    self.dataset_info = source.dataset_info

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> Any:
    return self.source[int(self.index[i])]


@contextlib.contextmanager
def _preparing(builder: tfds.core.DatasetBuilder) -> Iterator[None]:
  """An exclusive lock (`flock`) on `<builder folder>/prepare.lock` while inside (none in a
  read-only data folder: nothing can be prepared there anyway)."""
  folder = os.path.dirname(os.fspath(builder.data_path))
  try:
    os.makedirs(folder, exist_ok=True)
    f = open(os.path.join(folder, 'prepare.lock'), 'a')  # noqa: SIM115 (closed below)
  except OSError:
    yield
    return
  with f:
    if not _try_lock(f):
      logging.info('%s: another process is preparing it; waiting', folder)
      fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _try_lock(f) -> bool:
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  return True


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  return os.path.isfile(os.path.join(os.fspath(builder.data_path), 'dataset_info.json'))


def _stale_reason(
  builder: tfds.core.DatasetBuilder, split: str, fingerprint: str, manual_dir: str
) -> str | None:
  """Why a prepared dataset must be rebuilt, or None when it is missing or up to date.

  The builders' `fingerprint(manual_dir)` hashes the bytes of every annotation file and the
  path, size and modification time of every image (`common.fingerprint_files`).
  """
  if not _is_prepared(builder):
    return None
  old = builder.info.metadata.get('fingerprint')
  if old != fingerprint:
    return (
      f'the files in {manual_dir} changed since it was prepared (an annotation file was '
      f'edited or images were added, removed or modified; fingerprint was {old!r}, now '
      f'{fingerprint!r})'
    )
  if split not in builder.info.splits:
    return f'split {split!r} was not prepared (prepared: {sorted(builder.info.splits)})'
  return None


def schema_of(source: Sequence[Mapping[str, Any]]):
  """The landmark schema of a loaded source (from its feature spec)."""
  from lmjax.core import landmarks

  features = source.dataset_info.features
  spec = features['faces'] if 'faces' in features else features  # noqa: SIM401
  return landmarks.get_schema(spec['landmarks'].shape[0])


def decode(example: Mapping[str, Any], num_points: int | None = None) -> dict[str, Any]:
  """A data-source example as plain numpy: `image_id` str, `faces` as stacked arrays.

  Args:
    example: one item of a source returned by `load`.
    num_points: landmark count, needed only to shape the arrays of a scene without faces.

  Returns:
    The example with `faces` (multi-face scenes) as {landmarks [F, K, 2], visible [F, K],
    bbox [F, 4]}.
  """
  out = dict(example)
  if isinstance(out.get('image_id'), bytes):
    out['image_id'] = out['image_id'].decode('utf-8')
  if 'faces' in out:
    faces = out['faces']
    if len(faces['bbox']):
      out['faces'] = {k: np.stack(v) for k, v in faces.items()}
    else:
      k = num_points or 0
      out['faces'] = {
        'landmarks': np.zeros((0, k, 2), np.float32),
        'visible': np.zeros((0, k), np.bool_),
        'bbox': np.zeros((0, 4), np.float32),
      }
  return out
