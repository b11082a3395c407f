"""conv2d_transpose: forward, both backwards, output sizes (Keras's and PyTorch's rules), against
the scatter loops of tests/reference.py, finite differences and PyTorch's ConvTranspose2d."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 2e-5


@st.composite
def problems(draw):
    n, cin, cout = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.sampled_from([1, 2, 3, (2, 1), (1, 3)]))
    dilation = draw(st.sampled_from([1, 1, 2, (1, 2)]))
    sh, sw = ref.pair(stride)
    dh, dw = ref.pair(dilation)
    kind = draw(st.sampled_from(["int", "same", "valid"]))
    if kind == "int":
        padding = (draw(st.integers(0, (dh * (r - 1)) // 2)), draw(st.integers(0, (dw * (s - 1)) // 2)))
        output_padding = draw(st.sampled_from([None, (draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1)))]))
    else:
        padding = kind
        output_padding = None
    return (n, cin, h, w), (cin, cout, r, s), stride, padding, output_padding, dilation


@settings(max_examples=40, deadline=None)
@given(problem=problems(), seed=st.integers(0, 2**32 - 1), bias=st.booleans())
def test_matches_reference(device, problem, seed, bias):
    x_shape, w_shape, stride, padding, output_padding, dilation = problem
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    want = ref.conv2d_transpose(np.zeros(x_shape), np.zeros(w_shape), **kw).shape
    if min(want[2:]) < 1:
        with pytest.raises(ValueError, match="empty"):
            F.conv2d_transpose(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), **kw)
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[1]).astype(np.float32) if bias else None
    y = to_numpy(F.conv2d_transpose(to_device(x, device), to_device(w, device),
                                    None if b is None else to_device(b, device), **kw))
    assert F.conv2d_transpose_output_shape(x_shape, w_shape, **kw) == want
    ref.assert_close(y, ref.conv2d_transpose(x, w, b, **kw), TOL, "conv2d_transpose forward")
    dy = rng.standard_normal(want).astype(np.float32)
    dx_want, dw_want = ref.conv2d_transpose_backward(dy, x, w, **kw)
    dx = F.conv2d_transpose_backward_input(to_device(dy, device), to_device(w, device), x_shape, **kw)
    dw = F.conv2d_transpose_backward_weight(to_device(dy, device), to_device(x, device), w_shape, **kw)
    ref.assert_close(to_numpy(dx), dx_want, TOL, "conv2d_transpose backward input")
    ref.assert_close(to_numpy(dw), dw_want, TOL, "conv2d_transpose backward weight")
    db = to_numpy(F.conv2d_backward_bias(to_device(dy, device)))
    ref.assert_close(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), TOL, "bias gradient")


@pytest.mark.parametrize("n,k,s,padding,op,want", [
    (7, 3, 2, "same", None, 14), (14, 3, 2, "same", None, 28),   # the autoencoder's decoder
    (7, 4, 2, "same", None, 14), (7, 3, 2, "valid", None, 15), (7, 1, 3, "valid", None, 21),
    (7, 3, 2, "same", 1, 14), (7, 3, 2, "same", 0, 13), (7, 3, 2, "valid", 1, 16),
    (7, 3, 2, 1, 1, 14), (7, 3, 2, 0, None, 15), (5, 3, 1, 1, None, 5),
])
def test_output_size_rules(n, k, s, padding, op, want):
    """Keras's deconv_output_length for the words, PyTorch's formula for ints."""
    assert F.conv2d_transpose_output_size(n, k, s, padding, op) == want
    assert F.conv2d_transpose_output_shape((2, 3, n, n), (3, 5, k, k), s, padding, op) == (2, 5, want, want)


def test_same_is_tensorflows_rule_on_the_output():
    """padding="same" puts the output where TensorFlow's conv2d_transpose does: the adjoint
    convolution uses TF's "same" padding of the OUTPUT size, the extra pixel bottom/right. For
    k=4, s=2 that crops 1 pixel top/left from the full (valid) result; for k=3, s=2, none."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for k, crop in ((3, 0), (4, 1), (5, 1)):
        w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
        full = ref.conv2d_transpose(x, w, stride=2, padding=0)      # every tap, uncut
        same = F.conv2d_transpose(x, w, stride=2, padding="same")
        assert same.shape == (2, 2, 10, 12)
        np.testing.assert_allclose(same, full[:, :, crop:crop + 10, crop:crop + 12], rtol=1e-5, atol=1e-5)


def test_reference_is_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 3, 4))
    w = rng.standard_normal((2, 3, 3, 2))
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=(1, 2))
    g = rng.standard_normal(ref.conv2d_transpose(x, w, **kw).shape)
    dx, dw = ref.conv2d_transpose_backward(g, x, w, **kw)
    num_dx = ref.numerical_gradient(lambda v: float(np.sum(ref.conv2d_transpose(v, w, **kw) * g)), x)
    num_dw = ref.numerical_gradient(lambda v: float(np.sum(ref.conv2d_transpose(x, v, **kw) * g)), w)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, num_dw, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kw", [
    dict(stride=2, padding=1, output_padding=1), dict(stride=3, padding=2, output_padding=2),
    dict(stride=(2, 1), padding=(0, 1), output_padding=(1, 0), dilation=(1, 2)), dict(stride=1, padding=0),
])
def test_against_pytorch(kw):
    torch = pytest.importorskip("torch", reason="PyTorch is only for cross-checks")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_(True)
    tb = torch.from_numpy(b.astype(np.float64)).requires_grad_(True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    y = F.conv2d_transpose(x, w, b, **kw)
    ref.assert_close(y, ty.detach().numpy(), TOL, "forward vs torch")
    ref.assert_close(F.conv2d_transpose_backward_input(dy, w, x.shape, **kw), tx.grad.numpy(), TOL, "dx vs torch")
    ref.assert_close(F.conv2d_transpose_backward_weight(dy, x, w.shape, **kw), tw.grad.numpy(), TOL, "dw vs torch")
    ref.assert_close(F.conv2d_backward_bias(dy), tb.grad.numpy(), TOL, "db vs torch")


def test_bad_arguments():
    x, w = np.zeros((1, 3, 4, 4), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="w has 2 input channels"):
        F.conv2d_transpose(x, np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride"):
        F.conv2d_transpose(x, w, stride=2, padding=1, output_padding=2)
    with pytest.raises(ValueError, match="b must have shape \\(2,\\)"):
        F.conv2d_transpose(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="TensorFlow refuses this too"):
        F.conv2d_transpose(x, np.zeros((3, 2, 4, 4), np.float32), stride=2, padding="same", output_padding=0)
    with pytest.raises(ValueError, match="padding must be"):
        F.conv2d_transpose(x, w, padding="full")
    with pytest.raises(ValueError, match="dy must have shape"):
        F.conv2d_transpose_backward_input(np.zeros((1, 2, 5, 5), np.float32), w, x.shape, stride=2, padding="same")
