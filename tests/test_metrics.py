"""Tests of lmjax.eval.metrics and lmjax.eval.reports against values worked out by hand."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core.landmarks import AFLW21, FIVE, IBUG68
from lmjax.eval import metrics, reports

H = metrics.AUC_STEP


def simpson_bound(thr: float) -> float:
  """Worst-case |Simpson - exact| of an AUC whose CED is a step function.

  The CED is (1/N) sum_i [x >= e_i]. For one unit step inside a Simpson panel [x0, x0 + 2h]
  the rule gives 0, h/3, 5h/3 or 2h (partial sums of the weights h/3, 4h/3, h/3) while the exact
  integral x0 + 2h - e moves continuously; the gap is largest (2h/3) for a step just above the
  middle node. Panels without a step are integrated exactly, so the integral is off by at most
  (2h/3) * (1/N) * N = 2h/3, i.e. the AUC (integral / thr) by 2h / (3 thr).
  """
  return 2 * H / (3 * thr)


def exact_auc(nme: np.ndarray, thr: float) -> float:
  """Exact integral of the step CED over [0, thr] / thr = mean of max(0, 1 - e / thr)."""
  return float(np.clip(1 - np.asarray(nme) / thr, 0, 1).mean())


# ------------------------------------------------------------------ 5 points, 2 images
# Image 0: eyes (10, 10) / (20, 10) -> ioc = ipd = 10; box 20 x 20 -> sqrt(w h) = 20.
#   pred: eye_left + (3, 4) (error 5), nose + (6, 8) (error 10), the rest exact.
#   NME ioc = (5 + 10) / 5 / 10 = 0.3; box = 15 / 5 / 20 = 0.15.
# Image 1: eyes (0, 0) / (20, 0) -> 20; box 40 x 10 -> 20. pred: every point + (1, 0).
#   NME ioc = 1 / 20 = 0.05; box = 1 / 20 = 0.05.
# (pred moves an eye of image 0: a normaliser taken from pred instead of gt would differ.)
GT5 = np.array(
  [
    [[10, 10], [20, 10], [15, 15], [12, 20], [18, 20]],
    [[0, 0], [20, 0], [10, 10], [5, 20], [15, 20]],
  ],
  np.float64,
)
PRED5 = GT5 + np.array(
  [
    [[3, 4], [0, 0], [6, 8], [0, 0], [0, 0]],
    [[1, 0]] * 5,
  ]
)
BOX5 = np.array([[5, 5, 25, 25], [0, 0, 40, 10]], np.float64)
# Image 0 without its nose, image 1 without its mouth corners.
VIS5 = np.array([[1, 1, 0, 1, 1], [1, 1, 1, 0, 0]], bool)


def test_five_point_nme_per_normaliser():
  for kind in ('ioc', 'ipd'):
    nme = metrics.nme_per_image(PRED5, GT5, kind, FIVE)
    np.testing.assert_allclose(nme, [0.3, 0.05])
  np.testing.assert_allclose(metrics.nme_per_image(PRED5, GT5, 'box', bbox=BOX5), [0.15, 0.05])
  np.testing.assert_allclose(metrics.box_size(BOX5), [20, 20])


def test_visibility_mask():
  # Image 0: (5 + 0 + 0 + 0) / 4 visible points; image 1: 3 visible points with error 1.
  nme = metrics.nme_per_image(PRED5, GT5, 'ioc', FIVE, visible=VIS5)
  np.testing.assert_allclose(nme, [5 / 4 / 10, 1 / 20])
  nme = metrics.nme_per_image(PRED5, GT5, 'box', bbox=BOX5, visible=VIS5)
  np.testing.assert_allclose(nme, [5 / 4 / 20, 1 / 20])
  # Per landmark: the nose only counts in image 1, the mouth corners only in image 0.
  per_landmark = metrics.per_landmark_nme(PRED5, GT5, 'ioc', FIVE, visible=VIS5)
  np.testing.assert_allclose(per_landmark, [(0.5 + 0.05) / 2, 0.05 / 2, 0.05, 0, 0])
  never = VIS5.copy()
  never[:, 4] = False
  per_landmark = metrics.per_landmark_nme(PRED5, GT5, 'ioc', FIVE, visible=never)
  assert np.isnan(per_landmark[4])
  # The mouth cluster (3, 4) averages only its finite entry.
  np.testing.assert_allclose(metrics.per_cluster_nme(per_landmark, FIVE)[3], 0)


# ------------------------------------------------------------------ 68 points, 2 images
def gt68() -> np.ndarray:
  """Image A: ioc = |p36 - p45| = 30, ipd = |(5, 0) - (25, 0)| = 20. Image B = 2 A."""
  a = np.stack([100 + np.arange(68.0), np.full(68, 200.0)], axis=1)
  a[36:42] = [[0, 0], [3, -2], [7, -2], [10, 0], [7, 2], [3, 2]]  # mean (5, 0)
  a[42:48] = [[20, 0], [23, -2], [27, -2], [30, 0], [27, 2], [23, 2]]  # mean (25, 0)
  return np.stack([a, 2 * a])


BOX68 = np.array([[-5, -10, 35, 30], [-10, -20, 70, 60]], np.float64)  # sizes 40, 80


def pred68() -> np.ndarray:
  """A: contour 0-5 off by 5, nose tip off by 3. B: mouth 48-67 off by 10, nose tip by 6."""
  pred = gt68()
  pred[0, 0:6] += [3, 4]
  pred[0, 30] += [0, 3]
  pred[1, 48:68] += [6, 8]
  pred[1, 30] += [0, 6]
  return pred


def test_68_normalisers():
  gt = gt68()
  np.testing.assert_allclose(metrics.normalising_distance(gt, 'ioc', IBUG68), [30, 60])
  np.testing.assert_allclose(metrics.normalising_distance(gt, 'ipd', IBUG68), [20, 40])
  np.testing.assert_allclose(metrics.normalising_distance(gt, 'box', bbox=BOX68), [40, 80])
  # Sums of point errors: A = 6 * 5 + 3 = 33, B = 20 * 10 + 6 = 206; 68 points each.
  for kind, (da, db) in {'ioc': (30, 60), 'ipd': (20, 40), 'box': (40, 80)}.items():
    nme = metrics.nme_per_image(pred68(), gt, kind, IBUG68, BOX68)
    np.testing.assert_allclose(nme, [33 / 68 / da, 206 / 68 / db])


def test_68_per_landmark_and_per_cluster():
  per_landmark = metrics.per_landmark_nme(pred68(), gt68(), 'ioc', IBUG68)
  expected = np.zeros(68)
  expected[0:6] = (5 / 30 + 0) / 2  # = 1/12
  expected[48:68] = (0 + 10 / 60) / 2  # = 1/12
  expected[30] = (3 / 30 + 6 / 60) / 2  # = 0.1
  np.testing.assert_allclose(per_landmark, expected, atol=1e-15)
  clusters = metrics.per_cluster_nme(per_landmark, IBUG68)
  per_cluster = dict(zip(IBUG68.cluster_names, clusters, strict=True))
  assert per_cluster == pytest.approx(
    {
      'eye_brow_left': 0,
      'eye_brow_right': 0,
      'nose': 0.1 / 9,  # 9 points 27-35, only the tip is off
      'mouth': 1 / 12,
      'contour_left': 1 / 12,  # points 0-5
      'chin': 0,
      'contour_right': 0,
    }
  )
  ipd = metrics.per_landmark_nme(pred68(), gt68(), 'ipd', IBUG68)
  np.testing.assert_allclose(ipd[[0, 30, 60]], [(5 / 20) / 2, (3 / 20 + 6 / 40) / 2, 10 / 40 / 2])


def test_nme_under_jit_matches_numpy():
  rng = np.random.default_rng(0)
  gt = gt68() + rng.normal(0, 0.5, (2, 68, 2))
  pred = gt + rng.normal(0, 2, gt.shape)
  vis = rng.random((2, 68)) > 0.2
  for kind in metrics.NORMALISERS:
    fn = jax.jit(lambda p, g, b, v, kind=kind: metrics.nme_per_image(p, g, kind, IBUG68, b, v))
    got = fn(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(BOX68), jnp.asarray(vis))
    assert isinstance(got, jax.Array)
    want = metrics.nme_per_image(pred, gt, kind, IBUG68, BOX68, vis)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  # Value checks need concrete values: under jit a zero distance gives inf/NaN, no error.
  same_eyes = GT5.copy()
  same_eyes[:, 1] = same_eyes[:, 0]
  got = jax.jit(lambda p, g: metrics.nme_per_image(p, g, 'ioc', FIVE))(PRED5, same_eyes)
  assert not np.isfinite(np.asarray(got)).any()


# ------------------------------------------------------------------ failure rate, CED, AUC
def test_failure_rate_is_strict():
  nme = np.array([0.05, 0.08, 0.09, 0.10, 0.12])
  assert metrics.failure_rate(nme, 0.08) == pytest.approx(3 / 5)  # 0.08 itself is no failure
  assert metrics.failure_rate(nme, 0.10) == pytest.approx(1 / 5)


def test_ced_grid():
  x, y = metrics.ced(np.array([0.0, 0.05]), 0.1)
  assert x.shape == (1001,)
  np.testing.assert_allclose(np.diff(x), H)
  assert y[0] == 0.5 and y[499] == 0.5 and y[-1] == 1.0
  x, _ = metrics.ced(np.array([0.0]), 1.5 * H)  # 1.5 steps -> 2 intervals (even, for Simpson)
  assert x.shape == (3,)


def test_simpson_is_exact_for_cubics():
  # integral_0^1 x^3 dx = 1/4 = 0.5 / 3 * (0 + 4 * 0.125 + 1).
  assert metrics.simpson(np.array([0, 0.125, 1]), 0.5) == pytest.approx(0.25)
  with pytest.raises(ValueError, match='odd number'):
    metrics.simpson(np.ones(4), 0.1)


@pytest.mark.parametrize('thr', [0.08, 0.10])
def test_auc_closed_forms(thr):
  assert metrics.auc(np.zeros(7), thr) == pytest.approx(1, abs=1e-12)
  assert metrics.auc(np.full(7, 2 * thr), thr) == 0
  # N errors at the midpoints of N equal bins of [0, c]: the step CED has exactly the integral of
  # the uniform CED x / c, so AUC = 1 - c / (2 thr) for c <= thr and thr / (2 c) for c >= thr.
  for c, want in [(thr / 2, 0.75), (thr, 0.5), (2 * thr, 0.25)]:
    nme = (np.arange(1000) + 0.5) / 1000 * c
    assert abs(metrics.auc(nme, thr) - want) <= simpson_bound(thr)


@pytest.mark.parametrize('thr', [0.08, 0.10])
def test_auc_simpson_vs_exact_step_integral(thr):
  nme = np.random.default_rng(1).uniform(0, 0.15, 500)
  assert abs(metrics.auc(nme, thr) - exact_auc(nme, thr)) <= simpson_bound(thr)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    ({'pred': PRED5[0]}, r'pred: expected shape \[N, K, 2\], got \(5, 2\)'),
    ({'gt': GT5[:, :4]}, r'gt: expected shape \[N, K, 2\] = \(2, 5, 2\)'),
    ({'visible': VIS5[:1]}, r'visible: expected shape \[N, K\] = \(2, 5\), got \(1, 5\)'),
    ({'bbox': BOX5[:, :3]}, r'bbox: expected shape \[N, 4\] = \(2, 4\), got \(2, 3\)'),
    ({'schema': IBUG68}, "schema '68' expects K = 68 points, got K = 5"),
    ({'visible': np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])}, r'no visible landmark.*\[1\]'),
  ],
)
def test_input_errors(kwargs, message):
  args = {'pred': PRED5, 'gt': GT5, 'kind': 'ioc', 'schema': FIVE, 'bbox': BOX5, **kwargs}
  with pytest.raises(ValueError, match=message):
    metrics.nme_per_image(**args)


def test_zero_normaliser_errors():
  same_eyes = GT5.copy()
  same_eyes[1, 1] = same_eyes[1, 0]
  with pytest.raises(ValueError, match=r"zero .*'ioc' normalising distance for images \[1\]"):
    metrics.nme_per_image(PRED5, same_eyes, 'ioc', FIVE)
  flat = BOX5.copy()
  flat[0, 3] = flat[0, 1]
  with pytest.raises(ValueError, match=r'bbox: empty box .* images \[0\]'):
    metrics.nme_per_image(PRED5, GT5, 'box', bbox=flat)
  with pytest.raises(ValueError, match='needs bbox'):
    metrics.nme_per_image(PRED5, GT5, 'box')


# ------------------------------------------------------------------ evaluate
def test_compute_metrics_five_points():
  m = reports.compute_metrics(PRED5, GT5, BOX5, FIVE)
  assert m['num_faces'] == 2
  for kind in ('ioc', 'ipd'):  # identical for 5 points, both reported
    assert m[f'nme_{kind}'] == pytest.approx(100 * (0.3 + 0.05) / 2)
    assert m[f'fr_8_{kind}'] == m[f'fr_10_{kind}'] == pytest.approx(50)
    # Exact step integrals: AUC@8 = (0 + (1 - 0.05 / 0.08)) / 2, AUC@10 = (0 + 0.5) / 2.
    assert abs(m[f'auc_8_{kind}'] - 18.75) <= 100 * simpson_bound(0.08)
    assert abs(m[f'auc_10_{kind}'] - 25.0) <= 100 * simpson_bound(0.10)
    assert m[f'per_landmark_{kind}'] == pytest.approx([27.5, 2.5, 52.5, 2.5, 2.5])
    assert m[f'per_cluster_{kind}'] == pytest.approx(
      {'eye_left': 27.5, 'eye_right': 2.5, 'nose': 52.5, 'mouth': 2.5}
    )
  assert m['nme_box'] == pytest.approx(100 * (0.15 + 0.05) / 2)
  assert m['fr_8_box'] == m['fr_10_box'] == pytest.approx(50)
  assert all(isinstance(v, float) for k, v in m.items() if k[:3] in ('nme', 'fr_', 'auc'))


def test_compute_metrics_without_clusters():
  gt = np.random.default_rng(2).uniform(0, 100, (3, 21, 2))
  m = reports.compute_metrics(gt + 1, gt, np.tile([0, 0, 100, 100], (3, 1)), AFLW21)
  assert len(m['per_landmark_ioc']) == 21
  assert not any(k.startswith('per_cluster') for k in m)


def test_write_results_json_round_trip(tmp_path):
  m = reports.compute_metrics(PRED5, GT5, BOX5, FIVE, visible=VIS5)
  path = tmp_path / 'out' / 'results.json'
  reports.write_results(m, path)
  assert json.loads(path.read_text()) == m
  assert list(json.loads(path.read_text())) == sorted(m)
  reports.write_results({'per_landmark_ioc': [1.0, float('nan')]}, path)
  assert json.loads(path.read_text()) == {'per_landmark_ioc': [1.0, None]}


def test_plot_ced_writes_png(tmp_path):
  import matplotlib.image

  path = tmp_path / 'plots' / 'ced.png'
  rng = np.random.default_rng(3)
  curves = {'BM': rng.uniform(0, 0.1, 50), 'AM': rng.uniform(0, 0.07, 50)}
  reports.plot_ced(curves, 0.08, path, title='300-W full', normaliser='ipd')
  data = path.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n'
  assert len(data) > 10_000
  image = matplotlib.image.imread(path)
  assert image.shape[:2] == (450, 600) and image.std() > 0
  with pytest.raises(ValueError, match='ratio'):
    reports.plot_ced(curves, 8, path, title='', normaliser='ipd')


def test_format_table():
  rows = {'BM': {'nme_ipd': 5.0, 'fr_10_ipd': 1.25}, 'AM': {'nme_ipd': 4.567}}
  assert reports.format_table(rows, ['nme_ipd', 'fr_10_ipd']) == (
    '    nme_ipd  fr_10_ipd\nBM     5.00       1.25\nAM     4.57          -'
  )


def test_save_predictions(tmp_path):
  path = tmp_path / 'preds.npz'
  reports.save_predictions(path, ['a/1', 'b/2'], PRED5)
  with np.load(path) as data:
    assert data['image_ids'].tolist() == ['a/1', 'b/2']
    np.testing.assert_allclose(data['pred'], PRED5)
  with pytest.raises(ValueError, match='image_ids: expected 2 ids'):
    reports.save_predictions(path, ['a/1'], PRED5)


# ------------------------------------------------------------------ face / non-face
def test_classification_metrics_by_hand():
  from lmjax.eval.classification import classification_metrics

  logits = np.array([2.0, -1.0, 0.5, -3.0, 0.5, 1.0])
  kinds = np.array([0, 0, 1, 2, 2, 0])  # faces: 2, -1, 1; non-faces: 0.5, -3, 0.5
  m = classification_metrics(logits, kinds)
  labels = (kinds == 0).astype(float)
  p = 1 / (1 + np.exp(-logits))
  bce = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  assert m['loss'] == pytest.approx(bce)
  assert m['accuracy'] == pytest.approx(100 * 3 / 6)  # right: 2, 1 (faces), -3 (background)
  assert m['positive_acc'] == pytest.approx(200 / 3)
  assert m['partial_acc'] == 0.0 and m['background_acc'] == 50.0
  # Face > non-face pairs: 2 beats 3, -1 beats 1 (-3), 1 beats 3: 7 of 9.
  assert m['auc'] == pytest.approx(7 / 9)
  assert (m['num_positive'], m['num_negative']) == (3, 3)
  tied = classification_metrics([0.0, 0.0], [0, 2])
  assert tied['auc'] == 0.5 and 'partial_acc' not in tied  # ties count half
  assert 'auc' not in classification_metrics([1.0], [0])  # no non-face: no AUC
  with pytest.raises(ValueError, match='kinds: expected shape'):
    classification_metrics([1.0, 2.0], [0])
  with pytest.raises(ValueError, match='kinds: expected values 0, 1, 2'):
    classification_metrics([1.0], [3])
