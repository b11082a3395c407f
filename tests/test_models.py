"""Tests for fastconv.models, losses, optimizers and metrics: the Sequential model's
gradients (finite differences through the whole model), the fused softmax + cross-entropy,
summary and parameter counts from DESIGN.md, saving and loading, weight layouts, seeding,
callbacks, the optimiser updates against NumPy formulas, and bad input."""
import numpy as np
import pytest

from fastconv import layers as L
from fastconv import losses, metrics, models, optimizers
from fastconv.models import Sequential
from fastconv.models import graph as G


def small_model(seed=0, last=None, classes=4):
    layers = [L.Conv2D(3, 3, activation="tanh", padding="same"), L.AvgPool2D(2),
              L.Conv2D(4, 3, activation="sigmoid"), L.MaxPool2D(2, padding="same"),
              L.Flatten(), L.Dense(6, activation="tanh"), L.Dense(classes, activation=last)]
    return Sequential(layers, input_shape=(2, 8, 8), seed=seed)


def data(n=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, y


# ----------------------------------------------------------------------------- whole-model gradients
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy", "mse", "mae"])
def test_model_gradients_match_finite_differences(loss):
    model = small_model()
    model.compile("sgd", loss)
    x, y = data()
    if loss != "sparse_categorical_crossentropy":
        y = np.eye(4, dtype=np.float32)[y]
    value, grads = model.compute_gradients(x, y)
    weights = model.get_weights()
    rng = np.random.default_rng(1)
    # one unit direction over all weights at once, and one per weight array
    directions = [[rng.standard_normal(w.shape) for w in weights]]
    for i in range(len(weights)):
        directions.append([rng.standard_normal(w.shape) if j == i else np.zeros(w.shape)
                           for j, w in enumerate(weights)])
    eps = 1e-2 if loss != "mae" else 1e-3
    for v in directions:
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in v))
        v = [d / norm for d in v]
        model.set_weights([w + eps * d for w, d in zip(weights, v)])
        plus = model.compute_gradients(x, y)[0]
        model.set_weights([w - eps * d for w, d in zip(weights, v)])
        minus = model.compute_gradients(x, y)[0]
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float(np.sum(g.astype(np.float64) * d)) for g, d in zip(grads, v))
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 2e-4, (loss, numeric, analytic)
    model.set_weights(weights)
    assert value == pytest.approx(model.compute_gradients(x, y)[0])


def test_softmax_endings_train_on_logits():
    """A model ending in Softmax or Dense(softmax) gets the same loss and gradients as the
    same model ending in logits (the fused softmax + cross-entropy), and predicts probabilities."""
    x, y = data()
    plain = small_model(seed=3)
    dense_softmax = small_model(seed=3, last="softmax")
    layer_softmax = Sequential(small_model(seed=3).layers + [L.Softmax()], input_shape=(2, 8, 8), seed=3)
    results = []
    for model in (plain, dense_softmax, layer_softmax):
        model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
        model.build()
        model.set_weights(plain.get_weights())
        results.append(model.compute_gradients(x, y))
    for loss, grads in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-6)
        for a, b in zip(grads, results[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    logits = plain.predict(x)
    for model in (dense_softmax, layer_softmax):
        probs = model.predict(x)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
        assert model.evaluate(x, y)[0] == pytest.approx(plain.evaluate(x, y)[0], rel=1e-5)


def test_zero_padding_fused_into_the_next_conv():
    """Sequential runs ZeroPadding2D + Conv2D as one convolution: same outputs and gradients as
    running the two layers one after the other."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 3)
    model = Sequential([L.ZeroPadding2D(((1, 2), (2, 0))), L.Conv2D(2, 3, activation="tanh"),
                        L.Conv2D(2, 3, padding="same"), L.Flatten(), L.Dense(3)],
                       input_shape=(1, 6, 6), seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    loss, grads = model.compute_gradients(x, y)
    layers = model.layers
    trainable = {id(layer) for layer in layers if layer.params}
    feeds = [model.loss.feed]
    fused = G.Plan(model._graph, feeds, trainable)
    assert [st.kind for st in fused.steps][:2] == ["padded_conv", "layer"]
    assert len(fused.steps) == len(layers) - 1
    unfused = G.Plan(model._graph, feeds, trainable, fuse=False)
    assert len(unfused.steps) == len(layers)
    ctx = L.Context(training=True)
    outs, tape = G.forward(unfused, ctx, [x], True)
    manual_loss, grad = model.loss.forward_backward(outs[0], y)
    views = {id(layer): [np.zeros_like(p) for p in layer.params] for layer in layers}
    G.backward(unfused, ctx, tape, [grad], views)
    assert manual_loss == pytest.approx(loss, rel=1e-6)
    for a, b in zip(grads, [g for layer in layers for g in views[id(layer)]]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cross_entropy_values():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]], dtype=np.float32)
    labels = np.array([0, 2])
    z = logits.astype(np.float64)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -(logp[0, 0] + logp[1, 2]) / 2
    loss, grad = losses.get("sparse_categorical_crossentropy").forward_backward(logits, labels)
    assert loss == pytest.approx(expected, rel=1e-6)
    onehot = np.eye(3, dtype=np.float32)[labels]
    loss2, grad2 = losses.CategoricalCrossentropy(from_logits=True).forward_backward(logits, onehot)
    assert loss2 == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(grad, (np.exp(logp) - onehot) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad2, grad, rtol=1e-5, atol=1e-7)
    out, target = np.array([[1.0, 2.0]], np.float32), np.array([[0.0, 4.0]], np.float32)
    assert losses.get("mse")(target, out) == pytest.approx(2.5)
    assert losses.get("mean_absolute_error")(target, out) == pytest.approx(1.5)


# ----------------------------------------------------------------------------- optimisers
def test_sgd_momentum_and_nesterov_match_formulas():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(7).astype(np.float32)
    gs = [rng.standard_normal(7).astype(np.float32) for _ in range(3)]
    for nesterov in (False, True):
        opt = optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
        p, ref, v = p0.copy(), p0.astype(np.float64), np.zeros(7)
        for g in gs:
            opt.step([p], [g])
            gg = g + 0.01 * ref
            v = 0.9 * v - 0.1 * gg
            ref = ref + (0.9 * v - 0.1 * gg if nesterov else v)
        np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
    plain = optimizers.get("sgd")
    p = p0.copy()
    plain.step([p], [gs[0]])
    np.testing.assert_allclose(p, p0 - 0.01 * gs[0], rtol=1e-6)


def test_adam_matches_formula():
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((3, 4)).astype(np.float32)
    opt = optimizers.Adam(0.01, weight_decay=0.1)
    p, ref = p0.copy(), p0.astype(np.float64)
    m = v = np.zeros((3, 4))
    for t in range(1, 5):
        g = rng.standard_normal((3, 4)).astype(np.float32)
        opt.step([p], [g])
        ref = ref * (1 - 0.01 * 0.1)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        ref = ref - alpha * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 7, 100_003])   # 100,003: the kernel splits it over threads
@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.05),
    lambda: optimizers.SGD(0.05, momentum=0.9, weight_decay=0.01),
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: optimizers.Adam(1e-3),
    lambda: optimizers.Adam(3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.1),
    lambda: optimizers.AdamW(3e-3),
    lambda: optimizers.RMSprop(1e-3),
    lambda: optimizers.RMSprop(2e-3, rho=0.8, momentum=0.9, epsilon=1e-6),
    lambda: optimizers.RMSprop(1e-3, centered=True, weight_decay=0.05),
    lambda: optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
], ids=["sgd", "sgd_momentum", "sgd_nesterov", "adam", "adam_decay", "adamw", "rmsprop",
        "rmsprop_momentum", "rmsprop_centered_decay", "rmsprop_centered_momentum"])
def test_optimizer_kernel_is_the_numpy_arithmetic_bit_for_bit(make, n):
    """The C++ step (csrc/cpu/optimizers.cpp) against the float32 NumPy expressions it replaces:
    the same bits after several steps, so training curves do not move."""
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(np.float32)
    fast, slow = make(), make()
    p_fast, p_slow = p0.copy(), p0.copy()
    for _ in range(4):
        g = rng.standard_normal(n).astype(np.float32)
        fast.step([p_fast], [g])
        slow._begin_step([p_slow])              # what step() does, then the NumPy path alone
        slow._update_numpy(slow._state[0], p_slow, g)
    np.testing.assert_array_equal(p_fast, p_slow)
    assert not np.array_equal(p_fast, p0)
    for key in fast._state[0]:
        if not key.startswith("scratch"):
            np.testing.assert_array_equal(fast._state[0][key], slow._state[0][key])


def test_optimizer_on_arrays_the_kernel_cannot_take():
    """A strided view or a float64 gradient goes through NumPy, still in place."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 6)).astype(np.float32)
    view = base[:, ::2]                         # not contiguous: updated in place all the same
    g = rng.standard_normal(view.shape)
    want = view.astype(np.float64) - 0.1 * g
    optimizers.SGD(0.1).step([view], [g])
    np.testing.assert_allclose(base[:, ::2], want, rtol=1e-6)


def test_optimizer_names_and_errors():
    assert isinstance(optimizers.get("Adam"), optimizers.Adam)
    assert optimizers.get({"name": "sgd", "learning_rate": 0.5}).learning_rate == 0.5
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; known: adam, adamw, rmsprop, sgd"):
        optimizers.get("adagrad")
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        optimizers.SGD(0.0)


# ----------------------------------------------------------------------------- reference networks
def test_lenet5_and_vgg_parameter_counts():
    classic = models.lenet5(classic=True)
    modern = models.lenet5(classic=False)
    vgg = models.vgg_small()
    assert classic.count_params() == 60_806
    assert modern.count_params() == 61_706
    assert vgg.count_params() == 870_634
    c3 = {layer.name: layer for layer in classic.layers}["C3"]
    assert c3.count_params() == 1_516
    text = classic.summary(print_fn=None)
    assert "Total params: 60,806" in text and "1,516" in text and "C3 (Conv2D)" in text
    assert "(None, 16, 10, 10)" in text and "(None, 120, 1, 1)" in text
    assert "Total params: 870,634" in vgg.summary(print_fn=None)
    shapes = {layer.name: layer.output_shape for layer in classic.layers}
    assert shapes["C1"] == (6, 28, 28) and shapes["S2"] == (6, 14, 14) and shapes["S4"] == (16, 5, 5)
    assert models.lenet5(input_shape=(1, 32, 32)).layers[0].name == "C1"


def test_summary_prints(capsys):
    text = models.lenet5().summary()
    assert capsys.readouterr().out.strip() == text.strip()


def test_lenet5_connection_table():
    table = models.LENET5_C3_TABLE
    assert table.shape == (16, 6) and table.sum() == 60
    assert sorted(np.flatnonzero(table[0])) == [0, 1, 2]
    assert sorted(np.flatnonzero(table[5])) == [0, 1, 5]
    assert sorted(np.flatnonzero(table[6])) == [0, 1, 2, 3]
    assert sorted(np.flatnonzero(table[11])) == [0, 1, 2, 5]
    assert [sorted(np.flatnonzero(table[i])) for i in (12, 13, 14)] == [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5]]
    assert table[15].all()


def test_masked_weights_stay_zero_through_training():
    model = models.lenet5(classic=True, seed=0)
    model.compile(optimizers.Adam(1e-2, weight_decay=0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    model.fit(x, rng.integers(0, 10, 64), epochs=2, batch_size=16, verbose=0)
    c3 = model.layers[3]
    assert c3.name == "C3"
    assert np.all(c3.kernel[~models.LENET5_C3_TABLE] == 0.0)
    assert np.count_nonzero(c3.kernel) == 60 * 25


# ----------------------------------------------------------------------------- fit / evaluate / predict
def test_fit_learns_and_reports_history():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64)  # a learnable rule
    model = small_model(seed=1, classes=2)
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=16, validation_data=(x[:40], y[:40]), verbose=0)
    assert history.epoch == list(range(8))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.history.values())
    assert len(history.epoch_times) == 8
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8
    loss, acc = model.evaluate(x, y, batch_size=7)
    pred = model.predict(x, batch_size=9)
    assert acc == pytest.approx(metrics.accuracy(y, pred))
    assert pred.shape == (120, 2)


def test_progress_output(capsys):
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = data(20)
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    lines = out.splitlines()   # not a terminal: one line per epoch, Keras's fields
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - 3/3 [") and lines[1].startswith("Epoch 2/2")
    assert "/step - loss: " in lines[0] and "accuracy: " in lines[0]
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_seed_makes_runs_repeatable():
    x, y = data(40)
    runs = []
    for seed in (5, 5, 6):
        model = Sequential([L.Flatten(), L.Dense(16, activation="relu"), L.Dropout(0.5), L.Dense(4)],
                           input_shape=(2, 8, 8), seed=seed)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_callbacks_and_early_stopping():
    x, y = data(16)
    seen = []

    class Recorder(models.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(("batch", batch, logs["size"]))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", epoch, sorted(logs)))

    model = small_model()
    model.compile(optimizers.SGD(1e-9), "sparse_categorical_crossentropy", ["accuracy"])
    stop = models.EarlyStopping(monitor="loss", patience=2, min_delta=1.0)
    history = model.fit(x, y, epochs=10, batch_size=6, callbacks=[Recorder(), stop], verbose=0)
    # Keras 3's count: epoch 0 sets the best, epochs 1 and 2 do not beat it by min_delta
    assert history.epoch == [0, 1, 2] and stop.stopped_epoch == 2
    assert seen[:4] == [("batch", 0, 6), ("batch", 1, 6), ("batch", 2, 4),
                        ("epoch", 0, ["accuracy", "loss", "time"])]


def test_channels_last_input():
    rng = np.random.default_rng(2)
    x_nchw = rng.standard_normal((5, 2, 8, 8)).astype(np.float32)
    first = small_model(seed=4)
    last = Sequential(small_model(seed=4).layers, input_shape=(8, 8, 2), seed=4, data_format="channels_last")
    last.build()
    first.build()
    last.set_weights(first.get_weights())
    np.testing.assert_allclose(last.predict(x_nchw.transpose(0, 2, 3, 1)), first.predict(x_nchw), rtol=1e-6)
    last.compile("adam", "sparse_categorical_crossentropy")
    last.fit(x_nchw.transpose(0, 2, 3, 1), rng.integers(0, 4, 5), epochs=1, verbose=0)


def test_model_builds_lazily_from_data():
    model = Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(3)])
    assert not model.built
    out = model.predict(np.zeros((2, 1, 5, 5), dtype=np.float32))
    assert out.shape == (2, 3) and model.input_shape == (1, 5, 5)
    assert model.count_params() == (2 * 9 + 2) + (2 * 9 * 3 + 3)
    assert [layer.name for layer in model.layers] == ["conv2d", "flatten", "dense"]


# ----------------------------------------------------------------------------- save / load / weights
def test_save_load_gives_identical_predictions(tmp_path):
    model = models.lenet5(classic=True, seed=0)
    model.compile(optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    y = np.arange(16) % 10
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "lenet.npz"
    model.save(path)
    assert path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lenet.npz"]
    again = models.load_model(path)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.count_params() == 60_806
    assert isinstance(again.optimizer, optimizers.Adam) and again.optimizer.learning_rate == 2e-3
    assert again.evaluate(x, y) == model.evaluate(x, y)
    np.testing.assert_array_equal(Sequential.load(path).layers[3].connections, models.LENET5_C3_TABLE)
    vgg = models.vgg_small(seed=1)
    vgg.save(tmp_path / "vgg.npz")
    np.testing.assert_array_equal(Sequential.load(tmp_path / "vgg.npz").predict(x[:2]), vgg.predict(x[:2]))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        models.load_model(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastconv model file"):
        models.load_model(tmp_path / "other.npz")


def test_get_set_weights_and_layout_helpers():
    model = small_model(seed=0)
    model.build()
    weights = model.get_weights()
    assert [w.shape for w in weights[:2]] == [(3, 2, 3, 3), (3,)]
    other = small_model(seed=9)
    other.build()
    other.set_weights(weights)
    x, _ = data()
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    keras = models.to_keras_weights(model)
    assert keras[0].shape == (3, 3, 2, 3)
    assert keras[-2].shape == (6, 4)
    third = small_model(seed=7)
    third.build()
    models.from_keras_weights(third, keras)
    for a, b in zip(third.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    models.from_pytorch_weights(third, {f"p{i}": w for i, w in enumerate(models.to_pytorch_weights(model))})
    np.testing.assert_array_equal(third.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="got 1 arrays, the model has 8 weight arrays"):
        model.set_weights(weights[:1])


def test_keras_flatten_order_is_permuted():
    """A Keras channels_last model: conv (HWIO) -> Flatten (H, W, C order) -> Dense (in, out).
    Loading its weights with from_keras_weights reproduces its output, computed here in NHWC."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)            # NHWC
    k_conv = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)       # HWIO
    b_conv = rng.standard_normal(4).astype(np.float32)
    k_dense = rng.standard_normal((3 * 3 * 4, 3)).astype(np.float32)   # (in = H*W*C, out)
    b_dense = rng.standard_normal(3).astype(np.float32)
    conv = np.zeros((2, 3, 3, 4))
    for i in range(3):
        for j in range(3):
            conv += np.einsum("nhwc,ck->nhwk", x[:, i:i + 3, j:j + 3, :], k_conv[i, j])
    conv += b_conv
    expected = conv.reshape(2, -1) @ k_dense + b_dense
    model = Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(3)], input_shape=(5, 5, 2),
                       data_format="channels_last")
    model.build()
    models.from_keras_weights(model, [k_conv, b_conv, k_dense, b_dense])
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)
    back = models.to_keras_weights(model)
    np.testing.assert_array_equal(back[2], k_dense)


# ----------------------------------------------------------------------------- bad input
def test_fit_before_compile():
    model = small_model()
    x, y = data()
    with pytest.raises(RuntimeError, match=r"not compiled; call model.compile"):
        model.fit(x, y, verbose=0)


def test_wrong_input_shape():
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"per-sample shape \(3, 8, 8\) but the model was built for input "
                                         r"shape \(2, 8, 8\)"):
        model.fit(np.zeros((4, 3, 8, 8), np.float32), np.zeros(4, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"Sequential.predict: x has per-sample shape \(64,\)"):
        model.predict(np.zeros((4, 64), np.float32))
    with pytest.raises(ValueError, match="x has 4 samples but y has 3"):
        model.fit(np.zeros((4, 2, 8, 8), np.float32), np.zeros(3, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"layer 0 \(dense\).*put a Flatten"):
        Sequential([L.Dense(3)], input_shape=(1, 4, 4))      # built at once, as Keras does


def test_labels_out_of_range():
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, _ = data(3)
    with pytest.raises(ValueError, match=r"label 7 is out of range: the model has 4 outputs, so labels must be "
                                         r"in 0..3"):
        model.fit(x, np.array([0, 7, 1]), verbose=0)
    with pytest.raises(ValueError, match="label -1 is out of range"):
        model.evaluate(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="integer class ids of shape"):
        model.fit(x, np.zeros((3, 4)), verbose=0)


def test_unknown_names():
    model = small_model()
    with pytest.raises(ValueError, match="unknown loss 'hinge'; known:"):
        model.compile("adam", "hinge")
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; known: adam, adamw, rmsprop, sgd"):
        model.compile("adagrad", "mse")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile("adam", "mse", metrics=["f1"])
    with pytest.raises(ValueError, match="unknown activation 'selu'"):
        L.Dense(3, activation="selu")


def test_unbuilt_model_errors():
    model = Sequential([L.Conv2D(2, 3)])
    with pytest.raises(RuntimeError, match="input shape is unknown"):
        model.summary()
    with pytest.raises(ValueError, match="no layers"):
        Sequential().build((1, 4, 4))
    with pytest.raises(TypeError, match="expected a fastconv.layers.Layer"):
        Sequential().add("conv")
