"""Publishes a trained model folder with its model card (`pretrained/<name>/`).

    python -m lmjax.model_card --workdir=runs/mcl68_300w --out=pretrained/mcl68 \
        --hardware="2-core Intel Xeon (AVX-512) CPU, no GPU"

Copies `<workdir>/models/<stage>` (default `am`: the assembled model) to `--out` and writes
`--out/MODEL_CARD.md` from what the run recorded: the command (`commands.txt`, written by
`lmjax.main`; `--command` overrides it), the config (`config.json`), the validation metrics of
every stage and the seconds each took over all invocations (`stages.json`, written by the
staged-run runner `lmjax.train.stages`), and the steps per stage. Nothing in the card is typed
in by hand except `--hardware` and `--notes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from etils import epath

from lmjax.bbfcn.train import MODEL_NAMES
from lmjax.core import paths
from lmjax.eval import reports
from lmjax.train import stages as stages_lib

MAX_BYTES = 10 * 1024 * 1024  # the repository's limit for a committed model
CHAIN_FILE = 'training_chain.json'  # the runs behind a published model, oldest first


def training_seconds(stages: Mapping[str, Mapping]) -> float | None:
  """Seconds the run's stages took, summed (`elapsed_s` of each `stages.json` record).

  None when a record has no `elapsed_s` (a run from before the stage runner recorded it).
  """
  seconds = [record.get(stages_lib.ELAPSED) for record in stages.values()]
  if not seconds or any(s is None for s in seconds):
    return None
  return float(sum(seconds))


def _command(workdir: str) -> str:
  path = epath.Path(workdir) / 'commands.txt'
  if not path.is_file():
    raise SystemExit(f'{path} is missing (written by lmjax.main); pass --command')
  lines = path.read_text(encoding='utf-8').splitlines()
  commands = {line.split('\t', 1)[-1] for line in lines if line.strip()}
  if len(commands) != 1:
    raise SystemExit(f'{path} records {len(commands)} different commands; pass --command')
  return commands.pop()


def render_card(
  name: str,
  command: str,
  config: dict,
  stages: dict,
  hardware: str,
  stage: str,
  size_bytes: int,
  notes: str = '',
  chain: Sequence[Mapping] = (),
) -> str:
  """The MODEL_CARD.md text (`chain`: the warm-start chain of runs, oldest first)."""
  data = config['data']
  steps = {k: v['steps'] for k, v in config['stages'].items() if v['steps']}
  bbfcn = config.get('experiment') == 'bbfcn'
  keys = ['num_faces', 'nme_ioc', 'nme_ipd', 'nme_box', 'fr_8_ioc', 'fr_10_ipd', 'auc_10_ipd']
  held_out = f'{stages[next(iter(stages))].get("num_faces")} faces'
  input_line = f'* input: {{crop}} of {config["input"].get("crop_scale")} × the face box'
  precision, points = 2, f', {config["model"]["num_points"]} points'
  if config.get('experiment') == 'proposer':
    order, title, points, precision = ['proposer'], 'face-window proposer', '', 3
    paper, module = 'P-Net-style first stage of the cascade scanner', 'facecls/proposer_train'
    w = config['windows']
    crop = f'{config["model"]["size"]}×{config["model"]["size"]} RGB window'
    input_line = (
      f'* input: {crop}; positives IoU ≥ {w["pos_min_iou"]} with the face box (face, box '
      f'target), part windows IoU {w["part_min_iou"]}–{w["pos_min_iou"]} (box target only), '
      f'negatives IoU {w["neg_min_iou"]}–{w["neg_max_iou"]} and background; turned by up to '
      f'± {config["aug"]["rotation_deg"]:g}°'
    )
    use = [
      'from lmjax.train import checkpoint',
      '',
      f"model, variables, spec = checkpoint.load_model('pretrained/{name}', 'proposer')",
      "# image [1, H, W, 3] as x / 128 - 1 -> logits [1, H', W'], box offsets [1, H', W', 4]",
      'logits, offsets = model.apply(variables, image)',
    ]
    b = config['batch']
    batch = (
      f'{config["batch_size"]} ({b["positives"]} positive, {b["part"]} part, '
      f'{b["partial"]} partial-face, the rest background windows)'
    )
    keys = [
      'recall_0.3',
      'recall_0.5',
      'recall_0.7',
      'rolled_recall_0.5',
      'fpr_background_0.5',
      'fpr_partial_0.5',
      'auc',
      'offset_mae',
      'part_offset_mae',
    ]
    f = stages['proposer']
    held_out = f'{f["num_positive"]} faces and {f["num_negative"]} non-face windows'
  elif config.get('experiment') == 'facecls':
    order, title = ['facecls'], 'face/non-face CNN'
    paper, module = 'Net-12/24-style classifier re-scoring BB-FCN face proposals', 'facecls/train'
    crop = f'{config["model"]["size"]}×{config["model"]["size"]} RGB window'
    input_line = (
      f'* input: {crop}; positives IoU ≥ {config["windows"]["pos_min_iou"]} with the face box, '
      f'negatives: windows with IoU {config["windows"]["neg_min_iou"]}–'
      f'{config["windows"]["neg_max_iou"]} (shifted, too small, too large) and background'
    )
    use = [
      'from lmjax.facecls.classifier import FaceClassifier',
      f"probs = FaceClassifier.load('pretrained/{name}').score(image_rgb_uint8, boxes_x0y0x1y1)",
    ]
    batch = str(config['batch_size'])
    keys = ['accuracy', 'positive_acc', 'partial_acc', 'background_acc', 'auc', 'loss']
    f = stages['facecls']
    held_out = f'{f["num_positive"]} faces and {f["num_negative"]} non-face windows'
  elif bbfcn:  # only the stages this run trained (the config lists every variant's stages)
    steps = {k: v for k, v in steps.items() if MODEL_NAMES[k] in stages}
    order = [name for name in MODEL_NAMES.values() if name in stages]
    title, paper, module = 'BB-FCN', 'Liu et al., backbone-branches FCN', 'bbfcn/train'
    size, big = config['model']['size'], config['model']['refine_size']
    crop = f'{big}×{big} RGB face crop (backbone: its {size}×{size} downsample)'
    use = [
      'from lmjax.inference import load_predictor',
      '',
      f"points = load_predictor('pretrained/{name}').predict(image_rgb_uint8, box_x0y0x1y1)",
    ]
    batch = (
      f'{config["batch_size"]} (positives per stage: '
      + ', '.join(f'{k} {v["positives"]}' for k, v in config['stages'].items() if k in steps)
      + ')'
    )
  else:
    order = [s for s in ('bm', 'wm_partial', 'wm') if s in stages]
    order += sorted((s for s in stages if s.startswith('mc_')), key=lambda s: int(s[3:]))
    order += ['am'] if 'am' in stages else []
    # only the stages this run trained (a run may stop early: stop_after)
    steps = {k: v for k, v in steps.items() if k in stages or f'{k}_0' in stages}
    title, paper, module = 'MCL', 'Shao et al., Deep Multi-Center Learning', 'mcl/train'
    size = config['input']['size']
    grey = 'grey' if config['input']['grayscale'] else 'RGB'
    crop = f'{size}×{size} {grey} crop'
    use = [
      'from lmjax.mcl.predictor import FacePredictor',
      '',
      f"points = FacePredictor('pretrained/{name}').predict(image_rgb_uint8, box_x0y0x1y1)",
    ]
    batch = str(config['batch_size'])
  table = reports.format_table({s: stages[s] for s in order}, keys, precision)
  schedule = ', '.join(f'{k} {v}' for k, v in steps.items())
  lines = [
    f'# {name}: {title}{points}',
    '',
    f'The `{stage}` model of an `lmjax.main` run ({paper};',
    f'`lmjax/{module}.py`), exported by `python -m lmjax.model_card`. Size {size_bytes / 1e6:.2f}'
    ' MB.',
    '',
    '## Command',
    '',
    '```bash',
    command,
    '```',
    '',
    '## Data',
    '',
    f'* dataset `{data["name"]}`, split `{data["train_split"]}`, manual directory '
    f'`{data["manual_dir"]}`',
    f'* validation: {held_out} held out of the training split '
    f'(split seed {data["split_seed"]}); the test sets were not used',
    input_line.format(crop=crop),
    '',
    '## Training',
    '',
    f'* steps per stage: {schedule}'
    + (' (mc = each of the multi-center stages)' if 'mc' in steps and not bbfcn else '')
    + f'; batch {batch}',
    _time_line(training_seconds(stages)),
    f'* hardware: {hardware}',
    '',
    '## Validation metrics (' + _metrics_units(keys[0]) + ')',
    '',
    '```',
    table,
    '```',
    '',
    'Use it:',
    '',
    '```python',
    *use,
    '```',
  ]
  if len(chain) > 1:
    lines += ['', '## Warm-start chain', '', *_chain_lines(chain)]
  if notes:
    lines += ['', '## Notes', '', notes]
  return '\n'.join(lines) + '\n'


def _metrics_units(first_key: str) -> str:
  """The units line of the card's metrics table, by its first column."""
  if first_key == 'accuracy':
    return 'accuracies in percent, AUC and loss as ratios'
  if first_key.startswith('recall'):
    return (
      'ratios; recall_t / fpr_*_t: share of face / non-face windows with face probability ≥ t; '
      'rolled: faces turned by up to the training rotation; offsets: mean absolute error in '
      'window sides'
    )
  return 'percent; normaliser in the name'


def _previous_chain(init_from: str) -> list[dict]:
  """The runs behind the warm-start folder `init_from` ([] for a run from scratch)."""
  if not init_from:
    return []
  path = epath.Path(init_from) / CHAIN_FILE
  if not path.is_file():  # a folder published before chains were recorded
    return [{'command': f'(unrecorded runs behind {init_from})', 'seconds': None}]
  return json.loads(path.read_text(encoding='utf-8'))


def _chain_entry(command: str, config: Mapping, stages: Mapping, seconds: float | None) -> dict:
  """This run's link of the warm-start chain: the steps of the stages it trained (a run may
  stop early, `stop_after`; a BB-FCN config lists every variant's stages)."""
  trained = {
    k: v['steps']
    for k, v in config['stages'].items()
    if v.get('steps') and (k in stages or f'{k}_0' in stages or MODEL_NAMES.get(k) in stages)
  }
  return {
    'command': command,
    'init_from': config.get('init_from', ''),
    'steps': trained,
    'seconds': seconds,
  }


def _chain_lines(chain: Sequence[Mapping]) -> list[str]:
  """The card's warm-start chain: one line per run, oldest first, and the total time."""
  lines = []
  for i, run in enumerate(chain, 1):
    hours = f'{run["seconds"] / 3600:.2f} h' if run.get('seconds') is not None else 'time unknown'
    steps = ', '.join(f'{k} {v}' for k, v in run.get('steps', {}).items())
    lines.append(f'{i}. `{run["command"]}` ({hours}{"; steps " + steps if steps else ""})')
  known = [r['seconds'] for r in chain if r.get('seconds') is not None]
  lines += ['', f'Total recorded training time: {sum(known) / 3600:.2f} h over {len(chain)} runs.']
  return lines


def _time_line(seconds: float | None) -> str:
  if seconds is None:
    return '* training time: not recorded (a run from before `elapsed_s` in `stages.json`)'
  return (
    f'* training time: {seconds / 3600:.2f} h ({seconds / 60:.0f} min), the stages summed over '
    'all invocations of the command (resumed runs included)'
  )


def publish(
  workdir: str,
  out: str,
  hardware: str,
  stage: str | None = None,
  command: str | None = None,
  notes: str = '',
) -> str:
  """Copies the model folder and writes its card; returns the card's path.

  `stage` defaults to the experiment's final model: `am` (MCL) or `bbfcn` (BB-FCN).
  """
  config = json.loads((epath.Path(workdir) / 'config.json').read_text(encoding='utf-8'))
  if stage is None:
    experiment = config.get('experiment')
    stage = experiment if experiment in ('bbfcn', 'facecls', 'proposer') else 'am'
  source = epath.Path(workdir) / 'models' / stage
  if not (source / 'model.json').is_file():
    raise SystemExit(f'{source}: no model folder (has the run finished stage {stage!r}?)')
  size = paths.tree_size(source)
  if size > MAX_BYTES:
    raise SystemExit(f'{source} is {size / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB')
  stages = stages_lib.read_records(workdir)
  if not stages:
    raise SystemExit(f'{workdir}: no {stages_lib.STAGES_FILE} (has the run finished a stage?)')
  this_run = _chain_entry(command or _command(workdir), config, stages, training_seconds(stages))
  chain = [*_previous_chain(config.get('init_from', '')), this_run]
  paths.copy_tree(source, out)  # after reading the chain: `out` may be the run's init_from
  (epath.Path(out) / CHAIN_FILE).write_text(json.dumps(chain, indent=1), encoding='utf-8')
  card = render_card(
    epath.Path(out).name,
    command or _command(workdir),
    config,
    stages,
    hardware,
    stage,
    size,
    notes,
    chain,
  )
  path = epath.Path(out) / 'MODEL_CARD.md'
  path.write_text(card, encoding='utf-8')
  return str(path)


def main(argv: Sequence[str]) -> None:
  from absl import flags

  del argv
  f = flags.FLAGS
  print(publish(f.workdir, f.out, f.hardware, f.stage, f.command, f.notes))


def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string('workdir', None, 'workdir of a finished lmjax.main run')
  flags.DEFINE_string('out', None, 'destination, e.g. pretrained/mcl68')
  flags.DEFINE_string('hardware', None, 'what the run ran on')
  flags.DEFINE_string(
    'stage',
    None,
    'model folder to publish (default by experiment: am, bbfcn, facecls or proposer)',
  )
  flags.DEFINE_string('command', None, 'the training command (default: commands.txt)')
  flags.DEFINE_string('notes', '', 'free text appended to the card')
  flags.mark_flags_as_required(['workdir', 'out', 'hardware'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
