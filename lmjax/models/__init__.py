"""Every Flax module of lmjax (MCL's VGG-style CNN, BB-FCN's backbone and branches, the
regression-FCN baseline, the face/non-face CNN) and the model registry: per family one
`model.json` spec -> module -> variables, so training, prediction, scanning and evaluation build
models one way. The only package that imports `flax.linen`; it imports nothing but `lmjax.core`.
"""
