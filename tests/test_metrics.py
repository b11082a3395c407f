"""Tests for fastconv.metrics: each metric object against values worked out here (plain
loops), accumulation over batches, sample weights, reset, names as Keras 3 logs them, lookup
(get, get_list: a bare "accuracy" is one metric) and bad input. Keras's own metrics are a
second reference where keras is installed (slow: importing it takes seconds)."""
import warnings

import numpy as np
import pytest

from fastconv import metrics


def batches(*arrays, size=3):
    """The arrays cut into batches of ``size`` rows (the last one shorter)."""
    n = len(arrays[0])
    for lo in range(0, n, size):
        yield tuple(None if a is None else a[lo:lo + size] for a in arrays)


def run(metric, y_true, y_pred, weights=None, size=3):
    metric.reset_state()
    for yt, yp, w in batches(y_true, y_pred, weights, size=size):
        metric.update_state(yt, yp, sample_weight=w)
    return metric.result()


def weighted_mean(values, weights):
    if weights is None:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


RNG = np.random.default_rng(0)
N, C = 8, 5
LOGITS = RNG.standard_normal((N, C)).astype(np.float32)
LABELS = RNG.integers(0, C, N)
ONEHOT = np.eye(C, dtype=np.float32)[LABELS]
WEIGHTS = RNG.uniform(0.1, 2.0, N)


def ref_rank(row, label):
    """How many scores in the row are strictly larger than the label's."""
    return sum(1 for v in row if v > row[label])


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["plain", "weighted"])
def test_classification_accuracies(weights):
    right = [float(np.argmax(LOGITS[i]) == LABELS[i]) for i in range(N)]
    want = weighted_mean(right, weights)
    assert run(metrics.SparseCategoricalAccuracy(), LABELS, LOGITS, weights) == pytest.approx(want)
    assert run(metrics.CategoricalAccuracy(), ONEHOT, LOGITS, weights) == pytest.approx(want)
    assert run(metrics.get("accuracy"), LABELS, LOGITS, weights) == pytest.approx(want)
    assert run(metrics.get("acc"), ONEHOT, LOGITS, weights) == pytest.approx(want)
    assert run(metrics.SparseCategoricalAccuracy(), LABELS[:, None], LOGITS, weights) == pytest.approx(want)
    for k in (1, 2, 5):
        top = [float(ref_rank(LOGITS[i], LABELS[i]) < k) for i in range(N)]
        assert run(metrics.SparseTopKCategoricalAccuracy(k=k), LABELS, LOGITS, weights) == \
            pytest.approx(weighted_mean(top, weights)), k
        assert run(metrics.TopKCategoricalAccuracy(k=k), ONEHOT, LOGITS, weights) == \
            pytest.approx(weighted_mean(top, weights)), k
    assert run(metrics.TopKCategoricalAccuracy(), ONEHOT, LOGITS, weights) == 1.0   # k=5 of 5 classes


def test_top_k_counts_ties_in():
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.1, 0.1, 0.1]], np.float32)
    got = metrics.sparse_top_k_categorical_accuracy(np.array([2, 3]), scores, k=1)
    np.testing.assert_array_equal(got, [1.0, 0.0])   # a tie at the top counts; the last row's 3 is 2nd-equal
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(np.array([2, 3]), scores, k=2),
                                  [1.0, 1.0])


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["plain", "weighted"])
def test_binary_accuracy_precision_recall(weights):
    probs = RNG.uniform(0, 1, (N, 3)).astype(np.float32)
    truth = RNG.integers(0, 2, (N, 3)).astype(np.float32)
    w = np.ones(N) if weights is None else weights
    same = sum(w[i] * float((probs[i, j] > 0.5) == truth[i, j]) for i in range(N) for j in range(3))
    assert run(metrics.BinaryAccuracy(), truth, probs, weights) == pytest.approx(same / (3 * w.sum()))
    tp = sum(w[i] for i in range(N) for j in range(3) if probs[i, j] > 0.5 and truth[i, j])
    fp = sum(w[i] for i in range(N) for j in range(3) if probs[i, j] > 0.5 and not truth[i, j])
    fn = sum(w[i] for i in range(N) for j in range(3) if probs[i, j] <= 0.5 and truth[i, j])
    assert run(metrics.Precision(), truth, probs, weights) == pytest.approx(tp / (tp + fp))
    assert run(metrics.Recall(), truth, probs, weights) == pytest.approx(tp / (tp + fn))
    # another threshold, and a list of them
    tp7 = sum(w[i] for i in range(N) for j in range(3) if probs[i, j] > 0.7 and truth[i, j])
    fp7 = sum(w[i] for i in range(N) for j in range(3) if probs[i, j] > 0.7 and not truth[i, j])
    assert run(metrics.Precision(thresholds=0.7), truth, probs, weights) == pytest.approx(tp7 / (tp7 + fp7))
    both = run(metrics.Precision(thresholds=[0.5, 0.7]), truth, probs, weights)
    assert both == pytest.approx([tp / (tp + fp), tp7 / (tp7 + fp7)])
    # one column (N, 1) against labels (N,), as a binary classifier gives them
    col = probs[:, :1]
    lab = truth[:, 0]
    tp1 = sum(w[i] for i in range(N) if col[i, 0] > 0.5 and lab[i])
    fp1 = sum(w[i] for i in range(N) if col[i, 0] > 0.5 and not lab[i])
    assert run(metrics.Precision(), lab, col, weights) == pytest.approx(tp1 / (tp1 + fp1) if tp1 + fp1 else 0.0)
    acc = sum(w[i] * float((col[i, 0] > 0.5) == (lab[i] > 0.5)) for i in range(N)) / w.sum()
    assert run(metrics.get("accuracy"), lab, col, weights) == pytest.approx(acc)


def test_precision_recall_for_one_class():
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], np.float32)
    labels = np.array([1, 1, 0, 1])
    # class 1: predicted (> 0.5) in rows 0 and 2; true in rows 0, 1, 3 -> TP 1, FP 1, FN 2
    for y in (labels, np.eye(3)[labels]):
        assert run(metrics.Precision(class_id=1), y, probs) == pytest.approx(0.5)
        assert run(metrics.Recall(class_id=1), y, probs) == pytest.approx(1 / 3)
    # threshold 0 makes every row positive for class 1: TP 3, FP 1; with top_k=1 only rows
    # whose highest score is class 1's (rows 0 and 2) are: TP 1, FP 1
    assert run(metrics.Precision(class_id=1, thresholds=0.0), labels, probs) == pytest.approx(0.75)
    assert run(metrics.Precision(class_id=1, top_k=1, thresholds=0.0), labels, probs) == pytest.approx(0.5)
    assert run(metrics.Recall(class_id=1, top_k=1, thresholds=0.0), labels, probs) == pytest.approx(1 / 3)
    assert metrics.Precision().result() == 0.0          # nothing seen: 0, not a division by zero


def test_regression_metrics():
    y = RNG.standard_normal((N, 4))
    p = RNG.standard_normal((N, 4))
    mae = [float(np.mean(np.abs(p[i] - y[i]))) for i in range(N)]
    mse = [float(np.mean((p[i] - y[i]) ** 2)) for i in range(N)]
    for weights in (None, WEIGHTS):
        assert run(metrics.MeanAbsoluteError(), y, p, weights) == pytest.approx(weighted_mean(mae, weights))
        assert run(metrics.get("mse"), y, p, weights) == pytest.approx(weighted_mean(mse, weights))


def test_exact_accuracy_is_keras_accuracy():
    """Keras's Accuracy compares values exactly: right for class ids, ~0 for probabilities."""
    m = metrics.Accuracy()
    assert m(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == pytest.approx(0.75)
    m.reset_state()
    assert m(ONEHOT, np.full_like(ONEHOT, 0.5)) == 0.0


def test_state_accumulates_and_resets():
    m = metrics.SparseCategoricalAccuracy()
    m.update_state([0, 1], np.array([[1.0, 0.0], [1.0, 0.0]]))       # 1 of 2
    m.update_state([1], np.array([[0.0, 1.0]]))                       # 1 of 1
    assert m.result() == pytest.approx(2 / 3)
    assert m([0], np.array([[0.0, 1.0]])) == pytest.approx(2 / 4)     # __call__ updates too
    m.reset_state()
    assert m.result() == 0.0
    auto = metrics.get("accuracy")
    auto.update_state(LABELS, LOGITS)
    assert auto.result() == pytest.approx(metrics.accuracy(LABELS, LOGITS))


def test_names_as_keras_logs_them():
    assert metrics.get("accuracy").name == "accuracy"
    assert metrics.get("acc").name == "acc"
    assert metrics.get("mae").name == "mae"
    assert metrics.get("mean_absolute_error").name == "mean_absolute_error"
    assert metrics.get("precision").name == "precision"
    assert metrics.get("top_k_categorical_accuracy").name == "top_k_categorical_accuracy"
    assert metrics.Precision().name == "precision" and metrics.Recall(name="r").name == "r"
    assert metrics.TopKCategoricalAccuracy().name == "top_k_categorical_accuracy"
    assert metrics.SparseTopKCategoricalAccuracy().name == "sparse_top_k_categorical_accuracy"
    assert metrics.MeanSquaredError().name == "mean_squared_error"
    assert metrics.get(metrics.Recall).name == "recall"
    assert isinstance(metrics.get("Precision"), metrics.Precision)
    assert isinstance(metrics.get(metrics.accuracy), metrics.AutoAccuracy)
    assert isinstance(metrics.get(metrics.categorical_accuracy), metrics.CategoricalAccuracy)

    def half_error(y_true, y_pred):
        return 0.5 * np.abs(np.asarray(y_pred) - np.asarray(y_true)).mean(axis=-1)

    custom = metrics.get(half_error)
    assert custom.name == "half_error"
    assert custom(np.zeros((2, 2)), np.ones((2, 2))) == pytest.approx(0.5)


def test_get_list():
    assert metrics.get_list(None) == []
    one = metrics.get_list("accuracy")           # a string is ONE metric, not the letters
    assert len(one) == 1 and one[0].name == "accuracy"
    many = metrics.get_list(["accuracy", metrics.Precision(), "mae", metrics.Recall])
    assert [m.name for m in many] == ["accuracy", "precision", "mae", "recall"]
    assert [m.name for m in metrics.get_list(metrics.Precision())] == ["precision"]
    with pytest.raises(ValueError, match="more than one metric is named 'precision'"):
        metrics.get_list(["precision", metrics.Precision()])
    with pytest.raises(ValueError, match="unknown metric 'f1'; known:"):
        metrics.get_list(["f1"])
    with pytest.raises(TypeError):
        metrics.get_list(3)


def test_serialize_round_trip():
    for m in (metrics.Precision(thresholds=0.3, class_id=2, name="p2"), metrics.BinaryAccuracy(threshold=0.2),
              metrics.SparseTopKCategoricalAccuracy(k=3), metrics.get("accuracy"), metrics.get("mae")):
        again = metrics.get(metrics.serialize(m))
        assert type(again) is type(m) and again.get_config() == m.get_config()


def test_sequential_compile_takes_a_bare_string():
    from fastconv import layers as L
    from fastconv.models import Sequential

    model = Sequential([L.Flatten(), L.Dense(3)], input_shape=(1, 2, 2), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics="accuracy")
    assert [m.name for m in model.metrics] == ["accuracy"]
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc", "sparse_top_k_categorical_accuracy"])
    assert [m.name for m in model.metrics] == ["acc", "sparse_top_k_categorical_accuracy"]
    x = np.zeros((4, 1, 2, 2), np.float32)
    assert list(model.evaluate(x, np.array([0, 1, 2, 0]), return_dict=True)) == \
        ["loss", "acc", "sparse_top_k_categorical_accuracy"]


def test_bad_input():
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.SparseCategoricalAccuracy().update_state(LABELS, LOGITS, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="one class id per row"):
        metrics.sparse_categorical_accuracy(ONEHOT[:, :2], LOGITS)
    with pytest.raises(ValueError, match="one-hot"):
        metrics.categorical_accuracy(LABELS, LOGITS)
    with pytest.raises(ValueError, match="labels must be in 0..4"):
        metrics.SparseTopKCategoricalAccuracy(k=2).update_state(np.array([7]), LOGITS[:1])
    with pytest.raises(ValueError, match="class_id 9 is out of range"):
        metrics.Precision(class_id=9).update_state(LABELS, LOGITS)
    with pytest.raises(ValueError, match="thresholds"):
        metrics.Recall(thresholds=1.5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.TopKCategoricalAccuracy(k=0)


@pytest.mark.slow
def test_against_keras(real_keras):
    keras = real_keras
    probs = RNG.uniform(0, 1, (N, C)).astype(np.float32)
    truth = RNG.integers(0, 2, (N, C)).astype(np.float32)
    pairs = [
        (metrics.SparseCategoricalAccuracy(), keras.metrics.SparseCategoricalAccuracy(), LABELS, LOGITS),
        (metrics.CategoricalAccuracy(), keras.metrics.CategoricalAccuracy(), ONEHOT, LOGITS),
        (metrics.SparseTopKCategoricalAccuracy(k=2), keras.metrics.SparseTopKCategoricalAccuracy(k=2), LABELS, LOGITS),
        (metrics.TopKCategoricalAccuracy(k=3), keras.metrics.TopKCategoricalAccuracy(k=3), ONEHOT, LOGITS),
        (metrics.BinaryAccuracy(), keras.metrics.BinaryAccuracy(), truth, probs),
        (metrics.Precision(), keras.metrics.Precision(), truth, probs),
        (metrics.Recall(thresholds=0.3), keras.metrics.Recall(thresholds=0.3), truth, probs),
        (metrics.Precision(class_id=2), keras.metrics.Precision(class_id=2), ONEHOT, probs),
        (metrics.MeanAbsoluteError(), keras.metrics.MeanAbsoluteError(), truth, probs),
        (metrics.MeanSquaredError(), keras.metrics.MeanSquaredError(), truth, probs),
    ]
    for ours, theirs, y_true, y_pred in pairs:
        with warnings.catch_warnings():   # keras's torch backend warns inside NumPy 2
            warnings.simplefilter("ignore")
            for yt, yp, w in batches(y_true, y_pred, WEIGHTS.astype(np.float32)):
                theirs.update_state(yt, yp, sample_weight=w)
            want = float(keras.ops.convert_to_numpy(theirs.result()))
        assert run(ours, y_true, y_pred, WEIGHTS) == pytest.approx(want, rel=1e-5), ours.name
        assert theirs.name.startswith(ours.name)   # keras numbers repeats: precision_1
