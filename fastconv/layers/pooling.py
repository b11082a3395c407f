"""Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D (x (N, C, H, W) -> (N, C, P, Q)).

MaxPool2D trains on the CPU with max pooling's training pair: the forward also keeps where each
maximum lies (one byte an output), so the backward places dy from those bytes instead of reading
x again. In inference, and on the GPU, the forward keeps x.
"""
from __future__ import annotations

from ..functional import resolve_padding
from .base import Layer, _check_padding, _out_size, _pair

__all__ = ["MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "MaxPooling2D", "AveragePooling2D",
           "GlobalAveragePooling2D"]


class _Pool2D(Layer):
    """Shared parts of MaxPool2D and AvgPool2D."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None,
                 input_shape=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)
        self.pool_size = _pair(pool_size, "pool_size", self._owner)
        self.strides = None if strides is None else _pair(strides, "strides", self._owner)
        self.padding = _check_padding(padding, self._owner)

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        kh, kw = self.pool_size
        self._kernel = self.pool_size
        self._stride = self.strides if self.strides is not None else self.pool_size
        self._pad = tuple(int(p) for p in resolve_padding(self.padding, (h, w), self.pool_size,
                                                          self._stride, (1, 1)))
        t, l, b, r = self._pad
        if max(t, b) > kh // 2 or max(l, r) > kw // 2:
            raise ValueError(f"{self._owner}: padding {self.padding!r} is more than half the "
                             f"{kh}x{kw} window")
        out_h = _out_size(h, kh, self._stride[0], t, b)
        out_w = _out_size(w, kw, self._stride[1], l, r)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{self._owner}: a {kh}x{kw} window does not fit the {h}x{w} input "
                             f"(per-sample shape {input_shape})")
        return (c, out_h, out_w)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size),
                      strides=None if self.strides is None else list(self.strides),
                      padding=list(self.padding) if isinstance(self.padding, tuple) else self.padding)
        return config


class MaxPool2D(_Pool2D):
    """Max pooling: the largest value of each pool_size window (padded cells are never picked).

    strides defaults to pool_size; padding "valid", "same", an int or an (h, w) pair.
    """

    _base_name = "max_pooling2d"

    def forward(self, ctx, x):
        be = ctx.backend
        if ctx.training and be.has_pool_indices and self._kernel[0] * self._kernel[1] <= 255:
            y, idx = be.max_pool2d_with_indices(x, self._kernel, self._stride, self._pad)
            return y, (None, idx, x.shape)
        return be.max_pool2d(x, self._kernel, self._stride, self._pad), (x, None, x.shape)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        x, idx, x_shape = saved
        be = ctx.backend
        if idx is not None:
            return be.max_pool2d_backward_indices(dy, idx, x_shape, self._kernel, self._stride,
                                                  self._pad)
        return be.max_pool2d_backward(dy, x, self._kernel, self._stride, self._pad)


class AvgPool2D(_Pool2D):
    """Average pooling over pool_size windows.

    count_include_pad: None (default) divides by the real cells only for "same" padding (as
    Keras does) and by the whole window for numeric padding (as PyTorch does); True/False force it.
    """

    _base_name = "average_pooling2d"

    def __init__(self, pool_size=2, strides=None, padding="valid", count_include_pad=None,
                 data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(pool_size, strides, padding, data_format, name, input_shape, trainable)
        if count_include_pad is None:
            count_include_pad = not isinstance(self.padding, str)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, ctx, x):
        y = ctx.backend.avg_pool2d(x, self._kernel, self._stride, self._pad, self.count_include_pad)
        return y, x.shape

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        return ctx.backend.avg_pool2d_backward(dy, saved, self._kernel, self._stride, self._pad,
                                               self.count_include_pad)

    def get_config(self):
        config = super().get_config()
        config["count_include_pad"] = self.count_include_pad
        return config


class GlobalAvgPool2D(Layer):
    """The mean of each channel: (N, C, H, W) -> (N, C)."""

    _base_name = "global_average_pooling2d"

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        self._kernel = (h, w)
        return (c,)

    def forward(self, ctx, x):
        n, c = x.shape[0], x.shape[1]
        y = ctx.backend.avg_pool2d(x, self._kernel, self._kernel, (0, 0, 0, 0), True)
        return ctx.backend.reshape(y, (n, c)), x.shape

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        be = ctx.backend
        dy = be.reshape(dy, (dy.shape[0], dy.shape[1], 1, 1))
        return be.avg_pool2d_backward(dy, saved, self._kernel, self._kernel, (0, 0, 0, 0), True)


# Keras's longer names.
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D
