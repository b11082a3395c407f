"""The Winograd F(2x2, 3x3) path of the CPU conv2d (csrc/cpu/avx2/conv2d_winograd_f2x2_3x3_avx2.cpp): forward
(bias, fused activation), backward input and backward weight against the float64 reference, on odd sizes, every
padding it takes (asymmetric too) and batch 1. Mode 2 forces it onto small shapes; mode 1 (the
default) uses it for 3x3 stride-1 layers of at least 16 channels. On a CPU without AVX2 the
Winograd path is off and these tests check the other paths instead (same answers)."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv._core as core
import reference as ref


@pytest.fixture(params=[1, 2], ids=["auto", "forced"])
def winograd(request):
    old = core._set_winograd_mode(request.param)
    yield request.param
    core._set_winograd_mode(old)


CASES = [  # N, C, K, H, W, pads (top, left, bottom, right)
    (1, 16, 16, 8, 8, (1, 1, 1, 1)),
    (3, 17, 19, 7, 9, (1, 1, 1, 1)),
    (2, 16, 20, 5, 6, (0, 0, 0, 0)),
    (2, 20, 16, 9, 7, (2, 0, 1, 2)),
    (1, 32, 32, 28, 28, (1, 1, 1, 1)),
    (2, 3, 2, 4, 4, (1, 1, 1, 1)),   # small: Winograd only when forced
    (1, 1, 1, 3, 3, (0, 0, 0, 0)),
    (2, 5, 4, 2, 11, (1, 2, 1, 0)),
]


def padded(x, pads):
    pt, pl, pb, pr = pads
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_forward_against_reference(winograd, case, act):
    n, c, k, h, w_, pads = case
    rng = np.random.default_rng(sum(case[:5]) + act)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32) if act != 2 else None
    got = core.conv2d_forward(x, w, b, (1, 1), pads, (1, 1), act)
    want = ref.conv2d(padded(x, pads), w.astype(np.float64),
                      None if b is None else b.astype(np.float64))
    want = {0: want, 1: np.maximum(want, 0), 2: np.tanh(want)}[act]
    # tanh squeezes sums of hundreds of terms (|z| ~ 20) into [-1, 1]: the float32 rounding of
    # z stays, the scale it is measured against shrinks (the direct kernel errs the same, 1.1e-5).
    ref.assert_close(got, want, 3e-5 if act == 2 else 1e-5, f"winograd forward {case} act={act}")


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_backward_input_against_reference(winograd, case):
    n, c, k, h, w_, pads = case
    pt, pl = pads[0], pads[1]
    rng = np.random.default_rng(sum(case[:5]))
    x_shape = (n, c, h, w_)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    p, q = h + pads[0] + pads[2] - 2, w_ + pads[1] + pads[3] - 2
    dy = rng.standard_normal((n, k, p, q)).astype(np.float32)
    got = core.conv2d_backward_input(dy, w, list(x_shape), (1, 1), pads, (1, 1))
    xp_shape = (n, c, h + pads[0] + pads[2], w_ + pads[1] + pads[3])
    want = ref.conv2d_backward_input(dy.astype(np.float64), w.astype(np.float64), xp_shape)
    want = want[:, :, pt:pt + h, pl:pl + w_]
    ref.assert_close(got, want, 1e-5, f"winograd backward input {case}")


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_backward_weight_against_reference(winograd, case):
    n, c, k, h, w_, pads = case
    rng = np.random.default_rng(sum(case[:5]) + 7)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    p, q = h + pads[0] + pads[2] - 2, w_ + pads[1] + pads[3] - 2
    dy = rng.standard_normal((n, k, p, q)).astype(np.float32)
    got = core.conv2d_backward_weight(dy, x, [k, c, 3, 3], (1, 1), pads, (1, 1))
    want = ref.conv2d_backward_weight(dy.astype(np.float64), padded(x, pads), (k, c, 3, 3))
    ref.assert_close(got, want, 1e-5, f"winograd backward weight {case}")


def test_modes_agree_on_a_vgg_layer():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 32, 14, 14)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    out = {}
    for mode in (0, 1):
        old = core._set_winograd_mode(mode)
        try:
            out[mode] = core.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        finally:
            core._set_winograd_mode(old)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-4, atol=1e-4)
