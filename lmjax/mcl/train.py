"""MCL Algorithm 1 as one resumable run: bm -> wm_partial -> wm -> mc_0..mc_{m-1} -> am.

  bm          pre-train the basic model (one head, all u_j = 1)
  wm_partial  freeze conv11…conv32, u from BM's per-landmark validation errors (eq. 5)
  wm          fine-tune all layers with the same u
  mc_i        freeze everything but heads/i (BN in inference mode), u from eqs. 8-9 with WM's
              errors; heads/0..m-1 all start from WM's head
  am          assemble one head from the rows of head i for cluster i (pytree surgery)

This module builds the stages (initial state, landmark weights, frozen parameters, train step,
validation) as a `lmjax.train.stages.Plan`; the runner does the rest: each finished stage
leaves `<workdir>/models/<stage>` (model.json + orbax variables) and its validation metrics and
seconds in `<workdir>/stages.json`; a re-run skips finished stages and resumes the current one
from its latest checkpoint. The run ends with a BM / WM / AM table (paper Table VI) in
`<workdir>/table.txt` and the log.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath

from lmjax.core import augment, geometry, landmarks, losses
from lmjax.data import balance, batching
from lmjax.data.caches import RegionCache, load_caches
from lmjax.eval import face_crop, reports
from lmjax.mcl.predictor import FacePredictor
from lmjax.models import registry
from lmjax.models.mcl import MCL
from lmjax.train import loop, optim, stages, surgery, warm_start


def model_spec(config: ml_collections.ConfigDict, num_heads: int) -> dict[str, Any]:
  """The `model.json` of a stage's model (`lmjax.models.registry` schema)."""
  return registry.make_spec(
    'mcl',
    num_points=config.model.num_points,
    width=config.model.width,
    variant=config.model.variant,
    num_heads=num_heads,
    size=config.input.size,
    crop_scale=config.input.crop_scale,
    grayscale=config.input.grayscale,
    dataset=config.data.name,
  )


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

  return loop.jit_update(update, mesh)


def crop_params(config: ml_collections.ConfigDict) -> augment.AugmentParams:
  """The test-time crop (no augmentation) of the validation faces."""
  return augment.AugmentParams.none(
    size=config.input.size, crop_scale=config.input.crop_scale, grayscale=config.input.grayscale
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) Algorithm 1 and returns {stage: validation metrics + elapsed_s}."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  schema = landmarks.get_schema(config.model.num_points)
  train_cache, val_cache = load_caches(config)
  logging.info('train faces: %d, validation faces: %d', len(train_cache), len(val_cache))
  mesh = batching.make_mesh()
  if config.batch_size % mesh.size:
    raise ValueError(f'batch_size {config.batch_size} must divide over {mesh.size} devices')
  weights = balance.sampling_weights(config.data, train_cache.landmarks, schema)
  settings = loop.run_settings(
    config, workdir, train_cache.device_arrays(mesh), len(train_cache), mesh, weights
  )
  num_clusters = len(schema.clusters)
  heads = {'bm': 1, 'wm_partial': 1, 'wm': 1}
  heads.update({f'mc_{i}': num_clusters for i in range(num_clusters)})

  def stage(name: str, num_heads: int, start=None) -> stages.Stage:
    spec = model_spec(config, num_heads)
    model, head = registry.build(spec), int(name[3:]) if name.startswith('mc_') else 0
    if start is None:  # a trained stage
      start = functools.partial(
        _stage_training, name, model, config=config, schema=schema, cache=train_cache, mesh=mesh
      )
    return stages.Stage(
      name=name,
      start=start,
      validate=lambda v: face_crop.evaluate_cache(
        FacePredictor.from_variables(spec, v, head=head, fold_bn=False),
        val_cache,
        crop_params(config),
        config.eval_batch_size,
      ),
      spec=spec,
    )

  def assemble(mc_vars: dict[str, Any], records: stages.Records) -> dict[str, Any]:
    del records
    am_params = surgery.assemble_heads(mc_vars['params'], schema.clusters, schema.num_points)
    return {'params': am_params, 'batch_stats': mc_vars['batch_stats']}

  plan = stages.Plan(
    stages=[stage(n, h) for n, h in heads.items()] + [stage('am', 1, assemble)],
    summary=reports.landmark_summary,
    table=lambda records: reports.format_table(
      {name.upper(): records[name] for name in ('bm', 'wm', 'am')},
      ['nme_ipd', 'nme_ioc', 'nme_box', 'fr_10_ipd', 'fr_8_ioc', 'auc_10_ipd'],
    ),
    stop_after=config.stop_after,
  )
  return stages.run(plan, settings)


def _stage_training(
  stage: str,
  model: MCL,
  variables: dict[str, Any] | None,
  records: stages.Records,
  *,
  config: ml_collections.ConfigDict,
  schema: landmarks.Schema,
  cache: RegionCache,
  mesh,
) -> loop.Training:
  """What stage `stage` trains, from the previous stage's variables and the finished records."""
  num_heads = model.num_heads
  init_vars, weights, frozen, stage_cfg = _stage_setup(
    stage, config, variables, records, schema, num_heads, cache
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
    augment_params(config),
    schema,
    head=int(stage[3:]) if stage.startswith('mc_') else 0,
    train_bn=not stage.startswith('mc_'),
    jpeg_prob=config.input.jpeg_prob,
    weights=weights,
    frozen=surgery.path_mask(init_vars['params'], frozen or None),
    mesh=mesh,
  )
  return loop.Training(
    initial_state=lambda: loop.init_state(init_vars, tx),
    update_fn=update,
    num_steps=stage_cfg.steps,
    batch_size=config.batch_size,
  )


def _stage_setup(stage, config, variables, done, schema, num_heads, train_cache):
  """(initial variables, landmark weights, frozen regex, stage config) of one stage."""
  n = schema.num_points
  if stage == 'bm':
    init_vars = registry.init(model_spec(config, num_heads), config.seed)
    if config.model.head_bias_init == 'mean_shape':
      init_vars = with_head_bias(init_vars, mean_crop_shape(train_cache, config))
    elif config.model.head_bias_init != 'zeros':
      raise ValueError(
        f'model.head_bias_init={config.model.head_bias_init!r}; expected mean_shape or zeros'
      )
    if config.init_from:
      init_vars = warm_start.apply(init_vars, config.init_from)
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


def mean_crop_shape(cache: RegionCache, config) -> np.ndarray:
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
