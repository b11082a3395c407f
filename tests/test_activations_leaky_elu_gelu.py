"""leaky_relu, elu and gelu (erf and tanh forms): forward, backward, fused into conv2d/linear.

leaky_relu's and elu's backward take the forward OUTPUT y; gelu's takes the forward INPUT x.
The references (tests/reference.py) write every backward from x, so the y-form is checked
against an independent formula. NaN must come out of every one of them, forward and backward.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv.functional as F
import reference as ref
from conftest import to_device, to_numpy

TOL = 2e-6

shapes = st.one_of(
    st.tuples(st.integers(1, 40)),
    st.tuples(st.integers(1, 6), st.integers(1, 30)),
    st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 9), st.integers(1, 9)),
)

# name -> (forward(x, a), backward(dy, y, x, a), reference forward(x, a), reference backward(dy, x, a))
CASES = {
    "leaky_relu": (lambda x, a: F.leaky_relu(x, a), lambda dy, y, x, a: F.leaky_relu_backward(dy, y, a),
                   ref.leaky_relu, ref.leaky_relu_backward_from_input),
    "elu": (lambda x, a: F.elu(x, a), lambda dy, y, x, a: F.elu_backward(dy, y, a),
            ref.elu, ref.elu_backward_from_input),
    "gelu": (lambda x, a: F.gelu(x), lambda dy, y, x, a: F.gelu_backward(dy, x),
             lambda x, a: ref.gelu(x), lambda dy, x, a: ref.gelu_backward(dy, x)),
    "gelu_tanh": (lambda x, a: F.gelu(x, approximate=True),
                  lambda dy, y, x, a: F.gelu_backward(dy, x, approximate=True),
                  lambda x, a: ref.gelu_tanh(x), lambda dy, x, a: ref.gelu_tanh_backward(dy, x)),
}


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=25, deadline=None)
@given(shape=shapes, scale=st.sampled_from([0.3, 3.0, 30.0]), alpha=st.sampled_from([0.0, 0.01, 0.2, 1.0, 1.7]),
       seed=st.integers(0, 2**32 - 1))
def test_matches_reference(device, name, shape, scale, alpha, seed):
    forward, backward, ref_forward, ref_backward = CASES[name]
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = to_numpy(forward(to_device(x, device), alpha))
    assert y.shape == x.shape and y.dtype == np.float32
    ref.assert_close(y, ref_forward(x, alpha), TOL, f"{name} forward")
    dx = to_numpy(backward(to_device(dy, device), to_device(y, device), to_device(x, device), alpha))
    ref.assert_close(dx, ref_backward(dy, x, alpha), TOL, f"{name} backward")


@pytest.mark.parametrize("name", ["elu", "gelu", "gelu_tanh"])
def test_relative_precision_where_the_values_are_small(device, name):
    """Each element to a few ulp of its own size, not only of the array's largest: elu near 0
    (expm1, not exp - 1) and gelu's negative tail (erfc, not 1 + erf; a sigmoid, not 1 + tanh),
    down to GELU(-9) ~ 1e-18 (where 1 + erf would give 0 or noise). The bound is set by exp's
    argument -x^2/2 (~ -40) rounded to float: 2e-6 relative."""
    forward, _, ref_forward, _ = CASES[name]
    if name == "elu":
        x = -np.geomspace(1e-7, 20, 400).astype(np.float32)
    else:  # the float64 reference of the tanh form cancels itself below -5 (1 + tanh(u))
        x = -np.linspace(0.01, 9.0 if name == "gelu" else 5.0, 400).astype(np.float32)
    y = to_numpy(forward(to_device(x, device), 1.0)).astype(np.float64)
    want = ref_forward(x, 1.0)
    rel = np.abs(y - want) / np.abs(want)
    assert rel.max() < 2e-5, (name, x[np.argmax(rel)], y[np.argmax(rel)], want[np.argmax(rel)])


def test_known_values(device):
    x = to_device(np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32), device)
    np.testing.assert_array_equal(to_numpy(F.leaky_relu(x, 0.25)), [-0.5, -0.125, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(to_numpy(F.elu(x)), [np.expm1(-2.0), np.expm1(-0.5), 0, 0.5, 2.0], rtol=1e-6)
    # GELU(1) = Phi(1) = 0.8413447460685429; GELU(-1) = -(1 - Phi(1)).
    g = to_numpy(F.gelu(to_device(np.array([1.0, -1.0, 0.0], np.float32), device)))
    np.testing.assert_allclose(g, [0.8413447460685429, -0.15865525393145707, 0.0], rtol=1e-6, atol=1e-12)
    # Backward from y at the kink: y = 0 (x = 0) takes the negative side, as PyTorch does.
    dy = to_device(np.full(3, 2.0, np.float32), device)
    y = to_device(np.array([0.0, 1.0, -0.1], np.float32), device)
    np.testing.assert_allclose(to_numpy(F.leaky_relu_backward(dy, y, 0.1)), [0.2, 2.0, 0.2], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(F.elu_backward(dy, y, 1.0)), [2.0, 2.0, 1.8], rtol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_nan_and_infinity(device, name):
    forward, backward, _, _ = CASES[name]
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0], np.float32)
    y = to_numpy(forward(to_device(x, device), 0.2))
    assert np.isnan(y[0]), y
    assert y[1] == np.inf and y[3] == np.float32(1e30) and y[5] == 0.0, y
    assert np.isfinite(y[4]) or name == "leaky_relu", y        # leaky: -1e30 * 0.2 is finite too
    dy = np.ones_like(x)
    dx = to_numpy(backward(to_device(dy, device), to_device(y, device), to_device(x, device), 0.2))
    assert np.isnan(dx[0]), dx
    assert np.all(np.isfinite(dx[1:])), dx
    np.testing.assert_allclose(dx[[1, 3]], [1.0, 1.0], rtol=1e-6)  # +inf and 1e30: slope 1


@pytest.mark.parametrize("code,alpha", [(4, 0.2), (4, 0.0), (5, 1.0), (5, 0.5), (6, None), (7, None)])
@pytest.mark.parametrize("kind", ["conv2d", "linear"])
def test_fused_into_conv2d_and_linear(device, code, alpha, kind):
    """conv2d_forward / linear_forward with the activation fused into the output pass give the
    unfused op followed by the activation (every CPU conv algorithm: the shapes pick
    im2col, winograd, the row and the channel kernels)."""
    from fastconv import functional

    be = functional._backend(to_device(np.zeros(1, np.float32), device))
    rng = np.random.default_rng(code)
    if kind == "conv2d":
        cases = [((2, 3, 9, 11), (5, 3, 3, 3)), ((2, 32, 12, 12), (32, 32, 3, 3)),
                 ((2, 1, 16, 16), (6, 1, 5, 5)), ((2, 6, 10, 10), (16, 6, 5, 5)), ((3, 4, 5, 5), (7, 4, 5, 5))]
    else:
        cases = [((5, 13), (7, 13)), ((64, 100), (300, 100))]
    for xs, ws in cases:
        x = to_device((rng.standard_normal(xs) * 2).astype(np.float32), device)
        w = to_device((rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32), device)
        b = to_device(rng.standard_normal(ws[0]).astype(np.float32), device)
        if kind == "conv2d":
            plain = be.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 0)
            fused = be.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), code, alpha)
        else:
            plain = be.linear_forward(x, w, b, 0)
            fused = be.linear_forward(x, w, b, code, alpha)
        want = to_numpy(F.activation(plain, code, alpha))
        np.testing.assert_allclose(to_numpy(fused), want, rtol=2e-6, atol=2e-6, err_msg=f"{kind} {xs} {ws}")


def test_default_parameters_are_keras_defaults(device):
    x = to_device(np.array([-1.0, 2.0], np.float32), device)
    np.testing.assert_allclose(to_numpy(F.activation(x, "leaky_relu")), [-0.2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(F.activation(x, "elu")), [np.expm1(-1.0), 2.0], rtol=1e-6)
    assert F.ACTIVATION_DEFAULT_ALPHA == {4: 0.2, 5: 1.0}


@pytest.mark.parametrize("act,alpha", [(4, 0.3), (5, 1.0), (6, None), (7, None)])
def test_backward_with_the_bias_gradient_in_one_pass(act, alpha):
    """_core.activation_backward_bias with the new codes: dx as activation_backward, db its sum
    over N, P, Q in float64, the same bits on 1 and 2 threads."""
    import fastconv
    from fastconv import _core

    rng = np.random.default_rng(act)
    shape = (3, 5, 7, 9)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = _core.activation_forward(x, act, alpha)
    dx, db = _core.activation_backward_bias(dy, y, act, alpha, x)
    np.testing.assert_array_equal(dx, _core.activation_backward(dy, y, act, alpha, x))
    np.testing.assert_allclose(db, dx.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = _core.activation_backward_bias(dy, y, act, alpha, x)
        fastconv.set_num_threads(2)
        two = _core.activation_backward_bias(dy, y, act, alpha, x)
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "gelu", "gelu_tanh"])
def test_reference_backward_is_finite_differences(name):
    _, _, ref_forward, ref_backward = CASES[name]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6)) * 2
    x[np.abs(x) < 0.05] = 0.5                       # leaky relu and elu have a kink at 0
    g = rng.standard_normal(x.shape)
    numerical = ref.numerical_gradient(lambda v: float(np.sum(ref_forward(v, 0.3) * g)), x)
    np.testing.assert_allclose(ref_backward(g, x, 0.3), numerical, rtol=1e-6, atol=1e-8)


def test_large_arrays_across_threads_and_chunks():
    """Above the parallel threshold (chunks of 16384 over the threads): the same values as
    the small-array path, element for element."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(3 * 16384 + 77) * 4).astype(np.float32)
    dy = rng.standard_normal(x.size).astype(np.float32)
    for name, (forward, backward, _, _) in CASES.items():
        y = forward(x, 0.3)
        dx = backward(dy, y, x, 0.3)
        for lo in (0, 20000, 49000):
            sl = slice(lo, lo + 300)
            np.testing.assert_array_equal(forward(x[sl], 0.3), y[sl], err_msg=name)
            np.testing.assert_array_equal(backward(dy[sl], y[sl], x[sl], 0.3), dx[sl], err_msg=name)


def test_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="negative_slope must be finite and >= 0"):
        F.leaky_relu(x, -0.1)
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        F.elu(x, float("nan"))
    with pytest.raises(TypeError, match="alpha must be a real number"):
        F.elu(x, "1")
    with pytest.raises(ValueError, match="needs the forward input x"):
        F.activation_backward(x, x, "gelu")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        F.activation(x, "swish")
    with pytest.raises(ValueError, match="act must be"):
        F.activation(x, 9)
    with pytest.raises(ValueError, match="dy has shape"):
        F.gelu_backward(x, np.zeros((3, 2), np.float32))
    from fastconv import _core
    with pytest.raises(ValueError, match="activation code must be"):
        _core.activation_forward(x, 8)
    with pytest.raises(ValueError, match="alpha"):
        _core.activation_forward(x, 4, -1.0)
    with pytest.raises(ValueError, match="needs the forward input x"):
        _core.activation_backward(x, x, 6)


# --------------------------------------------------------------------------- PyTorch conformance
def test_against_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is only for cross-checks")
    TF = torch.nn.functional
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((4, 3, 7, 9)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    t = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    tdy = torch.from_numpy(dy.astype(np.float64))
    for name, tfn, ours_f, ours_b in [
        ("leaky_relu", lambda v: TF.leaky_relu(v, 0.2), lambda: F.leaky_relu(x, 0.2),
         lambda y: F.leaky_relu_backward(dy, y, 0.2)),
        ("elu", lambda v: TF.elu(v, 1.3), lambda: F.elu(x, 1.3), lambda y: F.elu_backward(dy, y, 1.3)),
        ("gelu", lambda v: TF.gelu(v), lambda: F.gelu(x), lambda y: F.gelu_backward(dy, x)),
        ("gelu_tanh", lambda v: TF.gelu(v, approximate="tanh"), lambda: F.gelu(x, approximate=True),
         lambda y: F.gelu_backward(dy, x, approximate=True)),
    ]:
        ty = tfn(t)
        (tdx,) = torch.autograd.grad(ty, t, tdy)
        y = ours_f()
        ref.assert_close(y, ty.detach().numpy(), TOL, f"{name} forward vs torch")
        ref.assert_close(ours_b(y), tdx.numpy(), TOL, f"{name} backward vs torch")


# ------------------------------------------------------------------ GELU's kernels, every ISA
def check_gelu_sweep():
    """GELU forward and backward (erf form) element by element against the float64 reference:
    a dense sweep of [-15, 15] (the tail through Phi(-|x|) = t Q(t) e^(-x^2/2), the flush of
    e^(-x^2/2) to 0 past |x| = 13.1), every length from 1 to 70 (the kernels' blocks of 4 vectors
    and their tails, 8 and 16 lanes), in place, with a shift by +-0 and the special values."""
    x = np.linspace(-15.0, 15.0, 60001).astype(np.float32)
    dy = np.cos(np.arange(x.size, dtype=np.float32))            # any signs, no zeros needed
    y = F.gelu(x).astype(np.float64)
    want = ref.gelu(x)
    # Relative to each element's own size where the result is a normal float (the tail test
    # below has the documented bound); absolute beside 1 elsewhere (cancellation-free sums).
    big = np.abs(want) >= 1e-30
    rel = np.abs(y - want)[big] / np.abs(want[big])
    assert rel.max() < 1e-5, ("gelu forward", x[big][np.argmax(rel)])
    assert np.abs(y - want).max() < 2e-6 * max(1.0, np.abs(want).max())
    assert np.all(np.abs(y[~big]) < 1e-30)                   # the flushed far tail: zeros
    dx = F.gelu_backward(dy, x).astype(np.float64)
    want_dx = ref.gelu_backward(dy, x)
    assert np.abs(dx - want_dx).max() < 3e-6 * np.abs(want_dx).max(), "gelu backward"
    # every length (blocks and tails), the result independent of where an element sits
    rng = np.random.default_rng(5)
    for n in range(1, 71):
        xs = (rng.standard_normal(n) * 3).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        yn = F.gelu(xs)
        ref.assert_close(yn, ref.gelu(xs), TOL, f"gelu forward, n={n}")
        ref.assert_close(F.gelu_backward(g, xs), ref.gelu_backward(g, xs), TOL, f"gelu backward, n={n}")
        for i in range(n):
            assert yn[i] == F.gelu(xs[i:i + 1])[0], (n, i)
    # special values: NaN stays NaN, +inf -> inf, large negative -> -0 (finite)
    sp = np.array([np.nan, np.inf, -1e30, 1e30, -20.0, 0.0, -0.0], np.float32)
    ys = F.gelu(sp)
    assert np.isnan(ys[0]) and ys[1] == np.inf and ys[2] == 0 and ys[3] == np.float32(1e30)
    assert ys[4] == 0 and ys[5] == 0 and ys[6] == 0
    ds = F.gelu_backward(np.ones_like(sp), sp)
    assert np.isnan(ds[0]) and np.all(np.isfinite(ds[1:]))
    np.testing.assert_allclose(ds[1:], [1.0, 0.0, 1.0, 0.0, 0.5, 0.5], rtol=1e-6, atol=1e-30)


def test_gelu_sweep():
    check_gelu_sweep()


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_gelu_sweep_on_each_isa(isa):
    """The same sweep in a fresh interpreter per ISA (FASTCONV_ISA picks the kernels once)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_activations import _isas_here

    if isa not in _isas_here():
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r})\n"
            "import fastconv; assert fastconv.cpu_isa() == sys.argv[1], fastconv.cpu_isa()\n"
            "import test_activations_leaky_elu_gelu as t; t.check_gelu_sweep(); print('ok')")
    run = subprocess.run([sys.executable, "-c", code, isa], env=dict(os.environ, FASTCONV_ISA=isa),
                         capture_output=True, text=True, timeout=120, cwd=here)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
