"""The one NMS rule (lmjax.core.nms): the device fixed point equals the greedy loop it replaces."""

import jax
import numpy as np
import pytest

from lmjax.core import geometry, nms


def greedy_reference(boxes, scores, valid, thr):
  """The textbook greedy loop in float64: kept indices, best score first."""
  boxes = np.asarray(boxes, np.float64)
  overlap = geometry.box_iou(boxes, boxes)
  keep = []
  for i in np.argsort(-np.asarray(scores, np.float64), kind='stable'):
    if valid[i] and all(overlap[i, j] <= thr for j in keep):
      keep.append(int(i))
  return keep


def random_boxes(rng, n):
  """`n` densely overlapping boxes (long suppression chains) and distinct scores."""
  corner = rng.uniform(0, 40, (n, 2))
  boxes = np.concatenate([corner, corner + rng.uniform(5, 25, (n, 2))], 1).astype(np.float32)
  return boxes, rng.permutation(n).astype(np.float32) / n


def test_device_nms_matches_the_greedy_loop_batched_and_single():
  rng = np.random.default_rng(0)
  fn = jax.jit(nms.nms, static_argnums=3)
  drawn = [random_boxes(rng, 40) for _ in range(20)]
  boxes, scores = np.stack([b for b, _ in drawn]), np.stack([s for _, s in drawn])
  valid = rng.uniform(size=(20, 40)) > 0.2
  keep = np.asarray(fn(boxes, scores, valid, 0.3))  # [20, 40]: leading axes are batched
  for t in range(20):
    expected = sorted(greedy_reference(boxes[t], scores[t], valid[t], 0.3))
    assert list(np.flatnonzero(keep[t])) == expected, t
  single = np.asarray(fn(boxes[3], scores[3], valid[3], 0.5))
  expected = sorted(greedy_reference(boxes[3], scores[3], valid[3], 0.5))
  assert list(np.flatnonzero(single)) == expected


@pytest.mark.parametrize('n', [1, 2, 15, 16, 17, 50])
def test_nms_indices_is_the_greedy_loop_best_first(n):
  boxes, scores = random_boxes(np.random.default_rng(n), n)
  for thr in (0.2, 0.5):
    got = nms.nms_indices(boxes, scores, thr)
    assert got.dtype == np.int64
    assert got.tolist() == greedy_reference(boxes, scores, np.ones(n, bool), thr)


def test_nms_indices_hand_case_and_edge_cases():
  boxes = np.float32([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
  scores = np.float32([0.5, 0.9, 0.7, 0.9])
  # 1 (0.9) suppresses 0 (IoU 9/11) and 3 (same score as 1 but a higher index: 1 comes first).
  assert nms.nms_indices(boxes, scores, 0.5).tolist() == [1, 2]
  # At 0.95 only the exact duplicate goes: 3 (0.9) removes 0 (0.5), the same box.
  assert nms.nms_indices(boxes, scores, 0.95).tolist() == [1, 3, 2]
  assert nms.nms_indices(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
  with pytest.raises(ValueError, match=r'boxes: expected \[N, 4\]'):
    nms.nms_indices(boxes[:, :3], scores, 0.5)


def test_top_valid_skips_invalid_slots():
  index, ok = nms.top_valid(np.float32([0.1, 0.9, 0.5, 0.7]), np.array([1, 0, 1, 1], bool), 3)
  assert np.asarray(index).tolist() == [3, 2, 0] and np.asarray(ok).all()
  _, ok = nms.top_valid(np.float32([0.1, 0.9]), np.array([1, 0], bool), 2)
  assert np.asarray(ok).tolist() == [True, False]
