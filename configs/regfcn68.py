r"""The regression-FCN baseline of BB-FCN §IV-C, 68 points, on 300-W LFPW+HELEN+AFW train.

  python -m lmjax.main --config=configs/regfcn68.py --workdir=runs/regfcn68
Arguments: `runlocal`, `data=300w|synthetic` (as `configs/bbfcn68.py`).
"""

from lmjax import config_lib
from lmjax.bbfcn_config import bbfcn_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, data='300w')
  return bbfcn_config(68, arg.data, arg.runlocal, variant='regression')
