"""The CPU output-buffer cache (csrc/cpu/buffer_cache.h): outputs of 64 KiB and up reuse the
memory of arrays NumPy has freed.

What must hold: a reused block never leaks its old contents into a result (every kernel writes
its whole output: checked by poisoning the block with NaN before it is reused, against float64
references), two live arrays never share memory, small and very different sizes are not
served from it, and the limit (FASTCONV_BUFFER_CACHE_MB, buffer_cache_set_limit) is kept.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import reference as ref
from fastconv import _core

KIB64 = 64 * 1024


def _rng(seed):
    return np.random.default_rng(seed)


def _f32(a):
    return np.asarray(a, np.float32)


def _conv_case(x_shape, w_shape, stride, padding, dilation, seed):
    rng = _rng(seed)
    x = _f32(rng.standard_normal(x_shape))
    w = _f32(rng.standard_normal(w_shape) * 0.3)
    b = _f32(rng.standard_normal(w_shape[0]))
    return (lambda: [F.conv2d(x, w, b, stride, padding, dilation)],
            lambda: [ref.conv2d(x, w, b, stride, padding, dilation)])


def _conv_dx_case(x_shape, w_shape, stride, padding, seed):
    rng = _rng(seed)
    w = _f32(rng.standard_normal(w_shape) * 0.3)
    p, q = ref.conv2d_output_shape(x_shape, w_shape, stride, padding)[2:]
    dy = _f32(rng.standard_normal((x_shape[0], w_shape[0], p, q)))
    return (lambda: [F.conv2d_backward_input(dy, w, x_shape, stride, padding)],
            lambda: [ref.conv2d_backward_input(dy, w, x_shape, stride, padding)])


def _conv_dw_case(x_shape, w_shape, padding, seed):
    rng = _rng(seed)
    x = _f32(rng.standard_normal(x_shape))
    p, q = ref.conv2d_output_shape(x_shape, w_shape, 1, padding)[2:]
    dy = _f32(rng.standard_normal((x_shape[0], w_shape[0], p, q)))
    return (lambda: [F.conv2d_backward_weight(dy, x, w_shape, 1, padding)],
            lambda: [ref.conv2d_backward_weight(dy, x, w_shape, 1, padding)])


def _pool_cases():
    rng = _rng(7)
    x = _f32(rng.standard_normal((3, 8, 30, 30)))           # 86 KiB in
    dy = _f32(rng.standard_normal((3, 8, 15, 15)))
    big_dy = _f32(rng.standard_normal((3, 8, 30, 30)))      # for windows that overlap
    return {
        "max_pool2d": (lambda: [F.max_pool2d(x, 1)], lambda: [ref.max_pool2d(x, 1)]),
        "max_pool2d_backward": (lambda: [F.max_pool2d_backward(dy, x, 2)],
                                lambda: [ref.max_pool2d_backward(dy, x, 2)]),
        "avg_pool2d_backward": (lambda: [F.avg_pool2d_backward(dy, x.shape, 2)],
                                lambda: [ref.avg_pool2d_backward(dy, x.shape, 2)]),
        "avg_pool2d_backward_3x3_s1_pad1": (
            lambda: [F.avg_pool2d_backward(big_dy, x.shape, 3, 1, 1)],
            lambda: [ref.avg_pool2d_backward(big_dy, x.shape, 3, 1, 1)]),
    }


def _elementwise_cases():
    rng = _rng(11)
    x = _f32(rng.standard_normal((4, 9, 23, 23)))           # 76 KiB
    y = np.tanh(x).astype(np.float32)
    dy = _f32(rng.standard_normal(x.shape))
    logits = _f32(rng.standard_normal((170, 100)))          # 66 KiB
    a = _f32(rng.standard_normal((130, 70)))
    bm = _f32(rng.standard_normal((70, 129)))               # a @ bm: 130 x 129, 65.5 KiB
    xl = _f32(rng.standard_normal((180, 100)))
    wl = _f32(rng.standard_normal((120, 100)))
    bl = _f32(rng.standard_normal(120))
    dyl = _f32(rng.standard_normal((180, 120)))

    def fused():
        dx, db = _core.activation_backward_bias(dy, y, 2)
        return [dx, db]

    def fused_ref():
        dx = ref.tanh_backward(dy, y)
        return [dx, dx.sum(axis=(0, 2, 3))]

    return {
        "relu": (lambda: [F.relu(x)], lambda: [ref.relu(x)]),
        "tanh": (lambda: [F.tanh(x)], lambda: [ref.tanh(x)]),
        "tanh_backward": (lambda: [F.tanh_backward(dy, y)], lambda: [ref.tanh_backward(dy, y)]),
        "activation_backward_bias": (fused, fused_ref),
        "softmax": (lambda: [F.softmax(logits)], lambda: [ref.softmax(logits)]),
        "matmul": (lambda: [F.matmul(a, bm)], lambda: [ref.matmul(a, bm)]),
        "linear": (lambda: [F.linear(xl, wl, bl)], lambda: [ref.linear(xl, wl, bl)]),
        "linear_backward": (lambda: list(F.linear_backward(dyl, xl, wl)),
                            lambda: list(ref.linear_backward(dyl, xl, wl))),
    }


# The conv2d forward cases: on AVX2 and AVX-512 builds together they reach every algorithm of
# csrc/cpu/conv2d.cpp's table (checked below); the generic build runs them all on im2col.
CONV_FORWARD = {
    "conv_stride2_dilated": ((3, 3, 41, 37), (40, 3, 3, 3), 2, 2, 2),   # im2col: 27 taps, 40 channels
    "conv_3x3_same_32ch": ((3, 32, 14, 14), (32, 32, 3, 3), 1, 1, 1),
    "conv_one_channel_k6": ((4, 1, 32, 32), (6, 1, 5, 5), 1, 0, 1),
    "conv_6_to_16": ((12, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    "conv_whole_image": ((200, 16, 5, 5), (120, 16, 5, 5), 1, 0, 1),
}

CASES = {
    **{name: _conv_case(*geometry, seed) for seed, (name, geometry) in enumerate(CONV_FORWARD.items())},
    "conv_one_by_one": _conv_case((2, 7, 33, 17), (32, 7, 1, 1), 1, 0, 1, 5),
    "conv_dx_6_to_16": _conv_dx_case((16, 6, 14, 14), (16, 6, 5, 5), 1, 0, 6),
    "conv_dx_stride2_pad": _conv_dx_case((2, 8, 45, 45), (5, 8, 3, 3), 2, 1, 7),
    "conv_dx_one_channel": _conv_dx_case((3, 1, 100, 60), (4, 1, 3, 3), 1, 1, 8),
    "conv_dw_large_weight": _conv_dw_case((2, 64, 6, 6), (72, 64, 3, 3), 1, 9),
    **_pool_cases(),
    **_elementwise_cases(),
}


@pytest.mark.skipif(fastconv.cpu_isa() == "generic", reason="the generic build has only im2col")
def test_the_conv_cases_reach_every_forward_algorithm():
    seen = {_core._conv2d_algorithms(x, w, (s, s), (p,) * 4, (d, d))[0]
            for x, w, s, p, d in CONV_FORWARD.values()}
    assert seen == {"im2col_gemm", "winograd", "direct_rows", "direct_channels", "whole_image_gemm"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    fastconv.clear_buffer_cache()
    yield
    fastconv.clear_buffer_cache()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_poisoned_reused_block_never_shows_in_the_result(name):
    run, want = CASES[name]
    first = run()
    addresses = sorted(a.ctypes.data for a in first if a.nbytes >= KIB64)
    assert addresses, f"{name}: the case must have an output of at least 64 KiB to exercise the cache"
    for a in first:
        a.fill(np.nan)                 # what a kernel that skips cells would leave behind
    del first, a                       # the blocks go back to the cache, NaN and all
    hits = fastconv.buffer_cache_info()["hits"]
    second = run()
    assert fastconv.buffer_cache_info()["hits"] - hits == len(addresses)
    assert sorted(a.ctypes.data for a in second if a.nbytes >= KIB64) == addresses
    for got, expected in zip(second, want()):
        assert np.isfinite(got).all(), f"{name}: a stale NaN survived in the output"
        ref.assert_close(got, expected, 1e-4, name)


def test_live_arrays_never_share_memory():
    x = np.ones((4, 8, 32, 32), np.float32)                   # 128 KiB
    outs = [F.relu(x) for _ in range(4)]
    spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for a in outs)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start
    outs[0][...] = -1.0
    for a in outs[1:]:
        assert (a == 1.0).all()


def test_a_block_serves_only_sizes_close_to_its_own():
    x = np.ones((2, 8, 64, 64), np.float32)                   # 256 KiB
    address = F.relu(x).ctypes.data                            # freed at once: now idle
    info = fastconv.buffer_cache_info()
    assert info["idle_blocks"] == 1 and info["idle_bytes"] == 256 * 1024
    half = F.relu(x[:1].copy())                                # 128 KiB: too small for the block
    assert half.ctypes.data != address
    assert fastconv.buffer_cache_info()["idle_blocks"] == 1
    again = F.relu(x)
    assert again.ctypes.data == address
    assert fastconv.buffer_cache_info()["idle_blocks"] == 0


def test_small_outputs_bypass_the_cache():
    before = fastconv.buffer_cache_info()
    y = F.relu(np.ones((10, 10), np.float32))
    del y
    after = fastconv.buffer_cache_info()
    assert (after["hits"], after["misses"], after["idle_blocks"]) == \
        (before["hits"], before["misses"], before["idle_blocks"])


def test_the_limit_caps_idle_memory_and_zero_turns_it_off():
    limit = fastconv.buffer_cache_info()["limit_bytes"]
    try:
        _core.buffer_cache_set_limit(300 * 1024)
        outs = [F.relu(np.ones((2, 8, 64, 64), np.float32)) for _ in range(3)]   # 3 x 256 KiB
        del outs
        info = fastconv.buffer_cache_info()
        assert info["idle_blocks"] == 1 and info["idle_bytes"] <= 300 * 1024
        _core.buffer_cache_set_limit(0)
        assert fastconv.buffer_cache_info()["idle_bytes"] == 0
        del_me = F.relu(np.ones((2, 8, 64, 64), np.float32))
        del del_me
        assert fastconv.buffer_cache_info()["idle_blocks"] == 0
    finally:
        _core.buffer_cache_set_limit(limit)
    with pytest.raises(ValueError, match="bytes must be >= 0"):
        _core.buffer_cache_set_limit(-1)


def test_clear_frees_the_idle_blocks_and_reports_the_bytes():
    y = F.relu(np.ones((2, 8, 64, 64), np.float32))
    del y
    assert fastconv.clear_buffer_cache() == 256 * 1024
    assert fastconv.buffer_cache_info()["idle_bytes"] == 0
    assert fastconv.clear_buffer_cache() == 0


@pytest.mark.parametrize("value, limit, warns", [
    ("0", 0, False), ("3", 3 << 20, False), ("", 256 << 20, False), ("0512", 512 << 20, False),
    (str(2**44 - 1), (2**44 - 1) << 20, False),
    # Anything but a whole number of MiB keeps the default and says so, naming the variable
    # (before: "1e3" was read as 1 MiB, "-5" and "many" fell back silently, 2^54 wrapped to 0).
    ("many", 256 << 20, True), ("1e3", 256 << 20, True), ("-5", 256 << 20, True),
    (str(2**54), 256 << 20, True), (str(2**44), 256 << 20, True), (" 3", 256 << 20, True),
])
def test_the_environment_variable_sets_the_limit(value, limit, warns):
    code = ("import numpy as np, fastconv, fastconv.functional as F\n"
            "y = F.relu(np.ones((2, 8, 64, 64), np.float32)); del y\n"
            "i = fastconv.buffer_cache_info(); print(i['limit_bytes'], i['idle_blocks'])")
    env = dict(os.environ, FASTCONV_BUFFER_CACHE_MB=value)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(__file__) or ".")
    out = run.stdout.split()
    assert int(out[0]) == limit
    assert int(out[1]) == (0 if limit == 0 else 1)
    warning = f"RuntimeWarning: FASTCONV_BUFFER_CACHE_MB='{value}' is not a whole number of MiB"
    assert (warning in run.stderr) == warns, run.stderr


def test_training_reuses_memory_step_after_step():
    """A fit's steps are served from the cache: after the first epoch nothing new is allocated."""
    from fastconv import models

    rng = _rng(3)
    x = _f32(rng.random((64, 1, 28, 28)))
    y = rng.integers(0, 10, 64)
    model = models.lenet5(seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    misses = fastconv.buffer_cache_info()["misses"]
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    info = fastconv.buffer_cache_info()
    assert info["misses"] == misses and info["hits"] > 0
