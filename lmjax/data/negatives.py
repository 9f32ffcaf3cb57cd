"""The negative-window cache: face-free R × R crops shared by BB-FCN and the face classifier.

Cut on the host once per run from (a) the training photos, away from their face boxes
enlarged by `FACE_MARGIN` (windows drawn by `lmjax.data.windows.negative_windows`), skipping the
validation faces' photos, and (b) procedural clutter backgrounds (`lmjax.synthface.background`,
the stand-in for the paper's Pascal VOC images). `split_negatives` holds some out for
validation. Each training step then re-crops them on device (the experiments' own data code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from lmjax.core import geometry, image_ops
from lmjax.data import caches, datasets
from lmjax.data.datasets import table
from lmjax.data.windows import negative_windows
from lmjax.synthface import background as synth_background

# Negatives avoid the face box enlarged by this factor about its centre (the tight landmark
# box of 300-W leaves out the forehead and hair).
FACE_MARGIN = 1.3


def build_negative_cache(
  config: ml_collections.ConfigDict, exclude_ids: set[str], seed: int
) -> np.ndarray:
  """uint8 [N, R, R, 3] face-free windows: training photos plus synthetic backgrounds.

  Args:
    config: the experiment config (`data`, `negatives`, `model.refine_size`, `model.num_points`).
    exclude_ids: image ids not to take windows from (the validation faces).
    seed: randomness of the windows and backgrounds.
  """
  n = config.negatives
  size = config.model.refine_size
  rng = np.random.default_rng(seed)
  out = []
  if n.from_photos > 0:
    d = table.resolve(config.data, config.model.num_points)
    source = datasets.load(
      d.name,
      d.train_split,
      manual_dir=d.manual_dir or None,
      data_dir=d.data_dir or None,
      config=caches.builder_config(d),
    )
    order = rng.permutation(len(source))
    key = jax.random.key(seed)
    skipped = 0
    bar = tqdm(order, desc='negative windows (photos)', mininterval=2)
    for i in bar:
      if len(out) >= n.from_photos:
        break
      ex = datasets.decode(source[int(i)])
      if ex['image_id'] in exclude_ids:
        continue
      windows = _photo_windows(jax.random.fold_in(key, int(i)), ex, n.per_photo, n.min_side_frac)
      if not len(windows):
        skipped += 1
      for w in windows[: n.from_photos - len(out)]:
        A = geometry.square_affine((w[:2] + w[2:]) / 2, w[2] - w[0], size)
        out.append(image_ops.warp(ex['image'], A, size))
    bar.close()
    logging.info('negatives: %d windows from photos (%d photos had no room)', len(out), skipped)
  for _ in tqdm(range(n.synthetic), desc='negative windows (synthetic)', mininterval=2):
    image = synth_background.background(rng, size, size)
    out.append(synth_background.camera_effects(image, rng))
  if not out:
    raise ValueError('config.negatives gives no negative windows (from_photos = synthetic = 0)')
  return np.stack(out).astype(np.uint8)


def _photo_windows(key, ex, num: int, min_side_frac: float) -> np.ndarray:
  """Up to `num` square windows [n, 4] of one photo that avoid its enlarged face box."""
  h, w = ex['image'].shape[:2]
  box = np.asarray(ex['bbox'], np.float32)
  centre, side = (box[:2] + box[2:]) / 2, FACE_MARGIN * np.max(box[2:] - box[:2])
  face = np.concatenate([centre - side / 2, centre + side / 2])[None]
  min_side = max(12.0, min_side_frac * min(h, w))
  if min_side > min(h, w):
    return np.zeros((0, 4), np.float32)
  windows, valid = negative_windows(
    key, (h, w), jnp.asarray(face), jnp.ones(1, bool), num, min_side=min_side
  )
  return np.asarray(windows)[np.asarray(valid)]


def split_negatives(negatives: np.ndarray, num_val: int, seed: int, num_faces=None):
  """(train, validation) rows of the negative cache, shuffled deterministically.

  With `num_faces` = (train, validation) face counts, logs the sizes of the training data.
  """
  perm = np.random.default_rng([seed, 1]).permutation(len(negatives))
  num_val = min(num_val, len(negatives) // 5)
  train, val = negatives[perm[num_val:]], negatives[perm[:num_val]]
  if num_faces is not None:
    logging.info(
      'train faces: %d, validation faces: %d, negatives: %d train / %d validation',
      *num_faces, len(train), len(val),
    )  # fmt: skip
  return train, val
