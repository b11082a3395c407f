"""softmax and softmax cross-entropy against the float64 reference and finite differences."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 8), c=st.integers(1, 30), scale=st.sampled_from([0.1, 3.0, 50.0]),
       seed=st.integers(0, 2**32 - 1))
def test_softmax_matches_reference(device, n, c, scale, seed):
    x = (np.random.default_rng(seed).standard_normal((n, c)) * scale).astype(np.float32)
    y = to_numpy(F.softmax(to_device(x, device)))
    assert y.shape == x.shape and y.dtype == np.float32
    ref.assert_close(y, ref.softmax(x), TOL, "softmax")
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape,axis", [((5, 3), 0), ((5, 3), 1), ((5, 3), -1), ((2, 4, 3, 3), 1),
                                        ((2, 3, 4), -1), ((2, 3, 4), 0)])
def test_softmax_along_any_axis(device, shape, axis):
    x = np.random.default_rng(len(shape) + axis).standard_normal(shape).astype(np.float32)
    y = to_numpy(F.softmax(to_device(x, device), axis=axis))
    ref.assert_close(y, ref.softmax(x, axis=axis), TOL, f"softmax axis={axis}")


def test_softmax_large_logits_do_not_overflow(device):
    x = np.array([[1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]], np.float32)
    y = to_numpy(F.softmax(to_device(x, device)))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 16), c=st.integers(1, 12), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_softmax_cross_entropy_matches_reference(device, n, c, scale, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    labels = rng.integers(0, c, n).astype(np.int64)
    # Labels stay a host array: the loss dispatches on the logits' type.
    loss, dlogits = F.softmax_cross_entropy(to_device(logits, device), labels)
    want_loss, want_dlogits = ref.softmax_cross_entropy(logits, labels)
    assert abs(float(loss) - want_loss) <= 1e-5 * max(abs(want_loss), 1.0)
    dlogits = to_numpy(dlogits)
    assert dlogits.shape == (n, c) and dlogits.dtype == np.float32
    ref.assert_close(dlogits, want_dlogits, TOL, "dlogits")


def test_softmax_cross_entropy_known_values(device):
    # Uniform logits: loss log C, dlogits (1/C - onehot) / N.
    logits = np.zeros((4, 5), np.float32)
    labels = np.array([0, 1, 4, 4], np.int64)
    loss, dlogits = F.softmax_cross_entropy(to_device(logits, device), labels)
    assert isinstance(float(loss), float)
    assert math.isclose(float(loss), math.log(5), rel_tol=1e-6)
    want = np.full((4, 5), 0.2 / 4)
    want[np.arange(4), labels] -= 1 / 4
    np.testing.assert_allclose(to_numpy(dlogits), want, rtol=1e-6, atol=1e-8)
    # A confident right answer costs nearly nothing; a confident wrong one costs the margin.
    logits = np.array([[100.0, 0.0], [0.0, 100.0]], np.float32)
    loss, _ = F.softmax_cross_entropy(to_device(logits, device), np.array([0, 0]))
    assert math.isclose(float(loss), 50.0, rel_tol=1e-6)


def test_softmax_cross_entropy_accepts_int32_labels(device):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    loss64, d64 = F.softmax_cross_entropy(to_device(logits, device), labels.astype(np.int64))
    loss32, d32 = F.softmax_cross_entropy(to_device(logits, device), labels.astype(np.int32))
    assert float(loss64) == pytest.approx(float(loss32), rel=1e-7)
    np.testing.assert_array_equal(to_numpy(d64), to_numpy(d32))


def test_reference_softmax_cross_entropy_gradient_is_finite_differences():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((4, 6)) * 2
    labels = np.array([0, 5, 2, 2])
    _, dlogits = ref.softmax_cross_entropy(logits, labels)
    numerical = ref.numerical_gradient(lambda v: ref.softmax_cross_entropy(v, labels)[0], logits)
    np.testing.assert_allclose(dlogits, numerical, rtol=1e-6, atol=1e-9)


def test_reference_softmax_jacobian_is_finite_differences():
    """Softmax's vector-Jacobian product y * (g - sum(g * y)) against finite differences."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 5))
    g = rng.standard_normal((3, 5))
    y = ref.softmax(x)
    vjp = y * (g - np.sum(g * y, axis=-1, keepdims=True))
    numerical = ref.numerical_gradient(lambda v: float(np.sum(ref.softmax(v) * g)), x)
    np.testing.assert_allclose(vjp, numerical, rtol=1e-6, atol=1e-9)
