"""Metrics reported by Sequential.fit and evaluate. There is one: accuracy.

``accuracy(y_true, y_pred)`` is the fraction of samples whose predicted class is right:
the argmax of each row of y_pred (logits or probabilities: the same argmax) against integer
labels, or against the argmax of one-hot rows; for a single output column, y_pred > 0.5
against y_true > 0.5.
"""
from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "count_correct", "get"]


def count_correct(y_pred, y_true):
    """The number of right predictions in a batch (see ``accuracy``)."""
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        predicted = y_pred.argmax(axis=1)
        if y_true.ndim == 2:
            return int(np.count_nonzero(predicted == y_true.argmax(axis=1)))
        return int(np.count_nonzero(predicted == y_true))
    return int(np.count_nonzero((y_pred.reshape(len(y_pred), -1) > 0.5)
                                == (y_true.reshape(len(y_true), -1) > 0.5)))


def accuracy(y_true, y_pred):
    """Fraction of samples classified correctly (Keras's argument order: targets first)."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    if len(y_pred) != len(y_true):
        raise ValueError(f"accuracy: y_true has {len(y_true)} samples but y_pred has {len(y_pred)}")
    if len(y_pred) == 0:
        return 0.0
    width = y_pred[0].size if y_pred.ndim > 1 else 1
    return count_correct(y_pred, y_true) / (len(y_pred) * (1 if y_pred.ndim == 2 and width > 1 else width))


_BY_NAME = {"accuracy": "accuracy", "acc": "accuracy"}


def get(identifier):
    """The canonical metric name for "accuracy" / "acc"; ValueError for anything else."""
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    if identifier is accuracy:
        return "accuracy"
    raise ValueError(f"unknown metric {identifier!r}; known: accuracy (or 'acc')")
