"""keras.datasets.mnist: the MNIST digits as Keras returns them."""
from __future__ import annotations

__all__ = ["load_data"]


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): uint8 images (60000, 28, 28) and (10000, 28, 28),
    uint8 labels (60000,) and (10000,), as keras.datasets.mnist.load_data() gives them.

    path: a folder holding the four IDX files (else fastconv finds them: FASTCONV_DATA, its
    cache, the copy shipped with the package; see fastconv.datasets)."""
    from ... import datasets

    return datasets.load_mnist_keras(path)
