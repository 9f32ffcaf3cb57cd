r"""The regression-FCN baseline of BB-FCN §IV-C, 5 points, on MTFL.

  python -m lmjax.main --config=configs/regfcn5.py --workdir=runs/regfcn5
Arguments: `runlocal`, `data=mtfl|synthetic` (as `configs/bbfcn5.py`).
"""

import pathlib
import runpy
import types

bbfcn = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'bbfcn.py')))


def get_config(arg=None):
  arg = bbfcn.common.parse_arg(arg, runlocal=False, data='mtfl')
  return bbfcn.bbfcn_config(5, arg.data, arg.runlocal, variant='regression')
