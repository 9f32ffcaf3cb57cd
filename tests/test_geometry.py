"""lmjax.core.geometry: the one rotation affine and the one box IoU, on numpy and jax alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.core import geometry


def test_rotation_about_fixes_the_centre_and_turns_x_towards_y():
  centre = np.array([10.0, 5.0])
  A = geometry.rotation_about(centre, np.pi / 2)
  assert A.shape == (2, 3)
  points = np.array([[10.0, 5.0], [11.0, 5.0], [10.0, 7.0]])
  np.testing.assert_allclose(
    geometry.apply_affine(points, A), [[10, 5], [10, 6], [8, 5]], atol=1e-12
  )


def test_rotation_about_composes_batches_and_matches_under_jit():
  rng = np.random.default_rng(0)
  centre, a, b = rng.uniform(-50, 50, (6, 2)), rng.uniform(-3, 3, 6), rng.uniform(-3, 3, 6)
  both = geometry.compose_affine(
    geometry.rotation_about(centre, b), geometry.rotation_about(centre, a)
  )
  np.testing.assert_allclose(both, geometry.rotation_about(centre, a + b), atol=1e-9)
  device = jax.jit(geometry.rotation_about)(jnp.float32(centre), jnp.float32(a))  # [6, 2, 3]
  assert device.dtype == jnp.float32
  np.testing.assert_allclose(device, geometry.rotation_about(centre, a), atol=1e-4)
  for i in range(6):  # the batch is the single rotations stacked
    np.testing.assert_allclose(
      geometry.rotation_about(centre[i], a[i]), geometry.rotation_about(centre, a)[i]
    )


BOXES_A = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float64)
BOXES_B = np.array([[0, 0, 10, 20], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float64)
IOU_AB = [[0.5, 1 / 3, 0, 0], [0, 0, 0, 0]]  # an empty box overlaps nothing, not even itself


def test_box_iou_known_values_numpy_and_jax():
  host = geometry.box_iou(BOXES_A, BOXES_B)
  assert isinstance(host, np.ndarray) and host.dtype == np.float64
  np.testing.assert_allclose(host, IOU_AB)
  device = jax.jit(geometry.box_iou)(jnp.float32(BOXES_A), jnp.float32(BOXES_B))
  np.testing.assert_allclose(device, IOU_AB, rtol=1e-6)
  np.testing.assert_allclose(geometry.box_iou(BOXES_A[:1], BOXES_A[:1]), [[1.0]])
  assert geometry.box_iou(np.zeros((0, 4)), BOXES_B).shape == (0, 4)
  # Leading axes are batched; `iou` itself broadcasts pairwise.
  batched = geometry.box_iou(np.stack([BOXES_A, BOXES_A]), np.stack([BOXES_B, BOXES_B]))
  np.testing.assert_allclose(batched, [IOU_AB, IOU_AB])
  np.testing.assert_allclose(geometry.iou(BOXES_A[0], BOXES_B[:2]), [0.5, 1 / 3])


def test_box_iou_rejects_non_boxes():
  with pytest.raises(ValueError, match=r'b: expected boxes \[\.\.\., M, 4\]'):
    geometry.box_iou(BOXES_A, BOXES_B[:, :3])
  with pytest.raises(ValueError, match=r'a: expected boxes \[\.\.\., N, 4\]'):
    geometry.box_iou(BOXES_A[0], BOXES_B)


def test_centred_boxes():
  np.testing.assert_allclose(
    geometry.centred_boxes(np.array([[5.0, 6.0]]), np.array([4.0])), [[3, 4, 7, 8]]
  )
  boxes = geometry.centred_boxes(jnp.array([[5.0, 6.0]]), jnp.array([4.0]))
  centre, side = geometry.box_centre_side(boxes)
  np.testing.assert_allclose(centre, [[5, 6]])
  np.testing.assert_allclose(side, [4])
