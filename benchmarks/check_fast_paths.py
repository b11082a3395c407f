"""Quick correctness sweep of fastconv's CPU conv2d and pooling against float64 NumPy.

Covers the fast paths and the general ones: stride 1..3, dilation 1..2, symmetric and
asymmetric padding, odd sizes, batch 1, one channel, 1x1 filters, whole-image filters
(P = Q = 1), tiled pooling (stride == window) and overlapping/padded pooling; each case runs
with 1 and 2 threads, which must agree to rounding. Prints the worst normalised error
max|ours - ref| / max|ref| per op and exits 1 above 2e-5.

    python benchmarks/check_fast_paths.py [--quick]
"""
import itertools
import sys

import numpy as np

import fastconv
from fastconv import _core

TOL = 2e-5
worst = {}
failures = []


def record(name, got, ref, case):
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(np.abs(ref).max(), 1e-30)
    err = float(np.abs(got.astype(np.float64) - ref).max() / scale)
    worst[name] = max(worst.get(name, 0.0), err)
    if not np.isfinite(err) or err > TOL:
        failures.append((name, err, case))


# ----------------------------------------------------------------------------- references
def conv_patches(x, R, S, stride, pad, dil, P, Q, fill=0.0):
    """Yield (r, s, patch) with patch (N, C, P, Q) the input seen by filter tap (r, s)."""
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = stride, pad, dil
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    for r in range(R):
        for s in range(S):
            yield r, s, xp[:, :, r * dh: r * dh + (P - 1) * sh + 1: sh, s * dw: s * dw + (Q - 1) * sw + 1: sw]


def ref_conv(x, w, b, stride, pad, dil):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P = (H + pad[0] + pad[2] - dil[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + pad[1] + pad[3] - dil[1] * (S - 1) - 1) // stride[1] + 1
    y = np.zeros((N, K, P, Q))
    for r, s, patch in conv_patches(x.astype(np.float64), R, S, stride, pad, dil, P, Q):
        y += np.einsum("ncpq,kc->nkpq", patch, w[:, :, r, s].astype(np.float64))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def ref_conv_backward(x, w, dy, stride, pad, dil):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = dy.shape[2:]
    (sh, sw), (pt, pl, pb, pr), (dh, dwl) = stride, pad, dil
    dxp = np.zeros((N, C, H + pt + pb, W + pl + pr))
    dw = np.zeros(w.shape)
    dy64 = dy.astype(np.float64)
    for r, s, patch in conv_patches(x.astype(np.float64), R, S, stride, pad, dil, P, Q):
        dw[:, :, r, s] = np.einsum("nkpq,ncpq->kc", dy64, patch)
        dxp[:, :, r * dh: r * dh + (P - 1) * sh + 1: sh, s * dwl: s * dwl + (Q - 1) * sw + 1: sw] += \
            np.einsum("nkpq,kc->ncpq", dy64, w[:, :, r, s].astype(np.float64))
    return dxp[:, :, pt: pt + H, pl: pl + W], dw


def ref_pool(x, k, stride, pad, mode, count_include_pad=True):
    N, C, H, W = x.shape
    P = (H + pad[0] + pad[2] - k[0]) // stride[0] + 1
    Q = (W + pad[1] + pad[3] - k[1]) // stride[1] + 1
    fill = -np.inf if mode == "max" else 0.0
    x64 = x.astype(np.float64)
    patches = np.stack([p for _, _, p in conv_patches(x64, k[0], k[1], stride, pad, (1, 1), P, Q, fill)])
    if mode == "max":
        return patches.max(0), patches.argmax(0)   # argmax: first maximum, row-major in window
    ones = np.stack([p for _, _, p in conv_patches(np.ones_like(x64), k[0], k[1], stride, pad, (1, 1), P, Q)])
    div = k[0] * k[1] if count_include_pad else ones.sum(0)
    return patches.sum(0) / div, div


def ref_pool_backward(x, dy, k, stride, pad, mode, count_include_pad=True):
    N, C, H, W = x.shape
    P, Q = dy.shape[2:]
    (sh, sw), (pt, pl, pb, pr) = stride, pad
    dxp = np.zeros((N, C, H + pt + pb, W + pl + pr))
    _, aux = ref_pool(x, k, stride, pad, mode, count_include_pad)
    dy64 = dy.astype(np.float64)
    for a in range(k[0]):
        for b in range(k[1]):
            sl = (slice(None), slice(None), slice(a, a + (P - 1) * sh + 1, sh), slice(b, b + (Q - 1) * sw + 1, sw))
            if mode == "max":
                dxp[sl] += np.where(aux == a * k[1] + b, dy64, 0.0)
            else:
                dxp[sl] += dy64 / aux
    return dxp[:, :, pt: pt + H, pl: pl + W]


# ----------------------------------------------------------------------------- sweeps
def both_threads(fn):
    out = []
    for t in (1, 2):
        fastconv.set_num_threads(t)
        out.append(fn())
    a, b = out
    scale = max(np.abs(a).max(), 1e-30)
    if np.abs(a - b).max() / scale > 1e-6:
        failures.append(("threads 1 vs 2", float(np.abs(a - b).max() / scale), fn))
    return a


def check_conv(N, C, H, W, K, R, S, stride, pad, dil, act=0, bias=True, rng=np.random.default_rng(0)):
    case = dict(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, pad=pad, dil=dil, act=act)
    if H + pad[0] + pad[2] < dil[0] * (R - 1) + 1 or W + pad[1] + pad[3] < dil[1] * (S - 1) + 1:
        return
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    y = both_threads(lambda: _core.conv2d_forward(x, w, b, stride, pad, dil, act))
    ref = ref_conv(x, w, b, stride, pad, dil)
    ref = {0: ref, 1: np.maximum(ref, 0), 2: np.tanh(ref), 3: 1 / (1 + np.exp(-ref))}[act]
    record("conv2d_forward", y, ref, case)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = both_threads(lambda: _core.conv2d_backward_input(dy, w, x.shape, stride, pad, dil))
    dw = both_threads(lambda: _core.conv2d_backward_weight(dy, x, w.shape, stride, pad, dil))
    rdx, rdw = ref_conv_backward(x, w, dy, stride, pad, dil)
    record("conv2d_backward_input", dx, rdx, case)
    record("conv2d_backward_weight", dw, rdw, case)


def check_pool(N, C, H, W, k, stride, pad, count_include_pad=True, rng=np.random.default_rng(1)):
    case = dict(N=N, C=C, H=H, W=W, k=k, stride=stride, pad=pad)
    x = rng.integers(-3, 4, (N, C, H, W)).astype(np.float32)   # small integers: many ties
    for mode in ("max", "avg"):
        if mode == "max":
            y = both_threads(lambda: _core.max_pool2d_forward(x, k, stride, pad))
        else:
            y = both_threads(lambda: _core.avg_pool2d_forward(x, k, stride, pad, count_include_pad))
        ref, _ = ref_pool(x, k, stride, pad, mode, count_include_pad)
        record(f"{mode}_pool2d_forward", y, ref, case)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        if mode == "max":
            dx = both_threads(lambda: _core.max_pool2d_backward(dy, x, k, stride, pad))
        else:
            dx = both_threads(lambda: _core.avg_pool2d_backward(dy, x.shape, k, stride, pad, count_include_pad))
        record(f"{mode}_pool2d_backward", dx, ref_pool_backward(x, dy, k, stride, pad, mode, count_include_pad), case)


def main():
    quick = "--quick" in sys.argv
    # conv: the benchmark layers (small batches) ...
    for (C, K, H, W, R, S, p) in [(1, 6, 32, 32, 5, 5, 0), (6, 16, 14, 14, 5, 5, 0), (16, 120, 5, 5, 5, 5, 0),
                                  (1, 32, 28, 28, 3, 3, 1), (32, 32, 28, 28, 3, 3, 1), (32, 64, 14, 14, 3, 3, 1)]:
        for N in (1, 3, 17):
            check_conv(N, C, H, W, K, R, S, (1, 1), (p, p, p, p), (1, 1), act=N % 4)
    # ... and a grid of geometries
    strides = [(1, 1), (2, 2), (3, 3), (1, 2), (3, 1)]
    dils = [(1, 1), (2, 2), (1, 2)]
    pads = [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0), (2, 1, 1, 2)]
    geoms = [(1, 1, 9, 11, 4, 3, 3), (2, 3, 7, 6, 5, 3, 2), (3, 2, 10, 9, 2, 1, 1), (1, 4, 5, 5, 7, 5, 5),
             (2, 1, 13, 12, 8, 5, 5), (5, 16, 6, 7, 33, 2, 3)]
    combos = list(itertools.product(geoms, strides, dils, pads))
    if quick:
        combos = combos[::7]
    for (N, C, H, W, K, R, S), st, dl, pd in combos:
        check_conv(N, C, H, W, K, R, S, st, pd, dl, act=(H + K) % 4, bias=(W % 2 == 0))
    # large im2col matrices: backward weight builds them in column tiles
    for st, dl, pd in [((1, 1), (1, 1), (1, 1, 1, 1)), ((2, 1), (1, 2), (0, 2, 1, 0)), ((1, 3), (2, 1), (2, 0, 0, 1))]:
        check_conv(2, 24, 31, 29, 40, 3, 3, st, pd, dl, act=1)
        check_conv(1, 24, 31, 29, 8, 3, 3, st, pd, dl, act=0)
    # pooling: tiled fast path (stride == window, no pad) and the general path
    for (N, C, H, W) in [(1, 1, 28, 28), (2, 3, 7, 9), (3, 2, 6, 5), (64, 4, 14, 14), (1, 1, 1, 1), (2, 2, 2, 3)]:
        for k in [(2, 2), (3, 3), (1, 1), (2, 3), (3, 2)]:
            if k[0] > H or k[1] > W:
                continue
            check_pool(N, C, H, W, k, k, (0, 0, 0, 0))
            if min(H, W) >= 3:
                check_pool(N, C, H, W, k, (1, 2), (k[0] // 2, 0, k[0] // 2, k[1] // 2), count_include_pad=(W % 2 == 0))
    # max pooling with NaN and -inf
    x = np.array([[[[1, np.nan, 2, 3], [0, 0, -np.inf, -np.inf], [5, 5, 5, 5], [1, 2, np.nan, np.nan]]]], np.float32)
    y = _core.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 3 and y[0, 0, 1, 0] == 5 and np.isnan(y[0, 0, 1, 1]), y
    dx = _core.max_pool2d_backward(np.ones_like(y), x, (2, 2), (2, 2), (0, 0, 0, 0))
    assert dx.sum() == 4 and dx[0, 0, 0, 1] == 1 and dx[0, 0, 0, 3] == 1 and dx[0, 0, 2, 0] == 1 and dx[0, 0, 3, 2] == 1, dx

    fastconv.set_num_threads(2)
    for name, err in sorted(worst.items()):
        print(f"{name:26s} worst normalised error {err:.2e}")
    for f in failures[:20]:
        print("FAIL", f)
    print("FAILED" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
