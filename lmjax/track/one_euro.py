"""The One Euro filter (Casiez, Roussel and Vogel, CHI 2012): adaptive low-pass smoothing.

    smooth = OneEuroFilter(OneEuroConfig())
    for t, points in enumerate(frames_of_points):         # points: [K, 2] pixels
      out = smooth(points, t / fps, scale=face_side)      # [K, 2]

A first-order low-pass filter whose cutoff frequency rises with the signal's speed: slow
signals (a still head) are smoothed hard, which removes jitter; fast ones (a moving head) pass
with little lag. Per step, with dt the time since the previous sample,

    alpha(fc) = 1 / (1 + 1 / (2π fc dt))
    dx_hat    = alpha(d_cutoff) · (x − x_hat_prev) / dt + (1 − alpha(d_cutoff)) · dx_hat_prev
    fc        = min_cutoff + beta · |dx_hat| / scale
    x_hat     = alpha(fc) · x + (1 − alpha(fc)) · x_hat_prev

The speed |dx_hat| is the norm over the last axis (a landmark's 2-D velocity, so both
coordinates of a point share one cutoff) and is divided by `scale` (e.g. the face's box side),
which makes `beta` independent of the face's size in pixels: speeds are in face sizes per
second.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class OneEuroConfig:
  """The filter's parameters.

  Attributes:
    min_cutoff: Hz, the cutoff at rest. Lower: less jitter on a still head, more lag when it
      starts to move (the paper starts from 1 Hz; 0.5 Hz removed more jitter at the same lag).
    beta: Hz per (scale unit / s), how fast the cutoff rises with speed. Higher: less lag on
      moving heads, more jitter left. The defaults were chosen on rendered sequences
      (`benchmarks/video_tracking.py`, speeds in face sizes per second): of min_cutoff 0.5, 1,
      2 Hz and beta 4 to 64, the lowest jitter on a static head with at most 1 % added NME on
      a head moving at about 2 face sizes/s.
    d_cutoff: Hz, the cutoff of the speed estimate (1 Hz in the paper).
  """

  min_cutoff: float = 0.5
  beta: float = 32.0
  d_cutoff: float = 1.0

  def __post_init__(self):
    for name in ('min_cutoff', 'd_cutoff'):
      if not getattr(self, name) > 0:
        raise ValueError(f'OneEuroConfig.{name}={getattr(self, name)}: expected > 0 Hz')
    if not self.beta >= 0:
      raise ValueError(f'OneEuroConfig.beta={self.beta}: expected >= 0')


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
  return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * np.asarray(cutoff) * dt))


class OneEuroFilter:
  """A One Euro filter over arrays of any fixed shape [..., D] (D: the vector whose norm is the
  speed, e.g. 2 for [K, 2] landmarks). The first sample passes unchanged."""

  def __init__(self, config: OneEuroConfig | None = None):
    self.config = config or OneEuroConfig()
    self.reset()

  def reset(self) -> None:
    """Forgets the past: the next sample passes unchanged."""
    self._x = self._dx = self._t = None

  def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
    """The filtered sample.

    Args:
      x: float [..., D], the same shape at every call.
      t: its time in seconds, increasing.
      scale: the unit of the speed (> 0), e.g. the face's size in pixels.

    Returns:
      float64 [..., D] filtered x.
    """
    x = np.asarray(x, np.float64)
    if self._x is None:
      self._x, self._dx, self._t = x, np.zeros_like(x), float(t)
      return x.copy()
    if x.shape != self._x.shape:
      raise ValueError(f'OneEuroFilter: shape {x.shape}, but it filtered {self._x.shape}')
    dt = float(t) - self._t
    if not dt > 0:
      raise ValueError(f'OneEuroFilter: time {t} is not after the previous sample ({self._t})')
    c = self.config
    a_d = _alpha(c.d_cutoff, dt)
    self._dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
    speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / max(float(scale), 1e-9)
    a = _alpha(c.min_cutoff + c.beta * speed, dt)
    self._x = a * x + (1.0 - a) * self._x
    self._t = float(t)
    return self._x.copy()
