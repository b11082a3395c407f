"""The row-vectorised direct conv2d of the CPU (csrc/cpu/avx2/conv2d_rows_avx2.cpp): layers with fewer
than 8 output channels and stride 1 along the width (LeNet's C1; LeNet's C3 backward input,
whose flipped problem has C = 6 output channels). Forward (bias, fused activation), backward
input and backward weight against the float64 reference, on odd sizes, rows that are not a
multiple of 8 wide (the last vector shifted back), 1 to 7 channels (chunks of 6, 4 + 3, ...),
stride > 1 along the height, asymmetric padding, dilation and batch 1.

Each case also asserts which kernel conv2d picks (`_core._conv2d_algorithms`), so the values
checked are the new kernel's and not another path's. On a CPU without AVX2, or with
FASTCONV_ISA=generic, every pass runs im2col + GEMM and the same values are checked there."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
import fastconv._core as core
import reference as ref

AVX2 = core.isa() != "generic"

CASES = [  # N, C, K, H, W, R, S, stride (h, w), pads (top, left, bottom, right), dilation (h, w)
    (3, 1, 6, 32, 32, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1)),    # LeNet C1
    (1, 1, 6, 28, 28, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1)),    # C1 on 28x28, padding 2
    (2, 3, 5, 11, 13, 3, 3, (2, 1), (1, 2, 0, 1), (1, 1)),    # stride 2 down, asymmetric pads
    (1, 2, 7, 17, 9, 3, 2, (1, 1), (2, 1, 2, 1), (2, 1)),     # K = 7: chunks 4 + 3; Q = 9
    (2, 4, 1, 10, 19, 4, 3, (1, 1), (1, 1, 1, 1), (1, 3)),    # one channel out, dilation 3
    (1, 1, 3, 8, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1, Q = 8 exactly
    (2, 5, 4, 12, 30, 3, 5, (3, 1), (0, 2, 1, 2), (1, 1)),
    (1, 6, 2, 9, 23, 2, 4, (1, 1), (0, 0, 0, 0), (2, 2)),
    (2, 7, 6, 7, 17, 5, 1, (2, 1), (4, 0, 3, 0), (1, 1)),     # output rows all padding at the top
]
IDS = [f"N{c[0]}C{c[1]}K{c[2]}_{c[3]}x{c[4]}_{c[5]}x{c[6]}_s{c[7][0]}_p{''.join(map(str, c[8]))}_d{c[9][0]}{c[9][1]}"
       for c in CASES]


def geometry(case):
    n, c, k, h, w, r, s, stride, pads, dil = case
    p = (h + pads[0] + pads[2] - dil[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + pads[1] + pads[3] - dil[1] * (s - 1) - 1) // stride[1] + 1
    return p, q


def padded(x, pads):
    top, left, bottom, right = pads
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))


def expected_algorithms(case):
    """What the dispatch table of csrc/cpu/conv2d.cpp should pick for these cases."""
    n, c, k, h, w, r, s, stride, pads, dil = case
    if not AVX2:
        return ("im2col_gemm",) * 3
    # backward input: with stride 1 a forward of dy with K and C swapped (C output channels)
    flipped_ok = stride == (1, 1) and all((rr - 1) * d - pp >= 0 for rr, d, pp in
                                         ((r, dil[0], pads[0]), (r, dil[0], pads[2]),
                                          (s, dil[1], pads[1]), (s, dil[1], pads[3])))
    bwd_input = "direct_rows" if flipped_ok and 2 <= c < 8 and w >= 8 else "im2col_gemm"
    return ("direct_rows", bwd_input, "direct_rows")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dispatch_picks_the_row_kernel(case):
    n, c, k, h, w, r, s, stride, pads, dil = case
    got = core._conv2d_algorithms([n, c, h, w], [k, c, r, s], list(stride), list(pads), list(dil))
    assert tuple(got) == expected_algorithms(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("act", [0, 1, 2], ids=["linear", "relu", "tanh"])
def test_forward_against_reference(case, act):
    n, c, k, h, w_, r, s, stride, pads, dil = case
    rng = np.random.default_rng(sum(case[:7]) + act)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((k, c, r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if act != 2 else None
    got = core.conv2d_forward(x, w, b, stride, pads, dil, act)
    want = ref.conv2d(padded(x, pads), w, b, stride, 0, dil)
    want = {0: want, 1: np.maximum(want, 0), 2: np.tanh(want)}[act]
    assert got.shape == want.shape == (n, k) + geometry(case)
    ref.assert_close(got, want, 1e-5, f"rows forward {case} act={act}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_input_against_reference(case):
    n, c, k, h, w_, r, s, stride, pads, dil = case
    rng = np.random.default_rng(sum(case[:7]) + 3)
    w = rng.standard_normal((k, c, r, s)).astype(np.float32)
    dy = rng.standard_normal((n, k) + geometry(case)).astype(np.float32)
    got = core.conv2d_backward_input(dy, w, [n, c, h, w_], stride, pads, dil)
    xp_shape = (n, c, h + pads[0] + pads[2], w_ + pads[1] + pads[3])
    want = ref.conv2d_backward_input(dy, w, xp_shape, stride, 0, dil)
    want = want[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w_]
    ref.assert_close(got, want, 1e-5, f"rows backward input {case}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_weight_against_reference(case):
    n, c, k, h, w_, r, s, stride, pads, dil = case
    rng = np.random.default_rng(sum(case[:7]) + 5)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    dy = rng.standard_normal((n, k) + geometry(case)).astype(np.float32)
    got = core.conv2d_backward_weight(dy, x, [k, c, r, s], stride, pads, dil)
    want = ref.conv2d_backward_weight(dy, padded(x, pads), (k, c, r, s), stride, 0, dil)
    ref.assert_close(got, want, 1e-5, f"rows backward weight {case}")


def test_cells_no_window_reads_are_never_read():
    """The backward weight loads 8 columns at a time, past Q where dy is zero, and skips rows no
    window reads: an inf in a row that the stride steps over must not reach dw (0 * inf = NaN)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 2, 12, 14)).astype(np.float32)
    x[:, :, -1, :] = np.inf            # row 11: a stride-2, 3-tall filter reads rows 0..10 (P = 5)
    dy = rng.standard_normal((2, 3, 5, 12)).astype(np.float32)
    got = core.conv2d_backward_weight(dy, x, [3, 2, 3, 3], (2, 1), (0, 0, 0, 0), (1, 1))
    want = ref.conv2d_backward_weight(dy, x[:, :, :11], (3, 2, 3, 3), (2, 1), 0, 1)
    assert np.isfinite(got).all()
    ref.assert_close(got, want, 1e-5, "rows backward weight, inf in an unread row")


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_one_and_two_threads_agree(case):
    n, c, k, h, w_, r, s, stride, pads, dil = case
    rng = np.random.default_rng(17)
    x = rng.standard_normal((max(n, 4), c, h, w_)).astype(np.float32)
    w = rng.standard_normal((k, c, r, s)).astype(np.float32)
    dy = rng.standard_normal((len(x), k) + geometry(case)).astype(np.float32)
    old = fastconv.get_num_threads()
    out = {}
    try:
        for t in (1, 2):
            fastconv.set_num_threads(t)
            out[t] = (core.conv2d_forward(x, w, None, stride, pads, dil, 0),
                      core.conv2d_backward_input(dy, w, list(x.shape), stride, pads, dil),
                      core.conv2d_backward_weight(dy, x, [k, c, r, s], stride, pads, dil))
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(out[1][0], out[2][0])       # per image: the same bits
    np.testing.assert_array_equal(out[1][1], out[2][1])
    np.testing.assert_allclose(out[1][2], out[2][2], rtol=1e-5, atol=1e-5)  # partial sums
