r"""Face-window proposer (ProposalNet, 12 × 12) for the cascade scanner (`lmjax.scan.cascade`).

Trained on the data of `configs/bbfcn5.py` and `configs/facecls5.py` (MTFL by default):
  python -m lmjax.main --config=configs/proposer5.py --workdir=runs/proposer5 \
      --config.data.manual_dir=/path/to/mtfl
CPU run on the embedded synthetic faces:
  python -m lmjax.main --config=configs/proposer5.py:runlocal,data=synthetic \
      --workdir=runs/proposer_smoke
Arguments: `runlocal` (shrink everything for a 2-core CPU), `data=mtfl|300w|synthetic|cofw`.
The model lands in `<workdir>/models/proposer` (model.json + variables/; family `proposer` of
`lmjax.models.registry`, loaded by `lmjax.train.checkpoint.load_model`).
"""

import pathlib
import runpy
import types

proposer = types.SimpleNamespace(
  **runpy.run_path(str(pathlib.Path(__file__).parent / 'proposer.py'))
)


def get_config(arg=None):
  return proposer.get_config(arg)
