"""Every Flax module of lmjax (MCL's VGG-style CNN, BB-FCN's backbone and branches, the
regression-FCN baseline, the face/non-face CNN), the model registry (`registry`: the
`model.json` schema and per family one spec -> module -> variables, so training, prediction,
scanning and evaluation build models one way) and the face-crop predictor interface
(`interface.CropPredictor`). The only package that imports `flax.linen`; it imports nothing but
`lmjax.core`.
"""
