r"""Face / non-face classifier (FaceNet, 24 × 24) for re-scoring BB-FCN face proposals (§IV-F).

Trained on the data of `configs/bbfcn5.py` (MTFL by default):
  python -m lmjax.main --config=configs/facecls5.py --workdir=runs/facecls5 \
      --config.data.manual_dir=/path/to/mtfl
CPU run on the embedded synthetic faces:
  python -m lmjax.main --config=configs/facecls5.py:runlocal,data=synthetic \
      --workdir=runs/facecls_smoke
Arguments: `runlocal` (shrink everything for a 2-core CPU), `data=mtfl|300w|synthetic|cofw`.
The model lands in `<workdir>/models/facecls`; load it with
`lmjax.facecls.classifier.FaceClassifier.load`.
"""

import pathlib
import runpy
import types

facecls = types.SimpleNamespace(**runpy.run_path(str(pathlib.Path(__file__).parent / 'facecls.py')))


def get_config(arg=None):
  return facecls.get_config(arg)
