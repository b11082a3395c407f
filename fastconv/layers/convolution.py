"""Convolution layers: Conv2D and Conv2DTranspose.

Conv2D's forward is one kernel call (convolution, bias and activation fused into the output
pass); its backward is the activation's backward (fused with the bias gradient on the CPU),
then the weight gradient, then the input gradient. Layouts: x (N, C, H, W), kernel OIHW
(filters, in_channels, kh, kw), bias (filters,).
"""
from __future__ import annotations

import numpy as np

from .. import initializers
from ..functional import resolve_padding
from .base import (Layer, _activation, _check_padding, _init_config, _out_size, _pair,
                   shapes_only_active)

__all__ = ["Conv2D", "Convolution2D", "Conv2DTranspose", "Convolution2DTranspose"]


class _Conv(Layer):
    """What Conv2D and Conv2DTranspose share: the arguments, the kernel's Keras layout (both
    kernels are 4-D with the kernel window last, Keras's first) and the config."""

    _param_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                 kernel_initializer, bias_initializer, data_format, name, input_shape, trainable):
        super().__init__(name, input_shape, data_format, trainable)
        owner = self._owner
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size", owner)
        self.strides = _pair(strides, "strides", owner)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate", owner)
        self.padding = _check_padding(padding, owner)
        spec = _activation(activation, owner)
        self.activation, self._act, self._alpha = spec.name, spec.code, spec.alpha
        if spec.softmax:
            raise ValueError(f"{owner}: activation 'softmax' is for Dense layers; put a Softmax layer "
                             "after a Flatten instead")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    @property
    def final_activation(self):
        return "sigmoid" if self.activation == "sigmoid" else None

    # The kernels are OIHW (Conv2D) and (in, filters, kh, kw) (Conv2DTranspose); Keras keeps
    # them HWIO and (kh, kw, filters, in): the same move of axes both ways.
    def get_weights_keras(self):
        """[kernel in Keras's layout (kh, kw, ...), bias] as Keras stores them."""
        self._check_built("get_weights_keras")
        out = [np.ascontiguousarray(self.kernel.transpose(2, 3, 1, 0))]
        return out + ([self.bias.copy()] if self.use_bias else [])

    def set_weights_keras(self, weights):
        """Set [kernel in Keras's layout (kh, kw, ...), bias]."""
        weights = list(weights)
        if weights:
            kernel = np.asarray(weights[0], dtype=np.float32)
            if kernel.ndim != 4:
                raise ValueError(f"{self._owner}: a Keras {type(self).__name__} kernel is 4-D (kh, kw, "
                                 f"...), got shape {kernel.shape}")
            weights[0] = kernel.transpose(3, 2, 0, 1)
        Layer.set_weights(self, weights)  # native layout: a Keras subclass overrides set_weights

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                      strides=list(self.strides),
                      padding=list(self.padding) if isinstance(self.padding, tuple) else self.padding,
                      dilation_rate=list(self.dilation_rate), activation=self.activation,
                      use_bias=self.use_bias,
                      kernel_initializer=_init_config(self.kernel_initializer),
                      bias_initializer=_init_config(self.bias_initializer))
        return config


class Conv2D(_Conv):
    """2-D convolution: y = act(conv(x, kernel) + bias), x (N, C, H, W) -> (N, filters, P, Q).

    filters: number of output maps K. kernel_size, strides, dilation_rate: int or (h, w).
    padding: "valid", "same" (TensorFlow's rule for any stride: out = ceil(n / s), the odd
    pixel bottom/right), an int or an (h, w) pair. activation: None, "relu", "tanh" or
    "sigmoid", fused into the kernel's output pass. kernel_initializer / bias_initializer:
    names from fastconv.initializers or initialiser objects.

    connections: optional boolean (filters, in_channels) array; connections[k, c] says whether
    output map k sees input map c (LeNet-5's C3 table). The kernel and its gradient are
    multiplied by the mask, so unconnected weights stay exactly zero, whatever the optimiser;
    count_params counts only the connected weights.

    kernel is OIHW (filters, in_channels, kh, kw), bias (filters,).
    """

    _base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", data_format=None, connections=None, name=None,
                 input_shape=None, trainable=True):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, data_format, name, input_shape,
                         trainable)
        if connections is not None:
            connections = np.asarray(connections, dtype=bool)
            if connections.ndim != 2 or connections.shape[0] != self.filters:
                raise ValueError(f"{self._owner}: connections must be a boolean (filters, "
                                 f"in_channels) = ({self.filters}, C) array, got shape "
                                 f"{connections.shape}")
        self.connections = connections
        self._mask = None

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        kh, kw = self.kernel_size
        if self.connections is not None and self.connections.shape[1] != c:
            raise ValueError(f"{self._owner}: connections has shape {self.connections.shape} but the "
                             f"input has {c} channels (expected ({self.filters}, {c}))")
        self._stride = self.strides
        self._dilation = self.dilation_rate
        self._pad = tuple(int(p) for p in resolve_padding(self.padding, (h, w), self.kernel_size,
                                                          self.strides, self.dilation_rate))
        t, l, b, r = self._pad
        out_h = _out_size(h, kh, self._stride[0], t, b, self._dilation[0])
        out_w = _out_size(w, kw, self._stride[1], l, r, self._dilation[1])
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{self._owner}: a {kh}x{kw} kernel (dilation {self._dilation}, padding "
                             f"{self.padding!r}) does not fit the {h}x{w} input (per-sample shape "
                             f"{input_shape})")
        fan_in, fan_out = c * kh * kw, self.filters * kh * kw
        self.kernel = self._new_weight(self.kernel_initializer, (self.filters, c, kh, kw), fan_in,
                                       fan_out)
        self.bias = (self._new_weight(self.bias_initializer, (self.filters,), fan_in, fan_out)
                     if self.use_bias else None)
        if self.connections is not None:
            mask = np.broadcast_to(self.connections[:, :, None, None], self.kernel.shape)
            if not shapes_only_active():
                self._mask = np.ascontiguousarray(mask, np.float32)
                self.kernel *= self._mask
        return (self.filters, out_h, out_w)

    def count_params(self):
        if self._mask is None:
            return super().count_params()
        kh, kw = self.kernel_size
        return int(self.connections.sum()) * kh * kw + (self.filters if self.use_bias else 0)

    def _after_set_weights(self):
        if self._mask is not None:
            self.kernel *= self._mask

    # --- per call ---------------------------------------------------------------------------
    def forward(self, ctx, x):
        return self.forward_padded(ctx, x, self._pad, self._act)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        return self.backward_padded(ctx, saved, dy, need_dx, grads)

    def forward_logits(self, ctx, x):
        return self.forward_padded(ctx, x, self._pad, 0)

    def backward_logits(self, ctx, saved, dlogits, need_dx=True, grads=None):
        return self.backward_padded(ctx, saved, dlogits, need_dx, grads)

    def forward_padded(self, ctx, x, pad, act):
        """The convolution with explicit padding (top, left, bottom, right) and activation code:
        what forward runs, and what a ZeroPadding2D fused into this layer runs. GELU, whose
        backward needs its input, runs after the convolution instead of inside it."""
        be = ctx.backend
        w = ctx.weights(self)
        b = w[1] if self.use_bias else None
        if act in (6, 7):
            z = be.conv2d(x, w[0], b, self._stride, pad, self._dilation, 0)
            return be.activation(z, act, self._alpha), (x, None, pad, act, z)
        y = be.conv2d(x, w[0], b, self._stride, pad, self._dilation, act,
                      self._alpha if act in (4, 5) else None)
        return y, (x, y, pad, act, None)

    def backward_padded(self, ctx, saved, dy, need_dx, grads):
        x, y, pad, act, z = saved
        be = ctx.backend
        w = ctx.weights(self)
        alpha = self._alpha if act in (4, 5, 6, 7) else None
        db_done = False
        if act:
            fused = be.activation_backward_bias_into  # the CPU has it: one pass over dy
            if fused is not None and self.use_bias and grads is not None:
                dy = fused(grads[1], dy, y, act, alpha, z)
                db_done = True
            else:
                dy = be.activation_backward(dy, y, act, alpha, z)
        if grads is not None:
            be.conv2d_backward_weight_into(grads[0], dy, x, self._stride, pad, self._dilation)
            if self._mask is not None:
                be.multiply_(grads[0], self._mask_for(ctx))
            if self.use_bias and not db_done:
                be.conv2d_backward_bias_into(grads[1], dy)
        if not need_dx:
            return None
        return be.conv2d_backward_input(dy, w[0], x.shape, self._stride, pad, self._dilation)

    def _mask_for(self, ctx):
        """The connection mask on the call's device (copied to the GPU once and kept)."""
        if ctx.backend.name == "cpu":
            return self._mask
        cached = getattr(self, "_device_mask", None)
        if cached is None:
            cached = self._device_mask = ctx.backend.ext.Tensor.from_numpy(self._mask)
        return cached

    def get_config(self):
        config = super().get_config()
        if self.connections is not None:
            config["connections"] = self.connections.tolist()
        return config


# Keras's longer name.
Convolution2D = Conv2D


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution ("deconvolution"): y = act(conv_transpose(x, kernel) + bias),
    x (N, C, H, W) -> (N, filters, Ho, Wo), the layer an autoencoder's decoder or a GAN's
    generator grows images with.

    padding "valid"/"same" and output_padding=None give Keras's output sizes ("same": H * s;
    "valid": H * s + max(k - s, 0)); an int or pair padding gives PyTorch's ((H - 1) s - 2 p +
    d (k - 1) + output_padding + 1). kernel is (in_channels, filters, kh, kw), PyTorch's
    ConvTranspose2d layout (Keras stores (kh, kw, filters, in_channels): get/set_weights_keras).

    It runs on conv2d's own kernels: the forward is the input gradient of the convolution it
    transposes, its input gradient that convolution, its weight gradient that convolution's
    weight gradient with the roles of x and dy swapped.
    """

    _base_name = "conv2d_transpose"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", data_format=None, name=None, input_shape=None,
                 trainable=True):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, data_format, name, input_shape,
                         trainable)
        if output_padding is not None:
            pair = (output_padding,) * 2 if isinstance(output_padding, (int, np.integer)) else \
                tuple(output_padding)
            if len(pair) != 2 or any(int(v) < 0 for v in pair):
                raise ValueError(f"{self._owner}: output_padding must be None, an int or an (h, w) "
                                 f"pair of ints >= 0, got {output_padding!r}")
            output_padding = (int(pair[0]), int(pair[1]))
        self.output_padding = output_padding

    def _build(self, input_shape):
        from ..functional import _transpose_geometry

        self._require_image(input_shape)
        c, h, w = input_shape
        kh, kw = self.kernel_size
        try:
            out, self._stride, self._pad, self._dilation = _transpose_geometry(
                self._owner, (1, c, h, w), (c, self.filters, kh, kw), self.strides, self.padding,
                self.output_padding, self.dilation_rate)
        except ValueError as err:
            raise ValueError(str(err)) from None
        # Keras and PyTorch both count fans of a transposed kernel with the output channels as
        # its "input" side.
        fan_in, fan_out = self.filters * kh * kw, c * kh * kw
        self.kernel = self._new_weight(self.kernel_initializer, (c, self.filters, kh, kw), fan_in,
                                       fan_out)
        self.bias = (self._new_weight(self.bias_initializer, (self.filters,), fan_in, fan_out)
                     if self.use_bias else None)
        return out[1:]

    def forward(self, ctx, x):
        return self._forward(ctx, x, self._act)

    def forward_logits(self, ctx, x):
        return self._forward(ctx, x, 0)

    def _forward(self, ctx, x, act):
        be = ctx.backend
        w = ctx.weights(self)
        n = x.shape[0]
        y = be.conv2d_backward_input(x, w[0], (n,) + tuple(self.output_shape), self._stride,
                                     self._pad, self._dilation)
        b = w[1] if self.use_bias else None
        if act in (6, 7):   # GELU: keep its input for the backward
            if b is not None:
                be.bias_activation_(y, b, 0)
            return be.activation(y, act, self._alpha), (x, None, act, y)
        if b is not None or act:
            be.bias_activation_(y, b, act, self._alpha if act in (4, 5) else None)
        return y, (x, y, act, None)

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        x, y, act, z = saved
        be = ctx.backend
        if act:
            dy = be.activation_backward(dy, y, act, self._alpha if act >= 4 else None, z)
        if grads is not None:
            be.conv2d_transpose_backward_weight_into(grads[0], dy, x, self._stride, self._pad,
                                                     self._dilation)
            if self.use_bias:
                be.conv2d_backward_bias_into(grads[1], dy)
        if not need_dx:
            return None
        return be.conv2d(dy, ctx.weights(self)[0], None, self._stride, self._pad, self._dilation, 0)

    backward_logits = backward

    def get_config(self):
        config = super().get_config()
        config["output_padding"] = None if self.output_padding is None else list(self.output_padding)
        return config


Convolution2DTranspose = Conv2DTranspose
