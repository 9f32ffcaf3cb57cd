"""The int8 graph of a model folder (`<folder>/int8.onnx`): where it is and reading it back.

`python -m lmjax.export --format=onnx --int8 --out=<folder>/int8.onnx` writes it (MCL: the
network; BB-FCN: its constrained pipeline); the predictors run it on CPU by default. The graph
carries the fingerprint of the weights it was made from (`graph.FINGERPRINT_KEY`), so a folder
whose variables changed after the export is refused instead of silently running old weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx
from etils import epath

from lmjax.onnx_export import graph

INT8_FILE = 'int8.onnx'


def has_int8(directory: str | None) -> bool:
  """Whether the model folder `directory` (None: a model in memory) has an int8 graph."""
  return directory is not None and (epath.Path(directory) / INT8_FILE).is_file()


def read_int8(directory: str, params: Mapping[str, Any]) -> onnx.ModelProto:
  """The folder's int8 graph, checked against the fingerprint of `params` (numpy arrays).

  Raises:
    FileNotFoundError: no int8 graph in the folder (the message says how to make one).
    ValueError: the graph was exported from other weights.
  """
  path = epath.Path(directory) / INT8_FILE
  export = (
    f'python -m lmjax.export --checkpoint={directory} --format=onnx --int8 '
    f'--manual_dir=<the dataset folder> --out={path}'
  )
  if not path.is_file():
    raise FileNotFoundError(f'{path}: no int8 graph in the model folder; make one with {export}')
  model = onnx.load_from_string(path.read_bytes())  # the folder may be remote
  have, want = graph.metadata(model).get(graph.FINGERPRINT_KEY), graph.fingerprint(params)
  if have != want:
    raise ValueError(
      f'{path} was exported from other weights than {directory}/variables '
      f'(fingerprint {have}, variables {want}); export it again with {export}'
    )
  return model
