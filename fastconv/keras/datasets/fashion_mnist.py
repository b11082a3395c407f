"""keras.datasets.fashion_mnist: Fashion-MNIST as Keras returns it."""
from __future__ import annotations

__all__ = ["load_data"]


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): uint8 images (60000, 28, 28) and (10000, 28, 28),
    uint8 labels, as keras.datasets.fashion_mnist.load_data() gives them (from Debian's
    dataset-fashion-mnist, FASTCONV_DATA, the cache, or a download; see fastconv.datasets)."""
    from ... import datasets

    return datasets.load_fashion_mnist_keras(path)
