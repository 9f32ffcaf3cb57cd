"""Entry point: `python -m lmjax.main --config=configs/mcl68.py --workdir=DIR`.

Only wires things together: flags, start-up checks (`lmjax.train.workdir`: settings, the
workdir lock, the config history), logging, multi-host start-up, a SIGTERM handler (save at
the next step and exit 0: `lmjax.train.loop.request_stop`), then the experiment's `run`.
Mistakes the user can fix end as one line `error: ...` and exit status 1.

`--workdir` may be a local folder or a URI (`gs://bucket/run`, `s3://...`; see
`lmjax.core.paths`): every file of the run goes through `etils.epath`.
"""

from __future__ import annotations

import logging as logging_std
import shlex
import signal
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:args].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  'allow_config_change',
  False,
  'Continue a workdir that has checkpoints or finished stages with a changed config '
  '(recorded in <workdir>/configs/).',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  None,
  'Multi-process runs: host:port of process 0 (else JAX_COORDINATOR_ADDRESS, SLURM, TPU VM).',
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'Multi-process runs: how many (else JAX_NUM_PROCESSES).'
)
_PROCESS_ID = flags.DEFINE_integer(
  'process_id', None, 'Multi-process runs: this process (else JAX_PROCESS_ID).'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  from lmjax.train import workdir as workdir_lib

  try:
    _main(workdir_lib)
  except workdir_lib.UserError as e:
    raise SystemExit(f'error: {e}') from None


def _main(workdir_lib):
  import jax
  from etils import epath

  from lmjax.core import paths
  from lmjax.data import batching
  from lmjax.train import distributed, loop, writer, xla_cpu

  config, workdir = _CONFIG.value, _WORKDIR.value
  workdir_lib.check_settings(config, workdir)
  try:
    layout = distributed.detect(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as e:
    raise workdir_lib.UserError(str(e)) from None
  xla_cpu.prefer_eigen_convolutions()  # multi-threaded convolutions on CPU (see there)
  batching.use_cpu_devices(
    batching.cpu_device_count(config.get('cpu_devices', 1), _train_batch_sizes(config))
  )
  distributed.initialize(layout)
  from lmjax.data.datasets import table

  config.data = table.resolve(config.data, config.model.num_points)  # the dataset table's defaults
  if jax.process_count() > 1 and not paths.orbax_writes(workdir):
    raise workdir_lib.UserError(
      f'--workdir={workdir}: several processes can checkpoint to local folders and gs:// only '
      '(orbax writes other schemes through a per-process local mirror)'
    )
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  first = distributed.is_writer()
  if first:
    workdir_lib.lock(workdir)  # before the log file: a refused run leaves no trace there
  changed = workdir_lib.record_config(
    workdir,
    config.to_json_best_effort(indent=2),
    allow_change=_ALLOW_CONFIG_CHANGE.value,
    write=first,
  )
  # Process 0 logs to train.INFO, the others to train.process<i>.INFO.
  log_name = writer.LOG_PREFIX if first else f'{writer.LOG_PREFIX}.process{jax.process_index()}'
  log_folder = writer.log_folder(workdir)  # a remote workdir's local mirror: absl writes locally
  epath.Path(log_folder).mkdir(parents=True, exist_ok=True)
  logging.get_absl_handler().use_absl_log_file(log_name, log_folder)
  logging.info(
    'process %d of %d; devices: %s', jax.process_index(), jax.process_count(), jax.devices()
  )
  logging.info('config:\n%s', config)
  if changed:
    logging.warning('--allow_config_change: continuing with changed %s', ', '.join(changed))
  if first:
    command = shlex.join(['python', '-m', 'lmjax.main', *sys.argv[1:]])
    line = f'{time.strftime("%Y-%m-%d %H:%M:%S")}\t{command}\n'
    paths.append_text(epath.Path(workdir) / 'commands.txt', line)  # read by model cards
  from lmjax.bbfcn import train as bbfcn_train
  from lmjax.data import datasets
  from lmjax.facecls import proposer_train
  from lmjax.facecls import train as facecls_train
  from lmjax.mcl import train as mcl_train

  runners = {
    'mcl': mcl_train.run,
    'bbfcn': bbfcn_train.run,
    'facecls': facecls_train.run,
    'proposer': proposer_train.run,
  }
  if config.experiment not in runners:
    raise app.UsageError(f'unknown experiment {config.experiment!r}; known: {sorted(runners)}')
  signal.signal(signal.SIGTERM, loop.request_stop)
  try:
    runners[config.experiment](config, workdir)
  except loop.PreemptedError as e:
    logging.warning('%s', e)
    print(e, file=sys.stderr, flush=True)
  except (datasets.DatasetFormatError, FloatingPointError, workdir_lib.UserError) as e:
    logging.error('%s', e)
    raise SystemExit(f'error: {e}') from None
  finally:  # every process: on another host its log is only in its own mirror
    writer.upload_logs(workdir)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a one-line error for a `--config.x.y` override naming no field
  (ml_collections raises an AttributeError with a did-you-mean hint)."""
  from lmjax.train import workdir as workdir_lib

  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    message = workdir_lib.unknown_field_message(e, argv)
    if message is None:
      raise
    raise SystemExit(f'error: {message}') from None


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
  app.run(main, flags_parser=_parse_flags)
