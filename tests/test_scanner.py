"""The pyramid scanner: NMS, pyramid geometry, detections on hand-made maps, compile counts."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.bbfcn import predictor
from lmjax.core import nms
from lmjax.scan import proposals, pyramid, scanner

K = 5


def _greedy_nms(boxes, scores, valid, thr):
  order = [i for i in np.argsort(-scores, kind='stable') if valid[i]]
  keep = []
  for i in order:
    if all(float(nms.box_iou(boxes[i][None], boxes[j][None])[0, 0]) <= thr for j in keep):
      keep.append(i)
  return sorted(keep)


def test_nms_matches_the_greedy_rule():
  rng = np.random.default_rng(0)
  fn = jax.jit(nms.nms, static_argnums=3)
  boxes, scores, valid = [], [], []
  for _ in range(20):  # dense overlaps: long suppression chains
    centres = rng.uniform(0, 40, (40, 2))
    boxes.append(np.concatenate([centres, centres + rng.uniform(5, 25, (40, 2))], 1))
    scores.append(rng.uniform(0, 1, 40))
    valid.append(rng.uniform(size=40) > 0.2)
  boxes, scores, valid = np.float32(boxes), np.float32(scores), np.array(valid)
  keep = np.asarray(fn(boxes, scores, valid, 0.3))  # [20, 40]: leading axes are batched
  for t in range(20):
    assert sorted(np.flatnonzero(keep[t])) == _greedy_nms(boxes[t], scores[t], valid[t], 0.3), t
  single = np.asarray(fn(boxes[3], scores[3], valid[3], 0.5))
  assert sorted(np.flatnonzero(single)) == _greedy_nms(boxes[3], scores[3], valid[3], 0.5)


def test_box_iou_hand_case():
  a = jnp.array([[0, 0, 10, 10]], jnp.float32)
  b = jnp.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], jnp.float32)
  np.testing.assert_allclose(nms.box_iou(a, b), [[50 / 150, 0, 1]], rtol=1e-6)


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
  spec = {
    'experiment': 'bbfcn', 'variant': 'bbfcn', 'num_points': num_points, 'size': 32,
    'refine_size': 64, 'crop_scale': 1.1, 'dataset': 'mtfl',
  }  # fmt: skip
  model = predictor.build_model(spec)
  return model, predictor.init_variables(model, spec), spec


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
  model, variables, spec = _random_model()
  kw = dict(levels=3, detections=6, candidates=16, threshold=-1.0)
  image = np.random.default_rng(2).integers(0, 255, (90, 110, 3), dtype=np.uint8)
  full = scanner.Scanner(model, variables, spec, **kw)
  out = full.scan(image)
  plain = scanner.Scanner(model, variables, spec, refine=False, **kw).scan(image)
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
  model, variables, spec = _random_model()
  with pytest.raises(ValueError, match='regression'):
    scanner.Scanner(model, variables, {**spec, 'variant': 'regression'})


def test_face_template_matches_the_training_crop():
  t = proposals.face_template(5, 'mtfl', 1.1)
  assert t.shape == (5, 2) and np.all((t > 0.15) & (t < 0.85))
  assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above the nose above the mouth
  np.testing.assert_allclose(t[0, 0] + t[1, 0], 1.0, atol=1e-6)  # symmetric
  t68 = proposals.face_template(68, '300w', 1.2)
  assert t68.min() > 0 and t68.max() < 1
