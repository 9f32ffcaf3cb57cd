"""Face proposals from landmark detections, and their grouping into faces (paper §IV-F).

Each detection of type k at level l proposes the backbone's training window at that level
(32 level pixels), placed so that the landmark sits where the mean face puts type k (the
`face_template` of the model's `model.json`), shrunk to the face box of the model's box
convention. Proposals are scored by landmark consensus, suppressed per type and then across
types, and every surviving face takes the strongest detection of each type on it. Jittable,
fixed shapes, used inside `scanner.scan_images` and by `Scanner.regroup`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lmjax.core import geometry, nms
from lmjax.scan import pyramid


def face_boxes(points, scale, template, crop_scale):
  """Face box [..., 4] proposed by each detection: its training window, shrunk to the box.

  Args:
    points: [..., K, m, 2] image-pixel detections of type k.
    scale: [..., K, m] scale of their level (the backbone window is 32 level pixels).
    template: [K, 2] mean position of each type inside the window, in [0, 1] units.
    crop_scale: window side / face box side of the model's training crops.
  """
  side = pyramid.BASE_SIDE / scale  # window side in image pixels
  centre = points + (0.5 - template[:, None, :]) * side[..., None]
  return geometry.centred_boxes(centre, side / crop_scale)


def _group_faces(boxes, score, valid, params):
  """Face proposals scored by landmark consensus, NMS per type then across types, and faces.

  A proposal's score is the mean over the K types of the strongest detection of that type
  whose own proposal overlaps it (IoU ≥ face_iou): a window that all K landmark types agree on
  scores about 1, a lone detection 1 / K of its response. (The paper re-scores proposals with
  cascade-CNN's Net-12; `lmjax.scan.detect` can add our face/non-face CNN on top.)

  Args:
    boxes: [K, m, 4], score / valid: [K, m] (one image).

  Returns:
    dict of proposal ranking and faces (see `scan_images`).
  """
  k, m = score.shape
  flat_boxes, flat_valid = boxes.reshape(k * m, 4), valid.reshape(k * m)
  iou = geometry.box_iou(flat_boxes, flat_boxes).reshape(k * m, k, m)  # proposal × detection
  member = (iou >= params.face_iou) & valid[None]
  support = jnp.where(member, score[None], 0.0).max(axis=-1).sum(axis=-1) / k  # [K·m]
  support = jnp.where(flat_valid, support, 0.0)
  keep_type = nms.nms(boxes, support.reshape(k, m), valid, params.face_iou)  # [K, m]
  keep = nms.nms(flat_boxes, support, keep_type.reshape(-1), params.face_iou)
  index, face_valid = nms.top_valid(support, keep, min(params.max_faces, k * m))
  face_member = member[index] & face_valid[:, None, None]  # [F, K, m]
  best = jnp.argmax(jnp.where(face_member, score[None], -jnp.inf), axis=-1)  # [F, K]
  present = jnp.any(face_member, axis=-1)
  weight = jnp.where(present, jnp.take_along_axis(score[None], best[..., None], axis=-1)[..., 0], 0)
  chosen = jnp.take_along_axis(boxes[None], best[..., None, None], axis=2)[:, :, 0]  # [F, K, 4]
  voted = jnp.sum(weight[..., None] * chosen, 1) / jnp.maximum(weight.sum(1), 1e-9)[..., None]
  return {
    'proposals': flat_boxes,
    'proposal_score': support,
    'proposal_valid': keep,
    'faces': jnp.where(present.any(-1)[:, None], voted, flat_boxes[index]),
    'face_score': jnp.where(face_valid, support[index], 0.0),
    'face_valid': face_valid,
    'face_member': best,
    'face_point_valid': present,
  }


def group_detections(points, scale, score, valid, template, crop_scale, params):
  """Proposals and faces of detections [N, K, m] (the face keys of `scan_images`).

  Args:
    points: [N, K, m, 2] image-pixel detections; scale: [N, K, m] scale of their level;
    score / valid: [N, K, m]; template, crop_scale, params: as in `scan_images`.
  """
  boxes = face_boxes(points, scale, template, crop_scale)
  faces = jax.vmap(functools.partial(_group_faces, params=params))(boxes, score, valid)
  member = faces.pop('face_member')  # [N, F, K] index into m
  faces['face_points'] = jnp.take_along_axis(points[:, None], member[..., None, None], axis=3)[
    :, :, :, 0
  ]
  return faces
