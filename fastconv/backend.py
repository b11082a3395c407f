"""One op set for both devices: what a layer's forward and backward call.

A layer is written once. Its ``forward(ctx, x)`` and ``backward(ctx, saved, dy, ...)`` call the
methods of ``ctx.backend``, which is :class:`CpuBackend` for NumPy arrays (the C++ kernels of
``fastconv._core``, and NumPy where NumPy is as fast) or :class:`CudaBackend` for fastconv CUDA
tensors (the kernels of ``fastconv._cuda``). Both backends take the same arguments, already
resolved by the layer at build time (padding as (top, left, bottom, right), strides and windows
as pairs, activations as the kernels' integer codes), and return arrays of their own kind.

The ``*_into`` methods write a result into an existing array (a view of a model's flat gradient
buffer): the kernel writes there directly, on either device (the CPU bindings take ``out``).

This module holds no state: a backend object is a namespace of functions.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["CpuBackend", "CudaBackend", "CPU", "backend_for", "is_device_tensor"]


def is_device_tensor(x):
    """Whether ``x`` is a fastconv CUDA tensor (not a NumPy array)."""
    return type(x).__module__.startswith("fastconv._cuda")


class CpuBackend:
    """The CPU: fastconv._core's kernels on contiguous float32 NumPy arrays."""

    name = "cpu"
    ext = _core

    # --- convolution --------------------------------------------------------------------------
    @staticmethod
    def conv2d(x, w, b, stride, pad, dilation, act=0, alpha=None):
        """y (N, K, P, Q) = act(conv(x (N, C, H, W), w (K, C, R, S)) + b (K)); alpha is the
        activation's parameter (leaky_relu's slope, elu's alpha; None: Keras's default)."""
        if alpha is None:
            return _core.conv2d_forward(x, w, b, stride, pad, dilation, act)
        return _core.conv2d_forward(x, w, b, stride, pad, dilation, act, alpha)

    @staticmethod
    def conv2d_backward_input(dy, w, x_shape, stride, pad, dilation):
        """dx (x_shape) from dy (N, K, P, Q) and w (K, C, R, S)."""
        return _core.conv2d_backward_input(dy, w, list(x_shape), stride, pad, dilation)

    @staticmethod
    def conv2d_backward_weight_into(out, dy, x, stride, pad, dilation):
        """out (K, C, R, S) = dw from dy (N, K, P, Q) and x (N, C, H, W)."""
        _core.conv2d_backward_weight(dy, x, out.shape, stride, pad, dilation, out)

    @staticmethod
    def conv2d_backward_bias_into(out, dy):
        """out (K,) = dy (N, K, P, Q) summed over N, P and Q."""
        _core.conv2d_backward_bias(dy, out)

    @staticmethod
    def conv2d_transpose_backward_weight_into(out, dy, x, stride, pad, dilation):
        """out (Cin, Cout, R, S) = the weight gradient of y = conv2d_transpose(x, w) from dy
        (N, Cout, Ho, Wo) and x (N, Cin, H, W): the convolution it transposes maps dy's shape to
        x's, so this is that convolution's weight gradient with x in dy's place."""
        _core.conv2d_backward_weight(x, dy, out.shape, stride, pad, dilation, out)

    @staticmethod
    def activation_backward_bias_into(db_out, dy, y, act, alpha=None, x=None):
        """dz: a conv layer's activation backward, and its bias gradient written into db_out
        (K,), in one pass over dy (N, K, P, Q); planes summed in a fixed order, so the result
        does not depend on threads."""
        return _core.activation_backward_bias(dy, y, act, alpha, x, db_out)[0]

    @staticmethod
    def bias_activation_(y, b, act=0, alpha=None):
        """y (N, C, ...) = act(y + b[c]), in place (b may be None)."""
        _core.bias_activation_(y, b, act, alpha)

    # --- dense --------------------------------------------------------------------------------
    @staticmethod
    def linear(x, w, b, act=0, alpha=None):
        """y (N, O) = act(x (N, I) w^T + b), w (O, I)."""
        if alpha is None:
            return _core.linear_forward(x, w, b, act)
        return _core.linear_forward(x, w, b, act, alpha)

    @staticmethod
    def linear_backward_into(dy, x, w, dw_out, db_out):
        """dx (N, I) of y = x w^T + b; dw (O, I) and db (O,) go into dw_out and db_out when they
        are given (None: that gradient is computed and dropped)."""
        return _core.linear_backward(dy, x, w, dw_out, db_out)[0]

    @staticmethod
    def linear_backward_input(dy, w):
        """dx (N, I) = dy (N, O) w (O, I): the input gradient alone (a frozen dense layer)."""
        return _core.sgemm(dy, w)

    # --- pooling ------------------------------------------------------------------------------
    @staticmethod
    def max_pool2d(x, kernel, stride, pad):
        """y (N, C, P, Q): the maximum of each window (padded cells never win)."""
        return _core.max_pool2d_forward(x, kernel, stride, pad)

    @staticmethod
    def max_pool2d_backward(dy, x, kernel, stride, pad):
        """dx: each dy routed to the first maximum of its window of x."""
        return _core.max_pool2d_backward(dy, x, kernel, stride, pad)

    has_pool_indices = True

    @staticmethod
    def max_pool2d_with_indices(x, kernel, stride, pad):
        """(y, idx): the maxima and where each lies in its window (one byte an output)."""
        return _core.max_pool2d_forward_indices(x, kernel, stride, pad)

    @staticmethod
    def max_pool2d_backward_indices(dy, idx, x_shape, kernel, stride, pad):
        """dx (x_shape) from dy and the forward's idx, without reading x."""
        return _core.max_pool2d_backward_indices(dy, idx, list(x_shape), kernel, stride, pad)

    @staticmethod
    def avg_pool2d(x, kernel, stride, pad, count_include_pad):
        """y (N, C, P, Q): the mean of each window."""
        return _core.avg_pool2d_forward(x, kernel, stride, pad, count_include_pad)

    @staticmethod
    def avg_pool2d_backward(dy, x_shape, kernel, stride, pad, count_include_pad):
        """dx (x_shape): each dy shared evenly over its window."""
        return _core.avg_pool2d_backward(dy, list(x_shape), kernel, stride, pad, count_include_pad)

    # --- activations --------------------------------------------------------------------------
    @staticmethod
    def activation(x, act, alpha=None):
        """act(x), elementwise (codes as fastconv.functional.ACTIVATIONS)."""
        if alpha is None:
            return _core.activation_forward(x, act)
        return _core.activation_forward(x, act, alpha)

    @staticmethod
    def activation_backward(dy, y, act, alpha=None, x=None):
        """dy * act'(x), written with the forward output y (and the input x for GELU)."""
        if alpha is None and x is None:
            return _core.activation_backward(dy, y, act)
        return _core.activation_backward(dy, y, act, alpha, x)

    # --- upsampling and batch normalisation ---------------------------------------------------
    @staticmethod
    def upsample2d(x, scale, mode, align_corners):
        """y (N, C, H*sh, W*sw); mode 0 nearest, 1 bilinear."""
        return _core.upsample2d_forward(x, scale, mode, align_corners)

    @staticmethod
    def upsample2d_backward(dy, x_shape, scale, mode, align_corners):
        """dx (x_shape) of upsample2d."""
        return _core.upsample2d_backward(dy, list(x_shape), scale, mode, align_corners)

    @staticmethod
    def batch_norm_training(x, gamma, beta, running_mean, running_var, eps, momentum, unbiased):
        """(y, mean, inv_std) with the batch's statistics; the running ones updated in place."""
        return _core.batch_norm_forward_training(x, gamma, beta, running_mean, running_var, eps,
                                                 momentum, unbiased)

    @staticmethod
    def batch_norm_inference(x, gamma, beta, running_mean, running_var, eps):
        """y with the running statistics."""
        return _core.batch_norm_forward_inference(x, gamma, beta, running_mean, running_var, eps)

    @staticmethod
    def batch_norm_backward(dy, x, gamma, mean, inv_std, batch_stats):
        """(dx, dgamma, dbeta); batch_stats=False treats mean and inv_std as constants."""
        return _core.batch_norm_backward(dy, x, gamma, mean, inv_std, batch_stats)

    @staticmethod
    def softmax(x):
        """Softmax over the last axis of a 2-D array."""
        return _core.softmax(x)

    @staticmethod
    def softmax_backward(dy, y):
        """dx of y = softmax(x) over the last axis: y * (dy - sum(dy * y))."""
        return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))

    # --- elementwise and layout ---------------------------------------------------------------
    @staticmethod
    def multiply(a, b):
        """a * b, a new array."""
        return a * b

    @staticmethod
    def multiply_(a, b):
        """a *= b, in place."""
        a *= b

    @staticmethod
    def add(a, b):
        """a + b, a new array."""
        return np.add(a, b)

    @staticmethod
    def add_(out, a):
        """out += a, in place."""
        out += a

    @staticmethod
    def copy_into(out, a):
        """out[...] = a."""
        np.copyto(out, a)

    @staticmethod
    def zero_(a):
        """a[...] = 0, in place."""
        a.fill(0.0)

    @staticmethod
    def zeros(shape):
        """A float32 array of zeros."""
        return np.zeros(shape, np.float32)

    @staticmethod
    def reshape(x, shape):
        """A view of x with a new shape."""
        return x.reshape(shape)

    @staticmethod
    def concat(xs, axis=1):
        """The arrays joined along ``axis`` (a new contiguous array)."""
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def channel_slice(x, start, stop):
        """x[:, start:stop], as a contiguous copy."""
        return np.ascontiguousarray(x[:, start:stop])

    @staticmethod
    def to_channels_last(x):
        """x (N, C, H, W) -> (N, H, W, C), contiguous."""
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    @staticmethod
    def to_channels_first(x):
        """x (N, H, W, C) -> (N, C, H, W), contiguous."""
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    @staticmethod
    def pad2d(x, top, bottom, left, right):
        """x (N, C, H, W) with rows and columns of zeros around each image."""
        n, c, h, w = x.shape
        y = np.zeros((n, c, h + top + bottom, w + left + right), np.float32)
        y[:, :, top:top + h, left:left + w] = x
        return y

    @staticmethod
    def crop2d(dy, top, bottom, left, right):
        """dy (N, C, H', W') without its border: the backward of pad2d."""
        h, w = dy.shape[2] - top - bottom, dy.shape[3] - left - right
        return np.ascontiguousarray(dy[:, :, top:top + h, left:left + w])

    @staticmethod
    def dropout(x, rate, rng):
        """(x * mask, mask), mask = (u >= rate) / (1 - rate): u from the counter-based generator
        of the CUDA kernel (csrc/common/counter_rng.h), its seed drawn from ``rng`` (a NumPy
        Generator), so a seeded generator gives the same masks run after run."""
        return _core.dropout_forward(x, rate, int(rng.integers(0, 2**64, dtype=np.uint64)))

    @staticmethod
    def to_host(x):
        """x as a NumPy array (itself on the CPU)."""
        return x


class CudaBackend:
    """The GPU: fastconv._cuda's kernels on fastconv CUDA tensors.

    Made once the CUDA extension is known to import and see a device (``backend_for``).
    """

    name = "cuda"

    def __init__(self, ext):
        self.ext = ext

    def conv2d(self, x, w, b, stride, pad, dilation, act=0, alpha=None):
        return self.ext.conv2d_forward(x, w, b, stride, pad, dilation, act, alpha)

    def conv2d_backward_input(self, dy, w, x_shape, stride, pad, dilation):
        return self.ext.conv2d_backward_input(dy, w, list(x_shape), stride, pad, dilation)

    def conv2d_backward_weight_into(self, out, dy, x, stride, pad, dilation):
        self.ext.conv2d_backward_weight(dy, x, list(out.shape), stride, pad, dilation, out=out)

    def conv2d_backward_bias_into(self, out, dy):
        self.ext.conv2d_backward_bias(dy, out=out)

    def conv2d_transpose_backward_weight_into(self, out, dy, x, stride, pad, dilation):
        self.ext.conv2d_backward_weight(x, dy, list(out.shape), stride, pad, dilation, out=out)

    activation_backward_bias_into = None  # no fused pass on the GPU: activation, then bias

    def bias_activation_(self, y, b, act=0, alpha=None):
        self.ext.bias_activation_(y, b, act, alpha)

    def linear(self, x, w, b, act=0, alpha=None):
        return self.ext.linear_forward(x, w, b, act, alpha)

    def linear_backward_into(self, dy, x, w, dw_out, db_out):
        dx, _, _ = self.ext.linear_backward(dy, x, w, dw_out=dw_out, db_out=db_out)
        return dx

    def linear_backward_input(self, dy, w):
        return self.ext.sgemm(dy, w, False, False)

    def max_pool2d(self, x, kernel, stride, pad):
        return self.ext.max_pool2d_forward(x, kernel, stride, pad)

    def max_pool2d_backward(self, dy, x, kernel, stride, pad):
        return self.ext.max_pool2d_backward(dy, x, kernel, stride, pad)

    has_pool_indices = False

    def avg_pool2d(self, x, kernel, stride, pad, count_include_pad):
        return self.ext.avg_pool2d_forward(x, kernel, stride, pad, count_include_pad)

    def avg_pool2d_backward(self, dy, x_shape, kernel, stride, pad, count_include_pad):
        return self.ext.avg_pool2d_backward(dy, list(x_shape), kernel, stride, pad,
                                            count_include_pad)

    def activation(self, x, act, alpha=None):
        return self.ext.activation_forward(x, act, alpha)

    def activation_backward(self, dy, y, act, alpha=None, x=None):
        return self.ext.activation_backward(dy, y, act, alpha, x)

    def upsample2d(self, x, scale, mode, align_corners):
        return self.ext.upsample2d_forward(x, scale, mode, align_corners)

    def upsample2d_backward(self, dy, x_shape, scale, mode, align_corners):
        return self.ext.upsample2d_backward(dy, list(x_shape), scale, mode, align_corners)

    def batch_norm_training(self, x, gamma, beta, running_mean, running_var, eps, momentum, unbiased):
        return self.ext.batch_norm_forward_training(x, gamma, beta, running_mean, running_var, eps,
                                                    momentum, unbiased)

    def batch_norm_inference(self, x, gamma, beta, running_mean, running_var, eps):
        return self.ext.batch_norm_forward_inference(x, gamma, beta, running_mean, running_var, eps)

    def batch_norm_backward(self, dy, x, gamma, mean, inv_std, batch_stats):
        return self.ext.batch_norm_backward(dy, x, gamma, mean, inv_std, batch_stats)

    def softmax(self, x):
        return self.ext.softmax(x, -1)

    def softmax_backward(self, dy, y):
        return self._require("softmax_backward")(dy, y)

    def multiply(self, a, b):
        out = self.ext.Tensor.empty(a.shape, "float32")
        self.ext.multiply(a, b, out)
        return out

    def multiply_(self, a, b):
        self.ext.multiply(a, b, a)

    def add(self, a, b):
        return self._require("add")(a, b)

    def add_(self, out, a):
        self._require("add_")(out, a)

    def copy_into(self, out, a):
        out.copy_(a)

    def zero_(self, a):
        a.zero_()

    def zeros(self, shape):
        return self.ext.Tensor.zeros(tuple(shape), "float32")

    def reshape(self, x, shape):
        return x.reshape(*shape)

    def concat(self, xs, axis=1):
        if axis != 1:
            raise NotImplementedError("concatenation on the GPU is along axis 1 (channels) only")
        return self._require("concat_channels")(list(xs))

    def channel_slice(self, x, start, stop):
        return self._require("slice_channels")(x, start, stop)

    def to_channels_last(self, x):
        return self._require("nchw_to_nhwc")(x)

    def to_channels_first(self, x):
        return self._require("nhwc_to_nchw")(x)

    def pad2d(self, x, top, bottom, left, right):
        return self._require("zero_pad2d")(x, top, bottom, left, right)

    def crop2d(self, dy, top, bottom, left, right):
        return self._require("crop2d")(dy, top, bottom, left, right)

    def dropout(self, x, rate, seed, counters):
        """(x * mask, mask) from the counter-based generator of (seed, counters[1], index)."""
        y = self.ext.Tensor.empty(x.shape, "float32")
        mask = self.ext.Tensor.empty(x.shape, "float32")
        self.ext.dropout_forward(x, y, mask, rate, seed, counters)
        return y, mask

    def to_host(self, x):
        return x.numpy()

    def _require(self, name):
        fn = getattr(self.ext, name, None)
        if fn is None:
            raise NotImplementedError(f"the CUDA extension has no {name!r} kernel in this build")
        return fn


CPU = CpuBackend()
_cuda_backend = None


def backend_for(x):
    """The backend that computes on ``x``: CPU for NumPy arrays, CUDA for fastconv CUDA tensors
    (RuntimeError if the CUDA extension or a GPU is missing)."""
    global _cuda_backend
    if not is_device_tensor(x):
        return CPU
    if _cuda_backend is None:
        from . import cuda

        _cuda_backend = CudaBackend(cuda.require())
    return _cuda_backend
