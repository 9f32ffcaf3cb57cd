"""ProposalNet: dense output cells equal the network on their 12 × 12 windows; registry family."""

import jax
import numpy as np
import pytest

from lmjax.models import proposal_net, registry


def test_output_size():
  assert proposal_net.output_size(12) == 1
  assert proposal_net.output_size(13) == 1
  assert proposal_net.output_size(14) == 2
  assert proposal_net.output_size(11) == 0
  assert proposal_net.output_size(256) == 123


def test_dense_cells_are_the_windows():
  model = proposal_net.ProposalNet()
  x = np.random.default_rng(0).uniform(-1, 1, (1, 31, 40, 3)).astype(np.float32)
  variables = model.init(jax.random.key(1), x[:, :12, :12])
  logits, boxes = model.apply(variables, x)
  h, w = proposal_net.output_size(31), proposal_net.output_size(40)
  assert logits.shape == (1, h, w) and boxes.shape == (1, h, w, 4)
  s = proposal_net.STRIDE
  for i, j in [(0, 0), (h - 1, w - 1), (3, 7)]:
    window = x[:, s * i : s * i + 12, s * j : s * j + 12]
    one_logit, one_box = model.apply(variables, window)
    np.testing.assert_allclose(logits[0, i, j], one_logit[0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(boxes[0, i, j], one_box[0, 0, 0], atol=1e-5)


def test_small_input_is_an_error():
  model = proposal_net.ProposalNet()
  with pytest.raises(ValueError, match='expected height and width'):
    model.init(jax.random.key(0), np.zeros((1, 11, 20, 3), np.float32))


def test_registry_builds_and_inits():
  spec = registry.make_spec('proposer', size=12, widths=[10, 16, 32], crop='window', dataset='x')
  variables = registry.init(spec)
  assert variables['params']['conv1']['kernel'].shape == (3, 3, 3, 10)
  assert isinstance(registry.build(spec), proposal_net.ProposalNet)
