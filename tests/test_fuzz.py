"""Differential fuzzing: every conv and pooling pass, forward and backward, on random problems,
against the float64 references of tests/reference.py, at 1 and 2 threads.

Each hypothesis example draws a whole problem (batch, channels, odd and even sizes, stride,
padding in every form, dilation, the thread count) and runs all of its passes, so a kernel
reached only by some shapes (the AVX2 direct, row and Winograd kernels, the tiled pooling
fast paths, the byte-index training pair) meets the same references as the rest. The
problem sizes reach those kernels on purpose: up to 20 output channels (the channel-direct
kernel from 4, the row kernel below 8), widths up to 19 (rows of 8 outputs), and Winograd
forced on for some 3x3 stride-1 problems (_set_winograd_mode(2)).

test_under_omp_thread_limit runs the same examples in a fresh interpreter with
OMP_THREAD_LIMIT=1 and fastconv.set_num_threads(2): OpenMP then gives every parallel region
one thread where two were asked for (issue 14, defect 3: the weight gradient lost half the
batch).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.functional as F
import reference as ref
from fastconv import _core

# float32 kernels against float64 references: relative to the largest value (ref.rel_error).
# Winograd's transforms round more (its own tests allow 1e-4).
TOL = 2e-5
TOL_WINOGRAD = 1e-4
# Examples per test; the subprocess under OMP_THREAD_LIMIT=1 runs fewer.
EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "60"))

padding_forms = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.sampled_from(["valid", "same"]),
)


@st.composite
def conv_problems(draw):
    """A valid conv2d problem, the thread count, Winograd's mode and a data seed."""
    n = draw(st.integers(1, 4))
    c = draw(st.sampled_from([1, 2, 3, 5, 8]))
    k = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 11, 20]))
    r = draw(st.integers(1, 4))
    s = draw(st.integers(1, 4))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    dilation = draw(st.one_of(st.just(1), st.integers(1, 3),
                              st.tuples(st.integers(1, 2), st.integers(1, 2))))
    padding = draw(padding_forms)
    dh, dw = ref.pair(dilation)
    if isinstance(padding, str):
        pads_h = pads_w = 0
    else:
        ph, pw = ref.pair(padding)
        pads_h, pads_w = 2 * ph, 2 * pw
    # The input is built from the dilated kernel so the padded input always holds it.
    h = max(1, dh * (r - 1) + 1 - pads_h + draw(st.integers(0, 9)))
    w = max(1, dw * (s - 1) + 1 - pads_w + draw(st.integers(0, 16)))
    if padding == "same":
        h, w = draw(st.integers(1, 12)), draw(st.integers(1, 19))
    return dict(x_shape=(n, c, h, w), w_shape=(k, c, r, s), stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()), threads=draw(st.sampled_from([1, 2])),
                winograd=draw(st.sampled_from([1, 2])), seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def pool_problems(draw):
    """A valid pooling problem (padding at most half the window), threads and a seed."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(st.just(0), st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))))
    ph, pw = ref.pair(padding)
    h = max(1, kh - 2 * ph + draw(st.integers(0, 9)))
    w = max(1, kw - 2 * pw + draw(st.integers(0, 19)))
    shape = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 5])), h, w)
    return dict(x_shape=shape, kernel_size=(kh, kw), stride=stride, padding=padding,
                count_include_pad=draw(st.booleans()), threads=draw(st.sampled_from([1, 2])),
                ties=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


class _Threads:
    """Run a block with fastconv.set_num_threads(n), then put the old count back."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = fastconv.get_num_threads()
        fastconv.set_num_threads(self.n)

    def __exit__(self, *exc):
        fastconv.set_num_threads(self.saved)


def check_conv_problem(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(np.float32)
    w = rng.uniform(-1, 1, case["w_shape"]).astype(np.float32)
    b = rng.uniform(-1, 1, case["w_shape"][0]).astype(np.float32) if case["bias"] else None
    geo = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    y_shape = ref.conv2d_output_shape(case["x_shape"], case["w_shape"], **geo)
    dy = rng.uniform(-1, 1, y_shape).astype(np.float32)
    what = f"{case}"
    old_mode = _core._set_winograd_mode(case["winograd"])
    try:
        with _Threads(case["threads"]):
            y = F.conv2d(x, w, b, **geo)
            dx = F.conv2d_backward_input(dy, w, x.shape, **geo)
            dw = F.conv2d_backward_weight(dy, x, w.shape, **geo)
            db = F.conv2d_backward_bias(dy)
    finally:
        _core._set_winograd_mode(old_mode)
    tol = TOL_WINOGRAD if case["winograd"] == 2 else TOL
    ref.assert_close(y, ref.conv2d(x, w, b, **geo), tol, "conv2d " + what)
    ref.assert_close(dx, ref.conv2d_backward_input(dy, w, x.shape, **geo), tol, "backward input " + what)
    ref.assert_close(dw, ref.conv2d_backward_weight(dy, x, w.shape, **geo), tol, "backward weight " + what)
    ref.assert_close(db, ref.conv2d_backward_bias(dy), TOL, "backward bias " + what)


def check_pool_problem(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.uniform(-1, 1, case["x_shape"]).astype(np.float32)
    if case["ties"]:  # few distinct values: the first maximum of each window must win
        x = np.round(x * 2).astype(np.float32)
    geo = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"])
    y_shape = ref.pool2d_output_shape(x.shape, **geo)
    dy = rng.uniform(-1, 1, y_shape).astype(np.float32)
    cip = case["count_include_pad"]
    what = f"{case}"
    with _Threads(case["threads"]):
        y_max = F.max_pool2d(x, **geo)
        dx_max = F.max_pool2d_backward(dy, x, **geo)
        y_idx, idx = F.max_pool2d_with_indices(x, **geo)
        dx_idx = F.max_pool2d_backward_indices(dy, idx, x.shape, **geo)
        y_avg = F.avg_pool2d(x, count_include_pad=cip, **geo)
        dx_avg = F.avg_pool2d_backward(dy, x.shape, count_include_pad=cip, **geo)
    ref.assert_close(y_max, ref.max_pool2d(x, **geo), TOL, "max_pool2d " + what)
    want_dx = ref.max_pool2d_backward(dy, x, **geo)
    ref.assert_close(dx_max, want_dx, TOL, "max_pool2d_backward " + what)
    np.testing.assert_array_equal(y_idx, y_max, err_msg="max_pool2d_with_indices " + what)
    ref.assert_close(dx_idx, want_dx, TOL, "max_pool2d_backward_indices " + what)
    ref.assert_close(y_avg, ref.avg_pool2d(x, count_include_pad=cip, **geo), TOL, "avg_pool2d " + what)
    ref.assert_close(dx_avg, ref.avg_pool2d_backward(dy, x.shape, count_include_pad=cip, **geo), TOL,
                     "avg_pool2d_backward " + what)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_problems())
def test_conv2d_passes_match_reference(case):
    check_conv_problem(case)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pool_problems())
def test_pool2d_passes_match_reference(case):
    check_pool_problem(case)


def test_fuzz_reaches_every_conv_kernel():
    """The problem space above reaches each CPU kernel this machine has, so the fuzzing
    covers them all: checked on one representative of each."""
    algos = set()
    for x_shape, w_shape, stride, pad in [
            ((2, 3, 9, 19), (6, 3, 3, 3), (1, 1), (1, 1, 1, 1)),     # rows (K < 8, Q >= 8)
            ((2, 8, 9, 9), (20, 8, 2, 2), (2, 2), (0, 0, 0, 0)),     # channel-direct
            ((2, 5, 6, 6), (11, 5, 4, 4), (3, 3), (3, 3, 3, 3)),     # im2col (CRS = 80, K = 11)
            ((1, 2, 3, 3), (4, 2, 3, 3), (1, 1), (0, 0, 0, 0)),      # whole image
            ((2, 8, 10, 10), (16, 8, 4, 4), (2, 2), (1, 1, 1, 1)),   # sub-pixel backward input
            ((2, 8, 6, 6), (2, 8, 2, 2), (1, 1), (0, 0, 0, 0))]:     # flipped im2col backward input
        algos.update(_core._conv2d_algorithms(list(x_shape), list(w_shape), stride, pad, (1, 1)))
    old = _core._set_winograd_mode(2)
    try:
        algos.update(_core._conv2d_algorithms([2, 3, 9, 9], [4, 3, 3, 3], (1, 1), (1, 1, 1, 1), (1, 1)))
    finally:
        _core._set_winograd_mode(old)
    expected = {"im2col_gemm", "whole_image_gemm", "flipped_im2col_gemm"}
    if fastconv.cpu_isa() != "generic":
        expected |= {"direct_rows", "direct_channels", "winograd", "sub_pixel"}
    assert expected <= algos, algos


# The subprocess below imports this module and runs the two property tests above.
_UNDER_LIMIT = """
import sys
sys.path.insert(0, {tests!r})
from hypothesis import settings
settings.register_profile("sub", database=None, deadline=None)
settings.load_profile("sub")
import fastconv
fastconv.set_num_threads(2)
assert fastconv.get_num_threads() == 2
import test_fuzz
test_fuzz.test_conv2d_passes_match_reference()
test_fuzz.test_pool2d_passes_match_reference()
print("fuzz under OMP_THREAD_LIMIT=1: all passed")
"""


def test_under_omp_thread_limit():
    """The fuzz examples with OMP_THREAD_LIMIT=1 and 2 threads asked for: every region runs on
    fewer threads than planned, and every pass still matches the reference."""
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, OMP_THREAD_LIMIT="1", FASTCONV_FUZZ_EXAMPLES="25")
    run = subprocess.run([sys.executable, "-c", _UNDER_LIMIT.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tests)
    assert run.returncode == 0, (run.returncode, run.stdout[-3000:], run.stderr[-6000:])
    assert "all passed" in run.stdout


@pytest.mark.parametrize("algo_mode", ["im2col", "direct", "rows", "winograd"])
def test_backward_weight_whole_batch_under_thread_limit(algo_mode):
    """Issue 14's probe, one subprocess per algorithm: conv2d_backward_weight with 2 threads
    asked for and OMP_THREAD_LIMIT=1 against the reference (relative error 0.64-0.85 before)."""
    shapes = {  # x (N, C, H, W), w (K, C, R, S), ISA
        "im2col": ((6, 3, 10, 10), (40, 3, 3, 3), "generic"),
        "direct": ((6, 8, 10, 10), (16, 8, 2, 2), "avx2"),
        "rows": ((6, 2, 10, 12), (3, 2, 3, 3), "avx2"),
        "winograd": ((6, 16, 10, 10), (16, 16, 3, 3), "avx2"),  # Winograd from 10x10 outputs
    }
    x_shape, w_shape, isa = shapes[algo_mode]
    if isa == "avx2" and fastconv.cpu_isa() == "generic":
        pytest.skip("the AVX2 kernels do not run on this CPU")
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import numpy as np, fastconv, fastconv.functional as F, reference as ref
from fastconv import _core
fastconv.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal({x_shape}).astype(np.float32)
w_shape = {w_shape}
dy = rng.standard_normal(ref.conv2d_output_shape(x.shape, w_shape, 1, 1)).astype(np.float32)
algo = _core._conv2d_algorithms(list(x.shape), list(w_shape), (1, 1), (1, 1, 1, 1), (1, 1))[2]
dw = F.conv2d_backward_weight(dy, x, w_shape, stride=1, padding=1)
err = ref.rel_error(dw, ref.conv2d_backward_weight(dy, x, w_shape, stride=1, padding=1))
print(algo, err)
"""
    env = dict(os.environ, OMP_THREAD_LIMIT="1", FASTCONV_ISA=isa)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=str(Path(__file__).resolve().parent))
    assert run.returncode == 0, run.stderr[-3000:]
    algo, err = run.stdout.split()
    want = {"im2col": "im2col_gemm", "direct": "direct_channels", "rows": "direct_rows",
            "winograd": "winograd"}[algo_mode]
    assert algo == want
    assert float(err) < TOL_WINOGRAD, f"{algo}: relative error {err} under OMP_THREAD_LIMIT=1"
