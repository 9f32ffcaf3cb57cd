"""Named-path pytree surgery: masks, merging with loud errors, MCL model assembling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.models.mcl import MCL
from lmjax.train import surgery


def _mc_params(num_points=5, num_heads=4, width=8):
  model = MCL(num_points, width=width, num_heads=num_heads)
  return model, model.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))


def test_flatten_round_trip_and_masks():
  tree = {'conv11': {'kernel': 1, 'bias': 2}, 'heads': {'0': {'kernel': 3}}}
  flat = surgery.flatten(tree)
  assert flat == {'conv11/kernel': 1, 'conv11/bias': 2, 'heads/0/kernel': 3}
  assert surgery.unflatten(flat) == tree
  mask = surgery.path_mask(tree, r'(^|/)kernel$')
  assert mask == {'conv11': {'kernel': True, 'bias': False}, 'heads': {'0': {'kernel': True}}}
  assert surgery.path_mask(tree, None)['heads']['0']['kernel'] is False


def test_assemble_heads_takes_cluster_rows_from_their_head():
  clusters = [(0,), (1,), (2,), (3, 4)]
  _, variables = _mc_params()
  params = dict(variables['params'])
  # Make head i's kernel/bias equal to i everywhere, so the source of each column shows.
  params['heads'] = {
    str(i): {'kernel': jnp.full((8, 10), float(i)), 'bias': jnp.full((10,), float(i))}
    for i in range(4)
  }
  assembled = surgery.assemble_heads(params, clusters, 5)
  assert list(assembled['heads']) == ['0']
  expected_cols = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 3], np.float32)
  np.testing.assert_array_equal(assembled['heads']['0']['bias'], expected_cols)
  np.testing.assert_array_equal(assembled['heads']['0']['kernel'], np.tile(expected_cols, (8, 1)))
  assert assembled['conv11'] is params['conv11']  # the trunk is shared, untouched


def test_assembled_model_predicts_each_cluster_with_its_head():
  clusters = [(0,), (1,), (2,), (3, 4)]
  model, variables = _mc_params()
  params = jax.tree_util.tree_map(
    lambda x: x + jax.random.normal(jax.random.key(1), x.shape), variables['params']
  )
  x = jax.random.normal(jax.random.key(2), (3, 50, 50, 1))
  multi = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x)
  am = surgery.assemble_heads(params, clusters, 5)
  single = MCL(5, width=8, num_heads=1).apply(
    {'params': am, 'batch_stats': variables['batch_stats']}, x
  )
  for i, cluster in enumerate(clusters):
    np.testing.assert_allclose(single[:, 0, list(cluster)], multi[:, i, list(cluster)], rtol=1e-5)


def test_assemble_heads_mismatch_errors():
  _, variables = _mc_params()
  with pytest.raises(ValueError, match=r'3 clusters need heads 0..2; the parameters have heads'):
    surgery.assemble_heads(variables['params'], [(0,), (1,), (2, 3, 4)], 5)
  with pytest.raises(ValueError, match='must partition'):
    surgery.assemble_heads(variables['params'], [(0,), (1,), (2,), (3,)], 5)
  with pytest.raises(ValueError, match=r'heads/0: expected kernel \[D, 12\]'):
    surgery.assemble_heads(variables['params'], [(0,), (1,), (2,), (3, 4, 5)], 6)


def test_broadcast_head_and_merge_params():
  _, single = (lambda m: (m, m.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))))(MCL(5, width=8))
  multi = surgery.broadcast_head(single['params'], 4)
  assert sorted(multi['heads']) == ['0', '1', '2', '3']
  np.testing.assert_array_equal(
    multi['heads']['3']['kernel'], single['params']['heads']['0']['kernel']
  )
  with pytest.raises(ValueError, match='expected a single-head model'):
    surgery.broadcast_head(multi, 4)
  # merge: a source lacking heads/1..3 fails loudly, naming them, unless told not to load them.
  with pytest.raises(ValueError, match=r'missing in source: heads/1/kernel'):
    surgery.merge_params(multi, single['params'])
  merged = surgery.merge_params(multi, single['params'], dont_load=[r'^heads/[123]/'])
  assert sorted(merged['heads']) == ['0', '1', '2', '3']
  bad = dict(single['params'])
  bad['conv11'] = {'kernel': jnp.zeros((3, 3, 1, 7)), 'bias': jnp.zeros(7)}
  with pytest.raises(ValueError, match=r'shape mismatch:\s+conv11/bias'):
    surgery.merge_params(single['params'], bad)
