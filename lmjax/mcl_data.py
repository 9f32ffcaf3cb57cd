"""Training / validation face-region caches for a face-crop experiment (MCL; BB-FCN later)."""

from __future__ import annotations

import os

import ml_collections
from absl import logging

from lmjax import datasets, input_pipeline


def missing_data_message(config: ml_collections.ConfigDict) -> str:
  """What to do when the configured dataset is not on disk."""
  return (
    f'dataset {config.data.name!r} expects its official files in '
    f'{os.path.abspath(config.data.manual_dir)!r} (set --config.data.manual_dir=DIR to '
    'point elsewhere; the README lists the layout per dataset). To run without any '
    'download on the embedded synthetic faces instead, add `:data=synthetic` to the config '
    'path, e.g. --config=configs/mcl68.py:runlocal,data=synthetic'
  )


def load_caches(
  config: ml_collections.ConfigDict,
) -> tuple[input_pipeline.RegionCache, input_pipeline.RegionCache]:
  """(train, validation) region caches of `config.data`; never falls back to another dataset.

  The validation set is `config.data.val_split` when set, else `num_validation` faces carved
  deterministically out of the training split.

  Raises:
    datasets.DatasetFormatError: the dataset's files are missing, with instructions.
  """
  d = config.data
  kwargs = dict(
    manual_dir=d.manual_dir or None, data_dir=d.data_dir or None, config=builder_config(d)
  )
  try:
    train_source = datasets.load(d.name, d.train_split, **kwargs)
    val_source = datasets.load(d.name, d.val_split, **kwargs) if d.val_split else None
  except datasets.DatasetFormatError as e:
    raise datasets.DatasetFormatError(f'{e}\n\n{missing_data_message(config)}') from None
  schema = datasets.schema_of(train_source)
  if schema.num_points != config.model.num_points:
    raise ValueError(
      f'dataset {d.name!r} has {schema.num_points} landmarks but the model is '
      f'configured for {config.model.num_points}'
    )
  i = config.input
  cache_kw = dict(
    region_size=i.region_size,
    region_scale=i.region_scale,
    grayscale=i.grayscale,
    jpeg_quality=(i.jpeg_quality_min, i.jpeg_quality_max),
    seed=config.seed,
  )
  train = input_pipeline.cache_regions(train_source, jpeg_variants=i.jpeg_variants, **cache_kw)
  if val_source is not None:
    val = input_pipeline.cache_regions(val_source, **cache_kw)
  else:
    train, val = input_pipeline.split_train_validation(train, d.num_validation, d.split_seed)
    val.regions = val.regions[:, :1]  # validation never sees JPEG copies
  logging.info('%s: %d train / %d validation faces', d.name, len(train), len(val))
  return train, val


def builder_config(d: ml_collections.ConfigDict):
  """The tfds builder config: a config name, or a resized synthetic config."""
  if d.name == 'synthetic' and (d.synthetic_train or d.synthetic_validation):
    from lmjax.datasets import synthetic

    return synthetic.make_config(
      d.builder_config,
      num_train=d.synthetic_train or None,
      num_validation=d.synthetic_validation or None,
      num_test=d.synthetic_validation or None,  # the test split is not used by training
    )
  return d.builder_config or None
