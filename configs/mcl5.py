r"""MCL, 5 points, on MTFL / AFLW-5 (Shao et al.; SPEC §2).

Paper-scale run (GPU):
  python -m lmjax.main --config=configs/mcl5.py --workdir=runs/mcl5 \
      --config.data.manual_dir=/path/to/mtfl
CPU run on the embedded synthetic faces:
  python -m lmjax.main --config=configs/mcl5.py:runlocal,data=synthetic --workdir=runs/mcl5_synth
Arguments: `runlocal` (shrink everything for a 2-core CPU), `recipe=paper|fast`
(configs/mcl.py), `data=mtfl|synthetic`.
"""

import pathlib
import runpy
import types

mcl = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'mcl.py')))


def get_config(arg=None):
  arg = mcl.common.parse_arg(arg, runlocal=False, data='mtfl', recipe='paper')
  return mcl.mcl_config(5, 512, arg.data, arg.runlocal, arg.recipe)
