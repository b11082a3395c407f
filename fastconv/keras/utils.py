"""keras.utils on fastconv: to_categorical, normalize, set_random_seed."""
from __future__ import annotations

import random

import numpy as np

__all__ = ["to_categorical", "normalize", "set_random_seed"]


def to_categorical(x, num_classes=None):
    """One-hot rows (float32) for integer class ids ``x``: shape x.shape + (num_classes,)
    (a trailing axis of size 1 is dropped first, as Keras does)."""
    y = np.asarray(x)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.floor(y) == y)):
        raise ValueError("to_categorical: x must hold integer class ids")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: class id {int(y.max())} is not below num_classes="
                         f"{num_classes}")
    out = np.zeros(y.shape + (int(num_classes),), dtype=np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def normalize(x, axis=-1, order=2):
    """x divided by its ``order``-norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm != 0)


def set_random_seed(seed):
    """Seed Python's, NumPy's and fastconv's default generators (layers built without a
    seeded model draw from the last)."""
    from ..layers import base

    random.seed(seed)
    np.random.seed(seed)
    base.set_random_seed(seed)
