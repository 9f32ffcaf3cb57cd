"""BB-FCN training as one resumable run: backbone -> branches [-> branches_wm] (paper §III-E).

  backbone     coarse maps on S × S crops; positives:negatives 1:1, Rc = 5 % of S
  branches     backbone frozen; 24 × 24 patches around the backbone's own coarse locations
               (+ jitter, as at test time) of the R × R crop; pos:neg 4:1; Rf = 3 % of R
  branches_wm  (config `weighting`) MCL's weighting fine-tuning (eq. 5) of the branches with
               u_k from the branch model's per-landmark validation errors
  regression   (variant `regression`) the §IV-C baseline, one stage trained like the backbone

Each stage uses the selective loss; its hard-negative-mining flag lives in the train state and
switches on when the validation loss has not improved for `loss.patience` evaluations (logged;
`loss.hnm` = on / off forces it). Finished stages leave `<workdir>/models/<name>` and their
validation metrics in `stages.json`; a re-run skips them and resumes the current stage from
its latest checkpoint. The run ends with a per-landmark table of backbone-only vs BB-FCN.
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

from lmjax.bbfcn import data as data_lib
from lmjax.bbfcn import inference as bi
from lmjax.bbfcn import predictor
from lmjax.core import heatmaps, image_ops, landmarks, losses
from lmjax.data import batching
from lmjax.data import caches as caches_lib
from lmjax.data import negatives as negatives_lib
from lmjax.data.caches import load_caches
from lmjax.eval import reports
from lmjax.models import bbfcn as bbfcn_model
from lmjax.models.bbfcn import BBFCN
from lmjax.train import checkpoint, loop, optim

# Training stage -> the model folder it exports (`<workdir>/models/<name>`, `stages.json` key).
MODEL_NAMES = {
  'backbone': 'backbone',
  'branches': 'bbfcn',
  'branches_wm': 'bbfcn_wm',
  'regression': 'regression',
}
FROZEN = {'backbone': r'^branches/', 'branches': r'^backbone/', 'branches_wm': r'^backbone/'}


def model_spec(config: ml_collections.ConfigDict, variant: str) -> dict[str, Any]:
  """What `lmjax.bbfcn.predictor` needs to rebuild and feed a model (saved as model.json)."""
  return {
    'experiment': 'bbfcn',
    'variant': variant,
    'num_points': config.model.num_points,
    'size': config.model.size,
    'refine_size': config.model.refine_size,
    'crop_scale': config.input.crop_scale,
    'dataset': config.data.name,
  }


def make_batch_loss(stage: str, model, config, weights: np.ndarray | None = None):
  """`fn(params, images, points, visible, key, hard) -> (loss, aux)` of one stage.

  images [B, R, R, 3] (x / 128 - 1), points [B, K, 2] in R pixels, visible bool [B, K]
  (False for every type of a negative image). Shared by the train step and validation.
  """
  size, big = config.model.size, config.model.refine_size
  ratio = config.loss.empty_neg_ratio
  jitter = config.loss.branch_jitter

  def cap(radius: float, pixels: int) -> int:  # exact negatives counts with a top-k ranking
    return max(losses.disc_pixel_bound(radius), int(ratio * pixels + 0.5), 1)

  backbone_cap = cap(heatmaps.BACKBONE_RADIUS * size, size * size)
  branch_cap = cap(heatmaps.BRANCH_RADIUS * big, bi.PATCH * bi.PATCH)

  def backbone_loss(params, images, points, visible, key, hard):
    small = bi.resize_to(images, size)
    target = heatmaps.disc_maps(
      bi.rescale_points(points, size / big), visible, (size, size), heatmaps.BACKBONE_RADIUS
    )
    pred = model.apply({'params': params}, small, method=BBFCN.coarse)
    return losses.selective_loss(
      pred, target, key, empty_neg_ratio=ratio, hard=hard, max_count=backbone_cap
    )

  def branch_loss(params, images, points, visible, key, hard):
    k_jitter, k_loss = jax.random.split(key)
    small = bi.resize_to(images, size)
    maps = jax.lax.stop_gradient(model.apply({'params': params}, small, method=BBFCN.coarse))
    coarse, _ = heatmaps.top_mean(maps, bi.TOP_N)
    shift = jax.random.uniform(k_jitter, coarse.shape, minval=-jitter, maxval=jitter)
    patches, origins = bi.branch_patches(images, maps, coarse, shift)
    local = points - origins.astype(points.dtype)  # [B, K, 2] patch pixels
    target = heatmaps.disc_maps(
      local, visible, (bi.PATCH, bi.PATCH), heatmaps.BRANCH_RADIUS, ref_width=big
    )
    fine = model.apply({'params': params}, patches, method=BBFCN.fine)  # [B, K, P, P]
    return losses.selective_loss(
      jnp.moveaxis(fine, 1, -1),
      target,
      k_loss,
      empty_neg_ratio=ratio,
      hard=hard,
      weights=weights,
      max_count=branch_cap,
    )

  def regression_loss(params, images, points, visible, key, hard):
    scores, cell_points = model.apply(
      {'params': params}, bi.resize_to(images, size), method='dense'
    )
    pts = bi.rescale_points(points, size / big)  # S pixels
    h, w = scores.shape[1:3]
    cell = jnp.floor((pts + 0.5) / 4.0).astype(jnp.int32)  # [B, K, 2] (j, i)
    inside = visible & (cell[..., 0] >= 0) & (cell[..., 0] < w) & (cell[..., 1] >= 0)
    inside = inside & (cell[..., 1] < h)
    onehot = (jnp.arange(w)[None, None, :, None] == cell[:, None, None, :, 0]) & (
      jnp.arange(h)[None, :, None, None] == cell[:, None, None, :, 1]
    )
    target = (onehot & inside[:, None, None, :]).astype(jnp.float32)  # [B, h, w, K]
    score_loss, aux = losses.selective_loss(
      scores, target, key, empty_neg_ratio=ratio, hard=hard, max_count=cap(0.0, h * w)
    )
    offset = jnp.sum((cell_points - pts[:, None, None]) ** 2, axis=-1) / 16.0  # cell units²
    coord_loss = jnp.sum(target * offset) / (2.0 * images.shape[0])
    return score_loss + coord_loss, {**aux, 'coord_loss': coord_loss}

  return {
    'backbone': backbone_loss,
    'branches': branch_loss,
    'branches_wm': branch_loss,
    'regression': regression_loss,
  }[stage]


def make_update_fn(batch_loss, tx, config, schema, num_pos: int, mesh):
  """The jitted train step: positives + negatives on device -> selective loss -> SGD."""
  params = data_lib.positive_params(config)
  flip_perm = tuple(int(i) for i in schema.flip_perm)
  num_neg = config.batch_size - num_pos
  k = schema.num_points

  def update(state, data, idx, key):
    rng = jax.random.fold_in(key, state['step'])
    k_pos, k_idx, k_neg, k_loss = jax.random.split(rng, 4)
    images, points, visible = data_lib.positive_batch(
      k_pos,
      data['regions'][idx, 0],
      data['landmarks'][idx],
      data['bbox'][idx],
      data['visible'][idx],
      params,
      flip_perm,
    )
    if num_neg:
      neg_idx = jax.random.randint(k_idx, (num_neg,), 0, data['negatives'].shape[0])
      negatives = data_lib.negative_batch(k_neg, data['negatives'], neg_idx, params)
      images = jnp.concatenate([images, negatives])
      points = jnp.concatenate([points, jnp.zeros((num_neg, k, 2), points.dtype)])
      visible = jnp.concatenate([visible, jnp.zeros((num_neg, k), bool)])
    loss_fn = lambda p: batch_loss(p, images, points, visible, k_loss, state['hard'])
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    new_state = loop.sgd_step(state, grads, tx)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), **aux}
    return new_state, {**metrics, 'hnm': state['hard'].astype(jnp.float32)}

  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(update, donate_argnums=(0,), out_shardings=(replicated, replicated))


def make_hnm_hook(stage: str, batch_loss, val_batch, config, workdir: str):
  """Validation-loss check that switches hard negative mining on at a plateau (or forces it)."""
  mode = config.loss.hnm
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f"loss.hnm={mode!r}; expected 'auto', 'on' or 'off'")
  images, points, visible = val_batch
  val_loss = jax.jit(lambda p: batch_loss(p, images, points, visible, jax.random.key(1), False)[0])
  log_path = os.path.join(workdir, 'metrics.jsonl')

  def hook(state):
    step = int(state['step'])
    value = float(val_loss(state['params']))
    best, bad, hard = float(state['best_val']), int(state['bad_evals']), bool(state['hard'])
    if value < best * (1 - 1e-3):
      best, bad = value, 0
    else:
      bad += 1
    if not hard and mode == 'auto' and bad >= config.loss.patience:
      hard = True
      logging.info(
        '[%s] step %d: validation loss %.5g has not improved on %.5g for %d evaluations: '
        'hard negative mining ON',
        stage,
        step,
        value,
        best,
        bad,
      )
    logging.info('[%s] step %d  val_loss=%.5g  best=%.5g  hnm=%s', stage, step, value, best, hard)
    loop.append_json(log_path, {'stage': stage, 'step': step, 'val_loss': value, 'hnm': hard})
    return {
      **state,
      'best_val': jnp.float32(best),
      'bad_evals': jnp.int32(bad),
      'hard': jnp.bool_(hard),
    }

  return hook


def validation_batch(val_cache, val_negatives, config):
  """Fixed validation images for the HNM criterion: test crops of up to `eval_batch_size`
  faces plus as many held-out negatives (their centre, at R)."""
  n = min(len(val_cache), config.eval_batch_size)
  sub = caches_lib.subset(val_cache, np.arange(n))
  images, points = data_lib.eval_images(sub, config)
  neg = image_ops.normalize_pixels(val_negatives[:n])
  k = config.model.num_points
  images = np.concatenate([images, neg])
  points = np.concatenate([points, np.zeros((len(neg), k, 2), np.float32)])
  visible = np.concatenate([sub.visible, np.zeros((len(neg), k), bool)])
  return jnp.asarray(images), jnp.asarray(points), jnp.asarray(visible)


def predict_cache(model, variables, cache, config, variant: str, refine: bool) -> np.ndarray:
  """Image-pixel landmarks [N, K, 2] of every face of `cache` (its test-time crops)."""
  fn = jax.jit(predictor.predict_fn(model, model_spec(config, variant), refine))
  images, _ = data_lib.eval_images(cache, config)
  points = []
  for batch in batching.eval_batches({'images': images}, config.eval_batch_size):
    mask = batch.pop('_mask')
    points.append(np.asarray(fn(variables, batch['images'])['points'])[mask])
  crop = config.model.refine_size, config.input.crop_scale
  return cache.crop_to_image(np.concatenate(points), *crop)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the BB-FCN stages and returns {model name: validation metrics}."""
  os.makedirs(workdir, exist_ok=True)
  schema = landmarks.get_schema(config.model.num_points)
  train_cache, val_cache = load_caches(config)
  negatives = negatives_lib.build_negative_cache(config, set(val_cache.image_ids), config.seed)
  train_neg, val_neg = negatives_lib.split_negatives(
    negatives, config.negatives.num_validation, config.seed, (len(train_cache), len(val_cache))
  )
  mesh = batching.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = {**train_cache.device_arrays(mesh), 'negatives': jax.device_put(train_neg, replicated)}
  val_batch = validation_batch(val_cache, val_neg, config)
  variant = config.variant
  model = predictor.build_model(model_spec(config, variant))
  stages_path = os.path.join(workdir, 'stages.json')
  done: dict[str, Any] = loop.read_json(stages_path)
  plan = {
    'bbfcn': ['backbone', 'branches']
    + (['branches_wm'] if config.stages.branches_wm.steps else []),
    'backbone_only': ['backbone'],
    'regression': ['regression'],
  }[variant]
  params = None
  for stage in plan:
    name = MODEL_NAMES[stage]
    if name in done:
      logging.info('[%s] finished earlier; skipping', stage)
      params = None
      continue
    if params is None:
      params = _start_params(model, config, variant, plan, stage, workdir)
    stage_cfg = config.stages[stage]
    weights = None
    if stage == 'branches_wm':
      errors = np.asarray(done['bbfcn']['per_landmark_ipd'], np.float32)
      weights = np.asarray(losses.landmark_weights(errors))
      if config.loss.wm_weights == 'uniform':  # the control: same extra steps, u_k = 1
        weights = np.ones_like(weights)
      elif config.loss.wm_weights != 'eq5':
        raise ValueError(f"loss.wm_weights={config.loss.wm_weights!r}; expected 'eq5' or 'uniform'")
      logging.info('[%s] weights u = %s', stage, np.array2string(weights, precision=3))
    batch_loss = make_batch_loss(stage, model, config, weights)
    tx = optim.from_config(params, stage_cfg, config.optim, frozen=FROZEN.get(stage))
    update = make_update_fn(batch_loss, tx, config, schema, stage_cfg.positives, mesh)
    forced = config.loss.hnm == 'on'
    state = loop.run_stage(
      stage,
      workdir=workdir,
      initial_state=lambda p=params, tx=tx, forced=forced: {
        **loop.init_state({'params': p}, tx),
        'hard': np.bool_(forced),
        'best_val': np.float32(np.inf),
        'bad_evals': np.int32(0),
      },
      update_fn=update,
      data=data,
      num_examples=len(train_cache),
      num_steps=stage_cfg.steps,
      batch_size=stage_cfg.positives,
      seed=config.seed,
      mesh=mesh,
      log_every=config.log_every,
      checkpoint_every=config.checkpoint_every,
      hook=make_hnm_hook(stage, batch_loss, val_batch, config, workdir),
      hook_every=config.validate_every,
    )
    params = state['params']
    out_variant = {'backbone': 'backbone_only', 'regression': 'regression'}.get(stage, 'bbfcn')
    metrics = _finish(model, params, val_cache, config, schema, out_variant, workdir, name)
    done[name] = metrics
    loop.write_json(stages_path, done)
  _write_tables(done, schema, workdir, len(val_cache))
  return done


def _start_params(model, config, variant, plan, stage, workdir):
  """Initial parameters of `stage`: fresh for the first stage, else the previous model's."""
  spec = model_spec(config, variant)
  if stage == plan[0]:
    params = predictor.init_variables(model, spec, config.seed)['params']
    if config.model.init == 'he':
      params = bbfcn_model.he_rescale(params)
    elif config.model.init != 'paper':
      raise ValueError(f"model.init={config.model.init!r}; expected 'paper' or 'he'")
    return params
  previous = MODEL_NAMES[plan[plan.index(stage) - 1]]
  abstract = jax.eval_shape(lambda: predictor.init_variables(model, spec))
  path = os.path.join(workdir, 'models', previous, checkpoint.VARIABLES_DIR)
  return checkpoint.restore_variables(path, abstract)['params']


def _finish(model, params, val_cache, config, schema, variant, workdir, name):
  """Validation metrics of a finished stage; exports `<workdir>/models/<name>`."""
  variables = {'params': params}
  pred = predict_cache(model, variables, val_cache, config, variant, refine=variant == 'bbfcn')
  metrics = reports.compute_metrics(
    pred,
    val_cache.image_landmarks,
    val_cache.image_bbox,
    schema,
    visible=val_cache.visible,
  )
  checkpoint.export_model(
    os.path.join(workdir, 'models', name), variables, model_spec(config, variant)
  )
  logging.info(
    '[%s] validation: NME ioc %.3f%%  ipd %.3f%%  box %.3f%%  FR@10 ipd %.2f%%',
    name,
    metrics['nme_ioc'],
    metrics['nme_ipd'],
    metrics['nme_box'],
    metrics['fr_10_ipd'],
  )
  return metrics


def _write_tables(done, schema, workdir: str, num_val: int) -> None:
  """Summary and per-landmark tables (paper Table V / Fig. 10) in the log and `table.txt`."""
  rows = {name: done[name] for name in MODEL_NAMES.values() if name in done}
  keys = ['nme_ipd', 'nme_ioc', 'nme_box', 'fr_10_ipd', 'fr_8_ioc', 'auc_10_ipd']
  text = reports.format_table(rows, keys)
  text += '\n\n' + reports.per_landmark_table(rows, schema, 'ipd')
  with open(os.path.join(workdir, 'table.txt'), 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  logging.info('validation (%d faces), percent:\n%s', num_val, text)
  print(text, flush=True)
