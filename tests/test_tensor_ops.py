"""The generic tensor ops the layers share on every device: reshape, add, add_, scale, channel
concatenation and its slice, zero_pad2d / crop2d, softmax_backward, rmsprop_update and
bias_activation_; against NumPy float64 written here."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy


def test_reshape_is_a_view_with_clear_errors(device):
    x = to_device(np.arange(24, dtype=np.float32).reshape(2, 3, 4), device)
    y = F.reshape(x, (6, -1))
    assert tuple(y.shape) == (6, 4)
    np.testing.assert_array_equal(to_numpy(y), np.arange(24).reshape(6, 4))
    if device == "cpu":
        assert np.shares_memory(y, x)
    with pytest.raises(ValueError, match=r"cannot reshape x of shape \(2, 3, 4\) \(24 elements\) into \(5, 5\)"):
        F.reshape(x, (5, 5))
    with pytest.raises(ValueError, match="one -1"):
        F.reshape(x, (-1, -1))


def test_add_scale_and_accumulate(device):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.standard_normal((3, 5, 7)).astype(np.float32)
    da, db = to_device(a, device), to_device(b, device)
    np.testing.assert_array_equal(to_numpy(F.add(da, db)), a + b)
    np.testing.assert_allclose(to_numpy(F.scale(da, -2.5)), -2.5 * a.astype(np.float64), rtol=1e-7)
    out = to_device(a.copy(), device)
    assert F.add_(out, db) is out
    np.testing.assert_array_equal(to_numpy(out), a + b)
    with pytest.raises(ValueError, match="same shape"):
        F.add(da, to_device(b[:, :4], device))
    with pytest.raises(TypeError, match="s must be a real number"):
        F.scale(da, "2")


@pytest.mark.parametrize("shape_tail", [(4, 5), ()])
def test_concat_and_slice_channels(device, shape_tail):
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal((2, c) + shape_tail).astype(np.float32) for c in (3, 1, 4)]
    y = to_numpy(F.concat_channels([to_device(p, device) for p in parts]))
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
    # The backward: each input's slice of dy, contiguous.
    dy = to_device(y * 2, device)
    c0 = 0
    for p in parts:
        got = to_numpy(F.slice_channels(dy, c0, c0 + p.shape[1]))
        np.testing.assert_array_equal(got, 2 * p)
        c0 += p.shape[1]
    with pytest.raises(ValueError, match="does not match"):
        F.concat_channels([to_device(parts[0], device), to_device(rng.standard_normal((3, 1) + shape_tail).astype(np.float32), device)])
    with pytest.raises(ValueError, match="need 0 <= c0 <= c1"):
        F.slice_channels(dy, 3, 9)


def test_zero_pad_and_crop(device):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = to_numpy(F.zero_pad2d(to_device(x, device), 1, 2, 0, 3))
    want = np.zeros((2, 3, 7, 8), np.float32)
    want[:, :, 1:5, 0:5] = x
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(to_numpy(F.crop2d(to_device(y, device), 1, 2, 0, 3)), x)
    with pytest.raises(ValueError, match="must be >= 0"):
        F.zero_pad2d(x, -1, 0, 0, 0)
    with pytest.raises(ValueError, match="larger than x"):
        F.crop2d(x, 3, 2, 0, 0)


def test_softmax_backward(device):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 7))
    dy = rng.standard_normal((4, 7)).astype(np.float32)
    y = ref.softmax(logits).astype(np.float32)
    dx = to_numpy(F.softmax_backward(to_device(dy, device), to_device(y, device)))
    # Finite differences of sum(softmax(z) * dy) at z = logits.
    num = ref.numerical_gradient(lambda z: float(np.sum(ref.softmax(z) * dy)), logits)
    np.testing.assert_allclose(dx, num, rtol=1e-4, atol=1e-6)


def test_rmsprop_update(device):
    rng = np.random.default_rng(4)
    p0, g, ms0 = (rng.standard_normal(50).astype(np.float32) for _ in range(3))
    ms0 = np.abs(ms0)
    p, ms = to_device(p0.copy(), device), to_device(ms0.copy(), device)
    F.rmsprop_update(p, to_device(g, device), ms, lr=0.01, rho=0.9, eps=1e-7)
    want_ms = 0.9 * ms0.astype(np.float64) + 0.1 * g.astype(np.float64) ** 2
    want_p = p0 - 0.01 * g / (np.sqrt(want_ms) + 1e-7)
    np.testing.assert_allclose(to_numpy(ms), want_ms, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(p), want_p, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="p must be a writeable C-contiguous float32"):
        F.rmsprop_update(p0.astype(np.float64), g, ms0, 0.1)


@pytest.mark.parametrize("act,alpha", [(None, None), ("relu", None), ("leaky_relu", 0.1), ("gelu", None), ("sigmoid", None)])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (7, 9)])
def test_bias_activation_in_place(device, act, alpha, shape):
    rng = np.random.default_rng(5)
    y0 = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    y = to_device(y0.copy(), device)
    assert F.bias_activation_(y, to_device(b, device), act, alpha) is y
    biased = y0 + b.reshape((1, -1) + (1,) * (len(shape) - 2))
    want = to_numpy(F.activation(biased, act, alpha))
    np.testing.assert_allclose(to_numpy(y), want, rtol=1e-6, atol=1e-6)
