"""Binary cross-entropy from logits (with per-sample weights) and mean squared error: loss and
gradient against tests/reference.py, finite differences and PyTorch's BCEWithLogitsLoss."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy


@settings(max_examples=30, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(1, 70), st.just(1)), st.tuples(st.integers(1, 5), st.integers(1, 9)),
                       st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 4), st.integers(1, 4))),
       scale=st.sampled_from([0.5, 5.0, 80.0]), weighted=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_bce_matches_reference(device, shape, scale, weighted, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    t = rng.random(shape).astype(np.float32)
    hard = rng.random(shape) < 0.5                     # hard 0/1 labels and soft ones
    t[hard] = np.round(t[hard])
    w = rng.random(shape[0]).astype(np.float32) * 2 if weighted else None
    loss, d = F.binary_cross_entropy_with_logits(to_device(z, device), to_device(t, device),
                                                 None if w is None else to_device(w, device))
    want_loss, want_d = ref.binary_cross_entropy_with_logits(z, t, w)
    assert isinstance(loss, float)
    assert abs(loss - want_loss) <= 1e-6 * max(1.0, abs(want_loss)), (loss, want_loss)
    ref.assert_close(to_numpy(d), want_d, 1e-6, "dlogits")


def test_bce_is_stable_for_huge_logits(device):
    z = np.array([[-1e4], [1e4], [-100.0], [100.0], [0.0]], np.float32)
    t = np.array([[0.0], [1.0], [1.0], [0.0], [0.5]], np.float32)
    loss, d = F.binary_cross_entropy_with_logits(to_device(z, device), to_device(t, device))
    want = (0 + 0 + 100 + 100 + np.log(2)) / 5
    assert np.isfinite(loss) and abs(loss - want) < 1e-5, loss
    np.testing.assert_allclose(to_numpy(d).ravel(), [0, 0, -0.2, 0.2, 0], atol=1e-7)


def test_reference_bce_gradient_is_finite_differences():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 3)) * 3
    t = rng.random((4, 3))
    w = rng.random(4)
    num = ref.numerical_gradient(lambda v: ref.binary_cross_entropy_with_logits(v, t, w)[0], z)
    np.testing.assert_allclose(ref.binary_cross_entropy_with_logits(z, t, w)[1], num, rtol=1e-6, atol=1e-9)


def test_bce_against_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is only for cross-checks")
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((64, 3)) * 4).astype(np.float32)
    t = rng.random((64, 3)).astype(np.float32)
    w = rng.random(64).astype(np.float32)
    tz = torch.from_numpy(z.astype(np.float64)).requires_grad_(True)
    crit = torch.nn.BCEWithLogitsLoss(weight=torch.from_numpy(w.astype(np.float64))[:, None])
    tl = crit(tz, torch.from_numpy(t.astype(np.float64)))
    tl.backward()
    loss, d = F.binary_cross_entropy_with_logits(z, t, w)
    assert abs(loss - tl.item()) < 1e-6 * max(1, abs(tl.item()))
    ref.assert_close(d, tz.grad.numpy(), 1e-6, "dlogits vs torch")


def test_mse(device):
    rng = np.random.default_rng(3)
    y = rng.standard_normal((6, 1, 4, 5)).astype(np.float32)
    t = rng.standard_normal(y.shape).astype(np.float32)
    loss, d = F.mse_loss(to_device(y, device), to_device(t, device))
    diff = y.astype(np.float64) - t
    assert abs(loss - np.mean(diff ** 2)) < 1e-6
    ref.assert_close(to_numpy(d), 2 * diff / diff.size, 1e-6, "mse gradient")


def test_bad_arguments():
    z = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="targets must have the shape of logits"):
        F.binary_cross_entropy_with_logits(z, np.zeros((4, 1), np.float32))
    with pytest.raises(ValueError, match="weights must have shape \\(4,\\)"):
        F.binary_cross_entropy_with_logits(z, z, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        F.binary_cross_entropy_with_logits(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError, match="same non-empty shape"):
        F.mse_loss(z, np.zeros((2, 4), np.float32))
