"""Independent float64 NumPy references for fastconv's functional contract.

Written for the tests only, as the plainest loops that stay fast enough: every function
loops over output positions (and, where it is clearer, kernel taps) and lets NumPy
vectorise over batch and channels. Nothing here is shared with the library: no im2col, no
GEMM tricks, no code from fastconv/. The backward functions are written as the adjoint
loops of the forward ones (each output position scatters its gradient back into the
window it read), and the test suite checks them against central finite differences.

Layouts follow DESIGN.md: images (N, C, H, W), filters (K, C, R, S), float64 throughout.
"""
from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------
# Argument resolution (DESIGN.md's rules, written independently of fastconv.functional)
# --------------------------------------------------------------------------------------


def pair(v):
    """Return an int-or-pair argument as an (h, w) tuple of ints."""
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return int(v[0]), int(v[1])
    return int(v), int(v)


def same_padding_1d(n, k, s, d=1):
    """TensorFlow "same" padding of one dimension: (before, after).

    out = ceil(n / s); total = max((out - 1) * s + d(k - 1) + 1 - n, 0); the smaller half
    goes before (top/left), the extra pixel after (bottom/right).
    """
    out = -(-n // s)
    effective_k = d * (k - 1) + 1
    total = max((out - 1) * s + effective_k - n, 0)
    before = total // 2
    return before, total - before


def resolve_padding(padding, in_hw, kernel_hw, stride_hw, dilation_hw=(1, 1)):
    """Resolve any padding form to explicit (top, left, bottom, right)."""
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            return 0, 0, 0, 0
        if word == "same":
            top, bottom = same_padding_1d(in_hw[0], kernel_hw[0], stride_hw[0], dilation_hw[0])
            left, right = same_padding_1d(in_hw[1], kernel_hw[1], stride_hw[1], dilation_hw[1])
            return top, left, bottom, right
        raise ValueError(f"unknown padding word {padding!r}")
    ph, pw = pair(padding)
    return ph, pw, ph, pw


def out_size(n, k, s, pad_before, pad_after, d=1):
    """floor((n + pads - d(k - 1) - 1) / s) + 1 (the caller checks it is at least 1)."""
    return (n + pad_before + pad_after - d * (k - 1) - 1) // s + 1


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """Output shape (N, K, P, Q) of conv2d for the given shapes and arguments."""
    n, _, h, w = x_shape
    k, _, r, s = w_shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    top, left, bottom, right = resolve_padding(padding, (h, w), (r, s), (sh, sw), (dh, dw))
    return (n, k, out_size(h, r, sh, top, bottom, dh), out_size(w, s, sw, left, right, dw))


def pool2d_output_shape(x_shape, kernel_size, stride=None, padding=0):
    """Output shape (N, C, P, Q) of a pooling for the given shapes and arguments."""
    n, c, h, w = x_shape
    kh, kw = pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    top, left, bottom, right = resolve_padding(padding, (h, w), (kh, kw), (sh, sw))
    return (n, c, out_size(h, kh, sh, top, bottom), out_size(w, kw, sw, left, right))


def _pad(x, top, left, bottom, right, value=0.0):
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=np.float64)
    out[:, :, top:top + h, left:left + w] = x
    return out


# --------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    _, _, h, w = x_shape
    _, _, r, s = w_shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pads = resolve_padding(padding, (h, w), (r, s), (sh, sw), (dh, dw))
    top, left, bottom, right = pads
    p = out_size(h, r, sh, top, bottom, dh)
    q = out_size(w, s, sw, left, right, dw)
    assert p >= 1 and q >= 1, "kernel larger than the padded input"
    return (sh, sw), (dh, dw), pads, p, q


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """y (N, K, P, Q) = sum over the window of x (N, C, H, W) times w (K, C, R, S), plus b."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (dh, dw), pads, p_out, q_out = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    _, _, r, s = w.shape
    xp = _pad(x, *pads)                                     # (N, C, Hp, Wp)
    y = np.zeros((x.shape[0], w.shape[0], p_out, q_out))
    for p in range(p_out):
        for q in range(q_out):
            h0, w0 = p * sh, q * sw
            # window (N, C, R, S): the cells this output position reads
            window = xp[:, :, h0:h0 + dh * (r - 1) + 1:dh, w0:w0 + dw * (s - 1) + 1:dw]
            y[:, :, p, q] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward_input(dy, w, x_shape, stride=1, padding=0, dilation=1):
    """dx (N, C, H, W): every output position scatters dy times w back into its window."""
    dy = np.asarray(dy, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (dh, dw), pads, p_out, q_out = _conv_geometry(x_shape, w.shape, stride, padding, dilation)
    top, left, bottom, right = pads
    n, c, h, wd = x_shape
    _, _, r, s = w.shape
    dxp = np.zeros((n, c, h + top + bottom, wd + left + right))
    for p in range(p_out):
        for q in range(q_out):
            h0, w0 = p * sh, q * sw
            # contribution (N, C, R, S) = sum over K of dy[:, k, p, q] * w[k]
            contribution = np.tensordot(dy[:, :, p, q], w, axes=([1], [0]))
            dxp[:, :, h0:h0 + dh * (r - 1) + 1:dh, w0:w0 + dw * (s - 1) + 1:dw] += contribution
    return dxp[:, :, top:top + h, left:left + wd]


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1):
    """dw (K, C, R, S) = sum over batch and output positions of dy times the window read."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    (sh, sw), (dh, dw), pads, p_out, q_out = _conv_geometry(x.shape, w_shape, stride, padding, dilation)
    _, _, r, s = w_shape
    xp = _pad(x, *pads)
    dwt = np.zeros(tuple(w_shape))
    for p in range(p_out):
        for q in range(q_out):
            h0, w0 = p * sh, q * sw
            window = xp[:, :, h0:h0 + dh * (r - 1) + 1:dh, w0:w0 + dw * (s - 1) + 1:dw]
            dwt += np.tensordot(dy[:, :, p, q], window, axes=([0], [0]))
    return dwt


def conv2d_backward_bias(dy):
    """db (K,) = dy (N, K, P, Q) summed over N, P, Q."""
    return np.asarray(dy, np.float64).sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------


def _pool_geometry(x_shape, kernel_size, stride, padding):
    _, _, h, w = x_shape
    kh, kw = pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    pads = resolve_padding(padding, (h, w), (kh, kw), (sh, sw))
    top, left, bottom, right = pads
    p = out_size(h, kh, sh, top, bottom)
    q = out_size(w, kw, sw, left, right)
    assert p >= 1 and q >= 1
    return (kh, kw), (sh, sw), pads, p, q


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window; padded cells are -inf, so a padded cell is never picked."""
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw), pads, p_out, q_out = _pool_geometry(x.shape, kernel_size, stride, padding)
    xp = _pad(x, *pads, value=-np.inf)
    y = np.empty(x.shape[:2] + (p_out, q_out))
    for p in range(p_out):
        for q in range(q_out):
            window = xp[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw]
            y[:, :, p, q] = window.max(axis=(2, 3))
    return y


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """dx: each dy goes to the first maximum of its window in row-major window order."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw), pads, p_out, q_out = _pool_geometry(x.shape, kernel_size, stride, padding)
    top, left, bottom, right = pads
    n, c, h, w = x.shape
    xp = _pad(x, *pads, value=-np.inf)
    dxp = np.zeros_like(xp)
    batch_index, channel_index = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for p in range(p_out):
        for q in range(q_out):
            h0, w0 = p * sh, q * sw
            window = xp[:, :, h0:h0 + kh, w0:w0 + kw].reshape(n, c, kh * kw)
            first_max = window.argmax(axis=2)                 # (N, C), first in row-major order
            dxp[batch_index, channel_index, h0 + first_max // kw, w0 + first_max % kw] += dy[:, :, p, q]
    return dxp[:, :, top:top + h, left:left + w]


def _avg_divisors(x_shape, kernel_size, stride, padding, count_include_pad):
    """Divisor (P, Q) of each window: kh*kw, or the number of real cells it covers."""
    (kh, kw), (sh, sw), pads, p_out, q_out = _pool_geometry(x_shape, kernel_size, stride, padding)
    real = _pad(np.ones((1, 1) + tuple(x_shape[2:])), *pads)[0, 0]
    div = np.empty((p_out, q_out))
    for p in range(p_out):
        for q in range(q_out):
            cells = real[p * sh:p * sh + kh, q * sw:q * sw + kw].sum()
            div[p, q] = kh * kw if count_include_pad else cells
    return div


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean of each window: divided by kh*kw (count_include_pad) or by its real cells."""
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw), pads, p_out, q_out = _pool_geometry(x.shape, kernel_size, stride, padding)
    div = _avg_divisors(x.shape, kernel_size, stride, padding, count_include_pad)
    xp = _pad(x, *pads)
    y = np.empty(x.shape[:2] + (p_out, q_out))
    for p in range(p_out):
        for q in range(q_out):
            window = xp[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw]
            y[:, :, p, q] = window.sum(axis=(2, 3)) / div[p, q]
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    """dx: each dy / divisor is spread over every cell of its window."""
    dy = np.asarray(dy, np.float64)
    (kh, kw), (sh, sw), pads, p_out, q_out = _pool_geometry(x_shape, kernel_size, stride, padding)
    top, left, bottom, right = pads
    n, c, h, w = x_shape
    div = _avg_divisors(x_shape, kernel_size, stride, padding, count_include_pad)
    dxp = np.zeros((n, c, h + top + bottom, w + left + right))
    for p in range(p_out):
        for q in range(q_out):
            dxp[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += (dy[:, :, p, q] / div[p, q])[:, :, None, None]
    return dxp[:, :, top:top + h, left:left + w]


# --------------------------------------------------------------------------------------
# activations (backward takes the forward OUTPUT y)
# --------------------------------------------------------------------------------------


def relu(x):
    """max(x, 0); NaN stays NaN (np.maximum propagates it)."""
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_backward(dy, y):
    """0 where y <= 0, else dy: PyTorch's threshold_backward, so y = NaN passes dy through
    and a NaN in dy survives wherever y > 0."""
    return np.where(np.asarray(y, np.float64) <= 0, 0.0, np.asarray(dy, np.float64))


def tanh(x):
    return np.tanh(np.asarray(x, np.float64))


def tanh_backward(dy, y):
    y = np.asarray(y, np.float64)
    return np.asarray(dy, np.float64) * (1.0 - y * y)


def sigmoid(x):
    # 1 / (1 + e^-x) written through tanh: no overflow for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def sigmoid_backward(dy, y):
    y = np.asarray(y, np.float64)
    return np.asarray(dy, np.float64) * y * (1.0 - y)


def leaky_relu(x, negative_slope):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward_from_input(dy, x, negative_slope):
    """dy * (1 where x > 0, negative_slope elsewhere), from the forward INPUT x."""
    x = np.asarray(x, np.float64)
    return np.asarray(dy, np.float64) * np.where(x > 0, 1.0, negative_slope)


def elu(x, alpha):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward_from_input(dy, x, alpha):
    """dy * (1 where x > 0, alpha e^x elsewhere), from the forward INPUT x."""
    x = np.asarray(x, np.float64)
    return np.asarray(dy, np.float64) * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2, element by element with math.erfc."""
    x = np.asarray(x, np.float64)
    return 0.5 * _erfc(-x / math.sqrt(2.0)).astype(np.float64)


def gelu(x):
    x = np.asarray(x, np.float64)
    return x * normal_cdf(x)


def gelu_backward(dy, x):
    """dy * (Phi(x) + x phi(x)), phi the standard normal density."""
    x = np.asarray(x, np.float64)
    density = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return np.asarray(dy, np.float64) * (normal_cdf(x) + x * density)


def gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_tanh_backward(dy, x):
    x = np.asarray(x, np.float64)
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    du = math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * x * x)
    t = np.tanh(u)
    return np.asarray(dy, np.float64) * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


# --------------------------------------------------------------------------------------
# softmax, cross-entropy, linear
# --------------------------------------------------------------------------------------


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """(mean over rows of -log softmax(logits)[label], dlogits = (softmax - onehot) / N)."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    n, c = logits.shape
    loss = 0.0
    dlogits = np.empty_like(logits)
    for i in range(n):
        row = logits[i]
        m = row.max()
        log_sum = m + math.log(np.exp(row - m).sum())
        loss += log_sum - row[labels[i]]
        dlogits[i] = np.exp(row - log_sum)
        dlogits[i, labels[i]] -= 1.0
    return loss / n, dlogits / n


def linear(x, w, b=None):
    """y (N, O) = x (N, I) w^T, w (O, I), plus b (O,)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    y = np.einsum("ni,oi->no", x, w)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return y


def linear_backward(dy, x, w):
    """(dx = dy w, dw = dy^T x, db = sum of dy over the batch)."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    return np.einsum("no,oi->ni", dy, w), np.einsum("no,ni->oi", dy, x), dy.sum(axis=0)


def matmul(a, b):
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64)


# --------------------------------------------------------------------------------------
# conv2d_transpose: a scatter of every input pixel through the filter
# --------------------------------------------------------------------------------------


def conv2d_transpose_geometry(n, k, s, padding, output_padding, d):
    """(output length, pixels cut from the top/left) of one axis. Words follow Keras's
    deconv_output_length and TensorFlow's "same" rule applied to the OUTPUT length; an int
    padding p follows PyTorch (output_padding None meaning 0)."""
    keff = d * (k - 1) + 1
    if isinstance(padding, str):
        if output_padding is None:
            out = n * s + max(keff - s, 0) if padding == "valid" else n * s
        else:
            pad = keff // 2 if padding == "same" else 0
            out = (n - 1) * s + keff - 2 * pad + output_padding
        if padding == "valid":
            return out, 0
        total = max((-(-out // s) - 1) * s + keff - out, 0)
        return out, total // 2
    return (n - 1) * s - 2 * padding + keff + (output_padding or 0), padding


def _transpose_args(x_shape, w_shape, stride, padding, output_padding, dilation):
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    ph, pw = (padding, padding) if isinstance(padding, str) else pair(padding)
    oh, ow = (None, None) if output_padding is None else pair(output_padding)
    ho, top = conv2d_transpose_geometry(x_shape[2], w_shape[2], sh, ph, oh, dh)
    wo, left = conv2d_transpose_geometry(x_shape[3], w_shape[3], sw, pw, ow, dw)
    return (sh, sw), (dh, dw), (top, left), (ho, wo)


def conv2d_transpose(x, w, b=None, stride=1, padding=0, output_padding=None, dilation=1):
    """y (N, Cout, Ho, Wo): every x[n, :, p, q] times w (Cin, Cout, R, S) added at
    (p*s - top + r*d, q*s - left + c*d) where that lies inside the output."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (dh, dw), (top, left), (ho, wo) = _transpose_args(x.shape, w.shape, stride, padding,
                                                                output_padding, dilation)
    n, _, h, wd = x.shape
    y = np.zeros((n, w.shape[1], ho, wo))
    for p in range(h):
        for q in range(wd):
            for r in range(w.shape[2]):
                for c in range(w.shape[3]):
                    oh, ow = p * sh - top + r * dh, q * sw - left + c * dw
                    if 0 <= oh < ho and 0 <= ow < wo:
                        y[:, :, oh, ow] += x[:, :, p, q] @ w[:, :, r, c]
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_transpose_backward(dy, x, w, stride=1, padding=0, output_padding=None, dilation=1):
    """(dx, dw) of conv2d_transpose: the adjoint of the scatter above, loop for loop."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (dh, dw_), (top, left), (ho, wo) = _transpose_args(x.shape, w.shape, stride, padding,
                                                                 output_padding, dilation)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for p in range(x.shape[2]):
        for q in range(x.shape[3]):
            for r in range(w.shape[2]):
                for c in range(w.shape[3]):
                    oh, ow = p * sh - top + r * dh, q * sw - left + c * dw_
                    if 0 <= oh < ho and 0 <= ow < wo:
                        dx[:, :, p, q] += dy[:, :, oh, ow] @ w[:, :, r, c].T
                        dw[:, :, r, c] += x[:, :, p, q].T @ dy[:, :, oh, ow]
    return dx, dw


# --------------------------------------------------------------------------------------
# upsampling
# --------------------------------------------------------------------------------------


def upsample_taps(n_in, n_out, align_corners):
    """[(i0, i1, weight of i1)] for each output index of one axis (float64)."""
    taps = []
    for o in range(n_out):
        if align_corners:
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        taps.append((i0, i1, src - i0))
    return taps


def upsample2d(x, scale, mode="nearest", align_corners=False):
    x = np.asarray(x, np.float64)
    sh, sw = pair(scale)
    n, c, h, w = x.shape
    y = np.zeros((n, c, h * sh, w * sw))
    if mode == "nearest":
        for i in range(h * sh):
            for j in range(w * sw):
                y[:, :, i, j] = x[:, :, i // sh, j // sw]
        return y
    rows, cols = upsample_taps(h, h * sh, align_corners), upsample_taps(w, w * sw, align_corners)
    for i, (a0, a1, la) in enumerate(rows):
        for j, (b0, b1, lb) in enumerate(cols):
            y[:, :, i, j] = ((1 - la) * (1 - lb) * x[:, :, a0, b0] + (1 - la) * lb * x[:, :, a0, b1]
                             + la * (1 - lb) * x[:, :, a1, b0] + la * lb * x[:, :, a1, b1])
    return y


def upsample2d_backward(dy, x_shape, scale, mode="nearest", align_corners=False):
    dy = np.asarray(dy, np.float64)
    sh, sw = pair(scale)
    n, c, h, w = x_shape
    dx = np.zeros(x_shape)
    if mode == "nearest":
        for i in range(h * sh):
            for j in range(w * sw):
                dx[:, :, i // sh, j // sw] += dy[:, :, i, j]
        return dx
    rows, cols = upsample_taps(h, h * sh, align_corners), upsample_taps(w, w * sw, align_corners)
    for i, (a0, a1, la) in enumerate(rows):
        for j, (b0, b1, lb) in enumerate(cols):
            g = dy[:, :, i, j]
            dx[:, :, a0, b0] += (1 - la) * (1 - lb) * g
            dx[:, :, a0, b1] += (1 - la) * lb * g
            dx[:, :, a1, b0] += la * (1 - lb) * g
            dx[:, :, a1, b1] += la * lb * g
    return dx


# --------------------------------------------------------------------------------------
# batch normalisation (statistics per axis 1, over every other axis)
# --------------------------------------------------------------------------------------


def batch_norm_training(x, gamma=None, beta=None, eps=1e-3):
    """(y, mean, biased var) with the batch's statistics."""
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    moved = np.moveaxis(x, 1, 0).reshape(c, -1)            # (C, M)
    mean = np.array([row.sum() / len(row) for row in moved])
    var = np.array([((row - m) ** 2).sum() / len(row) for row, m in zip(moved, mean)])
    shape = (1, c) + (1,) * (x.ndim - 2)
    g = np.ones(c) if gamma is None else np.asarray(gamma, np.float64)
    b = np.zeros(c) if beta is None else np.asarray(beta, np.float64)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * g.reshape(shape) + b.reshape(shape)
    return y, mean, var


# --------------------------------------------------------------------------------------
# binary cross-entropy from logits, mean squared error
# --------------------------------------------------------------------------------------


def binary_cross_entropy_with_logits(logits, targets, weights=None):
    """(mean loss, dlogits) written from the sigmoid's definition, element by element."""
    z = np.asarray(logits, np.float64).reshape(len(logits), -1)
    t = np.asarray(targets, np.float64).reshape(z.shape)
    w = np.ones(z.shape[0]) if weights is None else np.asarray(weights, np.float64)
    total, d = 0.0, np.zeros_like(z)
    for n in range(z.shape[0]):
        for j in range(z.shape[1]):
            zz, tt = z[n, j], t[n, j]
            # -t log s - (1 - t) log(1 - s) with log s = -log(1 + e^-z), log(1 - s) = -z - log(1 + e^-z)
            log1pexp = math.log1p(math.exp(-abs(zz))) + max(-zz, 0.0)    # log(1 + e^-z)
            total += w[n] * (tt * log1pexp + (1 - tt) * (zz + log1pexp))
            d[n, j] = w[n] * (1 / (1 + math.exp(-zz)) - tt) if zz > -700 else -w[n] * tt
    return total / z.size, (d / z.size).reshape(np.shape(logits))


# --------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------


def counter_uniform01(seed, step, i):
    """Dropout's counter-based number for element i: the top 24 bits of SplitMix64's finaliser
    over seed + step * c1 + (i + 1) * c2 (mod 2^64), over 2^24. Python integers, one at a time."""
    mod = 1 << 64
    z = (seed + step * 0xD1B54A32D192ED03 + (i + 1) * 0x9E3779B97F4A7C15) % mod
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % mod
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % mod
    z ^= z >> 31
    return (z >> 40) / 2.0 ** 24


def dropout_mask(n, rate, seed, step=0):
    """The inverted-dropout mask (n,) of (seed, step): 1 / (1 - rate) where u >= rate, else 0
    (rate compared as the float32 the kernels get)."""
    rate32 = float(np.float32(rate))
    keep = np.array([counter_uniform01(seed, step, i) >= rate32 for i in range(n)])
    return np.where(keep, 1.0 / (1.0 - rate32), 0.0)


def rel_error(got, want):
    """max|got - want| / max(max|want|, 1): the suite's one error measure."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != expected {want.shape}"
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1.0))


def assert_close(got, want, tol=1e-5, what=""):
    """Assert rel_error(got, want) < tol with a message that says where it is worst."""
    err = rel_error(got, want)
    if not err < tol:
        got64 = np.asarray(got, np.float64)
        want64 = np.asarray(want, np.float64)
        worst = np.unravel_index(np.argmax(np.abs(got64 - want64)), want64.shape)
        raise AssertionError(
            f"{what}: relative error {err:.3g} >= {tol:g}; worst at {worst}: "
            f"got {got64[worst]!r}, expected {want64[worst]!r}")


def numerical_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x (float64, any shape)."""
    x = np.array(x, np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f(x)
        flat[i] = saved - eps
        minus = f(x)
        flat[i] = saved
        gflat[i] = (plus - minus) / (2 * eps)
    return grad
