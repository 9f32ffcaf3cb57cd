"""The staged-run runner, the stage loop, the metric writer and the padded batch runner."""

import itertools
import json
import logging
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmjax.data import batching
from lmjax.models import registry
from lmjax.train import checkpoint, curves, loop, stages, writer

SPEC = registry.make_spec(
  'facecls', size=8, supersample=1, widths=[2, 4], hidden=4, crop='square', dataset='toy'
)


class KilledError(Exception):
  pass


def make_settings(workdir, mesh, eval_every=0):
  x = np.random.default_rng(0).normal(size=(12, 8, 8, 3)).astype(np.float32)
  return loop.RunSettings(
    workdir=str(workdir),
    data=batching.replicate({'x': x, 'y': (np.arange(12) % 2).astype(np.float32)}, mesh),
    num_examples=12,
    seed=3,
    mesh=mesh,
    log_every=1,
    checkpoint_every=3,
    writer=writer.MetricWriter(str(workdir)),
    eval_every=eval_every,
  )


def make_plan(log, *, steps=6, stop_after='', fail_at=None):
  """Three stages: `a` trains from scratch, `b` continues from `a`, `c` rescales `b`'s model."""
  model = registry.build(SPEC)
  tx = optax.sgd(0.05, momentum=0.9)

  def update(state, data, idx, key):
    noise = 0.01 * jax.random.normal(jax.random.fold_in(key, state['step']), (idx.shape[0],))

    def loss_fn(p):
      logits = model.apply({'params': p}, data['x'][idx]) + noise
      return optax.sigmoid_binary_cross_entropy(logits, data['y'][idx]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state['params'])
    return loop.sgd_step(state, grads, tx), {'loss': loss}

  def hook(state):
    if fail_at is not None and int(state['step']) == fail_at:
      raise KilledError  # as if the process were killed after this step
    return state

  def trained(name):
    def start(previous, records):
      log.append((name, previous is None, sorted(records)))
      params = registry.init(SPEC, 0)['params'] if previous is None else previous['params']
      return loop.Training(
        initial_state=lambda: loop.init_state({'params': params}, tx),
        update_fn=loop.jit_update(update, mesh=batching.make_mesh()),
        num_steps=steps,
        batch_size=4,
        hook=hook,
        hook_every=1,
      )

    return start

  def rescale(previous, records):
    log.append(('c', previous is None, sorted(records)))
    return {'params': jax.tree_util.tree_map(lambda x: 2 * x, previous['params'])}

  def validate(variables):
    return {'norm': float(optax.tree.norm(variables['params']))}

  return stages.Plan(
    stages=[
      stages.Stage('a', trained('a'), validate, SPEC),
      stages.Stage('b', trained('b'), validate, SPEC, model='model_b'),
      stages.Stage('c', rescale, validate, SPEC),
    ],
    summary=lambda m: f'norm {m["norm"]:.3f}',
    table=lambda records: ' '.join(f'{k}={v["norm"]:.4f}' for k, v in sorted(records.items())),
    stop_after=stop_after,
  )


def read_lines(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def losses(workdir, stage):
  records = writer.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  return {r['step']: r['loss'] for r in records if r['stage'] == stage and 'loss' in r}


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('stages') / 'run'
  log = []
  records = stages.run(make_plan(log), make_settings(workdir, batching.make_mesh()))
  return workdir, records, log


def test_runs_every_stage_records_and_exports(full_run):
  workdir, records, log = full_run
  assert log == [('a', True, []), ('b', False, ['a']), ('c', False, ['a', 'model_b'])]
  assert sorted(records) == ['a', 'c', 'model_b']
  assert json.loads((workdir / 'stages.json').read_text()) == records
  for name in records:
    assert records[name]['elapsed_s'] >= 0 and (workdir / 'models' / name / 'model.json').is_file()
  assert records['a']['elapsed_s'] > 0
  assert records['c']['norm'] == pytest.approx(2 * records['model_b']['norm'], rel=1e-5)
  text = (workdir / 'table.txt').read_text()
  assert text.startswith('a=') and 'model_b=' in text
  lines = read_lines(workdir)
  assert lines[0]['event'] == 'start' and lines[0]['step'] == 0 and lines[0]['stage'] == 'a'
  assert [r['step'] for r in lines if r['stage'] == 'a'] == list(range(7))  # marker + 1..6
  assert set(lines[1]) == {'stage', 'step', 'time', 'loss'}


def test_rerun_skips_finished_stages_and_restores_only_when_needed(full_run, tmp_path):
  workdir, records, _ = full_run
  log = []
  again = stages.run(make_plan(log), make_settings(workdir, batching.make_mesh()))
  assert again == records and log == []  # nothing started, nothing restored
  # A run whose last stage is missing restores the model before it from its folder.
  copy = tmp_path / 'copy'
  shutil.copytree(workdir / 'models', copy / 'models')
  partial = {k: v for k, v in records.items() if k != 'c'}
  stages.write_records(str(copy), partial)
  new = stages.run(make_plan(log), make_settings(copy, batching.make_mesh()))
  assert log == [('c', False, ['a', 'model_b'])]
  assert new['c']['norm'] == pytest.approx(records['c']['norm'], rel=1e-6)


def test_stop_after_ends_the_run_without_a_table(tmp_path):
  log = []
  settings = make_settings(tmp_path, batching.make_mesh())
  records = stages.run(make_plan(log, stop_after='a'), settings)
  assert list(records) == ['a'] and not (tmp_path / 'table.txt').exists()
  with pytest.raises(ValueError, match="stop_after='z'"):
    stages.run(make_plan(log, stop_after='z'), make_settings(tmp_path, batching.make_mesh()))


def test_killed_stage_resumes_with_identical_losses_and_keeps_its_time(
  full_run, tmp_path, monkeypatch
):
  workdir, records, _ = full_run
  mesh = batching.make_mesh()
  clock = itertools.count(0.0, 100.0)  # the stage loop's clock: 100 s per reading
  monkeypatch.setattr(loop, 'time', types.SimpleNamespace(time=lambda: next(clock)))
  with pytest.raises(KilledError):  # dies after step 4: checkpoint 3 survives
    stages.run(make_plan([], fail_at=4), make_settings(tmp_path, mesh))
  monkeypatch.undo()
  assert not (tmp_path / 'stages.json').exists()
  saved = checkpoint.StageCheckpoints(str(tmp_path / 'ckpt' / 'a'))
  assert saved.latest_step() == 3
  saved.close()
  resumed = stages.run(make_plan([]), make_settings(tmp_path, mesh))
  reference = losses(workdir, 'a')
  assert losses(tmp_path, 'a') == reference  # steps 4-6 recomputed bit for bit
  markers = [r['step'] for r in read_lines(tmp_path) if r.get('event') == 'start']
  assert markers[:2] == [0, 3]  # stage a started at 0, resumed at 3 (step 4 written twice)
  assert losses(tmp_path, 'model_b') == {} and losses(tmp_path, 'b') == losses(workdir, 'b')
  assert resumed['c']['norm'] == records['c']['norm']
  assert resumed['a']['elapsed_s'] >= 100  # the killed invocation's time up to checkpoint 3


def test_eval_every_writes_a_learning_curve_without_changing_training(full_run, tmp_path):
  workdir, records, _ = full_run
  curve_records = stages.run(make_plan([]), make_settings(tmp_path, batching.make_mesh(), 2))
  assert losses(tmp_path, 'a') == losses(workdir, 'a')  # validating does not touch training
  assert curve_records['a']['norm'] == records['a']['norm']
  checks = [r for r in writer.read_metrics(str(tmp_path / 'metrics.jsonl')) if 'val_norm' in r]
  # Steps 2 and 4 of the two trained stages; the last step is left to the stage's validation.
  assert [(r['stage'], r['step']) for r in checks] == [('a', 2), ('a', 4), ('b', 2), ('b', 4)]
  assert all(r['elapsed_s'] >= 0 for r in checks)
  curve = curves.load_curve(str(tmp_path), 'toy', 'x', metric='norm', cores=2, stages=['a'])
  assert curve.stages == ('a', 'a', 'a')  # two checks + the stage's final validation
  assert (np.diff(curve.minutes) >= 0).all() and curve.values[-1] == curve_records['a']['norm']
  assert curve.minutes[-1] == pytest.approx(curve_records['a']['elapsed_s'] * 2 / 60)
  everything = curves.load_curve(str(tmp_path), 'toy', 'x', metric='norm')
  assert everything.stages[:5] == ('a', 'a', 'a', 'b', 'b') and 'c' in everything.stages
  assert curve.at(-1.0) != curve.at(-1.0)  # NaN before the first validation
  table = curves.format_table([curve], [0.0, 1e9], 'norm')
  assert f'{records["a"]["norm"]:.2f}' in table.splitlines()[-1]
  png = curves.plot([curve], str(tmp_path / 'curve.png'), 'norm')
  assert (tmp_path / 'curve.png').stat().st_size > 1000 and png.endswith('curve.png')
  with pytest.raises(ValueError, match='no validation of'):
    curves.load_curve(str(tmp_path), 'toy', 'x', metric='nme_ipd')
  with pytest.raises(ValueError, match='PANEL:LABEL:WORKDIR'):
    curves.parse_curve('only:two')
  assert curves.parse_curve('MCL5, MTFL:fast:runs/a:b') == ('MCL5, MTFL', 'fast', 'runs/a:b')


def test_writer_records_logs_and_overview(tmp_path, caplog, monkeypatch):
  w = writer.MetricWriter(str(tmp_path))
  w.start(0)
  with caplog.at_level(logging.INFO):
    w.train_metrics('s', 2, 10, {'loss': np.float32(0.5)})
    w.eval_metrics('s', 2, {'val_loss': 0.25, 'hnm': True}, 'val_loss=0.25')
    w.parameter_overview('s', {'conv': {'kernel': np.zeros((3, 3, 1, 4)), 'bias': np.zeros(4)}})
  lines = read_lines(tmp_path)
  assert lines[0]['loss'] == 0.5 and lines[0]['step'] == 2 and 'time' in lines[0]
  assert lines[1] == {'stage': 's', 'step': 2, 'val_loss': 0.25, 'hnm': True}
  assert 'steps/s  ETA' in caplog.text and '[s] step 2  val_loss=0.25' in caplog.text
  assert 'conv' in caplog.text and '40' in caplog.text  # 36 + 4 parameters
  table = writer.parameter_table({'a': {'w': np.zeros((2, 3))}, 'b': np.zeros(5)})
  assert table.splitlines()[1].split() == ['a', '1', '6']
  assert table.splitlines()[-1].split() == ['total', '2', '11']
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  other = writer.MetricWriter(str(tmp_path / 'other'))
  other.write({'stage': 's', 'step': 1})
  assert not (tmp_path / 'other').exists()  # only process 0 writes


def test_read_metrics_drops_markers_and_repeated_steps(tmp_path):
  w = writer.MetricWriter(str(tmp_path))
  w.start(0, stage='s')
  for step in (1, 2, 3):
    w.write({'stage': 's', 'step': step, 'loss': float(step)})
  w.start(1, stage='s')  # resumed from the checkpoint at step 1: steps 2, 3 again
  for step in (2, 3):
    w.write({'stage': 's', 'step': step, 'loss': 10.0 * step})
  w.start(0, stage='t')
  records = writer.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [(r['step'], r['loss']) for r in records] == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_jit_update_donates_the_state_and_replicates():
  mesh = batching.make_mesh()
  step = loop.jit_update(lambda s, d, i, k: ({**s, 'w': s['w'] + 1}, {'m': s['w'].sum()}), mesh)
  state = batching.replicate({'w': np.zeros(3, np.float32)}, mesh)
  new, metrics = step(state, {}, jnp.zeros(2), jax.random.key(0))
  assert state['w'].is_deleted()  # donated
  assert new['w'].sharding.is_fully_replicated and float(metrics['m']) == 0.0


def test_run_bucketed_pads_to_buckets_and_drops_the_padding():
  x = np.arange(11, dtype=np.int32)
  shapes = []

  def fn(batch):
    shapes.append(batch['x'].shape[0])
    return {'double': batch['x'] * 2, 'pair': (batch['x'], batch['y'])}

  out = batching.run_bucketed(fn, {'x': x, 'y': x[:, None]}, buckets=(4, 2))
  assert shapes == [4, 4, 4]  # 4 + 4 + 3 (padded to 4)
  np.testing.assert_array_equal(out['double'], 2 * x)
  np.testing.assert_array_equal(out['pair'][1], x[:, None])
  shapes.clear()
  batching.run_bucketed(lambda a: shapes.append(len(a)) or a, x[:5], buckets=(1, 8))
  assert shapes == [8]
  mesh = batching.make_mesh()
  sharded = batching.run_bucketed(lambda a: a + 1, x.astype(np.float32), (4,), mesh)
  np.testing.assert_array_equal(sharded, x + 1)
  with pytest.raises(ValueError, match='leading axis N > 0'):
    batching.run_bucketed(lambda a: a, np.zeros((0, 3)))
  with pytest.raises(ValueError, match='leading axis'):
    batching.run_bucketed(lambda a: a, {'a': np.zeros(3), 'b': np.zeros(4)})
