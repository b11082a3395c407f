"""A stand-in for the CUDA extension, on NumPy, so the GPU code paths run on any machine.

fastconv's GPU training drives the same layer objects as the CPU through
fastconv.backend.CudaBackend, which calls the functions of ``fastconv._cuda``. This module has
those functions with the same names and signatures, computed on the host (the CPU kernels of
fastconv._core where there is one), on a Tensor class that wraps a NumPy array. Installed in
place of the extension (the ``fake_gpu`` fixture in conftest.py), it lets the tests run the
GPU runner end to end: device weights, the on-device batch gather, loss sums, optimiser
kernels that read the step from device counters, and CUDA graph capture.

Capture is modelled faithfully where it matters to the Python side: between capture_begin and
capture_end an op is *recorded, not run* (its outputs are allocated, its arithmetic deferred),
a host read (``numpy()``) or a host-to-device copy raises as the driver refuses them, and
``Graph.replay()`` runs the recorded arithmetic again on the same buffers. So a Python step
that secretly depends on a value computed during the capture, or that copies from the host
inside it, fails here as it would on a GPU.

What it does not model: the kernels' own arithmetic (that is what the GPU tests and the host
emulation of csrc/cuda check), streams, asynchrony, and memory reuse by the caching allocator.
"""
from __future__ import annotations

import numpy as np

import fastconv._core as _core
from fastconv.functional import conv_output_size

__all__ = ["Tensor", "install"]

_record = None  # the list of deferred ops while capturing, else None


def _launch(fn):
    """Run ``fn`` now, or record it when a capture is on."""
    if _record is not None:
        _record.append(fn)
    else:
        fn()


def _capture_error(what):
    raise RuntimeError(f"fake cuda: {what} is not permitted while the stream is capturing "
                       "(cudaErrorStreamCaptureUnsupported)")


class Tensor:
    """A device tensor: a C-contiguous float32 or int64 NumPy array behind a narrow API."""

    __module__ = "fastconv._cuda"  # what fastconv.backend.is_device_tensor looks for

    def __init__(self, array):
        a = np.asarray(array)
        if isinstance(array, Tensor):
            a = array.a.copy()
        self.a = np.ascontiguousarray(a, np.float32 if a.dtype.kind == "f" else np.int64)

    @classmethod
    def _wrap(cls, a):
        t = cls.__new__(cls)
        t.a = a
        return t

    @staticmethod
    def from_numpy(array):
        if _record is not None:
            _capture_error("a host-to-device copy")
        return Tensor(np.array(array, copy=True))

    @staticmethod
    def empty(shape, dtype="float32"):
        return Tensor._wrap(np.full(tuple(shape), np.nan if dtype == "float32" else -7,
                                    np.float32 if dtype == "float32" else np.int64))

    @staticmethod
    def zeros(shape, dtype="float32"):
        t = Tensor.empty(shape, dtype)
        _launch(lambda: t.a.fill(0))
        return t

    def numpy(self):
        if _record is not None:
            _capture_error("a device-to-host copy")
        return self.a.copy()

    def copy(self):
        out = Tensor.empty(self.shape, self.dtype_name)
        _launch(lambda: np.copyto(out.a, self.a))
        return out

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return Tensor._wrap(self.a.reshape(shape))

    def slice(self, start, stop):
        return Tensor._wrap(self.a[start:stop])

    def copy_(self, src):
        if isinstance(src, Tensor):
            _launch(lambda: np.copyto(self.a, src.a.reshape(self.a.shape)))
        else:
            if _record is not None:
                _capture_error("a host-to-device copy")
            np.copyto(self.a, np.asarray(src).reshape(self.a.shape))
        return self

    def zero_(self):
        _launch(lambda: self.a.fill(0))
        return self

    @property
    def shape(self):
        return tuple(self.a.shape)

    @property
    def dtype(self):
        return self.a.dtype

    @property
    def dtype_name(self):
        return "float32" if self.a.dtype == np.float32 else "int64"

    @property
    def ndim(self):
        return self.a.ndim

    @property
    def size(self):
        return self.a.size

    def __len__(self):
        return self.a.shape[0]

    def __repr__(self):
        return f"fake_cuda.Tensor(shape={self.shape}, dtype={self.dtype_name})"


def _out(shape):
    return Tensor.empty(shape, "float32")


def _set(out, fn):
    """Launch ``out.a[...] = fn()``."""
    _launch(lambda: np.copyto(out.a, fn()))
    return out


# ------------------------------------------------------------------------------ runtime
def is_available():
    return True


def why_unavailable():
    return ""


def device_count():
    return 1


def device_name(device=0):
    return "fake GPU (NumPy)"


def synchronize():
    pass


def empty_cache():
    pass


def memory_stats():
    return {"allocated_bytes": 0, "cached_bytes": 0, "cuda_mallocs": 0, "cache_hits": 0}


def set_allow_tf32(allow):
    pass


def get_allow_tf32():
    return False


# ------------------------------------------------------------------------------ ops
def conv2d_forward(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), act=0, alpha=None):
    n, _, h, wd = x.shape
    k, _, r, s = w.shape
    p = conv_output_size(h, r, stride[0], pad[0], pad[2], dilation[0])
    q = conv_output_size(wd, s, stride[1], pad[1], pad[3], dilation[1])
    return _set(_out((n, k, p, q)), lambda: _core.conv2d_forward(
        x.a, w.a, None if b is None else b.a, stride, pad, dilation, act, alpha))


def conv2d_backward_input(dy, w, x_shape, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1)):
    return _set(_out(x_shape), lambda: _core.conv2d_backward_input(dy.a, w.a, list(x_shape), stride,
                                                                    pad, dilation))


def conv2d_backward_weight(dy, x, w_shape, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), out=None):
    out = out if out is not None else _out(w_shape)
    return _set(out, lambda: _core.conv2d_backward_weight(dy.a, x.a, list(w_shape), stride, pad,
                                                          dilation))


def conv2d_backward_bias(dy, out=None):
    out = out if out is not None else _out((dy.shape[1],))
    return _set(out, lambda: _core.conv2d_backward_bias(dy.a))


def _pool_shape(x, kernel, stride, pad):
    n, c, h, w = x.shape
    return (n, c, conv_output_size(h, kernel[0], stride[0], pad[0], pad[2]),
            conv_output_size(w, kernel[1], stride[1], pad[1], pad[3]))


def max_pool2d_forward(x, kernel, stride, pad=(0, 0, 0, 0)):
    return _set(_out(_pool_shape(x, kernel, stride, pad)),
                lambda: _core.max_pool2d_forward(x.a, kernel, stride, pad))


def max_pool2d_backward(dy, x, kernel, stride, pad=(0, 0, 0, 0)):
    return _set(_out(x.shape), lambda: _core.max_pool2d_backward(dy.a, x.a, kernel, stride, pad))


def avg_pool2d_forward(x, kernel, stride, pad=(0, 0, 0, 0), count_include_pad=True):
    return _set(_out(_pool_shape(x, kernel, stride, pad)),
                lambda: _core.avg_pool2d_forward(x.a, kernel, stride, pad, count_include_pad))


def avg_pool2d_backward(dy, x_shape, kernel, stride, pad=(0, 0, 0, 0), count_include_pad=True):
    return _set(_out(x_shape), lambda: _core.avg_pool2d_backward(dy.a, list(x_shape), kernel, stride,
                                                                  pad, count_include_pad))


def activation_forward(x, act, alpha=None):
    return _set(_out(x.shape), lambda: _core.activation_forward(x.a, act, alpha))


def activation_backward(dy, y, act, alpha=None, x=None):
    return _set(_out(dy.shape), lambda: _core.activation_backward(
        dy.a, None if y is None else y.a, act, alpha, None if x is None else x.a))


def bias_activation_(y, b, act=0, alpha=None):
    _launch(lambda: _core.bias_activation_(y.a, None if b is None else b.a, act, alpha))


def upsample2d_forward(x, scale, mode, align_corners=False):
    n, c, h, w = x.shape
    return _set(_out((n, c, h * scale[0], w * scale[1])),
                lambda: _core.upsample2d_forward(x.a, scale, mode, align_corners))


def upsample2d_backward(dy, x_shape, scale, mode, align_corners=False):
    return _set(_out(x_shape), lambda: _core.upsample2d_backward(dy.a, list(x_shape), scale, mode,
                                                                  align_corners))


def batch_norm_forward_training(x, gamma, beta, running_mean, running_var, eps, momentum, unbiased):
    c = x.shape[1]
    y, mean, inv_std = _out(x.shape), _out((c,)), _out((c,))

    def run():
        a, m, s = _core.batch_norm_forward_training(
            x.a, None if gamma is None else gamma.a, None if beta is None else beta.a,
            None if running_mean is None else running_mean.a,
            None if running_var is None else running_var.a, eps, momentum, unbiased)
        np.copyto(y.a, a)
        np.copyto(mean.a, m)
        np.copyto(inv_std.a, s)
    _launch(run)
    return y, mean, inv_std


def batch_norm_forward_inference(x, gamma, beta, running_mean, running_var, eps):
    return _set(_out(x.shape), lambda: _core.batch_norm_forward_inference(
        x.a, None if gamma is None else gamma.a, None if beta is None else beta.a,
        running_mean.a, running_var.a, eps))


def batch_norm_backward(dy, x, gamma, mean, inv_std, batch_stats=True):
    c = x.shape[1]
    dx, dgamma, dbeta = _out(x.shape), _out((c,)), _out((c,))

    def run():
        a, g, b = _core.batch_norm_backward(dy.a, x.a, None if gamma is None else gamma.a, mean.a,
                                            inv_std.a, batch_stats)
        np.copyto(dx.a, a)
        if g is not None:
            np.copyto(dgamma.a, g)
        np.copyto(dbeta.a, b)
    _launch(run)
    return dx, (dgamma if gamma is not None else None), dbeta


def softmax(x, axis=-1):
    def run():
        z = x.a - x.a.max(axis=axis, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=axis, keepdims=True)
    return _set(_out(x.shape), run)


def softmax_backward(dy, y):
    return _set(_out(y.shape), lambda: y.a * (dy.a - np.sum(dy.a * y.a, axis=-1, keepdims=True)))


def softmax_cross_entropy(logits, labels):
    if _record is not None:
        _capture_error("softmax_cross_entropy's host-side loss")
    lab = labels.a if isinstance(labels, Tensor) else np.asarray(labels, np.int64)
    loss, d = _core.softmax_cross_entropy(logits.a, lab)
    return float(loss), Tensor._wrap(d)


def linear_forward(x, w, b=None, act=0, alpha=None):
    return _set(_out((x.shape[0], w.shape[0])),
                lambda: _core.linear_forward(x.a, w.a, None if b is None else b.a, act, alpha))


def linear_backward(dy, x, w, dw_out=None, db_out=None):
    dx, dw = _out(x.shape), dw_out if dw_out is not None else _out(w.shape)
    db = db_out if db_out is not None else _out((w.shape[0],))

    def run():
        gx, gw, gb = _core.linear_backward(dy.a, x.a, w.a)
        np.copyto(dx.a, gx)
        np.copyto(dw.a, gw)
        np.copyto(db.a, gb)
    _launch(run)
    return dx, dw, db


def sgemm(a, b, trans_a=False, trans_b=False):
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    return _set(_out((m, n)), lambda: _core.sgemm(a.a, b.a, trans_a, trans_b))


def multiply(a, b, out):
    _launch(lambda: np.multiply(a.a, b.a.reshape(a.a.shape), out=out.a.reshape(a.a.shape)))


def add(a, b):
    return _set(_out(a.shape), lambda: a.a + b.a)


def add_(out, a):
    _launch(lambda: np.add(out.a, a.a, out=out.a))


def concat_channels(xs):
    shape = list(xs[0].shape)
    shape[1] = sum(x.shape[1] for x in xs)
    return _set(_out(shape), lambda: np.concatenate([x.a for x in xs], axis=1))


def slice_channels(x, start, stop):
    shape = list(x.shape)
    shape[1] = stop - start
    return _set(_out(shape), lambda: x.a[:, start:stop])


def nchw_to_nhwc(x):
    n, c, h, w = x.shape
    return _set(_out((n, h, w, c)), lambda: x.a.transpose(0, 2, 3, 1))


def nhwc_to_nchw(x):
    n, h, w, c = x.shape
    return _set(_out((n, c, h, w)), lambda: x.a.transpose(0, 3, 1, 2))


def zero_pad2d(x, top, bottom, left, right):
    n, c, h, w = x.shape
    out = _out((n, c, h + top + bottom, w + left + right))

    def run():
        out.a.fill(0)
        out.a[:, :, top:top + h, left:left + w] = x.a
    _launch(run)
    return out


def crop2d(dy, top, bottom, left, right):
    n, c, h, w = dy.shape
    return _set(_out((n, c, h - top - bottom, w - left - right)),
                lambda: dy.a[:, :, top:h - bottom, left:w - right])


# ------------------------------------------------------------------------------ training
def gather_batch(x_all, y_all, perm, counters, batch_stride, xb, yb):
    def run():
        base = int(counters.a[0]) * batch_stride
        m, s = xb.shape[0], x_all.shape[0]
        pos = base + np.arange(m)
        j = np.where(pos < perm.a.size, perm.a[np.minimum(pos, perm.a.size - 1)], -1)
        ok = (j >= 0) & (j < s)
        xb.a[...] = 0
        xb.a[ok] = x_all.a[j[ok]]
        yb.a[...] = np.where(ok, y_all.a[np.where(ok, j, 0)], -1)
    _launch(run)


def softmax_xent_sums(logits, labels, dlogits, sums):
    def run():
        z = logits.a.astype(np.float64)
        n, c = z.shape
        lab = labels.a
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        ok = (lab >= 0) & (lab < c)
        safe = np.where(ok, lab, 0)
        loss = -logp[np.arange(n), safe]
        p = np.exp(logp)
        p[np.arange(n)[ok], safe[ok]] -= 1.0
        np.copyto(dlogits.a, (p / n).astype(np.float32))
        acc = sums.a.view(np.float64)
        acc[0] += float(loss[ok].sum())
        acc[1] += float(np.sum((logits.a.argmax(axis=1) == lab) & ok))
        acc[2] += float(np.sum(~ok))
    _launch(run)


def mse_sums(y, targets, dy, sums):
    def run():
        n = y.shape[0]
        diff = y.a.astype(np.float64) - targets.a.reshape(y.a.shape)
        np.copyto(dy.a, (2.0 * diff / diff.size).astype(np.float32))
        sums.a.view(np.float64)[0] += float((diff ** 2).reshape(n, -1).mean(axis=1).sum())
    _launch(run)


def bce_with_logits_sums(logits, targets, dlogits, sums, weights=None):
    def run():
        z = logits.a.astype(np.float64)
        t = targets.a.reshape(z.shape).astype(np.float64)
        n = z.shape[0]
        per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        np.copyto(dlogits.a, ((1.0 / (1.0 + np.exp(-z)) - t) / z.size).astype(np.float32))
        acc = sums.a.view(np.float64)
        acc[0] += float(per.reshape(n, -1).mean(axis=1).sum())
        acc[1] += float(np.sum((z > 0) == (t > 0.5)))
    _launch(run)


def dropout_forward(x, y, mask, rate, seed, counters):
    def run():
        out, m = _core.dropout_forward(x.a, rate, int(seed), int(counters.a[1]))  # the same numbers
        np.copyto(mask.a, m.reshape(mask.a.shape))
        np.copyto(y.a, out.reshape(y.a.shape))
    _launch(run)


def sgd_update(p, g, velocity, lr, momentum, weight_decay, nesterov):
    _launch(lambda: _core.sgd_update(p.a, g.a, None if velocity is None else velocity.a, lr, momentum,
                                     weight_decay, nesterov))


def adam_update(p, g, m, v, lr, beta_1, beta_2, epsilon, weight_decay, counters):
    def run():
        t = float(counters.a[1] + 1)
        alpha = lr * np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
        _core.adam_update(p.a, g.a, m.a, v.a, alpha, beta_1, 1.0 - beta_1, beta_2, 1.0 - beta_2,
                          epsilon, 1.0 - lr * weight_decay)
    _launch(run)


def step_end(counters):
    def run():
        counters.a[0] += 1
        counters.a[1] += 1
    _launch(run)


# ------------------------------------------------------------------------------ graphs
class Graph:
    """A recorded sequence of deferred ops."""

    def __init__(self, ops):
        self.ops = ops

    def replay(self):
        for op in self.ops:
            op()

    @property
    def num_nodes(self):
        return len(self.ops)


def capture_begin():
    global _record
    if _record is not None:
        raise RuntimeError("fake cuda: a capture is already running")
    _record = []


def capture_end():
    global _record
    if _record is None:
        raise RuntimeError("fake cuda: no capture is running")
    ops, _record = _record, None
    return Graph(ops)


def capture_abort():
    global _record
    _record = None


def capturing():
    return _record is not None


def install(monkeypatch):
    """Make fastconv use this module as its CUDA extension (for one test, via monkeypatch)."""
    import sys

    import fastconv.backend
    import fastconv.cuda

    module = sys.modules[__name__]
    monkeypatch.setattr(fastconv.cuda, "_ext", module)
    monkeypatch.setattr(fastconv.cuda, "_loaded", True)
    monkeypatch.setattr(fastconv.backend, "_cuda_backend", None)
    return module


# ------------------------------------------------------------------------------ BCE, MSE
def bce_with_logits(logits, targets, weights=None):
    """(mean loss, dlogits) on the CPU kernel of the same name (the loss comes back to the host)."""
    if _record is not None:
        _capture_error("bce_with_logits's host-side loss")
    loss, d = _core.bce_with_logits(logits.a, targets.a, None if weights is None else weights.a)
    return float(loss), Tensor._wrap(np.ascontiguousarray(d, np.float32).reshape(logits.shape))


def mse(y, targets):
    """(mean (y - t)^2, dy = 2 (y - t) / size)."""
    if _record is not None:
        _capture_error("mse's host-side loss")
    diff = y.a.astype(np.float64) - targets.a
    return float(np.mean(diff * diff)), Tensor._wrap((2.0 * diff / diff.size).astype(np.float32))
