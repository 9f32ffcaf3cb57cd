"""Entry point: `python -m lmjax.main --config=configs/mcl68.py --workdir=DIR`.

Only wires things together: flags, logging, multi-host start-up, then the experiment's `run`.
"""

from __future__ import annotations

import logging as logging_std
import os
import shlex
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:args].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  import jax

  from lmjax.data import batching

  config = _CONFIG.value
  batching.use_cpu_devices(
    batching.cpu_device_count(config.get('cpu_devices', 0), _train_batch_sizes(config))
  )
  if int(os.environ.get('JAX_NUM_PROCESSES', '1')) > 1:
    jax.distributed.initialize()
  from lmjax.data.datasets import table

  config.data = table.resolve(config.data, config.model.num_points)  # the dataset table's defaults
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  logging.get_absl_handler().use_absl_log_file('train', workdir)
  logging.info('devices: %s', jax.devices())
  logging.info('config:\n%s', config)
  with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
    f.write(config.to_json_best_effort(indent=2))
  with open(os.path.join(workdir, 'commands.txt'), 'a', encoding='utf-8') as f:  # for model cards
    command = shlex.join(['python', '-m', 'lmjax.main', *sys.argv[1:]])
    f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")}\t{command}\n')
  from lmjax.bbfcn import train as bbfcn_train
  from lmjax.data import datasets
  from lmjax.facecls import train as facecls_train
  from lmjax.mcl import train as mcl_train

  runners = {'mcl': mcl_train.run, 'bbfcn': bbfcn_train.run, 'facecls': facecls_train.run}
  if config.experiment not in runners:
    raise app.UsageError(f'unknown experiment {config.experiment!r}; known: {sorted(runners)}')
  try:
    runners[config.experiment](config, workdir)
  except datasets.DatasetFormatError as e:
    logging.error('%s', e)
    raise SystemExit(f'error: {e}') from None


def _train_batch_sizes(config) -> list[int]:
  """Every per-step batch size in `config`: fields named batch_size or positives, any depth."""
  sizes = []
  for key, value in config.items():
    if hasattr(value, 'items'):
      sizes += _train_batch_sizes(value)
    elif key in ('batch_size', 'positives') and isinstance(value, int):
      sizes.append(value)
  return sizes


class _QuietLibraries(logging_std.Filter):
  """Drops INFO chatter of orbax / tfds internals from the run log (warnings still pass)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    noisy = 'orbax' in record.pathname or 'tensorflow_datasets' in record.pathname
    return record.levelno >= logging_std.WARNING or not noisy


if __name__ == '__main__':
  logging.set_stderrthreshold('info')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  app.run(main)
