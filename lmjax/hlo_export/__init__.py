"""Whole predictors (image + face box -> image-pixel landmarks) as StableHLO, via jax.export.

  * `crop`:      the MCL test-time face crop (`lmjax.core.image_ops.mcl_crop`) in jax ops, so
                 the crop runs inside the exported graph;
  * `stablehlo`: builds the predictor function of a model folder, exports it with a symbolic
                 batch, checks it against the folder's predictor and writes it with a sidecar;
  * `runner`:    `ExportedPredictor`, a deserialised export behind the predictors' image API
                 (what `python -m lmjax.evaluate --checkpoint=FILE.stablehlo` scores).

`python -m lmjax.export --format=stablehlo` writes the files (MCL and BB-FCN folders); the
file itself needs only jax.
"""
