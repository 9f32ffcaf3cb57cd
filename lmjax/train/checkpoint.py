"""Orbax checkpointing (the only module that imports orbax) and model folders.

A run directory holds one `CheckpointManager` per training stage (`<workdir>/ckpt/<stage>`).
States are plain dicts `{step, params, batch_stats, opt}`; restoring with an abstract target
(`jax.eval_shape` of the initial state) brings back the optimizer state's structure.
A model folder is `model.json` (the `lmjax.models.registry` schema) and `variables/`
(`export_model`, `load_model`).

Paths may be local or remote (`lmjax.core.paths`). orbax writes local paths and `gs://`
itself; on other schemes (`s3://`, ...) it writes a local mirror that is uploaded after each
save (`<stage>/uploaded.json` lists the complete uploads, written last) and downloaded on a
resume; variables go through a temporary local folder. Mirrored checkpoints need one process.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from lmjax.core import paths
from lmjax.models import registry
from lmjax.train import distributed

UPLOADED_FILE = 'uploaded.json'  # mirrored stages: the steps whose upload completed


class ModelFolderError(ValueError):
  """A model folder whose `variables/` cannot be read (corrupt or incomplete: re-export it)."""


class StageCheckpoints:
  """Periodic, resumable checkpoints of one training stage (see the module doc for remote
  folders)."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = paths.absolute(directory)
    self._mirrored = not paths.orbax_writes(directory)
    local = self.directory
    if self._mirrored:
      if jax.process_count() > 1:
        raise ValueError(
          f'{directory}: orbax cannot write this scheme from several processes; use a gs:// '
          'or a shared local workdir'
        )
      local = paths.local_mirror(directory)
      self._pull(local)
    self._local = local
    self._manager = ocp.CheckpointManager(
      local, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, *, force: bool = False) -> None:
    saved = self._manager.save(step, args=ocp.args.StandardSave(state), force=force)
    if saved and self._mirrored:
      self._manager.wait_until_finished()
      self._push()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure/shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def step_folder(self, step: int) -> str:
    """Where checkpoint `step` lives (in the workdir, also when mirrored)."""
    return str(self.directory / str(step))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _uploaded(self) -> list[int]:
    record = self.directory / UPLOADED_FILE
    return json.loads(record.read_text()) if record.exists() else []

  def _pull(self, local) -> None:
    """Makes the local mirror hold exactly the uploaded steps (a mirror left by another run
    of the same URI may hold others)."""
    uploaded = self._uploaded()
    local.mkdir(parents=True, exist_ok=True)
    for entry in local.iterdir():
      if (entry.name.isdigit() and int(entry.name) not in uploaded) or '.orbax' in entry.name:
        entry.rmtree()
    for step in uploaded:
      if not (local / str(step)).exists():
        paths.copy_tree(self.directory / str(step), local / str(step))

  def _push(self) -> None:
    """Uploads the mirror's new steps, records them, then deletes the remote steps that
    orbax no longer keeps (and any upload a kill left half done)."""
    kept = sorted(self._manager.all_steps())
    uploaded = self._uploaded()
    for step in kept:
      if step not in uploaded:
        paths.copy_tree(self._local / str(step), self.directory / str(step))
    (self.directory / UPLOADED_FILE).write_text(json.dumps(kept))
    for entry in self.directory.iterdir():
      if entry.name.isdigit() and int(entry.name) not in kept:
        entry.rmtree()


def save_variables(path: str, variables: Any) -> None:
  """Writes model variables ({params, batch_stats}) as a standalone checkpoint at `path`."""
  if paths.orbax_writes(path):
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(paths.absolute(path), variables, force=True)
    return
  with tempfile.TemporaryDirectory(prefix='lmjax-variables-') as local:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(epath.Path(local) / 'variables', variables)
    paths.copy_tree(epath.Path(local) / 'variables', path)


def restore_variables(path: str, abstract_variables: Any | None = None) -> Any:
  """Reads model variables written by `save_variables`.

  Args:
    path: the checkpoint directory.
    abstract_variables: optional `jax.eval_shape` tree giving dtypes/shardings; without it the
      arrays come back as they were saved.

  Raises:
    FileNotFoundError: `path` is not a directory.
    ModelFolderError: orbax / TensorStore cannot read it (truncated, missing files, or arrays
      that do not match `abstract_variables`): one line naming `path`; the orbax error is its
      `__cause__`.
  """
  path = paths.absolute(path)
  if not path.is_dir():
    raise FileNotFoundError(f'{path}: no such checkpoint directory (expected a variables/ folder)')
  if not paths.orbax_writes(path):
    with tempfile.TemporaryDirectory(prefix='lmjax-variables-') as local:
      paths.copy_tree(path, epath.Path(local) / 'variables')
      return _restore_local(epath.Path(local) / 'variables', abstract_variables, str(path))
  return _restore_local(path, abstract_variables, str(path))


def _restore_local(path, abstract_variables: Any | None, name: str) -> Any:
  _drop_closed_loop_reports()
  try:
    with ocp.StandardCheckpointer() as ckptr:
      if abstract_variables is None:
        return ckptr.restore(path)
      return ckptr.restore(path, jax.tree_util.tree_map(_on_this_host, abstract_variables))
  except Exception as e:  # orbax and TensorStore raise bare Exceptions with multi-page dumps
    raise ModelFolderError(
      f'{name}: cannot be read (corrupt or incomplete checkpoint: {type(e).__name__})'
    ) from e


def _on_this_host(leaf: Any) -> jax.ShapeDtypeStruct:
  """The restore target of one leaf: its own sharding, else this process's first device.

  Without a target sharding orbax restores onto the devices the arrays were saved from, and
  refuses when they differ (a model exported by a 2-device run, loaded by a 1-device process).
  """
  leaf = ocp.utils.to_shape_dtype_struct(leaf)
  sharding = leaf.sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _never_retrieved(record: logging.LogRecord) -> bool:
  """asyncio log filter: False for `Task exception was never retrieved` records."""
  return not str(record.msg).startswith('Task exception was never retrieved')


def _drop_closed_loop_reports() -> None:
  """Silences the late TensorStore reads of a failed restore (installed once, before reading).

  When one array read fails, the reads still in flight complete on orbax's closing event loop:
  each prints a `RuntimeError: Event loop is closed` traceback (`sys.unraisablehook`) or an
  asyncio `Task exception was never retrieved` log record around the one-line error. Only those
  two reports are dropped; the restore itself fails with `ModelFolderError`.
  """
  logging.getLogger('asyncio').addFilter(_never_retrieved)  # once: addFilter skips duplicates
  previous = sys.unraisablehook
  if getattr(previous, 'lmjax_drops_closed_loop', False):
    return

  def hook(report) -> None:
    error = report.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
      previous(report)

  hook.lmjax_drops_closed_loop = True
  sys.unraisablehook = hook


VARIABLES_DIR = 'variables'


def export_model(directory: str, variables: Any, spec: dict[str, Any]) -> None:
  """Writes a self-describing model folder: `model.json` (`lmjax.models.registry` schema,
  validated first) and `variables/` (orbax, {params[, batch_stats]}).

  In a multi-process run every process calls it (orbax saves collectively) and process 0
  writes model.json.
  """
  spec = registry.validate(spec, registry.spec_path(directory), current=True)  # before writing
  save_variables(str(epath.Path(directory) / VARIABLES_DIR), variables)
  if distributed.is_writer():
    registry.write_spec(directory, spec)  # last: a folder with a model.json is complete


def load_model(directory: str, family: str | None = None) -> tuple[Any, dict, dict]:
  """(module, variables, spec) of a model folder, optionally required to be of `family`.

  Only the variables are restored, into `registry.abstract_variables(spec)`: no optimizer
  state, no training code.

  Raises:
    FileNotFoundError: `directory` has no model.json (`registry.read_spec`).
    SpecError: its model.json is not valid JSON, breaks the schema or is another family's.
    ModelFolderError: `<directory>/variables` is missing (`<dir>/variables: missing
      (incomplete model folder: re-export it, ...)`) or cannot be read (`<dir>/variables: cannot
      be read (corrupt or incomplete model folder, or arrays that do not match its model.json:
      re-export it)`).
  """
  spec = registry.read_spec(directory, family)
  path = str(epath.Path(directory) / VARIABLES_DIR)
  if not epath.Path(path).is_dir():
    raise ModelFolderError(
      f'{path}: missing (incomplete model folder: re-export it, e.g. with '
      f'lmjax.train.checkpoint.export_model)'
    )
  try:
    variables = restore_variables(path, registry.abstract_variables(spec))
  except ModelFolderError as e:
    raise ModelFolderError(
      f'{path}: cannot be read (corrupt or incomplete model folder, or arrays that do not match '
      f'its model.json: re-export it)'
    ) from e.__cause__
  return registry.build(spec), dict(variables), spec


def upgrade_model_folder(directory: str) -> dict[str, Any]:
  """Rewrites an older `model.json` in the current format; returns the new spec.

  BB-FCN folders gain the scanner's `face_template`, computed as the trainer does
  (`lmjax.data.templates.face_template`, which needs the face renderer: training-side code).
  """
  from lmjax.data import templates

  spec = registry.read_spec(directory)
  template = None
  if spec['experiment'] == 'bbfcn':
    template = templates.face_template(spec['num_points'], spec['dataset'], spec['crop_scale'])
  spec = registry.upgrade_spec(spec, template)
  registry.write_spec(directory, spec)
  return spec
