r"""MCL, 19 points, on AFLW-19 (the paper's recipe on a dataset it did not use).

  python -m lmjax.main --config=configs/mcl19.py --workdir=runs/mcl19 \
      --config.data.manual_dir=/path/to/aflw
Arguments: `recipe=paper|fast` (configs/mcl.py), `runlocal` (shrink everything for a 2-core
CPU), `data=aflw19`. The five clusters of Algorithm 1 follow the 29-point COFW ones (each brow
with its eye, nose, mouth, chin: `lmjax.core.landmarks.AFLW19`); invisible points carry no
loss; the face box is the dataset's, so `rebox` is off.
"""

import pathlib
import runpy
import types

mcl = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'mcl.py')))


def get_config(arg=None):
  arg = mcl.common.parse_arg(arg, runlocal=False, data='aflw19', recipe='paper')
  return mcl.mcl_config(19, 512, arg.data, arg.runlocal, arg.recipe)
