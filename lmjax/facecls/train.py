"""Face / non-face classifier training as one resumable stage (`configs/facecls5.py`).

FaceNet (`lmjax.models.facenet`) learns to tell face windows (IoU ≥ 0.65 with a face box) from
partial-face windows (IoU 0.05-0.3) and background windows, with the sigmoid cross-entropy and
SGD momentum (`lmjax.train.optim`). Faces and the negative cache are those of BB-FCN (same dataset
split, `lmjax.data.negatives.build_negative_cache`); batches are cut on device inside the jitted
step (`lmjax.facecls.data`). The one stage runs through `lmjax.train.stages`, which
checkpoints and resumes; every `validate_every` steps the validation crops (one positive and
one partial window per held-out face, plus the held-out negatives) are scored and logged to
`metrics.jsonl`. The finished stage exports `<workdir>/models/facecls` (for
`lmjax.facecls.classifier.FaceClassifier.load`) and writes its validation metrics and seconds
to `stages.json`; a re-run skips it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lmjax.core import landmarks
from lmjax.data import balance, batching, negatives
from lmjax.data.caches import load_caches
from lmjax.eval.classification import classification_metrics
from lmjax.facecls import data as facecls_data
from lmjax.models import registry
from lmjax.train import loop, optim, stages, warm_start
from lmjax.train.writer import MetricWriter

STAGE = 'facecls'  # the stage, its checkpoint folder, its model folder and stages.json key


def model_spec(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The `model.json` of the classifier (`lmjax.models.registry` schema)."""
  return registry.make_spec(
    'facecls',
    size=config.model.size,
    supersample=config.model.supersample,
    widths=list(config.model.widths),
    hidden=config.model.hidden,
    crop='square of the longer box side about the box centre',
    dataset=config.data.name,
  )


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

  return loop.jit_update(update, mesh)


def make_logits_fn(model, batch_size: int):
  """`fn(params, crops [N, S, S, 3]) -> logits [N]` in fixed-size, padded batches."""
  forward = jax.jit(lambda p, x: model.apply({'params': p}, x))

  def logits(params, crops: np.ndarray) -> np.ndarray:
    return batching.run_bucketed(lambda x: forward(params, x), crops, (batch_size,))

  return logits


def _format(metrics: dict[str, float]) -> str:
  keys = ('loss', 'accuracy', 'positive_acc', 'partial_acc', 'background_acc', 'auc')
  return '  '.join(f'{k}={metrics[k]:.4g}' for k in keys if k in metrics)


def make_validation_hook(
  logits_fn, crops: np.ndarray, kinds: np.ndarray, writer: MetricWriter
) -> Callable[[loop.State], loop.State]:
  """Scores the validation crops, logs the metrics (state unchanged)."""

  def hook(state):
    metrics = classification_metrics(logits_fn(state['params'], crops), kinds)
    record = {f'val_{k}': v for k, v in metrics.items()}
    writer.eval_metrics(STAGE, int(state['step']), record, f'validation: {_format(metrics)}')
    return state

  return hook


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """What the face-window trainers (this one, `lmjax.facecls.proposer_train`) load.

  Attributes:
    settings: the run settings; `settings.data` holds the device-resident `regions` uint8
      [N, R, R, 3], `bbox` [N, 4] and `negatives` uint8 [M, Sn, Sn, 3] of the training split.
    val_regions: uint8 [V, R, R, 3] held-out face regions; val_bbox [V, 4] their boxes.
    val_negatives: uint8 [Mv, Sn, Sn, 3] held-out negative-cache images.
    mesh: the data mesh of the jitted step.
  """

  settings: loop.RunSettings
  val_regions: np.ndarray
  val_bbox: np.ndarray
  val_negatives: np.ndarray
  mesh: Any


def load_training_data(config: ml_collections.ConfigDict, workdir: str) -> TrainingData:
  """Face regions (BB-FCN's split), the negative cache and the run settings of a window trainer."""
  train_cache, val_cache = load_caches(config)
  windows = facecls_data.negative_cache(config, set(val_cache.image_ids))
  train_neg, val_neg = negatives.split_negatives(
    windows, config.negatives.num_validation, config.seed, (len(train_cache), len(val_cache))
  )
  mesh = batching.make_mesh()
  data = {'regions': train_cache.regions[:, 0], 'bbox': train_cache.bbox, 'negatives': train_neg}
  schema = landmarks.get_schema(config.model.num_points)
  weights = balance.sampling_weights(config.data, train_cache.landmarks, schema)
  settings = loop.run_settings(
    config, workdir, batching.replicate(data, mesh), len(train_cache), mesh, weights
  )
  return TrainingData(settings, val_cache.regions[:, 0], val_cache.bbox, val_neg, mesh)


def window_training(
  stage: str,
  spec: dict[str, Any],
  config: ml_collections.ConfigDict,
  make_update: Callable[[optax.GradientTransformation], Callable],
  hook: Callable,
) -> loop.Training:
  """Stage `stage` of a window trainer (this one, `lmjax.facecls.proposer_train`): parameters
  from `registry.init` or warm-started from `config.init_from`, `config.stages[stage]`'s
  optimizer and steps, and `make_update(tx)` as the jitted step."""
  stage_cfg = config.stages[stage]
  init = jax.jit(lambda: registry.init(spec, config.seed)['params'])()  # one compile
  if config.init_from:
    init = warm_start.apply({'params': init}, config.init_from)['params']
  tx = optim.from_config(init, stage_cfg, config.optim)
  return loop.Training(
    initial_state=lambda: loop.init_state({'params': init}, tx),
    update_fn=make_update(tx),
    num_steps=stage_cfg.steps,
    batch_size=config.batch.positives,
    hook=hook,
    hook_every=config.validate_every,
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the face classifier; returns {'facecls': metrics + elapsed_s}."""
  if (records := stages.finished_records(workdir, STAGE)) is not None:
    return records  # no need to load the data
  num_background = config.batch_size - config.batch.positives - config.batch.partial
  if min(config.batch.positives, config.batch.partial, num_background) < 0:
    raise ValueError('batch: positives + partial must not exceed batch_size')
  params = facecls_data.sample_params(config)
  loaded = load_training_data(config, workdir)
  crops, kinds = facecls_data.validation_set(
    loaded.val_regions, loaded.val_bbox, loaded.val_negatives, params, config.eval_batch_size
  )
  spec = model_spec(config)
  model = registry.build(spec)
  logits_fn = make_logits_fn(model, config.eval_batch_size)

  def start(previous, records) -> loop.Training:
    del previous, records
    return window_training(
      STAGE,
      spec,
      config,
      lambda tx: make_update_fn(model, tx, config, params, loaded.mesh),
      make_validation_hook(logits_fn, crops, kinds, loaded.settings.writer),
    )

  validate = lambda v: classification_metrics(logits_fn(v['params'], crops), kinds)
  return stages.run_one(stages.Stage(STAGE, start, validate, spec), _format, loaded.settings)
