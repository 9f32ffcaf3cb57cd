r"""The regression-FCN baseline of BB-FCN §IV-C, 68 points, on 300-W LFPW+HELEN+AFW train.

  python -m lmjax.main --config=configs/regfcn68.py --workdir=runs/regfcn68
Arguments: `runlocal`, `data=300w|synthetic` (as `configs/bbfcn68.py`).
"""

import pathlib
import runpy
import types

bbfcn = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'bbfcn.py')))


def get_config(arg=None):
  arg = bbfcn.common.parse_arg(arg, runlocal=False, data='300w')
  return bbfcn.bbfcn_config(68, arg.data, arg.runlocal, variant='regression')
