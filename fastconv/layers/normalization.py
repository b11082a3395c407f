"""Normalisation layers: BatchNormalization.

In training, each channel (of NCHW images, over N, H and W) or feature (of (N, F) vectors, over
N) is normalised with the batch's own mean and variance, then scaled by gamma and shifted by
beta; the running mean and variance move toward the batch's by ``momentum`` (Keras's
convention: running = momentum * running + (1 - momentum) * batch). In inference the running
statistics are used instead, and a model folds them into the convolution or dense layer before
(fastconv.models.graph): one op instead of two, the same numbers.
"""
from __future__ import annotations

import numpy as np

from .. import initializers
from .base import Layer, _init_config

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    """Batch normalisation with Keras's arguments and defaults (momentum 0.99, epsilon 1e-3,
    center and scale on).

    axis: the channel axis, 1 here (NCHW images, (N, F) vectors); fastconv.keras's layer takes
    Keras's -1 for its channels-last data. Weights: gamma (if scale) and beta (if center) train;
    moving_mean and moving_variance are non-trainable state, saved and loaded with the model
    (get_weights order: gamma, beta, moving_mean, moving_variance, as Keras). A frozen layer
    (trainable=False) runs in inference mode even in training, as Keras's does.
    """

    _param_names = ("gamma", "beta")
    _state_names = ("moving_mean", "moving_variance")
    _base_name = "batch_normalization"

    def __init__(self, axis=1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 name=None, input_shape=None, trainable=True, data_format=None):
        super().__init__(name, input_shape, data_format, trainable)
        owner = self._owner
        if axis != 1 and not (axis == -1 and data_format == "channels_last"):
            raise ValueError(f"{owner}: axis must be the channel axis, 1 (NCHW, or the features of "
                             f"(N, F)); got {axis!r} (fastconv.keras's BatchNormalization takes "
                             "Keras's -1)")
        self.axis = int(axis)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{owner}: momentum must be in [0, 1], got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"{owner}: epsilon must be positive, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def _build(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ValueError(f"{self._owner}: expects (N, C, H, W) images or (N, F) vectors, got "
                             f"per-sample shape {input_shape}")
        c = int(input_shape[0])
        make = lambda init: self._new_weight(init, (c,), c, c)  # noqa: E731
        self.gamma = make(self.gamma_initializer) if self.scale else None
        self.beta = make(self.beta_initializer) if self.center else None
        self.moving_mean = make(self.moving_mean_initializer)
        self.moving_variance = make(self.moving_variance_initializer)
        return tuple(input_shape)

    def _gamma_beta(self, ctx):
        w = list(ctx.weights(self))
        gamma = w.pop(0) if self.scale else None
        beta = w.pop(0) if self.center else None
        return gamma, beta

    def forward(self, ctx, x):
        be = ctx.backend
        gamma, beta = self._gamma_beta(ctx)
        mean_run, var_run = ctx.state(self)
        if ctx.training and self.trainable:
            y, mean, inv_std = be.batch_norm_training(x, gamma, beta, mean_run, var_run, self.epsilon,
                                                      self.momentum, False)
            return y, (x, mean, inv_std, True)
        y = be.batch_norm_inference(x, gamma, beta, mean_run, var_run, self.epsilon)
        return y, (x, mean_run, var_run, False)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        be = ctx.backend
        x, mean, spread, batch_stats = saved
        gamma, _ = self._gamma_beta(ctx)
        if batch_stats:
            inv_std = spread
        else:  # inference statistics: constants, inv_std from the running variance
            if be.name != "cpu":
                raise NotImplementedError(f"{self._owner}: the backward of a BatchNormalization in "
                                          "inference mode (frozen) has no CUDA path yet")
            inv_std = (1.0 / np.sqrt(spread.astype(np.float64) + self.epsilon)).astype(np.float32)
        dx, dgamma, dbeta = be.batch_norm_backward(dy, x, gamma, mean, inv_std, batch_stats)
        if grads is not None:
            at = 0
            if self.scale:
                be.copy_into(grads[at], dgamma)
                at += 1
            if self.center:
                be.copy_into(grads[at], dbeta)
        return dx if need_dx else None

    def fold_into(self, w, b, axis=0):
        """(w', b') for the layer before: its kernel w (output channels on ``axis``) and bias b
        (None: zeros) with this layer's inference normalisation folded in (host arrays)."""
        from ..functional import fold_batch_norm

        return fold_batch_norm(w, b, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                               self.epsilon, axis=axis)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                      center=self.center, scale=self.scale,
                      beta_initializer=_init_config(self.beta_initializer),
                      gamma_initializer=_init_config(self.gamma_initializer),
                      moving_mean_initializer=_init_config(self.moving_mean_initializer),
                      moving_variance_initializer=_init_config(self.moving_variance_initializer))
        return config
