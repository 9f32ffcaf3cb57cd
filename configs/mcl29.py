r"""MCL, 29 points, on COFW (Shao et al.; SPEC §2).

  python -m lmjax.main --config=configs/mcl29.py --workdir=runs/mcl29 \
      --config.data.manual_dir=/path/to/cofw
Arguments: `recipe=paper|fast` (configs/mcl.py), `runlocal` (shrink everything for a
2-core CPU), `data=cofw`.
"""

import pathlib
import runpy
import types

mcl = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'mcl.py')))


def get_config(arg=None):
  arg = mcl.common.parse_arg(arg, runlocal=False, data='cofw', recipe='paper')
  return mcl.mcl_config(29, 512, arg.data, arg.runlocal, arg.recipe)
