"""BB-FCN training as one resumable run: backbone -> branches [-> branches_wm] (paper §III-E).

  backbone     coarse maps on S × S crops; positives:negatives 1:1, Rc = 5 % of S
  branches     backbone frozen; 24 × 24 patches around the backbone's own coarse locations
               (+ jitter, as at test time) of the R × R crop; pos:neg 4:1; Rf = 3 % of R
  branches_wm  (config `weighting`) MCL's weighting fine-tuning (eq. 5) of the branches with
               u_k from the branch model's per-landmark validation errors
  regression   (variant `regression`) the §IV-C baseline, one stage trained like the backbone

Each stage uses the selective loss; its hard-negative-mining flag lives in the train state and
switches on when the validation loss has not improved for `loss.patience` evaluations (logged;
`loss.hnm` = on / off forces it). The stages run as a `lmjax.train.stages.Plan`: finished
stages leave `<workdir>/models/<name>` and their validation metrics and seconds in
`stages.json`; a re-run skips them and resumes the current stage from its latest checkpoint.
The run ends with a per-landmark table of backbone-only vs BB-FCN.
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

from lmjax.bbfcn import data as bbfcn_data
from lmjax.bbfcn import inference as bi
from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.core import heatmaps, image_ops, landmarks, losses
from lmjax.data import balance, batching, negatives, templates
from lmjax.data.caches import load_caches, subset
from lmjax.eval import face_crop, reports
from lmjax.models import bbfcn as bbfcn_model
from lmjax.models import registry
from lmjax.models.bbfcn import BBFCN
from lmjax.train import loop, optim, stages, warm_start
from lmjax.train.writer import MetricWriter

# Training stage -> the model folder it exports (`<workdir>/models/<name>`, `stages.json` key).
MODEL_NAMES = {
  'backbone': 'backbone',
  'branches': 'bbfcn',
  'branches_wm': 'bbfcn_wm',
  'regression': 'regression',
}
FROZEN = {'backbone': r'^branches/', 'branches': r'^backbone/', 'branches_wm': r'^backbone/'}


def model_spec(config: ml_collections.ConfigDict, variant: str) -> dict[str, Any]:
  """The `model.json` of a stage's model (`lmjax.models.registry` schema), with the scanner's
  face template of the training window."""
  k, dataset, crop_scale = config.model.num_points, config.data.name, config.input.crop_scale
  return registry.make_spec(
    'bbfcn',
    variant=variant,
    num_points=k,
    size=config.model.size,
    refine_size=config.model.refine_size,
    map_features=config.model.map_features,
    crop_scale=crop_scale,
    dataset=dataset,
    face_template=templates.face_template(k, dataset, crop_scale),
  )


def make_batch_loss(stage: str, model, config, weights: np.ndarray | None = None):
  """`fn(params, images, points, visible, key, hard) -> (loss, aux)` of one stage.

  images [B, R, R, 3] (x / 128 - 1), points [B, K, 2] in R pixels, visible bool [B, K]
  (False for every type of a negative image). Shared by the train step and validation.
  """
  size, big = config.model.size, config.model.refine_size
  ratio = config.loss.empty_neg_ratio
  jitter = config.loss.branch_jitter
  per_pos = config.loss.neg_per_pos

  def cap(radius: float, pixels: int) -> int:  # exact negatives counts with a top-k ranking
    return max(per_pos * losses.disc_pixel_bound(radius), int(ratio * pixels + 0.5), 1)

  backbone_cap = cap(heatmaps.BACKBONE_RADIUS * size, size * size)
  branch_cap = cap(heatmaps.BRANCH_RADIUS * big, bbfcn_model.PATCH * bbfcn_model.PATCH)

  def backbone_loss(params, images, points, visible, key, hard):
    small = bi.resize_to(images, size)
    target = heatmaps.disc_maps(
      bi.rescale_points(points, size / big), visible, (size, size), heatmaps.BACKBONE_RADIUS
    )
    pred = model.apply({'params': params}, small, method=BBFCN.coarse)
    return losses.selective_loss(
      pred,
      target,
      key,
      empty_neg_ratio=ratio,
      hard=hard,
      max_count=backbone_cap,
      neg_per_pos=per_pos,
    )

  def branch_loss(params, images, points, visible, key, hard):
    k_jitter, k_loss = jax.random.split(key)
    small = bi.resize_to(images, size)
    maps = jax.lax.stop_gradient(model.apply({'params': params}, small, method=BBFCN.coarse))
    coarse, _ = heatmaps.top_mean(maps, heatmaps.TOP_N)
    shift = jax.random.uniform(k_jitter, coarse.shape, minval=-jitter, maxval=jitter)
    patches, origins = bi.branch_patches(images, maps, coarse, shift)
    local = points - origins.astype(points.dtype)  # [B, K, 2] patch pixels
    target = heatmaps.disc_maps(
      local, visible, (bbfcn_model.PATCH, bbfcn_model.PATCH), heatmaps.BRANCH_RADIUS, ref_width=big
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
      neg_per_pos=per_pos,
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
  params = bbfcn_data.positive_params(config)
  flip_perm = tuple(int(i) for i in schema.flip_perm)
  num_neg = config.batch_size - num_pos
  k = schema.num_points

  def update(state, data, idx, key):
    rng = jax.random.fold_in(key, state['step'])
    k_pos, k_idx, k_neg, k_loss = jax.random.split(rng, 4)
    images, points, visible = bbfcn_data.positive_batch(
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
      negatives = bbfcn_data.negative_batch(k_neg, data['negatives'], neg_idx, params)
      images = jnp.concatenate([images, negatives])
      points = jnp.concatenate([points, jnp.zeros((num_neg, k, 2), points.dtype)])
      visible = jnp.concatenate([visible, jnp.zeros((num_neg, k), bool)])
    loss_fn = lambda p: batch_loss(p, images, points, visible, k_loss, state['hard'])
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    new_state = loop.sgd_step(state, grads, tx)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), **aux}
    return new_state, {**metrics, 'hnm': state['hard'].astype(jnp.float32)}

  return loop.jit_update(update, mesh)


def make_hnm_hook(stage: str, batch_loss, val_batch, config, writer: MetricWriter):
  """Validation-loss check that switches hard negative mining on at a plateau (or forces it)."""
  mode = config.loss.hnm
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f"loss.hnm={mode!r}; expected 'auto', 'on' or 'off'")
  images, points, visible = val_batch
  val_loss = jax.jit(lambda p: batch_loss(p, images, points, visible, jax.random.key(1), False)[0])

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
    text = f'val_loss={value:.5g}  best={best:.5g}  hnm={hard}'
    writer.eval_metrics(stage, step, {'val_loss': value, 'hnm': hard}, text)
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
  sub = subset(val_cache, np.arange(n))
  images, points = bbfcn_data.eval_images(sub, config)
  neg = image_ops.normalize_pixels(val_negatives[:n])
  k = config.model.num_points
  images = np.concatenate([images, neg])
  points = np.concatenate([points, np.zeros((len(neg), k, 2), np.float32)])
  visible = np.concatenate([sub.visible, np.zeros((len(neg), k), bool)])
  return jnp.asarray(images), jnp.asarray(points), jnp.asarray(visible)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the BB-FCN stages; returns {model name: validation metrics + elapsed_s}."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  schema = landmarks.get_schema(config.model.num_points)
  train_cache, val_cache = load_caches(config)
  windows = negatives.build_negative_cache(config, set(val_cache.image_ids), config.seed)
  train_neg, val_neg = negatives.split_negatives(
    windows, config.negatives.num_validation, config.seed, (len(train_cache), len(val_cache))
  )
  mesh = batching.make_mesh()
  data = {**train_cache.device_arrays(mesh), 'negatives': batching.replicate(train_neg, mesh)}
  weights = balance.sampling_weights(config.data, train_cache.landmarks, schema)
  settings = loop.run_settings(config, workdir, data, len(train_cache), mesh, weights)
  model = registry.build(model_spec(config, config.variant))
  val_batch = validation_batch(val_cache, val_neg, config)
  names = {
    'bbfcn': ['backbone', 'branches']
    + (['branches_wm'] if config.stages.branches_wm.steps else []),
    'backbone_only': ['backbone'],
    'regression': ['regression'],
  }[config.variant]

  def stage(name: str) -> stages.Stage:
    variant = {'backbone': 'backbone_only', 'regression': 'regression'}.get(name, 'bbfcn')
    spec = model_spec(config, variant)

    def validate(variables):
      return face_crop.evaluate_cache(
        BBFCNPredictor.from_variables(spec, variables),
        val_cache,
        bbfcn_data.eval_params(config),
        config.eval_batch_size,
      )

    start = functools.partial(
      _stage_training,
      name,
      model,
      first=name == names[0],
      config=config,
      schema=schema,
      val_batch=val_batch,
      settings=settings,
    )
    return stages.Stage(name, start, validate, spec, model=MODEL_NAMES[name])

  plan = stages.Plan(
    stages=[stage(name) for name in names],
    summary=reports.landmark_summary,
    table=functools.partial(_tables, schema=schema),
    stop_after=config.get('stop_after', ''),
  )
  return stages.run(plan, settings)


def _stage_training(
  stage: str,
  model,
  previous: dict[str, Any] | None,
  records: stages.Records,
  *,
  first: bool,
  config: ml_collections.ConfigDict,
  schema: landmarks.Schema,
  val_batch,
  settings: loop.RunSettings,
) -> loop.Training:
  """What `stage` trains: fresh parameters (first stage) or the previous model's."""
  params = _initial_params(config) if first else previous['params']
  weights = None
  if stage == 'branches_wm':
    errors = np.asarray(records['bbfcn']['per_landmark_ipd'], np.float32)
    weights = np.asarray(losses.landmark_weights(errors))
    if config.loss.wm_weights == 'uniform':  # the control: same extra steps, u_k = 1
      weights = np.ones_like(weights)
    elif config.loss.wm_weights != 'eq5':
      raise ValueError(f"loss.wm_weights={config.loss.wm_weights!r}; expected 'eq5' or 'uniform'")
    logging.info('[%s] weights u = %s', stage, np.array2string(weights, precision=3))
  stage_cfg = config.stages[stage]
  batch_loss = make_batch_loss(stage, model, config, weights)
  tx = optim.from_config(params, stage_cfg, config.optim, frozen=FROZEN.get(stage))
  forced = config.loss.hnm == 'on'
  return loop.Training(
    initial_state=lambda: {
      **loop.init_state({'params': params}, tx),
      'hard': np.bool_(forced),
      'best_val': np.float32(np.inf),
      'bad_evals': np.int32(0),
    },
    update_fn=make_update_fn(batch_loss, tx, config, schema, stage_cfg.positives, settings.mesh),
    num_steps=stage_cfg.steps,
    batch_size=stage_cfg.positives,
    hook=make_hnm_hook(stage, batch_loss, val_batch, config, settings.writer),
    hook_every=config.validate_every,
  )


def _initial_params(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Parameters of the first stage: `model.init` (paper N(0, 0.01) or He rescaled), then the
  leaves `config.init_from` has (a warm start)."""
  params = registry.init(model_spec(config, config.variant), config.seed)['params']
  if config.model.init == 'he':
    params = bbfcn_model.he_rescale(params)
  elif config.model.init != 'paper':
    raise ValueError(f"model.init={config.model.init!r}; expected 'paper' or 'he'")
  if config.init_from:
    params = warm_start.apply({'params': params}, config.init_from)['params']
  return params


def _tables(records: stages.Records, schema: landmarks.Schema) -> str:
  """Summary and per-landmark tables (paper Table V / Fig. 10)."""
  rows = {name: records[name] for name in MODEL_NAMES.values() if name in records}
  keys = ['nme_ipd', 'nme_ioc', 'nme_box', 'fr_10_ipd', 'fr_8_ioc', 'auc_10_ipd']
  return reports.format_table(rows, keys) + '\n\n' + reports.per_landmark_table(rows, schema, 'ipd')
