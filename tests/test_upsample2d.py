"""upsample2d nearest and bilinear (both align_corners), forward and backward, against the
loops of tests/reference.py, finite differences and PyTorch's F.interpolate."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5
MODES = [("nearest", False), ("bilinear", False), ("bilinear", True)]


@pytest.mark.parametrize("mode,align_corners", MODES)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       scale=st.sampled_from([1, 2, 3, (2, 1), (1, 3), (4, 2)]), seed=st.integers(0, 2**32 - 1))
def test_matches_reference(device, mode, align_corners, n, c, h, w, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    y = to_numpy(F.upsample2d(to_device(x, device), scale, mode, align_corners))
    want = ref.upsample2d(x, scale, mode, align_corners)
    ref.assert_close(y, want, TOL, f"{mode} forward")
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = to_numpy(F.upsample2d_backward(to_device(dy, device), x.shape, scale, mode, align_corners))
    ref.assert_close(dx, ref.upsample2d_backward(dy, x.shape, scale, mode, align_corners), TOL, f"{mode} backward")


def test_large_planes_across_threads():
    """Enough planes for several threads: the same bits as one plane at a time."""
    import fastconv

    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 16, 14, 14)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 28, 28)).astype(np.float32)
    old = fastconv.get_num_threads()
    try:
        for mode, ac in MODES:
            fastconv.set_num_threads(2)
            y2, dx2 = F.upsample2d(x, 2, mode, ac), F.upsample2d_backward(dy, x.shape, 2, mode, ac)
            fastconv.set_num_threads(1)
            np.testing.assert_array_equal(F.upsample2d(x[5:6], 2, mode, ac), y2[5:6])
            np.testing.assert_array_equal(F.upsample2d_backward(dy[7:8], (1, 16, 14, 14), 2, mode, ac), dx2[7:8])
    finally:
        fastconv.set_num_threads(old)


@pytest.mark.parametrize("mode,align_corners", MODES)
def test_reference_backward_is_finite_differences(mode, align_corners):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 3, 4))
    g = rng.standard_normal((1, 2, 6, 12))
    num = ref.numerical_gradient(lambda v: float(np.sum(ref.upsample2d(v, (2, 3), mode, align_corners) * g)), x)
    np.testing.assert_allclose(ref.upsample2d_backward(g, x.shape, (2, 3), mode, align_corners), num,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode,align_corners", MODES)
@pytest.mark.parametrize("scale", [2, (3, 2)])
def test_against_pytorch(mode, align_corners, scale):
    torch = pytest.importorskip("torch", reason="PyTorch is only for cross-checks")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    extra = {} if mode == "nearest" else {"align_corners": align_corners}
    ty = torch.nn.functional.interpolate(tx, scale_factor=ref.pair(scale), mode=mode, **extra)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(F.upsample2d(x, scale, mode, align_corners), ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(F.upsample2d_backward(dy, x.shape, scale, mode, align_corners), tx.grad.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_known_values():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    np.testing.assert_array_equal(F.upsample2d(x, 2)[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # half-pixel: the first row is x's first row interpolated at 0, 0.25, 0.75, 1 (clamped)
    np.testing.assert_allclose(F.upsample2d(x, 2, "bilinear")[0, 0, 0], [1.0, 1.25, 1.75, 2.0])
    np.testing.assert_allclose(F.upsample2d(x, 2, "bilinear", True)[0, 0, 0], [1.0, 4 / 3, 5 / 3, 2.0], rtol=1e-6)


def test_bad_arguments():
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="mode must be 'nearest' or 'bilinear'"):
        F.upsample2d(x, 2, "bicubic")
    with pytest.raises(ValueError, match="scale must be >= 1"):
        F.upsample2d(x, 0)
    with pytest.raises(ValueError, match="align_corners applies to mode='bilinear'"):
        F.upsample2d(x, 2, "nearest", True)
    with pytest.raises(ValueError, match="x must be 4-D"):
        F.upsample2d(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="dy must have shape"):
        F.upsample2d_backward(np.zeros((1, 2, 5, 6), np.float32), x.shape, 2)
