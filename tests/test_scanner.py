"""The pyramid scanner: pyramid geometry, detections on hand-made maps, compile counts."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.data import templates
from lmjax.models import registry
from lmjax.scan import pyramid, scanner

K = 5


def test_pyramid_levels_and_canvases():
  assert pyramid.level_side(0) == 32
  assert pyramid.level_side(2) == pytest.approx(32 * 1.16**2)
  # A face box of 29 window pixels (32 / 1.1) must reach 29 px at the top level.
  levels = pyramid.levels_for_min_face(80, 480, 32 / 1.1)
  assert 29.09 * 480 / (32 * 80) <= 1.16 ** (levels - 1) < 1.16 * 29.1 * 480 / (32 * 80)
  plan = pyramid.plan_levels((256, 320), 6, 32)
  for h, w in itertools.product(range(225, 257, 7), range(289, 321, 7)):
    scale = np.asarray(pyramid.scales(jnp.array([[h, w]]), 6))[0]
    assert min(h, w) * scale[0] == pytest.approx(32, rel=1e-5)
    for lv, (rows, cols) in enumerate(plan.canvases):
      assert rows % 4 == 0 and cols % 4 == 0
      assert h * scale[lv] <= rows and w * scale[lv] <= cols, (h, w, lv)
  xy = jnp.array([[3.0, 7.5]])
  np.testing.assert_allclose(
    pyramid.to_image(pyramid.to_level(xy, jnp.array([0.3])), jnp.array([0.3])), xy, rtol=1e-5
  )


def _dots(size, points, radius=4):
  image = np.zeros((*size, 3), np.uint8)
  yy, xx = np.mgrid[: size[0], : size[1]]
  for x, y in points:
    image[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 255
  return image


def _bright(x):  # a "backbone" that responds to bright pixels: [N, H, W, 3] -> [N, H, W, K]
  return jnp.repeat(x[..., :1] * 0.5 + 0.5, K, axis=-1)


def _identity_branch(patches):  # a "branch" returning the coarse map channel it was given
  return patches[..., 3]


@pytest.mark.parametrize('refine', [False, True])
def test_detections_land_on_the_bright_spots(refine):
  points = [(40.0, 30.0), (150.0, 95.0)]
  image = _dots((120, 200), points)
  batch = np.pad(image, ((0, 8), (0, 24), (0, 0)), mode='edge')[None]  # bucket 128 × 224
  params = scanner.ScanParams(levels=8, threshold=0.5, detections=6, refine=refine)
  template = np.full((K, 2), 0.5, np.float32)
  out = jax.jit(scanner.scan_images, static_argnums=(0, 1, 5, 6, 7))(
    _bright,
    _identity_branch if refine else None,
    batch,
    np.array([[120, 200]]),
    template,
    1.0,
    params,
    32,
  )
  out = jax.device_get(out)
  assert out['points'].shape == (1, K, 6, 2)
  best = out['points'][0, 0][out['valid'][0, 0]]
  for x, y in points:  # each dot is found within a pixel by some kept detection
    assert np.min(np.hypot(best[:, 0] - x, best[:, 1] - y)) < 1.0, (x, y, best)
  assert np.all(out['score'][0][~out['valid'][0]] == 0)
  # Nothing is detected in the padding (x >= 200 or y >= 120) or in the dark.
  assert np.all(best[:, 0] < 200) and np.all(best[:, 1] < 120)
  faces = out['faces'][0][out['face_valid'][0]]
  centres = (faces[:, :2] + faces[:, 2:]) / 2  # template 0.5: faces centred on the detections
  for x, y in points:
    assert np.min(np.hypot(centres[:, 0] - x, centres[:, 1] - y)) < 1.5


def _random_model(num_points=K):
  """(spec, fresh variables) of a BB-FCN with `num_points` types."""
  spec = registry.make_spec(
    'bbfcn', variant='bbfcn', num_points=num_points, size=32, refine_size=64, crop_scale=1.1,
    dataset='mtfl', face_template=templates.face_template(num_points, 'mtfl', 1.1),
  )  # fmt: skip
  return spec, registry.init(spec)


def test_scanner_compiles_once_per_bucket():
  sc = scanner.Scanner(*_random_model(), levels=3, detections=4, candidates=16)
  rng = np.random.default_rng(0)
  image = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
  for h, w in [(100, 120), (97, 127), (128, 101)]:  # all in the 128 × 128 bucket
    out = sc.scan(image(h, w))
  assert sc.compiled_programs() == 1
  assert out['points'].shape == (K, 4, 2) and out['faces'].shape == (16, 4)
  sc.scan(image(200, 150))  # bucket 224 × 160
  sc.scan(image(193, 130))
  assert sc.compiled_programs() == 2
  assert len(sc.scan_batch([image(100, 100), image(110, 120)])) == 2
  assert sc.compiled_programs() == 3  # a batch of two is its own program


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
  sc.scan(rng.integers(0, 255, (62, 90, 3), dtype=np.uint8))  # same bucket, same depth
  assert sc.compiled_programs() == 1
  assert sorted(sc._programs) == [sc.levels_for(60)]
  with pytest.raises(ValueError, match='either levels or min_face'):
    scanner.Scanner(*_random_model(), levels=3, min_face=40)


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
