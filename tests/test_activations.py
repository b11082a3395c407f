"""relu, tanh, sigmoid and their backward (which take the forward OUTPUT y)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5

ACTIVATIONS = {
    "relu": (F.relu, F.relu_backward, ref.relu, ref.relu_backward),
    "tanh": (F.tanh, F.tanh_backward, ref.tanh, ref.tanh_backward),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward),
}

shapes = st.one_of(
    st.tuples(st.integers(1, 40)),
    st.tuples(st.integers(1, 6), st.integers(1, 30)),
    st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 9), st.integers(1, 9)),
)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@settings(max_examples=25, deadline=None)
@given(shape=shapes, scale=st.sampled_from([0.5, 3.0, 30.0]), seed=st.integers(0, 2**32 - 1))
def test_activation_matches_reference(device, name, shape, scale, seed):
    forward, backward, ref_forward, ref_backward = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = to_numpy(forward(to_device(x, device)))
    assert y.shape == x.shape and y.dtype == np.float32
    ref.assert_close(y, ref_forward(x), TOL, f"{name} forward")
    # Backward from the library's own forward output, against the reference formula on it.
    dx = to_numpy(backward(to_device(dy, device), to_device(y, device)))
    ref.assert_close(dx, ref_backward(dy, y), TOL, f"{name} backward")


def test_activation_known_values(device):
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    xd = to_device(x, device)
    np.testing.assert_array_equal(to_numpy(F.relu(xd)), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(to_numpy(F.tanh(xd)), np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(to_numpy(F.sigmoid(xd)), 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    y = np.array([0.0, 0.5, 2.0], np.float32)
    dy = np.array([3.0, 3.0, 3.0], np.float32)
    np.testing.assert_array_equal(to_numpy(F.relu_backward(to_device(dy, device), to_device(y, device))), [0, 3, 3])
    # tanh' = 1 - y^2, sigmoid' = y (1 - y), both written with the output y.
    y = np.array([0.0, 0.5, -0.5], np.float32)
    np.testing.assert_allclose(to_numpy(F.tanh_backward(to_device(dy, device), to_device(y, device))),
                               [3.0, 2.25, 2.25], rtol=1e-6)
    y = np.array([0.5, 0.25, 0.9], np.float32)
    np.testing.assert_allclose(to_numpy(F.sigmoid_backward(to_device(dy, device), to_device(y, device))),
                               [0.75, 0.5625, 0.27], rtol=1e-5)


def test_sigmoid_and_tanh_saturate_without_nan(device):
    x = np.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4], np.float32)
    s = to_numpy(F.sigmoid(to_device(x, device)))
    t = to_numpy(F.tanh(to_device(x, device)))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t))
    np.testing.assert_allclose(s, ref.sigmoid(x), atol=1e-7)
    np.testing.assert_allclose(t, [-1, -1, -1, 1, 1, 1], atol=1e-7)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_reference_activation_gradient_is_finite_differences(name):
    _, _, ref_forward, ref_backward = ACTIVATIONS[name]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7)) * 2
    x[np.abs(x) < 0.1] = 0.5                       # relu has no derivative at 0
    g = rng.standard_normal(x.shape)
    numerical = ref.numerical_gradient(lambda v: float(np.sum(ref_forward(v) * g)), x)
    np.testing.assert_allclose(ref_backward(g, ref_forward(x)), numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (1, 1, 3, 3), (2, 16, 28, 28), (4, 3, 1, 1)])
@pytest.mark.parametrize("act", [1, 2, 3], ids=["relu", "tanh", "sigmoid"])
def test_activation_backward_with_the_bias_gradient_in_one_pass(shape, act):
    """_core.activation_backward_bias (a conv layer's backward): dx as activation_backward gives
    it, bit for bit, and db = dx summed over N, P, Q, against float64 loops; the same bits on 1
    and 2 threads (planes summed in a fixed order)."""
    import fastconv
    from fastconv import _core

    rng = np.random.default_rng(sum(shape) + act)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = {1: np.maximum(rng.standard_normal(shape), 0), 2: np.tanh(rng.standard_normal(shape)),
         3: 1 / (1 + np.exp(-rng.standard_normal(shape)))}[act].astype(np.float32)
    dx, db = _core.activation_backward_bias(dy, y, act)
    np.testing.assert_array_equal(dx, _core.activation_backward(dy, y, act))
    want = np.zeros(shape[1])
    grad = {1: lambda g, v: g * (v > 0), 2: lambda g, v: g * (1 - v * v), 3: lambda g, v: g * v * (1 - v)}[act]
    for n in range(shape[0]):
        for k in range(shape[1]):
            want[k] += grad(dy[n, k].astype(np.float64), y[n, k].astype(np.float64)).sum()
    np.testing.assert_allclose(db, want, rtol=1e-5, atol=1e-5)
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = _core.activation_backward_bias(dy, y, act)[1]
        fastconv.set_num_threads(2)
        two = _core.activation_backward_bias(dy, y, act)[1]
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(one, two)


def test_activation_backward_bias_bad_shapes():
    from fastconv import _core

    with pytest.raises(ValueError, match="dy must be 4-D"):
        _core.activation_backward_bias(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="dy has shape"):
        _core.activation_backward_bias(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 3, 4), np.float32), 1)


# --------------------------------------------------------------------------- streaming stores
@pytest.fixture
def stream_threshold():
    """Set the streaming-store threshold for one test (csrc/cpu/stream_store.h), then restore it."""
    from fastconv import _core

    def set_to(nbytes):
        _core._set_stream_store_threshold(nbytes)

    yield set_to
    _core._set_stream_store_threshold(-1)


def test_the_streaming_threshold_defaults_to_half_a_cache():
    from fastconv import _core

    _core._set_stream_store_threshold(-1)
    t = _core._stream_store_threshold()
    assert (1 << 18) <= t <= (1 << 30), t        # between a 512 KiB and a 2 GiB cache's half


@pytest.mark.parametrize("n", [1, 7, 2047, 2048, 2049, 16384 + 3, 3 * 16384 + 1000])
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_are_the_same_bits(stream_threshold, n, threads):
    """Outputs above the threshold go through an L1 block and streaming stores: with the
    threshold at 0 every size takes that path, and the bits must equal the ordinary path's
    (which the reference tests above check), for every activation, forward and backward, on
    sizes around the 2048-float block and the 16384-float work item, also from inputs that
    start off a 16-byte boundary, and on 1 and 2 threads."""
    import fastconv
    from fastconv import _core

    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    old = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        results = {}
        for threshold in (1 << 40, 0):
            stream_threshold(threshold)
            out = []
            for act in (0, 1, 2, 3):
                y = _core.activation_forward(x, act)
                out.append(y)
                out.append(_core.activation_backward(dy, y, act))
                # Views one float in: inputs 4 bytes past a 64-byte boundary.
                out.append(_core.activation_backward(dy[1:], y[1:], act))
            results[threshold] = out
        for plain, streamed in zip(results[1 << 40], results[0]):
            np.testing.assert_array_equal(streamed, plain)
        np.testing.assert_array_equal(results[0][3], np.maximum(x, 0))           # relu, exactly
        np.testing.assert_array_equal(results[0][4], dy * (results[0][3] > 0))
    finally:
        fastconv.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# NaN propagates (issue 14, defect 6): relu(NaN) = NaN everywhere ReLU runs, as in NumPy and
# PyTorch, so a NaN input or weight never turns into a confident finite prediction.

NAN = np.float32("nan")
INF = np.float32("inf")


def check_nan_propagation():
    """Every CPU path that applies an activation, on the ISA this process runs (the
    subprocess test below runs it once per ISA the CPU has)."""
    import fastconv
    from fastconv import _core
    from fastconv import layers as L

    x = np.array([NAN, -1.0, -0.0, 0.0, 2.0, INF, -INF], np.float32)
    np.testing.assert_array_equal(F.relu(x), [NAN, 0, 0, 0, 2, INF, 0])
    np.testing.assert_array_equal(np.isnan(F.tanh(x)), np.isnan(x))
    np.testing.assert_array_equal(np.isnan(F.sigmoid(x)), np.isnan(x))
    np.testing.assert_array_equal(F.tanh(x)[5:], [1, -1])
    np.testing.assert_array_equal(F.sigmoid(x)[5:], [1, 0])
    # Backward, PyTorch's rule: 0 where y <= 0 (whatever dy), dy where y > 0 or y is NaN.
    y = np.array([NAN, NAN, 0.0, 0.0, 2.0, -1.0], np.float32)
    dy = np.array([1.5, NAN, NAN, 1.0, NAN, NAN], np.float32)
    want = np.array([1.5, NAN, 0, 0, NAN, 0], np.float32)
    np.testing.assert_array_equal(F.relu_backward(dy, y), want)
    np.testing.assert_array_equal(ref.relu_backward(dy, y), want)
    for name in ("tanh", "sigmoid"):
        assert np.isnan(getattr(F, name + "_backward")(dy[:1] * NAN, y[4:5])).all()
        assert np.isnan(getattr(F, name + "_backward")(dy[:1], y[:1])).all()
    # The fused backward with the bias gradient, on planes long enough to vectorise.
    y4 = np.ones((2, 3, 5, 7), np.float32)
    y4[1, 2, 4, 6] = NAN
    dx, db = _core.activation_backward_bias(np.ones_like(y4), y4, 1)
    assert dx[1, 2, 4, 6] == 1 and np.isfinite(db).all()
    dy4 = np.ones_like(y4)
    dy4[0, 1, 2, 3] = NAN
    dx, db = _core.activation_backward_bias(dy4, y4, 1)
    assert np.isnan(dx[0, 1, 2, 3]) and np.isnan(db[1]) and np.isfinite(db[[0, 2]]).all()
    # Large arrays take the streaming-store path.
    old = _core._stream_store_threshold()
    _core._set_stream_store_threshold(0)
    try:
        big = np.full(100_003, -1.0, np.float32)
        big[[0, 77_777, 100_002]] = NAN
        y_big = F.relu(big)
        np.testing.assert_array_equal(np.flatnonzero(np.isnan(y_big)), [0, 77_777, 100_002])
        dx_big = F.relu_backward(np.full_like(big, 2.0), y_big)       # dy where y is NaN, else 0
        np.testing.assert_array_equal(np.flatnonzero(dx_big), [0, 77_777, 100_002])
        assert (dx_big[[0, 77_777, 100_002]] == 2).all()
    finally:
        _core._set_stream_store_threshold(old)

    # ReLU fused into conv2d, on a shape for each kernel this machine has, and into dense.
    # A NaN weight of filter k makes every output of channel k NaN (0 * NaN is NaN, padding
    # included); a NaN pixel makes NaN every output whose window holds it (Winograd's tiles
    # may spread it to their neighbours, never less).
    rng = np.random.default_rng(5)
    old_mode = _core._set_winograd_mode(2)
    try:
        for x_shape, w_shape, stride, pad in [
                ((2, 3, 9, 19), (6, 3, 3, 3), (1, 1), (1, 1, 1, 1)),     # rows / Winograd
                ((2, 8, 9, 9), (20, 8, 2, 2), (2, 2), (0, 0, 0, 0)),     # channel-direct
                ((2, 5, 6, 6), (11, 5, 4, 4), (3, 3), (3, 3, 3, 3)),     # im2col
                ((2, 2, 3, 3), (4, 2, 3, 3), (1, 1), (0, 0, 0, 0))]:     # whole image
            algo = _core._conv2d_algorithms(list(x_shape), list(w_shape), stride, pad, (1, 1))[0]
            x = rng.uniform(-1, 1, x_shape).astype(np.float32)
            w = rng.uniform(-1, 1, w_shape).astype(np.float32)
            b = np.full(w_shape[0], -100.0, np.float32)                     # every ReLU switched off
            w[1, 0, 0, 0] = NAN
            y = _core.conv2d_forward(x, w, b, stride, pad, (1, 1), 1)
            assert np.isnan(y[:, 1]).all(), algo
            assert (y[:, 2:] == 0).all() and (y[:, 0] == 0).all(), algo
            w[1, 0, 0, 0] = 1.0
            x[1, 0, 1, 1] = NAN
            y = _core.conv2d_forward(x, w, b, stride, pad, (1, 1), 1)
            want = np.isnan(ref.conv2d(x, w, b, stride=stride, padding=(pad[0], pad[1])))
            assert want.any() and (np.isnan(y) | ~want).all(), algo
            assert not np.isnan(y[0]).any(), algo
    finally:
        _core._set_winograd_mode(old_mode)
    xd = rng.uniform(-1, 1, (3, 5)).astype(np.float32)
    wd = rng.uniform(-1, 1, (4, 5)).astype(np.float32)
    wd[2, 3] = NAN
    yd = _core.linear_forward(xd, wd, np.full(4, -100.0, np.float32), 1)
    assert np.isnan(yd[:, 2]).all() and (yd[:, [0, 1, 3]] == 0).all()
    # The layers a user builds: a NaN input gives a NaN prediction, not a confident 0.
    conv = L.Conv2D(4, 3, activation="relu", padding="same")
    conv.build((1, 6, 6))
    img = np.zeros((1, 1, 6, 6), np.float32)
    img[0, 0, 3, 3] = NAN
    assert np.isnan(conv(img)[0, :, 3, 3]).all()
    dense = L.Dense(3, activation="relu")
    dense.build((2,))
    assert np.isnan(dense(np.array([[NAN, 1.0]], np.float32))).all()
    del fastconv


def test_nan_propagates_through_every_activation_path():
    check_nan_propagation()


def _isas_here():
    import fastconv

    best = fastconv.cpu_isa()
    return [isa for isa in ("generic", "avx2", "avx512")
            if isa == "generic" or (isa == "avx2" and best in ("avx2", "avx512")) or isa == best]


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_nan_propagates_on_each_isa(isa):
    """The same checks in a fresh interpreter per ISA (FASTCONV_ISA picks the kernels once)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if isa not in _isas_here():
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r})\n"
            "import fastconv; assert fastconv.cpu_isa() == sys.argv[1], fastconv.cpu_isa()\n"
            "import test_activations; test_activations.check_nan_propagation(); print('ok')")
    run = subprocess.run([sys.executable, "-c", code, isa], env=dict(os.environ, FASTCONV_ISA=isa),
                         capture_output=True, text=True, timeout=120, cwd=here)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
