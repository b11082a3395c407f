"""conv2d forward and backward against the float64 reference, and the reference's own
gradients against central finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------

padding_forms = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.sampled_from(["valid", "same"]),
)


@st.composite
def conv_cases(draw):
    """A valid conv2d case: shapes, stride, padding, dilation, and a seed for the data."""
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 8))
    k = draw(st.integers(1, 8))
    r = draw(st.integers(1, 5))
    s = draw(st.integers(1, 5))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    dilation = draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))))
    padding = draw(padding_forms)
    dh, dw = ref.pair(dilation)
    if isinstance(padding, str):
        pads_h = pads_w = 0
    else:
        ph, pw = ref.pair(padding)
        pads_h, pads_w = 2 * ph, 2 * pw
    # Build the input size from the effective kernel, so the padded input always holds it
    # ("same" fits any size >= 1); odd and even sizes both come up.
    h = max(1, dh * (r - 1) + 1 - pads_h + draw(st.integers(0, 6)))
    w = max(1, dw * (s - 1) + 1 - pads_w + draw(st.integers(0, 6)))
    if isinstance(padding, str) and padding == "same":
        h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(x_shape=(n, c, h, w), w_shape=(k, c, r, s), stride=stride, padding=padding,
                dilation=dilation, bias=bias, seed=seed)


def make_data(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(np.float32)
    w = rng.uniform(-1, 1, case["w_shape"]).astype(np.float32)
    b = rng.uniform(-1, 1, case["w_shape"][0]).astype(np.float32) if case["bias"] else None
    y_shape = ref.conv2d_output_shape(case["x_shape"], case["w_shape"], case["stride"],
                                      case["padding"], case["dilation"])
    dy = rng.uniform(-1, 1, y_shape).astype(np.float32)
    return x, w, b, dy


def geometry(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])


# --------------------------------------------------------------------------------------
# property tests: library vs reference on random valid cases
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(case=conv_cases())
def test_conv2d_forward_matches_reference(device, case):
    x, w, b, _ = make_data(case)
    got = to_numpy(F.conv2d(to_device(x, device), to_device(w, device),
                            None if b is None else to_device(b, device), **geometry(case)))
    assert got.dtype == np.float32
    ref.assert_close(got, ref.conv2d(x, w, b, **geometry(case)), TOL, f"conv2d {case}")


@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_conv2d_backward_input_matches_reference(device, case):
    x, w, _, dy = make_data(case)
    got = to_numpy(F.conv2d_backward_input(to_device(dy, device), to_device(w, device),
                                           case["x_shape"], **geometry(case)))
    assert got.dtype == np.float32
    want = ref.conv2d_backward_input(dy, w, case["x_shape"], **geometry(case))
    ref.assert_close(got, want, TOL, f"conv2d_backward_input {case}")


@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_conv2d_backward_weight_matches_reference(device, case):
    x, w, _, dy = make_data(case)
    got = to_numpy(F.conv2d_backward_weight(to_device(dy, device), to_device(x, device),
                                            case["w_shape"], **geometry(case)))
    assert got.dtype == np.float32
    want = ref.conv2d_backward_weight(dy, x, case["w_shape"], **geometry(case))
    ref.assert_close(got, want, TOL, f"conv2d_backward_weight {case}")


@settings(max_examples=25, deadline=None)
@given(case=conv_cases())
def test_conv2d_backward_bias_matches_reference(device, case):
    _, _, _, dy = make_data(case)
    got = to_numpy(F.conv2d_backward_bias(to_device(dy, device)))
    assert got.shape == (case["w_shape"][0],)
    ref.assert_close(got, ref.conv2d_backward_bias(dy), TOL, f"conv2d_backward_bias {case}")


# --------------------------------------------------------------------------------------
# explicit cases: batch 1, one channel, stride > 1, padding, dilation, 1x1, non-square
# --------------------------------------------------------------------------------------

EXPLICIT = [
    # (x_shape, w_shape, stride, padding, dilation)
    ((1, 1, 5, 5), (1, 1, 3, 3), 1, 0, 1),               # batch 1, one channel
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1),               # smallest possible
    ((2, 3, 7, 9), (4, 3, 3, 3), 2, 1, 1),               # stride 2, padding 1, odd sizes
    ((2, 3, 8, 8), (4, 3, 3, 3), 3, 0, 1),               # stride 3
    ((1, 2, 9, 9), (3, 2, 3, 3), 1, 2, 2),               # dilation 2 with padding 2
    ((1, 2, 9, 11), (3, 2, 3, 2), (2, 1), (1, 0), (2, 1)),  # every argument a pair
    ((3, 5, 6, 6), (7, 5, 1, 1), 1, 0, 1),               # 1x1 convolution
    ((3, 5, 6, 6), (7, 5, 1, 1), 2, 0, 1),               # strided 1x1
    ((2, 2, 28, 28), (5, 2, 3, 3), 2, "same", 1),        # "same" with stride 2 (28 -> 14)
    ((1, 1, 5, 5), (1, 1, 2, 2), 2, "same", 1),          # "same", stride 2, odd input
    ((1, 1, 6, 7), (2, 1, 3, 3), 1, "same", 2),          # "same" with dilation
    ((1, 1, 7, 7), (2, 1, 4, 2), 3, "same", 1),          # "same", even kernel, stride 3
    ((2, 3, 5, 5), (2, 3, 5, 5), 1, "valid", 1),         # kernel covers the whole image
    ((2, 3, 4, 10), (2, 3, 1, 5), 1, (0, 2), 1),         # non-square kernel, pad width only
    ((1, 8, 16, 16), (8, 8, 5, 5), 1, 2, 1),             # LeNet-ish
    # Larger channel counts, so the GEMM under conv2d runs past its block sizes:
    ((2, 16, 20, 20), (32, 16, 3, 3), 1, 1, 1),          # C*R*S = 144, K = 32, 400 positions
    ((1, 64, 12, 12), (70, 64, 3, 3), 1, "same", 1),      # C*R*S = 576, K = 70
    ((2, 130, 9, 9), (65, 130, 1, 1), 1, 0, 1),          # 1x1, C = 130
    ((1, 3, 64, 64), (8, 3, 5, 5), 2, 2, 1),             # 1024 output positions
    ((3, 33, 13, 11), (17, 33, 3, 5), (2, 1), "same", (1, 2)),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", EXPLICIT)
def test_conv2d_explicit_cases(device, x_shape, w_shape, stride, padding, dilation):
    rng = np.random.default_rng(sum(x_shape) * 31 + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    geo = dict(stride=stride, padding=padding, dilation=dilation)
    y_want = ref.conv2d(x, w, b, **geo)
    y = to_numpy(F.conv2d(to_device(x, device), to_device(w, device), to_device(b, device), **geo))
    assert y.shape == y_want.shape
    ref.assert_close(y, y_want, TOL, "forward")

    dy = rng.standard_normal(y_want.shape).astype(np.float32)
    dx = to_numpy(F.conv2d_backward_input(to_device(dy, device), to_device(w, device), x_shape, **geo))
    ref.assert_close(dx, ref.conv2d_backward_input(dy, w, x_shape, **geo), TOL, "backward input")
    dw = to_numpy(F.conv2d_backward_weight(to_device(dy, device), to_device(x, device), w_shape, **geo))
    ref.assert_close(dw, ref.conv2d_backward_weight(dy, x, w_shape, **geo), TOL, "backward weight")
    db = to_numpy(F.conv2d_backward_bias(to_device(dy, device)))
    ref.assert_close(db, ref.conv2d_backward_bias(dy), TOL, "backward bias")


def test_conv2d_known_values_by_hand(device):
    """A case small enough to check on paper: 1x1x3x4 input, 2x2 kernel, stride 1, pad 0."""
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    w = np.array([[[[1, 0], [0, -1]]]], np.float32)          # x[i, j] - x[i+1, j+1]
    y = to_numpy(F.conv2d(to_device(x, device), to_device(w, device), to_device(np.array([0.5], np.float32), device)))
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 3), -5 + 0.5, np.float32))


def test_conv2d_same_padding_puts_extra_pixel_bottom_right(device):
    """Even kernel, stride 1, "same": pad 0 top/left, 1 bottom/right (TensorFlow)."""
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2), np.float32)
    y = to_numpy(F.conv2d(to_device(x, device), to_device(w, device), padding="same"))
    np.testing.assert_array_equal(y[0, 0], [[12, 16, 9], [24, 28, 15], [15, 17, 9]])


def test_conv2d_same_padding_stride2_dilation_shape(device):
    """"same" with stride > 1 keeps ceil(n / s); with dilation the effective kernel counts."""
    x = np.ones((1, 1, 11, 10), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    y = to_numpy(F.conv2d(to_device(x, device), to_device(w, device), stride=2, padding="same", dilation=2))
    assert y.shape == (1, 1, 6, 5)
    # Effective kernel 5: H total pad = (6-1)*2 + 5 - 11 = 4 -> 2/2; W total = (5-1)*2+5-10 = 3 -> 1/2.
    assert ref.resolve_padding("same", (11, 10), (3, 3), (2, 2), (2, 2)) == (2, 1, 2, 2)
    ref.assert_close(y, ref.conv2d(x, w, None, stride=2, padding="same", dilation=2), TOL)
    # The top-left output sees rows {-2, 0, 2} and columns {-1, 1, 3}: 2 x 2 real cells.
    assert y[0, 0, 0, 0] == 4.0


# --------------------------------------------------------------------------------------
# the reference backward functions are the true gradients of the reference forward
# --------------------------------------------------------------------------------------

GRAD_CASES = [
    # (x_shape, w_shape, stride, padding, dilation)
    ((2, 2, 5, 6), (3, 2, 2, 3), 1, 0, 1),
    ((1, 2, 6, 5), (2, 2, 3, 2), (2, 1), (1, 2), (1, 2)),
    ((2, 1, 5, 5), (2, 1, 3, 3), 2, "same", 1),
    ((1, 2, 4, 5), (2, 2, 2, 2), 1, "same", 2),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", GRAD_CASES)
def test_reference_conv2d_gradients_are_finite_differences(x_shape, w_shape, stride, padding, dilation):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    geo = dict(stride=stride, padding=padding, dilation=dilation)
    g = rng.standard_normal(ref.conv2d(x, w, b, **geo).shape)   # loss = sum(conv2d * g)

    def loss(x_, w_, b_):
        return float(np.sum(ref.conv2d(x_, w_, b_, **geo) * g))

    np.testing.assert_allclose(ref.conv2d_backward_input(g, w, x_shape, **geo),
                               ref.numerical_gradient(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref.conv2d_backward_weight(g, x, w_shape, **geo),
                               ref.numerical_gradient(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref.conv2d_backward_bias(g),
                               ref.numerical_gradient(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)


def test_library_gradients_are_finite_differences_of_library_forward():
    """The library's float32 backward against a float64-accurate difference of its own
    forward, on a conv that is linear, so a large step is exact up to float32 rounding."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    geo = dict(stride=2, padding=1, dilation=1)
    g = rng.standard_normal(ref.conv2d(x, w, **geo).shape).astype(np.float32)
    dx = F.conv2d_backward_input(g, w, x.shape, **geo)
    # The loss is linear in x: (loss(x + e_i) - loss(x - e_i)) / 2 is exact for step 1.
    num = np.zeros_like(dx, dtype=np.float64)
    for i in range(x.size):
        e = np.zeros(x.size, np.float32)
        e[i] = 1.0
        e = e.reshape(x.shape)
        num.reshape(-1)[i] = (np.sum(np.float64(F.conv2d(x + e, w, **geo)) * g)
                              - np.sum(np.float64(F.conv2d(x - e, w, **geo)) * g)) / 2
    ref.assert_close(dx, num, 1e-4, "library dx vs finite differences")


# The backward input of a layer with few output channels (K < 8) and many input channels, stride
# 1: the flipped problem's forward im2col + GEMM (csrc/cpu/conv2d.cpp, "flipped_im2col_gemm"),
# instead of a K-deep GEMM and col2im. Portable: the same path on every ISA.
THIN_CASES = [  # x (N, C, H, W), w (K, C, R, S), pads (top, left, bottom, right), dilation
    ((3, 16, 28, 28), (1, 16, 3, 3), (1, 1, 1, 1), (1, 1)),    # the autoencoder's 16 -> 1 layer
    ((1, 9, 13, 11), (3, 9, 5, 3), (2, 1, 1, 2), (1, 1)),      # batch 1, odd sizes, asymmetric pads
    ((2, 12, 10, 17), (7, 12, 3, 3), (2, 2, 2, 2), (2, 2)),    # dilation 2
    ((2, 8, 6, 6), (2, 8, 2, 2), (0, 0, 0, 0), (1, 1)),        # no padding, 2x2
]


@pytest.mark.parametrize("x_shape,w_shape,pads,dil", THIN_CASES)
def test_backward_input_of_a_thin_layer_runs_the_flipped_forward(x_shape, w_shape, pads, dil):
    from fastconv import _core

    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    n, c, h, wd = x_shape
    k, _, r, s = w_shape
    p = (h + pads[0] + pads[2] - dil[0] * (r - 1) - 1) + 1
    q = (wd + pads[1] + pads[3] - dil[1] * (s - 1) - 1) + 1
    algo = _core._conv2d_algorithms(list(x_shape), list(w_shape), [1, 1], list(pads), list(dil))[1]
    assert algo == "flipped_im2col_gemm"
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal((n, k, p, q)).astype(np.float32)
    got = _core.conv2d_backward_input(dy, w, list(x_shape), (1, 1), pads, dil)
    padded = (n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3])
    want = ref.conv2d_backward_input(dy, w, padded, 1, 0, dil)[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd]
    ref.assert_close(got, want, 1e-5, f"backward input {x_shape} {w_shape} ({algo})")
