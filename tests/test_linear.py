"""linear forward/backward and the float32 GEMM (matmul, _core.sgemm) on edge sizes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 1e-5


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 16), i=st.integers(1, 40), o=st.integers(1, 40), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_linear_matches_reference(device, n, i, o, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, i)).astype(np.float32)
    w = rng.uniform(-1, 1, (o, i)).astype(np.float32)
    b = rng.uniform(-1, 1, o).astype(np.float32) if bias else None
    dy = rng.uniform(-1, 1, (n, o)).astype(np.float32)
    y = to_numpy(F.linear(to_device(x, device), to_device(w, device), None if b is None else to_device(b, device)))
    assert y.shape == (n, o) and y.dtype == np.float32
    ref.assert_close(y, ref.linear(x, w, b), TOL, "linear forward")
    dx, dw, db = F.linear_backward(to_device(dy, device), to_device(x, device), to_device(w, device))
    want_dx, want_dw, want_db = ref.linear_backward(dy, x, w)
    ref.assert_close(to_numpy(dx), want_dx, TOL, "linear dx")
    ref.assert_close(to_numpy(dw), want_dw, TOL, "linear dw")
    ref.assert_close(to_numpy(db), want_db, TOL, "linear db")


def test_linear_known_values(device):
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], np.float32)     # (O=2, I=3), PyTorch layout
    b = np.array([0.5, -1.0], np.float32)
    y = to_numpy(F.linear(to_device(x, device), to_device(w, device), to_device(b, device)))
    np.testing.assert_array_equal(y, [[1.5, 4.0]])
    dx, dw, db = F.linear_backward(to_device(np.array([[1.0, 2.0]], np.float32), device),
                                   to_device(x, device), to_device(w, device))
    np.testing.assert_array_equal(to_numpy(dx), [[1.0, 2.0, 2.0]])
    np.testing.assert_array_equal(to_numpy(dw), [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(to_numpy(db), [1.0, 2.0])


def test_reference_linear_gradients_are_finite_differences():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    g = rng.standard_normal((3, 5))
    dx, dw, db = ref.linear_backward(g, x, w)

    def loss(x_, w_, b_):
        return float(np.sum(ref.linear(x_, w_, b_) * g))

    np.testing.assert_allclose(dx, ref.numerical_gradient(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, ref.numerical_gradient(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, ref.numerical_gradient(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------
# GEMM on edge sizes: 1, tiny, primes, and one past the usual block sizes (32, 64, 128, 256, 480, 512)
# --------------------------------------------------------------------------------------

SIZES = [1, 2, 7, 13, 31, 33, 65, 97, 129, 257, 481, 513]


def _gemm_cases():
    cases = set()
    for s in SIZES:
        cases.update({(s, 13, 31), (13, s, 31), (13, 31, s)})
        if s <= 257:
            cases.add((s, s, s))
    cases.update({(513, 513, 513), (481, 65, 129), (1, 513, 513), (513, 1, 513), (513, 513, 1),
                  (97, 257, 7), (2, 481, 33), (257, 2, 65)})
    return sorted(cases)


GEMM_CASES = _gemm_cases()


def _gemm_data(m, n, k):
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    return rng.uniform(-1, 1, (m, k)).astype(np.float32), rng.uniform(-1, 1, (k, n)).astype(np.float32)


@pytest.mark.parametrize("m,n,k", GEMM_CASES)
def test_matmul_edge_sizes(device, m, n, k):
    a, b = _gemm_data(m, n, k)
    c = to_numpy(F.matmul(to_device(a, device), to_device(b, device)))
    assert c.shape == (m, n) and c.dtype == np.float32
    ref.assert_close(c, ref.matmul(a, b), TOL, f"matmul {m}x{k} @ {k}x{n}")


sgemm = getattr(getattr(fastconv, "_core", None), "sgemm", None)


@pytest.mark.skipif(sgemm is None, reason="fastconv._core.sgemm is not exposed")
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [case for case in GEMM_CASES if case[0] * case[1] * case[2] <= 2**24])
def test_sgemm_transposes(m, n, k, trans_a, trans_b):
    a, b = _gemm_data(m, n, k)
    # With trans_a the stored matrix is (K, M) and the product uses its transpose; likewise B.
    a_stored = np.ascontiguousarray(a.T) if trans_a else a
    b_stored = np.ascontiguousarray(b.T) if trans_b else b
    c = np.asarray(sgemm(a_stored, b_stored, trans_a=trans_a, trans_b=trans_b))
    assert c.shape == (m, n)
    ref.assert_close(c, ref.matmul(a, b), TOL, f"sgemm trans_a={trans_a} trans_b={trans_b} {m},{n},{k}")


# --------------------------------------------------------------------------------------
# every CPU micro-kernel, not only the one dispatch picks: FASTCONV_ISA forces one per process
# --------------------------------------------------------------------------------------

ISA_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import fastconv, fastconv.functional as F
    print("isa", fastconv.cpu_isa())
    worst = 0.0
    rng = np.random.default_rng(0)
    for m, n, k in [(1, 1, 1), (7, 13, 31), (33, 65, 129), (97, 31, 257), (129, 481, 13), (257, 7, 513)]:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64)
        got = F.matmul(a, b).astype(np.float64)
        worst = max(worst, np.abs(got - want).max() / max(np.abs(want).max(), 1.0))
    x = rng.standard_normal((2, 19, 15, 13)).astype(np.float32)
    w = rng.standard_normal((37, 19, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1).astype(np.float64)
    # conv2d as a float64 sum over taps, for comparison
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = sum(np.einsum("nchw,kc->nkhw", xp[:, :, r:r + 15, s:s + 13], w[:, :, r, s].astype(np.float64))
               for r in range(3) for s in range(3))
    worst = max(worst, np.abs(y - want).max() / max(np.abs(want).max(), 1.0))
    print("worst", worst)
""")


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_each_cpu_isa_kernel_matches_reference(isa):
    package_parent = str(Path(fastconv.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package_parent, FASTCONV_ISA=isa, OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", ISA_CHILD], capture_output=True, text=True, env=env,
                          cwd=package_parent, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    if lines["isa"] != isa:
        pytest.skip(f"FASTCONV_ISA={isa} not available here (dispatch picked {lines['isa']})")
    assert float(lines["worst"]) < TOL, f"{isa}: relative error {lines['worst']}"
