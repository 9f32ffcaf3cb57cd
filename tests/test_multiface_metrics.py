"""Tests of lmjax.eval.multiface_metrics against values worked out by hand (+ its plots)."""

import json

import numpy as np
import pytest

from lmjax.core.landmarks import FIVE
from lmjax.eval import multiface_metrics as mm
from lmjax.eval import reports

NAN = np.nan
INF = np.inf

# ------------------------------------------------------------------ recall-error, 2 faces
# Face A: eyes (10, 10) / (30, 10) -> d = 20. Face B: eyes (110, 10) / (150, 10) -> d = 40.
GT2 = np.array(
  [
    [[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]],
    [[110, 10], [150, 10], [130, 30], [115, 50], [145, 50]],
  ],
  np.float64,
)
BOX2 = np.array([[0, 0, 40, 40], [90, -10, 170, 70]], np.float64)
# Three detections per type (m_max = 3), unsorted; NaN marks an invalid slot.
#   type 0: A + (0.5, 0) -> 0.025; B + (0, 3) -> 3 / 40 = 0.075; one more on A's *right* eye.
#   type 1: A + (0, 4) -> 0.2; nothing near B: its nearest is A's, |(120, 4)| / 40 > 3.
#   type 2: A + (1.25, 0) -> 0.0625; B + (0, 1.5) -> 0.0375.
#   type 3: no valid detection (inf, inf).
#   type 4: exactly on A -> 0; B + (3, 4) -> 5 / 40 = 0.125.
PTS2 = np.array(
  [
    [[110, 13], [10.5, 10], [30, 10]],
    [[30, 14], [300, 300], [NAN, NAN]],
    [[21.25, 20], [NAN, NAN], [130, 31.5]],
    [[NAN, NAN], [NAN, NAN], [NAN, NAN]],
    [[148, 54], [28, 30], [NAN, NAN]],
  ]
)
SCORES2 = np.array([[0.9, 0.2, 0.5], [0.3, 0.8, NAN], [0.7, NAN, 0.6], [NAN] * 3, [0.4, 0.1, NAN]])
VALID2 = np.isfinite(SCORES2)
BEST2 = [[0.025, 0.075], [0.2, np.hypot(120, 4) / 40], [0.0625, 0.0375], [INF, INF], [0, 0.125]]


def two_face_accumulator(ms=(3,)) -> mm.RecallAccumulator:
  acc = mm.RecallAccumulator(ms=ms)
  acc.add(PTS2, SCORES2, GT2, BOX2, valid=VALID2)
  return acc


def test_recall_two_faces():
  acc = two_face_accumulator()
  for got, want in zip(acc.best_errors(3), BEST2, strict=True):
    np.testing.assert_allclose(got, want)
  r = acc.result(3)
  np.testing.assert_array_equal(r['num_gt'], [2, 2, 2, 2, 2])
  np.testing.assert_array_equal(r['num_detections'], [3, 2, 2, 0, 2])
  np.testing.assert_allclose(r['recall_5'], [0.5, 0, 0.5, 0, 0.5])
  np.testing.assert_allclose(r['recall_10'], [1, 0, 1, 0, 0.5])
  np.testing.assert_allclose(r['recall_25'], [1, 0.5, 1, 0, 1])
  assert r['mean_recall_5'] == pytest.approx(0.3)
  assert r['mean_recall_10'] == pytest.approx(0.5)
  assert r['mean_recall_25'] == pytest.approx(0.7)
  # Default grid 0, 0.005, ..., 0.5; at 0.02 / 0.03 / 0.08 / 0.5.
  assert r['curves'].shape == (5, 101) and r['errors'][-1] == 0.5
  np.testing.assert_allclose(r['curves'][:, [4, 6, 16, 100]].T, [
    [0, 0, 0, 0, 0.5],
    [0.5, 0, 0, 0, 0.5],
    [1, 0, 1, 0, 0.5],
    [1, 0.5, 1, 0, 1],
  ])  # fmt: skip
  # Detections with NaN in invalid slots are fine; swapping the two faces changes nothing.
  acc2 = mm.RecallAccumulator(ms=(3,))
  acc2.add(PTS2, SCORES2, GT2[::-1], BOX2[::-1], valid=VALID2)
  np.testing.assert_allclose(acc2.result(3)['recall_10'], r['recall_10'])


def test_box_rule_when_an_eye_is_hidden():
  # Right eye hidden (and NaN): d = 0.419 * sqrt(200 * 50) = 41.9. Nose at (50, 50) found 4 px
  # away -> error 4 / 41.9 = 0.0955: recalled at 10 %, not at 5 %.
  gt = np.array([[[40, 40], [NAN, NAN], [50, 50], [40, 60], [60, 60]]])
  vis = np.array([[True, False, True, True, True]])
  box = np.array([[0, 20, 200, 70]], np.float64)
  np.testing.assert_allclose(mm.face_scale(gt, vis, box), [41.9])
  pts = np.full((5, 1, 2), 1000.0)
  pts[2, 0] = [54, 50]
  acc = mm.RecallAccumulator(ms=(1,))
  acc.add(pts, np.ones((5, 1)), gt, box, visible=vis)
  np.testing.assert_allclose(acc.best_errors(1)[2], [4 / 41.9])
  r = acc.result(1)
  np.testing.assert_array_equal(r['num_gt'], [1, 0, 1, 1, 1])
  np.testing.assert_allclose(r['recall_5'], [0, NAN, 0, 0, 0])
  np.testing.assert_allclose(r['recall_10'], [0, NAN, 1, 0, 0])
  assert r['mean_recall_10'] == pytest.approx(0.25)  # over the 4 types with ground truth
  # The ratio is a parameter: 0.5 * 100 = 50 -> 4 / 50.
  acc = mm.RecallAccumulator(ms=(1,), box_ratio=0.5)
  acc.add(pts, np.ones((5, 1)), gt, box, visible=vis)
  np.testing.assert_allclose(acc.best_errors(1)[2], [0.08])
  # With both eyes visible the eye distance is used, not the box: |(40,40) - (60,40)| = 20.
  gt_both = gt.copy()
  gt_both[0, 1] = [60, 40]
  np.testing.assert_allclose(mm.face_scale(gt_both, np.ones((1, 5), bool), box), [20])
  # Other eye indices (the mouth corners here): |(40,60) - (60,60)| = 20.
  np.testing.assert_allclose(mm.face_scale(gt, vis, box, eyes=(3, 4)), [20])


def test_m_keeps_the_best_scoring_detections():
  # One face, eyes (0, 0) / (20, 0) -> d = 20. Type-0 detections, unsorted; the best-scoring
  # slot is invalid (ignored). By score: (100, 100), (50, 50), (0, 2), (0.5, 0).
  gt = np.array([[[0, 0], [20, 0]]], np.float64)
  pts = np.array(
    [
      [[0.5, 0], [100, 100], [0, 2], [NAN, NAN], [50, 50]],
      [[NAN, NAN]] * 5,
    ]
  )
  scores = np.array([[0.1, 0.9, 0.5, 5.0, 0.8], [NAN] * 5])
  valid = np.array([[1, 1, 1, 0, 1], [0] * 5], bool)
  acc = mm.RecallAccumulator(ms=(1, 2, 3, 4))
  acc.add(pts, scores, gt, np.array([[-10, -10, 30, 10]]), valid=valid)
  want = [np.hypot(100, 100) / 20, np.hypot(50, 50) / 20, 0.1, 0.025]
  for m, w in zip((1, 2, 3, 4), want, strict=True):
    np.testing.assert_allclose(acc.best_errors(m)[0], [w])
    np.testing.assert_allclose(acc.best_errors(m)[1], [INF])
  assert acc.result(3)['recall_10'][0] == 1 and acc.result(3)['recall_5'][0] == 0
  assert acc.result(4)['recall_5'][0] == 1 and acc.result(2)['recall_25'][0] == 0
  # A scene without faces adds detections but no ground truth.
  acc.add(pts, scores, np.zeros((0, 2, 2)), np.zeros((0, 4)), valid=valid)
  r = acc.result(2)
  assert r['num_images'] == 2
  np.testing.assert_array_equal(r['num_gt'], [1, 1])
  np.testing.assert_array_equal(r['num_detections'], [4, 0])
  np.testing.assert_array_equal(acc.result(4)['num_detections'], [8, 0])
  with pytest.raises(ValueError, match='m: 5 was not requested'):
    acc.result(5)


def test_recall_input_errors():
  acc = mm.RecallAccumulator(ms=(3,))
  with pytest.raises(ValueError, match=r'landmarks: expected shape \[F, K, 2\]'):
    acc.add(PTS2, SCORES2, GT2[:, :4], BOX2, valid=VALID2)  # K = 4 vs 5
  with pytest.raises(ValueError, match=r'points: expected shape \[K, m_max, 2\]'):
    acc.add(PTS2[:, :2], SCORES2, GT2, BOX2, valid=VALID2)
  with pytest.raises(ValueError, match=r'valid: expected shape'):
    acc.add(PTS2, SCORES2, GT2, BOX2, valid=VALID2[:4])
  with pytest.raises(ValueError, match=r'visible: expected shape \[F, K\]'):
    acc.add(PTS2, SCORES2, GT2, BOX2, valid=VALID2, visible=np.ones((3, 5)))
  with pytest.raises(ValueError, match=r'bbox: expected shape \[F, 4\]'):
    acc.add(PTS2, SCORES2, GT2, BOX2[:1], valid=VALID2)
  with pytest.raises(ValueError, match='points: non-finite'):
    acc.add(PTS2, SCORES2, GT2, BOX2)  # every slot valid, some hold NaN
  with pytest.raises(ValueError, match='landmarks: non-finite'):
    acc.add(PTS2, SCORES2, np.where(GT2 == 130, NAN, GT2), BOX2, valid=VALID2)
  with pytest.raises(ValueError, match='m = 4 > m_max = 3'):
    mm.RecallAccumulator(ms=(4,)).add(PTS2, SCORES2, GT2, BOX2, valid=VALID2)
  with pytest.raises(ValueError, match='normalising distance'):
    vis = np.ones((2, 5), bool)
    vis[0, 0] = False
    acc.add(PTS2, SCORES2, GT2, np.zeros((2, 4)), valid=VALID2, visible=vis)
  with pytest.raises(ValueError, match='no image has been added'):
    acc.result(3)
  acc.add(PTS2, SCORES2, GT2, BOX2, valid=VALID2)
  with pytest.raises(ValueError, match='expected K = 5 types'):
    acc.add(PTS2[:4], SCORES2[:4], GT2[:, :4], BOX2, valid=VALID2[:4])
  assert acc.num_images == 1  # failed calls leave no trace
  with pytest.raises(ValueError, match='eyes'):
    mm.RecallAccumulator(eyes=(1, 1))


def test_proposal_recall():
  acc = mm.ProposalRecallAccumulator()
  # Image 1: faces g1, g2. By score: miss (0.9), hit g2 (IoU 100/110, 0.7), hit g1 (0.5); the
  # invalid exact hit on g1 (score 1) is ignored -> ranks g1: 3, g2: 2.
  gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
  boxes = [[100, 100, 110, 110], [0, 0, 10, 10], [20, 20, 30, 31], [0, 0, 10, 10]]
  acc.add(boxes, [0.9, 0.5, 0.7, 1.0], gt, valid=[True, True, True, False])
  # Image 2: g3 missed by (IoU 1/3, 0.9), hit by (IoU 0.5 exactly, 0.2) -> rank 2; g4 never.
  acc.add([[5, 0, 15, 10], [0, 0, 10, 20]], [0.9, 0.2], [[0, 0, 10, 10], [50, 50, 60, 60]])
  # Image 3: no face, one proposal.
  acc.add([[0, 0, 5, 5]], [0.3], np.zeros((0, 4)))
  r = acc.result()
  assert (r['num_images'], r['num_gt'], r['mean_proposals']) == (3, 4, 2.0)
  np.testing.assert_array_equal(r['num_proposals'], [1, 2, 3])
  np.testing.assert_allclose(r['recall'], [0, 0.5, 0.75])
  assert (r['recall_at_2'], r['recall_at_3'], r['recall_at_20']) == (0.5, 0.75, 0.75)
  assert (r['oracle_at_2'], r['oracle_at_3']) == (1.0, 1.0)  # two faces per image at most
  np.testing.assert_allclose(acc.result(max_n=5)['recall'], [0, 0.5, 0.75, 0.75, 0.75])
  acc.add(np.zeros((0, 4)), np.zeros(0), gt)  # an image without proposals misses its faces
  assert acc.result()['num_gt'] == 6 and acc.result()['recall_at_3'] == pytest.approx(3 / 6)
  with pytest.raises(ValueError, match=r'boxes: expected shape \[P, 4\]'):
    acc.add(np.zeros((2, 3)), [1, 2], gt)
  with pytest.raises(ValueError, match='boxes: non-finite'):
    acc.add([[0, 0, NAN, 1]], [1.0], gt)


def test_detection_precision_recall():
  perfect = mm.DetectionAccumulator()
  perfect.add([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]])
  perfect.add([[5, 5, 20, 20]], [0.8], [[5, 5, 20, 20]])
  r = perfect.result()
  assert r['ap'] == 1
  np.testing.assert_allclose(r['precision'], [1, 1])
  np.testing.assert_allclose(r['recall'], [0.5, 1])
  assert np.isnan(r['recall_at_350_fp'])  # no false positive at all: 350 is out of reach

  # One false positive ranked first: precision (0, 1/2), recall (0, 1) -> AP = 1/2.
  first_fp = mm.DetectionAccumulator()
  first_fp.add([[0, 0, 10, 10], [50, 50, 60, 60]], [0.8, 0.9], [[0, 0, 10, 10]])
  r = first_fp.result(fp_at=(0, 1))
  assert r['ap'] == pytest.approx(0.5)
  np.testing.assert_allclose(r['precision'], [0, 0.5])
  assert (r['recall_at_0_fp'], r['recall_at_1_fp']) == (0.0, 1.0)

  # A duplicate on a matched face is a false positive (VOC), a face is matched once.
  # Image 1: g1 (0.9, TP), g1 again (IoU 100/110 with g1, 0.8, FP), g2 (0.7, TP).
  # Image 2: one miss (0.75, FP). Ranked: TP FP FP TP, 3 faces.
  acc = mm.DetectionAccumulator()
  dets = [[0, 0, 10, 11], [20, 0, 30, 10], [0, 0, 10, 10]]
  acc.add(dets, [0.8, 0.7, 0.9], [[0, 0, 10, 10], [20, 0, 30, 10]])
  acc.add([[100, 100, 110, 110], [0, 0, 10, 10]], [0.75, 0.99], [[0, 0, 10, 10]], [True, False])
  r = acc.result(fp_at=(0, 1, 2, 3))
  np.testing.assert_array_equal(r['tp'], [1, 1, 1, 2])
  np.testing.assert_array_equal(r['fp'], [0, 1, 2, 2])
  np.testing.assert_allclose(r['scores'], [0.9, 0.8, 0.75, 0.7])
  np.testing.assert_allclose(r['recall'], [1 / 3, 1 / 3, 1 / 3, 2 / 3])
  np.testing.assert_allclose(r['precision'], [1, 1 / 2, 1 / 3, 1 / 2])
  assert r['ap'] == pytest.approx(1 / 3 * 1 + 1 / 3 * 1 / 2)  # interpolated precision 1, 1/2
  assert (r['num_gt'], r['num_detections']) == (3, 4)
  assert r['recall_at_0_fp'] == pytest.approx(1 / 3)
  assert r['recall_at_1_fp'] == pytest.approx(1 / 3)
  assert r['recall_at_2_fp'] == pytest.approx(2 / 3)
  assert np.isnan(r['recall_at_3_fp'])
  assert mm.average_precision(np.zeros(0), np.zeros(0)) == 0
  with pytest.raises(ValueError, match=r'scores: expected shape \[D\]'):
    acc.add([[0, 0, 1, 1]], [[0.5]], [[0, 0, 1, 1]])
  with pytest.raises(ValueError, match=r'gt_boxes: expected shape \[G, 4\]'):
    acc.add([[0, 0, 1, 1]], [0.5], [0, 0, 1, 1])


# ------------------------------------------------------------------ plots and JSON
def is_png(path) -> bool:
  return path.stat().st_size > 1000 and path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plots_and_plain(tmp_path):
  acc = two_face_accumulator(ms=(2, 3))
  names = ('LE', 'RE', 'N', 'LM', 'RM')
  curves = {'BB-FCN m=3': acc.result(3), 'backbone m=2': reports.plain(acc.result(2))}
  reports.plot_recall_error(curves, tmp_path / 'sub' / 'recall.png', names, title='AFW')
  assert is_png(tmp_path / 'sub' / 'recall.png')

  prop = mm.ProposalRecallAccumulator()
  prop.add([[0, 0, 10, 10], [5, 5, 9, 9]], [0.3, 0.9], [[0, 0, 10, 10]])
  reports.plot_proposal_recall({'BB-FCN': prop.result(max_n=20)}, tmp_path / 'proposals.png')
  assert is_png(tmp_path / 'proposals.png')

  det = mm.DetectionAccumulator()
  det.add([[0, 0, 10, 10], [50, 50, 60, 60]], [0.8, 0.9], [[0, 0, 10, 10]])
  reports.plot_precision_recall({'cascade': det.result()}, str(tmp_path / 'pr.png'), title='FDDB')
  assert is_png(tmp_path / 'pr.png')

  results = {'recall': acc.result(3), 'proposals': prop.result(), 'det': det.result()}
  summary = reports.plain(results)
  assert isinstance(summary['recall']['curves'][0][0], float)
  assert isinstance(summary['recall']['num_gt'][0], int)
  assert summary['recall']['recall_10'] == [1.0, 0.0, 1.0, 0.0, 0.5]
  assert summary['det']['ap'] == 0.5
  json.loads(json.dumps(summary))

  with pytest.raises(ValueError, match='curves: expected at least one'):
    reports.plot_precision_recall({}, tmp_path / 'x.png')
  with pytest.raises(ValueError, match='names: expected K = 5'):
    reports.plot_recall_error(curves, tmp_path / 'x.png', names=('a', 'b'))


def test_plot_multiface_writes_the_three_plots(tmp_path):
  acc, prop = two_face_accumulator(ms=(2, 3)), mm.ProposalRecallAccumulator()
  prop.add([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]])
  det = mm.DetectionAccumulator()
  det.add([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]])
  result = {'recall_m2': acc.result(2), 'recall_m3': acc.result(3)}
  result.update(proposals=prop.result(), faces=det.result())
  results = {'bbfcn': result, 'backbone_only': {**result, 'detector': det.result(),
                                                'rescored_proposals': prop.result()}}  # fmt: skip
  reports.plot_multiface(results, str(tmp_path / 'out' / 'r'), FIVE, title='AFW')
  for suffix in ('recall', 'proposals', 'pr'):
    assert is_png(tmp_path / 'out' / f'r_{suffix}.png'), suffix
