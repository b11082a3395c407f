"""Models as graphs (fastconv.Model, fastconv.Input): the functional API against Sequential,
gradients through Add, Concatenate, shared layers and nested models by finite differences,
input gradients, trainable flags (and the GAN pattern), subclassed models traced on their first
call and the refusal of data-dependent control flow, threads, and saving every model kind.

Finite differences run in float64 on the loss along random unit directions, with float32
arithmetic underneath, so steps are 1e-2 and tolerances relative (2e-2), as in test_models.py.
"""
import threading

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import models, optimizers
from fastconv.models import Model, Sequential


def _data(n=5, shape=(2, 8, 8), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, classes, n)


def _check_weight_gradients(model, x, y, directions=4, seed=1, training=True):
    """compute_gradients against central differences of the loss along random directions over
    all weights at once and over each weight array alone."""
    value, grads = model.compute_gradients(x, y, training=training)
    weights = model.get_weights()
    assert len(grads) == len(weights)
    rng = np.random.default_rng(seed)
    dirs = [[rng.standard_normal(w.shape) for w in weights]]
    for i in rng.choice(len(weights), size=min(directions, len(weights)), replace=False):
        dirs.append([rng.standard_normal(w.shape) if j == i else np.zeros(w.shape)
                     for j, w in enumerate(weights)])
    eps = 1e-2
    for v in dirs:
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in v))
        v = [d / norm for d in v]
        model.set_weights([w + eps * d for w, d in zip(weights, v)])
        plus = model.compute_gradients(x, y, training=training)[0]
        model.set_weights([w - eps * d for w, d in zip(weights, v)])
        minus = model.compute_gradients(x, y, training=training)[0]
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float(np.sum(g.astype(np.float64) * d)) for g, d in zip(grads, v))
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 2e-4, (numeric, analytic)
    model.set_weights(weights)
    return value, grads


def _check_input_gradients(model, xs, y, seed=2):
    """input_gradients against central differences of the loss along a random direction of
    each input."""
    dxs = model.input_gradients(xs, y)
    if not isinstance(dxs, list):
        dxs, xs = [dxs], [xs]
    rng = np.random.default_rng(seed)
    loss = lambda inputs: model.evaluate(inputs if len(inputs) > 1 else inputs[0], y,  # noqa: E731
                                         batch_size=10_000)
    eps = 1e-2
    for i, (x, dx) in enumerate(zip(xs, dxs)):
        assert dx.shape == x.shape
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        plus = [a + (eps * v).astype(np.float32) if j == i else a for j, a in enumerate(xs)]
        minus = [a - (eps * v).astype(np.float32) if j == i else a for j, a in enumerate(xs)]
        numeric = (loss(plus)[0] - loss(minus)[0]) / (2 * eps)
        analytic = float(np.sum(dx.astype(np.float64) * v))
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 2e-4, (i, numeric, analytic)


def _chain():
    return [L.Conv2D(3, 3, activation="tanh", padding="same"), L.AvgPool2D(2), L.Conv2D(4, 3),
            L.Flatten(), L.Dense(6, activation="tanh"), L.Dropout(0.25), L.Dense(4)]


# ------------------------------------------------------------------------------ graph vs Sequential
def test_functional_chain_equals_sequential():
    """The same layers as a Sequential and as a functional graph, from one seed: the same initial
    weights, predictions, and training run, bit for bit (dropout included)."""
    x, y = _data(40)
    seq = Sequential(_chain(), input_shape=(2, 8, 8), seed=3)
    inputs = fastconv.Input((2, 8, 8))
    t = inputs
    for layer in _chain():
        t = layer(t)
    fun = Model(inputs, t, seed=3)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seq.predict(x), fun.predict(x))
    histories = []
    for model in (seq, fun):
        model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics="accuracy")
        histories.append(model.fit(x, y, epochs=3, batch_size=8, verbose=0).history)
    assert histories[0] == histories[1]
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ gradients
def _residual_model(seed=0):
    inputs = fastconv.Input((2, 8, 8))
    a = L.Conv2D(3, 3, padding="same", activation="tanh")(inputs)
    b = L.Conv2D(3, 3, padding="same", activation="sigmoid")(a)
    s = L.Add()([a, b, L.Conv2D(3, 1)(inputs)])          # three-way residual sum
    c = L.Concatenate()([s, L.Conv2D(2, 3, padding="same", activation="tanh")(s), inputs])
    out = L.Dense(4)(L.Flatten()(L.AvgPool2D(2)(c)))
    return Model(inputs, out, seed=seed)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_gradients_through_add_and_concatenate(loss):
    model = _residual_model()
    model.compile("sgd", loss)
    x, y = _data()
    if loss == "mse":
        y = np.eye(4, dtype=np.float32)[y]
    _check_weight_gradients(model, x, y)
    _check_input_gradients(model, x, y)


def test_gradients_of_a_shared_layer_add_up():
    """A Dense applied to two branches has one kernel; its gradient is the sum of both calls'."""
    inputs = fastconv.Input((6,))
    shared = L.Dense(6, activation="tanh", name="shared")
    h1 = shared(inputs)
    h2 = shared(L.Dense(6, activation="tanh")(h1))
    out = L.Dense(3)(L.Concatenate()([h1, h2]))
    model = Model(inputs, out, seed=1)
    assert [layer.name for layer in model.layers].count("shared") == 1
    assert len(model.weights) == 6
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(7, (6,), 3)
    _check_weight_gradients(model, x, y)
    _check_input_gradients(model, x, y)


def test_gradients_through_nested_models():
    """A Sequential and a functional model used as layers inside another model."""
    encoder = Sequential([L.Conv2D(3, 3, activation="tanh"), L.MaxPool2D(2)], input_shape=(2, 8, 8),
                         seed=1, name="encoder")
    inner_in = fastconv.Input((3, 3, 3))
    inner = Model(inner_in, L.Add()([inner_in, L.Conv2D(3, 3, padding="same")(inner_in)]),
                  name="block", seed=2)
    inputs = fastconv.Input((2, 8, 8))
    out = L.Dense(4)(L.Flatten()(inner(encoder(inputs))))
    model = Model(inputs, out, seed=3)
    assert [type(layer).__name__ for layer in model.layers] == \
        ["InputLayer", "Sequential", "Model", "Flatten", "Dense"]
    assert model.count_params() == encoder.count_params() + inner.count_params() + 27 * 4 + 4
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data()
    _check_weight_gradients(model, x, y)
    _check_input_gradients(model, x, y)
    # The nested models' weights are the outer model's: training the outer trains them.
    before = encoder.get_weights()
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    assert not np.array_equal(before[0], encoder.get_weights()[0])


def test_several_inputs_and_outputs():
    image, extra = fastconv.Input((1, 6, 6), name="image"), fastconv.Input((3,), name="extra")
    h = L.Flatten()(L.Conv2D(2, 3, activation="tanh")(image))
    j = L.Concatenate()([h, extra])
    cls = L.Dense(4, name="cls")(j)
    reg = L.Dense(2, name="reg")(j)
    model = Model([image, extra], [cls, reg], seed=0)
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 1, 6, 6)).astype(np.float32),
          rng.standard_normal((5, 3)).astype(np.float32)]
    ys = [rng.integers(0, 4, 5), rng.standard_normal((5, 2)).astype(np.float32)]
    out = model.predict(xs)
    assert [o.shape for o in out] == [(5, 4), (5, 2)]
    value, grads = _check_weight_gradients(model, xs, ys)
    weighted = (fastconv.losses.get("sparse_categorical_crossentropy")(ys[0], out[0])
                + 0.5 * fastconv.losses.get("mse")(ys[1], out[1]))
    assert value == pytest.approx(weighted, rel=1e-5)          # the weighted sum of the two losses
    _check_input_gradients(model, xs, ys)
    by_name = model.predict({"image": xs[0], "extra": xs[1]})
    np.testing.assert_array_equal(by_name[0], out[0])


def test_input_gradients_of_an_output_direction_is_a_saliency_map():
    """With output_gradient = one-hot of a class, the input gradient is d(score)/d(x)."""
    model = models.lenet5(classic=False, seed=0)
    x, _ = _data(2, (1, 28, 28))
    seed = np.zeros((2, 10), np.float32)
    seed[:, 3] = 1.0
    saliency = model.input_gradients(x, output_gradient=seed)
    assert saliency.shape == x.shape and np.any(saliency != 0)
    v = np.random.default_rng(0).standard_normal(x.shape)
    v /= np.linalg.norm(v)
    eps = 1e-2
    plus = model.predict(x + (eps * v).astype(np.float32))[:, 3].sum()
    minus = model.predict(x - (eps * v).astype(np.float32))[:, 3].sum()
    assert (plus - minus) / (2 * eps) == pytest.approx(float(np.sum(saliency * v)), rel=2e-2, abs=1e-4)


# ------------------------------------------------------------------------------ trainable
def test_frozen_layers_do_not_change_and_get_no_gradient():
    x, y = _data(16)
    model = Sequential(_chain()[:5] + [L.Dense(4)], input_shape=(2, 8, 8), seed=0)
    model.layers[0].trainable = False
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    frozen = model.layers[0].get_weights()
    others = model.layers[2].get_weights()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(others[0], model.layers[2].kernel)
    assert len(model.trainable_weights) == len(model.weights) - 2
    # The optimiser holds state for the trainable weights only (two runs around the frozen one)
    sizes = sorted(p.size for p in model._trainer.params)
    assert sum(sizes) == sum(p.size for p in model.trainable_weights)
    assert model.summary(print_fn=None).count("Non-trainable params: 57") == 1


def test_flags_are_read_at_compile_time_the_gan_pattern():
    """Keras's GAN recipe: the discriminator compiled alone trains; frozen inside the combined
    model (compiled after setting trainable=False), only the generator trains."""
    gen = Sequential([L.Dense(8, activation="tanh"), L.Dense(6)], input_shape=(3,), seed=1,
                     name="generator")
    disc = Sequential([L.Dense(5, activation="tanh"), L.Dense(1)], input_shape=(6,), seed=2,
                      name="discriminator")
    disc.compile(optimizers.Adam(1e-2), "mse")
    disc.trainable = False
    z = fastconv.Input((3,))
    gan = Model(z, disc(gen(z)), name="gan")
    gan.compile(optimizers.Adam(1e-2), "mse")
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((8, 3)).astype(np.float32)
    real = rng.standard_normal((8, 6)).astype(np.float32)
    ones = np.ones((8, 1), np.float32)

    d0, g0 = disc.get_weights(), gen.get_weights()
    gan.train_on_batch(noise, ones)
    for a, b in zip(d0, disc.get_weights()):
        np.testing.assert_array_equal(a, b)                    # frozen inside the GAN
    assert any(not np.array_equal(a, b) for a, b in zip(g0, gen.get_weights()))
    assert gan.optimizer.iterations == 1 and disc.optimizer.iterations == 0

    g1 = gen.get_weights()
    disc.train_on_batch(real, ones)
    assert any(not np.array_equal(a, b) for a, b in zip(d0, disc.get_weights()))  # trains alone
    for a, b in zip(g1, gen.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert disc.trainable is False and all(not layer.trainable for layer in disc.layers)


# ------------------------------------------------------------------------------ subclassing
class _Net(Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(3, 3, activation="relu")
        self.pool = L.MaxPool2D(2)
        self.flat = L.Flatten()
        self.head = L.Dense(4)
        self.drop = L.Dropout(0.1)

    def call(self, x, training=None):
        h = self.pool(self.conv(x))
        return self.head(self.drop(self.flat(h), training=training))


def test_subclassed_model_is_traced_on_first_call():
    x, y = _data(12)
    net = _Net(seed=4)
    assert not net.built
    out = net.predict(x)
    assert net.built and out.shape == (12, 4)
    assert [type(layer).__name__ for layer in net.layers] == \
        ["InputLayer", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "Dense"]
    net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = net.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 2
    np.testing.assert_array_equal(net(x), net.predict(x, batch_size=5))
    _check_weight_gradients(net, x[:5], y[:5], training=False)  # dropout off: deterministic


def test_data_dependent_control_flow_is_refused_clearly():
    class Branchy(Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(3), L.Dense(3)

        def call(self, x):
            return self.a(x) if x.numpy().mean() > 0 else self.b(x)

    class OnTraining(Model):
        def __init__(self):
            super().__init__()
            self.a = L.Dense(3)

        def call(self, x, training=False):
            return self.a(x) if training else x

    class NumpyInside(Model):
        def call(self, x):
            return np.tanh(x)

    x = np.zeros((2, 4), np.float32)
    with pytest.raises(L.TracingError, match=r"Branchy.call: .*traces a model's call\(\) once"):
        Branchy().predict(x)
    with pytest.raises(L.TracingError, match="branches on `training`"):
        OnTraining().predict(x)
    with pytest.raises(L.TracingError, match="converting to a NumPy array"):
        NumpyInside().predict(x)
    with pytest.raises(TypeError, match="subclass Model and define call"):
        Model()


def test_symbolic_addition_is_an_add_layer():
    inputs = fastconv.Input((4,))
    h = L.Dense(4)(inputs)
    model = Model(inputs, h + inputs)
    assert isinstance(model.layers[-1], L.Add)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), model.layers[1](x) + x, rtol=1e-6)
    with pytest.raises(L.TracingError):
        h * 2


# ------------------------------------------------------------------------------ threads
def test_four_threads_predicting_at_once_match_serial_results():
    model = models.vgg_small(seed=0)
    x = np.random.default_rng(1).random((48, 1, 28, 28), dtype=np.float32)
    serial = [model.predict(x[i::4], batch_size=5) for i in range(4)]
    results = [None] * 4
    errors = []

    def work(i):
        try:
            for _ in range(3):
                results[i] = model.predict(x[i::4], batch_size=5)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(results, serial):
        np.testing.assert_array_equal(a, b)


def test_gradients_are_right_while_another_thread_predicts():
    """Per-call state: a predict in another thread cannot change a gradient computed meanwhile
    (the old layers kept _x and _y on themselves: 10 of 10 runs came out wrong)."""
    model = Sequential(_chain()[:5] + [L.Dense(4)], input_shape=(2, 8, 8), seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(64)
    other = np.random.default_rng(9).standard_normal((256, 2, 8, 8)).astype(np.float32)
    want = model.compute_gradients(x, y)
    stop = threading.Event()

    def predict_forever():
        while not stop.is_set():
            model.predict(other, batch_size=7)

    t = threading.Thread(target=predict_forever)
    t.start()
    try:
        for _ in range(10):
            got = model.compute_gradients(x, y)
            assert got[0] == want[0]
            for a, b in zip(got[1], want[1]):
                np.testing.assert_array_equal(a, b)
    finally:
        stop.set()
        t.join()


def test_predict_while_fitting_in_another_thread_is_refused():
    model = Sequential(_chain()[:5] + [L.Dense(4)], input_shape=(2, 8, 8), seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(64)
    seen = []

    class Probe(models.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 0:
                t = threading.Thread(target=lambda: seen.append(_try_predict(model, x)))
                t.start()
                t.join()
                seen.append(("same thread", model.predict(x[:2]).shape))

    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Probe()])
    assert "training in another thread" in seen[0]
    assert seen[1] == ("same thread", (2, 4))


def _try_predict(model, x):
    try:
        model.predict(x)
    except RuntimeError as err:
        return str(err)
    return "no error"


# ------------------------------------------------------------------------------ saving
@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed", "nested"])
def test_save_and_load_every_model_kind(tmp_path, kind):
    x, y = _data(10)
    if kind == "sequential":
        model = Sequential(_chain(), input_shape=(2, 8, 8), seed=0)
    elif kind == "functional":
        model = _residual_model()
    elif kind == "subclassed":
        model = _Net(seed=1)
        model.predict(x)
    else:
        encoder = Sequential([L.Conv2D(3, 3, activation="tanh")], input_shape=(2, 8, 8), seed=1)
        inputs = fastconv.Input((2, 8, 8))
        h = encoder(inputs)
        model = Model(inputs, L.Dense(4)(L.Flatten()(L.Add()([h, encoder(inputs)]))), seed=2)
    model.compile(optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    again = fastconv.load_model(path)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.count_params() == model.count_params()
    assert again.optimizer.learning_rate == 3e-3 and [m.name for m in again.metrics] == ["accuracy"]
    assert again.evaluate(x, y) == model.evaluate(x, y)
    assert again.summary(print_fn=None).splitlines()[3:-5] == \
        model.summary(print_fn=None).splitlines()[3:-5]
    weights = tmp_path / "w.npz"
    model.save_weights(weights)
    fresh = fastconv.load_model(path, compile=False)
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(weights)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_resnet_small_builds_and_counts():
    model = models.resnet_small(seed=0)
    assert model.count_params() == (16 * 9 + 16) + 2 * (16 * 16 * 9 + 16) + (32 * 16 * 9 + 32) + \
        2 * (32 * 32 * 9 + 32) + (32 * 7 * 7 * 10 + 10)
    out = model.predict(np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape == (2, 10)
    assert sum(isinstance(layer, L.Add) for layer in model.layers) == 2
