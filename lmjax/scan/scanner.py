"""Landmarks of every face in a whole image: the BB-FCN pyramid scanner (paper §III-E-2, §IV-F).

    scanner = Scanner.load('pretrained/bbfcn5', min_face=40)   # or levels=L
    scanner = Scanner(spec, variables, levels=L)       # a model in memory (model.json spec)
    out = scanner.scan(image)          # numpy dict, see `detect` for the keys
    out['faces'], out['face_points']   # grouped faces: boxes [F, 4], landmarks [F, K, 2]

Two jitted programs serve every image, whatever its size (`lmjax.scan.tiling` packs the
pyramid into fixed-size tiles on the host first):

    pyramid (L levels, resized on the host) packed into 256 × 256 tiles (1 per call on a CPU)
    tile_candidates:  --backbone-->  coarse maps; 3×3 peaks above `threshold` in the pixels
        each piece owns; best `candidates` per type {k, l, v, (x, y)} with their 12×12 RGB +
        map patches
    (host) the chunks' candidates merged: best `candidates` per type, in level pixels
    detect:  12×12 regions mapped to the image, NMS per type across levels (IoU 0.5);
        best `detections` survivors per type: patches → 24×24 --branch k--> fine map
        --Ave{M_f, 13}--> refined location in the image; face proposals (one window per
        detection) → NMS per type, then across types → faces (`lmjax.scan.proposals`)

Every stage has a fixed budget with validity masks instead of variable-length lists, so
shapes never depend on the image content or size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import compile_cache, geometry, heatmaps, image_ops, landmarks, nms
from lmjax.core.heatmaps import TOP_N
from lmjax.models import registry
from lmjax.models.bbfcn import BBFCN, PATCH
from lmjax.scan import proposals, pyramid, tiling
from lmjax.train import checkpoint

REGION = 12  # candidate region / patch side at its level


@dataclasses.dataclass(frozen=True)
class ScanParams:
  """Static settings of a scan (each distinct value compiles its own program).

  Attributes:
    levels: pyramid levels L.
    threshold: minimum coarse response of a candidate.
    candidates: per landmark type, candidates entering NMS (and per level, before merging).
    detections: per landmark type, detections kept after NMS (m).
    nms_iou: IoU above which a candidate region suppresses a weaker one of the same type.
    face_iou: IoU of face proposal NMS and of assigning detections to a face.
    max_faces: face slots of the output.
    refine: run the branches (False: the backbone-only ablation).
    scale_step: smaller-side ratio between pyramid levels (`lmjax.scan.pyramid`).
    tile: tile side in pixels of the packed pyramid (0: `tiling.TILE`; a multiple of 4).
  """

  levels: int = 12
  threshold: float = 0.2
  candidates: int = 128
  detections: int = 30
  nms_iou: float = 0.5
  face_iou: float = 0.5
  max_faces: int = 16
  refine: bool = True
  scale_step: float = pyramid.SCALE_STEP
  tile: int = 0


def tile_candidates(
  coarse_fn: Callable[[jax.Array], jax.Array],
  tiles: jax.Array,
  owner: jax.Array,
  rects: jax.Array,
  params: ScanParams,
) -> dict[str, jax.Array]:
  """Program 1: the best `candidates` coarse peaks per type of one chunk of tiles, with patches.

  Args:
    coarse_fn: [C, T, T, 3] -> [C, T, T, K] backbone maps.
    tiles: uint8 [C, T, T, 3] packed pyramid pieces (`lmjax.scan.tiling`).
    owner: int32 [C, T, T] chunk-local piece owning each pixel, -1 for none.
    rects: int32 [P, 4] (x0, y0, x1, y1) of each chunk-local piece in its tile.
    params: static `ScanParams`.

  Returns:
    'value' [K, k] (-inf where there is no peak), 'tile' [K, k], 'xy' [K, k, 2] tile pixels,
    'piece' [K, k] chunk-local piece, 'origin' [K, k, 2] top-left corner of the 12×12 patch
    (tile pixels, inside the piece), 'patches' [K, k, 12, 12, 4] (RGB + the type's map).
  """
  x = image_ops.normalize_pixels(tiles)  # [C, T, T, 3]
  maps = coarse_fn(x)  # [C, T, T, K]
  c, t, _, k = maps.shape
  pooled = jax.lax.reduce_window(maps, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1,) * 4, 'SAME')
  peak = (maps >= pooled) & (maps > params.threshold) & (owner >= 0)[..., None]
  flat = jnp.where(peak, maps, -jnp.inf).transpose(3, 0, 1, 2).reshape(k, c * t * t)
  value, index = jax.lax.top_k(flat, min(params.candidates, c * t * t))  # [K, k]
  tile, pixel = index // (t * t), index % (t * t)
  xy = jnp.stack([pixel % t, pixel // t], axis=-1)  # [K, k, 2]
  piece = owner[tile, xy[..., 1], xy[..., 0]]  # [K, k]
  rect = rects[jnp.maximum(piece, 0)]  # [K, k, 4]
  lo = rect[..., :2]
  origin = jnp.clip(xy - REGION // 2, lo, jnp.maximum(rect[..., 2:] - REGION, lo))  # in the piece

  def cut(tile_i, origin_i, type_i):  # one patch: [12, 12, 4]
    rgb = jax.lax.dynamic_slice(x[tile_i], (origin_i[1], origin_i[0], 0), (REGION, REGION, 3))
    heat = jax.lax.dynamic_slice(
      maps[tile_i], (origin_i[1], origin_i[0], type_i), (REGION, REGION, 1)
    )
    return jnp.concatenate([rgb, heat], axis=-1)

  types = jnp.broadcast_to(jnp.arange(k)[:, None], tile.shape)
  patches = jax.vmap(jax.vmap(cut))(tile, origin, types)  # [K, k, 12, 12, 4]
  return {'value': value, 'tile': tile, 'xy': xy, 'piece': piece, 'origin': origin,
          'patches': patches}  # fmt: skip


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
  """x [K, M, ...] at index [K, m] along axis 1 -> [K, m, ...]."""
  return jnp.take_along_axis(x, index.reshape(*index.shape, *[1] * (x.ndim - 2)), axis=1)


def _to_image(xy: jax.Array, scale: jax.Array) -> jax.Array:
  """Level pixels [..., 2] -> image pixels, with per-axis scales [..., 2] (sx, sy)."""
  return (xy + 0.5) / scale - 0.5


def detect(
  fine_fn: Callable[[jax.Array], jax.Array] | None,
  cand: dict[str, jax.Array],
  template: jax.Array,
  crop_scale: float,
  params: ScanParams,
) -> dict[str, jax.Array]:
  """Program 2: NMS over one image's merged candidates, branches, proposals and faces.

  Args:
    fine_fn: [B, K, 24, 24, 4] -> [B, K, 24, 24] branches, or None (backbone only).
    cand: the image's best M = `candidates` candidates per type, merged over its chunks:
      'value' [K, M], 'valid' [K, M], 'xy' [K, M, 2] and 'origin' [K, M, 2] in level pixels,
      'scale' [K, M, 2] (sx, sy) level pixels per image pixel, 'iso_scale' [K, M] the level's
      nominal scale 32 · step^l / min(h, w), 'level' [K, M], 'patches' [K, M, 12, 12, 4].
    template: [K, 2] mean landmark positions in the training window ([0, 1] units).
    crop_scale: training window side / face box side.
    params: static `ScanParams`.

  Returns:
    With m = params.detections and F = params.max_faces:
    'points' [K, m, 2] refined (or coarse) image-pixel landmarks of each type, 'valid' [K, m],
    'score' [K, m] coarse response v (the ranking), 'fine_score' [K, m], 'coarse_points'
    [K, m, 2], 'level' [K, m]; face proposals 'proposals' [K·m, 4] with 'proposal_score' and
    'proposal_valid' (after NMS per type and across types); 'faces' [F, 4] boxes, 'face_score',
    'face_valid' [F], 'face_points' [F, K, 2] with 'face_point_valid' [F, K].
  """
  value, ok = cand['value'], cand['valid']
  centre = _to_image(cand['xy'], cand['scale'])  # [K, M, 2]
  regions = geometry.centred_boxes(centre, REGION / cand['iso_scale'])
  keep = nms.nms(regions, value, ok, params.nms_iou)
  sel, valid = nms.top_valid(value, keep, min(params.detections, value.shape[1]))
  v, origin, scale, iso, lv, patches = (
    _gather(cand[key], sel) for key in ('value', 'origin', 'scale', 'iso_scale', 'level', 'patches')
  )  # [K, m, ...]
  k, m = v.shape
  coarse_xy, _ = heatmaps.top_mean(patches[..., 3].reshape(k * m, REGION, REGION, 1), TOP_N)
  coarse = _to_image(coarse_xy.reshape(k, m, 2) + origin, scale)
  if fine_fn is None:
    points, fine_score = coarse, v
  else:
    big = jax.image.resize(patches, (k, m, PATCH, PATCH, 4), 'linear')
    fine_maps = fine_fn(big.transpose(1, 0, 2, 3, 4)).transpose(1, 0, 2, 3)  # [K, m, 24, 24]
    fine_xy, fine_score = heatmaps.top_mean(fine_maps.reshape(k * m, PATCH, PATCH, 1), TOP_N)
    fine_xy = (fine_xy.reshape(k, m, 2) + 0.5) * (REGION / PATCH) - 0.5  # 12-pixel patch
    points = _to_image(fine_xy + origin, scale)
    fine_score = fine_score.reshape(k, m)
  faces = proposals.group_detections(
    points[None], iso[None], v[None], valid[None], template, crop_scale, params
  )
  return {
    'points': points,
    'valid': valid,
    'score': jnp.where(valid, v, 0.0),
    'fine_score': jnp.where(valid, fine_score, 0.0),
    'coarse_points': coarse,
    'level': lv,
    **{key: val[0] for key, val in faces.items()},
  }


# ------------------------------------------------------------------------------ host side


def merge_candidates(
  found: list[dict[str, np.ndarray]],
  parts: list[tiling.Chunk],
  layout: tiling.Layout,
  smaller_side: int,
  count: int,
  step: float = pyramid.SCALE_STEP,
) -> dict[str, np.ndarray]:
  """The best `count` candidates per type over an image's chunks, in level pixels (numpy).

  Args:
    found: `tile_candidates` outputs of each chunk (numpy).
    parts: the chunks they came from.
    layout: the image's packed pyramid.
    smaller_side: min(h, w) of the image.
    count: M, candidates per type kept (padded with invalid slots).
    step: the pyramid's scale step between levels.

  Returns:
    the `cand` dict of `detect`.
  """
  shift, piece_level = tiling.piece_table(layout)
  fields = {key: [] for key in ('value', 'xy', 'origin', 'level', 'patches')}
  for out, part in zip(found, parts, strict=True):
    glob = tiling.global_pieces(part, out['piece'])
    fields['value'].append(np.where(out['piece'] >= 0, out['value'], -np.inf))
    fields['xy'].append(out['xy'] + shift[glob])
    fields['origin'].append(out['origin'] + shift[glob])
    fields['level'].append(piece_level[glob])
    fields['patches'].append(out['patches'])
  merged = {key: np.concatenate(val, axis=1) for key, val in fields.items()}
  order = np.argsort(-merged['value'], axis=1, kind='stable')[:, :count]  # [K, ≤M]
  take = lambda a: np.take_along_axis(a, order.reshape(*order.shape, *[1] * (a.ndim - 2)), axis=1)
  cand = {key: take(val) for key, val in merged.items()}
  pad = count - order.shape[1]
  if pad:
    widths = lambda a: [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2)
    cand = {key: np.pad(val, widths(val), constant_values=-np.inf if key == 'value' else 0)
            for key, val in cand.items()}  # fmt: skip
  cand['valid'] = np.isfinite(cand['value'])
  cand['value'] = np.where(cand['valid'], cand['value'], 0.0).astype(np.float32)
  cand['scale'] = layout.level_scale[cand['level']].astype(np.float32)  # [K, M, 2]
  cand['iso_scale'] = (pyramid.level_side(cand['level'], step) / smaller_side).astype(np.float32)
  cand['xy'], cand['origin'] = cand['xy'].astype(np.float32), cand['origin'].astype(np.float32)
  return cand


class Programs:
  """The scanner's two jitted programs: whatever the photos, they compile once each.

  Args:
    coarse_fn: `fn(variables, tiles [C, T, T, 3] float) -> maps [C, T, T, K]`.
    fine_fn: `fn(variables, patches [B, K, 24, 24, 4]) -> [B, K, 24, 24]`, or None.
    template, crop_scale, params: as in `detect`.
  """

  def __init__(self, coarse_fn, fine_fn, template, crop_scale: float, params: ScanParams):
    self.params = params
    self.chunk = tiling.chunk_size()
    template = jnp.asarray(template)
    self.candidates = jax.jit(
      lambda v, tiles, owner, rects: tile_candidates(
        lambda x: coarse_fn(v, x), tiles, owner, rects, params
      )
    )
    self.detect = jax.jit(
      lambda v, cand: detect(
        None if fine_fn is None else (lambda p: fine_fn(v, p)), cand, template, crop_scale, params
      )
    )

  def scan(self, variables, image: np.ndarray, levels: int) -> dict[str, np.ndarray]:
    """One uint8 [H, W, 3] image -> the `detect` outputs (numpy)."""
    params = self.params
    layout = tiling.pack(image, levels, params.scale_step, params.tile)
    parts = tiling.chunks(layout, self.chunk)
    found = [
      jax.device_get(self.candidates(variables, part.tiles, part.owner, part.rects))
      for part in parts
    ]
    smaller = min(image.shape[:2])
    cand = merge_candidates(found, parts, layout, smaller, params.candidates, params.scale_step)
    return jax.device_get(self.detect(variables, cand))

  def compiled(self) -> int:
    """Programs compiled so far (at most 2)."""
    return self.candidates._cache_size() + self.detect._cache_size()


class Scanner:
  """The pyramid scanner of a BB-FCN model (`Scanner.load(folder)` for a model folder).

  Every image, whatever its size or aspect ratio, runs the same two programs
  (`lmjax.scan.tiling`): a 12-megapixel photo compiles nothing new after a VGA one.

  Args:
    spec: the model's `model.json` dict (`lmjax.models.registry`; it needs `face_template`).
    variables: its {params}.
    levels: pyramid levels L for every image; or
    min_face: the smallest face box side (pixels) to find: L is chosen per image from its
      smaller side (`pyramid.levels_for_min_face`). Default: levels = 12.
    refine: run the branches (False: backbone-only ablation of the same model).
    **params: other `ScanParams` fields (threshold, candidates, detections, scale_step, tile,
      ...).
  """

  def __init__(
    self,
    spec: dict,
    variables: dict,
    levels: int | None = None,
    min_face: float | None = None,
    refine: bool = True,
    **params,
  ):
    spec = registry.validate(spec)
    compile_cache.enable()  # a later process compiles nothing this one compiled
    if spec['experiment'] != 'bbfcn':
      raise ValueError(f"field 'experiment' is {spec['experiment']!r}; the scanner needs bbfcn")
    if spec['variant'] == 'regression':
      raise ValueError('the scanner needs response maps; the regression baseline has none')
    if levels is not None and min_face is not None:
      raise ValueError('give either levels or min_face, not both')
    self.template = registry.face_template(spec)
    self.model, self.variables, self.spec = registry.build(spec), variables, spec
    self.min_face = min_face
    refine = refine and spec['variant'] == 'bbfcn'
    pyramid.check_step(params.get('scale_step', pyramid.SCALE_STEP))
    if params.get('tile', 0) % 4 or params.get('tile', 0) < 0:
      raise ValueError(f'tile is {params["tile"]}; expected 0 (default) or a multiple of 4')
    self.params = ScanParams(levels=levels or ScanParams.levels, refine=refine, **params)
    self.schema = landmarks.get_schema(spec['num_points'])
    model = self.model
    self.programs = Programs(
      lambda v, x: model.apply(v, x, method=BBFCN.coarse),
      (lambda v, p: model.apply(v, p, method=BBFCN.fine)) if refine else None,
      self.template,
      spec['crop_scale'],
      self.params,
    )
    self._regroup = None

  @classmethod
  def load(cls, directory: str, **kwargs) -> Scanner:
    """Scanner of a BB-FCN model folder (`variant` bbfcn or backbone_only)."""
    pyramid.check_step(kwargs.get('scale_step', pyramid.SCALE_STEP))  # not the folder's fault
    _, variables, spec = checkpoint.load_model(directory, 'bbfcn')
    try:
      return cls(spec, variables, **kwargs)
    except ValueError as e:
      raise ValueError(f'{registry.spec_path(directory)}: {e}') from None

  def levels_for(self, smaller_side: int) -> int:
    """Pyramid levels used for an image whose smaller side is `smaller_side` pixels."""
    if self.min_face is None:
      return self.params.levels
    face_px = pyramid.BASE_SIDE / self.spec['crop_scale']  # face box side in the window
    return pyramid.levels_for_min_face(self.min_face, smaller_side, face_px, self.params.scale_step)

  def regroup(self, out: dict[str, np.ndarray], points: np.ndarray, image_shape) -> dict:
    """The proposal and face keys of `out` (one image's scan) recomputed for other `points`.

    `regroup(out, out['coarse_points'], image.shape)` gives exactly what a `refine=False`
    scan returns, without scanning again: the candidates, NMS and ranking do not depend on the
    branches, only the points and the proposals built on them do.
    """
    if self._regroup is None:
      template, crop_scale, params = (
        jnp.asarray(self.template),
        self.spec['crop_scale'],
        self.params,
      )
      self._regroup = jax.jit(
        lambda p, s, v, ok: proposals.group_detections(p, s, v, ok, template, crop_scale, params)
      )
    side = pyramid.level_side(out['level'].astype(np.float32), self.params.scale_step)
    scale = side / float(min(image_shape[:2]))
    faces = self._regroup(points[None], scale[None], out['score'][None], out['valid'][None])
    return {k: v[0] for k, v in jax.device_get(faces).items()}

  def compiled_programs(self) -> int:
    """How many programs have been compiled so far (2 once an image was scanned)."""
    return self.programs.compiled()

  def scan_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """`scan` of each image (images of any sizes; they share the same programs)."""
    return [self.scan(image) for image in images]

  def scan(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """All landmark detections and faces of one image [H, W, 3] uint8 (see `detect`)."""
    image = image_ops.check_image(image)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    return self.programs.scan(self.variables, image, self.levels_for(min(image.shape[:2])))
