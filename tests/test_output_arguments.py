"""The CPU bindings' output arguments: the weight and bias gradients a training step writes
straight into its flat gradient buffer (fastconv.backend's *_into methods).

Each result written into ``out`` must equal the one the binding returns without it, and equal
the float64 reference; an ``out`` that would be silently copied (wrong dtype, strided, read-only)
or has the wrong shape is refused with a ValueError naming it, and is left untouched.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from fastconv import _core


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("stride,pad,dilation", [((1, 1), (0, 0, 0, 0), (1, 1)),
                                                 ((2, 1), (1, 2, 1, 2), (1, 2))])
def test_conv2d_backward_weight_out(stride, pad, dilation):
    rng = np.random.default_rng(3)
    x = _rand(rng, 2, 3, 9, 8)
    w_shape = (4, 3, 3, 2)
    p = (9 + pad[0] + pad[2] - dilation[0] * (w_shape[2] - 1) - 1) // stride[0] + 1
    q = (8 + pad[1] + pad[3] - dilation[1] * (w_shape[3] - 1) - 1) // stride[1] + 1
    dy = _rand(rng, 2, 4, p, q)
    flat = np.full(5 + int(np.prod(w_shape)) + 3, 7.0, np.float32)  # a view inside a bigger buffer
    out = flat[5:5 + int(np.prod(w_shape))].reshape(w_shape)
    returned = _core.conv2d_backward_weight(dy, x, w_shape, stride, pad, dilation, out)
    assert np.shares_memory(returned, out)
    plain = _core.conv2d_backward_weight(dy, x, list(w_shape), stride, pad, dilation)
    np.testing.assert_array_equal(out, plain)
    want = ref.conv2d_backward_weight(dy, x, w_shape, stride=stride, padding=(pad[0], pad[1]),
                                      dilation=dilation)
    ref.assert_close(out, want, 1e-4, "conv2d_backward_weight into out")
    assert flat[:5].tolist() == [7.0] * 5 and flat[-3:].tolist() == [7.0] * 3  # nothing past it


def test_conv2d_backward_bias_and_activation_bias_out():
    rng = np.random.default_rng(4)
    dy = _rand(rng, 3, 5, 4, 6)
    y = np.abs(_rand(rng, 3, 5, 4, 6))
    out = np.zeros(5, np.float32)
    _core.conv2d_backward_bias(dy, out)
    np.testing.assert_allclose(out, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    db = np.zeros(5, np.float32)
    dx, returned = _core.activation_backward_bias(dy, y, 1, None, None, db)
    assert np.shares_memory(returned, db)
    relu_dy = np.where(y > 0, dy, 0).astype(np.float64)
    np.testing.assert_allclose(db, relu_dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, relu_dy, rtol=0, atol=0)


def test_linear_backward_out():
    rng = np.random.default_rng(5)
    x, w, dy = _rand(rng, 6, 7), _rand(rng, 4, 7), _rand(rng, 6, 4)
    dw, db = np.zeros((4, 7), np.float32), np.zeros(4, np.float32)
    dx, dw_r, db_r = _core.linear_backward(dy, x, w, dw, db)
    assert np.shares_memory(dw_r, dw) and np.shares_memory(db_r, db)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    np.testing.assert_allclose(dw, dy64.T @ x64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, dy64.sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy64 @ w64, rtol=1e-5, atol=1e-5)
    only_dw = np.zeros((4, 7), np.float32)     # one given, the other made
    _, _, db_made = _core.linear_backward(dy, x, w, only_dw)
    np.testing.assert_array_equal(only_dw, dw)
    np.testing.assert_array_equal(db_made, db)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((4, 7), np.float64), "float32"),
    (np.zeros((7, 4), np.float32).T, "C-contiguous"),
    (np.zeros((4, 8), np.float32), "dw_out"),
    ("read-only", "writeable"),
])
def test_linear_backward_bad_out_is_refused(bad, message):
    rng = np.random.default_rng(6)
    x, w, dy = _rand(rng, 6, 7), _rand(rng, 4, 7), _rand(rng, 6, 4)
    if isinstance(bad, str):
        bad = np.zeros((4, 7), np.float32)
        bad.flags.writeable = False
    before = bad.copy()
    with pytest.raises(ValueError, match=message) as err:
        _core.linear_backward(dy, x, w, bad)
    assert "dw_out" in str(err.value)
    np.testing.assert_array_equal(bad, before)


def test_conv2d_backward_weight_bad_out_is_refused():
    rng = np.random.default_rng(7)
    x, dy = _rand(rng, 1, 2, 5, 5), _rand(rng, 1, 3, 3, 3)
    for bad in (np.zeros((3, 2, 3, 3), np.float64), np.zeros((3, 2, 3, 4), np.float32),
                np.zeros((3, 2, 3, 6), np.float32)[..., ::2]):
        with pytest.raises(ValueError, match="conv2d_backward_weight: out"):
            _core.conv2d_backward_weight(dy, x, [3, 2, 3, 3], (1, 1), (0, 0, 0, 0), (1, 1), bad)


def test_layer_params_follow_assignment():
    """A layer keeps its weight list between calls (Context.weights reads it on every call):
    assigning a weight attribute, or deleting one, must show in params and in what a call uses."""
    import fastconv
    from fastconv import layers as L

    model = fastconv.Sequential([L.Dense(3, input_shape=(4,))], seed=0)
    dense = model.layers[0]
    x = np.ones((2, 4), np.float32)
    before = model.predict(x, verbose=0)
    assert dense.params[0] is dense.kernel
    dense.kernel = np.zeros_like(dense.kernel)
    assert dense.params[0] is dense.kernel
    np.testing.assert_array_equal(model.predict(x, verbose=0), np.tile(dense.bias, (2, 1)))
    assert not np.array_equal(before, np.tile(dense.bias, (2, 1)))
    dense.params.clear()                      # a copy: the kept list is not the caller's
    assert len(dense.params) == 2
    del dense.bias
    assert len(dense.params) == 1


def test_out_sharing_memory_with_an_input_is_refused():
    """An out that overlaps an input would be read after the kernel wrote into it: refused."""
    rng = np.random.default_rng(8)
    buf = _rand(rng, 6 * 7 + 4 * 7)
    x = buf[:42].reshape(6, 7)
    w, dy = _rand(rng, 4, 7), _rand(rng, 6, 4)
    overlapping = buf[40:68].reshape(4, 7)          # its first two floats are x's last two
    before = buf.copy()
    with pytest.raises(ValueError, match="linear_backward: dw_out shares memory with an input"):
        _core.linear_backward(dy, x, w, overlapping)
    np.testing.assert_array_equal(buf, before)
    apart = buf[42:70].reshape(4, 7)                # right after x: no overlap, accepted
    _core.linear_backward(dy, x, w, apart)
    dy4 = _rand(rng, 1, 3, 3, 3)
    with pytest.raises(ValueError, match="conv2d_backward_bias: out shares memory"):
        _core.conv2d_backward_bias(dy4, dy4.reshape(-1)[:3])
