r"""BB-FCN, 5 points, on MTFL (Liu et al.; SPEC §3).

Paper-scale run (GPU), backbone then branches in one run:
  python -m lmjax.main --config=configs/bbfcn5.py --workdir=runs/bbfcn5 \
      --config.data.manual_dir=/path/to/mtfl
CPU run on the embedded synthetic faces:
  python -m lmjax.main --config=configs/bbfcn5.py:runlocal,data=synthetic \
      --workdir=runs/bbfcn5_synth
Arguments: `runlocal` (shrink everything for a 2-core CPU), `data=mtfl|synthetic`,
`variant=bbfcn|backbone_only` (the ablation without branches), `weighting` (MCL's weighting
fine-tuning of the branches, eq. 5). The regression-FCN baseline is `configs/regfcn5.py`.
"""

import pathlib
import runpy
import types

bbfcn = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'bbfcn.py')))


def get_config(arg=None):
  arg = bbfcn.common.parse_arg(arg, runlocal=False, data='mtfl', variant='bbfcn', weighting=False)
  return bbfcn.bbfcn_config(5, arg.data, arg.runlocal, arg.variant, arg.weighting)
