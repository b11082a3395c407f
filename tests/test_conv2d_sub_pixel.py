"""The sub-pixel backward input of the CPU conv2d (csrc/cpu/conv2d.cpp: sub_pixel_parts): with a
stride and a filter size that is a multiple of it (the DCGAN's 4x4 stride 2), dx splits into
sh*sw residue classes, each a stride-1 forward convolution of dy with a sub-filter, run by the
direct kernel writing straight into every sh-th row and sw-th column of dx
(csrc/cpu/avx2/conv2d_direct_avx2.cpp, its strided output). conv2d_transpose's forward is that
same backward input, so it takes the path too.

Each case asserts which kernel the dispatch picks (`_core._conv2d_algorithms`), so the values
checked are the new path's, and compares dx with the float64 reference on odd sizes, asymmetric
padding, strides 2 and 3, unequal strides, batch 1 and residues whose first dx row needs no
padding of dy. Where a part would not run on the direct kernel (one output channel), or on the
generic ISA, the same values are checked on im2col + GEMM + col2im. The direct kernel's padded
image keeps its zero border from call to call: a test alternates geometries on one thread.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
import fastconv._core as core
import fastconv.functional as F
import reference as ref

AVX2 = core.isa() != "generic"

CASES = [  # N, C, K, H, W, R, S, stride (h, w), pads (top, left, bottom, right)
    (4, 32, 64, 14, 14, 4, 4, (2, 2), (1, 1, 1, 1)),     # DCGAN discriminator 32 -> 64
    (3, 8, 16, 13, 11, 4, 4, (2, 2), (1, 2, 2, 1)),      # odd sizes, asymmetric pads
    (1, 6, 20, 17, 15, 6, 3, (3, 3), (2, 0, 1, 2)),      # stride 3, batch 1
    (2, 16, 12, 10, 9, 4, 2, (2, 1), (0, 1, 1, 0)),      # unequal strides, no top padding
    (2, 9, 32, 10, 8, 2, 2, (2, 2), (0, 0, 0, 0)),       # 1-tap sub-filters (K * 1 * 1 = 32 taps)
    (2, 4, 8, 7, 7, 4, 4, (2, 2), (1, 1, 1, 1)),         # 4 output channels: the fewest direct takes
    # ... and where the decomposition stays off:
    (2, 1, 8, 12, 12, 4, 4, (2, 2), (1, 1, 1, 1)),       # one channel: parts too thin for direct
    (2, 5, 32, 9, 15, 2, 2, (2, 2), (0, 0, 1, 1)),       # 5 channels, rows 8 wide: the row kernel's
    (1, 6, 20, 17, 16, 6, 3, (3, 3), (2, 0, 1, 2)),      # dy's last column reaches only padding
    (2, 9, 16, 11, 11, 3, 3, (2, 2), (1, 1, 1, 1)),      # 3x3 stride 2: not a multiple
]
SUB_PIXEL = 6   # the first 6 cases take the sub-pixel path on AVX2; the rest stay on im2col
IDS = [f"N{c[0]}C{c[1]}K{c[2]}_{c[3]}x{c[4]}_{c[5]}x{c[6]}_s{c[7][0]}{c[7][1]}_p{''.join(map(str, c[8]))}"
       for c in CASES]


def geometry(case):
    n, c, k, h, w, r, s, stride, pads = case
    p = (h + pads[0] + pads[2] - r) // stride[0] + 1
    q = (w + pads[1] + pads[3] - s) // stride[1] + 1
    return p, q


def expected_backward_input(case, avx2=AVX2):
    """What the dispatch of csrc/cpu/conv2d.cpp should pick for the backward input."""
    return "sub_pixel" if avx2 and CASES.index(case) < SUB_PIXEL else "im2col_gemm"


def reference_dx(dy, w, case):
    n, c, k, h, w_, r, s, stride, pads = case
    xp_shape = (n, c, h + pads[0] + pads[2], w_ + pads[1] + pads[3])
    want = ref.conv2d_backward_input(dy, w, xp_shape, stride, 0, 1)
    return want[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w_]


def check_case(case):
    n, c, k, h, w_, r, s, stride, pads = case
    rng = np.random.default_rng(sum(case[:7]))
    w = rng.standard_normal((k, c, r, s)).astype(np.float32)
    dy = rng.standard_normal((n, k) + geometry(case)).astype(np.float32)
    got = core.conv2d_backward_input(dy, w, [n, c, h, w_], stride, pads, (1, 1))
    assert got.shape == (n, c, h, w_)
    ref.assert_close(got, reference_dx(dy, w, case), 1e-5, f"backward input {case}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dispatch_picks_sub_pixel_where_it_applies(case):
    n, c, k, h, w, r, s, stride, pads = case
    got = core._conv2d_algorithms([n, c, h, w], [k, c, r, s], list(stride), list(pads), [1, 1])
    assert got[1] == expected_backward_input(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_input_against_reference(case):
    check_case(case)


def test_every_dx_pixel_is_written():
    """dx comes from an uninitialised buffer: a pixel no part wrote would show as garbage. With
    dy = 1 and w = 1 each dx pixel counts the (dy pixel, tap) pairs that reach it."""
    for case in CASES[:SUB_PIXEL]:
        n, c, k, h, w_, r, s, stride, pads = case
        dy = np.ones((n, k) + geometry(case), np.float32)
        w = np.ones((k, c, r, s), np.float32)
        for _ in range(3):                                     # reused output buffers too
            got = core.conv2d_backward_input(dy, w, [n, c, h, w_], stride, pads, (1, 1))
            np.testing.assert_array_equal(got, reference_dx(dy, w, case).astype(np.float32))


def test_conv2d_transpose_takes_the_same_path():
    """The DCGAN generator's 64 -> 32, 4x4 stride 2 transposed convolution (7x7 -> 14x14) and an
    odd-sized one, forward with bias, against the reference scatter."""
    rng = np.random.default_rng(21)
    for n, cin, cout, h, wd in [(3, 64, 32, 7, 7), (2, 24, 8, 5, 6)]:
        x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
        w = rng.standard_normal((cin, cout, 4, 4)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        y = F.conv2d_transpose(x, w, b, stride=2, padding=1)
        ref.assert_close(y, ref.conv2d_transpose(x, w, b, stride=2, padding=1), 1e-5,
                         f"conv2d_transpose {x.shape}")
        # as conv2d's backward input: K = cin, C = cout
        pads = (1, 1, 1, 1)
        algo = core._conv2d_algorithms([n, cout, 2 * h, 2 * wd], [cin, cout, 4, 4], [2, 2], list(pads), [1, 1])
        assert algo[1] == ("sub_pixel" if AVX2 else "im2col_gemm")


def test_padded_image_border_survives_other_geometries():
    """The direct kernel zeroes its padded image's border only when the geometry changes: the
    same thread alternating geometries, sizes and paddings gets the right values each time."""
    old = fastconv.get_num_threads()
    rng = np.random.default_rng(23)
    try:
        fastconv.set_num_threads(1)
        for case in [CASES[0], CASES[1], CASES[0], CASES[3], CASES[1], CASES[0]]:
            check_case(case)
            n, c, k, h, w_, r, s, stride, pads = case
            # a forward with the same C, H, W but other padding, on the same thread
            x = (rng.standard_normal((2, c, h, w_)) * 100).astype(np.float32)
            wf = rng.standard_normal((16, c, 3, 3)).astype(np.float32)
            for pad in [(1, 1, 1, 1), (2, 0, 1, 2), (0, 0, 0, 0)]:
                y = core.conv2d_forward(x, wf, None, (1, 1), pad, (1, 1), 0)
                xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
                ref.assert_close(y, ref.conv2d(xp, wf), 1e-5, f"forward pad {pad}")
    finally:
        fastconv.set_num_threads(old)


def test_one_and_two_threads_agree():
    case = CASES[0]
    n, c, k, h, w_, r, s, stride, pads = case
    rng = np.random.default_rng(29)
    w = rng.standard_normal((k, c, r, s)).astype(np.float32)
    dy = rng.standard_normal((n, k) + geometry(case)).astype(np.float32)
    old = fastconv.get_num_threads()
    out = {}
    try:
        for t in (1, 2):
            fastconv.set_num_threads(t)
            out[t] = core.conv2d_backward_input(dy, w, [n, c, h, w_], stride, pads, (1, 1))
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(out[1], out[2])              # per image: the same bits


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_each_isa_in_a_fresh_interpreter(isa):
    """FASTCONV_ISA=generic runs every case on im2col, avx2 on the sub-pixel path: both match."""
    from test_activations import _isas_here

    if isa not in _isas_here():
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r})\n"
            "import fastconv, fastconv._core as core; assert fastconv.cpu_isa() == sys.argv[1]\n"
            "import test_conv2d_sub_pixel as t\n"
            "for case in t.CASES:\n"
            "    n, c, k, h, w, r, s, st, pads = case\n"
            "    got = core._conv2d_algorithms([n, c, h, w], [k, c, r, s], list(st), list(pads), [1, 1])[1]\n"
            "    assert got == t.expected_backward_input(case, sys.argv[1] != 'generic'), (case, got)\n"
            "    t.check_case(case)\n"
            "print('ok')")
    run = subprocess.run([sys.executable, "-c", code, isa], env=dict(os.environ, FASTCONV_ISA=isa),
                         capture_output=True, text=True, timeout=300, cwd=here)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
