"""Activation layers: ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, ELU, GELU (each an Activation
of that name, with its parameter)."""
from __future__ import annotations

from .core import Activation

__all__ = ["ReLU", "Tanh", "Sigmoid", "Softmax", "LeakyReLU", "ELU", "GELU"]


class ReLU(Activation):
    """max(x, 0)."""

    _base_name = "re_lu"

    def __init__(self, name=None, input_shape=None, trainable=True):
        super().__init__("relu", name, input_shape, trainable)


class Tanh(Activation):
    """tanh(x)."""

    _base_name = "tanh"

    def __init__(self, name=None, input_shape=None, trainable=True):
        super().__init__("tanh", name, input_shape, trainable)


class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    _base_name = "sigmoid"

    def __init__(self, name=None, input_shape=None, trainable=True):
        super().__init__("sigmoid", name, input_shape, trainable)


class Softmax(Activation):
    """Softmax over the last axis. Before a cross-entropy loss the model trains on its input
    (the logits) with the fused softmax_cross_entropy, which is exact and stable."""

    _base_name = "softmax"

    def __init__(self, name=None, input_shape=None, trainable=True):
        super().__init__("softmax", name, input_shape, trainable)


class LeakyReLU(Activation):
    """x where x > 0, negative_slope * x elsewhere (Keras's default slope 0.3; ``alpha`` is
    Keras 2's name for it)."""

    _base_name = "leaky_re_lu"

    def __init__(self, negative_slope=0.3, name=None, input_shape=None, trainable=True, alpha=None):
        slope = negative_slope if alpha is None else alpha
        super().__init__("leaky_relu", name, input_shape, trainable, alpha=slope)

    @property
    def negative_slope(self):
        """The slope below zero."""
        return self._alpha

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self._alpha
        return config


class ELU(Activation):
    """x where x > 0, alpha (e^x - 1) elsewhere (Keras's default alpha 1.0)."""

    _base_name = "elu"

    def __init__(self, alpha=1.0, name=None, input_shape=None, trainable=True):
        super().__init__("elu", name, input_shape, trainable, alpha=alpha)

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self._alpha
        return config


class GELU(Activation):
    """x Phi(x), Phi the standard normal's distribution function (approximate=True: the tanh
    form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as Keras's gelu(approximate=True))."""

    _base_name = "gelu"

    def __init__(self, approximate=False, name=None, input_shape=None, trainable=True):
        super().__init__("gelu_tanh" if approximate else "gelu", name, input_shape, trainable)
        self.approximate = bool(approximate)

    def get_config(self):
        config = super().get_config()
        config["approximate"] = self.approximate
        return config
