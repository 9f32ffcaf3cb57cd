r"""BB-FCN, 98 points, on WFLW (the 68-point settings on a dataset the paper did not use).

  python -m lmjax.main --config=configs/bbfcn98.py --workdir=runs/bbfcn98 \
      --config.data.manual_dir=/path/to/wflw
Arguments: `runlocal` (shrink everything for a 2-core CPU), `data=wflw`,
`variant=bbfcn|backbone_only` (the ablation without branches), `weighting` (MCL's weighting
fine-tuning of the branches, eq. 5). Like the 68-point model it uses the dense settings
(64-pixel backbone input, 128-pixel branch image) of `configs/bbfcn.py`.
"""

import pathlib
import runpy
import types

bbfcn = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'bbfcn.py')))


def get_config(arg=None):
  arg = bbfcn.common.parse_arg(arg, runlocal=False, data='wflw', variant='bbfcn', weighting=False)
  return bbfcn.bbfcn_config(98, arg.data, arg.runlocal, arg.variant, arg.weighting)
