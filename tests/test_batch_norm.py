"""Batch normalisation: training forward and the running statistics (Keras's momentum, biased
or unbiased variance), inference, backward, fold_batch_norm; against tests/reference.py, finite
differences and PyTorch's BatchNorm1d/2d."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 2e-5
# y = (x - mean) * inv_std: float32's rounding of x - mean is amplified by inv_std, up to
# 1/sqrt(epsilon) = 31.6 for a constant channel (variance 0), so y gets a looser bound.
TOL_Y = 1e-4

shapes = st.one_of(
    st.tuples(st.integers(2, 9), st.integers(1, 40)),                                    # (N, F)
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7)),  # (N, C, H, W)
)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, affine=st.booleans(), unbiased=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_training_forward_backward_and_running_statistics(device, shape, affine, unbiased, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    gamma = rng.standard_normal(c).astype(np.float32) if affine else None
    beta = rng.standard_normal(c).astype(np.float32) if affine else None
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    rm, rv = to_device(rm0.copy(), device), to_device(rv0.copy(), device)
    d = lambda a: None if a is None else to_device(a, device)
    y, mean, inv_std = F.batch_norm_training(d(x), d(gamma), d(beta), rm, rv, momentum=0.9, eps=1e-3,
                                             unbiased_running_var=unbiased)
    want_y, want_mean, want_var = ref.batch_norm_training(x, gamma, beta, eps=1e-3)
    ref.assert_close(to_numpy(y), want_y, TOL_Y, "y")
    ref.assert_close(to_numpy(mean), want_mean, TOL, "mean")
    ref.assert_close(to_numpy(inv_std), 1 / np.sqrt(want_var + 1e-3), TOL, "inv_std")
    m = x.size // c
    batch_var = want_var * m / (m - 1) if unbiased and m > 1 else want_var
    ref.assert_close(to_numpy(rm), 0.9 * rm0 + 0.1 * want_mean, TOL, "running_mean")
    ref.assert_close(to_numpy(rv), 0.9 * rv0 + 0.1 * batch_var, TOL, "running_var")
    # Backward against central finite differences of the float64 reference at 12 coordinates.
    dy = rng.standard_normal(shape)
    dx, dgamma, dbeta = F.batch_norm_backward(d(dy.astype(np.float32)), d(x), mean, inv_std, d(gamma))
    dx = to_numpy(dx)
    loss = lambda v: float(np.sum(ref.batch_norm_training(v, gamma, beta, 1e-3)[0] * dy))
    x64 = x.astype(np.float64)
    scale = max(1.0, float(np.abs(dx).max()))
    for flat in rng.integers(0, x.size, 12):
        at = np.unravel_index(flat, shape)
        plus, minus = x64.copy(), x64.copy()
        plus[at] += 1e-4
        minus[at] -= 1e-4
        num = (loss(plus) - loss(minus)) / 2e-4
        assert abs(dx[at] - num) < 1e-3 * scale, (at, dx[at], num)
    ref.assert_close(to_numpy(dbeta), np.moveaxis(dy, 1, 0).reshape(c, -1).sum(axis=1), TOL, "dbeta")
    if affine:
        xhat = (want_y - beta.reshape((1, c) + (1,) * (len(shape) - 2))) / gamma.reshape((1, c) + (1,) * (len(shape) - 2))
        ref.assert_close(to_numpy(dgamma), np.moveaxis(dy * xhat, 1, 0).reshape(c, -1).sum(axis=1), 1e-4, "dgamma")
    else:
        assert dgamma is None


def test_inference_and_its_backward(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    g, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    rm, rv = rng.standard_normal(4).astype(np.float32), (rng.random(4) + 0.2).astype(np.float32)
    y = to_numpy(F.batch_norm_inference(*(to_device(a, device) for a in (x, g, b, rm, rv)), eps=1e-3))
    s = (g / np.sqrt(rv.astype(np.float64) + 1e-3))[None, :, None, None]
    ref.assert_close(y, (x - rm[None, :, None, None]) * s + b[None, :, None, None], TOL, "inference")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    inv = (1 / np.sqrt(rv.astype(np.float64) + 1e-3)).astype(np.float32)
    dx, dg, db = F.batch_norm_backward(*(to_device(a, device) for a in (dy, x, rm, inv)), gamma=to_device(g, device),
                                       training=False)
    ref.assert_close(to_numpy(dx), dy * s, TOL, "dx with constant statistics")
    ref.assert_close(to_numpy(db), dy.astype(np.float64).sum(axis=(0, 2, 3)), TOL, "dbeta")


@pytest.mark.parametrize("kind", ["conv2d", "linear"])
def test_fold_batch_norm(kind):
    """conv (or dense) followed by inference batch norm == the folded conv (dense)."""
    rng = np.random.default_rng(2)
    if kind == "conv2d":
        x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
        w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
        layer = lambda w_, b_: F.conv2d(x, w_, b_, padding="same")
    else:
        x = rng.standard_normal((4, 7)).astype(np.float32)
        w = rng.standard_normal((5, 7)).astype(np.float32)
        layer = lambda w_, b_: F.linear(x, w_, b_)
    b = rng.standard_normal(5).astype(np.float32)
    g, be = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    rm, rv = rng.standard_normal(5).astype(np.float32), (rng.random(5) + 0.1).astype(np.float32)
    want = F.batch_norm_inference(layer(w, b), g, be, rm, rv, eps=1e-3)
    wf, bf = F.fold_batch_norm(w, b, g, be, rm, rv, eps=1e-3)
    np.testing.assert_allclose(layer(wf, bf), want, rtol=1e-4, atol=1e-4)
    wf, bf = F.fold_batch_norm(w, None, None, None, rm, rv, eps=1e-3)      # no bias, no affine
    np.testing.assert_allclose(layer(wf, bf), F.batch_norm_inference(layer(w, None), None, None, rm, rv, eps=1e-3),
                               rtol=1e-4, atol=1e-4)


def test_fold_batch_norm_into_conv2d_transpose():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)          # (Cin, Cout, R, S)
    rm, rv = rng.standard_normal(4).astype(np.float32), (rng.random(4) + 0.1).astype(np.float32)
    g, be = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    want = F.batch_norm_inference(F.conv2d_transpose(x, w, stride=2, padding="same"), g, be, rm, rv)
    wf, bf = F.fold_batch_norm(w, None, g, be, rm, rv, axis=1)
    np.testing.assert_allclose(F.conv2d_transpose(x, wf, bf, stride=2, padding="same"), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(8, 3, 5, 5), (16, 10)])
def test_against_pytorch_running_statistics(shape):
    """torch momentum = 1 - keras momentum; PyTorch folds the unbiased batch variance in."""
    torch = pytest.importorskip("torch", reason="PyTorch is only for cross-checks")
    rng = np.random.default_rng(7)
    c = shape[1]
    bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c, eps=1e-5, momentum=0.1).double()
    g, b = rng.standard_normal(c), rng.standard_normal(c)
    bn.weight.data = torch.from_numpy(g)
    bn.bias.data = torch.from_numpy(b)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    for step in range(3):
        x = (rng.standard_normal(shape) * 2 + step).astype(np.float32)
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        ty = bn(tx)
        dy = rng.standard_normal(shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy.astype(np.float64)))
        y, mean, inv = F.batch_norm_training(x, g, b, rm, rv, momentum=0.9, eps=1e-5, unbiased_running_var=True)
        ref.assert_close(y, ty.detach().numpy(), TOL, "y vs torch")
        dx, dg, db = F.batch_norm_backward(dy, x, mean, inv, g.astype(np.float32))
        ref.assert_close(dx, tx.grad.numpy(), 1e-4, "dx vs torch")
        ref.assert_close(dg, bn.weight.grad.numpy(), 1e-4, "dgamma vs torch")
        ref.assert_close(db, bn.bias.grad.numpy(), 1e-4, "dbeta vs torch")
        bn.weight.grad = bn.bias.grad = None
    ref.assert_close(rm, bn.running_mean.numpy(), 1e-5, "running_mean vs torch")
    ref.assert_close(rv, bn.running_var.numpy(), 1e-5, "running_var vs torch")


def test_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="gamma must have shape \\(3,\\)"):
        F.batch_norm_training(x, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="running_mean must be a writeable C-contiguous float32"):
        F.batch_norm_training(x, running_mean=np.zeros(3))
    with pytest.raises(ValueError, match="momentum must be in"):
        F.batch_norm_training(x, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be > 0"):
        F.batch_norm_inference(x, None, None, np.zeros(3), np.ones(3), eps=0)
    with pytest.raises(ValueError, match="x must be \\(N, C, ...\\)"):
        F.batch_norm_training(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="dy has shape"):
        F.batch_norm_backward(np.zeros((4, 2), np.float32), x, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="var must have shape"):
        F.fold_batch_norm(np.zeros((3, 2)), None, None, None, np.zeros(3), np.ones(2))


# ---------------------------------------------------------------- the same bits on every ISA
_BITS = """
import hashlib, sys, numpy as np, fastconv, fastconv.functional as F
assert fastconv.cpu_isa() == sys.argv[1], fastconv.cpu_isa()
h = hashlib.sha256()
rng = np.random.default_rng(7)
for shape in [(5, 6, 14, 14), (3, 4, 3, 5), (4, 7, 1, 9), (2, 3, 8, 8), (9, 300)]:
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    y, mean, inv = F.batch_norm_training(x, g, b, rm, rv)
    dx, dg, db = F.batch_norm_backward(dy, x, mean, inv, g)
    yi = F.batch_norm_inference(x, g, b, rm, rv)
    for a in (y, mean, inv, rm, rv, dx, dg, db, yi):
        h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""


def test_same_bits_on_every_isa():
    """The per-plane loops (batch_norm_kernels.h) keep the portable code's lanes and order and
    round every product: FASTCONV_ISA=generic and avx2 give the same bits, planes with and
    without a tail of n % 8 values, the (N, F) layout too."""
    import os
    import subprocess
    import sys

    from test_activations import _isas_here

    isas = [isa for isa in ("generic", "avx2", "avx512") if isa in _isas_here()]
    if len(isas) < 2:
        pytest.skip("this CPU runs the generic kernels only")
    digests = {}
    for isa in isas:
        run = subprocess.run([sys.executable, "-c", _BITS, isa], env=dict(os.environ, FASTCONV_ISA=isa),
                             capture_output=True, text=True, timeout=120, cwd=os.path.dirname(__file__))
        assert run.returncode == 0, run.stderr[-3000:]
        digests[isa] = run.stdout.strip()
    assert len(set(digests.values())) == 1, digests


def test_planes_against_reference():
    """Planes of 196 values (the DCGAN's 14x14: 24 vectors and a tail of 4), forward and backward;
    dx against the closed form g / sigma (dy - mean(dy) - xhat mean(dy xhat)) in float64."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 5, 14, 14)) * 2 - 1).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    g, b = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    y, mean, inv_std = F.batch_norm_training(x, g, b)
    want_y, want_mean, want_var = ref.batch_norm_training(x, g, b, eps=1e-3)
    ref.assert_close(y, want_y, TOL_Y, "y")
    ref.assert_close(mean, want_mean, TOL, "mean")
    dx, dg, db = F.batch_norm_backward(dy, x, mean, inv_std, g)
    per_channel = lambda v: v.reshape(1, 5, 1, 1)
    xhat = (x.astype(np.float64) - per_channel(want_mean)) / per_channel(np.sqrt(want_var + 1e-3))
    d = dy.astype(np.float64)
    mean_c = lambda v: v.mean(axis=(0, 2, 3)).reshape(1, 5, 1, 1)
    want_dx = per_channel(g / np.sqrt(want_var + 1e-3)) * (d - mean_c(d) - xhat * mean_c(d * xhat))
    ref.assert_close(dx, want_dx, TOL, "dx")
    ref.assert_close(dg, (d * xhat).sum(axis=(0, 2, 3)), TOL, "dgamma")
    ref.assert_close(db, d.sum(axis=(0, 2, 3)), TOL, "dbeta")
