"""Loss functions for fastconv's models.

A loss object has ``forward_backward(output, target) -> (mean loss, d loss / d output)``, the
one call a training step makes, and Keras's ``loss(y_true, y_pred) -> float`` for use on its
own. Look one up by name with ``get``:

    name                               target                 model output it expects
    sparse_categorical_crossentropy    int class ids (N,)     logits (N, classes)
    categorical_crossentropy           one-hot rows (N, C)    logits (N, classes)
    mean_squared_error  ("mse")        same shape as output   anything
    mean_absolute_error ("mae")        same shape as output   anything

The cross-entropy losses take **logits** (``expects_logits``): the model hands them the
input of its final softmax when it ends in one (a Softmax layer or Dense(activation=
"softmax")), or its raw output when it does not, and the loss applies the softmax itself.
That is exact and numerically stable (log-sum-exp), and the gradient is the familiar
(softmax - onehot) / N. Sparse cross-entropy runs in the compiled softmax_cross_entropy kernel.
"""
from __future__ import annotations

import numpy as np

from .functional import _backend

__all__ = [
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "MeanSquaredError",
    "MeanAbsoluteError", "sparse_categorical_crossentropy", "categorical_crossentropy",
    "mean_squared_error", "mean_absolute_error", "get",
]


class Loss:
    """Base class. Subclasses implement ``forward_backward(output, target)``."""

    name = "loss"
    expects_logits = False   # True: the model passes the logits before any final softmax
    sparse_labels = False    # True: targets are int class ids (N,)

    def forward_backward(self, output, target):  # pragma: no cover - abstract
        """(mean loss as a float, gradient w.r.t. output as a float32 array)."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """The mean loss of predictions ``y_pred`` against ``y_true`` (Keras's argument order)."""
        loss, _ = self.forward_backward(np.ascontiguousarray(y_pred, dtype=np.float32),
                                        self.prepare_target(y_true, np.shape(y_pred)))
        return float(loss)

    def prepare_target(self, y, output_shape, owner="loss"):
        """Check and convert targets once (before training): float32 of the output's shape."""
        y = np.ascontiguousarray(y, dtype=np.float32)
        if y.shape[1:] != tuple(output_shape[1:]):
            if y.ndim == 1 and tuple(output_shape[1:]) == (1,):
                return y.reshape(-1, 1)
            raise ValueError(f"{owner}: {self.name} needs targets shaped like the model output "
                             f"(N, {', '.join(map(str, output_shape[1:]))}) but y has shape {y.shape}")
        return y

    def get_config(self):
        """The name ``get`` turns back into this loss."""
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"


class SparseCategoricalCrossentropy(Loss):
    """Mean cross-entropy of softmax(logits) against integer class ids.

    loss = mean_i (logsumexp(z_i) - z_i[y_i]);  dlogits = (softmax(z) - onehot(y)) / N.
    """

    name = "sparse_categorical_crossentropy"
    expects_logits = True
    sparse_labels = True

    def forward_backward(self, logits, labels):
        loss, dlogits = _backend(logits).softmax_cross_entropy(logits, labels)
        return float(loss), dlogits

    def prepare_target(self, y, output_shape, owner="loss"):
        """Labels as contiguous int64 (N,), each in [0, classes)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{owner}: {self.name} needs integer class ids of shape (N,) but y has "
                             f"shape {y.shape} (one-hot targets go with categorical_crossentropy)")
        if y.dtype.kind == "f":
            if y.size and not np.all(np.floor(y) == y):
                raise ValueError(f"{owner}: labels must be whole class ids, got non-integer values")
        elif y.dtype.kind not in "iu":
            raise TypeError(f"{owner}: labels must be integers, got dtype {y.dtype}")
        classes = int(output_shape[-1])
        if len(output_shape) != 2:
            raise ValueError(f"{owner}: {self.name} needs a model output of shape (N, classes), the "
                             f"model gives (N, {', '.join(map(str, output_shape[1:]))})")
        if y.size:
            low, high = y.min(), y.max()
            if low < 0 or high >= classes:
                bad = low if low < 0 else high
                raise ValueError(f"{owner}: label {int(bad)} is out of range: the model has {classes} "
                                 f"outputs, so labels must be in 0..{classes - 1}")
        return np.ascontiguousarray(y, dtype=np.int64)


class CategoricalCrossentropy(Loss):
    """Mean cross-entropy of softmax(logits) against probability rows (one-hot targets).

    loss = mean_i sum_c -t_ic log softmax(z_i)_c;  dlogits = (softmax(z) sum_c t_ic - t) / N.
    """

    name = "categorical_crossentropy"
    expects_logits = True

    def forward_backward(self, logits, target):
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        log_probs = shifted - np.log(total)
        loss = -float(np.sum(target * log_probs)) / n
        probs = exp / total
        grad = probs * target.sum(axis=1, keepdims=True)
        grad -= target
        grad *= np.float32(1.0 / n)
        return loss, grad.astype(np.float32, copy=False)


class MeanSquaredError(Loss):
    """mean((output - target)^2) over every element; gradient 2 (output - target) / size."""

    name = "mean_squared_error"

    def forward_backward(self, output, target):
        diff = output - target
        loss = float(np.dot(diff.ravel(), diff.ravel())) / diff.size
        diff *= np.float32(2.0 / diff.size)
        return loss, diff


class MeanAbsoluteError(Loss):
    """mean(|output - target|) over every element; gradient sign(output - target) / size."""

    name = "mean_absolute_error"

    def forward_backward(self, output, target):
        diff = output - target
        loss = float(np.abs(diff).sum()) / diff.size
        grad = np.sign(diff)
        grad *= np.float32(1.0 / diff.size)
        return loss, grad


sparse_categorical_crossentropy = SparseCategoricalCrossentropy
categorical_crossentropy = CategoricalCrossentropy
mean_squared_error = MeanSquaredError
mean_absolute_error = MeanAbsoluteError

_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}


def get(identifier):
    """A loss from a name ("sparse_categorical_crossentropy", "mse", ...), a class or an object.

    Raises ValueError for an unknown name, naming the known ones.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown loss {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    raise TypeError(f"loss must be a name or a fastconv.losses.Loss, got {type(identifier).__name__}")
