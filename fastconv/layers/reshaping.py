"""Reshaping layers: Flatten and ZeroPadding2D."""
from __future__ import annotations

import numpy as np

from .base import Layer

__all__ = ["Flatten", "ZeroPadding2D"]


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C, H, W order (so Keras Dense weights after it need
    permuting: see fastconv.models.from_keras_weights). With data_format="channels_last" (what
    fastconv.keras's Flatten uses) the order is H, W, C, as Keras flattens NHWC images."""

    _base_name = "flatten"

    def __init__(self, data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)

    def _build(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _hwc(self, x):
        return self.data_format == "channels_last" and len(x.shape) == 4

    def forward(self, ctx, x):
        shape = tuple(x.shape)
        if self._hwc(x):
            x = ctx.backend.to_channels_last(x)
        return ctx.backend.reshape(x, (shape[0], -1)), shape

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        be = ctx.backend
        if len(saved) == 4 and self.data_format == "channels_last":
            n, c, h, w = saved
            return be.to_channels_first(be.reshape(dy, (n, h, w, c)))
        return be.reshape(dy, saved)


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image.

    padding: an int (all sides), an (h, w) pair (top = bottom = h, left = right = w), or
    ((top, bottom), (left, right)) as Keras writes it. Directly before a Conv2D (its only
    consumer), a model runs the pair as one convolution with the padding summed.
    """

    _base_name = "zero_padding2d"

    def __init__(self, padding=1, data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)
        try:
            if isinstance(padding, (int, np.integer)):
                pads = (int(padding),) * 4
            elif all(isinstance(p, (int, np.integer)) for p in padding):
                ph, pw = (int(p) for p in padding)
                pads = (ph, ph, pw, pw)
            else:
                (t, b), (l, r) = padding
                pads = (int(t), int(b), int(l), int(r))
        except (TypeError, ValueError):
            raise ValueError(f"{self._owner}: padding must be an int, (h, w) or ((top, bottom), "
                             f"(left, right)), got {padding!r}") from None
        if min(pads) < 0:
            raise ValueError(f"{self._owner}: padding must be non-negative, got {padding!r}")
        self.pads = pads  # top, bottom, left, right

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        t, b, l, r = self.pads
        return (c, h + t + b, w + l + r)

    def forward(self, ctx, x):
        return ctx.backend.pad2d(x, *self.pads), None

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        return ctx.backend.crop2d(dy, *self.pads) if need_dx else None

    def get_config(self):
        config = super().get_config()
        t, b, l, r = self.pads
        config["padding"] = [[t, b], [l, r]]
        return config
