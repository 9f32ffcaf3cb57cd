"""Training speed of every train step, side by side with the forward pass of the same model.

For each model and stage, the jitted step the trainer runs (`make_update_fn` of
`lmjax.mcl.train`, `lmjax.bbfcn.train`, `lmjax.facecls.train`) is driven the way
`lmjax.train.loop.run_stage` drives it: batch indices drawn on the host
(`batching.train_indices`), sharded onto the mesh, then one step that gathers the examples from
the device-resident cache, augments them on device, and updates the state. Only the cache
contents are random (uint8 face regions with plausible boxes and landmarks): the speed does
not depend on them. Next to it, the forward pass of the same model (inference mode, as the
evaluators run it, BatchNorm kept) at the same batch on ready inputs, on the same devices.

  train img/s    examples per second through the whole step (for BB-FCN: positives +
                 negatives; for facecls: the full window batch)
  forward img/s  the same model's forward at that batch
  ratio          train / forward. A forward + backward costs ~3× the forward's FLOPs, so
                 ~1/3 is the practical ceiling.

Settings (each in its own process, `_settings.py`): `cpu_1thread` (one device on one pinned
core), `cpu_all` (the trainers' default: one CPU device using every core), `cpu_split` (the
opt-in `--config.cpu_devices=0`: one CPU device per core with the batch split over them,
`batching.cpu_device_count`; experimental, see there), `gpu` (when there is one). The baseline
has no `cpu_split` (its code could not split the batch on a CPU).

Each child of the current code applies the XLA:CPU settings `lmjax.main` applies before JAX
starts (`lmjax.train.xla_cpu.prefer_eigen_convolutions`), so the forward column is the forward
under the trainer's settings; the baseline runs XLA's defaults, as it did.

`--baseline=COMMIT` (default a584d7c, the commit before the speed work) also measures MCL68
pre-training as that commit's code runs it (its own module names, its default single CPU
device), unpacked from git into a temporary folder, in the same run: the speed-ups are
`mcl68_train_speedup_vs_baseline_cpu_all` and `..._cpu_split`. The current code's children and
the baseline's run in turn, `--rounds` times (default 3): every number printed is the median
over the rounds, and a speed-up is the median of the per-round ratios (on the shared 2-core
machines a run's speed drifts by 10-20 % within minutes, so one back-to-back pair read 1.30x
and the next 1.56x). Run:

  python benchmarks/train_speed.py [--settings cpu_1thread,cpu_all,cpu_split] [--seconds 6]
      [--rounds 3]

The last line printed is one JSON object (keys `<row>_train_img_per_s_<setting>`,
`<row>_forward_img_per_s_<setting>`, `<row>_train_to_forward_ratio_<setting>`, and for MCL68 on
all cores `mcl68_train_img_per_s_cpu_all`, `mcl68_train_to_forward_ratio`).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import _train_rows as train_rows
from _settings import pin_to_one_core, run_children

SETTINGS = ('cpu_1thread', 'cpu_all', 'cpu_split', 'gpu')


ROWS = {  # row -> (what it trains, batch)
  'mcl68': 'MCL68 pre-training (bm), batch 64',
  'mcl68_bf16': 'MCL68 pre-training (bm), batch 64, bfloat16 compute (float32 parameters)',
  'mcl68_mc': 'MCL68 multi-center stage (trunk frozen), batch 64',
  'mcl5': 'MCL5 pre-training (bm), batch 64',
  'bbfcn5_backbone': 'BB-FCN5 backbone, batch 40 (20 positives)',
  'bbfcn5_branches': 'BB-FCN5 branches, batch 40 (32 positives)',
  'bbfcn68_backbone': 'BB-FCN68 backbone, batch 40 (20 positives)',
  'bbfcn68_branches': 'BB-FCN68 branches, batch 40 (32 positives)',
  'facecls': 'face classifier, batch 128 windows',
}


def child(setting: str, rows: list[str], seconds: float, code_dir: str) -> dict:
  """Measures `rows` in this process; `code_dir` set = the baseline tree's MCL68 row only."""
  pin_to_one_core(setting)
  baseline = bool(code_dir)
  if baseline:
    sys.path.insert(0, code_dir)
  else:  # as `lmjax.main` does before JAX starts (the baseline ran XLA's defaults)
    from lmjax.train import xla_cpu

    xla_cpu.prefer_eigen_convolutions()
  import jax

  if setting == 'cpu_split' and not baseline:  # --config.cpu_devices=0
    from lmjax.data import batching

    batching.use_cpu_devices(batching.cpu_device_count(0, [64, 40, 20, 32, 128, 48]))
  if setting == 'gpu' and jax.default_backend() != 'gpu':
    return {}
  import numpy as np
  from jax.sharding import Mesh

  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  configs_dir = pathlib.Path(code_dir or train_rows.REPO) / 'configs'
  out = {'devices': len(jax.devices())}
  for row in rows:
    if baseline or row.startswith('mcl'):
      points, stage = (68, 'mc') if row == 'mcl68_mc' else (int(row[3:].split('_')[0]), 'bm')
      code = train_rows.Code(baseline)
      dtype = 'bfloat16' if row.endswith('_bf16') else 'float32'
      train, forward = train_rows.mcl_row(code, points, stage, configs_dir, mesh, seconds, dtype)
    elif row.startswith('bbfcn'):
      name, stage = row.split('_')
      train, forward = train_rows.bbfcn_row(int(name[5:]), stage, configs_dir, mesh, seconds)
    else:
      train, forward = train_rows.facecls_row(configs_dir, mesh, seconds)
    out[row] = {'train': train, 'forward': forward}
  return out


def _baseline_tree(commit: str, folder: str) -> str:
  """Unpacks `commit` of this repository into `folder` (git archive); returns the folder."""
  archive = subprocess.run(
    ['git', '-C', str(train_rows.REPO), 'archive', commit], capture_output=True, check=True
  ).stdout
  subprocess.run(['tar', '-x', '-C', folder], input=archive, check=True)
  return folder


def _median_rounds(rounds: list[dict]) -> dict:
  """{setting: {row: {train, forward}, devices}}: each number the median over `rounds`."""
  merged = {}
  for setting in dict.fromkeys(k for r in rounds for k in r):
    outs = [r[setting] for r in rounds if setting in r]
    merged[setting] = {'devices': outs[0]['devices']}
    for row in (k for k in outs[0] if k != 'devices'):
      values = [o[row] for o in outs if row in o]
      columns = ('train', 'forward')
      merged[setting][row] = {c: statistics.median(v[c] for v in values) for c in columns}
  return merged


def _paired_speedups(rounds: list[dict], baseline_rounds: list[dict], setting: str) -> list[float]:
  """Per round: MCL68 train img/s in `setting` over the baseline's on all cores that round."""
  ratios = []
  for new, old in zip(rounds, baseline_rounds, strict=False):  # the baseline may be off
    if 'mcl68' in new.get(setting, {}) and 'mcl68' in old.get('cpu_all', {}):
      ratios.append(new[setting]['mcl68']['train'] / old['cpu_all']['mcl68']['train'])
  return ratios


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--settings', default=','.join(SETTINGS))
  parser.add_argument('--rows', default=','.join(ROWS), help=f'subset of {",".join(ROWS)}')
  parser.add_argument('--seconds', type=float, default=6.0, help='timing budget per number')
  parser.add_argument('--baseline', default='a584d7c', help="commit to compare; '' = none")
  parser.add_argument(
    '--rounds', type=int, default=3, help='rounds of (current, baseline) in turn; medians'
  )
  parser.add_argument('--child', default='')
  parser.add_argument('--code_dir', default='')
  args = parser.parse_args()
  rows = [r for r in args.rows.split(',') if r]
  if args.child:
    print(json.dumps(child(args.child, rows, args.seconds, args.code_dir)))
    return
  script = os.path.abspath(__file__)
  common = ['--seconds', str(args.seconds)]
  cpu = ','.join(s for s in args.settings.split(',') if s in ('cpu_1thread', 'cpu_all'))
  rounds, baseline_rounds = [], []
  with tempfile.TemporaryDirectory() as folder:
    tree = _baseline_tree(args.baseline, folder) if args.baseline else ''
    for r in range(args.rounds):  # current, then baseline, in turn: drift hits both alike
      print(f'round {r + 1}/{args.rounds}', file=sys.stderr, flush=True)
      rounds.append(run_children(script, args.settings, ['--rows', ','.join(rows), *common]))
      if tree:
        baseline_rounds.append(
          run_children(script, cpu, ['--rows', 'mcl68', '--code_dir', tree, *common])
        )
  results, baseline = _median_rounds(rounds), _median_rounds(baseline_rounds)
  summary = {}
  header = f'{"row":<18}{"setting":<13}{"devices":>8}{"train img/s":>13}{"forward img/s":>15}'
  print(header + f'{"ratio":>8}  what')
  print('-' * (len(header) + 40))
  for tag, table in (('', results), (f'{args.baseline}:', baseline)):
    for setting, out in table.items():
      for row in rows if not tag else ['mcl68']:
        if row not in out:
          continue
        train, forward = out[row]['train'], out[row]['forward']
        name = f'{tag}{row}'
        print(
          f'{name:<18}{setting:<13}{out["devices"]:>8}{train:>13.1f}{forward:>15.1f}'
          f'{train / forward:>8.3f}  {ROWS[row]}'
        )
        key = f'{row}_baseline_{args.baseline}' if tag else row
        summary[f'{key}_train_img_per_s_{setting}'] = round(train, 2)
        summary[f'{key}_forward_img_per_s_{setting}'] = round(forward, 2)
        summary[f'{key}_train_to_forward_ratio_{setting}'] = round(train / forward, 4)
  if 'mcl68_train_img_per_s_cpu_all' in summary:
    summary['mcl68_train_to_forward_ratio'] = summary['mcl68_train_to_forward_ratio_cpu_all']
  for setting in ('cpu_all', 'cpu_split'):
    ratios = _paired_speedups(rounds, baseline_rounds, setting)
    if ratios:
      speedup = statistics.median(ratios)
      summary[f'mcl68_train_speedup_vs_baseline_{setting}'] = round(speedup, 3)
      each = ', '.join(f'{r:.2f}' for r in ratios)
      print(
        f'MCL68 pre-training, {setting}: {speedup:.2f}x the images/s of {args.baseline} '
        f'(median of {len(ratios)} paired rounds: {each})'
      )
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
