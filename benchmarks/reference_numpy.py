"""The NumPy baseline of the benchmark suite: what a user would otherwise write.

Every op fastconv benchmarks, written the way a careful NumPy programmer writes it: float32
throughout, no Python loop over the batch or over pixels, one big BLAS call where there is a
GEMM to be had. This is the fair baseline ("how much faster than good NumPy?"), not the test
reference: the tests use float64 naive loops (tests/reference.py) as their truth.

Convolution is im2col + one GEMM:

    x (N, C, H, W) --pad--> xp (N, C, H+pt+pb, W+pl+pr)
    windows = sliding_window_view(xp, (R, S), axis=(2, 3))[:, :, ::sh, ::sw]
                                    # (N, C, P, Q, R, S), a view: no copy yet
    y = tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))
                                    # tensordot copies the windows into the (N*P*Q, C*R*S)
                                    # im2col matrix and makes one sgemm call -> (N, P, Q, K)

Backward input is the transpose: one GEMM dy x w gives the column gradient
(N, P, Q, C, R, S), and col2im adds it back into the padded image with a loop over the R*S
kernel taps (each tap is one strided, vectorised add; no np.add.at needed because, for a fixed
tap, distinct output pixels land on distinct input pixels). Backward weight is one GEMM of dy
against the same windows.

Pooling with the window equal to the stride (the benchmark's 2x2/2 case, LeNet and VGG) uses the
reshape trick: (N, C, H, W) -> (N, C, P, kh, Q, kw) and a reduction over the two window axes.
Overlapping windows fall back to sliding_window_view (forward) and np.add.at (backward).

All functions take and return float32 NCHW arrays with the same argument conventions as
fastconv.functional, but with padding always an explicit (top, left, bottom, right) tuple.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "relu",
    "relu_backward",
    "tanh",
    "tanh_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax_cross_entropy",
]


def _pad(x, pad):
    """x (N, C, H, W) zero-padded by pad = (top, left, bottom, right); x itself when pad is 0."""
    top, left, bottom, right = pad
    if top == left == bottom == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(xp, kernel_hw, stride):
    """Every (R, S) window of the padded image xp (N, C, Hp, Wp) -> view (N, C, P, Q, R, S)."""
    sh, sw = stride
    return sliding_window_view(xp, kernel_hw, axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0)):
    """Forward convolution by im2col + one GEMM: x (N, C, H, W), w (K, C, R, S) -> (N, K, P, Q)."""
    windows = _windows(_pad(x, pad), w.shape[2:], stride)  # (N, C, P, Q, R, S)
    y = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, P, Q, K)
    if b is not None:
        y += b
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # (N, K, P, Q)


def conv2d_backward_input(dy, w, x_shape, stride=(1, 1), pad=(0, 0, 0, 0)):
    """dx (x_shape) from dy (N, K, P, Q) and w (K, C, R, S): one GEMM, then col2im by kernel tap."""
    n, c, h, wd = x_shape
    _, _, r, s = w.shape
    _, _, p, q = dy.shape
    sh, sw = stride
    top, left, bottom, right = pad
    cols = np.tensordot(dy, w, axes=([1], [0]))  # (N, P, Q, C, R, S)
    cols = cols.transpose(0, 3, 4, 5, 1, 2)  # (N, C, R, S, P, Q), a view
    dxp = np.zeros((n, c, h + top + bottom, wd + left + right), dtype=np.float32)
    for i in range(r):
        for j in range(s):
            # tap (i, j) of output pixel (pp, qq) reads input pixel (pp*sh + i, qq*sw + j)
            dxp[:, :, i : i + sh * (p - 1) + 1 : sh, j : j + sw * (q - 1) + 1 : sw] += cols[:, :, i, j]
    return dxp[:, :, top : top + h, left : left + wd]


def conv2d_backward_weight(dy, x, w_shape, stride=(1, 1), pad=(0, 0, 0, 0)):
    """dw (w_shape) from dy (N, K, P, Q) and x (N, C, H, W): one GEMM against the im2col windows."""
    windows = _windows(_pad(x, pad), w_shape[2:], stride)  # (N, C, P, Q, R, S)
    return np.tensordot(dy, windows, axes=([0, 2, 3], [0, 2, 3]))  # (K, C, R, S)


def conv2d_backward_bias(dy):
    """db (K,) from dy (N, K, P, Q)."""
    return dy.sum(axis=(0, 2, 3))


def _pool_out(n, k, s):
    return (n - k) // s + 1


def _is_tiling(x_shape, kernel, stride):
    """True when the windows tile the image exactly (stride == window, no remainder)."""
    return tuple(kernel) == tuple(stride) and x_shape[2] % kernel[0] == 0 and x_shape[3] % kernel[1] == 0


def _tiles(x, kernel):
    """x (N, C, H, W) with H, W multiples of the window -> view (N, C, P, kh, Q, kw)."""
    n, c, h, w = x.shape
    kh, kw = kernel
    return x.reshape(n, c, h // kh, kh, w // kw, kw)


def max_pool2d(x, kernel=(2, 2), stride=None):
    """Max over each window of x (N, C, H, W) (no padding) -> (N, C, P, Q)."""
    stride = tuple(kernel) if stride is None else tuple(stride)
    if _is_tiling(x.shape, kernel, stride):
        return _tiles(x, kernel).max(axis=(3, 5))
    return _windows(x, kernel, stride).max(axis=(4, 5))


def max_pool2d_backward(dy, x, kernel=(2, 2), stride=None):
    """Each dy (N, C, P, Q) goes to the first maximum of its window in x (N, C, H, W)."""
    stride = tuple(kernel) if stride is None else tuple(stride)
    kh, kw = kernel
    n, c, h, w = x.shape
    _, _, p, q = dy.shape
    if _is_tiling(x.shape, kernel, stride):
        tiles = _tiles(x, kernel).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, p, q, kh * kw)
        first_max = tiles.argmax(axis=-1)  # (N, C, P, Q), first maximum like fastconv
        mask = np.arange(kh * kw, dtype=first_max.dtype) == first_max[..., None]  # (N, C, P, Q, kh*kw)
        dtiles = mask * dy[..., None]  # (N, C, P, Q, kh*kw) float32
        dx = dtiles.reshape(n, c, p, q, kh, kw).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
        return dx.astype(np.float32, copy=False)
    windows = _windows(x, kernel, stride).reshape(n, c, p, q, kh * kw)
    first_max = windows.argmax(axis=-1)
    rows = np.arange(p)[:, None] * stride[0] + first_max // kw  # (N, C, P, Q)
    cols = np.arange(q)[None, :] * stride[1] + first_max % kw
    dx = np.zeros(x.shape, dtype=np.float32)
    ni, ci = np.indices((n, c))
    np.add.at(dx, (ni[..., None, None], ci[..., None, None], rows, cols), dy)
    return dx


def avg_pool2d(x, kernel=(2, 2), stride=None):
    """Mean over each window of x (N, C, H, W) (no padding) -> (N, C, P, Q)."""
    stride = tuple(kernel) if stride is None else tuple(stride)
    if _is_tiling(x.shape, kernel, stride):
        return _tiles(x, kernel).mean(axis=(3, 5), dtype=np.float32)
    return _windows(x, kernel, stride).mean(axis=(4, 5), dtype=np.float32)


def avg_pool2d_backward(dy, x_shape, kernel=(2, 2), stride=None):
    """dx (x_shape): each dy (N, C, P, Q) spread evenly over its window."""
    stride = tuple(kernel) if stride is None else tuple(stride)
    kh, kw = kernel
    scaled = dy * np.float32(1.0 / (kh * kw))
    if _is_tiling(x_shape, kernel, stride):
        return np.repeat(np.repeat(scaled, kh, axis=2), kw, axis=3)
    n, c, _, _ = x_shape
    _, _, p, q = dy.shape
    dx = np.zeros(x_shape, dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i : i + stride[0] * (p - 1) + 1 : stride[0], j : j + stride[1] * (q - 1) + 1 : stride[1]] += scaled
    return dx


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, np.float32(0))


def relu_backward(dy, y):
    """dy * (y > 0), y the forward output."""
    return np.where(y > 0, dy, np.float32(0))


def tanh(x):
    """tanh(x)."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """dy * (1 - y^2), y the forward output."""
    return dy * (np.float32(1) - y * y)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return np.float32(1) / (np.float32(1) + np.exp(-x))


def sigmoid_backward(dy, y):
    """dy * y * (1 - y), y the forward output."""
    return dy * y * (np.float32(1) - y)


def softmax_cross_entropy(logits, labels):
    """(mean loss, dlogits) for logits (N, C) float32 and integer labels (N,)."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, labels]))
    dlogits = exp / total
    dlogits[rows, labels] -= np.float32(1)
    dlogits *= np.float32(1.0 / n)
    return loss, dlogits
