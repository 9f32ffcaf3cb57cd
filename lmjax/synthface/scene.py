"""Single-face examples and multi-face scenes, deterministic from a seed.

A seed is anything `np.random.SeedSequence` accepts (an int or a sequence of ints, e.g.
`(split_seed, index)`). It is split into independent streams for the faces, the background,
the occluders and the camera effects, so a `clean` rendering (no occluder, no camera effects)
shows the same faces at the same places as the normal one.
"""

from __future__ import annotations

import numpy as np

from lmjax.synthface import occluders
from lmjax.synthface.appearance import Appearance
from lmjax.synthface.background import background, camera_effects, to_uint8
from lmjax.synthface.canvas import Canvas
from lmjax.synthface.head import Camera, Head, sample_head
from lmjax.synthface.render import draw_head
from lmjax.synthface.shape import Pose

Seed = int | tuple[int, ...] | list[int]
OCCLUSION_P = 0.4
FACE_SIDE = (45.0, 95.0)  # single-face examples: larger side of the landmark box, pixels
SCENE_FACE_SIDE = (16.0, 100.0)


def _streams(seed: Seed, n: int) -> list[np.random.Generator]:
  return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def tight_box(points: np.ndarray) -> np.ndarray:
  """(x0, y0, x1, y1) float32 box of points [K, 2]."""
  return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


class _Face:
  """A sampled person whose size and position in the image are chosen later."""

  def __init__(self, rng: np.random.Generator):
    self.head, self.pose = sample_head(rng)
    self.look = Appearance.sample(rng)
    self.rotation = self.pose.matrix()
    unit = self.head.landmarks @ self.rotation.T  # camera frame, head units
    self.unit_box = tight_box(unit[:, :2])

  def camera(self, side: float, x0: float, y0: float) -> Camera:
    """Camera that gives the landmark box a larger side `side` with top-left at (x0, y0)."""
    scale = side / float(np.max(self.unit_box[2:] - self.unit_box[:2]))
    return Camera(self.rotation, scale, np.array([x0, y0]) - scale * self.unit_box[:2])

  def box_size(self, side: float) -> np.ndarray:
    """(width, height) of the landmark box at larger side `side`."""
    wh = self.unit_box[2:] - self.unit_box[:2]
    return wh * side / wh.max()


def _face_record(head: Head, camera: Camera, pose: Pose) -> dict[str, np.ndarray]:
  points = camera.project(head.landmarks).astype(np.float32)
  return {
    'landmarks': points,
    'bbox': tight_box(points),
    'pose': np.array([pose.yaw, pose.pitch, pose.roll], np.float32),
  }


def render_face_example(
  seed: Seed, image_size: tuple[int, int] = (128, 128), clean: bool = False
) -> dict[str, np.ndarray]:
  """One face at a random size and position on a cluttered background.

  The larger side of the landmark box is uniform in FACE_SIDE (45-95 px) for 128-pixel images
  and scales with min(image_size); up to 12% of the box may leave the frame.

  Args:
    seed: determines the example completely.
    image_size: (height, width).
    clean: skip the occluder (drawn on a fraction OCCLUSION_P of the examples) and the camera
      effects (colour, blur, noise, JPEG); the face, its landmarks and the background stay.

  Returns:
    Dict with `image` uint8 [H, W, 3], `landmarks` float32 [68, 2] (0-based pixels, exact even
    where occluded or outside the image), `bbox` float32 [4] (tight box of the landmarks) and
    `pose` float32 [3] (yaw, pitch, roll in degrees).
  """
  face_rng, bg_rng, occ_rng, fx_rng = _streams(seed, 4)
  height, width = image_size
  face = _Face(face_rng)
  side = face_rng.uniform(*FACE_SIDE) * min(height, width) / 128.0
  bw, bh = face.box_size(side)
  x0 = face_rng.uniform(-0.12 * bw, width - 0.88 * bw)
  y0 = face_rng.uniform(-0.12 * bh, height - 0.88 * bh)
  camera = face.camera(side, x0, y0)
  canvas = Canvas(background(bg_rng, height, width))
  draw_head(canvas, face.head, camera, face.look, face_rng)
  record = _face_record(face.head, camera, face.pose)
  if clean:
    return {'image': to_uint8(canvas.image), **record}
  if occ_rng.random() < OCCLUSION_P:
    occluders.draw_occluder(canvas, record['landmarks'], occ_rng)
  return {'image': camera_effects(canvas.image, fx_rng), **record}


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
  return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _zone(box: np.ndarray) -> np.ndarray:
  """Area a face may cover with its hair and body (which continues below the image)."""
  w, h = box[2:] - box[:2]
  return box + np.array([-0.9 * w, -0.7 * h, 0.9 * w, np.inf])


def render_scene(
  seed: Seed, image_size: tuple[int, int] = (240, 320), max_faces: int = 5, clean: bool = False
) -> dict:
  """A scene with 0 to `max_faces` faces of varied sizes that do not cover each other.

  Faces are placed by rejection sampling: no landmark box may intersect the zone (hair,
  shoulders) of another face; a face that does not fit after a few tries is dropped. Smaller
  (farther) faces are drawn first.

  Args:
    seed: determines the scene completely.
    image_size: (height, width).
    max_faces: the largest number of faces.
    clean: no occluders and no camera effects (as in `render_face_example`).

  Returns:
    Dict with `image` uint8 [H, W, 3] and `faces`, a list of dicts with `landmarks` [68, 2],
    `bbox` [4] and `pose` [3] (float32), smallest face first.
  """
  layout_rng, bg_rng, fx_rng, *face_rngs = _streams(seed, 3 + max_faces)
  height, width = image_size
  wanted = 0 if layout_rng.random() < 0.15 else int(layout_rng.integers(1, max_faces + 1))
  lo, hi = np.log(SCENE_FACE_SIDE[0]), np.log(min(SCENE_FACE_SIDE[1], 0.5 * height))
  placed = []  # (side, face, camera, box, rng)
  for rng in face_rngs[:wanted]:
    face = _Face(rng)
    side = float(np.exp(layout_rng.uniform(lo, hi)))
    for _ in range(12):
      bw, bh = face.box_size(side)
      if bw < width and bh < height:
        x0, y0 = layout_rng.uniform(0, width - bw), layout_rng.uniform(0, height - bh)
        box = np.array([x0, y0, x0 + bw, y0 + bh])
        if all(
          not _overlaps(box, _zone(b)) and not _overlaps(b, _zone(box)) for _, _, _, b, _ in placed
        ):
          placed.append((side, face, face.camera(side, box[0], box[1]), box, rng))
          break
      side = max(side * 0.85, SCENE_FACE_SIDE[0])
  placed.sort(key=lambda item: item[0])
  canvas = Canvas(background(bg_rng, height, width))
  faces = []
  for _, face, camera, _, rng in placed:
    draw_head(canvas, face.head, camera, face.look, rng)
    record = _face_record(face.head, camera, face.pose)
    if not clean and rng.random() < OCCLUSION_P * 0.6:
      occluders.draw_occluder(canvas, record['landmarks'], rng)
    faces.append(record)
  image = to_uint8(canvas.image) if clean else camera_effects(canvas.image, fx_rng)
  return {'image': image, 'faces': faces}
