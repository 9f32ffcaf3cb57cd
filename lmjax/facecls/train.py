"""Face / non-face classifier training as one resumable stage (`configs/facecls5.py`).

FaceNet (`lmjax.models.facenet`) learns to tell face windows (IoU ≥ 0.65 with a face box) from
partial-face windows (IoU 0.05-0.3) and background windows, with the sigmoid cross-entropy and
SGD momentum (`lmjax.train.optim`). Faces and the negative cache are those of BB-FCN (same dataset
split, `lmjax.bbfcn.data.build_negative_cache`); batches are cut on device inside the jitted
step (`lmjax.facecls.data`). `loop.run_stage` checkpoints and resumes; every
`validate_every` steps the validation crops (one positive and one partial window per held-out
face, plus the held-out negatives) are scored and logged to `metrics.jsonl`. The finished stage
exports `<workdir>/models/facecls` (for `lmjax.facecls.classifier.FaceClassifier.load`) and
writes its validation metrics to `stages.json`; a re-run skips it.
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

from lmjax.data import batching
from lmjax.data import negatives as bbfcn_data
from lmjax.data.caches import load_caches
from lmjax.facecls import data as facecls_data
from lmjax.models import facenet
from lmjax.train import checkpoint, loop, optim

STAGE = 'facecls'  # the stage, its checkpoint folder, its model folder and stages.json key
KINDS = ('positive', 'partial', 'background')


def model_spec(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What `lmjax.facecls.classifier` needs to rebuild and feed the model (saved as model.json)."""
  return {
    'experiment': 'facecls',
    'size': config.model.size,
    'supersample': config.model.supersample,
    'widths': list(config.model.widths),
    'hidden': config.model.hidden,
    'crop': 'square of the longer box side about the box centre',
    'dataset': config.data.name,
  }


def make_update_fn(model, tx, config, params: facecls_data.SampleParams, mesh):
  """The jitted train step: windows cut on device -> FaceNet -> sigmoid cross-entropy -> SGD."""
  num_pos, num_partial = config.batch.positives, config.batch.partial
  num_background = config.batch_size - num_pos - num_partial

  def update(state, data, idx, key):
    rng = jax.random.fold_in(key, state['step'])
    images, labels = facecls_data.train_batch(rng, data, idx, num_partial, num_background, params)

    def loss_fn(p):
      logits = model.apply({'params': p}, images)
      return optax.sigmoid_binary_cross_entropy(logits, labels).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    new_state = loop.sgd_step(state, grads, tx)
    correct = ((logits > 0) == (labels > 0.5)).astype(jnp.float32) * 100  # percent
    metrics = {
      'loss': loss,
      'accuracy': correct.mean(),
      'pos_acc': correct[:num_pos].mean(),
      'neg_acc': correct[num_pos:].mean(),
      'grad_norm': optax.global_norm(grads),
    }
    return new_state, metrics

  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(update, donate_argnums=(0,), out_shardings=(replicated, replicated))


def make_logits_fn(model, batch_size: int):
  """`fn(params, crops [N, S, S, 3]) -> logits [N]` in fixed-size, padded batches."""
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x))

  def logits(params, crops: np.ndarray) -> np.ndarray:
    out = []
    for batch in batching.eval_batches({'x': crops}, batch_size):
      out.append(np.asarray(forward(params, batch['x']))[batch['_mask']])
    return np.concatenate(out)

  return logits


def classification_metrics(logits: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
  """Loss, accuracy (threshold 0.5), accuracy per kind of window and ROC AUC.

  Args:
    logits: [N] face logits.
    kinds: int [N]: 0 = positive, 1 = partial-face negative, 2 = background negative.
  """
  logits = np.asarray(logits, np.float64)
  labels = (kinds == 0).astype(np.float64)
  loss = np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
  correct = (logits > 0) == (labels > 0.5)
  out = {'loss': float(loss), 'accuracy': float(correct.mean() * 100)}
  for k, name in enumerate(KINDS):
    if np.any(kinds == k):
      out[f'{name}_acc'] = float(correct[kinds == k].mean() * 100)
  pos, neg = logits[labels > 0.5], logits[labels < 0.5]
  if len(pos) and len(neg):  # P(logit of a face > logit of a non-face), ties count half
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, 'left')
    tied = np.searchsorted(neg, pos, 'right') - below
    out['auc'] = float((below + 0.5 * tied).sum() / (len(pos) * len(neg)))
  out.update(num_positive=len(pos), num_negative=len(neg))
  return out


def _format(metrics: dict[str, float]) -> str:
  keys = ('loss', 'accuracy', 'positive_acc', 'partial_acc', 'background_acc', 'auc')
  return '  '.join(f'{k}={metrics[k]:.4g}' for k in keys if k in metrics)


def make_validation_hook(logits_fn, crops: np.ndarray, kinds: np.ndarray, workdir: str):
  """Scores the validation crops, logs the metrics (state unchanged)."""
  log_path = os.path.join(workdir, 'metrics.jsonl')

  def hook(state):
    step = int(state['step'])
    metrics = classification_metrics(logits_fn(state['params'], crops), kinds)
    logging.info('[%s] step %d  validation: %s', STAGE, step, _format(metrics))
    record = {'stage': STAGE, 'step': step, **{f'val_{k}': v for k, v in metrics.items()}}
    loop.append_json(log_path, record)
    return state

  return hook


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the face classifier; returns {'facecls': validation metrics}."""
  os.makedirs(workdir, exist_ok=True)
  stages_path = os.path.join(workdir, 'stages.json')
  done: dict[str, Any] = loop.read_json(stages_path)
  if STAGE in done:
    logging.info('[%s] finished earlier; skipping', STAGE)
    return done
  num_background = config.batch_size - config.batch.positives - config.batch.partial
  if min(config.batch.positives, config.batch.partial, num_background) < 0:
    raise ValueError('batch: positives + partial must not exceed batch_size')
  params = facecls_data.sample_params(config)
  train_cache, val_cache = load_caches(config)
  negatives = facecls_data.negative_cache(config, set(val_cache.image_ids))
  train_neg, val_neg = bbfcn_data.split_negatives(
    negatives, config.negatives.num_validation, config.seed, (len(train_cache), len(val_cache))
  )
  mesh = batching.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = {
    'regions': jax.device_put(train_cache.regions[:, 0], replicated),
    'bbox': jax.device_put(train_cache.bbox, replicated),
    'negatives': jax.device_put(train_neg, replicated),
  }
  crops, kinds = facecls_data.validation_set(
    val_cache.regions[:, 0], val_cache.bbox, val_neg, params, config.eval_batch_size
  )
  model = facenet.build_model(model_spec(config))
  logits_fn = make_logits_fn(model, config.eval_batch_size)
  stage_cfg = config.stages[STAGE]
  init = facenet.init_variables(model, config.model.size, config.seed)['params']
  tx = optim.from_config(init, stage_cfg, config.optim)
  state = loop.run_stage(
    STAGE,
    workdir=workdir,
    initial_state=lambda: loop.init_state({'params': init}, tx),
    update_fn=make_update_fn(model, tx, config, params, mesh),
    data=data,
    num_examples=len(train_cache),
    num_steps=stage_cfg.steps,
    batch_size=config.batch.positives,
    seed=config.seed,
    mesh=mesh,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    hook=make_validation_hook(logits_fn, crops, kinds, workdir),
    hook_every=config.validate_every,
  )
  variables = {'params': jax.device_get(state['params'])}
  metrics = classification_metrics(logits_fn(variables['params'], crops), kinds)
  checkpoint.export_model(os.path.join(workdir, 'models', STAGE), variables, model_spec(config))
  logging.info('[%s] final validation: %s', STAGE, _format(metrics))
  print(f'{STAGE} validation: {_format(metrics)}', flush=True)
  done[STAGE] = metrics
  loop.write_json(stages_path, done)
  return done
