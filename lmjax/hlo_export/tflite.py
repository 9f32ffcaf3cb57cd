"""`python -m lmjax.export --format=tflite`: the whole predictor through jax2tf and the TFLite
converter (optional: the `tflite` extra, TensorFlow is not a dependency of lmjax).

    report = export_tflite('pretrained/mcl68', 'mcl68.tflite', canvas=(480, 640), batch=1)
    points = TflitePredictor('mcl68.tflite').predict_batch(images, boxes)

The function is `stablehlo.predictor_function(padded=True)`: images uint8 [B, H, W, 3] on a
fixed canvas, boxes float32 [B, 4], sizes int32 [B, 2] -> points float32 [B, K, 2] in image
pixels. Two limits of TensorFlow 2.21's converter shape it (measured on mcl68):
  * the batch B is fixed (`--batch`): with a symbolic batch the converter stops at the crop's
    gathers ("'mhlo.gather' op Dynamic shaped operand is not supported");
  * the crop geometry runs in float32: TFLite has no float64 arithmetic ("failed to legalize
    operation 'tfl.add'"), so a crop edge that the host computes on an integer can land one
    window pixel off (a few hundredths of a pixel in the points; the parity is recorded).
`<out>.json` holds the conventions, the spec and the parity against the folder's predictor.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from lmjax.hlo_export import stablehlo

INSTALL = 'pip install "tensorflow-cpu>=2.21" (the tflite extra)'


def require_tensorflow():
  """The `tensorflow` module, or a one-line ImportError saying what to install."""
  try:
    import tensorflow as tf
  except ImportError:
    raise ImportError(f'--format=tflite needs TensorFlow: {INSTALL}') from None
  return tf


def convert(fn, canvas: tuple[int, int], batch: int) -> bytes:
  """The TFLite flatbuffer of `fn(images, boxes, sizes)` at a fixed batch and canvas."""
  import jax
  from jax.experimental import jax2tf

  tf = require_tensorflow()
  h, w = canvas
  signature = [
    tf.TensorSpec([batch, h, w, 3], tf.uint8, name='images'),
    tf.TensorSpec([batch, 4], tf.float32, name='boxes'),
    tf.TensorSpec([batch, 2], tf.int32, name='sizes'),
  ]
  with jax.enable_x64(False):
    tf_fn = tf.function(jax2tf.convert(fn), autograph=False, input_signature=signature)
    concrete = tf_fn.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf_fn)
  return converter.convert()


class TflitePredictor:
  """A `--format=tflite` file behind the image API (`predict_faces`), run by tf.lite."""

  outputs = ('points',)
  backend = 'tflite'
  calibration = None

  def __init__(self, path: str):
    side = f'{path}.json'
    for p in (path, side):
      if not os.path.isfile(p):
        raise FileNotFoundError(f'{p}: not found (python -m lmjax.export --format=tflite)')
    with open(side) as f:
      self.info = json.load(f)
    if self.info.get('format') != 'tflite':
      raise ValueError(f'{side}: not the sidecar of a tflite export (format)')
    from lmjax.core import landmarks

    self.spec = self.info['spec']
    self.schema = landmarks.get_schema(self.spec['num_points'])
    self.image_size = tuple(self.info['image_size'])
    self.batch = self.info['batch']
    tf = require_tensorflow()
    self.interpreter = tf.lite.Interpreter(model_path=path)
    self.interpreter.allocate_tensors()
    self.inputs = {
      d['name'].split(':')[0]: d['index'] for d in self.interpreter.get_input_details()
    }
    (self.output,) = (d['index'] for d in self.interpreter.get_output_details())

  def _run(self, images, boxes, sizes) -> np.ndarray:
    """One fixed-size batch: [B, H, W, 3], [B, 4], [B, 2] -> [B, K, 2]."""
    for name, value in (('images', images), ('boxes', boxes), ('sizes', sizes)):
      index = next(i for n, i in self.inputs.items() if n.endswith(name))
      self.interpreter.set_tensor(index, value)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self.output)

  def predict_faces(self, images, boxes) -> dict[str, np.ndarray]:
    """{'points': image-pixel [N, K, 2]} of N faces; pictures up to the canvas size."""
    from lmjax.core import image_ops

    if len(images) != len(boxes):
      raise ValueError(f'images, boxes: {len(images)} images but {len(boxes)} boxes')
    boxes = np.asarray(boxes, np.float32).reshape(len(images), 4)
    height, width = self.image_size
    points = np.zeros((len(images), self.schema.num_points, 2), np.float32)
    for start in range(0, len(images), self.batch):
      rows = list(range(start, min(start + self.batch, len(images))))
      canvas = np.zeros((self.batch, height, width, 3), np.uint8)
      sizes = np.ones((self.batch, 2), np.int32)
      part = np.zeros((self.batch, 4), np.float32)
      for row, i in enumerate(rows):
        image = image_ops.check_image(images[i])
        h, w = image.shape[:2]
        if h > height or w > width:
          raise ValueError(f'images[{i}]: {h}x{w} pixels do not fit the canvas {height}x{width}')
        canvas[row, :h, :w], sizes[row], part[row] = image, (h, w), boxes[i]
      for row in range(len(rows), self.batch):  # padding rows repeat the first face
        canvas[row], sizes[row], part[row] = canvas[0], sizes[0], part[0]
      points[start : start + len(rows)] = self._run(canvas, part, sizes)[: len(rows)]
    return {'points': points}

  def predict_batch(self, images, boxes) -> np.ndarray:
    return self.predict_faces(images, boxes)['points']


def export_tflite(
  checkpoint: str,
  out: str,
  canvas: tuple[int, int] | None,
  batch: int = 1,
  head: int = 0,
  backbone_only: bool = False,
) -> dict[str, Any]:
  """Writes the .tflite of `checkpoint`'s whole predictor and `<out>.json`; returns the latter.

  Raises:
    ValueError: no fixed canvas, a bad batch or bad flags for the folder.
    ImportError: TensorFlow is not installed (one line).
  """
  from lmjax.hlo_export.onnx_file import CONVENTIONS, folder_predictor

  require_tensorflow()
  if canvas is None:
    raise ValueError('--format=tflite needs a fixed canvas --image_size=HxW (e.g. 480x640)')
  if batch < 1:
    raise ValueError(f'--batch: expected a positive batch size, got {batch}')
  predictor = folder_predictor(checkpoint, head, backbone_only)
  function = stablehlo.predictor_function(predictor, padded=True, backbone_only=backbone_only)
  data = convert(function, canvas, batch)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'wb') as f:
    f.write(data)
  info = {
    **json.loads(json.dumps(CONVENTIONS)),
    'call': 'tf.lite.Interpreter(path): inputs images, boxes, sizes; output points',
    'format': 'tflite',
    'model': os.path.basename(os.path.normpath(checkpoint)),
    'checkpoint': checkpoint,
    'head': head,
    'backbone_only': backbone_only,
    'num_points': predictor.spec['num_points'],
    'image_size': list(canvas),
    'batch': batch,
    'bytes': len(data),
    'spec': predictor.spec,
  }
  with open(out + '.json', 'w') as f:
    json.dump(info, f, indent=2, sort_keys=True)
  picture, boxes = stablehlo.synthetic_faces(tuple(max(v * 3 // 4, 8) for v in canvas))
  got = TflitePredictor(out).predict_batch([picture] * len(boxes), boxes)
  key = 'coarse' if backbone_only else 'points'
  want = predictor.predict_faces([picture] * len(boxes), boxes.astype(np.float64))[key]
  diff = np.abs(got - want).max(axis=-1)
  info['parity'] = {
    'reference': f"{type(predictor).__name__}.predict_faces(...)['{key}'] (XLA)",
    'synthetic_faces': len(boxes),
    'max_diff_px': float(diff.max()),
    'median_diff_px': float(np.median(diff)),
    'points_within_0.01px': float((diff <= 0.01).mean()),
  }
  with open(out + '.json', 'w') as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return info
