"""Rendered video sequences of one person with known landmarks in every frame.

    traj = sequence.trajectory('moving', num_frames=60, image_size=(240, 320))
    clip = sequence.render_sequence(seed=0, traj=traj, image_size=(240, 320))
    clip['frames']      # uint8 [T, H, W, 3]
    clip['landmarks']   # float32 [T, 68, 2] exact 0-based pixels
    clip['bbox']        # float32 [T, 4] tight landmark boxes
    clip['pose']        # float32 [T, 3] yaw, pitch, roll in degrees

A `Trajectory` gives the head pose, the landmark-box side and the box centre in every frame.
The person, its appearance, the textures and the background are drawn from `seed` once and
stay the same in every frame; each frame gets its own sensor noise (so that a static head
still varies from frame to frame, as in a real camera). With `occluder=True` a textured bar
passes over the face from left to right during the middle half of the sequence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.synthface.appearance import Appearance
from lmjax.synthface.background import background, to_uint8
from lmjax.synthface.canvas import Canvas, rectangle_points
from lmjax.synthface.head import Camera, sample_head
from lmjax.synthface.render import draw_head
from lmjax.synthface.scene import Seed, _face_record, _streams, tight_box
from lmjax.synthface.shape import Pose

KINDS = ('static', 'turning', 'moving', 'scaling')


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """The head over T frames.

  Attributes:
    pose: float [T, 3] yaw, pitch, roll in degrees.
    side: float [T] larger side of the landmark box, pixels.
    centre: float [T, 2] (x, y) centre of the landmark box, pixels.
  """

  pose: np.ndarray
  side: np.ndarray
  centre: np.ndarray

  def __len__(self) -> int:
    return len(self.side)


def trajectory(kind: str, num_frames: int, image_size: tuple[int, int]) -> Trajectory:
  """A standard trajectory in an image of `image_size` (height, width).

  'static': a still frontal head in the middle; 'turning': yaw swings ±40° and pitch ±12°
  (one period); 'moving': the head crosses the middle 60 % of the width and back at a constant
  speed, with a slight vertical bob; 'scaling': the face side goes from 0.25 to 0.5 of the
  image height and back (the head approaching the camera).
  """
  if kind not in KINDS:
    raise ValueError(f'trajectory {kind!r}: expected one of {KINDS}')
  height, width = image_size
  t = np.arange(num_frames, dtype=np.float64) / max(num_frames - 1, 1)  # 0 .. 1
  pose = np.zeros((num_frames, 3))
  side = np.full(num_frames, 0.35 * height)
  centre = np.tile([0.5 * width, 0.5 * height], (num_frames, 1))
  if kind == 'turning':
    pose[:, 0] = 40.0 * np.sin(2 * np.pi * t)
    pose[:, 1] = 12.0 * np.sin(4 * np.pi * t)
  elif kind == 'moving':
    triangle = 1.0 - np.abs(2.0 * t - 1.0)  # 0 -> 1 -> 0
    centre[:, 0] = width * (0.2 + 0.6 * triangle)
    centre[:, 1] += 0.05 * height * np.sin(2 * np.pi * t)
    pose[:, 2] = 8.0 * np.sin(2 * np.pi * t)
  elif kind == 'scaling':
    side = height * (0.25 + 0.25 * np.sin(np.pi * t))
  return Trajectory(pose, side, centre)


def _camera(head, pose: np.ndarray, side: float, centre: np.ndarray) -> Camera:
  """The camera that shows `head` at `pose` with its landmark box of larger side `side`
  centred on `centre`."""
  rotation = Pose(*map(float, pose)).matrix()
  unit = tight_box((head.landmarks @ rotation.T)[:, :2])
  scale = side / float(np.max(unit[2:] - unit[:2]))
  return Camera(rotation, scale, centre - scale * (unit[:2] + unit[2:]) / 2)


def _occluder_bar(canvas: Canvas, box: np.ndarray, progress: float, rgb: np.ndarray) -> None:
  """A vertical bar (0.3 of the box wide) at `progress` (0: left of the box, 1: right)."""
  w, h = box[2:] - box[:2]
  x = box[0] - 0.4 * w + progress * 1.8 * w
  centre = np.array([x, (box[1] + box[3]) / 2])
  canvas.paint(canvas.polygon([rectangle_points(centre, np.array([0.15 * w, h]), 0.1)]), rgb)


def render_sequence(
  seed: Seed,
  traj: Trajectory,
  image_size: tuple[int, int] = (240, 320),
  noise: float = 0.03,
  occluder: bool = False,
) -> dict[str, np.ndarray]:
  """Renders one person along `traj`.

  Args:
    seed: the person, appearance, background and noise.
    traj: the head in every frame (`trajectory`).
    image_size: (height, width).
    noise: std of the per-frame uniform sensor noise (image values in [0, 1]).
    occluder: a bar passes over the face during the middle half of the sequence.

  Returns:
    Dict of `frames` uint8 [T, H, W, 3], `landmarks` float32 [T, 68, 2], `bbox` float32
    [T, 4] and `pose` float32 [T, 3] (the rendered pose; yaw, pitch, roll in degrees).
  """
  face_rng, bg_rng, noise_rng, look_rng = _streams(seed, 4)
  height, width = image_size
  head, _ = sample_head(face_rng)
  look = Appearance.sample(look_rng)
  texture_seed = int(face_rng.integers(2**31))
  bar_rgb = face_rng.uniform(0.0, 1.0, 3).astype(np.float32)
  scenery = background(bg_rng, height, width)
  n = len(traj)
  out = {
    'frames': np.zeros((n, height, width, 3), np.uint8),
    'landmarks': np.zeros((n, 68, 2), np.float32),
    'bbox': np.zeros((n, 4), np.float32),
    'pose': np.zeros((n, 3), np.float32),
  }
  for i in range(n):
    camera = _camera(head, traj.pose[i], float(traj.side[i]), traj.centre[i])
    canvas = Canvas(scenery.copy())
    draw_head(canvas, head, camera, look, np.random.default_rng(texture_seed))
    record = _face_record(head, camera, Pose(*map(float, traj.pose[i])))
    progress = (i / max(n - 1, 1) - 0.25) * 2.0  # 0 -> 1 over the middle half
    if occluder and 0.0 <= progress <= 1.0:
      _occluder_bar(canvas, record['bbox'], progress, bar_rgb)
    img = canvas.image + noise * noise_rng.uniform(-np.sqrt(3), np.sqrt(3), canvas.image.shape)
    out['frames'][i] = to_uint8(img.astype(np.float32))
    for key in ('landmarks', 'bbox', 'pose'):
      out[key][i] = record[key]
  return out
