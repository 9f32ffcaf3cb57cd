"""The train steps and forward passes that `train_speed.py` times, one builder per family.

Each `*_row` builds a trainer's jitted step (`make_update_fn` of `lmjax.mcl.train`,
`lmjax.bbfcn.train`, `lmjax.facecls.train`) on a random uint8 region cache and drives it as
`lmjax.train.loop.run_stage` does, then times the same model's forward at the same batch;
it returns (train examples/s, forward examples/s). `Code` resolves MCL's modules in the current
tree or in the baseline commit's (its old module names).
"""

from __future__ import annotations

import pathlib
import runpy
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_EXAMPLES = 512  # rows of the random region cache


def _config(family: str, arg: str, configs_dir: pathlib.Path):
  return runpy.run_path(str(configs_dir / f'{family}.py'))['get_config'](arg)


def _face_cache(num_points: int, region: int, channels: int, num_examples: int = NUM_EXAMPLES):
  """Random uint8 regions [N, 1, R, R, C] with a centred face box and landmarks inside it."""
  import numpy as np

  rng = np.random.default_rng(0)
  lo, hi = 0.3 * region, 0.7 * region
  return {
    'regions': rng.integers(0, 256, (num_examples, 1, region, region, channels), np.uint8),
    'landmarks': rng.uniform(lo, hi, (num_examples, num_points, 2)).astype(np.float32),
    'bbox': np.tile(np.array([[lo, lo, hi, hi]], np.float32), (num_examples, 1)),
    'visible': np.ones((num_examples, num_points), bool),
  }


def _host_copy(tree):
  """Host copies of a pytree's arrays (the step donates its state; the forward keeps its own)."""
  import jax
  import numpy as np

  return jax.tree_util.tree_map(np.array, tree)


def _timed_steps(update_fn, state, data, batch, mesh, shard, train_indices, seconds: float):
  """Examples/s of `update_fn` driven like the training loop for about `seconds`."""
  import jax

  key = jax.random.key(0)

  def run(state, first, count):
    for step in range(first, first + count):
      idx = shard({'idx': train_indices(step, NUM_EXAMPLES, batch, 0)}, mesh)['idx']
      state, metrics = update_fn(state, data, idx, key)
    jax.block_until_ready((state, metrics))
    return state

  state = run(state, 0, 2)  # compile + warm-up
  start = time.perf_counter()
  state = run(state, 2, 2)
  once = (time.perf_counter() - start) / 2
  count = max(3, int(seconds / max(once, 1e-6)))
  start = time.perf_counter()
  run(state, 4, count)
  return count * batch / (time.perf_counter() - start)


def _timed_forward(fn, inputs, batch: int, seconds: float) -> float:
  import jax

  jax.block_until_ready(fn(*inputs))
  start = time.perf_counter()
  jax.block_until_ready(fn(*inputs))
  once = time.perf_counter() - start
  count = max(3, int(seconds / max(once, 1e-6)))
  start = time.perf_counter()
  for _ in range(count):
    out = fn(*inputs)
  jax.block_until_ready(out)
  return count * batch / (time.perf_counter() - start)


class Code:
  """The lmjax modules a row needs, by their names in the current tree or in the baseline."""

  def __init__(self, baseline: bool):
    import importlib

    names = {
      'mcl_train': ('lmjax.mcl.train', 'lmjax.mcl_train'),
      'landmarks': ('lmjax.core.landmarks', 'lmjax.landmarks'),
      'optim': ('lmjax.train.optim', 'lmjax.optim'),
      'batching': ('lmjax.data.batching', 'lmjax.input_pipeline'),
    }
    for attr, (current, old) in names.items():
      setattr(self, attr, importlib.import_module(old if baseline else current))
    self.baseline = baseline


def mcl_row(
  code: Code, points: int, stage: str, configs_dir, mesh, seconds: float, dtype: str = 'float32'
):
  """(train img/s, forward img/s) of MCL stage `bm` or `mc_0` (trunk frozen, one head trained);
  `dtype` the computation dtype (`config.model.dtype`; parameters stay float32)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lmjax.models.mcl import MCL

  config = _config(f'mcl{points}', 'data=synthetic', configs_dir)
  schema = code.landmarks.get_schema(points)
  heads = 1 if stage == 'bm' else len(schema.clusters)
  kwargs = {} if dtype == 'float32' else {'dtype': jnp.dtype(dtype)}  # the baseline has no dtype
  model = MCL(num_points=points, width=config.model.width, num_heads=heads, **kwargs)
  size = config.input.size
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, size, size, 1)), train=False))(
    jax.random.key(0)
  )
  stage_cfg = config.stages.bm if stage == 'bm' else config.stages.mc
  frozen = '' if stage == 'bm' else stage_cfg.frozen.format(head=0)
  tx = code.optim.from_config(variables['params'], stage_cfg, config.optim, frozen=frozen or None)
  if code.baseline:
    from lmjax import surgery
  else:
    from lmjax.train import surgery
  update_fn = code.mcl_train.make_update_fn(
    model,
    tx,
    code.mcl_train.augment_params(config),
    schema,
    head=0,
    train_bn=stage == 'bm',
    jpeg_prob=config.input.jpeg_prob,
    weights=np.ones(points, np.float32),
    frozen=surgery.path_mask(variables['params'], frozen or None),
    mesh=mesh,
  )
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = jax.device_put(_face_cache(points, config.input.region_size, 1), replicated)
  state = jax.device_put(
    _host_copy(
      {
        'step': np.int32(0),
        'params': variables['params'],
        'batch_stats': variables['batch_stats'],
        'opt': tx.init(variables['params']),
      }
    ),
    replicated,
  )
  batch = config.batch_size
  b = code.batching
  train = _timed_steps(update_fn, state, data, batch, mesh, b.shard, b.train_indices, seconds)
  crops = b.shard({'x': np.zeros((batch, size, size, 1), np.float32)}, mesh)['x']
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  return train, _timed_forward(forward, (variables, crops), batch, seconds)


def bbfcn_row(points: int, stage: str, configs_dir, mesh, seconds: float):
  """(train img/s, forward img/s) of a BB-FCN stage (`backbone` or `branches`)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from lmjax.bbfcn import inference as bi
  from lmjax.bbfcn import train as bbfcn_train
  from lmjax.core import heatmaps, landmarks
  from lmjax.data import batching
  from lmjax.models import bbfcn as bbfcn_model
  from lmjax.models import registry
  from lmjax.models.bbfcn import BBFCN
  from lmjax.train import loop, optim

  config = _config('bbfcn', f'points={points},data=synthetic', configs_dir)
  schema = landmarks.get_schema(points)
  variant = 'backbone_only' if stage == 'backbone' else 'bbfcn'
  spec = bbfcn_train.model_spec(config, variant)
  model = registry.build(spec)
  params = bbfcn_model.he_rescale(registry.init(spec, 0)['params'])
  stage_cfg = config.stages[stage]
  tx = optim.from_config(params, stage_cfg, config.optim, frozen=bbfcn_train.FROZEN.get(stage))
  batch_loss = bbfcn_train.make_batch_loss(stage, model, config)
  update_fn = bbfcn_train.make_update_fn(batch_loss, tx, config, schema, stage_cfg.positives, mesh)
  refine = config.model.refine_size
  cache = _face_cache(points, config.input.region_size, 3)
  cache['negatives'] = cache['regions'][:, 0, :refine, :refine]
  data = batching.replicate(cache, mesh)
  state = batching.replicate(
    _host_copy({**loop.init_state({'params': params}, tx), 'hard': np.bool_(False)}), mesh
  )
  positives, batch = stage_cfg.positives, config.batch_size
  train = _timed_steps(
    update_fn, state, data, positives, mesh, batching.shard, batching.train_indices, seconds
  )
  train *= batch / positives  # examples through the step: positives + negatives
  images = batching.shard({'x': np.zeros((batch, refine, refine, 3), np.float32)}, mesh)['x']
  size = config.model.size

  def forward(p, images):  # the stage's forward path without the loss (as its predictor runs)
    maps = model.apply({'params': p}, bi.resize_to(images, size), method=BBFCN.coarse)
    if stage == 'backbone':
      return maps
    coarse, _ = heatmaps.top_mean(maps, heatmaps.TOP_N)
    patches, _ = bi.branch_patches(images, maps, coarse, jnp.zeros_like(coarse))
    return model.apply({'params': p}, patches, method=BBFCN.fine)

  return train, _timed_forward(jax.jit(forward), (params, images), batch, seconds)


def facecls_row(configs_dir, mesh, seconds: float):
  """(train img/s, forward img/s) of the face classifier (windows per second)."""
  import jax
  import numpy as np

  from lmjax.data import batching
  from lmjax.facecls import data as facecls_data
  from lmjax.facecls import train as facecls_train
  from lmjax.models import registry
  from lmjax.train import loop, optim

  config = _config('facecls', 'data=synthetic', configs_dir)
  spec = facecls_train.model_spec(config)
  model = registry.build(spec)
  params = registry.init(spec, 0)['params']
  tx = optim.from_config(params, config.stages[facecls_train.STAGE], config.optim)
  sample = facecls_data.sample_params(config)
  update_fn = facecls_train.make_update_fn(model, tx, config, sample, mesh)
  cache = _face_cache(5, config.input.region_size, 3)
  size = config.negatives.size
  data = batching.replicate(
    {
      'regions': cache['regions'][:, 0],
      'bbox': cache['bbox'],
      'negatives': cache['regions'][:, 0, :size, :size],
    },
    mesh,
  )
  state = batching.replicate(_host_copy(loop.init_state({'params': params}, tx)), mesh)
  positives, batch = config.batch.positives, config.batch_size
  train = _timed_steps(
    update_fn, state, data, positives, mesh, batching.shard, batching.train_indices, seconds
  )
  train *= batch / positives
  crop = config.model.size
  images = batching.shard({'x': np.zeros((batch, crop, crop, 3), np.float32)}, mesh)['x']
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x))
  return train, _timed_forward(forward, (params, images), batch, seconds)
