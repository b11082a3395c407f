"""Reshaping layers: Flatten, Reshape, ZeroPadding2D and UpSampling2D."""
from __future__ import annotations

import numpy as np

from .base import Layer, _pair

__all__ = ["Flatten", "Reshape", "ZeroPadding2D", "UpSampling2D"]


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


class Reshape(Layer):
    """Each sample reshaped to ``target_shape`` (one entry may be -1), as a view of the same
    memory. With data_format="channels_last" (fastconv.keras's Reshape) the shapes are Keras's:
    an image is reshaped in H, W, C order and a 3-D target is (H, W, C); the model still holds
    the result channels-first."""

    _base_name = "reshape"

    def __init__(self, target_shape, data_format=None, name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)
        try:
            target = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise TypeError(f"{self._owner}: target_shape must be a tuple of ints, got "
                            f"{target_shape!r}") from None
        if not target or sum(d == -1 for d in target) > 1 or any(d < 1 and d != -1 for d in target):
            raise ValueError(f"{self._owner}: target_shape must be positive sizes (one may be -1), "
                             f"got {target_shape!r}")
        self.target_shape = target

    def _hwc(self):
        return self.data_format == "channels_last"

    def _build(self, input_shape):
        size = int(np.prod(input_shape))
        target = list(self.target_shape)
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1]))
            if size % known:
                raise ValueError(f"{self._owner}: cannot reshape per-sample shape {input_shape} "
                                 f"({size} values) to {self.target_shape}")
            target[target.index(-1)] = size // known
        if int(np.prod(target)) != size:
            raise ValueError(f"{self._owner}: cannot reshape per-sample shape {input_shape} ({size} "
                             f"values) to {self.target_shape} ({int(np.prod(target))} values)")
        self._target = tuple(target)
        if self._hwc() and len(target) == 3:
            return (target[2], target[0], target[1])
        return self._target

    def forward(self, ctx, x):
        be = ctx.backend
        shape = tuple(x.shape)
        if self._hwc() and len(shape) == 4:
            x = be.to_channels_last(x)
        y = be.reshape(x, (shape[0],) + self._target)
        if self._hwc() and len(self._target) == 3:
            y = be.to_channels_first(y)
        return y, shape

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        be = ctx.backend
        if self._hwc() and len(self._target) == 3:
            dy = be.to_channels_last(dy)
        if self._hwc() and len(saved) == 4:
            n, c, h, w = saved
            return be.to_channels_first(be.reshape(dy, (n, h, w, c)))
        return be.reshape(dy, saved)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


class UpSampling2D(Layer):
    """Each image scaled up by integer factors ``size`` (sh, sw): "nearest" repeats pixels;
    "bilinear" interpolates, with PyTorch's align_corners rule (False, the default, is the
    half-pixel rule that Keras's bilinear UpSampling2D uses)."""

    _base_name = "up_sampling2d"

    def __init__(self, size=(2, 2), interpolation="nearest", align_corners=False, data_format=None,
                 name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)
        self.size = _pair(size, "size", self._owner)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"{self._owner}: interpolation must be 'nearest' or 'bilinear', got "
                             f"{interpolation!r}")
        self.interpolation = interpolation
        self._mode = 0 if interpolation == "nearest" else 1
        self.align_corners = bool(align_corners)

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        return (c, h * self.size[0], w * self.size[1])

    def forward(self, ctx, x):
        return ctx.backend.upsample2d(x, self.size, self._mode, self.align_corners), tuple(x.shape)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        return ctx.backend.upsample2d_backward(dy, saved, self.size, self._mode, self.align_corners)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size), interpolation=self.interpolation,
                      align_corners=self.align_corners)
        return config
