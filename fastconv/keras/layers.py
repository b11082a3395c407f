"""keras.layers on fastconv: Keras's names, arguments, defaults and layouts.

Each class here is a fastconv layer with Keras's constructor: channels-last by default
(``keras.backend.image_data_format()``), so ``input_shape=(28, 28, 1)`` is one channel of
28x28, and its ``get_weights``/``set_weights`` speak Keras's layouts (Conv2D kernels HWIO,
Dense kernels (in, out)). Inside a model the kernels still run NCHW: the model transposes its
NHWC inputs once at its boundary (and its image outputs back), and Flatten, Reshape and
Concatenate order their axes as Keras's would on NHWC data, so a Keras model's weights load
into the same architecture here and give the same outputs.

Keras arguments fastconv does not implement (regularizers, constraints, groups, ...) raise
NotImplementedError when they are given a value, rather than being ignored.
"""
from __future__ import annotations

from .. import layers as _L
from ..layers.base import Input as _Input
from ..layers.base import check_image_layout
from . import backend as _backend

__all__ = ["Input", "InputLayer", "Layer", "Conv2D", "Dense", "MaxPooling2D", "MaxPool2D",
           "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D",
           "ZeroPadding2D", "Flatten", "Dropout", "Activation", "ReLU", "Softmax", "Add",
           "Concatenate", "add", "concatenate", "Conv2DTranspose", "UpSampling2D",
           "BatchNormalization", "LeakyReLU", "ELU", "Reshape"]

Layer = _L.Layer
InputLayer = _L.InputLayer

_UNSUPPORTED = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint", "groups", "lora_rank")


def _fmt(data_format):
    return data_format or _backend.image_data_format()


def _keras_kwargs(owner, kwargs):
    """The common keyword arguments of a Keras layer: (name, input_shape, trainable)."""
    for key in _UNSUPPORTED:
        value = kwargs.pop(key, None)
        if value is not None and not (key == "groups" and value == 1):
            raise NotImplementedError(f"{owner}: {key}={value!r} is not supported by fastconv")
    dtype = kwargs.pop("dtype", None)
    if dtype not in (None, "float32"):
        raise NotImplementedError(f"{owner}: fastconv computes in float32, not {dtype!r}")
    input_shape = kwargs.pop("input_shape", None)
    batch_input_shape = kwargs.pop("batch_input_shape", None)
    if input_shape is None and batch_input_shape is not None:
        input_shape = tuple(batch_input_shape)[1:]
    name = kwargs.pop("name", None)
    trainable = kwargs.pop("trainable", True)
    if kwargs:
        raise TypeError(f"{owner}: unexpected keyword arguments {sorted(kwargs)}")
    return name, input_shape, trainable


class _KerasLayouts:
    """get_weights / set_weights in Keras's layouts (the layer's *_keras methods)."""

    def get_weights(self):
        """The weights in Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        return self.get_weights_keras()

    def set_weights(self, weights):
        """Set the weights from Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        self.set_weights_keras(weights)


class Conv2D(_KerasLayouts, _L.Conv2D):
    """keras.layers.Conv2D: 2-D convolution, NHWC by default, kernel HWIO in get_weights."""

    _registered_name = "keras.Conv2D"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        name, input_shape, trainable = _keras_kwargs("Conv2D", kwargs)
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         data_format=_fmt(data_format), name=name, input_shape=input_shape,
                         trainable=trainable)
        self._explicit_format = data_format is not None


class Dense(_KerasLayouts, _L.Dense):
    """keras.layers.Dense: kernel (in, units) in get_weights, as Keras stores it."""

    _registered_name = "keras.Dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        name, input_shape, trainable = _keras_kwargs("Dense", kwargs)
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         name=name, input_shape=input_shape, trainable=trainable)


class MaxPooling2D(_L.MaxPool2D):
    """keras.layers.MaxPooling2D (pool_size=(2, 2), strides=None -> pool_size)."""

    _registered_name = "keras.MaxPooling2D"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("MaxPooling2D", kwargs)
        super().__init__(pool_size, strides, padding, _fmt(data_format), name, input_shape, trainable)
        self._explicit_format = data_format is not None


class AveragePooling2D(_L.AvgPool2D):
    """keras.layers.AveragePooling2D ("same" padding averages the real cells only, as Keras)."""

    _registered_name = "keras.AveragePooling2D"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("AveragePooling2D", kwargs)
        super().__init__(pool_size, strides, padding, False, _fmt(data_format), name, input_shape,
                         trainable)
        self._explicit_format = data_format is not None

    def get_config(self):
        config = super().get_config()
        config.pop("count_include_pad")
        return config


class GlobalAveragePooling2D(_L.GlobalAvgPool2D):
    """keras.layers.GlobalAveragePooling2D: the mean of each channel, (N, C)."""

    _registered_name = "keras.GlobalAveragePooling2D"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        if keepdims:
            raise NotImplementedError("GlobalAveragePooling2D: keepdims=True is not supported by fastconv")
        name, input_shape, trainable = _keras_kwargs("GlobalAveragePooling2D", kwargs)
        super().__init__(name=name, input_shape=input_shape, data_format=_fmt(data_format),
                         trainable=trainable)
        self._explicit_format = data_format is not None


class ZeroPadding2D(_L.ZeroPadding2D):
    """keras.layers.ZeroPadding2D: padding an int, (h, w) or ((top, bottom), (left, right))."""

    _registered_name = "keras.ZeroPadding2D"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("ZeroPadding2D", kwargs)
        super().__init__(padding, _fmt(data_format), name, input_shape, trainable)
        self._explicit_format = data_format is not None


class Flatten(_L.Flatten):
    """keras.layers.Flatten: images flatten in H, W, C order, as Keras flattens NHWC."""

    _registered_name = "keras.Flatten"

    def __init__(self, data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("Flatten", kwargs)
        super().__init__(_fmt(data_format), name, input_shape, trainable)
        self._explicit_format = data_format is not None


class Dropout(_L.Dropout):
    """keras.layers.Dropout(rate, noise_shape=None, seed=None)."""

    _registered_name = "keras.Dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if noise_shape is not None:
            raise NotImplementedError("Dropout: noise_shape is not supported by fastconv")
        name, input_shape, trainable = _keras_kwargs("Dropout", kwargs)
        super().__init__(rate, seed, name, input_shape, trainable)


class Activation(_L.Activation):
    """keras.layers.Activation(activation): "relu", "tanh", "sigmoid", "softmax", ..."""

    _registered_name = "keras.Activation"

    def __init__(self, activation, **kwargs):
        name, input_shape, trainable = _keras_kwargs("Activation", kwargs)
        super().__init__(activation, name, input_shape, trainable)


class ReLU(_L.ReLU):
    """keras.layers.ReLU() (max_value, negative_slope and threshold at their defaults only)."""

    _registered_name = "keras.ReLU"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        if max_value is not None or negative_slope or threshold:
            raise NotImplementedError("ReLU: max_value, negative_slope and threshold are not "
                                      "supported by fastconv (use LeakyReLU for a slope)")
        name, input_shape, trainable = _keras_kwargs("ReLU", kwargs)
        super().__init__(name, input_shape, trainable)


class Softmax(_L.Softmax):
    """keras.layers.Softmax(axis=-1)."""

    _registered_name = "keras.Softmax"

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise NotImplementedError("Softmax: only axis=-1 is supported by fastconv")
        name, input_shape, trainable = _keras_kwargs("Softmax", kwargs)
        super().__init__(name, input_shape, trainable)


class Add(_L.Add):
    """keras.layers.Add: the sum of a list of inputs of one shape."""

    _registered_name = "keras.Add"

    def __init__(self, **kwargs):
        name, input_shape, trainable = _keras_kwargs("Add", kwargs)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)


class Concatenate(_L.Concatenate):
    """keras.layers.Concatenate(axis=-1): ``axis`` counts in Keras's NHWC order (-1, the
    channels of an image, is fastconv's axis 1)."""

    _registered_name = "keras.Concatenate"

    def __init__(self, axis=-1, data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("Concatenate", kwargs)
        super().__init__(axis, name, input_shape, trainable)
        self.keras_axis = int(axis)
        self.data_format = _fmt(data_format)
        self._explicit_format = data_format is not None

    def _build(self, input_shape):
        ndim = len(input_shape[0]) + 1
        axis = self.keras_axis + ndim if self.keras_axis < 0 else self.keras_axis
        if self.data_format == "channels_last" and ndim == 4 and 1 <= axis <= 3:
            axis = {1: 2, 2: 3, 3: 1}[axis]      # NHWC axis -> NCHW axis
        self.axis = axis
        try:
            return super()._build(input_shape)
        finally:
            self.axis = self.keras_axis

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.keras_axis
        config["data_format"] = self.data_format
        return config


class Conv2DTranspose(_KerasLayouts, _L.Conv2DTranspose):
    """keras.layers.Conv2DTranspose: NHWC by default, kernel (kh, kw, filters, in) in
    get_weights, Keras's output sizes."""

    _registered_name = "keras.Conv2DTranspose"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        name, input_shape, trainable = _keras_kwargs("Conv2DTranspose", kwargs)
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         output_padding=output_padding, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         data_format=_fmt(data_format), name=name, input_shape=input_shape,
                         trainable=trainable)
        self._explicit_format = data_format is not None


class UpSampling2D(_L.UpSampling2D):
    """keras.layers.UpSampling2D(size=(2, 2), interpolation="nearest" or "bilinear"); Keras's
    bilinear is the half-pixel rule (align_corners=False)."""

    _registered_name = "keras.UpSampling2D"

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        kwargs.pop("align_corners", None)
        name, input_shape, trainable = _keras_kwargs("UpSampling2D", kwargs)
        super().__init__(size, interpolation, False, _fmt(data_format), name, input_shape, trainable)
        self._explicit_format = data_format is not None

    def get_config(self):
        config = super().get_config()
        config.pop("align_corners")
        return config


class BatchNormalization(_L.BatchNormalization):
    """keras.layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001, center=True,
    scale=True): axis -1 is the channels of NHWC images (or the features of (N, F))."""

    _registered_name = "keras.BatchNormalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        for key in ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"):
            if kwargs.pop(key, None) is not None:
                raise NotImplementedError(f"BatchNormalization: {key} is not supported by fastconv")
        if kwargs.pop("synchronized", False) or kwargs.pop("renorm", False):
            raise NotImplementedError("BatchNormalization: synchronized and renorm are not supported")
        data_format = kwargs.pop("data_format", None)
        name, input_shape, trainable = _keras_kwargs("BatchNormalization", kwargs)
        fmt = _fmt(data_format)
        if axis not in (-1, 1, 3) or (axis != -1 and (axis == 3) != (fmt == "channels_last")):
            raise NotImplementedError(f"BatchNormalization: fastconv normalises over the channel "
                                      f"axis (-1 for channels-last data), got axis={axis!r}")
        super().__init__(1 if fmt == "channels_first" else -1, momentum, epsilon, center, scale,
                         beta_initializer, gamma_initializer, moving_mean_initializer,
                         moving_variance_initializer, name, input_shape, trainable, data_format=fmt)
        self.keras_axis = axis

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.keras_axis
        return config


class LeakyReLU(_L.LeakyReLU):
    """keras.layers.LeakyReLU(negative_slope=0.3) (Keras 2's ``alpha`` is taken too)."""

    _registered_name = "keras.LeakyReLU"

    def __init__(self, negative_slope=0.3, **kwargs):
        alpha = kwargs.pop("alpha", None)
        name, input_shape, trainable = _keras_kwargs("LeakyReLU", kwargs)
        super().__init__(negative_slope if alpha is None else alpha, name, input_shape, trainable)


class ELU(_L.ELU):
    """keras.layers.ELU(alpha=1.0)."""

    _registered_name = "keras.ELU"

    def __init__(self, alpha=1.0, **kwargs):
        name, input_shape, trainable = _keras_kwargs("ELU", kwargs)
        super().__init__(alpha, name, input_shape, trainable)


class Reshape(_L.Reshape):
    """keras.layers.Reshape(target_shape): in Keras's order (an image's values H, W, C; a 3-D
    target is (H, W, C))."""

    _registered_name = "keras.Reshape"

    def __init__(self, target_shape, data_format=None, **kwargs):
        name, input_shape, trainable = _keras_kwargs("Reshape", kwargs)
        super().__init__(target_shape, _fmt(data_format), name, input_shape, trainable)
        self._explicit_format = data_format is not None


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):  # noqa: N802
    """keras.Input: a symbolic input of per-sample ``shape`` in the default image layout
    (channels-last: (H, W, C))."""
    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise ValueError("Input: give shape= (per sample, without the batch)")
    if dtype not in (None, "float32"):
        raise NotImplementedError(f"Input: fastconv computes in float32, not {dtype!r}")
    fmt = _backend.image_data_format()
    check_image_layout(shape, fmt == "channels_last", "Input")
    return _Input(tuple(shape), name=name, data_format=fmt)


def add(inputs, **kwargs):
    """The functional form of Add: ``add([a, b])``."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """The functional form of Concatenate: ``concatenate([a, b], axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


# Keras's shorter aliases.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D

for _cls in (Conv2D, Conv2DTranspose, Dense, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
             ZeroPadding2D, UpSampling2D, Flatten, Reshape, Dropout, Activation, ReLU, LeakyReLU, ELU,
             Softmax, BatchNormalization, Add, Concatenate):
    _L.register(_cls)
