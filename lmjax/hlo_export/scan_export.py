"""The BB-FCN scanner of a fixed canvas as a serialised `jax.export` (StableHLO) with a sidecar.

    python -m lmjax.export --checkpoint=pretrained/bbfcn5 --format=stablehlo --scanner \\
        --canvas=480x640 [--min_face=40 | --levels=L] [--backbone_only] --out=scan.stablehlo

The exported function is `out = f(image)`:
  image: uint8 [H, W, 3] RGB, H × W the canvas (fixed: the pyramid and its tiles are static).
  out:   a dict, per landmark type k and detection slot (m = `ScanParams.detections`):
         'points' [K, m, 2] image pixels, 'score' [K, m], 'valid' [K, m], 'fine_score',
         'coarse_points', 'level'; the faces: 'faces' [F, 4] boxes (x0, y0, x1, y1),
         'face_score' / 'face_valid' [F], 'face_points' [F, K, 2], 'face_point_valid' [F, K];
         'proposals' [K·m, 4] with 'proposal_score' / 'proposal_valid' — `Scanner.scan`'s keys.
Pictures of other sizes are letterboxed onto the canvas by the caller (scaled to fit, grey
padding at the bottom and right) and the outputs divided by the scale:
`lmjax.hlo_export.scan_runner.ExportedScanner` does it. With jax alone:

    out = jax.export.deserialize(open(path, 'rb').read()).call(image)

Before writing, the export scans a few synthetic scenes at the canvas and is compared with
`Scanner.scan` (OpenCV pyramid on the host): detections of the same type matched within
`MATCH_PX`, faces by IoU ≥ 0.5; the counts and the largest differences go to `<out>.json`
(`compare_scans`), with how far the in-graph pyramid is from OpenCV's (`pyramid_difference`).
Fewer than `MIN_MATCHED` of the detections matched is an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry
from lmjax.hlo_export import scan_graph, stablehlo

MATCH_PX = 2.0  # a detection of the other scan within this distance (same type) is its match
MIN_MATCHED = 0.98  # fewer matched detections than this fraction fails the export
PARITY_SCENES = 3
POINT_KEYS = ('points', 'coarse_points', 'face_points')  # image-pixel (x, y) outputs
BOX_KEYS = ('faces', 'proposals')  # image-pixel (x0, y0, x1, y1) outputs


def _match(a: np.ndarray, b: np.ndarray, radius: float) -> list[float]:
  """Distances of greedy nearest matches (each point of `b` used once) of points a [A, 2] in
  b [B, 2] within `radius`, nearest pairs first."""
  if not len(a) or not len(b):
    return []
  dist = np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1))  # [A, B]
  out, used_a, used_b = [], set(), set()
  for flat in np.argsort(dist, axis=None):
    i, j = divmod(int(flat), dist.shape[1])
    if dist[i, j] > radius:
      break
    if i not in used_a and j not in used_b:
      used_a.add(i), used_b.add(j), out.append(float(dist[i, j]))
  return out


def compare_scans(want: dict, got: dict) -> dict[str, Any]:
  """Detections and faces of two scans of one image, matched (slots may be ordered otherwise
  when scores are near ties): counts, matched counts and the largest matched differences."""
  matched, count_want, count_got = [], 0, 0
  for k in range(want['points'].shape[0]):
    a = want['points'][k][want['valid'][k]]
    b = got['points'][k][got['valid'][k]]
    count_want, count_got = count_want + len(a), count_got + len(b)
    matched += _match(a, b, MATCH_PX)
  fa, fb = want['faces'][want['face_valid']], got['faces'][got['face_valid']]
  face_diff = []
  if len(fa) and len(fb):
    iou = np.asarray(geometry.box_iou(jnp.asarray(fa), jnp.asarray(fb)))
    for i in range(len(fa)):
      j = int(np.argmax(iou[i]))
      if iou[i, j] >= 0.5:
        face_diff.append(float(np.abs(fa[i] - fb[j]).max()))
  return {
    'detections': [count_want, count_got],
    'matched_detections': len(matched),
    'max_matched_px': max(matched, default=0.0),
    'faces': [len(fa), len(fb)],
    'matched_faces': len(face_diff),
    'max_face_box_px': max(face_diff, default=0.0),
  }


def parse_canvas(text: str) -> tuple[int, int]:
  """'HxW' -> (H, W) for --canvas (required: the scanner export has a fixed canvas)."""
  try:
    size = stablehlo.parse_image_size(text)
  except ValueError as e:
    raise ValueError(str(e).replace('--image_size', '--canvas')) from None
  if size is None:
    raise ValueError(f'--canvas: the scanner export needs a fixed HxW (e.g. 480x640), got {text!r}')
  return size


def export_function(fn, canvas: tuple[int, int], platforms=stablehlo.PLATFORMS):
  """`jax.export.Exported` of `fn(image uint8 [H, W, 3])` at the canvas."""
  image = jax.ShapeDtypeStruct((*canvas, 3), jnp.uint8)
  return jax.export.export(jax.jit(fn), platforms=platforms)(image)


def synthetic_scenes(num_points: int, canvas: tuple[int, int], count: int) -> list[np.ndarray]:
  """`count` synthetic scenes with faces (uint8 [H, W, 3]) at the canvas size."""
  from lmjax import synthface

  scenes, seed = [], 0
  while len(scenes) < count and seed < 10 * count:
    scene = synthface.render_scene((num_points, seed), canvas, max_faces=3)
    seed += 1
    if scene['faces']:
      scenes.append(scene['image'])
  return scenes


def parity(call, scan, images: list[np.ndarray]) -> dict[str, Any]:
  """`compare_scans` of `call(image)` (the export's outputs) and `scan.scan(image)` over
  `images`, counts summed and differences maxed."""
  total: dict[str, Any] = {}
  for image in images:
    got = jax.device_get(call(image))
    one = compare_scans(scan.scan(image), got)
    for key, value in one.items():
      if key.startswith('max'):
        total[key] = max(total.get(key, 0.0), value)
      elif isinstance(value, list):
        total[key] = [a + b for a, b in zip(total.get(key, [0, 0]), value, strict=True)]
      else:
        total[key] = total.get(key, 0) + value
  return total


def pyramid_difference(plan: scan_graph.CanvasLayout, images: list[np.ndarray]) -> dict:
  """How far the in-graph pyramid (`scan_graph.packed_tiles`) is from `tiling.pack`'s
  (OpenCV) over `images`: the largest grey-level difference and the fraction of differing
  values among the pixels that pieces own."""
  from lmjax.scan import tiling

  tiles = jax.jit(lambda image: scan_graph.packed_tiles(image, plan))
  worst, differing, total = 0, 0, 0
  for image in images:
    host = tiling.pack(image, len(plan.sizes))
    owned = np.broadcast_to((host.owner >= 0)[..., None], host.tiles.shape)
    diff = np.abs(np.asarray(tiles(image), np.int32) - host.tiles)[owned]
    worst = max(worst, int(diff.max()))
    differing, total = differing + int((diff > 0).sum()), total + diff.size
  return {'pyramid_max_grey_diff': worst, 'pyramid_values_differing': differing / max(total, 1)}


def export_scanner(
  checkpoint: str,
  out: str,
  canvas: tuple[int, int],
  *,
  levels: int | None = None,
  min_face: float | None = None,
  backbone_only: bool = False,
  scenes: int = PARITY_SCENES,
) -> dict[str, Any]:
  """Writes the serialised scan of `checkpoint` at `canvas` to `out` and `<out>.json`.

  Args:
    checkpoint: a BB-FCN model folder (bbfcn or backbone_only variant).
    out: the output file.
    canvas: (H, W) of the images the export takes.
    levels / min_face: the pyramid depth, as `Scanner` takes them (default 12 levels).
    backbone_only: scan without the branches (coarse points).
    scenes: synthetic scenes of the parity check (0: none).

  Returns:
    the sidecar dict.

  Raises:
    ValueError: not a BB-FCN folder, bad settings.
    RuntimeError: fewer than `MIN_MATCHED` of the detections agree with `Scanner.scan`.
  """
  from lmjax.scan.scanner import Scanner

  scan = Scanner.load(checkpoint, levels=levels, min_face=min_face, refine=not backbone_only)
  depth = scan.levels_for(min(canvas))
  exported = export_function(scan_graph.scan_function(scan, canvas), canvas)
  images = synthetic_scenes(scan.spec['num_points'], canvas, scenes)
  check = parity(jax.jit(exported.call), scan, images)
  if images:
    check.update(pyramid_difference(scan_graph.canvas_layout(canvas, depth), images))
  found = max(check.get('detections', [0]))
  if found and check['matched_detections'] < MIN_MATCHED * found:
    raise RuntimeError(
      f'the scanner export matches {check["matched_detections"]} of {found} detections of '
      f'Scanner.scan within {MATCH_PX} px (expected at least {MIN_MATCHED:.0%})'
    )
  data = exported.serialize()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'wb') as f:
    f.write(data)
  h, w = canvas
  k, m, faces = scan.spec['num_points'], scan.params.detections, scan.params.max_faces
  sidecar = {
    'format': 'stablehlo',
    'kind': 'scanner',
    'inputs': {'image': f'uint8 [{h}, {w}, 3] RGB canvas; letterbox other sizes onto it'},
    'outputs': {
      'points': f'float32 [{k}, {m}, 2] detections (x, y) per type, image pixels',
      'score': f'float32 [{k}, {m}] coarse response (0 where not valid)',
      'valid': f'bool [{k}, {m}]',
      'faces': f'float32 [{faces}, 4] face boxes (x0, y0, x1, y1), image pixels',
      'face_valid': f'bool [{faces}]',
      'face_points': f'float32 [{faces}, {k}, 2]',
      'other keys': 'as lmjax.scan.scanner.detect returns them',
    },
    'call': 'jax.export.deserialize(data).call(image)',
    'letterbox': 'scale s = min(H / h, W / w), resize, grey (128) padding at the bottom and '
    'right; divide points and boxes by s (lmjax.hlo_export.scan_runner.ExportedScanner)',
    'canvas': [h, w],
    'levels': depth,
    'min_face': min_face,
    'backbone_only': backbone_only,
    'scan_params': dataclasses.asdict(dataclasses.replace(scan.params, levels=depth)),
    'model': os.path.basename(os.path.normpath(checkpoint)),
    'checkpoint': checkpoint,
    'num_points': k,
    'platforms': list(exported.platforms),
    'jax_version': jax.__version__,
    'calling_convention_version': exported.calling_convention_version,
    'bytes': len(data),
    'parity': {
      'reference': 'Scanner.scan (OpenCV pyramid on the host, XLA)',
      'synthetic_scenes': scenes,
      'match_px': MATCH_PX,
      **check,
    },
    'spec': scan.spec,
  }
  with open(out + '.json', 'w') as f:
    json.dump(sidecar, f, indent=2, sort_keys=True)
  return sidecar
