"""Keras-shaped layers on fastconv's kernels.

Every layer is a small class: a constructor that records its settings, ``build(input_shape)``
that resolves shapes, padding and strides once and creates the weights, ``forward(x,
training)`` that calls the compiled backend with everything already resolved and keeps what
the backward pass needs, and ``backward(dy)`` that returns dx and writes the weight gradients
into ``layer.grads``. Shapes and validation live here in Python; arithmetic lives in C++
(``fastconv._core``) or CUDA (``fastconv._cuda``), picked from the input's type by
``fastconv.functional._backend``.

Layouts (see DESIGN.md): images NCHW, Conv2D kernels OIHW (filters, in_channels, kh, kw),
Dense kernels (units, in_features), exactly PyTorch's layouts. ``get_weights_keras`` /
``set_weights_keras`` convert to and from Keras's layouts (HWIO kernels, (in, out) dense
kernels); ``get_weights_pytorch`` / ``set_weights_pytorch`` are the identity, for symmetry.

Shapes given to ``build`` and ``input_shape=`` are per sample, without the batch: (C, H, W)
for images, (features,) for vectors. A layer whose ``data_format`` is "channels_last" takes
``input_shape`` as (H, W, C) and, called on its own, NHWC input; inside a Sequential the model
converts NHWC input to NCHW once, at its boundary, and every layer runs NCHW.

A layer can be used by itself::

    conv = Conv2D(8, 3, padding="same", activation="relu")
    y = conv(x)                       # builds from x.shape, runs forward (inference)
    y = conv(x, training=True)        # keeps what backward needs
    dx = conv.backward(np.ones_like(y))   # conv.grads == [dkernel, dbias]
"""
from __future__ import annotations

import numpy as np

from . import _core, initializers
from .functional import _backend, _resolve_padding

__all__ = [
    "Layer", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "ZeroPadding2D", "Flatten",
    "Dense", "Dropout", "RandomTranslation", "Activation", "ReLU", "Tanh", "Sigmoid", "Softmax",
    "ACTIVATIONS", "get_layer_class", "layer_from_config",
    # Keras-style aliases
    "Convolution2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
]

# Activation names -> the code the compiled kernels fuse into their output pass.
# "softmax" has no code: Dense applies it after the fused pass (it is a row-wise op).
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "leaky_relu": 4, "elu": 5, "gelu": 6, "softmax": None}


def _activation_code(name, owner):
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        known = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
        raise ValueError(f"{owner}: unknown activation {name!r}; known: None, {known}")
    return key, ACTIVATIONS[key]


def _pair(value, what, owner):
    """An int or an (h, w) pair of positive ints -> (h, w)."""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{owner}: {what} must be an int or an (h, w) pair, got {value!r}") from None
        if len(pair) != 2:
            raise ValueError(f"{owner}: {what} must be an int or an (h, w) pair, got {value!r}")
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{owner}: {what} must be positive, got {value!r}")
    return pair


def _check_padding(padding, owner):
    """Validate a padding argument: "valid", "same", an int or an (h, w) pair (>= 0)."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"{owner}: padding must be 'valid', 'same', an int or an (h, w) pair, "
                             f"got {padding!r}")
        return padding.lower()
    values = (padding, padding) if isinstance(padding, (int, np.integer)) else tuple(padding)
    if len(values) != 2 or any(int(v) < 0 for v in values):
        raise ValueError(f"{owner}: padding must be 'valid', 'same', an int or an (h, w) pair of "
                         f"non-negative ints, got {padding!r}")
    return int(values[0]) if values[0] == values[1] else (int(values[0]), int(values[1]))


def _check_data_format(data_format, owner):
    if data_format not in (None, "channels_first", "channels_last"):
        raise ValueError(f"{owner}: data_format must be None, 'channels_first' or 'channels_last', "
                         f"got {data_format!r}")
    return data_format


def _init_config(init):
    """An initialiser's config for saving; a plain callable is saved as the default (a loaded
    model gets its weights from the file anyway)."""
    return init.get_config() if hasattr(init, "get_config") else "glorot_uniform"


def _out_size(n, k, s, before, after, d=1):
    return (n + before + after - d * (k - 1) - 1) // s + 1


class Layer:
    """Base class of every layer.

    Attributes a built layer has: ``input_shape`` and ``output_shape`` (per sample, NCHW
    order), ``params`` (the weight arrays, updated in place by the optimiser) and ``grads``
    (same shapes, written by ``backward``). Subclasses list their weight attributes in
    ``_param_names`` and implement ``_build``, ``forward`` and ``backward``.
    """

    _param_names: tuple = ()
    _base_name = "layer"

    def __init__(self, name=None, input_shape=None, data_format=None):
        self.name = name
        self.data_format = _check_data_format(data_format, type(self).__name__)
        if input_shape is not None:
            input_shape = tuple(int(d) for d in input_shape)
        self.declared_input_shape = input_shape  # as the user wrote it (HWC if channels_last)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self.grads = []
        self._rng = None

    # --- identity -------------------------------------------------------------------------
    @property
    def _owner(self):
        return f"{type(self).__name__} {self.name!r}" if self.name else type(self).__name__

    def __repr__(self):
        shape = f", output_shape={self.output_shape}" if self.built else ""
        return f"<{type(self).__name__} name={self.name!r}{shape}>"

    # --- building -------------------------------------------------------------------------
    def channels_first_shape(self, shape):
        """A per-sample shape as this layer was told it (HWC if channels_last) -> NCHW order."""
        shape = tuple(int(d) for d in shape)
        if self.data_format == "channels_last" and len(shape) == 3:
            return (shape[2], shape[0], shape[1])
        return shape

    def build(self, input_shape, rng=None):
        """Resolve shapes and create the weights for per-sample ``input_shape`` (NCHW order).

        rng: a numpy Generator for the initial weights (and dropout); a fresh one if None.
        """
        input_shape = tuple(int(d) for d in input_shape)
        self._rng = rng if rng is not None else np.random.default_rng()
        self.input_shape = input_shape
        self.output_shape = tuple(int(d) for d in self._build(input_shape))
        if any(d < 1 for d in self.output_shape):
            raise ValueError(f"{self._owner}: input shape {input_shape} gives an empty output "
                             f"{self.output_shape}; the input is too small for this layer")
        self.grads = [np.zeros_like(p) for p in self.params]
        self.built = True
        return self.output_shape

    def _build(self, input_shape):
        return input_shape

    def _require_image(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self._owner}: expects image input (N, C, H, W) but got per-sample "
                             f"shape {input_shape} (inputs of shape {('N',) + input_shape})")

    # --- weights --------------------------------------------------------------------------
    @property
    def params(self):
        """The weight arrays (kernel, then bias where present), fastconv layout."""
        return [getattr(self, n) for n in self._param_names if getattr(self, n, None) is not None]

    def _set_params(self, arrays):
        """Rebind the weight attributes (used by Sequential to place them in one flat buffer)."""
        names = [n for n in self._param_names if getattr(self, n, None) is not None]
        for n, a in zip(names, arrays):
            setattr(self, n, a)

    def count_params(self):
        """Number of trainable parameters (for a masked Conv2D, only the connected weights)."""
        return int(sum(p.size for p in self.params))

    def get_weights(self):
        """Copies of the weights in fastconv's layout (conv OIHW, dense (out, in)), kernel first."""
        return [p.copy() for p in self.params]

    def set_weights(self, weights):
        """Set the weights from arrays in fastconv's layout, in the order of ``get_weights``.

        The arrays are copied into the layer's own buffers (so an optimiser keeps working).
        """
        self._check_built("set_weights")
        weights = list(weights)
        params = self.params
        if len(weights) != len(params):
            raise ValueError(f"{self._owner}: set_weights got {len(weights)} arrays, expected "
                             f"{len(params)} (shapes {[p.shape for p in params]})")
        for i, (p, w) in enumerate(zip(params, weights)):
            w = np.asarray(w, dtype=np.float32)
            if w.shape != p.shape:
                raise ValueError(f"{self._owner}: set_weights array {i} has shape {w.shape}, "
                                 f"expected {p.shape}")
            np.copyto(p, w)
        self._after_set_weights()

    def _after_set_weights(self):
        pass

    # PyTorch's layouts are fastconv's layouts.
    def get_weights_pytorch(self):
        """Weights in PyTorch's layout (Conv2d weight OIHW, Linear weight (out, in)): as get_weights."""
        return self.get_weights()

    def set_weights_pytorch(self, weights):
        """Set weights from PyTorch's layout (Conv2d weight OIHW, Linear weight (out, in))."""
        self.set_weights(weights)

    def get_weights_keras(self):
        """Weights in Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        return self.get_weights()

    def set_weights_keras(self, weights):
        """Set weights from Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        self.set_weights(weights)

    def _check_built(self, what):
        if not self.built:
            raise RuntimeError(f"{self._owner}: {what} before the layer is built; call it on an input "
                               "or give input_shape= and build the model first")

    # --- running --------------------------------------------------------------------------
    def __call__(self, x, training=False):
        """Run the layer on a batch (builds it from x's shape on the first call).

        Converts x to contiguous float32; NHWC in and out if data_format is "channels_last".
        """
        x = np.asarray(x, dtype=np.float32)
        channels_last = self.data_format == "channels_last" and x.ndim == 4
        if channels_last:
            x = x.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        if not self.built:
            self.build(x.shape[1:])
        elif x.shape[1:] != self.input_shape:
            raise ValueError(f"{self._owner}: input has per-sample shape {x.shape[1:]} but the layer "
                             f"was built for {self.input_shape}")
        y = self.forward(x, training)
        if channels_last and y.ndim == 4:
            y = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
        return y

    def forward(self, x, training=False):
        """y from x (N, ...) contiguous float32; keeps what backward needs when training."""
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        """dx from dy (the gradient of the loss w.r.t. this layer's output); fills ``grads``.

        need_dx=False lets the first layers of a model skip computing an unused dx (returns None).
        """
        raise NotImplementedError

    # --- serialisation ----------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments as a JSON-able dict."""
        config = {"name": self.name}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        if self.data_format is not None:
            config["data_format"] = self.data_format
        return config

    @classmethod
    def from_config(cls, config):
        """Build an (unbuilt) layer from ``get_config``'s dict."""
        return cls(**config)


class Conv2D(Layer):
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

    _param_names = ("kernel", "bias")
    _base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", data_format=None, connections=None, name=None,
                 input_shape=None):
        super().__init__(name, input_shape, data_format)
        owner = self._owner
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size", owner)
        self.strides = _pair(strides, "strides", owner)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate", owner)
        self.padding = _check_padding(padding, owner)
        self.activation, self._act = _activation_code(activation, owner)
        if self._act is None:
            raise ValueError(f"{owner}: activation 'softmax' is for Dense layers; put a Softmax layer "
                             "after a Flatten instead")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        if connections is not None:
            connections = np.asarray(connections, dtype=bool)
            if connections.ndim != 2 or connections.shape[0] != self.filters:
                raise ValueError(f"{owner}: connections must be a boolean (filters, in_channels) = "
                                 f"({self.filters}, C) array, got shape {connections.shape}")
        self.connections = connections
        self.kernel = None
        self.bias = None
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
        self._pad = tuple(int(p) for p in _resolve_padding(self.padding, (h, w), self.kernel_size,
                                                           self.strides, self.dilation_rate))
        t, l, b, r = self._pad
        out_h = _out_size(h, kh, self._stride[0], t, b, self._dilation[0])
        out_w = _out_size(w, kw, self._stride[1], l, r, self._dilation[1])
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{self._owner}: a {kh}x{kw} kernel (dilation {self._dilation}, padding "
                             f"{self.padding!r}) does not fit the {h}x{w} input (per-sample shape "
                             f"{input_shape})")
        fan_in, fan_out = c * kh * kw, self.filters * kh * kw
        self.kernel = np.ascontiguousarray(
            self.kernel_initializer((self.filters, c, kh, kw), fan_in, fan_out, self._rng), np.float32)
        self.bias = (np.ascontiguousarray(self.bias_initializer((self.filters,), fan_in, fan_out,
                                                                 self._rng), np.float32)
                     if self.use_bias else None)
        if self.connections is not None:
            self._mask = np.ascontiguousarray(
                np.broadcast_to(self.connections[:, :, None, None], self.kernel.shape), np.float32)
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

    def forward(self, x, training=False):
        return self._forward(x, self._pad)

    def backward(self, dy, need_dx=True):
        return self._backward(dy, self._pad, need_dx)

    def _forward(self, x, pad):
        y = _backend(x).conv2d_forward(x, self.kernel, self.bias, self._stride, pad,
                                       self._dilation, self._act)
        self._x, self._y = x, y
        return y

    def _backward(self, dy, pad, need_dx):
        be = _backend(dy)
        db = None
        if self._act:
            fused = getattr(be, "activation_backward_bias", None)  # the CPU has it: one pass
            if fused is not None and self.use_bias:
                dy, db = fused(dy, self._y, self._act)
            else:
                dy = be.activation_backward(dy, self._y, self._act)
        x = self._x
        dw = be.conv2d_backward_weight(dy, x, self.kernel.shape, self._stride, pad, self._dilation)
        np.copyto(self.grads[0], dw)
        if self._mask is not None:
            self.grads[0] *= self._mask
        if self.use_bias:
            np.copyto(self.grads[1], db if db is not None else be.conv2d_backward_bias(dy))
        if not need_dx:
            return None
        return be.conv2d_backward_input(dy, self.kernel, x.shape, self._stride, pad, self._dilation)

    def get_weights_keras(self):
        """[kernel HWIO (kh, kw, in, filters), bias] as Keras stores them."""
        self._check_built("get_weights_keras")
        out = [np.ascontiguousarray(self.kernel.transpose(2, 3, 1, 0))]
        return out + ([self.bias.copy()] if self.use_bias else [])

    def set_weights_keras(self, weights):
        """Set [kernel HWIO (kh, kw, in, filters), bias] from Keras's layout."""
        weights = list(weights)
        if weights:
            kernel = np.asarray(weights[0], dtype=np.float32)
            if kernel.ndim != 4:
                raise ValueError(f"{self._owner}: a Keras Conv2D kernel is 4-D (kh, kw, in, out), got "
                                 f"shape {kernel.shape}")
            weights[0] = kernel.transpose(3, 2, 0, 1)
        self.set_weights(weights)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                      strides=list(self.strides),
                      padding=list(self.padding) if isinstance(self.padding, tuple) else self.padding,
                      dilation_rate=list(self.dilation_rate), activation=self.activation,
                      use_bias=self.use_bias,
                      kernel_initializer=_init_config(self.kernel_initializer),
                      bias_initializer=_init_config(self.bias_initializer))
        if self.connections is not None:
            config["connections"] = self.connections.tolist()
        return config


class _PaddedConv2D:
    """A ZeroPadding2D followed by a Conv2D, run as one convolution whose padding is the sum of
    both (what Sequential runs; identical results, one copy of every batch cheaper). Uses and
    fills the Conv2D's own weights and gradients."""

    def __init__(self, pad_layer, conv):
        t, b, l, r = pad_layer.pads
        ct, cl, cb, cr = conv._pad
        self.conv = conv
        self._pad = (ct + t, cl + l, cb + b, cr + r)

    @staticmethod
    def fusable(pad_layer, conv):
        """Whether the pair can run fused: plain ZeroPadding2D then Conv2D, padding < kernel."""
        if type(pad_layer) is not ZeroPadding2D or type(conv) is not Conv2D:
            return False
        t, b, l, r = pad_layer.pads
        ct, cl, cb, cr = conv._pad
        kh, kw = conv.kernel_size
        return max(t + ct, b + cb) < kh and max(l + cl, r + cr) < kw

    def forward(self, x, training=False):
        return self.conv._forward(x, self._pad)

    def backward(self, dy, need_dx=True):
        return self.conv._backward(dy, self._pad, need_dx)


class _Pool2D(Layer):
    """Shared parts of MaxPool2D and AvgPool2D."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None,
                 input_shape=None):
        super().__init__(name, input_shape, data_format)
        self.pool_size = _pair(pool_size, "pool_size", self._owner)
        self.strides = None if strides is None else _pair(strides, "strides", self._owner)
        self.padding = _check_padding(padding, self._owner)

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        kh, kw = self.pool_size
        self._kernel = self.pool_size
        self._stride = self.strides if self.strides is not None else self.pool_size
        self._pad = tuple(int(p) for p in _resolve_padding(self.padding, (h, w), self.pool_size,
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

    def forward(self, x, training=False):
        be = _backend(x)
        # Training on the CPU keeps where each maximum was (one byte an output), so the
        # backward need not read x again; inference and the GPU keep x.
        self._idx = None
        if training and be is _core and self._kernel[0] * self._kernel[1] <= 255:
            y, self._idx = be.max_pool2d_forward_indices(x, self._kernel, self._stride, self._pad)
            self._x, self._x_shape = None, x.shape
            return y
        y = be.max_pool2d_forward(x, self._kernel, self._stride, self._pad)
        self._x = x
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._idx is not None:
            return _core.max_pool2d_backward_indices(dy, self._idx, list(self._x_shape), self._kernel,
                                                     self._stride, self._pad)
        return _backend(dy).max_pool2d_backward(dy, self._x, self._kernel, self._stride, self._pad)


class AvgPool2D(_Pool2D):
    """Average pooling over pool_size windows.

    count_include_pad: None (default) divides by the real cells only for "same" padding (as
    Keras does) and by the whole window for numeric padding (as PyTorch does); True/False force it.
    """

    _base_name = "average_pooling2d"

    def __init__(self, pool_size=2, strides=None, padding="valid", count_include_pad=None,
                 data_format=None, name=None, input_shape=None):
        super().__init__(pool_size, strides, padding, data_format, name, input_shape)
        if count_include_pad is None:
            count_include_pad = not isinstance(self.padding, str)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x, training=False):
        y = _backend(x).avg_pool2d_forward(x, self._kernel, self._stride, self._pad,
                                           self.count_include_pad)
        self._x_shape = x.shape
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return _backend(dy).avg_pool2d_backward(dy, self._x_shape, self._kernel, self._stride,
                                                self._pad, self.count_include_pad)

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

    def forward(self, x, training=False):
        n, c = x.shape[0], x.shape[1]
        y = _backend(x).avg_pool2d_forward(x, self._kernel, self._kernel, (0, 0, 0, 0), True)
        self._x_shape = x.shape
        return y.reshape(n, c)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dy = dy.reshape(dy.shape[0], dy.shape[1], 1, 1)
        return _backend(dy).avg_pool2d_backward(dy, self._x_shape, self._kernel, self._kernel,
                                                (0, 0, 0, 0), True)


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image.

    padding: an int (all sides), an (h, w) pair (top = bottom = h, left = right = w), or
    ((top, bottom), (left, right)) as Keras writes it.
    """

    _base_name = "zero_padding2d"

    def __init__(self, padding=1, data_format=None, name=None, input_shape=None):
        super().__init__(name, input_shape, data_format)
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
        self._buffer = None

    def _build(self, input_shape):
        self._require_image(input_shape)
        c, h, w = input_shape
        t, b, l, r = self.pads
        return (c, h + t + b, w + l + r)

    def forward(self, x, training=False):
        t, b, l, r = self.pads
        n, c, h, w = x.shape
        shape = (n, c, h + t + b, w + l + r)
        y = self._buffer
        if not training:
            y = np.zeros(shape, dtype=np.float32)
        elif y is None or y.shape != shape:
            # In training, reused from step to step: the border stays zero, only the inside is
            # rewritten (the next layer is done with the previous batch by then).
            y = self._buffer = np.zeros(shape, dtype=np.float32)
        y[:, :, t:t + h, l:l + w] = x
        self._x_hw = (h, w)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        t, _, l, _ = self.pads
        h, w = self._x_hw
        return np.ascontiguousarray(dy[:, :, t:t + h, l:l + w])

    def get_config(self):
        config = super().get_config()
        t, b, l, r = self.pads
        config["padding"] = [[t, b], [l, r]]
        return config


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in NCHW order (so Keras Dense weights after it need permuting:
    see fastconv.models.from_keras_weights)."""

    _base_name = "flatten"

    def _build(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._x_shape) if need_dx else None


class Dense(Layer):
    """Fully connected: y = act(x kernel^T + bias), x (N, in) -> (N, units).

    activation: None, "relu", "tanh", "sigmoid" (fused into the kernel) or "softmax" (applied
    after; with a cross-entropy loss the model trains on the logits before it). kernel is
    (units, in) as PyTorch's Linear.weight, bias (units,).
    """

    _param_names = ("kernel", "bias")
    _base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, input_shape=None):
        super().__init__(name, input_shape, None)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"{self._owner}: units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation, code = _activation_code(activation, self._owner)
        self._softmax = code is None
        self._act = 0 if code is None else code
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
        self.kernel = np.ascontiguousarray(
            self.kernel_initializer((self.units, fan_in), fan_in, self.units, self._rng), np.float32)
        self.bias = (np.ascontiguousarray(self.bias_initializer((self.units,), fan_in, self.units,
                                                                 self._rng), np.float32)
                     if self.use_bias else None)
        return (self.units,)

    def forward(self, x, training=False):
        be = _backend(x)
        z = be.linear_forward(x, self.kernel, self.bias, self._act)
        self._x = x
        if self._softmax:
            self._z = z
            z = be.softmax(z)
        self._y = z
        return z

    def backward(self, dy, need_dx=True):
        if self._softmax:
            y = self._y
            dy = y * (dy - np.sum(dy * y, axis=1, keepdims=True))
        return self.backward_logits(dy, need_dx)

    def backward_logits(self, dz, need_dx=True):
        """Backward from the gradient w.r.t. the pre-softmax logits (softmax layers only) or,
        without softmax, from dy."""
        be = _backend(dz)
        if self._act:
            dz = be.activation_backward(dz, self._y, self._act)
        dx, dw, db = be.linear_backward(np.ascontiguousarray(dz), self._x, self.kernel)
        np.copyto(self.grads[0], dw)
        if self.use_bias:
            np.copyto(self.grads[1], db)
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
        self.set_weights(weights)

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        config.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                      kernel_initializer=_init_config(self.kernel_initializer),
                      bias_initializer=_init_config(self.bias_initializer))
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
    rest by 1 / (1 - rate); in inference, the identity. Draws from the model's seeded generator
    (or ``seed``), so a seeded run is repeatable."""

    _base_name = "dropout"

    def __init__(self, rate, seed=None, name=None, input_shape=None):
        super().__init__(name, input_shape, None)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{self._owner}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        mask = self._rng.random(x.shape, dtype=np.float32)
        keep = mask >= self.rate
        np.multiply(keep, np.float32(1.0 / (1.0 - self.rate)), out=mask)
        self._mask = mask
        return x * mask

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return dy if self._mask is None else dy * self._mask

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
                 input_shape=None, data_format=None):
        super().__init__(name, input_shape, data_format)
        width_factor = height_factor if width_factor is None else width_factor
        for what, factor in (("height_factor", height_factor), ("width_factor", width_factor)):
            if not isinstance(factor, (int, float, np.integer, np.floating)) or not 0.0 <= factor < 1.0:
                raise ValueError(f"{self._owner}: {what} must be a number in [0, 1), got {factor!r}")
        self.height_factor = float(height_factor)
        self.width_factor = float(width_factor)
        self.fill_value = float(fill_value)
        self.seed = seed
        self._max_shift = (0, 0)
        self._shifts = None

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

    def forward(self, x, training=False):
        mh, mw = self._max_shift
        if not training or (mh == 0 and mw == 0):
            self._shifts = None
            return x
        if not isinstance(x, np.ndarray):
            raise NotImplementedError(f"{self._owner}: no CUDA implementation; train on device='cpu'")
        n, _, h, w = x.shape
        shifts = np.stack([self._rng.integers(-mh, mh + 1, n), self._rng.integers(-mw, mw + 1, n)], 1)
        y = np.full(x.shape, self.fill_value, dtype=np.float32)
        for i, (sy, sx) in enumerate(shifts.tolist()):
            (sr, sc), (dr, dc) = self._regions(sy, sx, h, w)
            y[i, :, dr, dc] = x[i, :, sr, sc]
        self._shifts = shifts
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._shifts is None:
            return dy
        n, _, h, w = dy.shape
        dx = np.zeros(dy.shape, dtype=np.float32)
        for i, (sy, sx) in enumerate(self._shifts.tolist()):
            (sr, sc), (dr, dc) = self._regions(sy, sx, h, w)
            dx[i, :, sr, sc] = dy[i, :, dr, dc]
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor,
                      fill_value=self.fill_value, seed=self.seed)
        return config


class Activation(Layer):
    """An activation as a layer: Activation("relu"), "tanh", "sigmoid", "softmax" or None."""

    _base_name = "activation"

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name, input_shape, None)
        self.activation, code = _activation_code(activation, self._owner)
        self._softmax = code is None
        self._act = code

    def forward(self, x, training=False):
        be = _backend(x)
        if self._softmax:
            y = be.softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        elif self._act:
            y = be.activation_forward(x, self._act)
        else:
            y = x
        self._y = y
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._softmax:
            y = self._y
            return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
        if self._act:
            return _backend(dy).activation_backward(dy, self._y, self._act)
        return dy

    def get_config(self):
        config = super().get_config()
        config.pop("data_format", None)
        if type(self) is Activation:
            config["activation"] = self.activation
        return config


class ReLU(Activation):
    """max(x, 0)."""

    _base_name = "re_lu"

    def __init__(self, name=None, input_shape=None):
        super().__init__("relu", name, input_shape)


class Tanh(Activation):
    """tanh(x)."""

    _base_name = "tanh"

    def __init__(self, name=None, input_shape=None):
        super().__init__("tanh", name, input_shape)


class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    _base_name = "sigmoid"

    def __init__(self, name=None, input_shape=None):
        super().__init__("sigmoid", name, input_shape)


class Softmax(Activation):
    """Softmax over the last axis. Before a cross-entropy loss the model trains on its input
    (the logits) with the fused softmax_cross_entropy, which is exact and stable."""

    _base_name = "softmax"

    def __init__(self, name=None, input_shape=None):
        super().__init__("softmax", name, input_shape)


# Keras's longer names.
Convolution2D = Conv2D
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
GlobalAveragePooling2D = GlobalAvgPool2D

_LAYER_CLASSES = {cls.__name__: cls for cls in (
    Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, ZeroPadding2D, Flatten, Dense, Dropout,
    RandomTranslation, Activation, ReLU, Tanh, Sigmoid, Softmax)}


def get_layer_class(class_name):
    """The layer class called ``class_name`` ("Conv2D", "Dense", ...)."""
    if class_name not in _LAYER_CLASSES:
        raise ValueError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(_LAYER_CLASSES))}")
    return _LAYER_CLASSES[class_name]


def layer_from_config(entry):
    """A layer from ``{"class_name": ..., "config": {...}}`` (what Sequential.save writes)."""
    return get_layer_class(entry["class_name"]).from_config(dict(entry["config"]))
