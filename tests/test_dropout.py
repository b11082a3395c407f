"""The CPU dropout kernel (csrc/cpu/dropout.cpp) against tests/reference.py's counter-based
generator, element by element; the Dropout layer on top of it."""
import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import layers as L

from reference import dropout_mask

CHUNK = 16384   # the kernel's chunk: sizes around it cross chunk borders


@pytest.mark.parametrize("n,rate,seed,step", [
    (1, 0.5, 0, 0), (37, 0.3, 12345, 0), (CHUNK - 1, 0.1, 2**64 - 1, 3),
    (2 * CHUNK + 37, 0.5, 987654321987654321, 7), (5001, 0.9, 42, 2**40), (513, 0.0, 1, 1)])
def test_dropout_mask_is_the_counter_based_reference(n, rate, seed, step):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y, mask = _core.dropout_forward(x, rate, seed, step)
    want = dropout_mask(n, rate, seed, step)
    np.testing.assert_array_equal(mask, want.astype(np.float32))
    np.testing.assert_array_equal(y, x * mask)   # one float32 product an element
    if rate == 0.0:
        assert np.all(mask == 1.0)


def test_dropout_keeps_the_rate_and_shape_and_differs_by_seed_and_step():
    x = np.ones((8, 3, 31, 29), np.float32)
    want = dropout_mask(x.size, 0.25, 99, 5).reshape(x.shape).astype(np.float32)
    saved = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            y, mask = _core.dropout_forward(x, 0.25, 99, 5)
            assert y.shape == mask.shape == x.shape and y.dtype == mask.dtype == np.float32
            assert abs(np.mean(mask == 0) - 0.25) < 0.01
            np.testing.assert_array_equal(mask, want)   # the same bits at any thread count
    finally:
        fastconv.set_num_threads(saved)
    base = _core.dropout_forward(x, 0.25, 99, 5)[1]
    assert np.mean(_core.dropout_forward(x, 0.25, 100, 5)[1] != base) > 0.2
    assert np.mean(_core.dropout_forward(x, 0.25, 99, 6)[1] != base) > 0.2


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_refuses_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match="rate"):
        _core.dropout_forward(np.ones(4, np.float32), rate, 1)


def test_dropout_layer_masks_follow_its_seed():
    x = np.random.default_rng(3).standard_normal((20, 50)).astype(np.float32)
    a = L.Dropout(0.4, seed=11)
    y1, y2 = a(x, training=True), a(x, training=True)
    assert np.mean((y1 == 0) != (y2 == 0)) > 0.2           # a new mask each call
    b = L.Dropout(0.4, seed=11)
    np.testing.assert_array_equal(b(x, training=True), y1)  # same seed: same masks
    np.testing.assert_array_equal(b(x, training=True), y2)
    kept = y1 != 0
    np.testing.assert_allclose(y1[kept], x[kept] / np.float32(0.6), rtol=1e-6)
