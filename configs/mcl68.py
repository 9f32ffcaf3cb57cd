r"""MCL, 68 points, on 300-W (Shao et al.; SPEC §2).

Paper-scale run (GPU):
  python -m lmjax.main --config=configs/mcl68.py --workdir=runs/mcl68 \
      --config.data.manual_dir=/path/to/300w
CPU quickstart on the embedded synthetic faces (no download, a few minutes on 2 cores):
  python -m lmjax.main --config=configs/mcl68.py:runlocal,data=synthetic --workdir=runs/quickstart
Arguments: `runlocal` (shrink everything for a 2-core CPU), `recipe=paper|fast`
(configs/mcl.py), `data=300w|synthetic`.
"""

import pathlib
import runpy
import types

mcl = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'mcl.py')))


def get_config(arg=None):
  arg = mcl.common.parse_arg(arg, runlocal=False, data='300w', recipe='paper')
  return mcl.mcl_config(68, 1024, arg.data, arg.runlocal, arg.recipe)
