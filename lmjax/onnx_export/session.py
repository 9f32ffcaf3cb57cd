"""`OnnxNetwork`: an onnxruntime CPU session over one exported graph.

    network = OnnxNetwork(graph)          # onnx.ModelProto, serialised bytes or a .onnx path
    points = network(crops)               # float32 [N, ...] -> the graph's single output

onnxruntime's default thread pool takes every core of the machine; here it takes the cores this
process may run on (`os.sched_getaffinity`), so a process pinned to one core runs one thread
instead of several spinning on it.
"""

from __future__ import annotations

import os

import numpy as np
import onnx


def process_cores() -> int:
  """Cores this process may run on."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def make_session(graph: onnx.ModelProto | bytes | str | os.PathLike, threads: int = 0):
  """An onnxruntime CPU session over `graph` (a ModelProto, its bytes or a .onnx file);
  `threads`: intra-op threads, 0 = the cores this process may run on."""
  import onnxruntime

  if isinstance(graph, onnx.ModelProto):
    graph = graph.SerializeToString()
  elif not isinstance(graph, bytes):
    graph = os.fspath(graph)
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = threads or process_cores()
  options.inter_op_num_threads = 1
  return onnxruntime.InferenceSession(graph, options, providers=['CPUExecutionProvider'])


class OnnxNetwork:
  """Runs one graph with one float32 input and one output."""

  def __init__(self, graph: onnx.ModelProto | bytes | str | os.PathLike, threads: int = 0):
    """Opens a session.

    Args:
      graph: the graph, its serialised bytes, or a .onnx file.
      threads: intra-op threads; 0 = the cores this process may run on.
    """
    self.session = make_session(graph, threads)
    (self.input,) = self.session.get_inputs()
    (self.output,) = self.session.get_outputs()

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """The graph's output for input batch `x` (any batch size, the other dims as exported)."""
    x = np.ascontiguousarray(x, np.float32)
    return self.session.run([self.output.name], {self.input.name: x})[0]
