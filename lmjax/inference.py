"""Landmark prediction from a trained model folder (what notebooks and CLIs call).

    predictor = FacePredictor('pretrained/mcl68')
    points = predictor.predict(image, box)              # [K, 2] image pixels
    points = predictor.predict_batch(images, boxes)     # [N, K, 2]

A model folder holds `model.json` (architecture and input protocol) and `variables/` (orbax
params + batch_stats). Only the variables are restored, into an abstract tree built with
`jax.eval_shape`, so no optimizer state or training code is needed. Batches are padded to a
few fixed sizes, so the forward pass compiles once per size bucket. The predictor folds the
BatchNorm layers into the convolutions (`fold_batch_norm`): same outputs, about 10 % faster.
"""

from __future__ import annotations

from lmjax.mcl.predictor import FacePredictor
from lmjax.train import checkpoint


def load_predictor(directory: str, head: int = 0):
  """The predictor of a model folder: `FacePredictor` (MCL) or `BBFCNPredictor` (BB-FCN).

  Both have `schema`, `spec`, `crop`, `predict` and `predict_batch` with the same meaning.
  `head` selects an MCL shape-prediction head; BB-FCN models have none.
  """
  spec = checkpoint.read_model_spec(directory)
  if spec.get('experiment') == 'bbfcn':
    if head:
      raise ValueError(f'head {head}: {directory} is a BB-FCN model (no shape-prediction heads)')
    from lmjax.bbfcn.predictor import BBFCNPredictor

    return BBFCNPredictor(directory)
  return FacePredictor(directory, head=head)
