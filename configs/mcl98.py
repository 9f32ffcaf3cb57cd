r"""MCL, 98 points, on WFLW (the paper's recipe on a dataset it did not use).

  python -m lmjax.main --config=configs/mcl98.py --workdir=runs/mcl98 \
      --config.data.manual_dir=/path/to/wflw
Arguments: `recipe=paper|fast` (configs/mcl.py), `runlocal` (shrink everything for a 2-core
CPU), `data=wflw`. The seven clusters of Algorithm 1 are the 68-point ones carried over to the
98-point markup (`lmjax.core.landmarks.WFLW98`); the face box is WFLW's rectangle, so `rebox`
is off (as for MTFL and COFW).
"""

import pathlib
import runpy
import types

mcl = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'mcl.py')))


def get_config(arg=None):
  arg = mcl.common.parse_arg(arg, runlocal=False, data='wflw', recipe='paper')
  return mcl.mcl_config(98, 1024, arg.data, arg.runlocal, arg.recipe)
