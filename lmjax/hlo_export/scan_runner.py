"""`ExportedScanner`: a scanner export (`lmjax.export --scanner`) behind `Scanner.scan`'s API.

    scanner = ExportedScanner('scan.stablehlo')          # + scan.stablehlo.json
    out = scanner.scan(image)        # any size: letterboxed onto the canvas, mapped back
    out['faces'][out['face_valid']], out['points'][k][out['valid'][k]]

The export takes one fixed canvas (H × W). A picture of another size h × w is scaled by
s = min(H / h, W / w) (OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging, as the
scanner's own pyramid), placed in the top-left corner, the rest grey (128, what the tiles hold
outside the pyramid), and every point and box of the output is divided by s. Detections in the
padding are possible (the backbone sees flat grey there); none were seen on synthetic scenes.
Nothing of the model folder is read.
"""

from __future__ import annotations

import json

import cv2
import jax
import numpy as np
from etils import epath

from lmjax.core import image_ops
from lmjax.hlo_export.scan_export import BOX_KEYS, POINT_KEYS

GREY = 128


class ExportedScanner:
  """Landmarks and faces of whole pictures from a serialised scanner export.

  Attributes:
    canvas: (H, W) the export takes.
    spec: the exported model's `model.json` dict (from the sidecar).
    info: the sidecar dict.
  """

  def __init__(self, path: str):
    """Reads `path` and `<path>.json`.

    Raises:
      FileNotFoundError: either file is missing.
      ValueError: the sidecar is not a scanner export's, or the file does not deserialise.
    """
    side = epath.Path(f'{path}.json')
    for p in (epath.Path(path), side):
      if not p.is_file():
        raise FileNotFoundError(f'{p}: not found (python -m lmjax.export --scanner)')
    self.info = json.loads(side.read_text())
    if self.info.get('kind') != 'scanner' or 'canvas' not in self.info:
      raise ValueError(f'{side}: not the sidecar of a scanner export (kind "scanner", canvas)')
    try:
      exported = jax.export.deserialize(bytearray(epath.Path(path).read_bytes()))
    except Exception as e:  # flatbuffer errors have no common type
      raise ValueError(f'{path}: not a serialised jax.export ({type(e).__name__})') from None
    self.canvas = tuple(self.info['canvas'])
    self.spec = self.info['spec']
    self._call = jax.jit(exported.call)

  def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the canvas holding `image` scaled to fit, top-left; the scales (sx, sy) it got,
    s = min(H / h, W / w) up to the rounding of its new size)."""
    (height, width), (h, w) = self.canvas, image.shape[:2]
    scale = min(height / h, width / w)
    rows, cols = min(height, round(h * scale)), min(width, round(w * scale))
    if (rows, cols) != (h, w):
      shrink = rows < h or cols < w
      method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
      image = cv2.resize(image, (cols, rows), interpolation=method)
    canvas = np.full((height, width, 3), GREY, np.uint8)
    canvas[:rows, :cols] = image
    return canvas, np.array([cols / w, rows / h], np.float32)

  def scan(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """All landmark detections and faces of one uint8 [h, w, 3] picture (grey [h, w] or
    [h, w, 1] is repeated to RGB), in its own pixels (`lmjax.scan.scanner.detect`'s keys)."""
    image = image_ops.check_image(image)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    canvas, scale = self.letterbox(image)
    out = dict(jax.device_get(self._call(canvas)))
    for keys, per_axis in ((POINT_KEYS, scale), (BOX_KEYS, np.tile(scale, 2))):
      for key in keys:  # pixel centres on integers: x = (x' + 0.5) / s - 0.5
        out[key] = ((out[key] + 0.5) / per_axis - 0.5).astype(np.float32)
    return out
