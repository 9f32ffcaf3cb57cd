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

from lmjax import config_lib
from lmjax.facecls_config import facecls_config


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, data='mtfl')
  return facecls_config(arg.data, arg.runlocal)
