"""The pyramid scanner: pyramid geometry, detections on hand-made maps, compile counts."""

import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.data import templates
from lmjax.models import registry
from lmjax.scan import pyramid, scanner, tiling

K = 5


def test_pyramid_depth_for_a_smallest_face():
  assert pyramid.level_side(0) == 32
  assert pyramid.level_side(2) == pytest.approx(32 * 1.16**2)
  # A face box of 29 window pixels (32 / 1.1) must reach 29 px at the top level.
  levels = pyramid.levels_for_min_face(80, 480, 32 / 1.1)
  assert 29.09 * 480 / (32 * 80) <= 1.16 ** (levels - 1) < 1.16 * 29.1 * 480 / (32 * 80)


def test_a_coarser_scale_step_needs_fewer_levels_for_the_same_reach():
  assert pyramid.level_side(3, 1.41) == pytest.approx(32 * 1.41**3)
  for step in (1.16, 1.26, 1.41):
    levels = pyramid.levels_for_min_face(40, 480, 32 / 1.1, step)
    need = 32 / 1.1 * 480 / (32 * 40)  # the top level must reach it, the one below must not
    assert step ** (levels - 2) < need <= step ** (levels - 1)
  assert pyramid.levels_for_min_face(40, 480, 32 / 1.1, 1.41) == 8
  assert pyramid.levels_for_min_face(40, 480, 32 / 1.1) == 18
  for bad in (1.0, 0.9, 2.5):
    with pytest.raises(ValueError, match='scale_step is'):
      pyramid.check_step(bad)


def test_pack_with_a_step_and_a_tile_size():
  image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
  layout = tiling.pack(image, 6, step=1.41, tile=128)
  sizes = tiling.level_sizes(300, 400, 6, 1.41)
  assert [min(s) for s in sizes] == [round(32 * 1.41**lv) for lv in range(6)]
  assert layout.tiles.shape[1:] == (128, 128, 3) and layout.owner.shape[1:] == (128, 128)
  assert all(p.width <= 128 and p.height <= 128 for p in layout.pieces)
  counts = np.bincount(layout.owner[layout.owner >= 0], minlength=len(layout.pieces))
  per_level = np.zeros(6, int)
  for piece, count in zip(layout.pieces, counts, strict=True):
    per_level[piece.level] += count
  np.testing.assert_array_equal(per_level, [r * c for r, c in sizes])
  assert tiling.chunks(layout, 2)[0].tiles.shape == (2, 128, 128, 3)


@pytest.mark.parametrize('length', [40, 256, 257, 600, 1500])
def test_cuts_own_every_pixel_once_away_from_cut_edges(length):
  owned = np.zeros(length, int)
  for start, size, lo, hi in tiling.cuts(length):
    assert size <= tiling.TILE and 0 <= start <= lo < hi <= min(length, start + size)
    owned[lo:hi] += 1
    if start > 0:  # a cut edge on the left: owned pixels keep MARGIN of context
      assert lo - start >= tiling.MARGIN
    if start + size < length:
      assert start + size - hi >= tiling.MARGIN
  np.testing.assert_array_equal(owned, 1)


def test_pack_places_every_level_pixel_once():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (700, 500, 3), dtype=np.uint8)
  layout = tiling.pack(image, 14)  # top level 500 × 700: cut into pieces
  sizes = tiling.level_sizes(700, 500, 14)
  assert min(sizes[-1]) == round(pyramid.level_side(13)) and min(sizes[0]) == 32
  counts = np.bincount(layout.owner[layout.owner >= 0], minlength=len(layout.pieces))
  per_level = np.zeros(14, int)
  for piece, count in zip(layout.pieces, counts, strict=True):
    per_level[piece.level] += count
    tile = layout.tiles[piece.tile, piece.y0 : piece.y0 + piece.height]
    assert tile.shape[0] == piece.height  # the piece fits in its tile
  np.testing.assert_array_equal(per_level, [r * c for r, c in sizes])
  np.testing.assert_allclose(layout.level_scale[0], (sizes[0][1] / 500, sizes[0][0] / 700))
  # the top level is the photo resized, piece by piece
  import cv2

  top = cv2.resize(image, sizes[-1][::-1], interpolation=cv2.INTER_AREA)
  for p in layout.pieces:
    if p.level == 13:
      got = layout.tiles[p.tile, p.y0 : p.y0 + p.height, p.x0 : p.x0 + p.width]
      np.testing.assert_array_equal(got, top[p.ly0 : p.ly0 + p.height, p.lx0 : p.lx0 + p.width])
  for size in (1, 4):
    parts = tiling.chunks(layout, size)
    assert sum(len(c.pieces) for c in parts) == len(layout.pieces)
    assert all(c.tiles.shape == (size, tiling.TILE, tiling.TILE, 3) for c in parts)
    assert len(parts) == -(-len(layout.tiles) // size)


def _blobs(size, points, sigma=3.0):
  """uint8 image with a Gaussian bright blob at each (x, y) (no flat tops: no ties)."""
  yy, xx = np.mgrid[: size[0], : size[1]]
  heat = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in points)
  return np.repeat((255 * np.clip(heat, 0, 1)).astype(np.uint8)[..., None], 3, axis=2)


def _bright(variables, x):  # a "backbone" responding to bright pixels: [N, H, W, 3] -> [.., K]
  return jnp.repeat(x[..., :1] * 0.5 + 0.5, K, axis=-1)


def _identity_branch(variables, patches):  # a "branch" returning the coarse map it was given
  return patches[..., 3]


@pytest.mark.parametrize('refine', [False, True])
@pytest.mark.parametrize('size', [(120, 200), (700, 300)])
def test_detections_land_on_the_bright_spots(refine, size):
  points = [(40.0, 30.0), (150.0, 95.0), (size[1] - 25.0, size[0] - 20.0)]
  image = _blobs(size, points)
  params = scanner.ScanParams(levels=12, threshold=0.5, detections=6, refine=refine)
  template = np.full((K, 2), 0.5, np.float32)
  programs = scanner.Programs(_bright, _identity_branch if refine else None, template, 1.0, params)
  out = programs.scan(None, image, params.levels)
  assert out['points'].shape == (K, 6, 2)
  best = out['points'][0][out['valid'][0]]
  for x, y in points:  # each blob is found within a pixel by some kept detection
    assert np.min(np.hypot(best[:, 0] - x, best[:, 1] - y)) < 1.0, (x, y, best)
  assert np.all(out['score'][~out['valid']] == 0)
  # Nothing is detected outside the image or in the dark.
  assert np.all((best >= 0) & (best < [size[1], size[0]]))
  faces = out['faces'][out['face_valid']]
  centres = (faces[:, :2] + faces[:, 2:]) / 2  # template 0.5: faces centred on the detections
  for x, y in points:
    assert np.min(np.hypot(centres[:, 0] - x, centres[:, 1] - y)) < 1.5
  assert programs.compiled() == 2


def test_a_coarse_step_and_small_tiles_still_land_on_the_bright_spots():
  size, points = (150, 260), [(40.0, 30.0), (150.0, 95.0), (235.0, 130.0)]
  params = scanner.ScanParams(
    levels=6, threshold=0.5, detections=6, scale_step=1.41, tile=96
  )  # the top level is the image (32 · 1.41^5 ≈ 179 ≥ 150): pieces cut at 96 px
  template = np.full((K, 2), 0.5, np.float32)
  programs = scanner.Programs(_bright, _identity_branch, template, 1.0, params)
  out = programs.scan(None, _blobs(size, points), params.levels)
  best = out['points'][0][out['valid'][0]]
  for x, y in points:
    assert np.min(np.hypot(best[:, 0] - x, best[:, 1] - y)) < 1.0, (x, y, best)
  assert set(out['level'][0][out['valid'][0]]) <= set(range(6))


def _random_model(num_points=K):
  """(spec, fresh variables) of a BB-FCN with `num_points` types."""
  spec = registry.make_spec(
    'bbfcn', variant='bbfcn', num_points=num_points, size=32, refine_size=64, crop_scale=1.1,
    dataset='mtfl', face_template=templates.face_template(num_points, 'mtfl', 1.1),
  )  # fmt: skip
  return spec, registry.init(spec)


def test_two_programs_serve_every_image_size():
  sc = scanner.Scanner(*_random_model(), levels=3, detections=4, candidates=16)
  rng = np.random.default_rng(0)
  image = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
  for h, w in [(100, 120), (97, 127), (128, 101), (40, 900), (1200, 700)]:
    out = sc.scan(image(h, w))
  assert sc.compiled_programs() == 2
  assert out['points'].shape == (K, 4, 2) and out['faces'].shape == (16, 4)
  assert len(sc.scan_batch([image(100, 100), image(310, 120)])) == 2
  assert sc.compiled_programs() == 2


def test_regroup_of_coarse_points_equals_a_backbone_only_scan():
  spec, variables = _random_model()
  kw = dict(levels=3, detections=6, candidates=16, threshold=-1.0)
  image = np.random.default_rng(2).integers(0, 255, (90, 110, 3), dtype=np.uint8)
  full = scanner.Scanner(spec, variables, **kw)
  out = full.scan(image)
  plain = scanner.Scanner(spec, variables, refine=False, **kw).scan(image)
  assert out['valid'].sum() > 0 and not np.allclose(out['points'], out['coarse_points'])
  np.testing.assert_allclose(out['coarse_points'], plain['points'], atol=1e-4)
  regrouped = full.regroup(out, out['coarse_points'], image.shape)
  for key in ('proposals', 'proposal_score', 'faces', 'face_score', 'face_points'):
    np.testing.assert_allclose(regrouped[key], plain[key], atol=1e-3, err_msg=key)
  for key in ('proposal_valid', 'face_valid', 'face_point_valid'):
    np.testing.assert_array_equal(regrouped[key], plain[key], err_msg=key)


def test_min_face_picks_the_depth_per_image():
  sc = scanner.Scanner(*_random_model(), min_face=40, detections=2, candidates=8)
  assert sc.levels_for(480) == pyramid.levels_for_min_face(40, 480, 32 / 1.1)
  assert sc.levels_for(60) < sc.levels_for(120) < sc.levels_for(480)
  rng = np.random.default_rng(1)
  sc.scan(rng.integers(0, 255, (60, 70, 3), dtype=np.uint8))
  sc.scan(rng.integers(0, 255, (500, 900, 3), dtype=np.uint8))  # deeper pyramid, same programs
  assert sc.compiled_programs() == 2
  with pytest.raises(ValueError, match='either levels or min_face'):
    scanner.Scanner(*_random_model(), levels=3, min_face=40)
  coarse = scanner.Scanner(*_random_model(), min_face=40, scale_step=1.41)
  assert coarse.levels_for(480) == pyramid.levels_for_min_face(40, 480, 32 / 1.1, 1.41)
  with pytest.raises(ValueError, match=r'scale_step is 1\.0'):
    scanner.Scanner(*_random_model(), min_face=40, scale_step=1.0)
  with pytest.raises(ValueError, match='tile is 30'):
    scanner.Scanner(*_random_model(), min_face=40, tile=30)


def test_scanner_rejects_bad_input():
  sc = scanner.Scanner(*_random_model(), levels=2)
  with pytest.raises(ValueError, match='uint8'):
    sc.scan(np.zeros((50, 50, 3), np.float32))
  with pytest.raises(ValueError, match='too small'):
    sc.scan(np.zeros((4, 50, 3), np.uint8))
  spec, variables = _random_model()
  with pytest.raises(ValueError, match='regression'):
    scanner.Scanner({**spec, 'variant': 'regression'}, variables)
  with pytest.raises(ValueError, match="field 'face_template' missing"):
    scanner.Scanner({k: v for k, v in spec.items() if k != 'face_template'}, variables)


def test_face_template_matches_the_training_crop():
  t = templates.face_template(5, 'mtfl', 1.1)
  assert t.shape == (5, 2) and np.all((t > 0.15) & (t < 0.85))
  assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above the nose above the mouth
  np.testing.assert_allclose(t[0, 0] + t[1, 0], 1.0, atol=1e-6)  # symmetric
  t68 = templates.face_template(68, '300w', 1.2)
  assert t68.min() > 0 and t68.max() < 1
  with pytest.raises(ValueError, match='num_points=29'):
    templates.face_template(29, 'cofw', 1.1)
