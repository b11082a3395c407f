"""Metrics: stateful metric objects as Keras's, and the fit loop's accuracy fast path.

A metric accumulates over batches and reports one number:

    m = get("accuracy")                  # or SparseCategoricalAccuracy(), Precision(), ...
    m.reset_state()
    m.update_state(y_true, y_pred, sample_weight=None)    # per batch
    m.result()                           # -> float, over everything since reset_state
    m.name                               # the key in the logs: "accuracy", "val_" + it, ...

    class                                   name (default)                     per sample
    AutoAccuracy   (the string "accuracy")  "accuracy" (or "acc")              see below
    Accuracy                                "accuracy"          y_pred == y_true exactly
    BinaryAccuracy(threshold=0.5)           "binary_accuracy"   (y_pred > threshold) == y_true
    CategoricalAccuracy                     "categorical_accuracy"   argmax == argmax(one-hot)
    SparseCategoricalAccuracy               "sparse_categorical_accuracy"  argmax == label
    TopKCategoricalAccuracy(k=5)            "top_k_categorical_accuracy"   label in the top k
    SparseTopKCategoricalAccuracy(k=5)      "sparse_top_k_categorical_accuracy"
    Precision(thresholds=None, top_k=None, class_id=None)   "precision"   TP / (TP + FP)
    Recall(thresholds=None, top_k=None, class_id=None)      "recall"      TP / (TP + FN)
    MeanAbsoluteError                       "mean_absolute_error"   mean |y_pred - y_true|
    MeanSquaredError                        "mean_squared_error"    mean (y_pred - y_true)^2

Names in the logs follow Keras 3's compile: a metric given as a string is logged under that
string (metrics=["mae"] logs "mae", ["mean_absolute_error"] logs "mean_absolute_error",
["acc"] logs "acc"); a metric object under its own name. The string "accuracy" (or "acc")
picks the accuracy that fits the data, as Keras's compile does from the shapes: for an
output with several columns, the argmax against integer labels or against the argmax of
one-hot rows; for one column (or outputs with more axes), y_pred > 0.5 against y_true > 0.5,
element by element (AutoAccuracy; the same rules as the ``accuracy`` function below).

Accuracy, as Keras's, compares values exactly: it is for class-id predictions, not for
probabilities (use "accuracy" for those).

``get_list(metrics)`` turns what ``compile(metrics=...)`` takes (None, one metric, or a list)
into a list of metric objects: a bare string such as "accuracy" is one metric, not a list of
letters. ``count_correct`` and ``accuracy`` are the loop's allocation-free fast path.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "Metric", "MeanMetricWrapper", "AutoAccuracy", "Accuracy", "BinaryAccuracy",
    "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "Precision", "Recall", "MeanAbsoluteError",
    "MeanSquaredError", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "accuracy",
    "count_correct", "get", "get_list", "serialize", "deserialize",
]


# --------------------------------------------------------------------------------------------
# The fit loop's fast path (today's rules)
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Per-sample metric functions (Keras's keras.metrics.binary_accuracy and friends)
# --------------------------------------------------------------------------------------------
def _same_rank(y_true, y_pred):
    """Keras's squeeze_or_expand_to_same_rank: reconcile a trailing axis of length 1."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    return y_true, y_pred


def _sparse_labels(y_true, y_pred):
    """Integer labels with y_pred's shape less its class axis ((N, 1) becomes (N,))."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"labels of shape {y_true.shape} do not fit predictions of shape "
                         f"{y_pred.shape} (one class id per row expected)")
    return y_true


def _in_top_k(labels, y_pred, k):
    """Whether each label's score is among the k largest of its row (ties count as in, as
    Keras's in_top_k): fewer than k scores are strictly larger."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= y_pred.shape[-1]):
        raise ValueError(f"labels must be in 0..{y_pred.shape[-1] - 1}, got {labels.min()}..{labels.max()}")
    target = np.take_along_axis(y_pred, labels[..., None], axis=-1)
    return np.count_nonzero(y_pred > target, axis=-1) < k


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per element: 1.0 where (y_pred > threshold) equals y_true, else 0.0."""
    y_true, y_pred = _same_rank(np.asarray(y_true), np.asarray(y_pred))
    return (y_true == (y_pred > threshold)).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    """Per sample: 1.0 where argmax(y_pred) equals argmax(y_true) (one-hot rows)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"categorical_accuracy: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape} (one-hot rows expected; integer labels go with "
                         "sparse_categorical_accuracy)")
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    """Per sample: 1.0 where argmax(y_pred) equals the integer label."""
    y_pred = np.asarray(y_pred)
    y_true = _sparse_labels(np.asarray(y_true), y_pred)
    return (y_pred.argmax(axis=-1) == y_true).astype(np.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Per sample: 1.0 where the one-hot target's class is among the k highest scores."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"top_k_categorical_accuracy: y_true has shape {y_true.shape} but y_pred has "
                         f"shape {y_pred.shape} (one-hot rows expected)")
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k).astype(np.float32)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Per sample: 1.0 where the integer label's class is among the k highest scores."""
    y_pred = np.asarray(y_pred)
    y_true = _sparse_labels(np.asarray(y_true), y_pred)
    return _in_top_k(y_true, y_pred, k).astype(np.float32)


def _exact_accuracy(y_true, y_pred):
    y_true, y_pred = _same_rank(np.asarray(y_true), np.asarray(y_pred))
    return (y_true == y_pred).astype(np.float32)


def _mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _same_rank(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    return np.abs(y_pred - y_true).mean(axis=-1)


def _mean_squared_error(y_true, y_pred):
    y_true, y_pred = _same_rank(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    return np.square(y_pred - y_true).mean(axis=-1)


# --------------------------------------------------------------------------------------------
# Metric objects
# --------------------------------------------------------------------------------------------
def _sample_weights(sample_weight, shape, owner):
    """Weights broadcast to ``shape`` (the per-sample values'), None if not given."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    if w.shape == tuple(shape):
        return w
    if w.ndim <= len(shape) and w.shape == tuple(shape[:w.ndim]):
        return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)
    raise ValueError(f"{owner}: sample_weight has shape {w.shape}; expected one weight per sample "
                     f"({shape[0] if shape else 1},) or the values' shape {tuple(shape)}")


class Metric:
    """Base class: a running quantity over batches (see the module docstring).

    Subclasses implement ``reset_state``, ``update_state(y_true, y_pred, sample_weight)`` and
    ``result()``; ``_direction`` ("up" or "down") tells callbacks which way is better.
    Calling a metric updates it and returns the result, as in Keras.
    """

    _direction = "up"

    def __init__(self, name=None):
        self.name = name if name is not None else type(self)._default_name()
        self.reset_state()

    @classmethod
    def _default_name(cls):
        return "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")

    def reset_state(self):  # pragma: no cover - abstract
        """Forget everything accumulated."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):  # pragma: no cover - abstract
        """Accumulate one batch."""
        raise NotImplementedError

    def result(self):  # pragma: no cover - abstract
        """The metric over everything since reset_state, a float."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """update_state, then result()."""
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self):
        """The constructor's arguments, JSON-able (``from_config`` makes the metric again)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        """The metric ``get_config`` describes."""
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class MeanMetricWrapper(Metric):
    """The weighted mean of ``fn(y_true, y_pred, **kwargs)`` (per-sample values) over all
    samples seen: sum(w * value) / sum(w), with w = 1 without sample weights."""

    def __init__(self, fn, name=None, direction="up", **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: fn must be callable, got {type(fn).__name__}")
        self._fn = fn
        self._fn_kwargs = kwargs
        self._direction = direction
        super().__init__(name if name is not None else getattr(fn, "__name__", "metric"))

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs), dtype=np.float64)
        weights = _sample_weights(sample_weight, values.shape, self.name)
        if weights is None:
            self.total += float(values.sum())
            self.count += float(values.size)
        else:
            self.total += float((values * weights).sum())
            self.count += float(weights.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


class AutoAccuracy(Metric):
    """What the string "accuracy" means: the argmax of each row against integer labels or the
    argmax of one-hot rows when the output has several columns; y_pred > 0.5 against
    y_true > 0.5, element by element, otherwise (see the module docstring)."""

    def __init__(self, name="accuracy"):
        super().__init__(name)

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred, y_true = np.asarray(y_pred), np.asarray(y_true)
        if len(y_pred) != len(y_true):
            raise ValueError(f"{self.name}: y_true has {len(y_true)} samples but y_pred has {len(y_pred)}")
        if sample_weight is None:
            self.total += count_correct(y_pred, y_true)
            self.count += len(y_pred) * (1 if y_pred.ndim == 2 and y_pred.shape[1] > 1
                                         else (y_pred[0].size if len(y_pred) else 1))
            return
        if y_pred.ndim == 2 and y_pred.shape[1] > 1:
            truth = y_true.argmax(axis=1) if y_true.ndim == 2 else y_true.reshape(-1)
            right = y_pred.argmax(axis=1) == truth
        else:
            right = (y_pred.reshape(len(y_pred), -1) > 0.5) == (y_true.reshape(len(y_true), -1) > 0.5)
        weights = _sample_weights(sample_weight, right.shape, self.name)
        self.total += float((right * weights).sum())
        self.count += float(weights.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0


class Accuracy(MeanMetricWrapper):
    """Keras's Accuracy: how often y_pred equals y_true exactly (for class ids; for
    probabilities or logits use "accuracy", BinaryAccuracy or the categorical ones)."""

    def __init__(self, name="accuracy"):
        super().__init__(_exact_accuracy, name=name)

    def get_config(self):
        return {"name": self.name}


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) equals y_true, over every element."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(binary_accuracy, name=name, threshold=float(threshold))
        self.threshold = float(threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals argmax(y_true), y_true one-hot rows."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name=name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals y_true, y_true integer class ids (N,)."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name=name)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot target's class is among the k highest scores (ties count)."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        k = _positive_int(k, "k", "TopKCategoricalAccuracy")
        super().__init__(top_k_categorical_accuracy, name=name, k=k)
        self.k = k


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label's class is among the k highest scores (ties count)."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy"):
        k = _positive_int(k, "k", "SparseTopKCategoricalAccuracy")
        super().__init__(sparse_top_k_categorical_accuracy, name=name, k=k)
        self.k = k


class MeanAbsoluteError(MeanMetricWrapper):
    """The mean of |y_pred - y_true| (per sample over the last axis, then over samples)."""

    def __init__(self, name="mean_absolute_error"):
        super().__init__(_mean_absolute_error, name=name, direction="down")


class MeanSquaredError(MeanMetricWrapper):
    """The mean of (y_pred - y_true)^2 (per sample over the last axis, then over samples)."""

    def __init__(self, name="mean_squared_error"):
        super().__init__(_mean_squared_error, name=name, direction="down")


def _positive_int(value, what, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive integer, got {value!r}")
    return int(value)


class _ConfusionMetric(Metric):
    """Precision and Recall: weighted true-positive / false-positive / false-negative counts
    of binary decisions (y_pred > threshold against y_true != 0), one per threshold."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        owner = type(self).__name__
        single = thresholds is None or isinstance(thresholds, numbers.Real)
        values = [0.5] if thresholds is None else ([thresholds] if single else list(thresholds))
        for t in values:
            if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0.0 <= t <= 1.0:
                raise ValueError(f"{owner}: thresholds must be numbers in [0, 1], got {thresholds!r}")
        self.thresholds = [float(t) for t in values]
        self._single = single
        self.top_k = None if top_k is None else _positive_int(top_k, "top_k", owner)
        self.class_id = None if class_id is None else int(class_id)
        super().__init__(name)

    def reset_state(self):
        shape = len(self.thresholds)
        self.true_positives = np.zeros(shape)
        self.false_positives = np.zeros(shape)
        self.false_negatives = np.zeros(shape)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, dtype=np.float64)
        if self.class_id is not None:
            if not 0 <= self.class_id < y_pred.shape[-1]:
                raise ValueError(f"{self.name}: class_id {self.class_id} is out of range for "
                                 f"predictions with {y_pred.shape[-1]} classes")
            classes = y_pred.shape[-1]
            if y_true.shape == y_pred.shape[:-1] or (y_true.shape == y_pred.shape[:-1] + (1,)
                                                     and classes > 1):
                labels = y_true.reshape(y_pred.shape[:-1]).astype(np.int64)   # class ids
                if labels.size and (labels.min() < 0 or labels.max() >= classes):
                    raise ValueError(f"{self.name}: labels must be in 0..{classes - 1}, got "
                                     f"{labels.min()}..{labels.max()}")
                y_true = labels[..., None] == np.arange(classes)
        if self.top_k is not None:   # only each row's k highest scores may count as positive
            kth = -np.sort(-y_pred, axis=-1)[..., self.top_k - 1:self.top_k]
            y_pred = np.where(y_pred >= kth, y_pred, -np.inf)
        if self.class_id is not None:
            y_true, y_pred = y_true[..., self.class_id], y_pred[..., self.class_id]
        y_true, y_pred = _same_rank(y_true, y_pred)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{self.name}: y_true has shape {y_true.shape} but y_pred has shape "
                             f"{y_pred.shape}")
        truth = y_true != 0
        weights = _sample_weights(sample_weight, y_pred.shape, self.name)
        w = np.ones(y_pred.shape) if weights is None else weights
        for i, t in enumerate(self.thresholds):
            positive = y_pred > t
            self.true_positives[i] += float(w[positive & truth].sum())
            self.false_positives[i] += float(w[positive & ~truth].sum())
            self.false_negatives[i] += float(w[~positive & truth].sum())

    def _ratio(self, numerator, other):
        denominator = numerator + other
        ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
        return float(ratio[0]) if self._single else [float(r) for r in ratio]

    def get_config(self):
        return {"name": self.name, "thresholds": self.thresholds[0] if self._single else self.thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_ConfusionMetric):
    """TP / (TP + FP): of the predictions above the threshold (0.5), the share that are
    right. class_id: score one class of a multi-class output (its column; integer labels
    are also accepted then). top_k: only each row's k highest scores count as predicted.
    thresholds: a number, or a list (result() is then a list). 0.0 before any positive."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        super().__init__(thresholds, top_k, class_id, name)

    def result(self):
        return self._ratio(self.true_positives, self.false_positives)


class Recall(_ConfusionMetric):
    """TP / (TP + FN): of the true positives, the share predicted above the threshold (0.5).
    Arguments as Precision's."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        super().__init__(thresholds, top_k, class_id, name)

    def result(self):
        return self._ratio(self.true_positives, self.false_negatives)


# --------------------------------------------------------------------------------------------
# Looking metrics up
# --------------------------------------------------------------------------------------------
_CLASSES = (AutoAccuracy, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
            TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall,
            MeanAbsoluteError, MeanSquaredError)
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision, "recall": Recall,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}
_BY_FUNCTION = {
    binary_accuracy: BinaryAccuracy, categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy,
    top_k_categorical_accuracy: TopKCategoricalAccuracy,
    sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy,
}


def get(identifier):
    """A metric object from what ``compile(metrics=[...])`` takes.

    A string is logged under itself: "accuracy" / "acc" (AutoAccuracy), "binary_accuracy",
    "categorical_accuracy", "sparse_categorical_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "precision", "recall", "mae" / "mean_absolute_error",
    "mse" / "mean_squared_error", or a class name ("Precision"). Also: a Metric object (as
    is), a Metric class (made with its defaults), the ``accuracy`` function (AutoAccuracy),
    one of this module's per-sample functions, any function fn(y_true, y_pred) returning
    per-sample values (averaged, named after the function), or a dict from ``serialize``.
    Raises ValueError for an unknown name (naming the known ones), TypeError otherwise.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return AutoAccuracy(name=identifier)
        cls = _BY_CLASS_NAME.get(identifier) or _BY_NAME.get(identifier.lower())
        if cls is None:
            known = sorted(set(_BY_NAME) | {"accuracy", "acc"})
            raise ValueError(f"unknown metric {identifier!r}; known: {', '.join(known)}")
        return cls(name=identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if identifier is accuracy:
        return AutoAccuracy()
    if callable(identifier) and identifier in _BY_FUNCTION:
        return _BY_FUNCTION[identifier]()
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"metric must be a name, a function or a fastconv.metrics.Metric, got "
                    f"{type(identifier).__name__}")


def get_list(metrics):
    """The metric objects for ``compile(metrics=...)``: None gives [], one metric (a string
    such as "accuracy", an object, a class or a function) gives a list of it, a list or
    tuple gives one metric per entry. Two metrics with one name raise ValueError (their
    logs would collide)."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric, type, dict)) or callable(metrics):
        metrics = [metrics]
    elif not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics must be a metric or a list of them, got {type(metrics).__name__}")
    out = [get(m) for m in metrics]
    names = [m.name for m in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"metrics: more than one metric is named {', '.join(map(repr, twice))}")
    return out


def serialize(metric):
    """{"class_name": ..., "config": ...} for a metric of this module (``get`` reverses it)."""
    if type(metric) not in _CLASSES:
        raise TypeError(f"serialize: only fastconv's own metric classes can be serialized, got "
                        f"{type(metric).__name__}")
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config):
    """The metric ``serialize`` described."""
    if not isinstance(config, dict) or config.get("class_name") not in _BY_CLASS_NAME:
        raise ValueError(f"unknown metric {config!r}; known classes: {', '.join(sorted(_BY_CLASS_NAME))}")
    return _BY_CLASS_NAME[config["class_name"]].from_config(dict(config.get("config", {})))
