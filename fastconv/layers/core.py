"""Core layers: Dense, Activation, Dropout, RandomTranslation."""
from __future__ import annotations

import numpy as np

from .. import initializers
from .base import Layer, _activation, _init_config

__all__ = ["Dense", "Activation", "Dropout", "RandomTranslation"]


class Dense(Layer):
    """Fully connected: y = act(x kernel^T + bias), x (N, in) -> (N, units).

    activation: None, "relu", "tanh", "sigmoid" (fused into the kernel) or "softmax" (applied
    after; with a cross-entropy loss the model trains on the logits before it). kernel is
    (units, in) as PyTorch's Linear.weight, bias (units,).
    """

    _param_names = ("kernel", "bias")
    _base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, None, trainable)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"{self._owner}: units must be a positive int, got {units!r}")
        self.units = int(units)
        spec = _activation(activation, self._owner)
        self.activation, self._alpha = spec.name, spec.alpha
        self._softmax = spec.softmax
        self._act = 0 if spec.softmax else spec.code
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def _build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self._owner}: expects (N, features) input but got per-sample shape "
                             f"{input_shape}; put a Flatten (or GlobalAvgPool2D) before it")
        fan_in = input_shape[0]
        self.kernel = self._new_weight(self.kernel_initializer, (self.units, fan_in), fan_in,
                                       self.units)
        self.bias = (self._new_weight(self.bias_initializer, (self.units,), fan_in, self.units)
                     if self.use_bias else None)
        return (self.units,)

    @property
    def final_activation(self):
        return self.activation if self.activation in ("softmax", "sigmoid") else None

    def forward(self, ctx, x):
        z, saved = self._linear(ctx, x, self._act)
        if not self._softmax:
            return z, saved
        y = ctx.backend.softmax(z)
        return y, (saved, y)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if self._softmax:
            saved, y = saved
            dy = ctx.backend.softmax_backward(dy, y)
        return self._linear_backward(ctx, saved, dy, need_dx, grads)

    def forward_logits(self, ctx, x):
        return self._linear(ctx, x, 0)

    def backward_logits(self, ctx, saved, dlogits, need_dx=True, grads=None):
        return self._linear_backward(ctx, saved, dlogits, need_dx, grads)

    def _linear(self, ctx, x, act):
        be = ctx.backend
        w = ctx.weights(self)
        b = w[1] if self.use_bias else None
        if act in (6, 7):  # GELU's backward needs its input: kept, the activation run apart
            z = be.linear(x, w[0], b, 0)
            return be.activation(z, act, self._alpha), (x, None, act, z)
        y = be.linear(x, w[0], b, act, self._alpha if act in (4, 5) else None)
        return y, (x, y, act, None)

    def _linear_backward(self, ctx, saved, dz, need_dx, grads):
        x, y, act, z = saved
        be = ctx.backend
        if act:
            dz = be.activation_backward(dz, y, act, self._alpha if act >= 4 else None, z)
        if grads is None:  # frozen: only dx = dz w
            return be.linear_backward_input(dz, ctx.weights(self)[0]) if need_dx else None
        dx = be.linear_backward_into(dz, x, ctx.weights(self)[0], grads[0],
                                     grads[1] if self.use_bias else None)
        return dx if need_dx else None

    def get_weights_keras(self):
        """[kernel (in, units), bias] as Keras stores them."""
        self._check_built("get_weights_keras")
        out = [np.ascontiguousarray(self.kernel.T)]
        return out + ([self.bias.copy()] if self.use_bias else [])

    def set_weights_keras(self, weights):
        """Set [kernel (in, units), bias] from Keras's layout."""
        weights = list(weights)
        if weights:
            weights[0] = np.asarray(weights[0], dtype=np.float32).T
        Layer.set_weights(self, weights)  # native layout: a Keras subclass overrides set_weights

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        config.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=_init_config(self.kernel_initializer),
                      bias_initializer=_init_config(self.bias_initializer))
        return config


class Activation(Layer):
    """An activation as a layer: Activation("relu"), "tanh", "sigmoid", "softmax" or None."""

    _base_name = "activation"

    def __init__(self, activation, name=None, input_shape=None, trainable=True, alpha=None):
        super().__init__(name, input_shape, None, trainable)
        spec = _activation(activation, self._owner, alpha)
        self.activation, self._alpha = spec.name, spec.alpha
        self._softmax = spec.softmax
        self._act = spec.code

    @property
    def final_activation(self):
        return self.activation if self.activation in ("softmax", "sigmoid") else None

    def forward(self, ctx, x):
        be = ctx.backend
        if self._softmax:
            shape = tuple(x.shape)
            y = be.reshape(be.softmax(be.reshape(x, (-1, shape[-1]))), shape)
        elif self._act:
            y = be.activation(x, self._act, self._alpha)
            return y, (y, x if self._act in (6, 7) else None)
        else:
            y = x
        return y, (y, None)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        be = ctx.backend
        y, x = saved
        if self._softmax:
            shape = tuple(dy.shape)
            flat = lambda a: be.reshape(a, (-1, shape[-1]))  # noqa: E731
            return be.reshape(be.softmax_backward(flat(dy), flat(y)), shape)
        if self._act:
            return be.activation_backward(dy, y, self._act, self._alpha, x)
        return dy

    def forward_logits(self, ctx, x):
        return x, None

    def backward_logits(self, ctx, saved, dlogits, need_dx=True, grads=None):
        return dlogits if need_dx else None

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        if type(self) is Activation:
            config["activation"] = self.activation
            if self._alpha is not None and self._alpha != _activation(self.activation, "").alpha:
                config["alpha"] = self._alpha
        return config


class _SeededLayer(Layer):
    """A layer that draws random numbers in training: from the model's seeded generator, or
    from its own when given ``seed``."""

    def build(self, input_shape, rng=None):
        if self.seed is not None:
            rng = np.random.default_rng(self.seed)
        return super().build(input_shape, rng)


class Dropout(_SeededLayer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and scale the
    rest by 1 / (1 - rate); in inference, the identity. The masks come from a counter-based
    generator (the same on the CPU and the GPU); on the CPU each call takes its seed from the
    model's seeded generator (or ``seed``), so a seeded run is repeatable."""

    _base_name = "dropout"

    def __init__(self, rate, seed=None, name=None, input_shape=None, trainable=True):
        super().__init__(name, input_shape, None, trainable)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{self._owner}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed

    def forward(self, ctx, x):
        if not ctx.training or self.rate == 0.0:
            return x, None
        if ctx.backend.name == "cpu":
            return ctx.backend.dropout(x, self.rate, self._rng)
        return ctx.backend.dropout(x, self.rate, ctx.seeds[id(self)], ctx.counters)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        return dy if saved is None else ctx.backend.multiply(dy, saved)

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        config.update(rate=self.rate, seed=self.seed)
        return config


class RandomTranslation(_SeededLayer):
    """Data augmentation: in training, shift each image by a random whole number of pixels, up to
    ``round(height_factor * H)`` rows and ``round(width_factor * W)`` columns either way (uniform
    and independent per image and axis), the uncovered border filled with ``fill_value``; in
    inference (evaluate, predict), the identity. Put it first in a model to train on shifted
    digits: RandomTranslation(2 / 28) moves MNIST digits by up to 2 pixels.

    Keras's RandomTranslation shifts by fractions of a pixel with interpolation and reflects at
    the border by default; this one shifts by whole pixels and fills with a constant. Draws from
    the model's seeded generator (or ``seed``), so a seeded run is repeatable. Its backward
    shifts the gradient back (the filled border gets none). No CUDA implementation yet: a model
    with it trains on device="cpu".
    """

    _base_name = "random_translation"

    def __init__(self, height_factor, width_factor=None, fill_value=0.0, seed=None, name=None,
                 input_shape=None, data_format=None, trainable=True):
        super().__init__(name, input_shape, data_format, trainable)
        width_factor = height_factor if width_factor is None else width_factor
        for what, factor in (("height_factor", height_factor), ("width_factor", width_factor)):
            if not isinstance(factor, (int, float, np.integer, np.floating)) or not 0.0 <= factor < 1.0:
                raise ValueError(f"{self._owner}: {what} must be a number in [0, 1), got {factor!r}")
        self.height_factor = float(height_factor)
        self.width_factor = float(width_factor)
        self.fill_value = float(fill_value)
        self.seed = seed
        self._max_shift = (0, 0)

    def _build(self, input_shape):
        self._require_image(input_shape)
        _, h, w = input_shape
        self._max_shift = (int(round(self.height_factor * h)), int(round(self.width_factor * w)))
        return tuple(input_shape)

    @staticmethod
    def _regions(sy, sx, h, w):
        """(rows, cols) slices of the source and of the destination for a shift by (sy, sx)."""
        src = (slice(max(-sy, 0), h - max(sy, 0)), slice(max(-sx, 0), w - max(sx, 0)))
        dst = (slice(max(sy, 0), h - max(-sy, 0)), slice(max(sx, 0), w - max(-sx, 0)))
        return src, dst

    def forward(self, ctx, x):
        mh, mw = self._max_shift
        if not ctx.training or (mh == 0 and mw == 0):
            return x, None
        if ctx.backend.name != "cpu":
            raise NotImplementedError(f"{self._owner}: no CUDA implementation; train on device='cpu'")
        n, _, h, w = x.shape
        shifts = np.stack([self._rng.integers(-mh, mh + 1, n), self._rng.integers(-mw, mw + 1, n)], 1)
        y = np.full(x.shape, self.fill_value, dtype=np.float32)
        for i, (sy, sx) in enumerate(shifts.tolist()):
            (sr, sc), (dr, dc) = self._regions(sy, sx, h, w)
            y[i, :, dr, dc] = x[i, :, sr, sc]
        return y, shifts

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        if not need_dx:
            return None
        if saved is None:
            return dy
        n, _, h, w = dy.shape
        dx = np.zeros(dy.shape, dtype=np.float32)
        for i, (sy, sx) in enumerate(saved.tolist()):
            (sr, sc), (dr, dc) = self._regions(sy, sx, h, w)
            dx[i, :, sr, sc] = dy[i, :, dr, dc]
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor,
                      fill_value=self.fill_value, seed=self.seed)
        return config
