"""Static int8 quantisation of an exported graph (onnxruntime.quantization).

    q = quantize(graph, calibration_crops)           # onnx.ModelProto, QDQ int8

Weights are int8 per output channel, activations uint8 with ranges from the calibration crops
(min/max), in QDQ form, which onnxruntime runs with VNNI int8 kernels where the CPU has them.
Two layers stay float (`KEEP_FLOAT`), measured on pretrained/mcl68's 200 validation faces:

  * `conv11`, the first conv: its input is the image itself and its single input channel gives
    a 9-tap dot product per output; quantising it costs +0.21 NME ioc (4.19 -> 4.40), keeping it
    float costs nothing measurable in speed (0.7 M of MCL68's 152 M multiply-adds);
  * `head`, the D -> 2K regression layer: its outputs are the coordinates themselves.

With both kept float MCL68 is within +0.01 NME ioc of float32 and 1.9× faster on one core
(benchmarks/mcl_speed.py). The metadata of the input graph (fingerprint, head) is carried over.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import onnx

KEEP_FLOAT = ('conv11', 'head')
CALIBRATION_BATCH = 32
# Metadata key added to a quantised graph.
QUANTIZED_KEY = 'lmjax.quantized'


def quantize(
  model: onnx.ModelProto,
  calibration: np.ndarray,
  keep_float: Sequence[str] = KEEP_FLOAT,
  op_types: Sequence[str] | None = None,
) -> onnx.ModelProto:
  """The int8 (QDQ) version of `model`, activation ranges from `calibration`.

  Args:
    model: a float graph of `lmjax.onnx_export` with one input (MCL: 'crops').
    calibration: float32 [M, ...] inputs of the graph's single input (e.g. a few hundred
      training crops [M, S, S, C]).
    keep_float: names of nodes left in float.
    op_types: the only operator types to quantise (None: every type onnxruntime can).

  Returns:
    The quantised graph, with the input's metadata plus `lmjax.quantized = int8`.
  """
  from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
  )
  from onnxruntime.quantization.shape_inference import quant_pre_process

  calibration = np.asarray(calibration, np.float32)
  (graph_input,) = model.graph.input
  rank = len(graph_input.type.tensor_type.shape.dim)
  if calibration.ndim != rank or not len(calibration):
    raise ValueError(
      f'calibration: expected float32 {graph_input.name!r} inputs of rank {rank} [M, ...], got '
      f'{calibration.shape}'
    )
  names = {n.name for n in model.graph.node}
  if unknown := sorted(set(keep_float) - names):
    raise ValueError(f'keep_float: no node named {unknown} in the graph')

  class Crops(CalibrationDataReader):
    def __init__(self):
      self.batches: Iterator[np.ndarray] = iter(
        calibration[i : i + CALIBRATION_BATCH]
        for i in range(0, len(calibration), CALIBRATION_BATCH)
      )

    def get_next(self):
      batch = next(self.batches, None)
      return None if batch is None else {graph_input.name: batch}

  with tempfile.TemporaryDirectory() as tmp:
    source, prepared, out = (os.path.join(tmp, f) for f in ('f.onnx', 'p.onnx', 'q.onnx'))
    onnx.save(model, source)
    quant_pre_process(source, prepared, skip_symbolic_shape=True)
    quantize_static(
      prepared,
      out,
      Crops(),
      quant_format=QuantFormat.QDQ,
      per_channel=True,
      activation_type=QuantType.QUInt8,
      weight_type=QuantType.QInt8,
      calibrate_method=CalibrationMethod.MinMax,
      nodes_to_exclude=list(keep_float),
      op_types_to_quantize=list(op_types) if op_types else None,
    )
    quantized = onnx.load(out)
  props = {p.key: p.value for p in model.metadata_props}
  onnx.helper.set_model_props(quantized, {**props, QUANTIZED_KEY: 'int8'})
  return quantized
