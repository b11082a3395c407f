"""Merge layers: Add and Concatenate, each taking a list of inputs.

    x = Conv2D(16, 3, padding="same", activation="relu")(inputs)
    y = Add()([x, Conv2D(16, 3, padding="same")(x)])          # a residual connection
    z = Concatenate()([x, y])                                   # 32 channels (axis 1, NCHW)
"""
from __future__ import annotations

from .base import Layer

__all__ = ["Add", "Concatenate"]


class Add(Layer):
    """The elementwise sum of two or more inputs of the same shape. Its backward hands dy to
    every input unchanged."""

    _base_name = "add"
    _multi_input = True

    def _build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self._owner}: needs at least 2 inputs, got {len(input_shape)}")
        first = tuple(input_shape[0])
        for i, shape in enumerate(input_shape[1:], 1):
            if tuple(shape) != first:
                raise ValueError(f"{self._owner}: input {i} has per-sample shape {tuple(shape)} but "
                                 f"input 0 has {first}; Add needs equal shapes")
        return first

    def forward(self, ctx, xs):
        be = ctx.backend
        y = be.add(xs[0], xs[1])
        for x in xs[2:]:
            be.add_(y, x)
        return y, len(xs)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        return [dy] * saved


class Concatenate(Layer):
    """Inputs joined along ``axis``: 1 (default: the channels of NCHW images, or the features
    of (N, F) vectors), or any other axis but the batch's; negative axes count from the end.
    The other dimensions must agree. (Keras's default, -1, is the channel axis of its
    channels-last images; fastconv.keras maps it.)"""

    _base_name = "concatenate"
    _multi_input = True

    def __init__(self, axis=1, name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, None, trainable)
        self.axis = int(axis)

    def _build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self._owner}: needs at least 2 inputs, got {len(input_shape)}")
        ndim = len(input_shape[0]) + 1
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(f"{self._owner}: axis {self.axis} is out of range for inputs of "
                             f"{ndim} dimensions (the batch axis 0 cannot be joined)")
        self._axis = axis
        first = list(input_shape[0])
        total = 0
        for i, shape in enumerate(input_shape):
            shape = list(shape)
            if len(shape) != len(first) or any(a != b for j, (a, b) in enumerate(zip(shape, first))
                                               if j != axis - 1):
                raise ValueError(f"{self._owner}: input {i} has per-sample shape {tuple(shape)}, "
                                 f"which does not match {tuple(first)} outside axis {self.axis}")
            total += shape[axis - 1]
        out = list(first)
        out[axis - 1] = total
        self._sizes = [int(s[axis - 1]) for s in input_shape]
        return tuple(out)

    def forward(self, ctx, xs):
        return ctx.backend.concat(xs, self._axis), None

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        be = ctx.backend
        out, start = [], 0
        for size in self._sizes:
            if self._axis == 1:
                out.append(be.channel_slice(dy, start, start + size))
            else:
                index = [slice(None)] * len(dy.shape)
                index[self._axis] = slice(start, start + size)
                out.append(be.to_host(dy)[tuple(index)].copy())
            start += size
        return out

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        config["axis"] = self.axis
        return config
