"""Warm starts: leaves matched by name and shape, head broadcasting, and the no-match error."""

import numpy as np
import pytest

from lmjax.models import registry
from lmjax.train import checkpoint, warm_start


def mcl_spec(num_points=5, num_heads=1, width=16):
  return registry.make_spec(
    'mcl', num_points=num_points, width=width, variant='gap', num_heads=num_heads, size=50,
    crop_scale=1.1, grayscale=True, dataset='synthetic',
  )  # fmt: skip


def test_match_by_name_and_shape_reports_loaded_new_and_dropped():
  target = {'params': {'a': {'kernel': np.zeros((2, 3))}, 'b': {'bias': np.zeros(4)}}}
  source = {
    'params': {'a': {'kernel': np.ones((2, 3))}, 'b': {'bias': np.ones(5)}, 'c': np.ones(1)}
  }
  variables, report = warm_start.match(target, source)
  np.testing.assert_array_equal(variables['params']['a']['kernel'], np.ones((2, 3)))
  np.testing.assert_array_equal(variables['params']['b']['bias'], np.zeros(4))  # shape differs
  assert report == {
    'loaded': ['params/a/kernel'],
    'new': ['params/b/bias'],
    'dropped': ['params/b/bias', 'params/c'],
  }


def test_heads_the_source_lacks_start_from_its_head_zero():
  head = {'kernel': np.full((3, 10), 2.0), 'bias': np.full(10, 3.0)}
  source = {'params': {'heads': {'0': head}}}
  target = {
    'params': {'heads': {str(i): {k: np.zeros_like(v) for k, v in head.items()} for i in range(3)}}
  }
  variables, report = warm_start.match(target, source)
  for i in range(3):
    np.testing.assert_array_equal(variables['params']['heads'][str(i)]['kernel'], head['kernel'])
  assert not report['new'] and not report['dropped'] and len(report['loaded']) == 6


def test_apply_from_a_model_folder(tmp_path):
  spec = mcl_spec()
  trained = registry.init(spec, seed=1)
  checkpoint.export_model(str(tmp_path / 'm'), trained, spec)
  fresh = registry.init(spec, seed=0)
  warm = warm_start.apply(fresh, str(tmp_path / 'm'))
  for path in (('params', 'conv11', 'kernel'), ('batch_stats', 'bn11', 'mean')):
    a, b = warm, trained
    for key in path:
      a, b = a[key], b[key]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Another landmark count: the trunk loads, the head is new (shape differs).
  other = registry.init(mcl_spec(num_points=68), seed=0)
  warm68 = warm_start.apply(other, str(tmp_path / 'm'))
  np.testing.assert_array_equal(
    np.asarray(warm68['params']['conv43']['kernel']),
    np.asarray(trained['params']['conv43']['kernel']),
  )
  assert (
    warm68['params']['heads']['0']['kernel'].shape == other['params']['heads']['0']['kernel'].shape
  )


def test_a_folder_that_matches_nothing_is_an_error(tmp_path):
  spec = registry.make_spec(
    'facecls', size=24, supersample=2, widths=[4, 8], hidden=8, crop='square', dataset='synthetic'
  )
  checkpoint.export_model(str(tmp_path / 'f'), registry.init(spec), spec)
  with pytest.raises(ValueError, match=r'none of its .* arrays matches the model by name'):
    warm_start.apply(registry.init(mcl_spec()), str(tmp_path / 'f'))
