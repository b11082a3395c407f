"""The worked examples of tests/data/seed_vectors.json (the tests' copy of the design notes').

They are written in TensorFlow layouts (NHWC images, HWIO kernels, "VALID"/"SAME"); each is
converted to NCHW/OIHW and run through fastconv.functional, and must give the listed numbers.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import fastconv.functional as F
import reference as ref

# The tests' own copy; FASTCONV_SEED_VECTORS points at another file of the same format.
SEED_FILE = Path(os.environ.get("FASTCONV_SEED_VECTORS",
                                Path(__file__).resolve().parent / "data" / "seed_vectors.json"))

SEEDS = json.loads(SEED_FILE.read_text())


def nhwc_to_nchw(a):
    return np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2))


def hwio_to_oihw(a):
    return np.ascontiguousarray(np.asarray(a, np.float32).transpose(3, 2, 0, 1))


def tf_padding(p):
    """"VALID"/"SAME" as fastconv's words; numbers as they are."""
    return p.lower() if isinstance(p, str) else p


def _ids(entries):
    return [e["name"] for e in entries]


@pytest.mark.parametrize("case", SEEDS["conv2d"], ids=_ids(SEEDS["conv2d"]))
def test_seed_conv2d(case):
    x = nhwc_to_nchw(case["x_nhwc"])
    w = hwio_to_oihw(case["w_hwio"])
    y = F.conv2d(x, w, stride=case["stride"], padding=tf_padding(case["padding"]))
    # y_nhwc_channel_planes lists one (H, W) plane per output channel of the single image.
    want = np.asarray(case["y_nhwc_channel_planes"], np.float64)[None]
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    # The independent reference agrees, so the seed and the reference check each other.
    np.testing.assert_allclose(ref.conv2d(x, w, stride=case["stride"], padding=tf_padding(case["padding"])),
                               want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("case", SEEDS["max_pool"], ids=_ids(SEEDS["max_pool"]))
def test_seed_max_pool(case):
    x = nhwc_to_nchw(case["x_nhwc"])
    y = F.max_pool2d(x, case["pool"], stride=case["stride"], padding=tf_padding(case["padding"]))
    want = nhwc_to_nchw(case["y_nhwc"])
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("case", SEEDS["shapes"], ids=_ids(SEEDS["shapes"]))
def test_seed_output_shapes(case):
    n, h, w, c = case["in_nhwc"]
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)
    padding = tf_padding(case["padding"])
    if "kernel" in case:
        k = case["kernel"]
        weights = np.random.default_rng(1).standard_normal((case["filters"], c, k, k)).astype(np.float32)
        y = F.conv2d(x, weights, stride=case["stride"], padding=padding)
    else:
        y = F.max_pool2d(x, case["pool"], stride=case["stride"], padding=padding)
    on, oh, ow, oc = case["out_nhwc"]
    assert y.shape == (on, oc, oh, ow)


@pytest.mark.parametrize("case", SEEDS["parameter_counts"],
                         ids=[f"{e['filters']}x{e['kernel']}x{e['kernel']}x{e['in_channels']}"
                              for e in SEEDS["parameter_counts"]])
def test_seed_parameter_counts(case):
    k, c, r = case["filters"], case["in_channels"], case["kernel"]
    assert k * c * r * r + k == case["params"]
    # The same count from the arrays a conv layer holds: w (K, C, R, S) and b (K,).
    w = np.zeros((k, c, r, r), np.float32)
    b = np.zeros(k, np.float32)
    assert w.size + b.size == case["params"]
    # and such a w is accepted by conv2d on an input with C channels.
    y = F.conv2d(np.zeros((1, c, r, r), np.float32), w, b)
    assert y.shape == (1, k, 1, 1)


def test_seed_lenet5_shapes_chain():
    """LeNet-5's shapes follow from conv (5x5, valid) and pool (2x2, stride 2) output sizes."""
    s = SEEDS["lenet5_shapes_chw"]
    x = np.zeros((1,) + tuple(s["input"]), np.float32)
    c1 = F.conv2d(x, np.zeros((6, 1, 5, 5), np.float32))
    assert c1.shape[1:] == tuple(s["C1"])
    s2 = F.avg_pool2d(c1, 2, stride=2)
    assert s2.shape[1:] == tuple(s["S2"])
    c3 = F.conv2d(s2, np.zeros((16, 6, 5, 5), np.float32))
    assert c3.shape[1:] == tuple(s["C3"])
    s4 = F.avg_pool2d(c3, 2, stride=2)
    assert s4.shape[1:] == tuple(s["S4"])
    c5 = F.conv2d(s4, np.zeros((120, 16, 5, 5), np.float32))
    assert c5.shape[1:] == tuple(s["C5"])
    f6 = F.linear(c5.reshape(1, -1), np.zeros((84, 120), np.float32))
    assert f6.shape[1:] == tuple(s["F6"])
    out = F.linear(f6, np.zeros((10, 84), np.float32))
    assert out.shape[1:] == tuple(s["output"])
    # The same chain from the reference's size formulas alone.
    assert ref.conv2d_output_shape((1, 1, 32, 32), (6, 1, 5, 5))[2:] == tuple(s["C1"][1:])
    assert ref.pool2d_output_shape((1, 6, 28, 28), 2)[2:] == tuple(s["S2"][1:])


def test_seed_formulas_agree_with_reference():
    """The 'formulas' entry's rules, evaluated on the seed shapes, match the reference resolver."""
    for n, k, s in [(28, 3, 2), (14, 2, 2), (5, 2, 1), (3, 2, 1), (2, 2, 1)]:
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        assert ref.same_padding_1d(n, k, s) == (total // 2, total - total // 2)
        before, after = ref.same_padding_1d(n, k, s)
        assert ref.out_size(n, k, s, before, after) == out
