"""Tests for fastconv.losses: every loss against a float64 reference written here (plain
loops over samples), each reduction, sample weights, logits and probabilities, label
smoothing, gradients by central finite differences of the reference, the compiled sparse
cross-entropy path bit for bit, lookup and saving, and bad input. Keras's own losses are a
second reference where keras is installed (slow: importing it takes seconds)."""
import math
import warnings
import zlib

import numpy as np
import pytest

from fastconv import _core, losses

EPS = 1e-7


# ----------------------------------------------------------------------------- references
def ref_log_softmax(z):
    m = max(z)
    s = sum(math.exp(v - m) for v in z)
    return [v - m - math.log(s) for v in z]


def ref_sample(kind, t, o, from_logits=False, smoothing=0.0, delta=1.0):
    """One sample's loss: t and o are 1-D lists (t an int label for "sparse")."""
    k = len(o)
    if kind == "mse":
        return sum((a - b) ** 2 for a, b in zip(o, t)) / k
    if kind == "mae":
        return sum(abs(a - b) for a, b in zip(o, t)) / k
    if kind == "huber":
        total = 0.0
        for a, b in zip(o, t):
            x = abs(a - b)
            total += 0.5 * x * x if x <= delta else delta * x - 0.5 * delta * delta
        return total / k
    if kind == "bce":
        total = 0.0
        for a, y in zip(o, t):
            y = y * (1 - smoothing) + 0.5 * smoothing
            p = 1.0 / (1.0 + math.exp(-a)) if from_logits else min(max(a, EPS), 1 - EPS)
            total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
        return total / k
    if kind == "sparse":
        t = [1.0 if c == t else 0.0 for c in range(k)]
    t = [y * (1 - smoothing) + smoothing / k for y in t]
    if from_logits:
        logp = ref_log_softmax(o)
    else:
        s = sum(o)
        logp = [math.log(min(max(v / s, EPS), 1 - EPS)) for v in o]
    return -sum(y * lp for y, lp in zip(t, logp))


def ref_reduce(values, weights, reduction):
    if weights is not None:
        values = [v * w for v, w in zip(values, weights)]
    if reduction == "sum":
        return sum(values)
    if reduction == "mean_with_sample_weight" and weights is not None:
        return sum(values) / sum(weights)
    return sum(values) / len(values)


def ref_loss(kind, target, output, weights=None, reduction="sum_over_batch_size", **kw):
    output = np.asarray(output, dtype=np.float64).tolist()        # plain Python floats
    values = [ref_sample(kind, int(target[i]) if kind == "sparse" else [float(v) for v in target[i]],
                         output[i], **kw) for i in range(len(output))]
    return ref_reduce(values, weights, reduction)


def make(kind, from_logits=False, smoothing=0.0, reduction="sum_over_batch_size", delta=1.0):
    if kind == "mse":
        return losses.MeanSquaredError(reduction=reduction)
    if kind == "mae":
        return losses.MeanAbsoluteError(reduction=reduction)
    if kind == "huber":
        return losses.Huber(delta=delta, reduction=reduction)
    if kind == "bce":
        return losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing,
                                         reduction=reduction)
    if kind == "cce":
        return losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing,
                                              reduction=reduction)
    return losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction=reduction)


def case(kind, n, k, from_logits, rng):
    """Random (target, output) for one loss: outputs away from the kinks and clip edges."""
    if kind in ("mse", "mae", "huber"):
        target = rng.standard_normal((n, k))
        output = target + rng.choice([-1, 1], (n, k)) * rng.uniform(0.1, 2.0, (n, k))
        return target.astype(np.float32), output.astype(np.float32)
    if kind == "bce":
        target = rng.integers(0, 2, (n, k)).astype(np.float32)
        output = rng.standard_normal((n, k)) * 2 if from_logits else rng.uniform(0.05, 0.95, (n, k))
        return target, output.astype(np.float32)
    labels = rng.integers(0, k, n)
    output = rng.standard_normal((n, k)) * 2 if from_logits else rng.uniform(0.05, 1.0, (n, k))
    if kind == "sparse":
        return labels, output.astype(np.float32)
    target = rng.dirichlet(np.ones(k), n) if n % 2 else np.eye(k)[labels]   # soft and one-hot
    return target.astype(np.float32), output.astype(np.float32)


KINDS = [("mse", False), ("mae", False), ("huber", False), ("bce", False), ("bce", True),
         ("cce", False), ("cce", True), ("sparse", False), ("sparse", True)]


# ----------------------------------------------------------------------------- values and gradients
@pytest.mark.parametrize("kind,from_logits", KINDS)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_gradient_match_reference(kind, from_logits, reduction, weighted):
    rng = np.random.default_rng(zlib.crc32(repr((kind, from_logits, reduction, weighted)).encode()))
    for n, k in [(1, 3), (5, 4), (4, 1) if kind not in ("cce", "sparse") else (3, 2)]:
        target, output = case(kind, n, k, from_logits, rng)
        weights = rng.uniform(0.2, 2.0, n) if weighted else None
        smoothing = 0.1 if kind in ("bce", "cce") and n == 5 else 0.0
        loss = make(kind, from_logits, smoothing, reduction, delta=0.7)
        extra = {"from_logits": from_logits, "smoothing": smoothing} if kind in ("bce", "cce", "sparse") else {}
        if kind == "huber":
            extra = {"delta": 0.7}
        prepared = loss.prepare_target(target, output.shape)
        value, grad = loss.forward_backward(output, prepared, sample_weight=weights)
        want = ref_loss(kind, target, output, weights, reduction, **extra)
        assert value == pytest.approx(want, rel=1e-6, abs=1e-9), (kind, n, k)
        assert grad.dtype == np.float32 and grad.shape == output.shape
        # central differences of the float64 reference, one element at a time
        h = 1e-4 if from_logits or kind in ("mse", "mae", "huber") else 1e-5
        numeric = np.zeros(output.shape)
        for idx in np.ndindex(*output.shape):
            plus, minus = output.astype(np.float64), output.astype(np.float64)
            plus[idx] += h
            minus[idx] -= h
            numeric[idx] = (ref_loss(kind, target, plus, weights, reduction, **extra)
                            - ref_loss(kind, target, minus, weights, reduction, **extra)) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=2e-4, atol=2e-6, err_msg=f"{kind} {n}x{k}")


@pytest.mark.parametrize("kind,from_logits", KINDS)
def test_reduction_none_and_call(kind, from_logits):
    rng = np.random.default_rng(7)
    target, output = case(kind, 6, 3, from_logits, rng)
    weights = rng.uniform(0.5, 1.5, 6)
    extra = {"from_logits": from_logits} if kind in ("bce", "cce", "sparse") else {}
    per_sample = [ref_loss(kind, target[i:i + 1], output[i:i + 1], **extra) for i in range(6)]
    loss = make(kind, from_logits, reduction="none")
    got = loss(target, output)
    assert got.shape == (6,) and got.dtype == np.float32
    np.testing.assert_allclose(got, per_sample, rtol=1e-5)
    np.testing.assert_allclose(loss(target, output, sample_weight=weights), np.array(per_sample) * weights,
                               rtol=1e-5)
    np.testing.assert_allclose(loss.call(target, output), per_sample, rtol=1e-5)
    # "none" in forward_backward: the sum, with the gradient of the sum
    summed, grad = loss.forward_backward(output, loss.prepare_target(target, output.shape))
    total, grad_sum = make(kind, from_logits, reduction="sum").forward_backward(
        output, loss.prepare_target(target, output.shape))
    assert summed == pytest.approx(total) and summed == pytest.approx(sum(per_sample), rel=1e-6)
    np.testing.assert_allclose(grad, grad_sum, rtol=1e-6)
    # the default reduction through __call__
    assert make(kind, from_logits)(target, output) == pytest.approx(np.mean(per_sample), rel=1e-6)
    assert make(kind, from_logits)(target, output, sample_weight=weights) == pytest.approx(
        np.mean(np.array(per_sample) * weights), rel=1e-6)


@pytest.mark.parametrize("alias", ["auto", "mean"])
def test_keras2_reduction_names(alias):
    rng = np.random.default_rng(1)
    target, output = case("mse", 4, 3, False, rng)
    assert losses.MeanSquaredError(reduction=alias).reduction == "sum_over_batch_size"
    assert losses.MeanSquaredError(reduction=None).reduction == "none"
    assert losses.MeanSquaredError(reduction=alias)(target, output) == pytest.approx(
        ref_loss("mse", target, output), rel=1e-6)


def test_per_sample_functions():
    rng = np.random.default_rng(3)
    for kind, fn, kw in [("mse", losses.mse, {}), ("mae", losses.mae, {}),
                         ("mse", losses.mean_squared_error, {}), ("mae", losses.mean_absolute_error, {}),
                         ("huber", losses.huber, {"delta": 0.5}),
                         ("bce", losses.binary_crossentropy, {"from_logits": True, "label_smoothing": 0.2}),
                         ("bce", losses.binary_crossentropy, {}),
                         ("cce", losses.categorical_crossentropy, {"from_logits": True}),
                         ("cce", losses.categorical_crossentropy, {"label_smoothing": 0.1}),
                         ("sparse", losses.sparse_categorical_crossentropy, {"from_logits": True}),
                         ("sparse", losses.sparse_categorical_crossentropy, {})]:
        from_logits = kw.get("from_logits", False)
        target, output = case(kind, 5, 4, from_logits, rng)
        got = fn(target, output, **kw)
        ref_kw = {"from_logits": from_logits, "smoothing": kw.get("label_smoothing", 0.0)} \
            if kind in ("bce", "cce", "sparse") else ({"delta": 0.5} if kind == "huber" else {})
        want = [ref_loss(kind, target[i:i + 1], output[i:i + 1], **ref_kw) for i in range(5)]
        assert got.shape == (5,), (kind, kw)
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{fn.__name__} {kw}")
    # the regression losses average over the LAST axis only (Keras): (N, 2, 3) -> (N, 2)
    y = rng.standard_normal((2, 2, 3))
    p = rng.standard_normal((2, 2, 3))
    np.testing.assert_allclose(losses.mse(y, p), ((p - y) ** 2).mean(axis=-1), rtol=1e-6)
    # Keras's squeeze: targets (N,) against an output (N, 1)
    np.testing.assert_allclose(losses.mae(np.array([1.0, 2.0]), np.array([[0.5], [3.0]])), [0.5, 1.0])
    # the class axis of the categorical losses can be another one (NCHW maps: axis=1)
    z = rng.standard_normal((2, 3, 4))
    t = np.eye(3)[rng.integers(0, 3, (2, 4))].transpose(0, 2, 1)      # one-hot on axis 1
    got = losses.categorical_crossentropy(t, z, from_logits=True, axis=1)
    want = losses.categorical_crossentropy(t.transpose(0, 2, 1), z.transpose(0, 2, 1), from_logits=True)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (2, 4)


def test_class_axis_one_gradient():
    """CategoricalCrossentropy(axis=1) on an NCHW-like output: loss and gradient equal the
    channels-last computation moved back."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((2, 3, 5)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (2, 5))].transpose(0, 2, 1)
    first = losses.CategoricalCrossentropy(from_logits=True, axis=1)
    last = losses.CategoricalCrossentropy(from_logits=True)
    v1, g1 = first.forward_backward(z, t)
    v2, g2 = last.forward_backward(np.ascontiguousarray(z.transpose(0, 2, 1)),
                                   np.ascontiguousarray(t.transpose(0, 2, 1)))
    assert v1 == pytest.approx(v2, rel=1e-7)
    np.testing.assert_allclose(g1, g2.transpose(0, 2, 1), rtol=1e-6)
    labels = rng.integers(0, 3, (2, 5))
    sparse = losses.SparseCategoricalCrossentropy(from_logits=True, axis=1)
    v3, g3 = sparse.forward_backward(z, sparse.prepare_target(labels, z.shape))
    v4, g4 = first.forward_backward(z, np.eye(3, dtype=np.float32)[labels].transpose(0, 2, 1))
    assert v3 == pytest.approx(v4, rel=1e-7)
    np.testing.assert_allclose(g3, g4, rtol=1e-6)


def test_probabilities_are_clipped_as_keras():
    """A probability of exactly 0 for the true class costs -log(1e-7), not infinity, and the
    clipped entries pass no gradient."""
    out = np.array([[0.0, 1.0], [0.3, 0.7]], dtype=np.float32)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    value, grad = losses.CategoricalCrossentropy().forward_backward(out, y)
    assert value == pytest.approx((-math.log(1e-7) - math.log(0.7)) / 2, rel=1e-6)
    assert np.all(np.isfinite(grad))
    assert grad[0, 0] == 0.0            # clipped below: no gradient through it
    bce, grad = losses.BinaryCrossentropy().forward_backward(np.array([[0.0], [1.0]], np.float32),
                                                             np.array([[1.0], [1.0]], np.float32))
    assert bce == pytest.approx(-math.log(1e-7) / 2, rel=1e-6) and np.all(np.isfinite(grad))


def test_large_logits_stay_finite():
    z = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 1.0]], dtype=np.float32)
    y = np.array([1, 1])
    for loss in (losses.SparseCategoricalCrossentropy(from_logits=True),
                 losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")):
        value, grad = loss.forward_backward(z, y)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    value, grad = losses.BinaryCrossentropy(from_logits=True).forward_backward(
        np.array([[500.0], [-500.0]], np.float32), np.array([[0.0], [0.0]], np.float32))
    assert value == pytest.approx(250.0) and np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------- the compiled path
def test_sparse_logits_use_the_compiled_kernel_bit_for_bit():
    """The common case (logits, no weights) gives exactly today's result: the kernel's."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((33, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 33)
    want_loss, want_grad = _core.softmax_cross_entropy(z, labels.astype(np.int64))
    for loss in (losses.get("sparse_categorical_crossentropy"),
                 losses.SparseCategoricalCrossentropy(from_logits=True)):
        value, grad = loss.forward_backward(z, loss.prepare_target(labels, z.shape))
        assert value == float(want_loss)
        np.testing.assert_array_equal(grad, want_grad)
    # the float64 path agrees to float32 rounding (weights of 1 take it)
    value, grad = losses.SparseCategoricalCrossentropy(from_logits=True).forward_backward(
        z, labels, sample_weight=np.ones(33))
    assert value == pytest.approx(float(want_loss), rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- the loop's contract
def test_from_logits_and_feed():
    auto = losses.get("categorical_crossentropy")
    assert auto.from_logits is None and auto.expects_logits
    assert auto.feed("softmax") == "fuse" and auto.feed(None) == "logits" and auto.feed("relu") == "logits"
    keras_default = losses.CategoricalCrossentropy()
    assert keras_default.from_logits is False and not keras_default.expects_logits
    assert keras_default.feed("softmax") == "fuse" and keras_default.feed(None) == "output"
    explicit = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert explicit.feed("softmax") == "logits" and explicit.feed(None) == "logits"
    bce = losses.get("binary_crossentropy")
    assert bce.fusable_activation == "sigmoid" and bce.feed("sigmoid") == "fuse"
    assert losses.BinaryCrossentropy().feed("softmax") == "output"
    for name in ("mse", "mae", "huber"):
        loss = losses.get(name)
        assert loss.fusable_activation is None and loss.feed("softmax") == "output"
        assert not loss.expects_logits
        with pytest.raises(ValueError, match="logits=True"):
            loss.forward_backward(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), logits=True)
    # logits=False given to an auto loss: the output is read as probabilities
    p = np.array([[0.2, 0.8]], np.float32)
    value, _ = auto.forward_backward(p, np.array([[0.0, 1.0]], np.float32), logits=False)
    assert value == pytest.approx(-math.log(0.8), rel=1e-6)


def test_sequential_trains_binary_crossentropy_with_a_sigmoid_output():
    """Today's Sequential feeds a final sigmoid's probabilities to binary cross-entropy
    (logits=False), so compute_gradients matches finite differences of evaluate()."""
    from fastconv import layers as L
    from fastconv.models import Sequential

    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = Sequential([L.Dense(4, activation="tanh"), L.Dense(1, activation="sigmoid")],
                       input_shape=(5,), seed=1)
    model.compile("sgd", "binary_crossentropy")
    value, grads = model.compute_gradients(x, y, training=False)
    probs = model.predict(x).ravel().astype(np.float64)
    assert value == pytest.approx(ref_loss("bce", y[:, None], probs[:, None]), rel=1e-5)
    weights = model.get_weights()
    h = 1e-3
    for i in range(len(weights)):
        bumped = [w.copy() for w in weights]
        bumped[i].flat[0] += h
        model.set_weights(bumped)
        plus = model.evaluate(x, y, batch_size=12)[0]
        bumped[i].flat[0] -= 2 * h
        model.set_weights(bumped)
        minus = model.evaluate(x, y, batch_size=12)[0]
        assert grads[i].flat[0] == pytest.approx((plus - minus) / (2 * h), rel=2e-2, abs=1e-4)
    model.set_weights(weights)
    history = model.fit(x, y, epochs=30, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# ----------------------------------------------------------------------------- lookup and saving
def test_get_names_classes_functions_and_configs():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("MAE"), losses.MeanAbsoluteError)
    assert isinstance(losses.get("huber"), losses.Huber)
    assert isinstance(losses.get("bce"), losses.BinaryCrossentropy)
    assert losses.get("CategoricalCrossentropy").from_logits is False      # a class name: Keras's default
    assert losses.get("categorical_crossentropy").from_logits is None      # a function name: auto
    assert isinstance(losses.get(losses.Huber), losses.Huber)
    assert isinstance(losses.get(losses.mae), losses.MeanAbsoluteError)
    assert losses.get(losses.binary_crossentropy).from_logits is False
    huber = losses.Huber(delta=2.5, reduction="sum", name="h")
    assert losses.get(huber) is huber
    for loss in (huber, losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                 losses.BinaryCrossentropy(reduction="none"), losses.get("sparse_categorical_crossentropy"),
                 losses.SparseCategoricalCrossentropy(axis=1)):
        again = losses.get(losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
        assert losses.deserialize(losses.serialize(loss)).get_config() == loss.get_config()
    # a bare get_config() (what Sequential.save stores) works for the standard names
    again = losses.get(losses.get("categorical_crossentropy").get_config())
    assert isinstance(again, losses.CategoricalCrossentropy) and again.from_logits is None
    with pytest.raises(ValueError, match="unknown loss 'hinge'; known:"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="gives no gradient"):
        losses.get(lambda y_true, y_pred: 0.0)
    with pytest.raises(TypeError):
        losses.get(3)


def test_a_custom_loss_with_only_forward_backward_still_works():
    """Losses written to the old contract (forward_backward(output, target) alone) keep
    working in today's Sequential and through __call__."""
    from fastconv import layers as L
    from fastconv.models import Sequential

    class HalfSquares(losses.Loss):
        name = "half_squares"

        def forward_backward(self, output, target):
            diff = output - target
            return float(0.5 * np.sum(diff * diff)), diff

    loss = HalfSquares()
    assert loss(np.array([[1.0, 2.0]]), np.array([[2.0, 4.0]])) == pytest.approx(2.5)
    model = Sequential([L.Dense(2)], input_shape=(3,), seed=0)
    model.compile("sgd", loss)
    x = np.ones((4, 3), np.float32)
    value, _ = model.compute_gradients(x, np.zeros((4, 2), np.float32))
    assert value == pytest.approx(0.5 * float(np.sum(model.predict(x).astype(np.float64) ** 2)), rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="from_logits"):
        losses.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=0)
    loss = losses.MeanSquaredError()
    out = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="sample_weight"):
        loss.forward_backward(out, out, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="targets shaped like the model output"):
        loss.prepare_target(np.zeros((3, 3)), out.shape)
    sparse = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match="label 5 is out of range"):
        sparse.prepare_target(np.array([0, 5]), (2, 3))
    with pytest.raises(ValueError, match="one-hot targets go with categorical_crossentropy"):
        sparse.prepare_target(np.eye(3)[[0, 1]], (2, 3))
    with pytest.raises(TypeError, match="labels must be integers"):
        sparse.prepare_target(np.array(["a", "b"]), (2, 3))


# ----------------------------------------------------------------------------- Keras (optional)


@pytest.mark.slow
def test_against_keras(real_keras):
    keras = real_keras
    rng = np.random.default_rng(11)
    configs = [
        ("bce", lambda r: keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, reduction=r),
         lambda r: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, reduction=r), True),
        ("bce", lambda r: keras.losses.BinaryCrossentropy(reduction=r),
         lambda r: losses.BinaryCrossentropy(reduction=r), False),
        ("cce", lambda r: keras.losses.CategoricalCrossentropy(label_smoothing=0.2, reduction=r),
         lambda r: losses.CategoricalCrossentropy(label_smoothing=0.2, reduction=r), False),
        ("cce", lambda r: keras.losses.CategoricalCrossentropy(from_logits=True, reduction=r),
         lambda r: losses.CategoricalCrossentropy(from_logits=True, reduction=r), True),
        ("sparse", lambda r: keras.losses.SparseCategoricalCrossentropy(reduction=r),
         lambda r: losses.SparseCategoricalCrossentropy(reduction=r), False),
        ("mse", lambda r: keras.losses.MeanSquaredError(reduction=r), lambda r: losses.MeanSquaredError(reduction=r), False),
        ("mae", lambda r: keras.losses.MeanAbsoluteError(reduction=r), lambda r: losses.MeanAbsoluteError(reduction=r), False),
        ("huber", lambda r: keras.losses.Huber(delta=0.7, reduction=r), lambda r: losses.Huber(delta=0.7, reduction=r), False),
    ]
    for kind, theirs, ours, from_logits in configs:
        target, output = case(kind, 6, 4, from_logits, rng)
        weights = rng.uniform(0.2, 2.0, 6).astype(np.float32)
        for reduction in ("sum_over_batch_size", "sum", "none", "mean_with_sample_weight"):
            with warnings.catch_warnings():   # keras's torch backend warns inside NumPy 2
                warnings.simplefilter("ignore")
                want = np.asarray(keras.ops.convert_to_numpy(
                    theirs(reduction)(target, output, sample_weight=weights)), dtype=np.float64)
            got = ours(reduction)(target, output, sample_weight=weights)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=f"{kind} {reduction}")
