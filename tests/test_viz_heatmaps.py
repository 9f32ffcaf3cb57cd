"""Heatmap pictures: layout, colours where the maps peak, and bad-input errors."""

import cv2
import numpy as np
import pytest

from lmjax.viz import heatmaps


def test_panel_layout_and_peak_colour(tmp_path):
  image = np.full((32, 32, 3), 100, np.uint8)
  coarse = np.zeros((32, 32, 5), np.float32)
  coarse[10, 20, 2] = 1.0  # one peak of type 2
  fine = np.zeros((5, 24, 24), np.float32)
  fine[:, 12, 12] = 1.0
  points = np.array([[20.0, 10.0]] * 5)
  panel = heatmaps.heatmap_panel(image, coarse, fine, points, scale=4)
  assert panel.dtype == np.uint8 and panel.shape[0] == 128
  assert panel.shape[1] > 2 * 128  # input, overlay, fine tiles
  overlay = panel[:, 132:260]
  peak, far = overlay[10 * 4 + 1, 20 * 4 + 1], overlay[100, 20]
  assert int(peak.sum()) > int(far.sum()) + 100  # the peak is bright in the overlay
  path = tmp_path / 'viz.png'
  heatmaps.write_png(str(path), panel)
  assert cv2.imread(str(path)).shape == panel.shape


def test_panel_without_fine_maps_and_bad_shapes():
  image = np.zeros((32, 32, 3), np.uint8)
  panel = heatmaps.heatmap_panel(image, np.random.default_rng(0).random((32, 32, 3)), scale=2)
  assert panel.shape == (64, 2 * 68, 3)
  with pytest.raises(ValueError, match='coarse'):
    heatmaps.heatmap_panel(image, np.zeros((16, 16, 3)))
