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

Beyond conv2d and pooling (each op has its backward, on the CPU and on CUDA tensors):

* ``conv2d_transpose(x, w, b, stride, padding, output_padding=None, dilation)``, w (Cin, Cout,
  R, S) as PyTorch's ConvTranspose2d; ``"valid"``/``"same"`` with output_padding None follow
  Keras's output length (``in * s + max(k - s, 0)``, ``in * s``), with the padding of the
  transposed convolution taken by TensorFlow's "same" rule on the OUTPUT size; ints follow
  PyTorch (``(in - 1) * s - 2p + d(k - 1) + output_padding + 1``). The backward are
  ``conv2d_transpose_backward_input`` / ``_weight`` and ``conv2d_backward_bias``;
  ``conv2d_transpose_output_size`` / ``_output_shape`` give the sizes.
* ``upsample2d(x, scale, mode="nearest"|"bilinear", align_corners=False)`` and its backward.
* ``batch_norm_training`` (batch statistics; running mean and variance updated in place with
  Keras's momentum), ``batch_norm_inference``, ``batch_norm_backward``, ``fold_batch_norm``.
* ``leaky_relu``, ``elu``, ``gelu`` (erf form, or ``approximate=True`` for the tanh form), and
  ``activation(x, name, alpha)`` / ``activation_backward(dy, y, name, alpha, x=None)`` for any
  of ACTIVATIONS (the codes conv2d and linear fuse; GELU's backward needs the input x).
* ``binary_cross_entropy_with_logits(logits, targets, weights=None)`` and ``mse_loss``, each
  returning ``(loss, gradient)``.
* ``reshape``, ``add``, ``add_``, ``scale``, ``concat_channels`` / ``slice_channels``,
  ``zero_pad2d`` / ``crop2d``, ``softmax_backward``, ``rmsprop_update``, ``bias_activation_``.

Bad input raises ``ValueError`` or ``TypeError`` whose message names the argument and shapes.
"""
import math
import numbers
import operator

import numpy as np

from . import _core

__all__ = [
    "conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
    "conv2d_transpose", "conv2d_transpose_backward_input", "conv2d_transpose_backward_weight",
    "conv2d_transpose_output_size", "conv2d_transpose_output_shape", "bias_activation_",
    "max_pool2d", "max_pool2d_backward", "max_pool2d_with_indices", "max_pool2d_backward_indices",
    "avg_pool2d", "avg_pool2d_backward",
    "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward",
    "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "gelu", "gelu_backward",
    "activation", "activation_backward",
    "softmax", "softmax_cross_entropy", "linear", "linear_backward", "matmul",
    "conv_output_size", "resolve_padding",
    "upsample2d", "upsample2d_backward",
    "batch_norm_training", "batch_norm_inference", "batch_norm_backward", "fold_batch_norm",
    "binary_cross_entropy_with_logits", "mse_loss",
    "reshape", "add", "add_", "scale", "concat_channels", "slice_channels", "zero_pad2d", "crop2d",
    "softmax_backward", "rmsprop_update",
]

# Activation codes shared with the C++ and CUDA kernels (csrc/ops.h, enum Activation).
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "leaky_relu": 4, "elu": 5,
               "gelu": 6, "gelu_tanh": 7}
# The parameter of the activations that take one, when none is given (Keras's defaults:
# keras.activations.leaky_relu's negative_slope 0.2, elu's alpha 1.0).
ACTIVATION_DEFAULT_ALPHA = {4: 0.2, 5: 1.0}
# Codes whose backward needs the forward INPUT x (GELU); the others take the output y.
ACTIVATIONS_NEEDING_INPUT = frozenset({6, 7})


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


# ----------------------------------------------------------------------------- conv2d_transpose
def conv2d_transpose_output_size(n, k, stride=1, padding=0, output_padding=None, dilation=1):
    """Output length of one spatial dimension of conv2d_transpose.

    padding "valid" / "same" follow Keras's deconv_output_length: with output_padding None,
    valid gives ``n * s + max(k_eff - s, 0)`` and same ``n * s``; with output_padding given,
    ``(n - 1) * s + k_eff - 2 * pad + output_padding``, pad = k_eff // 2 for same, 0 for valid
    (k_eff = d * (k - 1) + 1). An int padding p follows PyTorch's ConvTranspose2d:
    ``(n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1`` (output_padding None means 0).
    """
    keff = dilation * (k - 1) + 1
    if isinstance(padding, str):
        word = padding.lower()
        if output_padding is None:
            return n * stride + max(keff - stride, 0) if word == "valid" else n * stride
        pad = keff // 2 if word == "same" else 0
        return (n - 1) * stride + keff - 2 * pad + output_padding
    return (n - 1) * stride - 2 * padding + keff + (output_padding or 0)


def _transpose_geometry(op, x_shape, w_shape, stride, padding, output_padding, dilation):
    """(output shape (N, Cout, Ho, Wo), stride, (top, left, bottom, right), dilation) of
    conv2d_transpose: the pads are those of the adjoint convolution, which maps the OUTPUT
    (Ho, Wo) back to the input (H, W) with w as its (K=Cin, C=Cout, R, S) filter."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, Cin, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: w must be 4-D (Cin, Cout, R, S), got shape {tuple(w_shape)}")
    if w_shape[0] != x_shape[1]:
        raise ValueError(f"{op}: w has {w_shape[0]} input channels (w is (Cin, Cout, R, S)) but x has "
                         f"{x_shape[1]} (x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)})")
    s = _pair(op, "stride", stride)
    d = _pair(op, "dilation", dilation)
    op_hw = None if output_padding is None else _pair(op, "output_padding", output_padding, minimum=0)
    word = padding.lower() if isinstance(padding, str) else None
    if word is not None and word not in ("valid", "same"):
        raise ValueError(f"{op}: padding must be an int, an (h, w) pair, 'valid' or 'same', got {padding!r}")
    p_hw = None if word else _pair(op, "padding", padding, minimum=0)
    out_hw, pads = [], [0, 0, 0, 0]
    for i in range(2):
        n, k = int(x_shape[2 + i]), int(w_shape[2 + i])
        opad = None if op_hw is None else op_hw[i]
        if word is None and (opad or 0) >= s[i]:
            raise ValueError(f"{op}: output_padding must be smaller than the stride, got "
                             f"output_padding={output_padding!r}, stride={stride!r}")
        out = conv2d_transpose_output_size(n, k, s[i], word or p_hw[i], opad, d[i])
        if out < 1:
            raise ValueError(f"{op}: the output would be empty ({out} along axis {2 + i}) for "
                             f"x.shape={tuple(x_shape)}, w.shape={tuple(w_shape)}, padding={padding!r}")
        if word is None:
            before = after = p_hw[i]
        else:  # the adjoint convolution's own padding, TensorFlow's rule on the OUTPUT size
            before, after = (resolve_padding(word, (out, out), (k, k), (s[i], s[i]), (d[i], d[i]), op)[0::2])
        back = conv_output_size(out, k, s[i], before, after, d[i])
        if back != n:
            raise ValueError(
                f"{op}: padding={padding!r} with output_padding={output_padding!r} gives an output of "
                f"{out} along axis {2 + i}, which the convolution it transposes maps to {back}, not "
                f"the input's {n} (TensorFlow refuses this too); choose another output_padding")
        out_hw.append(out)
        pads[i], pads[i + 2] = before, after
    return (int(x_shape[0]), int(w_shape[1]), out_hw[0], out_hw[1]), s, tuple(pads), d


def conv2d_transpose_output_shape(x_shape, w_shape, stride=1, padding=0, output_padding=None, dilation=1):
    """(N, Cout, Ho, Wo) of conv2d_transpose for x (N, Cin, H, W) and w (Cin, Cout, R, S); each
    spatial size as conv2d_transpose_output_size says."""
    op = "conv2d_transpose_output_shape"
    return _transpose_geometry(op, tuple(x_shape), tuple(w_shape), stride, padding, output_padding,
                               dilation)[0]


def conv2d_transpose(x, w, b=None, stride=1, padding=0, output_padding=None, dilation=1):
    """Transposed convolution (the gradient of conv2d with respect to its input, as a layer).

    x is (N, Cin, H, W), w is (Cin, Cout, R, S) (PyTorch's ConvTranspose2d layout: conv2d's OIHW
    filter of the convolution it transposes), b is (Cout,) or None; returns y (N, Cout, Ho, Wo)
    with Ho, Wo from conv2d_transpose_output_size. padding "same"/"valid" and output_padding
    None follow Keras's Conv2DTranspose (the padding of the transposed convolution is then
    TensorFlow's "same" rule applied to the OUTPUT size, the extra pixel bottom/right); int or
    pair padding and output_padding follow PyTorch (output_padding < stride).
    Computed by conv2d_backward_input's kernels, then the bias in one pass.
    """
    op = "conv2d_transpose"
    x = _array(op, "x", x)
    w = _array(op, "w", w)
    _same_device(op, x, "w", w)
    out_shape, s, pad, d = _transpose_geometry(op, x.shape, w.shape, stride, padding, output_padding, dilation)
    if b is not None:
        b = _array(op, "b", b)
        _same_device(op, x, "b", b)
        if tuple(b.shape) != (w.shape[1],):
            raise ValueError(f"{op}: b must have shape ({w.shape[1]},) to match w.shape={tuple(w.shape)} "
                             f"(Cin, Cout, R, S), got {tuple(b.shape)}")
    be = _backend(x)
    y = be.conv2d_backward_input(x, w, list(out_shape), s, pad, d)
    if b is not None:
        be.bias_activation_(y, b, 0)
    return y


def conv2d_transpose_backward_input(dy, w, x_shape, stride=1, padding=0, output_padding=None, dilation=1):
    """Gradient of conv2d_transpose with respect to x: dx (x_shape) = conv2d(dy, w) with the
    adjoint padding, dy (N, Cout, Ho, Wo), w (Cin, Cout, R, S)."""
    op = "conv2d_transpose_backward_input"
    dy = _array(op, "dy", dy)
    w = _array(op, "w", w)
    _same_device(op, dy, "w", w)
    x_shape = _shape4(op, "x_shape", x_shape)
    out_shape, s, pad, d = _transpose_geometry(op, x_shape, w.shape, stride, padding, output_padding, dilation)
    if tuple(dy.shape) != out_shape:
        raise ValueError(f"{op}: dy must have shape {out_shape} for x_shape={x_shape}, w.shape={tuple(w.shape)}, "
                         f"got {tuple(dy.shape)}")
    return _backend(dy).conv2d_forward(dy, w, None, s, pad, d, 0)


def conv2d_transpose_backward_weight(dy, x, w_shape, stride=1, padding=0, output_padding=None, dilation=1):
    """Gradient of conv2d_transpose with respect to w: dw (w_shape = (Cin, Cout, R, S)), summed
    over the batch, from dy (N, Cout, Ho, Wo) and x (N, Cin, H, W). (The bias gradient is
    conv2d_backward_bias(dy).)"""
    op = "conv2d_transpose_backward_weight"
    dy = _array(op, "dy", dy)
    x = _array(op, "x", x)
    _same_device(op, dy, "x", x)
    if not isinstance(w_shape, (tuple, list)) or len(w_shape) != 4:
        raise ValueError(f"{op}: w_shape must be a 4-tuple (Cin, Cout, R, S), got {w_shape!r}")
    w_shape = tuple(_int(op, "w_shape", v) for v in w_shape)
    out_shape, s, pad, d = _transpose_geometry(op, x.shape, w_shape, stride, padding, output_padding, dilation)
    if tuple(dy.shape) != out_shape:
        raise ValueError(f"{op}: dy must have shape {out_shape} for x.shape={tuple(x.shape)}, w_shape={w_shape}, "
                         f"got {tuple(dy.shape)}")
    # In the transposed convolution's terms: its input is dy, its output gradient is x.
    return _backend(dy).conv2d_backward_weight(x, dy, list(w_shape), s, pad, d)


def bias_activation_(y, b=None, act=None, alpha=None):
    """y (N, C, ...) = act(y + b[c]) in place (b (C,) or None; act a name or code as in
    ACTIVATIONS); returns y. One pass over y: what conv2d fuses into its output, for ops that
    cannot (conv2d_transpose, a separate bias)."""
    op = "bias_activation_"
    code = _act_code(op, act)
    if _is_device_tensor(y):
        be = _backend(y)
    else:
        if not isinstance(y, np.ndarray) or y.dtype != np.float32 or not y.flags.c_contiguous \
                or not y.flags.writeable:
            raise TypeError(f"{op}: y must be a writeable C-contiguous float32 array (it is updated in place)")
        be = _core
    if len(y.shape) < 2:
        raise ValueError(f"{op}: y must be at least 2-D (N, C, ...), got shape {tuple(y.shape)}")
    if b is not None:
        b = _array(op, "b", b)
        _same_device(op, y, "b", b)
    be.bias_activation_(y, b, code, None if alpha is None else _alpha(op, "alpha", alpha))
    return y


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
def _alpha(op, name, v):
    """A finite, non-negative activation parameter as a float (ValueError/TypeError naming it)."""
    if type(v) is float and 0.0 <= v < math.inf:   # the usual case, without the ABC check
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {v!r}")
    v = float(v)
    if not (np.isfinite(v) and v >= 0.0):
        raise ValueError(f"{op}: {name} must be finite and >= 0, got {v!r}")
    return v


def _act_code(op, act):
    """An activation name (a key of ACTIVATIONS) or code -> the code."""
    if isinstance(act, str) or act is None:
        key = act.lower() if isinstance(act, str) else act
        if key not in ACTIVATIONS:
            known = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
            raise ValueError(f"{op}: unknown activation {act!r}; known: {known}")
        return ACTIVATIONS[key]
    code = _int(op, "act", act)
    if code not in ACTIVATIONS.values():
        raise ValueError(f"{op}: act must be an activation name or a code 0-7, got {act!r}")
    return code


def _act_forward(op, code, x, alpha=None):
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        backend = _core               # the usual case, checked in one line
    else:
        x = _array(op, "x", x)
        backend = _backend(x)
    if alpha is None:
        return backend.activation_forward(x, code)
    return backend.activation_forward(x, code, alpha)


def _act_backward(op, code, dy, y, alpha=None, x=None):
    dy = _array(op, "dy", dy)
    for name, a in (("y", y), ("x", x)):
        if a is not None:
            a = _array(op, name, a)
            _same_device(op, dy, name, a)
            if tuple(dy.shape) != tuple(a.shape):
                raise ValueError(f"{op}: dy has shape {tuple(dy.shape)} but {name} has shape {tuple(a.shape)}")
            if name == "y":
                y = a
            else:
                x = a
    if code in ACTIVATIONS_NEEDING_INPUT and x is None:
        raise ValueError(f"{op}: gelu's backward needs the forward input x (its derivative is not a "
                         "function of the output y)")
    if code not in ACTIVATIONS_NEEDING_INPUT and y is None:
        raise ValueError(f"{op}: y (the forward output) is required")
    if alpha is None and x is None:
        return _backend(dy).activation_backward(dy, y, code)
    return _backend(dy).activation_backward(dy, y, code, alpha, x)


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


def leaky_relu(x, negative_slope=0.2):
    """x where x > 0, negative_slope * x elsewhere (negative_slope >= 0; Keras's default 0.2,
    PyTorch's F.leaky_relu uses 0.01). NaN stays NaN."""
    op = "leaky_relu"
    return _act_forward(op, 4, x, _alpha(op, "negative_slope", negative_slope))


def leaky_relu_backward(dy, y, negative_slope=0.2):
    """Gradient of leaky_relu from dy and the forward OUTPUT y: dy where y > 0, else
    dy * negative_slope (NaN where y is NaN)."""
    op = "leaky_relu_backward"
    return _act_backward(op, 4, dy, y, _alpha(op, "negative_slope", negative_slope))


def elu(x, alpha=1.0):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere (alpha >= 0), with expm1's precision near 0."""
    op = "elu"
    return _act_forward(op, 5, x, _alpha(op, "alpha", alpha))


def elu_backward(dy, y, alpha=1.0):
    """Gradient of elu from dy and the forward OUTPUT y: dy where y > 0, else dy * (y + alpha)."""
    op = "elu_backward"
    return _act_backward(op, 5, dy, y, _alpha(op, "alpha", alpha))


def gelu(x, approximate=False):
    """GELU, x * Phi(x) with Phi the standard normal CDF (the exact erf form, Keras's and
    PyTorch's default); approximate=True gives the tanh form
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (PyTorch's approximate="tanh")."""
    return _act_forward("gelu", 7 if approximate else 6, x)


def gelu_backward(dy, x, approximate=False):
    """Gradient of gelu from dy and the forward INPUT x (GELU's derivative is not a function
    of its output): dy * (Phi(x) + x phi(x)), or the tanh form's derivative."""
    return _act_backward("gelu_backward", 7 if approximate else 6, dy, None, x=x)


def activation(x, act, alpha=None):
    """Any activation by name (a key of ACTIVATIONS: "relu", "leaky_relu", "gelu_tanh", ...) or
    code, with its parameter alpha (leaky_relu's negative_slope, elu's alpha; None: the
    default of ACTIVATION_DEFAULT_ALPHA). The same kernels conv2d and linear fuse."""
    op = "activation"
    code = _act_code(op, act)
    return _act_forward(op, code, x, None if alpha is None else _alpha(op, "alpha", alpha))


def activation_backward(dy, y, act, alpha=None, x=None):
    """Gradient of activation(x, act, alpha) from dy and the forward OUTPUT y; GELU ("gelu",
    "gelu_tanh") needs the forward INPUT x instead (y may then be None)."""
    op = "activation_backward"
    code = _act_code(op, act)
    return _act_backward(op, code, dy, y, None if alpha is None else _alpha(op, "alpha", alpha), x)


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


# ----------------------------------------------------------------------------- upsampling
_UPSAMPLE_MODES = {"nearest": 0, "bilinear": 1}


def _upsample_args(op, scale, mode, align_corners):
    s = _pair(op, "scale", scale)
    if not isinstance(mode, str) or mode.lower() not in _UPSAMPLE_MODES:
        raise ValueError(f"{op}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    code = _UPSAMPLE_MODES[mode.lower()]
    if align_corners and code == 0:
        raise ValueError(f"{op}: align_corners applies to mode='bilinear' only")
    return s, code, bool(align_corners)


def upsample2d(x, scale=2, mode="nearest", align_corners=False):
    """Upsample x (N, C, H, W) by integer factors scale = s or (sh, sw) -> (N, C, H*sh, W*sw).

    mode "nearest" repeats each pixel (Keras's UpSampling2D, PyTorch's mode="nearest").
    mode "bilinear" interpolates between the two nearest rows and columns; align_corners is
    PyTorch's: False (the default) is the half-pixel rule, source = (i + 0.5) / s - 0.5,
    which is also TensorFlow's bilinear resize with half_pixel_centers=True and so what Keras's
    UpSampling2D(interpolation="bilinear") computes; True maps corner pixels onto each other.
    """
    op = "upsample2d"
    x = _array(op, "x", x)
    _check_rank(op, "x", x, 4, "(N, C, H, W)")
    s, code, ac = _upsample_args(op, scale, mode, align_corners)
    return _backend(x).upsample2d_forward(x, s, code, ac)


def upsample2d_backward(dy, x_shape, scale=2, mode="nearest", align_corners=False):
    """Gradient of upsample2d: dx (x_shape) from dy (N, C, H*sh, W*sw). Nearest sums each
    sh x sw block; bilinear adds each dy back with its interpolation weights (on the GPU as a
    gather, one thread per input pixel: deterministic, no atomics)."""
    op = "upsample2d_backward"
    dy = _array(op, "dy", dy)
    x_shape = _shape4(op, "x_shape", x_shape)
    s, code, ac = _upsample_args(op, scale, mode, align_corners)
    want = (x_shape[0], x_shape[1], x_shape[2] * s[0], x_shape[3] * s[1])
    if tuple(dy.shape) != want:
        raise ValueError(f"{op}: dy must have shape {want} for x_shape={x_shape} and scale={s}, got {tuple(dy.shape)}")
    return _backend(dy).upsample2d_backward(dy, list(x_shape), s, code, ac)


# ----------------------------------------------------------------------------- batch norm
def _channel(op, name, a, x, optional=True):
    if a is None:
        if optional:
            return None
        raise ValueError(f"{op}: {name} is required")
    a = _array(op, name, a)
    _same_device(op, x, name, a)
    if tuple(a.shape) != (x.shape[1],):
        raise ValueError(f"{op}: {name} must have shape ({x.shape[1]},) (one value per channel of x "
                         f"{tuple(x.shape)}), got {tuple(a.shape)}")
    return a


def _running(op, name, a, x):
    """A running statistic updated in place: float32, C-contiguous, writeable, (C,)."""
    if a is None:
        return None
    if _is_device_tensor(a):
        return _channel(op, name, a, x)
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
            or not a.flags.writeable:
        raise TypeError(f"{op}: {name} must be a writeable C-contiguous float32 array (it is updated in place)")
    return _channel(op, name, a, x)


def _bn_input(op, x):
    x = _array(op, "x", x)
    if len(x.shape) < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{op}: x must be (N, C, ...) with N, C >= 1, got shape {tuple(x.shape)}")
    return x


def _eps(op, eps):
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"{op}: eps must be > 0, got {eps!r}")
    return eps


def batch_norm_training(x, gamma=None, beta=None, running_mean=None, running_var=None, momentum=0.99,
                        eps=1e-3, unbiased_running_var=False):
    """Batch normalisation with the batch's statistics: returns (y, mean, inv_std).

    x is (N, C, H, W) (per channel over N, H, W) or (N, F) (per feature over N); gamma, beta
    (C,) or None (scale / center off). mean and inv_std = 1 / sqrt(var + eps) (biased batch
    variance) are what batch_norm_backward needs. running_mean and running_var, when given,
    are updated IN PLACE with Keras's momentum: running = momentum * running + (1 - momentum)
    * batch (PyTorch's momentum is 1 - this); the variance folded in is the biased one (Keras,
    the default) or the unbiased one, times M / (M - 1) (unbiased_running_var=True: PyTorch).
    Defaults momentum 0.99, eps 1e-3 are Keras's.
    """
    op = "batch_norm_training"
    x = _bn_input(op, x)
    gamma, beta = _channel(op, "gamma", gamma, x), _channel(op, "beta", beta, x)
    rm, rv = _running(op, "running_mean", running_mean, x), _running(op, "running_var", running_var, x)
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum!r}")
    return tuple(_backend(x).batch_norm_forward_training(x, gamma, beta, rm, rv, _eps(op, eps), momentum,
                                                         bool(unbiased_running_var)))


def batch_norm_inference(x, gamma, beta, running_mean, running_var, eps=1e-3):
    """Batch normalisation with the running statistics: y = (x - running_mean) /
    sqrt(running_var + eps) * gamma + beta (gamma, beta may be None)."""
    op = "batch_norm_inference"
    x = _bn_input(op, x)
    gamma, beta = _channel(op, "gamma", gamma, x), _channel(op, "beta", beta, x)
    rm = _channel(op, "running_mean", running_mean, x, optional=False)
    rv = _channel(op, "running_var", running_var, x, optional=False)
    return _backend(x).batch_norm_forward_inference(x, gamma, beta, rm, rv, _eps(op, eps))


def batch_norm_backward(dy, x, mean, inv_std, gamma=None, training=True):
    """Gradients of batch normalisation: (dx, dgamma, dbeta) from dy, the forward's x and its
    mean and inv_std (batch_norm_training's; for the inference form pass running_mean and
    1 / sqrt(running_var + eps) with training=False, where they are constants). dgamma is None
    when gamma is None (no scale); dbeta (sum of dy) is returned always, a layer without a
    center drops it."""
    op = "batch_norm_backward"
    dy = _array(op, "dy", dy)
    x = _bn_input(op, x)
    _same_device(op, x, "dy", dy)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)} but x has shape {tuple(x.shape)}")
    g = _channel(op, "gamma", gamma, x)
    mean = _channel(op, "mean", mean, x, optional=False)
    inv_std = _channel(op, "inv_std", inv_std, x, optional=False)
    dx, dgamma, dbeta = _backend(x).batch_norm_backward(dy, x, g, mean, inv_std, bool(training))
    return dx, (dgamma if gamma is not None else None), dbeta


def fold_batch_norm(w, b, gamma, beta, mean, var, eps=1e-3, axis=0):
    """Fold inference batch normalisation into the preceding convolution or dense layer:
    returns (w', b') with conv(x, w') + b' == batch_norm_inference(conv(x, w) + b, ...).

    w is conv2d's (K, C, R, S) or linear's (out, in) (the output channel on axis 0; pass axis=1
    for conv2d_transpose's (Cin, Cout, R, S)); b (K,) or None; gamma, beta None mean 1 and 0.
    scale = gamma / sqrt(var + eps); w' = w * scale along the output axis; b' = (b - mean) *
    scale + beta. Computed in float64, returned float32 (CUDA tensors come back as tensors).
    """
    op = "fold_batch_norm"
    on_device = _is_device_tensor(w)
    host = lambda a: None if a is None else (np.asarray(a.numpy()) if _is_device_tensor(a) else np.asarray(a))
    w64 = host(w).astype(np.float64)
    if w64.ndim < 2:
        raise ValueError(f"{op}: w must be at least 2-D (a conv or dense weight), got shape {w64.shape}")
    axis = _int(op, "axis", axis)
    if axis not in (0, 1):
        raise ValueError(f"{op}: axis must be 0 (conv2d, linear) or 1 (conv2d_transpose), got {axis}")
    k = w64.shape[axis]

    def channel(name, a, default):
        if a is None:
            return np.full(k, default)
        a = host(a).astype(np.float64)
        if a.shape != (k,):
            raise ValueError(f"{op}: {name} must have shape ({k},) to match w.shape={w64.shape} on axis {axis}, "
                             f"got {a.shape}")
        return a

    b64, g64, be64 = channel("b", b, 0.0), channel("gamma", gamma, 1.0), channel("beta", beta, 0.0)
    m64, v64 = channel("mean", mean, None), channel("var", var, None)
    scale = g64 / np.sqrt(v64 + _eps(op, eps))
    shape = [1] * w64.ndim
    shape[axis] = k
    w_new = (w64 * scale.reshape(shape)).astype(np.float32)
    b_new = ((b64 - m64) * scale + be64).astype(np.float32)
    if on_device:
        from . import cuda

        return cuda.Tensor.from_numpy(w_new), cuda.Tensor.from_numpy(b_new)
    return w_new, b_new


# ----------------------------------------------------------------------------- more losses
def binary_cross_entropy_with_logits(logits, targets, weights=None):
    """Binary cross-entropy from logits and its gradient: (mean loss, dlogits).

    logits and float targets have the same shape (N, ...); weights (N,) per sample or None.
    loss = mean over all elements of w_n (max(z, 0) - z t + log1p(exp(-|z|))) (numerically
    stable for any z; Keras's BinaryCrossentropy(from_logits=True) with sample weights and
    PyTorch's BCEWithLogitsLoss both give this); dlogits = w_n (sigmoid(z) - t) / size.
    """
    op = "binary_cross_entropy_with_logits"
    logits = _array(op, "logits", logits)
    targets = _array(op, "targets", targets)
    _same_device(op, logits, "targets", targets)
    if len(logits.shape) < 1 or int(np.prod(logits.shape)) < 1:
        raise ValueError(f"{op}: logits must be non-empty (N, ...), got shape {tuple(logits.shape)}")
    if tuple(targets.shape) != tuple(logits.shape):
        raise ValueError(f"{op}: targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if weights is not None:
        weights = _array(op, "weights", weights)
        _same_device(op, logits, "weights", weights)
        if tuple(weights.shape) != (logits.shape[0],):
            raise ValueError(f"{op}: weights must have shape ({logits.shape[0]},) (one per sample), "
                             f"got {tuple(weights.shape)}")
    loss, d = _backend(logits).bce_with_logits(logits, targets, weights)
    return float(loss), d


def mse_loss(y, targets):
    """Mean squared error and its gradient: (mean of (y - t)^2 over all elements, dy = 2 (y - t)
    / size). The same as Keras's MeanSquaredError (each sample's mean, then the batch mean)."""
    op = "mse_loss"
    y = _array(op, "y", y)
    targets = _array(op, "targets", targets)
    _same_device(op, y, "targets", targets)
    if tuple(targets.shape) != tuple(y.shape) or len(y.shape) < 1 or int(np.prod(y.shape)) < 1:
        raise ValueError(f"{op}: y and targets must have the same non-empty shape (N, ...), got "
                         f"{tuple(y.shape)} and {tuple(targets.shape)}")
    if _is_device_tensor(y):
        loss, d = _backend(y).mse(y, targets)
        return float(loss), d
    diff = y.astype(np.float64) - targets
    return float(np.mean(diff * diff)), (diff * (2.0 / diff.size)).astype(np.float32)


# ----------------------------------------------------------------------------- tensor ops
def reshape(x, shape):
    """x with a new shape, as a view where possible (NumPy's reshape; a CUDA Tensor's view). One
    dimension may be -1. A size mismatch raises ValueError naming both shapes."""
    op = "reshape"
    x = _array(op, "x", x)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(_int(op, "shape", d) for d in shape)
    size = int(np.prod(x.shape))
    known = [d for d in shape if d != -1]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"{op}: shape may hold one -1 and no other negative size, got {shape}")
    k = int(np.prod(known)) if known else 1
    if (-1 in shape and (k == 0 or size % k)) or (-1 not in shape and k != size):
        raise ValueError(f"{op}: cannot reshape x of shape {tuple(x.shape)} ({size} elements) into {shape}")
    return x.reshape(shape)


def _same_shape(op, a, b, names=("a", "b")):
    _same_device(op, a, names[1], b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: {names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def add(a, b):
    """a + b, element-wise, same shapes (no broadcasting)."""
    op = "add"
    a, b = _array(op, "a", a), _array(op, "b", b)
    _same_shape(op, a, b)
    if _is_device_tensor(a):
        return _backend(a).add(a, b)
    return np.add(a, b, dtype=np.float32)


def add_(out, a):
    """out += a in place (a gradient accumulated where two paths meet); returns out."""
    op = "add_"
    a = _array(op, "a", a)
    if not _is_device_tensor(out) and (not isinstance(out, np.ndarray) or out.dtype != np.float32
                                       or not out.flags.writeable):
        raise TypeError(f"{op}: out must be a writeable float32 array (it is updated in place)")
    _same_shape(op, out, a, ("out", "a"))
    if _is_device_tensor(out):
        _backend(out).add_(out, a)
    else:
        np.add(out, a, out=out)
    return out


def scale(a, s):
    """s * a for a Python number s."""
    op = "scale"
    a = _array(op, "a", a)
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real):
        raise TypeError(f"{op}: s must be a real number, got {s!r}")
    if _is_device_tensor(a):
        return _backend(a).scale(a, float(s))
    return np.multiply(a, np.float32(s), dtype=np.float32)


def concat_channels(tensors):
    """Concatenate along axis 1: NCHW channels or (N, F) features. Every other axis must agree."""
    op = "concat_channels"
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise ValueError(f"{op}: tensors must be a non-empty list")
    ts = [_array(op, f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    first = ts[0]
    if len(first.shape) < 2:
        raise ValueError(f"{op}: tensors must be at least 2-D (N, C, ...), got shape {tuple(first.shape)}")
    for i, t in enumerate(ts[1:], 1):
        _same_device(op, first, f"tensors[{i}]", t)
        if len(t.shape) != len(first.shape) or t.shape[0] != first.shape[0] or tuple(t.shape[2:]) != tuple(first.shape[2:]):
            raise ValueError(f"{op}: tensors[{i}] has shape {tuple(t.shape)}, which does not match "
                             f"tensors[0] {tuple(first.shape)} outside axis 1")
    if _is_device_tensor(first):
        return _backend(first).concat_channels(ts)
    return np.concatenate(ts, axis=1)


def slice_channels(x, c0, c1):
    """Channels [c0, c1) of x (N, C, ...) as a contiguous copy: the backward of concat_channels."""
    op = "slice_channels"
    x = _array(op, "x", x)
    if len(x.shape) < 2:
        raise ValueError(f"{op}: x must be at least 2-D (N, C, ...), got shape {tuple(x.shape)}")
    c0, c1 = _int(op, "c0", c0), _int(op, "c1", c1)
    if not 0 <= c0 <= c1 <= x.shape[1]:
        raise ValueError(f"{op}: need 0 <= c0 <= c1 <= {x.shape[1]}, got c0={c0}, c1={c1}")
    if _is_device_tensor(x):
        return _backend(x).slice_channels(x, c0, c1)
    return np.ascontiguousarray(x[:, c0:c1])


def _border(op, x, top, bottom, left, right):
    _check_rank(op, "x", x, 4, "(N, C, H, W)")
    pads = tuple(_int(op, name, v) for name, v in (("top", top), ("bottom", bottom), ("left", left), ("right", right)))
    if min(pads) < 0:
        raise ValueError(f"{op}: top, bottom, left and right must be >= 0, got {pads}")
    return pads


def zero_pad2d(x, top, bottom, left, right):
    """x (N, C, H, W) with a border of zeros: (N, C, H + top + bottom, W + left + right)."""
    op = "zero_pad2d"
    x = _array(op, "x", x)
    t, b, l, r = _border(op, x, top, bottom, left, right)
    if _is_device_tensor(x):
        return _backend(x).zero_pad2d(x, t, b, l, r)
    y = np.zeros((x.shape[0], x.shape[1], x.shape[2] + t + b, x.shape[3] + l + r), np.float32)
    y[:, :, t:t + x.shape[2], l:l + x.shape[3]] = x
    return y


def crop2d(x, top, bottom, left, right):
    """x (N, C, H, W) without a border: (N, C, H - top - bottom, W - left - right), contiguous
    (zero_pad2d's backward; also Keras's Cropping2D)."""
    op = "crop2d"
    x = _array(op, "x", x)
    t, b, l, r = _border(op, x, top, bottom, left, right)
    if t + b >= x.shape[2] + 1 or l + r >= x.shape[3] + 1 or t + b > x.shape[2] or l + r > x.shape[3]:
        raise ValueError(f"{op}: cropping ({t}, {b}, {l}, {r}) is larger than x {tuple(x.shape)}")
    if _is_device_tensor(x):
        return _backend(x).crop2d(x, t, b, l, r)
    return np.ascontiguousarray(x[:, :, t:x.shape[2] - b, l:x.shape[3] - r])


def softmax_backward(dy, y):
    """Gradient of softmax along the last axis from dy and the forward OUTPUT y:
    dx = y * (dy - sum(dy * y, axis=-1))."""
    op = "softmax_backward"
    dy, y = _array(op, "dy", dy), _array(op, "y", y)
    _same_shape(op, dy, y, ("dy", "y"))
    if len(y.shape) < 1:
        raise ValueError(f"{op}: y must have at least one dimension")
    if _is_device_tensor(y):
        return _backend(y).softmax_backward(dy, y)
    dot = np.sum(dy.astype(np.float64) * y, axis=-1, keepdims=True)
    return (y * (dy - dot)).astype(np.float32)


def rmsprop_update(p, g, ms, lr, rho=0.9, eps=1e-7):
    """One RMSprop step in place: ms = rho * ms + (1 - rho) * g^2; p -= lr * g / (sqrt(ms) + eps).
    p and ms are updated in place (writeable float32 arrays, or CUDA tensors)."""
    op = "rmsprop_update"
    g = _array(op, "g", g)
    for name, a in (("p", p), ("ms", ms)):
        if not _is_device_tensor(a) and (not isinstance(a, np.ndarray) or a.dtype != np.float32
                                         or not a.flags.c_contiguous or not a.flags.writeable):
            raise TypeError(f"{op}: {name} must be a writeable C-contiguous float32 array (updated in place)")
        _same_device(op, g, name, a)
        if int(np.prod(a.shape)) != int(np.prod(g.shape)):
            raise ValueError(f"{op}: {name} has shape {tuple(a.shape)} but g has shape {tuple(g.shape)}")
    if _is_device_tensor(p):
        _backend(p).rmsprop_update(p, g, ms, float(lr), float(rho), float(eps))
        return p
    lr, rho, eps = np.float32(lr), np.float32(rho), np.float32(eps)
    ms *= rho
    ms += (np.float32(1) - rho) * g * g
    p -= lr * g / (np.sqrt(ms) + eps)
    return p
