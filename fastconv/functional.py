"""fastconv.functional: the stateless ops every layer is built on.

Arrays in, arrays out: NumPy arrays (computed by the C++ CPU kernels) or fastconv CUDA tensors
(computed on the GPU, see :mod:`fastconv.cuda`). Images are NCHW, filters OIHW, results float32;
float64, integer or non-contiguous NumPy input is converted, not refused.

``kernel_size``, ``stride``, ``padding`` and ``dilation`` take an int or an ``(h, w)`` pair;
``padding`` also takes ``"valid"`` (no padding) or ``"same"``. ``"same"`` follows TensorFlow's
rule for any stride (PyTorch refuses ``padding="same"`` with a stride above 1; fastconv does
not): ``out = ceil(n / stride)``, ``total = max((out - 1) * stride + d * (k - 1) + 1 - n, 0)``,
the smaller half before (top/left) and the extra pixel after (bottom/right). Otherwise
``out = floor((n + 2 * p - d * (k - 1) - 1) / stride) + 1``.

Bad input raises ``ValueError`` or ``TypeError`` whose message names the argument and shapes.
"""
import numbers
import operator

import numpy as np

from . import _core

__all__ = [
    "conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
    "max_pool2d", "max_pool2d_backward", "max_pool2d_with_indices", "max_pool2d_backward_indices",
    "avg_pool2d", "avg_pool2d_backward",
    "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward",
    "softmax", "softmax_cross_entropy", "linear", "linear_backward", "matmul",
    "conv_output_size", "resolve_padding",
]

# Activation codes shared with the C++ and CUDA kernels (csrc/ops.h, enum Activation).
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3}


# ----------------------------------------------------------------------------- dispatch
def _is_device_tensor(x):
    return type(x).__module__.startswith("fastconv._cuda")


def _backend(x):
    """The extension module that computes on ``x``: fastconv._core for NumPy arrays, the CUDA
    extension for fastconv CUDA tensors. Its functions take resolved arguments."""
    if _is_device_tensor(x):
        from . import cuda

        return cuda._require_module()
    return _core


def _array(op, name, x):
    """``x`` as a float32 C-contiguous NumPy array (or the device tensor itself)."""
    if _is_device_tensor(x):
        if getattr(x, "dtype", "float32") not in ("float32", np.float32):
            raise TypeError(f"{op}: {name} must be a float32 tensor, got dtype {x.dtype}")
        return x
    a = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{op}: {name} must be a real numeric array, got dtype {a.dtype}")
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=np.float32)
    return a


def _same_device(op, ref, name, other):
    if _is_device_tensor(ref) != _is_device_tensor(other):
        where = lambda t: "a CUDA tensor" if _is_device_tensor(t) else "a NumPy array"
        raise TypeError(f"{op}: {name} is {where(other)} but the input is {where(ref)}; "
                        "move both to the same device")


def _check_rank(op, name, a, ndim, layout):
    if len(a.shape) != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {tuple(a.shape)}")


# ----------------------------------------------------------------------------- arguments
def _int(op, name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        try:
            if isinstance(v, (bool, np.bool_)):
                raise TypeError
            return operator.index(v)
        except TypeError:
            raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    return int(v)


# The largest size, stride, dilation or padding any op takes (csrc/common/shapes.h checks the
# same): every tensor stays below 2^31 elements, so no index anywhere can wrap.
_MAX_SIZE = 2**31 - 1


def _pair(op, name, v, minimum=1):
    """An int or an (h, w) pair -> a tuple of two ints, each in [minimum, _MAX_SIZE]."""
    if isinstance(v, (tuple, list, np.ndarray)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or an (h, w) pair, got {v!r}")
        p = (_int(op, name, v[0]), _int(op, name, v[1]))
    else:
        i = _int(op, name, v)
        p = (i, i)
    if p[0] < minimum or p[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    if p[0] > _MAX_SIZE or p[1] > _MAX_SIZE:
        raise ValueError(f"{op}: {name} must be at most 2^31-1 = {_MAX_SIZE}, got {v!r}")
    return p


def conv_output_size(n, k, stride=1, pad_before=0, pad_after=0, dilation=1):
    """Output length of one spatial dimension: floor((n + pads - d(k-1) - 1) / s) + 1."""
    return (n + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def resolve_padding(padding, in_hw, kernel_hw, stride_hw=(1, 1), dilation_hw=(1, 1), op="conv2d"):
    """Explicit (top, left, bottom, right) padding from any padding form.

    ``padding`` is an int, an (h, w) pair, ``"valid"`` or ``"same"`` (TensorFlow's rule for any
    stride: the extra pixel goes bottom/right). ``in_hw``, ``kernel_hw``, ``stride_hw`` and
    ``dilation_hw`` are (h, w) pairs.
    """
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            return (0, 0, 0, 0)
        if word == "same":
            pads = []
            for n, k, s, d in zip(in_hw, kernel_hw, stride_hw, dilation_hw):
                out = -(-n // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
        raise ValueError(f"{op}: padding must be an int, an (h, w) pair, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(op, "padding", padding, minimum=0)
    return (ph, pw, ph, pw)


_resolve_padding = resolve_padding


def _shape4(op, name, s, layout="(N, C, H, W)"):
    if not isinstance(s, (tuple, list)) or len(s) != 4:
        raise ValueError(f"{op}: {name} must be a 4-tuple {layout}, got {s!r}")
    dims = tuple(_int(op, name, d) for d in s)
    if any(d < 0 or d > _MAX_SIZE for d in dims):
        raise ValueError(f"{op}: {name} must hold sizes from 0 to 2^31-1, got {s!r}")
    return dims


def _conv_geometry(op, x_shape, w_shape, stride, padding, dilation):
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: w must be 4-D (K, C, R, S), got shape {tuple(w_shape)}")
    s = _pair(op, "stride", stride)
    d = _pair(op, "dilation", dilation)
    pad = resolve_padding(padding, x_shape[2:], w_shape[2:], s, d, op)
    return s, pad, d


# ----------------------------------------------------------------------------- conv2d
def conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """2-D convolution (cross-correlation, like every framework): y = conv(x, w) + b.

    x is (N, C, H, W), w is (K, C, R, S), b is (K,) or None; returns y (N, K, P, Q).
    """
    op = "conv2d"
    x = _array(op, "x", x)
    w = _array(op, "w", w)
    _same_device(op, x, "w", w)
    s, pad, d = _conv_geometry(op, x.shape, w.shape, stride, padding, dilation)
    if b is not None:
        b = _array(op, "b", b)
        _same_device(op, x, "b", b)
        if tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"{op}: b must have shape ({w.shape[0]},) to match w.shape={tuple(w.shape)}, "
                             f"got {tuple(b.shape)}")
    return _backend(x).conv2d_forward(x, w, b, s, pad, d, 0)


def conv2d_backward_input(dy, w, x_shape, stride=1, padding=0, dilation=1):
    """Gradient of conv2d with respect to x: dx (x_shape) from dy (N, K, P, Q) and w (K, C, R, S)."""
    op = "conv2d_backward_input"
    dy = _array(op, "dy", dy)
    w = _array(op, "w", w)
    _same_device(op, dy, "w", w)
    x_shape = _shape4(op, "x_shape", x_shape)
    s, pad, d = _conv_geometry(op, x_shape, w.shape, stride, padding, dilation)
    return _backend(dy).conv2d_backward_input(dy, w, list(x_shape), s, pad, d)


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1):
    """Gradient of conv2d with respect to w: dw (w_shape) from dy (N, K, P, Q) and x (N, C, H, W)."""
    op = "conv2d_backward_weight"
    dy = _array(op, "dy", dy)
    x = _array(op, "x", x)
    _same_device(op, dy, "x", x)
    w_shape = _shape4(op, "w_shape", w_shape, "(K, C, R, S)")
    s, pad, d = _conv_geometry(op, x.shape, w_shape, stride, padding, dilation)
    return _backend(dy).conv2d_backward_weight(dy, x, list(w_shape), s, pad, d)


def conv2d_backward_bias(dy):
    """Gradient of conv2d with respect to b: dy (N, K, P, Q) summed over N, P and Q -> (K,)."""
    op = "conv2d_backward_bias"
    dy = _array(op, "dy", dy)
    _check_rank(op, "dy", dy, 4, "(N, K, P, Q)")
    return _backend(dy).conv2d_backward_bias(dy)


# ----------------------------------------------------------------------------- pooling
def _pool_geometry(op, x_shape, kernel_size, stride, padding):
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    k = _pair(op, "kernel_size", kernel_size)
    s = k if stride is None else _pair(op, "stride", stride)
    pad = resolve_padding(padding, x_shape[2:], k, s, (1, 1), op)
    if max(pad[0], pad[2]) > k[0] // 2 or max(pad[1], pad[3]) > k[1] // 2:
        raise ValueError(f"{op}: padding {padding!r} must be at most half the window "
                         f"(kernel_size={k}), got (top, left, bottom, right)={pad}")
    return k, s, pad


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling over kh x kw windows of x (N, C, H, W); stride defaults to the window.

    Padded cells are never picked: a window's maximum is over its real cells only.
    """
    op = "max_pool2d"
    x = _array(op, "x", x)
    k, s, pad = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    return _backend(x).max_pool2d_forward(x, k, s, pad)


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """Gradient of max_pool2d: each dy goes to the first maximum of its window in x."""
    op = "max_pool2d_backward"
    dy = _array(op, "dy", dy)
    x = _array(op, "x", x)
    _same_device(op, dy, "x", x)
    k, s, pad = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    return _backend(x).max_pool2d_backward(dy, x, k, s, pad)


def max_pool2d_with_indices(x, kernel_size, stride=None, padding=0):
    """(y, indices): max_pool2d's output and where each maximum lies, for a training step.

    indices is uint8 (N, C, P, Q): a * kw + b for the window's cell (a, b), counted from the
    window's unpadded corner (the first maximum in row-major order; a NaN wins), or 255 for a
    window with no real cell. max_pool2d_backward_indices turns it and dy into dx without
    reading x again. CPU arrays only; windows of at most 255 cells.
    """
    op = "max_pool2d_with_indices"
    x = _array(op, "x", x)
    if _is_device_tensor(x):
        raise NotImplementedError(f"{op}: CPU arrays only; on the GPU use max_pool2d and "
                                  f"max_pool2d_backward")
    k, s, pad = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    return tuple(_core.max_pool2d_forward_indices(x, k, s, pad))


def max_pool2d_backward_indices(dy, indices, x_shape, kernel_size, stride=None, padding=0):
    """Gradient of max_pool2d from dy (N, C, P, Q) and max_pool2d_with_indices's indices:
    dx (x_shape), the same as max_pool2d_backward(dy, x, ...) gives, bit for bit.

    Each index must name a real cell of its window (or be 255, no cell), as the indices
    max_pool2d_with_indices returned for the same geometry do; one past the window or on its
    padding raises ValueError naming ``indices`` (nothing is ever written outside dx)."""
    op = "max_pool2d_backward_indices"
    dy = _array(op, "dy", dy)
    if _is_device_tensor(dy):
        raise NotImplementedError(f"{op}: CPU arrays only; on the GPU use max_pool2d_backward")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{op}: indices must be the uint8 array max_pool2d_with_indices returned, "
                        f"got {type(indices).__name__}")
    x_shape = _shape4(op, "x_shape", x_shape)
    k, s, pad = _pool_geometry(op, x_shape, kernel_size, stride, padding)
    return _core.max_pool2d_backward_indices(dy, indices, list(x_shape), k, s, pad)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling over kh x kw windows of x (N, C, H, W); stride defaults to the window.

    count_include_pad=True divides by the whole window, padding included (PyTorch's default);
    False divides by the real cells only (what Keras does for padding="same").
    """
    op = "avg_pool2d"
    x = _array(op, "x", x)
    k, s, pad = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    return _backend(x).avg_pool2d_forward(x, k, s, pad, bool(count_include_pad))


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Gradient of avg_pool2d: dx (x_shape) from dy (N, C, P, Q)."""
    op = "avg_pool2d_backward"
    dy = _array(op, "dy", dy)
    x_shape = _shape4(op, "x_shape", x_shape)
    k, s, pad = _pool_geometry(op, x_shape, kernel_size, stride, padding)
    return _backend(dy).avg_pool2d_backward(dy, list(x_shape), k, s, pad, bool(count_include_pad))


# ----------------------------------------------------------------------------- activations
def _act_forward(op, code, x):
    x = _array(op, "x", x)
    return _backend(x).activation_forward(x, code)


def _act_backward(op, code, dy, y):
    dy = _array(op, "dy", dy)
    y = _array(op, "y", y)
    _same_device(op, dy, "y", y)
    if tuple(dy.shape) != tuple(y.shape):
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)} but y has shape {tuple(y.shape)}")
    return _backend(y).activation_backward(dy, y, code)


def relu(x):
    """max(x, 0), element-wise; NaN stays NaN (as NumPy's maximum and PyTorch's relu)."""
    return _act_forward("relu", 1, x)


def relu_backward(dy, y):
    """Gradient of relu from dy and the forward OUTPUT y: 0 where y <= 0, else dy.

    NaN propagates as in PyTorch: where y is NaN (relu passes NaN through) dx is dy, and a NaN
    in dy reaches dx wherever y > 0; where y <= 0 dx is 0 whatever dy holds."""
    return _act_backward("relu_backward", 1, dy, y)


def tanh(x):
    """tanh(x), element-wise; NaN stays NaN."""
    return _act_forward("tanh", 2, x)


def tanh_backward(dy, y):
    """Gradient of tanh from dy and the forward OUTPUT y: dy * (1 - y^2)."""
    return _act_backward("tanh_backward", 2, dy, y)


def sigmoid(x):
    """1 / (1 + exp(-x)), element-wise; NaN stays NaN."""
    return _act_forward("sigmoid", 3, x)


def sigmoid_backward(dy, y):
    """Gradient of sigmoid from dy and the forward OUTPUT y: dy * y * (1 - y)."""
    return _act_backward("sigmoid_backward", 3, dy, y)


# ----------------------------------------------------------------------------- softmax, loss
def softmax(x, axis=-1):
    """Softmax along ``axis`` (max-subtracted, so large logits do not overflow)."""
    op = "softmax"
    x = _array(op, "x", x)
    if len(x.shape) == 0:
        raise ValueError(f"{op}: x must have at least one dimension, got a scalar")
    axis = _int(op, "axis", axis)
    if not -len(x.shape) <= axis < len(x.shape):
        raise ValueError(f"{op}: axis {axis} is out of range for x of shape {tuple(x.shape)}")
    if _is_device_tensor(x):
        return _backend(x).softmax(x, axis)
    moved = np.moveaxis(x, axis, -1)
    if moved.size == 0:  # nothing to normalise: an empty result of the same shape
        return np.zeros(x.shape, np.float32)
    y = _core.softmax(np.ascontiguousarray(moved).reshape(-1, moved.shape[-1]))
    return np.moveaxis(y.reshape(moved.shape), -1, axis)


def _labels(op, labels, n, classes):
    if _is_device_tensor(labels):
        return labels
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integers (class indices), got dtype {lab.dtype}")
    if lab.shape != (n,):
        raise ValueError(f"{op}: labels must have shape ({n},) to match logits, got {lab.shape}")
    if n and (lab.min() < 0 or lab.max() >= classes):
        bad = lab[(lab < 0) | (lab >= classes)][0]
        raise ValueError(f"{op}: labels must lie in [0, {classes}), got {int(bad)}")
    return np.ascontiguousarray(lab, dtype=np.int64)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits is (N, classes), labels (N,) integers in [0, classes). Returns ``(loss, dlogits)``
    with loss a float and dlogits = (softmax(logits) - onehot(labels)) / N.
    """
    op = "softmax_cross_entropy"
    logits = _array(op, "logits", logits)
    _check_rank(op, "logits", logits, 2, "(N, classes)")
    n, c = logits.shape
    if n < 1 or c < 1:
        raise ValueError(f"{op}: logits must be non-empty, got shape {tuple(logits.shape)}")
    lab = _labels(op, labels, n, c)
    loss, d = _backend(logits).softmax_cross_entropy(logits, lab)
    return float(loss), d


# ----------------------------------------------------------------------------- linear, GEMM
def linear(x, w, b=None):
    """Dense layer: y = x @ w.T + b with x (N, in), w (out, in) (PyTorch's layout), b (out,)."""
    op = "linear"
    x = _array(op, "x", x)
    w = _array(op, "w", w)
    _same_device(op, x, "w", w)
    _check_rank(op, "x", x, 2, "(N, in_features)")
    _check_rank(op, "w", w, 2, "(out_features, in_features)")
    if b is not None:
        b = _array(op, "b", b)
        if tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"{op}: b must have shape ({w.shape[0]},) to match w.shape={tuple(w.shape)}, "
                             f"got {tuple(b.shape)}")
    return _backend(x).linear_forward(x, w, b, 0)


def linear_backward(dy, x, w):
    """Gradients of linear: returns (dx (N, in), dw (out, in), db (out,)) from dy (N, out)."""
    op = "linear_backward"
    dy, x, w = _array(op, "dy", dy), _array(op, "x", x), _array(op, "w", w)
    _same_device(op, dy, "x", x)
    _same_device(op, dy, "w", w)
    _check_rank(op, "x", x, 2, "(N, in_features)")
    _check_rank(op, "w", w, 2, "(out_features, in_features)")
    return tuple(_backend(dy).linear_backward(dy, x, w))


def matmul(a, b):
    """float32 matrix product a (M, K) @ b (K, N) on fastconv's own SGEMM."""
    op = "matmul"
    a, b = _array(op, "a", a), _array(op, "b", b)
    _same_device(op, a, "b", b)
    _check_rank(op, "a", a, 2, "(M, K)")
    _check_rank(op, "b", b, 2, "(K, N)")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{op}: a.shape={tuple(a.shape)} and b.shape={tuple(b.shape)} do not chain")
    return _backend(a).sgemm(a, b, False, False)
