"""Landmarks of every face in a whole image: the BB-FCN pyramid scanner (paper §III-E-2, §IV-F).

    scanner = Scanner.load('pretrained/bbfcn5', min_face=40)   # or levels=L
    scanner = Scanner(spec, variables, levels=L)       # a model in memory (model.json spec)
    out = scanner.scan(image)          # numpy dict, see `scan_images` for the keys
    out['faces'], out['face_points']   # grouped faces: boxes [F, 4], landmarks [F, K, 2]

One jitted function per input-size bucket (`scan_images`) does the whole thing on device:

    pyramid (L levels, fixed canvases)  --backbone-->  coarse maps per level
    3×3 peaks above `threshold`, best `candidates` per type   {k, l, v, (x, y)}
    12×12 regions mapped to the image, NMS per type across levels (IoU 0.5)
    best `detections` survivors per type: 12×12 RGB + map patches at their level → 24×24
    --branch k-->  fine map  --Ave{M_f, 13}-->  refined location in the image
    face proposals (one window per detection) → NMS per type, then across types → faces
    (`lmjax.scan.proposals`)

Every stage has a fixed budget with validity masks instead of variable-length lists, so
shapes never depend on the image content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core import geometry, heatmaps, image_ops, landmarks, nms
from lmjax.core.heatmaps import TOP_N
from lmjax.models import registry
from lmjax.models.bbfcn import BBFCN, PATCH
from lmjax.scan import proposals, pyramid
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
  """

  levels: int = 12
  threshold: float = 0.2
  candidates: int = 128
  detections: int = 30
  nms_iou: float = 0.5
  face_iou: float = 0.5
  max_faces: int = 16
  refine: bool = True


def _candidates(maps: jax.Array, content: jax.Array, threshold: float, k: int):
  """Best k 3×3 peaks per type of one level: ([N, K, k] values, [N, K, k, 2] int (x, y)).

  Args:
    maps: [N, rows, cols, K] coarse maps.
    content: [N, 2] (rows, cols) of the scaled image inside the canvas (float).
  """
  n, rows, cols, _ = maps.shape
  pooled = jax.lax.reduce_window(maps, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1,) * 4, 'SAME')
  ys, xs = jnp.arange(rows)[:, None], jnp.arange(cols)[None, :]
  inside = (ys[None] < content[:, 0, None, None]) & (xs[None] < content[:, 1, None, None])
  peak = (maps >= pooled) & (maps > threshold) & inside[..., None]
  flat = jnp.where(peak, maps, -jnp.inf).transpose(0, 3, 1, 2).reshape(n, maps.shape[-1], -1)
  values, index = jax.lax.top_k(flat, min(k, rows * cols))
  return values, jnp.stack([index % cols, index // cols], axis=-1)


def _patches(canvases, maps, level, origins):
  """RGB + map-channel-k patches [N, K, m, 12, 12, 4] at each detection's level.

  Args:
    canvases / maps: per level [N, rows, cols, 3] / [N, rows, cols, K].
    level: [N, K, m] int level of each detection.
    origins: [N, K, m, 2] int top-left corners (x0, y0) in level pixels (clipped per level).
  """

  def cut(image, heat, origin):  # [rows, cols, 3], [rows, cols], [2] -> [12, 12, 4]
    rgb = jax.lax.dynamic_slice(image, (origin[1], origin[0], 0), (REGION, REGION, 3))
    map_k = jax.lax.dynamic_slice(heat, (origin[1], origin[0]), (REGION, REGION))
    return jnp.concatenate([rgb, map_k[..., None]], axis=-1)

  per_m = jax.vmap(cut, in_axes=(None, None, 0))
  per_k = jax.vmap(per_m, in_axes=(None, 0, 0))  # map channel k for type k
  per_n = jax.vmap(per_k, in_axes=(0, 0, 0))
  out = None
  for lv, (image, heat) in enumerate(zip(canvases, maps, strict=True)):
    rows, cols = image.shape[1:3]
    o = jnp.clip(origins, 0, jnp.array([cols - REGION, rows - REGION]))
    cut_l = per_n(image, jnp.moveaxis(heat, -1, 1), o)
    out = cut_l if out is None else jnp.where((level == lv)[..., None, None, None], cut_l, out)
  return out


def _clipped_origins(centres, level, plan):
  """Top-left corners [N, K, m, 2] of the 12×12 regions around level-pixel centres."""
  origin = jnp.round(centres).astype(jnp.int32) - REGION // 2
  limits = jnp.asarray([(c - REGION, r - REGION) for r, c in plan.canvases], jnp.int32)
  return jnp.clip(origin, 0, limits[level])


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
  """x [N, K, M, ...] at index [N, K, m] along axis 2 -> [N, K, m, ...]."""
  return jnp.take_along_axis(x, index.reshape(*index.shape, *[1] * (x.ndim - 3)), axis=2)


def scan_images(
  coarse_fn: Callable[[jax.Array], jax.Array],
  fine_fn: Callable[[jax.Array], jax.Array] | None,
  images: jax.Array,
  sizes: jax.Array,
  template: jax.Array,
  crop_scale: float,
  params: ScanParams,
  granularity: int,
) -> dict[str, jax.Array]:
  """The scanner on a batch of bucket-padded images (jit with everything but arrays static).

  Args:
    coarse_fn: [N, rows, cols, 3] -> [N, rows, cols, K] backbone maps (any size ÷ 4).
    fine_fn: [B, K, 24, 24, 4] -> [B, K, 24, 24] branches, or None (backbone only).
    images: [N, H, W, 3] pixels in [0, 255], each image at the top left, edge-padded.
    sizes: [N, 2] int true (h, w) of each image.
    template: [K, 2] mean landmark positions in the training window ([0, 1] units).
    crop_scale: training window side / face box side.
    params: static `ScanParams`.
    granularity: bucket granularity of `images` (see `pyramid.plan_levels`).

  Returns:
    Per image (leading N), with m = params.detections and F = params.max_faces:
    'points' [K, m, 2] refined (or coarse) image-pixel landmarks of each type, 'valid' [K, m],
    'score' [K, m] coarse response v (the ranking), 'fine_score' [K, m], 'coarse_points'
    [K, m, 2], 'level' [K, m]; face proposals 'proposals' [K·m, 4] with 'proposal_score' and
    'proposal_valid' (after NMS per type and across types); 'faces' [F, 4] boxes, 'face_score',
    'face_valid' [F], 'face_points' [F, K, 2] with 'face_point_valid' [F, K].
  """
  plan = pyramid.plan_levels(images.shape[1:3], params.levels, granularity)
  scale = pyramid.scales(sizes, params.levels)  # [N, L]
  canvases = pyramid.build_levels(images, scale, plan)
  maps = [coarse_fn(c) for c in canvases]  # [N, rows_l, cols_l, K]
  values, where, level = [], [], []
  for lv, m in enumerate(maps):
    content = sizes.astype(jnp.float32) * scale[:, lv, None]
    v, xy = _candidates(m, content, params.threshold, params.candidates)
    values.append(v), where.append(xy), level.append(jnp.full(v.shape, lv, jnp.int32))
  values, where, level = (jnp.concatenate(x, axis=2) for x in (values, where, level))
  best, ok = nms.top_valid(values, jnp.isfinite(values), min(params.candidates, values.shape[2]))
  values, where, level = (_gather(x, best) for x in (values, where, level))  # [N, K, M]
  s = jnp.take_along_axis(scale[:, None, :], level, axis=2)  # [N, K, M]
  centre = pyramid.to_image(where.astype(jnp.float32), s)
  regions = geometry.centred_boxes(centre, REGION / s)
  keep = nms.nms(regions, values, ok, params.nms_iou)
  sel, valid = nms.top_valid(values, keep, min(params.detections, values.shape[2]))
  v, xy, lv, s = (_gather(x, sel) for x in (values, where, level, s))  # [N, K, m]
  origins = _clipped_origins(xy.astype(jnp.float32), lv, plan)
  patches = _patches(canvases, maps, lv, origins)  # [N, K, m, 12, 12, 4]
  n, k, m = v.shape
  coarse_xy, _ = heatmaps.top_mean(patches[..., 3].reshape(n * k * m, REGION, REGION, 1), TOP_N)
  coarse = pyramid.to_image(coarse_xy.reshape(n, k, m, 2) + origins, s)
  if fine_fn is None:
    points, fine_score = coarse, v
  else:
    big = jax.image.resize(patches, (n, k, m, PATCH, PATCH, 4), 'linear')
    branch_in = big.transpose(0, 2, 1, 3, 4, 5).reshape(n * m, k, PATCH, PATCH, 4)
    fine_maps = fine_fn(branch_in).reshape(n, m, k, PATCH, PATCH).transpose(0, 2, 1, 3, 4)
    flat = fine_maps.reshape(n * k * m, PATCH, PATCH, 1)
    fine_xy, fine_score = heatmaps.top_mean(flat, TOP_N)
    fine_xy = (fine_xy.reshape(n, k, m, 2) + 0.5) * (REGION / PATCH) - 0.5  # 12-pixel patch
    points = pyramid.to_image(fine_xy + origins, s)
    fine_score = fine_score.reshape(n, k, m)
  return {
    'points': points,
    'valid': valid,
    'score': jnp.where(valid, v, 0.0),
    'fine_score': jnp.where(valid, fine_score, 0.0),
    'coarse_points': coarse,
    'level': lv,
    **proposals.group_detections(points, s, v, valid, template, crop_scale, params),
  }


# ------------------------------------------------------------------------------ host side


class Scanner:
  """The pyramid scanner of a BB-FCN model (`Scanner.load(folder)` for a model folder).

  Args:
    spec: the model's `model.json` dict (`lmjax.models.registry`; it needs `face_template`).
    variables: its {params}.
    levels: pyramid levels L for every image; or
    min_face: the smallest face box side (pixels) to find: L is chosen per image from its
      smaller side (`pyramid.levels_for_min_face`). Default: levels = 12.
    refine: run the branches (False: backbone-only ablation of the same model).
    bucket: images are padded to multiples of this many pixels (one program per bucket and L).
    **params: other `ScanParams` fields (threshold, candidates, detections, ...).
  """

  def __init__(
    self,
    spec: dict,
    variables: dict,
    levels: int | None = None,
    min_face: float | None = None,
    refine: bool = True,
    bucket: int = 32,
    **params,
  ):
    spec = registry.validate(spec)
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
    self.params = ScanParams(levels=levels or ScanParams.levels, refine=refine, **params)
    self.bucket = bucket
    self.schema = landmarks.get_schema(spec['num_points'])
    self._programs = {}
    self._regroup = None

  @classmethod
  def load(cls, directory: str, **kwargs) -> Scanner:
    """Scanner of a BB-FCN model folder (`variant` bbfcn or backbone_only)."""
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
    return pyramid.levels_for_min_face(self.min_face, smaller_side, face_px)

  def program(self, levels: int):
    """The jitted `fn(variables, images [N, H, W, 3], sizes [N, 2]) -> outputs` for L levels."""
    if levels not in self._programs:
      model, spec = self.model, self.spec
      params = dataclasses.replace(self.params, levels=levels)
      template = jnp.asarray(self.template)

      def run(variables, images, sizes):
        coarse_fn = lambda x: model.apply(variables, x, method=BBFCN.coarse)
        fine = lambda p: model.apply(variables, p, method=BBFCN.fine)
        return scan_images(
          coarse_fn, fine if params.refine else None, images, sizes, template,
          spec['crop_scale'], params, self.bucket,
        )  # fmt: skip

      self._programs[levels] = jax.jit(run)
    return self._programs[levels]

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
    smaller = float(min(image_shape[:2]))
    scale = pyramid.BASE_SIDE * pyramid.SCALE_STEP ** out['level'].astype(np.float32) / smaller
    faces = self._regroup(points[None], scale[None], out['score'][None], out['valid'][None])
    return {k: v[0] for k, v in jax.device_get(faces).items()}

  def compiled_programs(self) -> int:
    """How many programs (input buckets × batch sizes × depths) have been compiled so far."""
    return sum(fn._cache_size() for fn in self._programs.values())

  def pad(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bucket-padded batch [N, H, W, 3] uint8 and true sizes [N, 2] of same-bucket images."""
    checked = [image_ops.check_image(im) for im in images]
    sizes = np.array([im.shape[:2] for im in checked], np.int32)
    hb, wb = pyramid.bucket_size(*sizes.max(0), self.bucket)
    out = np.empty((len(checked), hb, wb, 3), np.uint8)
    for i, im in enumerate(checked):
      im = np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im
      h, w = im.shape[:2]
      out[i] = np.pad(im, ((0, hb - h), (0, wb - w), (0, 0)), mode='edge')
    return out, sizes

  def scan_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """`scan` of several images of one bucket in one call (faster on accelerators).

    With `min_face`, the depth is that of the image with the largest smaller side.
    """
    batch, sizes = self.pad(images)
    levels = self.levels_for(int(sizes.min(axis=1).max()))
    out = jax.device_get(self.program(levels)(self.variables, batch, sizes))
    return [{k: v[i] for k, v in out.items()} for i in range(len(images))]

  def scan(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """All landmark detections and faces of one image [H, W, 3] uint8 (see `scan_images`)."""
    return self.scan_batch([image])[0]
