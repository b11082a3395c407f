"""Loss functions for fastconv's models, with Keras's names, arguments and defaults.

    class                                         per-sample function           target
    BinaryCrossentropy(from_logits=False,         binary_crossentropy           0/1 (or soft) values,
        label_smoothing=0.0)                                                    output's shape
    CategoricalCrossentropy(from_logits=False,    categorical_crossentropy      one-hot rows (N, C)
        label_smoothing=0.0)
    SparseCategoricalCrossentropy(                sparse_categorical_crossentropy  class ids (N,)
        from_logits=False)
    MeanSquaredError()                            mean_squared_error (mse)      output's shape
    MeanAbsoluteError()                           mean_absolute_error (mae)     output's shape
    Huber(delta=1.0)                              huber                         output's shape

Every class also takes ``reduction`` and ``name``. A per-sample function returns one value per
sample: the regression losses and binary cross-entropy average over the last axis, the
categorical ones sum over the class axis (``axis``, the last by default), as Keras does.

Reduction (Keras 3's values): "sum_over_batch_size" (the default; "auto" and "mean", Keras 2's
names, mean the same) is the sum of the weighted per-sample losses divided by their number;
"sum" is the sum; "mean_with_sample_weight" divides by the sum of the weights instead;
"none" (or None) keeps them all.

What a fit loop calls:

    loss.forward_backward(output, target, sample_weight=None, logits=None) -> (loss, grad)
        the reduced loss (a float) and its gradient w.r.t. ``output`` (float32, output's
        shape). logits=True: ``output`` is pre-activation logits; False: probabilities
        (clipped to [1e-7, 1 - 1e-7] as Keras does); None: ``expects_logits``. With
        reduction="none" the loss is the sum of the per-sample losses (and grad its gradient).
    loss.prepare_target(y, output_shape)  -> targets checked and converted once, before training
    loss.fusable_activation               -> "softmax", "sigmoid" or None
    loss.feed(last_activation)            -> "fuse", "logits" or "output": how to feed it

``from_logits`` is False by default, as in Keras. A loss looked up by its string name
(``get("sparse_categorical_crossentropy")``, which ``compile(loss="...")`` does) has
``from_logits=None``, "auto": a model that ends in the loss's activation (a softmax for the
categorical losses, a sigmoid for binary cross-entropy) trains on the logits before it (the
loop fuses the two), and a model that ends in anything else, such as a plain Dense, is read
as giving logits. Fusing is exact and numerically stable (log-sum-exp); the gradient is the
familiar (softmax - onehot) / N. Sparse cross-entropy on logits without weights runs in the
compiled softmax_cross_entropy kernel.
"""
from __future__ import annotations

import numbers

import numpy as np

from .functional import _backend

__all__ = [
    "Loss", "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "Huber", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "mean_squared_error",
    "mean_absolute_error", "huber", "mse", "mae", "get", "serialize", "deserialize",
    "EPSILON", "REDUCTIONS",
]

EPSILON = 1e-7   # Keras's backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON]

REDUCTIONS = ("sum_over_batch_size", "sum", "mean_with_sample_weight", "none")
_REDUCTION_ALIASES = {"auto": "sum_over_batch_size", "mean": "sum_over_batch_size", None: "none"}


def _standardize_reduction(reduction, owner):
    reduction = _REDUCTION_ALIASES.get(reduction, reduction)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {', '.join(REDUCTIONS)} (or 'auto', "
                         f"'mean', None), got {reduction!r}")
    return reduction


def _label_smoothing(value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be a number in [0, 1], got {value!r}")
    return float(value)


def _from_logits(value, owner):
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: from_logits must be True, False or None (auto), got {value!r}")
    return None if value is None else bool(value)


def _class_axis_last(array, axis):
    """``array`` with its class axis moved last (a view)."""
    return array if axis in (-1, array.ndim - 1) else np.moveaxis(array, axis, -1)


def _log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


class Loss:
    """Base class of the losses (see the module docstring for the contract).

    A subclass implements ``_per_sample(target, output, logits)`` -> (values, grad): the
    per-sample losses (float64, the output's shape less its last axis) and the gradient of
    their sum w.r.t. ``output`` (float64, the output's shape), both with the class axis last.
    The base class applies sample weights and the reduction.
    """

    name = "loss"
    fusable_activation = None  # the final activation a loop may fuse into this loss
    sparse_labels = False      # True: targets are int class ids (N,)
    from_logits = False        # the cross-entropy losses set it per object
    axis = -1                  # the class axis of the categorical losses

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if name is not None:
            self.name = str(name)
        self.reduction = _standardize_reduction(reduction, type(self).__name__)

    @property
    def expects_logits(self):
        """Whether ``forward_backward`` reads its output as logits unless told (logits=None):
        True for the cross-entropy losses unless from_logits=False."""
        return self.fusable_activation is not None and self.from_logits is not False

    def feed(self, last_activation):
        """How a loop whose model ends in ``last_activation`` ("softmax", "sigmoid", None, ...)
        feeds this loss: "fuse" (skip that activation, pass its input with logits=True),
        "logits" (pass the output with logits=True) or "output" (pass it with logits=False)."""
        if self.fusable_activation is None:
            return "output"
        if last_activation == self.fusable_activation and self.from_logits is not True:
            return "fuse"
        return "logits" if self.expects_logits else "output"

    # --- what the loop calls ----------------------------------------------------------------
    def forward_backward(self, output, target, sample_weight=None, logits=None):
        """(loss as a float, gradient w.r.t. output as a float32 array of output's shape).

        output: the model's output, or the logits before its final activation (logits=True).
        target: as ``prepare_target`` returns it. sample_weight: None or one weight per
        sample (N,). logits: None means ``expects_logits``.
        """
        logits = self._check_logits(logits)
        values, grad = self._compute(target, output, logits, need_grad=True)
        loss, scale = self._reduce(values, sample_weight, output)
        grad *= scale[..., None] if np.ndim(scale) else scale
        grad = np.ascontiguousarray(self._class_axis_back(grad), dtype=np.float32)
        return loss, grad

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of ``y_pred`` against ``y_true`` (Keras's order), reduced as
        ``reduction`` says: a float, or the per-sample losses (float32) for "none"."""
        y_pred = np.asarray(y_pred)
        target = self.prepare_target(y_true, y_pred.shape)
        if type(self)._per_sample is Loss._per_sample:   # a loss with only forward_backward
            return float(self.forward_backward(np.ascontiguousarray(y_pred, dtype=np.float32), target)[0])
        values, _ = self._compute(target, y_pred, self._check_logits(None), need_grad=False)
        if self.reduction == "none":
            weights = self._weights(sample_weight, values.shape, y_pred)
            return (values if weights is None else values * weights).astype(np.float32)
        return self._reduce(values, sample_weight, y_pred)[0]

    def call(self, y_true, y_pred):
        """The per-sample losses (float32), unweighted and unreduced (Keras's Loss.call)."""
        y_pred = np.asarray(y_pred)
        target = self.prepare_target(y_true, y_pred.shape)
        values, _ = self._compute(target, y_pred, self._check_logits(None), need_grad=False)
        return values.astype(np.float32)

    def prepare_target(self, y, output_shape, owner="loss"):
        """Check and convert targets once (before training): float32 of the output's shape."""
        y = np.ascontiguousarray(y, dtype=np.float32)
        if y.shape[1:] != tuple(output_shape[1:]):
            if y.ndim + 1 == len(output_shape) and tuple(output_shape[-1:]) == (1,) \
                    and y.shape[1:] == tuple(output_shape[1:-1]):
                return y.reshape(y.shape + (1,))
            raise ValueError(f"{owner}: {self.name} needs targets shaped like the model output "
                             f"(N, {', '.join(map(str, output_shape[1:]))}) but y has shape {y.shape}")
        return y

    # --- saving -----------------------------------------------------------------------------
    def get_config(self):
        """The constructor's arguments as a JSON-able dict (Keras's form); ``from_config``,
        or ``get`` of it, makes the loss again."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        """The loss ``get_config`` describes."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    # --- the arithmetic ---------------------------------------------------------------------
    def _check_logits(self, logits):
        if logits is None:
            return self.expects_logits
        if logits and self.fusable_activation is None:
            raise ValueError(f"{self.name}: logits=True means nothing for this loss (it fuses no "
                             "activation); pass the model's output")
        return bool(logits)

    def _compute(self, target, output, logits, need_grad):
        output = _class_axis_last(np.asarray(output, dtype=np.float64), self._axis_of(output))
        target = np.asarray(target)
        if not self.sparse_labels:
            target = _class_axis_last(target.astype(np.float64, copy=False), self._axis_of(output))
        return self._per_sample(target, output, logits, need_grad)

    def _axis_of(self, output):
        return self.axis if self.axis >= 0 else np.ndim(output) + self.axis

    def _class_axis_back(self, grad):
        axis = self._axis_of(grad)
        return grad if axis == grad.ndim - 1 else np.moveaxis(grad, -1, axis)

    def _per_sample(self, target, output, logits, need_grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def _weights(self, sample_weight, shape, output):
        """Sample weights broadcast to the per-sample losses' ``shape`` (None if not given)."""
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape == tuple(shape):
            return w
        n = np.shape(output)[0] if np.ndim(output) else 0
        if w.ndim == 2 and w.shape[1] == 1:
            w = w[:, 0]
        if w.ndim == 1 and len(shape) >= 1 and w.shape[0] == n == shape[0]:
            return w.reshape((n,) + (1,) * (len(shape) - 1)) * np.ones(shape)
        raise ValueError(f"{self.name}: sample_weight must have one weight per sample, shape "
                         f"({n},), or the per-sample losses' shape {tuple(shape)}; got {w.shape}")

    def _reduce(self, values, sample_weight, output):
        """(reduced loss as a float, d loss / d value for each per-sample loss)."""
        weights = self._weights(sample_weight, values.shape, output)
        weighted = values if weights is None else values * weights
        scale = np.ones(values.shape) if weights is None else weights
        if self.reduction in ("sum", "none"):
            divisor = 1.0
        elif self.reduction == "mean_with_sample_weight" and weights is not None:
            divisor = float(weights.sum())
        else:
            divisor = float(values.size)
        if divisor == 0.0:   # Keras's divide_no_nan: an empty batch, or weights summing to 0
            return 0.0, np.zeros(values.shape)
        return float(weighted.sum()) / divisor, scale / divisor


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, averaged over the last axis: -(y log p + (1 - y) log(1 - p)).

    from_logits: True: the output is logits (p = sigmoid(output)), computed stably as
        max(z, 0) - z y + log(1 + exp(-|z|)); False (Keras's default): the output is p,
        clipped to [1e-7, 1 - 1e-7]; None: "auto" (see the module docstring).
    label_smoothing: targets become y (1 - s) + s / 2.
    """

    name = "binary_crossentropy"
    fusable_activation = "sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        super().__init__(name, reduction)
        self.from_logits = _from_logits(from_logits, "BinaryCrossentropy")
        self.label_smoothing = _label_smoothing(label_smoothing, "BinaryCrossentropy")
        self.axis = int(axis)

    def _per_sample(self, target, output, logits, need_grad):
        y = target
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        k = output.shape[-1] if output.ndim else 1
        if logits:
            z = output
            values = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
            grad = (_sigmoid(z) - y) / k if need_grad else None
        else:
            p = np.clip(output, EPSILON, 1.0 - EPSILON)
            values = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
            grad = None
            if need_grad:
                inside = (output >= EPSILON) & (output <= 1.0 - EPSILON)
                grad = np.where(inside, (1.0 - y) / (1.0 - p) - y / p, 0.0) / k
        return values.mean(axis=-1), grad

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class CategoricalCrossentropy(Loss):
    """Cross-entropy against probability rows (one-hot targets): -sum_c y_c log p_c.

    from_logits: True: p = softmax(output) (computed as log-softmax); False (Keras's default):
        the output rows are probabilities, normalised to sum to 1 and clipped to
        [1e-7, 1 - 1e-7] as Keras does; None: "auto" (see the module docstring).
    label_smoothing: targets become y (1 - s) + s / classes.
    axis: the class axis (the last by default).
    On logits the gradient of one sample's loss is softmax(z) sum_c y_c - y.
    """

    name = "categorical_crossentropy"
    fusable_activation = "softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        super().__init__(name, reduction)
        self.from_logits = _from_logits(from_logits, type(self).__name__)
        self.label_smoothing = _label_smoothing(label_smoothing, type(self).__name__)
        self.axis = int(axis)

    def _smoothed(self, y, classes):
        if self.label_smoothing:
            return y * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        return y

    def _per_sample(self, target, output, logits, need_grad):
        y = self._smoothed(target, output.shape[-1])
        return _categorical(y, output, logits, need_grad)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


def _categorical(y, output, logits, need_grad):
    """Per-sample cross-entropy of ``output`` (class axis last) against distributions ``y``,
    and the gradient of the sum w.r.t. ``output``."""
    if logits:
        log_p = _log_softmax(output)
        values = -(y * log_p).sum(axis=-1)
        grad = np.exp(log_p) * y.sum(axis=-1, keepdims=True) - y if need_grad else None
        return values, grad
    total = output.sum(axis=-1, keepdims=True)
    q = output / total
    clipped = np.clip(q, EPSILON, 1.0 - EPSILON)
    values = -(y * np.log(clipped)).sum(axis=-1)
    grad = None
    if need_grad:
        # d/do_j of -sum_c y_c log clip(o_c / S): only unclipped classes carry a gradient;
        # with u_c = 1 there: (sum_c y_c u_c - y_j u_j / q_j) / S
        inside = (q >= EPSILON) & (q <= 1.0 - EPSILON)
        yu = np.where(inside, y, 0.0)
        grad = (yu.sum(axis=-1, keepdims=True) - yu / np.where(inside, q, 1.0)) / total
    return values, grad


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy against integer class ids: -log p[label].

    from_logits: as CategoricalCrossentropy's. On logits without sample weights (the common
    case) it runs in the compiled softmax_cross_entropy kernel:
    loss = mean_i (logsumexp(z_i) - z_i[y_i]);  dlogits = (softmax(z) - onehot(y)) / N.
    """

    name = "sparse_categorical_crossentropy"
    fusable_activation = "softmax"
    sparse_labels = True

    def __init__(self, from_logits=False, axis=-1, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        super().__init__(name, reduction)
        self.from_logits = _from_logits(from_logits, "SparseCategoricalCrossentropy")
        self.axis = int(axis)

    def forward_backward(self, output, target, sample_weight=None, logits=None):
        logits = self._check_logits(logits)
        if logits and sample_weight is None and self.reduction == "sum_over_batch_size" \
                and np.ndim(output) == 2 and self._axis_of(output) == 1:
            loss, dlogits = _backend(output).softmax_cross_entropy(output, target)
            return float(loss), dlogits
        return super().forward_backward(output, target, sample_weight, logits)

    def _per_sample(self, target, output, logits, need_grad):
        y = np.zeros(output.shape)
        np.put_along_axis(y, np.asarray(target, dtype=np.int64)[..., None], 1.0, axis=-1)
        return _categorical(y, output, logits, need_grad)

    def prepare_target(self, y, output_shape, owner="loss"):
        """Labels as contiguous int64, one per sample (N,) (or per position for outputs with
        more axes), each in [0, classes)."""
        y = np.asarray(y)
        output_shape = tuple(output_shape)
        axis = self.axis if self.axis >= 0 else len(output_shape) + self.axis
        if not 0 <= axis < len(output_shape) or len(output_shape) < 2:
            raise ValueError(f"{owner}: {self.name} needs a model output of shape (N, classes), the "
                             f"model gives (N, {', '.join(map(str, output_shape[1:]))})")
        want = output_shape[:axis] + output_shape[axis + 1:]
        if y.ndim == len(output_shape) and y.shape[axis] == 1:
            y = np.squeeze(y, axis=axis)
        if y.shape[1:] != want[1:]:
            if len(output_shape) == 2:
                raise ValueError(f"{owner}: {self.name} needs integer class ids of shape (N,) but y "
                                 f"has shape {y.shape} (one-hot targets go with "
                                 "categorical_crossentropy)")
            raise ValueError(f"{owner}: {self.name} needs integer class ids of shape "
                             f"(N, {', '.join(map(str, want[1:]))}) for a model output of shape "
                             f"(N, {', '.join(map(str, output_shape[1:]))}); y has shape {y.shape}")
        if y.dtype.kind == "f":
            if y.size and not np.all(np.floor(y) == y):
                raise ValueError(f"{owner}: labels must be whole class ids, got non-integer values")
        elif y.dtype.kind not in "iu":
            raise TypeError(f"{owner}: labels must be integers, got dtype {y.dtype}")
        classes = int(output_shape[axis])
        if y.size:
            low, high = y.min(), y.max()
            if low < 0 or high >= classes:
                bad = low if low < 0 else high
                raise ValueError(f"{owner}: label {int(bad)} is out of range: the model has {classes} "
                                 f"outputs, so labels must be in 0..{classes - 1}")
        return np.ascontiguousarray(y, dtype=np.int64)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "axis": self.axis}


class MeanSquaredError(Loss):
    """mean((output - target)^2) over the last axis; gradient 2 (output - target) / width."""

    name = "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name, reduction)

    def _per_sample(self, target, output, logits, need_grad):
        diff = output - target
        k = diff.shape[-1] if diff.ndim else 1
        return (diff * diff).mean(axis=-1), (2.0 / k) * diff if need_grad else None


class MeanAbsoluteError(Loss):
    """mean(|output - target|) over the last axis; gradient sign(output - target) / width."""

    name = "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(name, reduction)

    def _per_sample(self, target, output, logits, need_grad):
        diff = output - target
        k = diff.shape[-1] if diff.ndim else 1
        return np.abs(diff).mean(axis=-1), np.sign(diff) / k if need_grad else None


class Huber(Loss):
    """Huber loss, averaged over the last axis: x = output - target,
    0.5 x^2 where |x| <= delta, delta (|x| - 0.5 delta) beyond; gradient clip(x, -delta, delta)."""

    name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(name, reduction)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"Huber: delta must be a positive number, got {delta!r}")
        self.delta = float(delta)

    def _per_sample(self, target, output, logits, need_grad):
        x = output - target
        d = self.delta
        a = np.abs(x)
        values = np.where(a <= d, 0.5 * x * x, d * a - 0.5 * d * d)
        k = x.shape[-1] if x.ndim else 1
        return values.mean(axis=-1), np.clip(x, -d, d) / k if need_grad else None

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "delta": self.delta}


# --------------------------------------------------------------------------------------------
# Per-sample functions (Keras's keras.losses.mean_squared_error and friends)
# --------------------------------------------------------------------------------------------
def _per_sample(loss, y_true, y_pred):
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 0:
        raise ValueError(f"{loss.name}: y_pred must have at least one axis, got a scalar")
    target = np.asarray(y_true)
    if not loss.sparse_labels:
        target = target.astype(np.float64)
        if target.shape != y_pred.shape:
            if target.shape + (1,) == y_pred.shape:        # Keras squeezes/expands a last 1
                target = target[..., None]
            elif target.shape == y_pred.shape + (1,):
                target = target[..., 0]
            else:
                raise ValueError(f"{loss.name}: y_true has shape {target.shape} but y_pred has shape "
                                 f"{y_pred.shape}")
    else:
        target = loss.prepare_target(target, y_pred.shape, owner=loss.name)
    values, _ = loss._compute(target, y_pred, loss._check_logits(None), need_grad=False)
    return values.astype(np.float32)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error: mean((y_pred - y_true)^2) over the last axis."""
    return _per_sample(MeanSquaredError(), y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean absolute error: mean(|y_pred - y_true|) over the last axis."""
    return _per_sample(MeanAbsoluteError(), y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    """Per-sample Huber loss (see Huber), averaged over the last axis."""
    return _per_sample(Huber(delta), y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample binary cross-entropy, averaged over ``axis`` (see BinaryCrossentropy)."""
    loss = BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)
    if axis not in (-1, np.ndim(y_pred) - 1):
        y_true, y_pred = np.moveaxis(np.asarray(y_true), axis, -1), np.moveaxis(np.asarray(y_pred), axis, -1)
    return _per_sample(loss, y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample categorical cross-entropy over the class ``axis`` (see CategoricalCrossentropy)."""
    loss = CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
    return _per_sample(loss, y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1):
    """Per-sample cross-entropy against integer class ids (see SparseCategoricalCrossentropy)."""
    return _per_sample(SparseCategoricalCrossentropy(from_logits=from_logits, axis=axis), y_true, y_pred)


mse = mean_squared_error
mae = mean_absolute_error

# --------------------------------------------------------------------------------------------
# Looking losses up
# --------------------------------------------------------------------------------------------
_CLASSES = (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
            MeanSquaredError, MeanAbsoluteError, Huber)
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES}
# Names as compile(loss="...") takes them; the cross-entropy ones read the model's output "auto".
_BY_NAME = {
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
}
_BY_FUNCTION = {
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError, huber: Huber,
}


def _by_name(name):
    cls = _BY_NAME[name]
    return cls(from_logits=None) if cls.fusable_activation is not None else cls()


def serialize(loss):
    """{"class_name": ..., "config": ...}: what ``get`` (or ``deserialize``) turns back into it."""
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize: expected a fastconv.losses.Loss, got {type(loss).__name__}")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config):
    """The loss ``serialize`` described."""
    if not isinstance(config, dict) or config.get("class_name") not in _BY_CLASS_NAME:
        raise ValueError(f"unknown loss {config!r}; known classes: {', '.join(sorted(_BY_CLASS_NAME))}")
    return _BY_CLASS_NAME[config["class_name"]].from_config(dict(config.get("config", {})))


def get(identifier):
    """A loss object from any of what ``compile(loss=...)`` takes.

    A name: "sparse_categorical_crossentropy", "categorical_crossentropy",
    "binary_crossentropy" (these with from_logits=None, "auto"), "mse" / "mean_squared_error",
    "mae" / "mean_absolute_error", "huber"; a class name ("CategoricalCrossentropy": that
    class with its defaults, as Keras); a Loss class or object; one of this module's
    per-sample functions (its class with the defaults); a dict from ``serialize`` or a
    ``get_config()``. Raises ValueError for an unknown name (naming the known ones) and
    TypeError for anything else.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _BY_CLASS_NAME:
            return _BY_CLASS_NAME[identifier]()
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown loss {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _by_name(key)
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return deserialize(identifier)
        config = dict(identifier)
        name = config.get("name")
        cls = _BY_NAME.get(name.lower()) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"unknown loss config {identifier!r}; give "
                             "{'class_name': ..., 'config': ...} (what serialize() writes)")
        return cls.from_config(config)
    if callable(identifier) and identifier in _BY_FUNCTION:
        return _BY_FUNCTION[identifier]()
    if callable(identifier):
        raise TypeError(f"loss: a plain function ({getattr(identifier, '__name__', identifier)!r}) "
                        "gives no gradient; subclass fastconv.losses.Loss (forward_backward) instead")
    raise TypeError(f"loss must be a name or a fastconv.losses.Loss, got {type(identifier).__name__}")
