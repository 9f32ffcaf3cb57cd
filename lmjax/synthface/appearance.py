"""Random appearance of a person: colours, hair style, make-up and the light."""

from __future__ import annotations

import dataclasses

import numpy as np

# Skin albedos (RGB in [0, 1]) from very light to very dark; samples interpolate.
_SKIN = np.array(
  [
    [0.97, 0.82, 0.72],
    [0.92, 0.72, 0.58],
    [0.83, 0.62, 0.47],
    [0.70, 0.50, 0.36],
    [0.55, 0.38, 0.26],
    [0.40, 0.26, 0.17],
    [0.28, 0.18, 0.12],
  ]
)
_HAIR = np.array(
  [
    [0.05, 0.04, 0.04],
    [0.15, 0.10, 0.07],
    [0.30, 0.19, 0.11],
    [0.50, 0.35, 0.20],
    [0.78, 0.63, 0.40],
    [0.55, 0.22, 0.10],
    [0.62, 0.60, 0.58],
    [0.88, 0.87, 0.84],
  ]
)
_HAIR_P = np.array([0.28, 0.24, 0.16, 0.1, 0.08, 0.05, 0.05, 0.04])
_IRIS = np.array(
  [
    [0.20, 0.11, 0.06],
    [0.35, 0.20, 0.10],
    [0.25, 0.40, 0.58],
    [0.30, 0.42, 0.28],
    [0.42, 0.45, 0.48],
    [0.10, 0.07, 0.05],
  ]
)
HAIR_STYLES = ('bald', 'short', 'long', 'fringe')
_HAIR_STYLE_P = (0.1, 0.45, 0.3, 0.15)


def skin_tone(rng: np.random.Generator) -> np.ndarray:
  """A random skin albedo, RGB in [0, 1]."""
  t = rng.uniform(0, len(_SKIN) - 1)
  i = min(int(t), len(_SKIN) - 2)
  skin = _SKIN[i] + (t - i) * (_SKIN[i + 1] - _SKIN[i])
  return np.clip(skin * rng.uniform(0.92, 1.08, 3), 0.05, 1.0)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """Colours and styles of one face (RGB in [0, 1]).

  Attributes:
    skin, hair, brow, lips, iris, sclera, clothes: albedo colours.
    hair_style: one of HAIR_STYLES.
    beard: opacity of a beard/stubble tint, 0 for none.
    brow_thickness: brow height in head units.
    eyeliner: lash-line thickness factor.
    light: unit light direction in the camera frame (z towards the camera).
    ambient, diffuse, specular: light intensities.
  """

  skin: np.ndarray
  hair: np.ndarray
  brow: np.ndarray
  lips: np.ndarray
  iris: np.ndarray
  sclera: np.ndarray
  clothes: np.ndarray
  hair_style: str
  beard: float
  brow_thickness: float
  eyeliner: float
  light: np.ndarray
  ambient: float
  diffuse: float
  specular: float

  @classmethod
  def sample(cls, rng: np.random.Generator) -> Appearance:
    """A random appearance."""
    skin = skin_tone(rng)
    hair = (
      _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)]
      * rng.uniform(0.75, 1.25)
      * rng.uniform(0.93, 1.07, 3)
    )
    hair = np.clip(hair, 0.02, 0.95)
    brow = np.clip(0.55 * hair + 0.25 * skin * rng.uniform(0.3, 0.8), 0.02, 0.9)
    if rng.random() < 0.15:  # lipstick
      lips = rng.uniform([0.45, 0.0, 0.05], [0.9, 0.25, 0.45])
    else:
      lips = skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02])
    light = rng.normal(0.0, 1.0, 3)
    light[1] = -abs(light[1]) * 0.8 if rng.random() < 0.75 else light[1]  # mostly from above
    light[2] = abs(light[2]) + 0.6
    light /= np.linalg.norm(light)
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_HAIR_STYLE_P)]
    return cls(
      skin=skin,
      hair=hair,
      brow=brow,
      lips=np.clip(lips, 0.0, 1.0),
      iris=np.clip(_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2, 3), 0.0, 1.0),
      sclera=np.array([0.93, 0.90, 0.87]) * rng.uniform(0.8, 1.0),
      clothes=rng.uniform(0.05, 0.95, 3),
      hair_style=style,
      beard=rng.uniform(0.25, 0.7) if rng.random() < 0.15 else 0.0,
      brow_thickness=rng.uniform(0.05, 0.11),
      eyeliner=rng.uniform(0.8, 1.8),
      light=light,
      ambient=rng.uniform(0.35, 0.6),
      diffuse=rng.uniform(0.35, 0.75),
      specular=rng.uniform(0.0, 0.15),
    )
