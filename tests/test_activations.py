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
