r"""The regression-FCN baseline of BB-FCN §IV-C, 5 points, on MTFL.

  python -m lmjax.main --config=configs/regfcn5.py --workdir=runs/regfcn5
Arguments: `runlocal`, `data=mtfl|synthetic` (as `configs/bbfcn5.py`).
"""

from lmjax import config_lib
from lmjax.bbfcn_config import bbfcn_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, data='mtfl')
  return bbfcn_config(5, arg.data, arg.runlocal, variant='regression')
