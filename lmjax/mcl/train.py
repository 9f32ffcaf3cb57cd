"""MCL Algorithm 1 as one resumable run: bm -> wm_partial -> wm -> mc_0..mc_{m-1} -> am.

  bm          pre-train the basic model (one head, all u_j = 1)
  wm_partial  freeze conv11…conv32, u from BM's per-landmark validation errors (eq. 5)
  wm          fine-tune all layers with the same u
  mc_i        freeze everything but heads/i (BN in inference mode), u from eqs. 8-9 with WM's
              errors; heads/0..m-1 all start from WM's head
  am          assemble one head from the rows of head i for cluster i (pytree surgery)

Each finished stage leaves `<workdir>/models/<stage>` (model.json + orbax variables) and its
validation metrics in `<workdir>/stages.json`; a re-run skips finished stages and resumes the
current one from its latest checkpoint. The run ends with a BM / WM / AM table (paper Table VI)
in `<workdir>/table.txt` and the log.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from lmjax.core import augment, geometry, landmarks, losses
from lmjax.data import batching
from lmjax.data import caches as caches_lib
from lmjax.data.caches import load_caches
from lmjax.eval import reports
from lmjax.mcl.predictor import build_model
from lmjax.models.mcl import MCL
from lmjax.train import checkpoint, loop, optim, surgery


def model_spec(config: ml_collections.ConfigDict, num_heads: int) -> dict[str, Any]:
  """What `lmjax.mcl.predictor` needs to rebuild and feed a model (saved as model.json)."""
  return {
    'experiment': 'mcl',
    'num_points': config.model.num_points,
    'width': config.model.width,
    'variant': config.model.variant,
    'num_heads': num_heads,
    'size': config.input.size,
    'crop_scale': config.input.crop_scale,
    'grayscale': config.input.grayscale,
    'dataset': config.data.name,
  }


def augment_params(config: ml_collections.ConfigDict) -> augment.AugmentParams:
  a, i = config.aug, config.input
  return augment.AugmentParams(
    size=i.size,
    crop_scale=i.crop_scale,
    grayscale=i.grayscale,
    normalize=True,
    rotation_deg=a.rotation_deg,
    rebox=a.rebox,
    scale_range=(a.scale_min, a.scale_max),
    translate=a.translate,
    flip_prob=a.flip_prob,
    brightness=a.brightness,
    contrast_range=(a.contrast_min, a.contrast_max),
  )


def make_update_fn(
  model: MCL,
  tx: optax.GradientTransformation,
  params: augment.AugmentParams,
  schema: landmarks.Schema,
  *,
  head: int,
  train_bn: bool,
  jpeg_prob: float,
  weights: np.ndarray,
  frozen: Any,
  mesh,
):
  """The jitted train step of one stage: gather -> augment on device -> loss -> SGD.

  `frozen` is the bool tree of frozen parameters. The optimizer's freeze guarantees they
  never move; stopping their gradients as well lets XLA drop the backward pass through
  layers nothing trainable depends on (the whole trunk in the multi-center stages).
  """
  flip_perm = tuple(schema.flip_perm)
  weights = jnp.asarray(weights, jnp.float32)
  left, right = (list(g) for g in schema.normalisers[schema.mcl_normaliser])

  def update(state, data, idx, key):
    step = state['step']
    rng, rng_jpeg = jax.random.split(jax.random.fold_in(key, step))
    batch = idx.shape[0]
    seeds = step * batch + jnp.arange(batch)  # a global example counter
    regions = data['regions'][idx]  # [B, V, R, R, C]
    variant = jnp.zeros(batch, jnp.int32)
    if regions.shape[1] > 1:  # pick a JPEG-degraded copy with probability jpeg_prob
      k_use, k_which = jax.random.split(rng_jpeg)
      use = jax.random.uniform(k_use, (batch,)) < jpeg_prob
      variant = jnp.where(use, jax.random.randint(k_which, (batch,), 1, regions.shape[1]), 0)
    regions = regions[jnp.arange(batch), variant]  # [B, R, R, C]
    crops, points = augment.augment_batch(
      regions, data['landmarks'][idx], data['bbox'][idx], rng, seeds, params, flip_perm
    )
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, seeds)
    flipped = jax.vmap(lambda k: augment.sample_draw(k, params).flip)(keys)  # [B]
    visible = data['visible'][idx]
    visible = jnp.where(flipped[:, None], visible[:, jnp.asarray(flip_perm)], visible)
    d = jnp.linalg.norm(points[:, left].mean(1) - points[:, right].mean(1), axis=-1)  # [B]

    def loss_fn(p):
      p = jax.tree_util.tree_map(lambda x, f: jax.lax.stop_gradient(x) if f else x, p, frozen)
      variables = {'params': p, 'batch_stats': state['batch_stats']}
      if train_bn:
        out, new = model.apply(variables, crops, train=True, mutable=['batch_stats'])
        stats = new['batch_stats']
      else:
        out, stats = model.apply(variables, crops, train=False), state['batch_stats']
      return losses.mcl_loss(out[:, head], points, weights, d, visible), stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    new_state = {**loop.sgd_step(state, grads, tx), 'batch_stats': stats}
    return new_state, {'loss': loss, 'grad_norm': optax.global_norm(grads)}

  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(update, donate_argnums=(0,), out_shardings=(replicated, replicated))


def predict_cache(
  model: MCL,
  variables: Any,
  cache: caches_lib.RegionCache,
  config: ml_collections.ConfigDict,
  mesh,
) -> np.ndarray:
  """Predictions [N, m, K, 2] in original image pixels for every face of `cache`."""
  params = augment.AugmentParams.none(
    size=config.input.size, crop_scale=config.input.crop_scale, grayscale=config.input.grayscale
  )

  @jax.jit
  def predict(variables, regions, bbox):
    n, k = regions.shape[0], config.model.num_points
    crops, _ = augment.augment_batch(
      regions, jnp.zeros((n, k, 2)), bbox, jax.random.key(0), jnp.zeros(n, jnp.int32), params
    )
    return model.apply(variables, crops, train=False)  # [B, m, K, 2] crop pixels

  arrays = {'regions': cache.regions[:, 0], 'bbox': cache.bbox}
  outs = []
  for batch in batching.eval_batches(arrays, config.eval_batch_size):
    mask = batch.pop('_mask')
    out = predict(variables, **batching.shard(batch, mesh))
    outs.append(np.asarray(out)[mask])
  crop_pts = np.concatenate(outs)  # [N, m, K, 2]
  return cache.crop_to_image(crop_pts, config.input.size, config.input.crop_scale)


def validate(model, variables, cache, config, mesh, schema, head: int = 0) -> dict[str, Any]:
  pred = predict_cache(model, variables, cache, config, mesh)[:, head]
  return reports.compute_metrics(
    pred, cache.image_landmarks, cache.image_bbox, schema, visible=cache.visible
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) Algorithm 1 and returns {stage: validation metrics}."""
  os.makedirs(workdir, exist_ok=True)
  schema = landmarks.get_schema(config.model.num_points)
  num_clusters = len(schema.clusters)
  train_cache, val_cache = load_caches(config)
  logging.info('train faces: %d, validation faces: %d', len(train_cache), len(val_cache))
  mesh = batching.make_mesh()
  if config.batch_size % mesh.size:
    raise ValueError(f'batch_size {config.batch_size} must divide over {mesh.size} devices')
  data = train_cache.device_arrays(mesh)
  aug = augment_params(config)
  stages_path = os.path.join(workdir, 'stages.json')
  done: dict[str, Any] = loop.read_json(stages_path)
  variables = None

  def finish(stage: str, model: MCL, new_vars: Any, num_heads: int, head: int = 0):
    metrics = validate(model, new_vars, val_cache, config, mesh, schema, head)
    checkpoint.export_model(
      os.path.join(workdir, 'models', stage), new_vars, model_spec(config, num_heads)
    )
    done[stage] = metrics
    loop.write_json(stages_path, done)
    logging.info(
      '[%s] validation: NME ioc %.3f%%  ipd %.3f%%  box %.3f%%  FR@10 ipd %.2f%%',
      stage,
      metrics['nme_ioc'],
      metrics['nme_ipd'],
      metrics['nme_box'],
      metrics['fr_10_ipd'],
    )

  def restore(stage: str, num_heads: int):
    model = build_model(model_spec(config, num_heads))
    abstract = _abstract_variables(model, config)
    return checkpoint.restore_variables(
      os.path.join(workdir, 'models', stage, checkpoint.VARIABLES_DIR), abstract
    )

  plan = [('bm', 1), ('wm_partial', 1), ('wm', 1)] + [
    (f'mc_{i}', num_clusters) for i in range(num_clusters)
  ]
  for stage, num_heads in plan:
    if stage in done:
      logging.info('[%s] finished earlier; skipping', stage)
      variables = None  # restored lazily below, only for the stage that needs it
      continue
    if variables is None and stage != 'bm':
      previous = plan[[s for s, _ in plan].index(stage) - 1]
      variables = restore(*previous)
    model = build_model(model_spec(config, num_heads))
    head = int(stage[3:]) if stage.startswith('mc_') else 0
    init_vars, weights, frozen, stage_cfg = _stage_setup(
      stage, config, model, variables, done, schema, num_heads, train_cache
    )
    tx = optim.from_config(init_vars['params'], stage_cfg, config.optim, frozen=frozen or None)
    logging.info(
      '[%s] weights u = %s',
      stage,
      np.array2string(np.asarray(weights), precision=3, max_line_width=200),
    )
    update = make_update_fn(
      model,
      tx,
      aug,
      schema,
      head=head,
      train_bn=not stage.startswith('mc_'),
      jpeg_prob=config.input.jpeg_prob,
      weights=weights,
      frozen=surgery.path_mask(init_vars['params'], frozen or None),
      mesh=mesh,
    )
    state = loop.run_stage(
      stage,
      workdir=workdir,
      initial_state=lambda iv=init_vars, tx=tx: loop.init_state(iv, tx),
      update_fn=update,
      data=data,
      num_examples=len(train_cache),
      num_steps=stage_cfg.steps,
      batch_size=config.batch_size,
      seed=config.seed,
      mesh=mesh,
      log_every=config.log_every,
      checkpoint_every=config.checkpoint_every,
    )
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    finish(stage, model, variables, num_heads, head)
    if stage == config.stop_after:
      logging.info('stopping after stage %s (config.stop_after)', stage)
      return done

  if 'am' not in done:
    mc_vars = (
      variables if variables is not None else restore(f'mc_{num_clusters - 1}', num_clusters)
    )
    am_params = surgery.assemble_heads(mc_vars['params'], schema.clusters, schema.num_points)
    am_vars = {'params': am_params, 'batch_stats': mc_vars['batch_stats']}
    finish('am', build_model(model_spec(config, 1)), am_vars, 1)
  table = reports.format_table(
    {name.upper(): done[name] for name in ('bm', 'wm', 'am')},
    ['nme_ipd', 'nme_ioc', 'nme_box', 'fr_10_ipd', 'fr_8_ioc', 'auc_10_ipd'],
  )
  with open(os.path.join(workdir, 'table.txt'), 'w', encoding='utf-8') as f:
    f.write(table + '\n')
  logging.info('validation (%d faces), percent:\n%s', len(val_cache), table)
  print(table, flush=True)
  return done


def _stage_setup(stage, config, model, variables, done, schema, num_heads, train_cache):
  """(initial variables, landmark weights, frozen regex, stage config) of one stage."""
  n = schema.num_points
  if stage == 'bm':
    init_vars = _init_variables(model, config)
    if config.model.head_bias_init == 'mean_shape':
      init_vars = with_head_bias(init_vars, mean_crop_shape(train_cache, config))
    elif config.model.head_bias_init != 'zeros':
      raise ValueError(
        f'model.head_bias_init={config.model.head_bias_init!r}; expected mean_shape or zeros'
      )
    return init_vars, np.ones(n, np.float32), config.stages.bm.frozen, config.stages.bm
  if stage in ('wm_partial', 'wm'):
    errors = np.asarray(done['bm']['per_landmark_ipd'], np.float32)
    weights = np.asarray(losses.landmark_weights(errors))
    return variables, weights, config.stages[stage].frozen, config.stages[stage]
  i = int(stage[3:])
  if i == 0:
    variables = {
      'params': surgery.broadcast_head(variables['params'], num_heads),
      'batch_stats': variables['batch_stats'],
    }
  errors = np.asarray(done['wm']['per_landmark_ipd'], np.float32)
  cluster = np.isin(np.arange(n), schema.clusters[i])
  weights = np.asarray(losses.multi_center_weights(errors, cluster, config.alpha))
  return variables, weights, config.stages.mc.frozen.format(head=i), config.stages.mc


def mean_crop_shape(cache: caches_lib.RegionCache, config) -> np.ndarray:
  """[K, 2] mean ground-truth landmarks of `cache` in un-augmented crop pixels (visible only)."""
  A = geometry.crop_affine(
    cache.bbox.astype(np.float64), config.input.size, config.input.crop_scale
  )
  points = geometry.apply_affine(cache.landmarks.astype(np.float64), A)  # [N, K, 2]
  weight = cache.visible[..., None].astype(np.float64)
  count = weight.sum(axis=0)
  if (count == 0).any():
    missing = np.flatnonzero(count[:, 0] == 0).tolist()
    raise ValueError(f'landmarks {missing} are invisible in every training face')
  return ((points * weight).sum(axis=0) / count).astype(np.float32)


def with_head_bias(variables: dict[str, Any], shape: np.ndarray) -> dict[str, Any]:
  """`variables` with every head's bias set to `shape` [K, 2] (flattened as x1, y1, ...).

  The heads regress crop pixels (0…49); starting from zero they spend the first ~500 steps
  learning the mean shape through a bias gradient of (ŷ − y)/d², the plateau seen in short
  runs. Starting at the mean shape removes it. The paper does not say how biases start.
  """
  params = dict(variables['params'])
  heads = {k: {**v, 'bias': jnp.asarray(shape.reshape(-1))} for k, v in params['heads'].items()}
  return {**variables, 'params': {**params, 'heads': heads}}


def _init_variables(model: MCL, config) -> dict[str, Any]:
  size, channels = config.input.size, 1 if config.input.grayscale else 3
  dummy = jnp.zeros((1, size, size, channels), jnp.float32)
  return dict(model.init(jax.random.key(config.seed), dummy, train=False))


def _abstract_variables(model: MCL, config) -> Any:
  return jax.eval_shape(lambda: _init_variables(model, config))
