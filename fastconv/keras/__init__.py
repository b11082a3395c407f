"""fastconv.keras: Keras's API on fastconv's kernels.

A Keras program runs here after changing only its imports::

    from fastconv import keras                       # instead of: from tensorflow import keras
    from fastconv.keras import layers                # instead of: from keras import layers

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train = x_train[..., None].astype("float32") / 255
    model = keras.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, validation_split=0.1)

As in Keras, images are channels-last by default (NHWC arrays, (H, W, C) shapes; see
keras.backend.image_data_format), and weights come and go in Keras's layouts. The kernels run
channels-first all the same: a model converts its inputs once at its boundary. fastconv's own
layers (fastconv.layers) stay channels-first.

What is here: layers, models (Sequential, Model, load_model), Input, optimizers, losses,
metrics, callbacks, initializers, datasets (mnist, fashion_mnist), utils (to_categorical,
set_random_seed) and backend (image_data_format).
"""
from .. import callbacks, initializers, losses, metrics, optimizers
from . import backend, datasets, layers, models, utils
from .layers import Input
from .models import Model, Sequential, load_model

__all__ = ["layers", "models", "Input", "Model", "Sequential", "load_model", "optimizers",
           "losses", "metrics", "callbacks", "initializers", "datasets", "utils", "backend"]
