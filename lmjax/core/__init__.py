"""Shared building blocks with no knowledge of any paper: landmark schemas, geometry (affines,
boxes, IoU), host image operations and the on-device sampler, augmentation, heatmaps, NMS and
the losses. Everything here is a pure function of arrays (numpy or jax) and imports no other
lmjax package.
"""
