"""Keras-shaped layers on fastconv's kernels, channels-first (NCHW images, OIHW kernels).

One layer set serves every device: a layer's forward and backward call the op set of
fastconv.backend, which runs the C++ kernels on NumPy arrays and the CUDA kernels on fastconv
CUDA tensors. Per-call state (what the backward needs) is returned by ``forward`` and handed
back to ``backward`` by the caller, never kept on the layer, so one layer object can serve
several threads, appear twice in one model, and infer without writing to itself (see
fastconv.layers.base).

The families, one module each:

    convolution   Conv2D, Conv2DTranspose
    pooling       MaxPool2D, AvgPool2D, GlobalAvgPool2D
    core          Dense, Activation, Dropout, RandomTranslation
    activation    ReLU, Tanh, Sigmoid, Softmax, LeakyReLU, ELU, GELU
    normalization BatchNormalization
    reshaping     Flatten, Reshape, ZeroPadding2D, UpSampling2D
    merge         Add, Concatenate

Layouts (DESIGN.md): images NCHW, Conv2D kernels OIHW (filters, in_channels, kh, kw), Dense
kernels (units, in_features), exactly PyTorch's layouts. ``get_weights_keras`` /
``set_weights_keras`` convert to and from Keras's layouts (HWIO kernels, (in, out) dense
kernels). Shapes given to ``build`` and ``input_shape=`` are per sample, without the batch:
(C, H, W) for images, (features,) for vectors. A layer whose ``data_format`` is
"channels_last" takes ``input_shape`` as (H, W, C) and, called on its own, NHWC input; inside a
model the model converts NHWC input to NCHW once, at its boundary.

A layer can be used by itself::

    conv = Conv2D(8, 3, padding="same", activation="relu")
    y = conv(x)                                   # builds from x.shape, runs forward (inference)
    g = conv.gradients(x, np.ones_like(y))        # g.y, g.dx, g.grads == [dkernel, dbias]

or in a graph (fastconv.Input, fastconv.Model), where calling it on symbolic tensors records a
node.
"""
from .activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import ACTIVATIONS, Context, Input, InputLayer, Layer, LayerGradients, SymbolicTensor, TracingError
from .convolution import Conv2D, Conv2DTranspose, Convolution2D, Convolution2DTranspose
from .core import Activation, Dense, Dropout, RandomTranslation
from .merge import Add, Concatenate
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, MaxPool2D,
                      MaxPooling2D)
from .reshaping import Flatten, Reshape, UpSampling2D, ZeroPadding2D

__all__ = [
    "Layer", "Context", "LayerGradients", "SymbolicTensor", "TracingError", "Input", "InputLayer",
    "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "ZeroPadding2D", "Flatten", "Dense",
    "Dropout", "RandomTranslation", "Activation", "ReLU", "Tanh", "Sigmoid", "Softmax", "Add",
    "Concatenate", "Conv2DTranspose", "BatchNormalization", "Reshape", "UpSampling2D", "LeakyReLU",
    "ELU", "GELU", "ACTIVATIONS", "register", "class_name", "get_layer_class", "layer_from_config",
    # Keras-style aliases
    "Convolution2D", "Convolution2DTranspose", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D",
]

_LAYER_CLASSES = {}


def register(cls):
    """Make a Layer subclass loadable by name (``get_layer_class``, saved models); returns it,
    so it can decorate a user's own layer class."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register: expected a Layer subclass, got {cls!r}")
    _LAYER_CLASSES[class_name(cls)] = cls
    return cls


def class_name(cls):
    """The name a layer class is saved and registered under: its ``_registered_name`` when it
    defines one (fastconv.keras's layers: "keras.Conv2D"), else its class name."""
    return cls.__dict__.get("_registered_name", cls.__name__)


for _cls in (InputLayer, Conv2D, Conv2DTranspose, MaxPool2D, AvgPool2D, GlobalAvgPool2D, ZeroPadding2D,
             Flatten, Reshape, UpSampling2D, Dense, Dropout, RandomTranslation, Activation, ReLU, Tanh,
             Sigmoid, Softmax, LeakyReLU, ELU, GELU, BatchNormalization, Add, Concatenate):
    register(_cls)


def get_layer_class(class_name):
    """The layer class called ``class_name`` ("Conv2D", "Dense", ...)."""
    if not isinstance(class_name, str) or class_name not in _LAYER_CLASSES:
        raise ValueError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(_LAYER_CLASSES))}")
    return _LAYER_CLASSES[class_name]


def layer_from_config(entry):
    """A layer from ``{"class_name": ..., "config": {...}}`` (what a saved model holds)."""
    return get_layer_class(entry["class_name"]).from_config(dict(entry["config"]))
