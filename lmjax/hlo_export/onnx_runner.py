"""`OnnxPredictor`: a whole-predictor .onnx file (`lmjax.export --format=onnx --image_size=HxW`)
behind the image API, run by onnxruntime.

    predictor = OnnxPredictor('bbfcn68.onnx')
    predictor.predict_faces(images, boxes)['points']        # [N, K, 2] image pixels

Everything comes from the file (the export's sidecar is in its metadata). Each picture goes
into the top-left corner of the export's canvas (its size in the `sizes` input, the padding is
never read); a picture larger than the canvas is an error. Like
`lmjax.hlo_export.runner.ExportedPredictor` it has no `crop` / `predict_crops`: the face-crop
evaluator scores it through `predict_faces`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
from etils import epath

from lmjax.core import image_ops, landmarks

BATCH = 32


class OnnxPredictor:
  """Landmarks of faces given their boxes, from a whole-predictor ONNX graph.

  Attributes:
    spec: the exported model's `model.json` dict; schema: its landmark schema.
    outputs: ('points',); backend: 'onnx'; image_size: the canvas (H, W); info: the sidecar.
  """

  outputs = ('points',)
  backend = 'onnx'
  calibration = None

  def __init__(self, path: str, threads: int = 0):
    """Reads `path`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an ONNX file, or an ONNX network without the whole-predictor metadata
        (e.g. a folder's int8.onnx, which takes crops: use the folder itself).
    """
    from lmjax.hlo_export.onnx_file import METADATA_KEY
    from lmjax.onnx_export.session import make_session

    file = epath.Path(path)
    if not file.is_file():
      raise FileNotFoundError(f'{path}: not found (python -m lmjax.export --format=onnx)')
    try:
      model = onnx.load_from_string(file.read_bytes())
    except Exception as e:  # protobuf decode errors have no common type
      raise ValueError(f'{path}: not an ONNX file ({type(e).__name__})') from None
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
      raise ValueError(
        f'{path}: an ONNX network without the {METADATA_KEY!r} metadata of a whole predictor '
        '(a network graph takes crops; export one with --format=onnx --image_size=HxW)'
      )
    self.info = json.loads(meta[METADATA_KEY])
    self.spec = self.info['spec']
    self.schema = landmarks.get_schema(self.spec['num_points'])
    self.image_size = tuple(self.info['image_size'])
    self.session = make_session(model, threads)

  def __call__(self, images: np.ndarray, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The graph on canvases uint8 [N, H, W, 3], boxes [N, 4], sizes int32 [N, 2] -> [N, K, 2]."""
    feed = {
      'images': np.ascontiguousarray(images, np.uint8),
      'boxes': np.asarray(boxes, np.float32),
      'sizes': np.asarray(sizes, np.int32),
    }
    return self.session.run(['points'], feed)[0]

  def predict_faces(
    self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]
  ) -> dict[str, np.ndarray]:
    """{'points': image-pixel float32 [N, K, 2]} of N faces (image i, box i); images uint8
    RGB [h, w, 3] (grey [h, w] / [h, w, 1] is repeated to 3 channels), h ≤ H and w ≤ W."""
    if len(images) != len(boxes):
      raise ValueError(f'images, boxes: {len(images)} images but {len(boxes)} boxes')
    boxes = np.asarray(boxes, np.float32).reshape(len(images), 4)
    points = np.zeros((len(images), self.schema.num_points, 2), np.float32)
    height, width = self.image_size
    for start in range(0, len(images), BATCH):
      part = range(start, min(start + BATCH, len(images)))
      canvas = np.zeros((len(part), height, width, 3), np.uint8)
      sizes = np.zeros((len(part), 2), np.int32)
      for row, i in enumerate(part):
        try:
          image = image_ops.check_image(images[i])
        except ValueError as e:
          raise ValueError(f'images[{i}]: {e}') from None
        h, w = image.shape[:2]
        if h > height or w > width:
          raise ValueError(
            f'images[{i}]: {h}x{w} pixels do not fit the export canvas {height}x{width} '
            '(export again with a larger --image_size)'
          )
        canvas[row, :h, :w] = image  # a grey [h, w, 1] broadcasts to 3 channels
        sizes[row] = h, w
      points[start : start + len(part)] = self(canvas, boxes[start : start + len(part)], sizes)
    return {'points': points}

  def predict_batch(self, images, boxes) -> np.ndarray:
    """Image-pixel landmarks float32 [N, K, 2] of N faces (image i, box i)."""
    return self.predict_faces(images, boxes)['points']
