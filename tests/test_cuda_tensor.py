"""The CUDA backend's Python surface: fastconv.cuda, the device Tensor and a smoke test per op.

Tests without the gpu marker run everywhere and check that a machine without a GPU (or a build
without CUDA) is reported clearly. Tests marked gpu run only where a CUDA GPU is available and
check round trips, zero-copy sharing, the caching allocator, and each op against a small
NumPy float64 computation (the exhaustive op tests live in the device-parametrised op tests).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastconv.cuda as fc_cuda

HAS_GPU = fc_cuda.is_available()
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason=f"no CUDA GPU: {fc_cuda.why_unavailable()}")


# ---------------------------------------------------------------- everywhere
def test_module_imports_and_reports():
    assert isinstance(fc_cuda.is_available(), bool)
    assert isinstance(fc_cuda.is_built(), bool)
    assert fc_cuda.device_count() >= (1 if HAS_GPU else 0)
    if not HAS_GPU:
        reason = fc_cuda.why_unavailable()
        assert isinstance(reason, str) and reason.strip()
        assert fc_cuda.device_count() == 0
        assert fc_cuda.device_name() == ""
    else:
        assert fc_cuda.why_unavailable() == ""
        assert fc_cuda.device_name()


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU error path")
def test_tensor_without_gpu_raises_clear_error():
    with pytest.raises(RuntimeError, match="(no CUDA GPU|without CUDA|no GPU)"):
        fc_cuda.Tensor.from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="(no CUDA GPU|without CUDA|no GPU)"):
        fc_cuda.Tensor(np.zeros(3))
    with pytest.raises(RuntimeError, match="(GPU|CUDA)"):
        fc_cuda.to_device(np.zeros(3))
    with pytest.raises(RuntimeError, match="(GPU|CUDA)"):
        fc_cuda.synchronize()
    with pytest.raises(RuntimeError, match="(GPU|CUDA)"):
        fc_cuda.require()
    fc_cuda.empty_cache()  # harmless without a GPU
    assert fc_cuda.memory_stats()["allocated_bytes"] == 0


@pytest.mark.skipif(HAS_GPU or not fc_cuda.is_built(), reason="needs the extension, no GPU")
def test_extension_ops_without_gpu_raise_runtime_error():
    ext = fc_cuda._extension()
    assert ext.is_available() is False
    assert "driver" in ext.why_unavailable().lower() or ext.why_unavailable()
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        ext.Tensor.zeros((4,))
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        ext.synchronize()
    assert ext.get_allow_tf32() is False
    ext.set_allow_tf32(True)
    assert ext.get_allow_tf32() is True
    ext.set_allow_tf32(False)


@pytest.mark.slow
def test_host_emulation_of_the_cuda_kernels(tmp_path):
    """Compile tests/cuda_host_emulation.cu with nvcc and run it: the GEMM engine's tiles,
    split-K and every conv/linear/pool index decode, executed on the CPU (no GPU needed)."""
    nvcc = shutil.which("nvcc")
    root = Path(__file__).resolve().parents[1]
    source = root / "tests" / "cuda_host_emulation.cu"
    if nvcc is None or not source.exists() or not (root / "csrc" / "cuda").is_dir():
        pytest.skip("needs nvcc and the source tree")
    exe = tmp_path / "cuda_host_emulation"
    build = subprocess.run(
        [nvcc, "-std=c++17", "-O1", "-arch=sm_80", f"-I{root / 'csrc'}", str(source),
         str(root / "csrc" / "cuda" / "runtime.cu"), "-o", str(exe)],
        capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "all passed" in run.stdout


def test_tensor_name_is_a_class():
    assert isinstance(fc_cuda.Tensor, type)
    assert not isinstance(np.zeros(3), fc_cuda.Tensor)


# ---------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_round_trip(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    t = fc_cuda.Tensor.from_numpy(a)
    want = np.float32 if np.issubdtype(dtype, np.floating) else np.int64
    assert t.shape == (3, 4, 5)
    assert t.dtype == np.dtype(want)
    assert t.size == 60 and t.ndim == 3 and t.nbytes == 60 * np.dtype(want).itemsize
    back = t.numpy()
    assert back.dtype == want
    np.testing.assert_array_equal(back, a.astype(want))


@pytest.mark.gpu
@requires_gpu
def test_non_contiguous_and_empty_and_views():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(fc_cuda.Tensor.from_numpy(a).numpy(), a)
    e = fc_cuda.Tensor.from_numpy(np.zeros((0, 3), np.float32))
    assert e.shape == (0, 3) and e.numpy().shape == (0, 3)
    t = fc_cuda.to_device(np.arange(12, dtype=np.float32))
    v = t.reshape(3, -1)
    assert v.shape == (3, 4) and v.data_ptr == t.data_ptr
    np.testing.assert_array_equal(v.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))
    c = t.copy()
    assert c.data_ptr != t.data_ptr
    np.testing.assert_array_equal(c.numpy(), t.numpy())
    z = fc_cuda.Tensor.zeros((2, 2), "int64")
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="reshape"):
        t.reshape(5, 5)


@pytest.mark.gpu
@requires_gpu
def test_cuda_array_interface():
    t = fc_cuda.Tensor.from_numpy(np.ones((2, 3), np.float32))
    cai = t.__cuda_array_interface__
    assert cai["version"] == 3
    assert cai["shape"] == (2, 3)
    assert cai["typestr"] == "<f4"
    assert cai["data"] == (t.data_ptr, False)
    assert cai["strides"] is None
    copy = fc_cuda.Tensor.from_cuda_array_interface(t)
    np.testing.assert_array_equal(copy.numpy(), np.ones((2, 3), np.float32))
    assert fc_cuda.Tensor.from_numpy(np.zeros(2, np.int64)).__cuda_array_interface__[
        "typestr"] == "<i8"


@pytest.mark.gpu
@requires_gpu
def test_dlpack_with_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = fc_cuda.Tensor.from_numpy(a)
    assert t.__dlpack_device__() == (2, t.device_index)
    tt = torch.from_dlpack(t)
    assert tt.is_cuda and tuple(tt.shape) == (3, 4) and tt.dtype == torch.float32
    assert tt.data_ptr() == t.data_ptr  # shared, not copied
    np.testing.assert_array_equal(tt.cpu().numpy(), a)
    del t  # torch's reference keeps the memory alive
    torch.cuda.synchronize()
    np.testing.assert_array_equal(tt.cpu().numpy(), a)
    # torch -> fastconv without a copy: a write through torch is seen by fastconv.
    src = torch.zeros(5, device="cuda", dtype=torch.float32)
    f = fc_cuda.Tensor.from_dlpack(src)
    assert f.data_ptr == src.data_ptr()
    src += 2
    torch.cuda.synchronize()
    np.testing.assert_array_equal(f.numpy(), np.full(5, 2, np.float32))
    lab = fc_cuda.Tensor.from_dlpack(torch.arange(4, device="cuda"))
    assert lab.dtype == np.int64
    with pytest.raises(ValueError, match="contiguous"):
        fc_cuda.Tensor.from_dlpack(torch.zeros(4, 4, device="cuda").t())


@pytest.mark.gpu
@requires_gpu
def test_allocator_reuses_blocks():
    fc_cuda.synchronize()
    for _ in range(3):  # warm the cache with this size
        fc_cuda.Tensor.zeros((1024, 1024))
    before = fc_cuda.memory_stats()
    for _ in range(20):
        t = fc_cuda.Tensor.zeros((1024, 1024))
        del t
    after = fc_cuda.memory_stats()
    assert after["cuda_mallocs"] == before["cuda_mallocs"]
    assert after["cache_hits"] >= before["cache_hits"] + 20
    fc_cuda.empty_cache()
    assert fc_cuda.memory_stats()["cached_bytes"] == 0


# ---------------------------------------------------------------- op smoke tests on a GPU
def _conv_ref(x, w, b, stride, pad, dil):
    """Direct float64 convolution; pad is (top, left, bottom, right)."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    P = (H + pad[0] + pad[2] - dil[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + pad[1] + pad[3] - dil[1] * (S - 1) - 1) // stride[1] + 1
    y = np.zeros((N, K, P, Q))
    for r in range(R):
        for s in range(S):
            h0, w0 = r * dil[0], s * dil[1]
            patch = xp[:, :, h0:h0 + stride[0] * (P - 1) + 1:stride[0],
                       w0:w0 + stride[1] * (Q - 1) + 1:stride[1]]
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, r, s].astype(np.float64))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


CONV_CASES = [
    # (x shape, w shape, stride, pad (t, l, b, r), dilation)
    ((2, 1, 32, 32), (6, 1, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),       # LeNet C1
    ((3, 6, 14, 14), (16, 6, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),      # LeNet C3
    ((4, 16, 5, 5), (120, 16, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),     # LeNet C5
    ((2, 32, 14, 14), (64, 32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),    # VGG same
    ((2, 3, 11, 9), (5, 3, 3, 2), (2, 3), (1, 0, 2, 1), (2, 1)),        # odd geometry
    ((64, 8, 28, 28), (16, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),     # split-K weight grad
    ((1, 130, 12, 12), (140, 130, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),  # 128x128 tiles
]


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_ops_against_numpy(case):
    ext = fc_cuda.require()
    xs, ws, stride, pad, dil = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    want = _conv_ref(x, w, b, stride, pad, dil)
    T = fc_cuda.Tensor.from_numpy
    y = ext.conv2d_forward(T(x), T(w), T(b), stride, pad, dil, 0).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-3)
    y_relu = ext.conv2d_forward(T(x), T(w), T(b), stride, pad, dil, 1).numpy()
    np.testing.assert_allclose(y_relu, np.maximum(want, 0), rtol=1e-4, atol=1e-3)
    # Gradients by linearity: <dy, conv(x, w)> is bilinear, so its gradients are exact
    # contractions that we check against the reference forward of basis perturbations.
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = ext.conv2d_backward_input(T(dy), T(w), xs, stride, pad, dil).numpy()
    dw = ext.conv2d_backward_weight(T(dy), T(x), ws, stride, pad, dil).numpy()
    db = ext.conv2d_backward_bias(T(dy)).numpy()
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4,
                               atol=1e-3)
    # <dy, conv(u, w)> == <dx, u> for a random u, and <dy, conv(x, v)> == <dw, v>.
    u = rng.standard_normal(xs)
    v = rng.standard_normal(ws)
    lhs_x = np.sum(dy * _conv_ref(u, w, None, stride, pad, dil))
    lhs_w = np.sum(dy * _conv_ref(x, v, None, stride, pad, dil))
    assert np.isclose(np.sum(dx * u), lhs_x, rtol=1e-3, atol=1e-2)
    assert np.isclose(np.sum(dw * v), lhs_w, rtol=1e-3, atol=1e-2)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[3], CONV_CASES[5]])
def test_conv2d_tf32_close_to_fp32(case):
    ext = fc_cuda.require()
    xs, ws, stride, pad, dil = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    want = _conv_ref(x, w, None, stride, pad, dil)
    T = fc_cuda.Tensor.from_numpy
    fc_cuda.set_allow_tf32(True)
    try:
        assert fc_cuda.get_allow_tf32()
        y = ext.conv2d_forward(T(x), T(w), None, stride, pad, dil, 0).numpy()
        dy = rng.standard_normal(want.shape).astype(np.float32)
        dw = ext.conv2d_backward_weight(T(dy), T(x), ws, stride, pad, dil).numpy()
        a = rng.standard_normal((100, 300)).astype(np.float32)
        b = rng.standard_normal((300, 70)).astype(np.float32)
        c = ext.sgemm(T(a), T(b), False, False).numpy()
    finally:
        fc_cuda.set_allow_tf32(False)
    scale = np.abs(want).max()
    assert np.abs(y - want).max() <= 5e-3 * scale
    v = rng.standard_normal(ws)
    assert np.isclose(np.sum(dw * v), np.sum(dy * _conv_ref(x, v, None, stride, pad, dil)),
                      rtol=1e-2, atol=1e-1)
    np.testing.assert_allclose(c, a @ b, rtol=0, atol=5e-3 * np.abs(a @ b).max())


@pytest.mark.gpu
@requires_gpu
def test_pool_activation_softmax_linear_against_numpy():
    ext = fc_cuda.require()
    T = fc_cuda.Tensor.from_numpy
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = ext.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0, 0, 0)).numpy()
    np.testing.assert_array_equal(y, x.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))
    a = ext.avg_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0, 0, 0), True).numpy()
    np.testing.assert_allclose(a, x.reshape(2, 3, 3, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-6)
    dy = np.ones((2, 3, 3, 3), np.float32)
    dxm = ext.max_pool2d_backward(T(dy), T(x), (2, 2), (2, 2), (0, 0, 0, 0)).numpy()
    assert dxm.sum() == 2 * 3 * 9 and set(np.unique(dxm)) <= {0.0, 1.0}
    dxa = ext.avg_pool2d_backward(T(dy), x.shape, (2, 2), (2, 2), (0, 0, 0, 0), True).numpy()
    np.testing.assert_allclose(dxa, np.full(x.shape, 0.25, np.float32))
    for act, f in [(1, lambda v: np.maximum(v, 0)), (2, np.tanh),
                   (3, lambda v: 1 / (1 + np.exp(-v)))]:
        np.testing.assert_allclose(ext.activation_forward(T(x), act).numpy(), f(x), rtol=1e-5,
                                   atol=1e-6)
    logits = rng.standard_normal((5, 10)).astype(np.float32)
    labels = np.array([0, 9, 3, 3, 7])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(ext.softmax(T(logits)).numpy(), p, rtol=1e-5, atol=1e-7)
    loss, dl = ext.softmax_cross_entropy(T(logits), labels)
    assert np.isclose(loss, -np.log(p[np.arange(5), labels]).mean(), rtol=1e-5)
    onehot = np.eye(10)[labels]
    np.testing.assert_allclose(dl.numpy(), (p - onehot) / 5, rtol=1e-5, atol=1e-7)
    loss2, _ = ext.softmax_cross_entropy(T(logits), T(labels))
    assert np.isclose(loss2, loss)
    with pytest.raises(ValueError, match="labels"):
        ext.softmax_cross_entropy(T(logits), np.array([0, 1, 2, 3, 10]))
    with pytest.raises(ValueError, match="labels"):
        ext.softmax_cross_entropy(T(logits), T(np.array([0, 1, -1, 3, 4])))
    xl = rng.standard_normal((7, 33)).astype(np.float32)
    wl = rng.standard_normal((9, 33)).astype(np.float32)
    bl = rng.standard_normal(9).astype(np.float32)
    np.testing.assert_allclose(ext.linear_forward(T(xl), T(wl), T(bl), 0).numpy(),
                               xl @ wl.T + bl, rtol=1e-4, atol=1e-4)
    dyl = rng.standard_normal((7, 9)).astype(np.float32)
    dx, dw, db = ext.linear_backward(T(dyl), T(xl), T(wl))
    np.testing.assert_allclose(dx.numpy(), dyl @ wl, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw.numpy(), dyl.T @ xl, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db.numpy(), dyl.sum(0), rtol=1e-4, atol=1e-5)
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal((70, 45) if ta else (45, 70)).astype(np.float32)
            B = rng.standard_normal((130, 70) if tb else (70, 130)).astype(np.float32)
            C = ext.sgemm(T(A), T(B), ta, tb).numpy()
            np.testing.assert_allclose(C, (A.T if ta else A) @ (B.T if tb else B), rtol=1e-4,
                                       atol=1e-3)


@pytest.mark.gpu
@requires_gpu
def test_bad_shapes_raise_value_error_before_launch():
    ext = fc_cuda.require()
    T = fc_cuda.Tensor.from_numpy
    x = T(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="input channels"):
        ext.conv2d_forward(x, T(np.zeros((2, 4, 3, 3), np.float32)), None, (1, 1), (0, 0, 0, 0),
                           (1, 1), 0)
    with pytest.raises(ValueError, match="dy must have shape"):
        ext.conv2d_backward_input(T(np.zeros((1, 2, 5, 5), np.float32)),
                                  T(np.zeros((2, 3, 3, 3), np.float32)), (1, 3, 8, 8), (1, 1),
                                  (0, 0, 0, 0), (1, 1))
    with pytest.raises(TypeError, match="float32"):
        ext.activation_forward(T(np.zeros(3, np.int64)), 1)
    with pytest.raises(ValueError, match="act"):
        ext.activation_forward(x, 7)


@pytest.mark.gpu
@requires_gpu
def test_slice_copy_zero_and_out_arguments():
    ext = fc_cuda.require()
    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 3, 4)).astype(np.float32)
    t = fc_cuda.Tensor.from_numpy(a)
    v = t.slice(2, 5)  # a view: writes show through to t
    assert v.shape == (3, 3, 4)
    np.testing.assert_array_equal(v.numpy(), a[2:5])
    v.zero_()
    a[2:5] = 0
    np.testing.assert_array_equal(t.numpy(), a)
    b = rng.standard_normal((3, 3, 4)).astype(np.float32)
    v.copy_(b)
    a[2:5] = b
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises(ValueError, match="start"):
        t.slice(4, 7)
    with pytest.raises(ValueError, match="shape"):
        v.copy_(np.zeros((2, 3, 4), np.float32))

    # out= writes the gradient into a given tensor (here a view of a flat buffer).
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    flat = fc_cuda.Tensor.zeros((4 * 3 * 9 + 4,), "float32")
    dw_view = flat.slice(0, 108).reshape(4, 3, 3, 3)
    db_view = flat.slice(108, 112)
    T = fc_cuda.Tensor.from_numpy
    ext.conv2d_backward_weight(T(dy), T(x), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), out=dw_view)
    ext.conv2d_backward_bias(T(dy), out=db_view)
    from fastconv import functional as F

    got = flat.numpy()
    np.testing.assert_allclose(got[:108].reshape(4, 3, 3, 3),
                               F.conv2d_backward_weight(dy, x, (4, 3, 3, 3)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[108:], dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out"):
        ext.conv2d_backward_bias(T(dy), out=fc_cuda.Tensor.zeros((5,), "float32"))
