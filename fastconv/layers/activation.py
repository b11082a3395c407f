"""Activation layers: ReLU, Tanh, Sigmoid, Softmax (each an Activation of that name)."""
from __future__ import annotations

from .core import Activation

__all__ = ["ReLU", "Tanh", "Sigmoid", "Softmax"]


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
