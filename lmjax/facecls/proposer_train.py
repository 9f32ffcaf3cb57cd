"""Face-window proposer training as one resumable stage (`configs/proposer5.py`).

ProposalNet (`lmjax.models.proposal_net`, the cascade scanner's first stage) learns from 12 × 12
windows of the face classifier's data (`lmjax.facecls.proposer_data`: positive, part, partial and
background windows cut on device inside the jitted step) two things at once:

  loss = mean_{labelled windows} sigmoid_ce(logit, label)
         + box_weight · mean_{windows with a box target} ‖offsets − target‖²

(MTCNN's P-Net loss; part windows train the box only). Each run loads BB-FCN's faces and
negative cache through `lmjax.facecls.train.load_training_data`, validates every
`validate_every` steps (`lmjax.eval.proposals.proposal_metrics`: recall at face probabilities
0.3 / 0.5 / 0.7, false-positive rates, AUC, box-offset errors, logged to `metrics.jsonl`) and
exports `<workdir>/models/proposer` with its validation metrics and seconds in `stages.json`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lmjax.data import batching
from lmjax.eval.proposals import proposal_metrics
from lmjax.facecls import proposer_data
from lmjax.facecls.train import load_training_data, window_training
from lmjax.models import registry
from lmjax.train import loop, stages

STAGE = 'proposer'  # the stage, its checkpoint folder, its model folder and stages.json key
SUMMARY_KEYS = (
  'loss',
  'auc',
  'recall_0.5',
  'rolled_recall_0.5',
  'fpr_background_0.5',
  'fpr_partial_0.5',
  'offset_mae',
)


def model_spec(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The `model.json` of the proposer (`lmjax.models.registry` schema)."""
  return registry.make_spec(
    'proposer',
    size=config.model.size,
    widths=list(config.model.widths),
    crop='square window; offsets = face box (x0, y0, x1, y1) minus the window, in window sides',
    dataset=config.data.name,
  )


def proposer_loss(
  logits: jax.Array, offsets: jax.Array, batch: dict[str, jax.Array], box_weight: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """P-Net loss of one batch.

  Args:
    logits: [B] face logits.
    offsets: [B, 4] predicted box offsets (window sides).
    batch: `labels` [B] (1 = face), `class_mask` bool [B], `targets` [B, 4], `has_target`
      bool [B] (`proposer_data.train_batch`).
    box_weight: λ of the box term.

  Returns:
    (loss, {'class_loss', 'box_loss'}); a term whose mask is empty is 0.
  """
  class_mask = batch['class_mask'].astype(jnp.float32)
  has_target = batch['has_target'].astype(jnp.float32)
  ce = optax.sigmoid_binary_cross_entropy(logits, batch['labels'])
  class_loss = jnp.sum(ce * class_mask) / jnp.maximum(class_mask.sum(), 1.0)
  squared = jnp.sum(jnp.square(offsets - batch['targets']), axis=-1)
  box_loss = jnp.sum(squared * has_target) / jnp.maximum(has_target.sum(), 1.0)
  return class_loss + box_weight * box_loss, {'class_loss': class_loss, 'box_loss': box_loss}


def make_update_fn(model, tx, config, pp: proposer_data.ProposerParams, mesh):
  """The jitted train step: windows cut on device -> ProposalNet -> P-Net loss -> SGD."""
  counts = proposer_data.batch_counts(config)
  box_weight = config.loss.box_weight

  def update(state, data, idx, key):
    rng = jax.random.fold_in(key, state['step'])
    batch = proposer_data.train_batch(rng, data, idx, counts, pp)

    def loss_fn(p):
      logits, offsets = model.apply({'params': p}, batch['images'])
      logits, offsets = logits[:, 0, 0], offsets[:, 0, 0]
      loss, parts = proposer_loss(logits, offsets, batch, box_weight)
      return loss, (parts, logits)

    (loss, (parts, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    new_state = loop.sgd_step(state, grads, tx)
    correct = ((logits > 0) == (batch['labels'] > 0.5)).astype(jnp.float32) * 100  # percent
    n = counts.positives
    negative = batch['class_mask'][n:].astype(jnp.float32)
    metrics = {
      'loss': loss,
      **parts,
      'pos_acc': correct[:n].mean(),
      'neg_acc': jnp.sum(correct[n:] * negative) / jnp.maximum(negative.sum(), 1.0),
      'grad_norm': optax.global_norm(grads),
    }
    return new_state, metrics

  return loop.jit_update(update, mesh)


def make_predict_fn(model, batch_size: int):
  """`fn(params, crops [N, 12, 12, 3]) -> (logits [N], offsets [N, 4])` in padded batches."""

  @jax.jit
  def forward(p, x):
    logits, offsets = model.apply({'params': p}, x)
    return logits[:, 0, 0], offsets[:, 0, 0]

  def predict(params, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return batching.run_bucketed(lambda x: forward(params, x), crops, (batch_size,))

  return predict


def summary(metrics: dict[str, float]) -> str:
  """The one-line validation summary."""
  return '  '.join(f'{k}={metrics[k]:.4g}' for k in SUMMARY_KEYS if k in metrics)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the proposer; returns {'proposer': metrics + elapsed_s}."""
  if (records := stages.finished_records(workdir, STAGE)) is not None:
    return records  # no need to load the data
  pp = proposer_data.proposer_params(config)
  proposer_data.batch_counts(config)  # a wrong batch split fails before the data loads
  loaded = load_training_data(config, workdir)
  val = proposer_data.validation_set(
    loaded.val_regions, loaded.val_bbox, loaded.val_negatives, pp, config.eval_batch_size
  )
  spec = model_spec(config)
  model = registry.build(spec)
  predict = make_predict_fn(model, config.eval_batch_size)

  def validate(variables) -> dict[str, float]:
    logits, offsets = predict(variables['params'], val['crops'])
    return proposal_metrics(logits, offsets, val['kinds'], val['targets'])

  def hook(state):
    metrics = validate(state)
    record = {f'val_{k}': v for k, v in metrics.items()}
    message = f'validation: {summary(metrics)}'
    loaded.settings.writer.eval_metrics(STAGE, int(state['step']), record, message)
    return state

  def start(previous, records) -> loop.Training:
    del previous, records
    return window_training(
      STAGE, spec, config, lambda tx: make_update_fn(model, tx, config, pp, loaded.mesh), hook
    )

  return stages.run_one(stages.Stage(STAGE, start, validate, spec), summary, loaded.settings)
