"""Orbax checkpointing (the only module that imports orbax).

A run directory holds one `CheckpointManager` per training stage (`<workdir>/ckpt/<stage>`).
States are plain dicts `{step, params, batch_stats, opt}`; restoring with an abstract target
(`jax.eval_shape` of the initial state) brings back the optimizer state's structure.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class StageCheckpoints:
  """Periodic, resumable checkpoints of one training stage."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
      self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, *, force: bool = False) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure/shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def save_variables(path: str, variables: Any) -> None:
  """Writes model variables ({params, batch_stats}) as a standalone checkpoint at `path`."""
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(path), variables, force=True)


def restore_variables(path: str, abstract_variables: Any | None = None) -> Any:
  """Reads model variables written by `save_variables`.

  Args:
    path: the checkpoint directory.
    abstract_variables: optional `jax.eval_shape` tree giving dtypes/shardings; without it the
      arrays come back as they were saved.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'no checkpoint directory at {path}')
  with ocp.StandardCheckpointer() as ckptr:
    if abstract_variables is None:
      return ckptr.restore(path)
    return ckptr.restore(
      path, jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_variables)
    )


SPEC_FILE = 'model.json'
VARIABLES_DIR = 'variables'


def export_model(directory: str, variables: Any, spec: dict[str, Any]) -> None:
  """Writes a self-describing model folder: `model.json` (how to build and feed the model)
  and `variables/` (orbax, {params, batch_stats})."""
  os.makedirs(directory, exist_ok=True)
  save_variables(os.path.join(directory, VARIABLES_DIR), variables)
  with open(os.path.join(directory, SPEC_FILE), 'w', encoding='utf-8') as f:
    json.dump(spec, f, indent=2, sort_keys=True)


def read_model_spec(directory: str) -> dict[str, Any]:
  """The `model.json` of a model folder written by `export_model`."""
  path = os.path.join(directory, SPEC_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{directory} is not an lmjax model folder: {SPEC_FILE} is missing (expected the '
      f'output of training, e.g. <workdir>/models/am, or pretrained/<name>)'
    )
  with open(path, encoding='utf-8') as f:
    return json.load(f)
