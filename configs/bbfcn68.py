r"""BB-FCN, 68 points, on 300-W LFPW+HELEN+AFW train (Liu et al.; SPEC §3).

Paper-scale run (GPU), backbone then branches in one run:
  python -m lmjax.main --config=configs/bbfcn68.py --workdir=runs/bbfcn68 \
      --config.data.manual_dir=/path/to/300w
CPU run on the embedded synthetic faces:
  python -m lmjax.main --config=configs/bbfcn68.py:runlocal,data=synthetic \
      --workdir=runs/bbfcn68_synth
Arguments: `runlocal` (shrink everything for a 2-core CPU), `data=300w|synthetic`,
`variant=bbfcn|backbone_only` (the ablation without branches), `weighting` (MCL's weighting
fine-tuning of the branches, eq. 5). The regression-FCN baseline is `configs/regfcn68.py`.
"""

import pathlib
import runpy
import types

bbfcn = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'bbfcn.py')))


def get_config(arg=None):
  arg = bbfcn.common.parse_arg(arg, runlocal=False, data='300w', variant='bbfcn', weighting=False)
  return bbfcn.bbfcn_config(68, arg.data, arg.runlocal, arg.variant, arg.weighting)
