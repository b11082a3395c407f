"""Training on the GPU (fastconv.models.cuda_step): the step's kernels against NumPy, CUDA
graph capture and replay, and whole models trained on the CPU and on the GPU from one seed
following the same loss curve.

Tests marked gpu run where a CUDA GPU is available. The whole-model tests also run everywhere
on tests/fake_cuda.py, a NumPy stand-in for the CUDA extension that records ops during a
capture instead of running them: there they check the Python side of GPU training (the same
layer objects driven with device weights, the device gather and sums, graph capture and
replay, no host copy inside a captured step). The rest check that asking for the GPU without
one fails clearly, before any work.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fake_cuda
import fastconv
import fastconv.cuda as fc_cuda
from fastconv import _core
from fastconv import layers as L
from fastconv import models, optimizers
from fastconv.models import cuda_step
from fastconv.models import training as T

HAS_GPU = fc_cuda.is_available()


@pytest.fixture(params=["fake", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")])])
def gpu(request, monkeypatch):
    """Each whole-model GPU test runs on the NumPy stand-in and, where there is one, on a GPU."""
    if request.param == "fake":
        fake_cuda.install(monkeypatch)
    return request.param


def small_data(n=320, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, y


# ---------------------------------------------------------------- everywhere
def test_bad_device_names_the_argument():
    model = models.lenet5(classic=False, seed=0)
    model.compile("adam")
    x, y = small_data(8)
    with pytest.raises(ValueError, match="device"):
        model.fit(x, y, epochs=1, device="tpu", verbose=0)
    with pytest.raises(ValueError, match="device"):
        model.evaluate(x, y, device=3)


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU error path")
def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    model = models.lenet5(classic=False, seed=0)
    model.compile("adam")
    x, y = small_data(8)
    with pytest.raises(RuntimeError, match="device='cuda'"):
        model.fit(x, y, epochs=1, device="cuda", verbose=0)
    with pytest.raises(RuntimeError, match="device='cuda'"):
        model.predict(x, device="cuda")
    # Outside the repository: there `python -m fastconv` would import the uncompiled source tree.
    result = subprocess.run([sys.executable, "-m", "fastconv", "train", "lenet5", "--device", "cuda",
                             "--epochs", "1"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode != 0
    assert "--device cuda: no usable GPU" in result.stderr


# ---------------------------------------------------------------- the step's kernels
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
@pytest.mark.parametrize("opt", [optimizers.Adam(1e-2),
                                 optimizers.Adam(1e-3, weight_decay=0.01),
                                 optimizers.SGD(0.1),
                                 optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                 optimizers.SGD(0.05, momentum=0.8)])
def test_optimizer_kernels_match_numpy(opt):
    ext = fc_cuda.require()
    rng = np.random.default_rng(1)
    n = 1037  # odd: the grid-stride tail
    p = rng.standard_normal(n).astype(np.float32)
    pd = ext.Tensor.from_numpy(p)
    counters = ext.Tensor.zeros((2,), "int64")
    state = {}
    opt.reset()
    for step in range(4):
        g = rng.standard_normal(n).astype(np.float32)
        opt.step([p], [g])
        gd = ext.Tensor.from_numpy(g)
        if isinstance(opt, optimizers.Adam):
            for key in ("m", "v"):
                state.setdefault(key, ext.Tensor.zeros((n,), "float32"))
            ext.adam_update(pd, gd, state["m"], state["v"], opt.learning_rate, opt.beta_1,
                            opt.beta_2, opt.epsilon, opt.weight_decay, counters)
        else:
            if opt.momentum:
                state.setdefault("velocity", ext.Tensor.zeros((n,), "float32"))
            ext.sgd_update(pd, gd, state.get("velocity"), opt.learning_rate, opt.momentum,
                           opt.weight_decay, opt.nesterov)
        ext.step_end(counters)
        np.testing.assert_allclose(pd.numpy(), p, rtol=2e-6, atol=2e-7, err_msg=f"step {step}")
    assert counters.numpy().tolist() == [4, 4]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_gather_batch_and_loss_sums_against_numpy():
    ext = fc_cuda.require()
    rng = np.random.default_rng(2)
    S, B, C = 37, 8, 7
    x = rng.standard_normal((S, 3, 5, 5)).astype(np.float32)
    y = rng.integers(0, C, S)
    perm = rng.permutation(S)
    xd, yd, permd = (ext.Tensor.from_numpy(a) for a in (x, y, perm))
    counters = ext.Tensor.from_numpy(np.array([2, 0]))
    xb, yb = ext.Tensor.empty((B, 3, 5, 5), "float32"), ext.Tensor.empty((B,), "int64")
    ext.gather_batch(xd, yd, permd, counters, B, xb, yb)
    idx = perm[2 * B:3 * B]
    np.testing.assert_array_equal(xb.numpy(), x[idx])
    np.testing.assert_array_equal(yb.numpy(), y[idx])
    # A cursor past the permutation's end reads nothing: zero samples, label -1 (a bad label).
    ext.gather_batch(xd, yd, permd, ext.Tensor.from_numpy(np.array([5, 0])), B, xb, yb)
    np.testing.assert_array_equal(yb.numpy(), -1)
    assert not np.any(xb.numpy())
    ext.gather_batch(xd, yd, permd, counters, B, xb, yb)

    logits = rng.standard_normal((B, C)).astype(np.float32) * 3
    logits[0, :] = 1.0  # ties: the first maximum is the prediction, as NumPy's argmax
    labels = yb.numpy()
    sums = ext.Tensor.zeros((3,), "int64")
    dl = ext.Tensor.empty((B, C), "float32")
    for _ in range(2):  # sums accumulate
        ext.softmax_xent_sums(ext.Tensor.from_numpy(logits), yb, dl, sums)
    z = logits.astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    row_loss = lse - z[np.arange(B), labels]
    soft = np.exp(z - lse[:, None])
    onehot = np.eye(C)[labels]
    got = sums.numpy().view(np.float64)
    np.testing.assert_allclose(got[0], 2 * row_loss.sum(), rtol=1e-5)
    assert got[1] == 2 * np.count_nonzero(z.argmax(1) == labels)
    assert got[2] == 0
    np.testing.assert_allclose(dl.numpy(), (soft - onehot) / B, rtol=1e-5, atol=1e-7)

    bad = labels.copy()
    bad[3] = C  # out of range: counted, never used as an index
    sums.zero_()
    ext.softmax_xent_sums(ext.Tensor.from_numpy(logits), ext.Tensor.from_numpy(bad), dl, sums)
    assert sums.numpy().view(np.float64)[2] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_dropout_kernel_is_inverted_dropout_and_counter_based():
    ext = fc_cuda.require()
    n, rate = 100_003, 0.3
    x = ext.Tensor.from_numpy(np.full(n, 2.0, np.float32))
    y, mask = ext.Tensor.empty((n,), "float32"), ext.Tensor.empty((n,), "float32")
    counters = ext.Tensor.zeros((2,), "int64")
    ext.dropout_forward(x, y, mask, rate, 1234, counters)
    m1 = mask.numpy()
    assert set(np.unique(m1)) <= {0.0, np.float32(1 / (1 - rate))}
    assert abs(np.mean(m1 == 0) - rate) < 0.01
    np.testing.assert_array_equal(y.numpy(), 2.0 * m1)
    ext.dropout_forward(x, y, mask, rate, 1234, counters)  # same (seed, step): same mask
    np.testing.assert_array_equal(mask.numpy(), m1)
    ext.step_end(counters)  # next step: a new mask
    ext.dropout_forward(x, y, mask, rate, 1234, counters)
    assert np.mean(mask.numpy() != m1) > 0.2
    # the CPU kernel draws the same numbers for the same seed and step (common/counter_rng.h)
    np.testing.assert_array_equal(m1, _core.dropout_forward(np.full(n, 2.0, np.float32), rate,
                                                            1234, 0)[1])
    np.testing.assert_array_equal(mask.numpy(), _core.dropout_forward(
        np.full(n, 2.0, np.float32), rate, 1234, 1)[1])


# ---------------------------------------------------------------- graphs
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_graph_replays_the_recorded_ops_on_new_data():
    ext = fc_cuda.require()
    rng = np.random.default_rng(3)
    x = ext.Tensor.from_numpy(rng.standard_normal((4, 3, 9, 9)).astype(np.float32))
    w = ext.Tensor.from_numpy(rng.standard_normal((5, 3, 3, 3)).astype(np.float32))
    out = ext.Tensor.empty((4, 5, 7, 7), "float32")
    ext.capture_begin()
    assert ext.capturing()
    y = ext.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)  # recorded, not run
    out.copy_(y)
    graph = ext.capture_end()
    assert not ext.capturing() and graph.num_nodes >= 2
    for _ in range(3):
        new = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
        x.copy_(new)
        graph.replay()
        want = np.maximum(fastconv.functional.conv2d(new, w.numpy()), 0)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)
    # Tensors allocated after the capture never share memory with the graph's workspace.
    others = [ext.Tensor.zeros((4, 5, 7, 7), "float32") for _ in range(4)]
    graph.replay()
    for t in others:
        assert not np.any(t.numpy())
    del graph


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_host_copy_while_capturing_is_refused_and_capture_recovers():
    ext = fc_cuda.require()
    t = ext.Tensor.zeros((3,), "float32")
    ext.capture_begin()
    with pytest.raises(RuntimeError, match="captur"):
        t.numpy()
    ext.capture_abort()
    assert not ext.capturing()
    np.testing.assert_array_equal(t.numpy(), 0)  # the runtime still works
    with pytest.raises(RuntimeError):
        ext.capture_end()


# ---------------------------------------------------------------- whole models, CPU vs GPU
def _fit_losses(model, x, y, device, epochs=1, batch_size=64):
    losses = []

    class Record(models.Callback):
        def on_batch_end(self, batch, logs=None):
            losses.append(logs["loss"])

    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, device=device,
                        callbacks=[Record()])
    return np.array(losses), history


def _curves_agree(runs, steps, n):
    lc, hc, wc = runs["cpu"]
    lg, hg, wg = runs["cuda"]
    assert len(lc) == len(lg) == steps
    np.testing.assert_allclose(lg, lc, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(hg.history["loss"], hc.history["loss"], rtol=2e-3)
    # Accuracy counts argmaxes: a near-tie may flip between devices, so allow a few samples.
    if "accuracy" in hc.history:
        np.testing.assert_allclose(hg.history["accuracy"], hc.history["accuracy"], atol=6 / n)
    # Adam moves every weight by about lr a step whatever the gradient's size, so a weight
    # whose gradient is near zero may step the other way on the other device: a few lr apart.
    for a, b in zip(wg, wc):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=5e-3)


@pytest.mark.parametrize("name", ["lenet5_modern_adam", "lenet5_classic_sgd", "vgg_small_adam"])
def test_gpu_training_follows_the_cpu_loss_curve(name, gpu):
    x, y = small_data(300)  # 4 full batches of 64 and one of 44
    if name.startswith("vgg"):
        make = lambda: models.vgg_small(seed=5, dropout=0.0)  # noqa: E731 (dropout RNGs differ)
    else:
        make = lambda: models.lenet5(classic="classic" in name, seed=5)  # noqa: E731
    opt = (lambda: optimizers.Adam(1e-3)) if name.endswith("adam") else \
        (lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    runs = {}
    for device in ("cpu", "cuda"):
        model = make()
        model.compile(opt(), metrics=["accuracy"])
        losses, history = _fit_losses(model, x, y, device, epochs=2)
        runs[device] = (losses, history, model.get_weights())
    _curves_agree(runs, 10, 300)


def _graph_model(seed, frozen=False):
    """A functional model with what a Sequential lacks: a residual Add, a Concatenate, a
    ZeroPadding2D that is not fused (two readers), and a frozen layer when asked."""
    inputs = fastconv.Input((1, 12, 12))
    pad = L.ZeroPadding2D(1)(inputs)
    a = L.Conv2D(4, 3, activation="relu")(pad)
    b = L.Conv2D(4, 3, activation="tanh")(pad)
    s = L.Add()([a, b])
    c = L.Concatenate()([s, L.Conv2D(2, 3, padding="same")(s)])
    x = L.Flatten()(L.MaxPool2D(2)(c))
    hidden = L.Dense(16, activation="relu", name="hidden")
    out = L.Dense(10)(hidden(x))
    if frozen:
        hidden.trainable = False
    return models.Model(inputs, out, seed=seed)


@pytest.mark.parametrize("frozen", [False, True])
def test_gpu_trains_graphs_with_merges_and_frozen_layers(gpu, frozen):
    rng = np.random.default_rng(7)
    x = rng.random((150, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 150)
    runs = {}
    for device in ("cpu", "cuda"):
        model = _graph_model(3, frozen)
        model.compile(optimizers.Adam(2e-3), metrics=["accuracy"])
        before = model.get_layer("hidden").get_weights()
        losses, history = _fit_losses(model, x, y, device, epochs=2, batch_size=32)
        after = model.get_layer("hidden").get_weights()
        for w0, w1 in zip(before, after):
            assert np.array_equal(w0, w1) == frozen
        runs[device] = (losses, history, model.get_weights())
    _curves_agree(runs, 10, 150)


def _generative_layers_model(seed):
    """A classifier made of the generative models' layers: Conv2D with ELU, BatchNormalization,
    LeakyReLU, a GELU Conv2DTranspose, bilinear UpSampling2D, a Keras-order Reshape and Flatten."""
    inputs = fastconv.Input((1, 8, 8))
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="elu")(inputs)
    x = L.LeakyReLU(0.2)(L.BatchNormalization(momentum=0.9)(x))
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="gelu")(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(L.MaxPool2D(2)(x))
    x = L.Reshape((8, 8, 3), data_format="channels_last")(L.Flatten(data_format="channels_last")(x))
    out = L.Dense(10)(L.Flatten()(L.BatchNormalization()(x)))
    return models.Model(inputs, out, seed=seed)


def test_gpu_trains_the_generative_layers(gpu):
    rng = np.random.default_rng(8)
    x = rng.random((96, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 96)
    runs = {}
    for device in ("cpu", "cuda"):
        model = _generative_layers_model(4)
        model.compile(optimizers.Adam(2e-3), metrics=["accuracy"])
        losses, history = _fit_losses(model, x, y, device, epochs=2, batch_size=32)
        # the running statistics came back from the device with the weights
        assert not np.array_equal(model.layers[2].moving_mean, 0)
        runs[device] = (losses, history, model.get_weights())
    _curves_agree(runs, 6, 96)


def test_gpu_trains_an_autoencoder_with_mse(gpu):
    rng = np.random.default_rng(9)
    x = rng.random((90, 1, 12, 12), dtype=np.float32)
    noisy = np.clip(x + 0.2 * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
    runs = {}
    for device in ("cpu", "cuda"):
        model = models.Sequential([
            L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
            L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),
            L.Conv2D(1, 3, padding="same", activation="sigmoid")], input_shape=(1, 12, 12), seed=2)
        model.compile(optimizers.Adam(3e-3), "mse")
        runs[device] = _fit_losses(model, noisy, x, device, epochs=2, batch_size=32) + (model.get_weights(),)
    _curves_agree(runs, 6, 90)
    assert runs["cuda"][1].history["loss"][-1] < runs["cuda"][1].history["loss"][0]


def test_gpu_train_on_batch_with_binary_crossentropy(gpu):
    """A GAN's discriminator step on each device: the same loss, accuracy and weights."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = (rng.random((16, 1)) > 0.5).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        disc = models.Sequential([L.Dense(8, activation="leaky_relu"), L.Dense(1)], input_shape=(6,),
                                 seed=3)
        disc.compile(optimizers.Adam(2e-4, beta_1=0.5),
                     fastconv.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
        steps = [disc.train_on_batch(x, y, device=device) for _ in range(3)]
        results[device] = (steps, disc.get_weights())
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-4, atol=1e-6)
    for a, b in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_graphs_and_eager_agree_and_graphs_are_used(gpu):
    x, y = small_data(640)
    results = {}
    for use_graphs in (False, True):
        model = models.lenet5(classic=False, seed=1)
        model.compile(optimizers.Adam(1e-3), metrics=["accuracy"])
        model.build()
        state = cuda_step._DeviceState(model, T._trainer(model), use_graphs=use_graphs)
        model._cuda_trainer = state
        history = model.fit(x, y, epochs=2, batch_size=64, verbose=0, device="cuda")
        assert model._cuda_trainer is state
        results[use_graphs] = (history.history["loss"], model.get_weights())
        if use_graphs:
            assert state.graph_error is None
            assert state.graph_replays >= 2 * 10 - 3  # all but the warm-up step replay
        else:
            assert state.graph_replays == 0
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    for a, b in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gpu_evaluate_predict_and_dropout_model_train(gpu):
    x, y = small_data(256)
    model = models.vgg_small(seed=2)  # with dropout
    model.compile(optimizers.Adam(1e-3), metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, device="cuda")
    assert np.all(np.isfinite(history.history["loss"]))
    cpu = model.evaluate(x, y, batch_size=50)
    gpu_ = model.evaluate(x, y, batch_size=50, device="cuda")
    np.testing.assert_allclose(gpu_, cpu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x[:40], device="cuda"), model.predict(x[:40]),
                               rtol=1e-4, atol=1e-5)
    assert model.optimizer.iterations == 2 * 8


def test_unsupported_layers_and_losses_are_named(gpu):
    model = models.Sequential([L.Flatten(input_shape=(1, 4, 4)), L.Dense(3)])
    model.compile("adam", loss="mae")
    with pytest.raises(NotImplementedError, match="sparse_categorical_crossentropy"):
        model.fit(np.zeros((4, 1, 4, 4), np.float32), np.zeros((4, 3), np.float32), verbose=0,
                  device="cuda")
    aug = models.Sequential([L.RandomTranslation(0.2, input_shape=(1, 6, 6)), L.Flatten(), L.Dense(3)])
    aug.compile("adam")
    with pytest.raises(NotImplementedError, match="RandomTranslation.*no CUDA implementation"):
        aug.fit(np.zeros((4, 1, 6, 6), np.float32), np.zeros(4, np.int64), verbose=0, device="cuda")
