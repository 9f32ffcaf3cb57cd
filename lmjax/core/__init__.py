"""Shared building blocks with no knowledge of any paper: landmark schemas, geometry (affines,
the one rotation affine, boxes and the one IoU), host image operations (files, pixels, warps,
face regions, JPEG), the one on-device sampler and the anti-aliased window crops built on it
(mipmap), augmentation, heatmaps, the one NMS rule and the losses. Everything here is a pure
function of arrays (numpy or jax) and imports no other lmjax package.
"""
