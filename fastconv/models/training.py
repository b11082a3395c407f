"""Compiling, training, evaluating and predicting: one loop for every device.

How a training step runs. ``fit`` converts the data once (contiguous float32 NCHW; NHWC input
is transposed once when the model is channels_last) and checks it for NaN and Inf once. Each
step gathers its samples into one batch buffer (``np.take(..., out=)``), runs the model's plan
forward (fastconv.models.graph: every primitive layer's kernels, shapes resolved at build
time), the loss, the plan backward in reverse, and one optimiser step. The weights of a model's
layers live in one flat float32 buffer (each layer's kernel and bias are views into it) and so
do their gradients, so the optimiser update is one kernel call per contiguous run of trainable
weights: one, unless some layers are frozen. Nothing grows from epoch to epoch.

The device is a detail of the step: on "cuda" the same loop drives a runner whose step gathers
the batch on the GPU and replays the whole step as one CUDA graph (fastconv.models.cuda_step);
the layers it runs are the same objects.

With a cross-entropy loss the model trains on logits: if it ends in a softmax (a Softmax layer
or Dense(activation="softmax")), the loss is applied to that softmax's input with the fused
softmax_cross_entropy and the softmax's own backward is skipped; ``predict`` still returns
probabilities. A model that ends in a plain Dense is read as giving logits.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..backend import CPU, is_device_tensor
from ..callbacks import Callback, History
from ..layers import base as B
from . import graph as G

__all__ = ["compile_model", "fit", "evaluate", "predict", "train_on_batch", "compute_gradients",
           "input_gradients", "prepare_inputs", "user_outputs", "check_device"]


# ------------------------------------------------------------------------------------ checks
def check_device(device, owner):
    """Normalise a device argument: "cpu" or "cuda" (RuntimeError if no GPU for "cuda")."""
    if not isinstance(device, str) or device.lower() not in ("cpu", "cuda", "gpu"):
        raise ValueError(f"{owner}: device must be 'cpu' or 'cuda', got {device!r}")
    device = "cuda" if device.lower() in ("cuda", "gpu") else "cpu"
    if device == "cuda":
        from .. import cuda

        if not cuda.is_available():
            raise RuntimeError(f"{owner}: device='cuda' was asked for but {cuda.why_unavailable()}")
    return device


def _int_arg(value, name, owner, minimum, allow_none=False, default=None):
    if value is None:
        if allow_none:
            return default
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got None")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _batch_size(value, owner, default=32):
    return _int_arg(value, "batch_size", owner, 1, allow_none=True, default=default)


def _verbose(value, owner):
    if value == "auto":
        return 1
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(f"{owner}: verbose must be 0, 1, 2 or 'auto', got {value!r}")
    return int(value)


def _check_compiled(model, what):
    if model.optimizer is None or not model.losses:
        raise RuntimeError(f"{model._owner}.{what}: the model is not compiled; call "
                           "model.compile(optimizer=..., loss=...) first")


def _check_finite(arrays, names, owner):
    """Refuse NaN or Inf in float input data, naming the argument and the first bad sample."""
    for a, name in zip(arrays, names):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
            ok = np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.ndim > 1 else np.isfinite(a)
            if not ok.all():
                i = int(np.argmin(ok))
                raise ValueError(f"{owner}: {name} has NaN or Inf values (sample {i} is the first); "
                                 "clean the data first")


# ------------------------------------------------------------------------------------ compile
def compile_model(model, optimizer, loss, metrics, loss_weights):
    model.optimizer = _optimizers.get(optimizer)
    if isinstance(loss, dict):
        names = _output_names(model)
        missing = [k for k in loss if k not in names]
        if missing or not model.built:
            raise ValueError(f"{model._owner}.compile: loss keys {missing or list(loss)} do not name "
                             f"the model's outputs ({', '.join(names)})")
        losses = [_losses.get(loss[k]) if k in loss else None for k in names]
    elif isinstance(loss, (list, tuple)):
        losses = [None if item is None else _losses.get(item) for item in loss]
    else:
        losses = [_losses.get(loss)]
    model.losses = losses
    model.loss = losses[0] if len(losses) == 1 else losses
    if loss_weights is None:
        model.loss_weights = None
    else:
        weights = loss_weights
        if isinstance(loss_weights, dict):
            weights = [float(loss_weights.get(k, 1.0)) for k in _output_names(model)]
        model.loss_weights = [float(w) for w in weights]
    # "accuracy" is one metric, not the letters a, c, c, ...: metrics.get_list
    model.metrics = _metrics.get_list(metrics)
    model._compiled_trainable = None  # read at the first step: the model may not be built yet
    model._trainer = None
    if model.built:
        _snapshot_trainable(model)


def _snapshot_trainable(model):
    layers = model._trainable_layers()
    model._compiled_trainable = layers
    model._trainer = None


def _output_names(model):
    if not model.built:
        return []
    return [t.node.layer.name for t in model._graph.outputs]


def _output_losses(model):
    """One loss per output (the single loss repeated for a model of several outputs)."""
    n = len(model._graph.outputs)
    losses = list(model.losses)
    if len(losses) == 1 and n > 1:
        losses = losses * n
    if len(losses) != n:
        raise ValueError(f"{model._owner}: compile gave {len(losses)} losses for {n} outputs")
    return losses


def _feed(loss):
    """What ``loss`` takes from an output whose layer ends in a given activation (see
    fastconv.losses.Loss.feed): "fuse", "logits" or "output"."""
    if loss is None:
        return None
    feed = getattr(loss, "feed", None)
    if feed is not None:
        return feed
    wants = getattr(loss, "expects_logits", False)   # a loss written before feed() existed
    return lambda last: ("fuse" if last == "softmax" else "logits") if wants else "output"


def _loss_plan(model, purpose, losses, trainable=None, input_grads=False):
    """The model's plan for running ``losses`` on its outputs."""
    return model._plan(purpose, [_feed(loss) for loss in losses], trainable, input_grads,
                       key=tuple(id(loss) for loss in losses))


class _Trainer:
    """A compiled model's training state on the host: which weights train, and their gradient
    buffers. Trainable weights are grouped by the flat buffer that holds them and merged into
    contiguous runs; each run is one optimiser call (params[i] and grads[i] are flat views)."""

    def __init__(self, model):
        from .model import _pack

        layers = model._compiled_trainable
        _pack(layers)
        self.layers = layers
        self.ids = {id(layer) for layer in layers}
        by_buffer = {}
        for layer in layers:
            flat, offsets = layer._packed
            entry = by_buffer.setdefault(id(flat), (flat, []))
            for p, off in zip(layer.params, offsets):
                entry[1].append((off, off + p.size))
        self.params, self.grads, self.runs = [], [], []
        grad_buffers = {}
        for key, (flat, spans) in by_buffer.items():
            gflat = np.zeros(flat.size, dtype=np.float32)
            grad_buffers[key] = gflat
            spans.sort()
            merged = []
            for a, b in spans:
                if merged and merged[-1][1] == a:
                    merged[-1][1] = b
                else:
                    merged.append([a, b])
            for a, b in merged:
                whole = a == 0 and b == flat.size
                self.params.append(flat if whole else flat[a:b])
                self.grads.append(gflat if whole else gflat[a:b])
                self.runs.append((flat, a, b))
        self.grad_views = {}
        for layer in layers:
            flat, offsets = layer._packed
            gflat = grad_buffers[id(flat)]
            self.grad_views[id(layer)] = [gflat[o:o + p.size].reshape(p.shape)
                                          for p, o in zip(layer.params, offsets)]
        self.key = _trainer_key(model)


def _trainer_key(model):
    return tuple((id(layer), id(getattr(layer, "_packed", (None,))[0]))
                 for layer in model._compiled_trainable)


def _trainer(model):
    if model._compiled_trainable is None:
        _snapshot_trainable(model)
    trainer = model._trainer
    if trainer is None or trainer.key != _trainer_key(model):
        trainer = model._trainer = _Trainer(model)
    return trainer


# ------------------------------------------------------------------------------------ data
def _input_specs(model):
    """[(per-sample NCHW shape, channels_last, name)] for each model input."""
    if hasattr(model, "_channels_last") and not model._multi_input:
        return [(model.input_shape, model._channels_last, "x")]
    return [(t.per_sample_shape, getattr(t.node.layer, "data_format", None) == "channels_last",
             t.node.layer.name) for t in model._graph.inputs]


def _as_list(value, n, names, what, owner):
    if isinstance(value, dict):
        missing = [k for k in names if k not in value]
        if missing:
            raise ValueError(f"{owner}: {what} has no entry for {missing} (expected keys "
                             f"{names})")
        return [value[k] for k in names]
    if n > 1:
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ValueError(f"{owner}: the model has {n} {what.split()[0]}s; give {what} as a list "
                             f"of {n} arrays (or a dict by name)")
        return list(value)
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], np.ndarray):
        return [value[0]]
    return [value]


def _ensure_built(model, x, what):
    """Build the model from the data's shape when it is not built (a Sequential without an
    input shape, a subclassed model not traced yet)."""
    if model.built:
        return
    from .model import Sequential

    if isinstance(model, Sequential):
        declared = model.declared_input_shape or (model.layers[0].declared_input_shape
                                                  if model.layers else None)
        if declared is not None:
            model.build()
            return
        a = x if is_device_tensor(x) else np.asarray(x)
        if len(a.shape) < 2:
            raise ValueError(f"Sequential.{what}: x must have a batch axis, got shape {tuple(a.shape)}")
        model.build(tuple(a.shape[1:]))
        return
    arrays = isinstance(x, (list, tuple)) and len(x) > 1 and all(
        isinstance(a, np.ndarray) or is_device_tensor(a) for a in x)
    items = list(x) if arrays else [x]
    shapes = [tuple(np.shape(a)[1:]) if not is_device_tensor(a) else tuple(a.shape[1:])
              for a in items]
    model._trace(shapes if len(shapes) > 1 else shapes[0])


def prepare_inputs(model, x, what):
    """The model's inputs as a list of contiguous float32 NCHW arrays (or device tensors),
    building the model if needed; ValueError for a wrong shape, naming the layout."""
    owner = f"{model._owner}.{what}"
    if x is None:
        raise ValueError(f"{owner}: x is required")
    _ensure_built(model, x, what)
    specs = _input_specs(model)
    names = [s[2] for s in specs]
    items = _as_list(x, len(specs), names, "input x", owner)
    out = []
    for a, (shape, channels_last, name) in zip(items, specs):
        if is_device_tensor(a):
            out.append(a)
            continue
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{owner}: x must be a real numeric array, got dtype {a.dtype}")
        if a.ndim < 2:
            raise ValueError(f"{owner}: x must have a batch axis, got shape {a.shape}")
        given = tuple(a.shape[1:])
        shape = tuple(shape)
        if a.ndim == 3 and len(shape) == 3 and shape[0] == 1 and given == shape[1:]:
            a = a[:, None]          # (N, H, W) grey images: the one channel is implied
        elif channels_last and a.ndim == 4:
            a = a.transpose(0, 3, 1, 2)
        a = np.ascontiguousarray(a, dtype=np.float32)
        if tuple(a.shape[1:]) != shape:
            raise ValueError(_shape_mismatch(owner, given, shape, channels_last))
        out.append(a)
    n = len(out[0])
    for a in out[1:]:
        if len(a) != n:
            raise ValueError(f"{owner}: the inputs have different numbers of samples "
                             f"({[len(t) for t in out]})")
    return out


def _shape_mismatch(owner, given, shape, channels_last):
    """The message for x of per-sample shape ``given`` (as the user passed it) when the model
    takes ``shape`` (channels-first), naming the layouts when that is the trouble."""
    def user(s):
        return (s[1], s[2], s[0]) if channels_last and len(s) == 3 else s

    want = user(shape)
    layout = "(H, W, C)" if channels_last else "(C, H, W)"
    text = (f"{owner}: x has per-sample shape {given} but the model was built for input shape "
            f"{want}" + (f" {layout}" if len(shape) == 3 else ""))
    if len(shape) == 3 and len(given) == 3:
        if channels_last and given == shape:
            text += ("; x looks channels-first (N, C, H, W) while the model is channels-last "
                     "(data_format='channels_last'): transpose x to (N, H, W, C)")
        elif not channels_last and given == (shape[1], shape[2], shape[0]):
            text += ("; x looks channels-last (N, H, W, C) while the model is channels-first: "
                     "transpose x to (N, C, H, W), or build the model with "
                     "data_format='channels_last'")
    return text


def prepare_targets(model, y, n, what):
    """The targets as a list (one per output) in the form each loss takes."""
    owner = f"{model._owner}.{what}"
    if y is None:
        raise ValueError(f"{owner}: y is required (the targets)")
    losses = _output_losses(model)
    outs = model._graph.outputs
    items = _as_list(y, len(outs), _output_names(model), "target y", owner)
    ys = []
    for t, loss, out in zip(items, losses, outs):
        if loss is None:
            ys.append(None)
            continue
        out_shape = (None,) + tuple(out.per_sample_shape)
        t = _target_layout(model, np.asarray(t), out.per_sample_shape)
        t = loss.prepare_target(t, out_shape, owner=owner)
        if len(t) != n:
            raise ValueError(f"{owner}: x has {n} samples but y has {len(t)}")
        ys.append(t)
    return ys


def _target_layout(model, y, out_shape):
    """NHWC targets of a channels_last model (an autoencoder's images) -> NCHW."""
    channels_last = getattr(model, "_channels_last", model.data_format == "channels_last")
    if channels_last and y.ndim == 4 and len(out_shape) == 3 and \
            tuple(y.shape[1:]) == (out_shape[1], out_shape[2], out_shape[0]):
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return y


def user_outputs(model, outs):
    """Outputs as the user sees them: NHWC for a channels_last model's images, one array for
    a model of one output."""
    channels_last = getattr(model, "_channels_last", model.data_format == "channels_last")
    res = []
    for o in outs:
        if channels_last and isinstance(o, np.ndarray) and o.ndim == 4:
            o = np.ascontiguousarray(o.transpose(0, 2, 3, 1))
        res.append(o)
    return res[0] if model._single_output else res


def _sample_weights(sample_weight, class_weight, ys, n, owner):
    """Per-sample weights (n,) from sample_weight and class_weight, or None."""
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
        if sw.shape != (n,):
            raise ValueError(f"{owner}: sample_weight must have one value per sample ({n}), got "
                             f"shape {np.shape(sample_weight)}")
        if not np.all(np.isfinite(sw)) or np.any(sw < 0):
            raise ValueError(f"{owner}: sample_weight must be finite and >= 0")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"{owner}: class_weight must be a dict class -> weight, got "
                            f"{type(class_weight).__name__}")
        y = ys[0]
        labels = y if y.ndim == 1 else (y.argmax(axis=1) if y.shape[1] > 1 else (y[:, 0] > 0.5))
        cw = np.ones(n, dtype=np.float32)
        for cls, weight in class_weight.items():
            cw[labels == int(cls)] = float(weight)
        sw = cw if sw is None else sw * cw
    return np.ascontiguousarray(sw) if sw is not None else None


# ------------------------------------------------------------------------------------ steps
def _loss_and_grads(model, losses, outs, ys, sw, logits):
    """(total loss, [dout per output]) for a batch: each output's loss, weighted by
    loss_weights, on logits or on the output as the plan says."""
    total, douts = 0.0, []
    weights = model.loss_weights or [1.0] * len(losses)
    for loss, out, y, lw, is_logits in zip(losses, outs, ys, weights, logits):
        if loss is None:
            douts.append(None)
            continue
        value, grad = _call_loss(loss, out, y, sw, is_logits)
        if lw != 1.0:
            value *= lw
            grad = grad * np.float32(lw)
        total += value
        douts.append(grad)
    return total, douts


def _call_loss(loss, out, y, sw, is_logits):
    if sw is None and is_logits == getattr(loss, "expects_logits", False):
        return loss.forward_backward(out, y)     # the call every loss takes, old ones included
    try:
        return loss.forward_backward(out, y, sample_weight=sw, logits=is_logits)
    except TypeError:
        raise NotImplementedError(f"loss {loss.name!r} takes neither sample weights nor a logits "
                                  "flag (fastconv.losses.Loss.forward_backward)") from None


def _nonfinite_message(model, value, xs, owner):
    for i, a in enumerate(xs):
        if isinstance(a, np.ndarray) and not np.all(np.isfinite(a)):
            return (f"{owner}: the loss became {value} because input {i} of this batch has NaN or "
                    "Inf values; clean the data")
    for layer in model._graph.primitive_layers():
        for p in layer.params:
            if not np.all(np.isfinite(p)):
                return (f"{owner}: the loss became {value}: the weights of layer {layer.name!r} "
                        "are no longer finite (training diverged); lower the learning rate "
                        f"(now {_lr_text(model)})")
    return (f"{owner}: the loss became {value} with finite data and weights: the model's outputs "
            f"overflowed; lower the learning rate (now {_lr_text(model)}) or scale the inputs")


def _lr_text(model):
    try:
        return f"{float(model.optimizer.learning_rate):g}"
    except (TypeError, ValueError, AttributeError):
        return "?"


class _Scores:
    """The running loss and metrics of an epoch (or of an evaluation) on the host.

    Metrics see the model's first output as predict would give it: where the plan fused the
    final activation into the loss, it is applied here, except for "accuracy" after a fused
    softmax, whose argmax the logits already give (fastconv.metrics.count_correct).
    """

    def __init__(self, model, plan):
        self.metrics = list(model.metrics)
        self.fused = plan.fused[0] if plan.fused else None
        self.plain_accuracy = all(isinstance(m, _metrics.AutoAccuracy) for m in self.metrics)
        self.reset()

    def reset(self):
        self.loss_sum, self.count = 0.0, 0
        for m in self.metrics:
            m.reset_state()

    def add(self, loss, m, out, y, sw):
        self.loss_sum += loss * m
        self.count += m
        if self.metrics:
            pred = self.prediction(out)
            for metric in self.metrics:
                metric.update_state(y, pred, sample_weight=sw)

    def prediction(self, out):
        if self.fused is None or (self.fused == "softmax" and self.plain_accuracy):
            return out
        if self.fused == "softmax":
            z = out - out.max(axis=-1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=-1, keepdims=True)
        if self.fused == "sigmoid":
            return np.exp(-np.logaddexp(0.0, -out)).astype(np.float32)
        return out

    def logs(self):
        logs = {"loss": self.loss_sum / max(self.count, 1)}
        for metric in self.metrics:
            logs[metric.name] = float(metric.result())
        return logs

    def reduced_logs(self, dp):
        """The logs over the samples of every rank (each metric's running total and count
        summed over the ranks)."""
        sums = [self.loss_sum, float(self.count)]
        for metric in self.metrics:
            sums += [float(metric.total), float(metric.count)]
        sums = [float(v) for v in dp.reduce_sums(sums)]
        logs = {"loss": sums[0] / max(sums[1], 1.0)}
        for i, metric in enumerate(self.metrics):
            total, count = sums[2 + 2 * i:4 + 2 * i]
            logs[metric.name] = total / count if count else 0.0
        return logs


class _HostStep:
    """One CPU training step of a compiled model: forward, loss, backward, optimiser."""

    def __init__(self, model):
        self.model = model
        self.trainer = _trainer(model)
        self.losses = _output_losses(model)
        self.plan = _loss_plan(model, "train", self.losses, self.trainer.ids)

    def __call__(self, xs, ys, sw, owner, scores, dp=None, global_count=0):
        model = self.model
        loss = 0.0
        if len(xs[0]):
            ctx = B.Context(True, CPU)
            outs, tape = G.forward(self.plan, ctx, xs, True)
            loss, douts = _loss_and_grads(model, self.losses, outs, ys, sw, self.plan.logits)
            if not np.isfinite(loss):
                raise FloatingPointError(_nonfinite_message(model, loss, xs, owner))
            scores.add(loss, len(xs[0]), outs[0], ys[0], sw)
            G.backward(self.plan, ctx, tape, douts, self.trainer.grad_views)
        elif dp is None:
            raise ValueError(f"{owner}: an empty batch")
        if dp is not None:
            # This rank's share of the global batch: the all-reduced sum of shares weighted
            # n_r / B is the gradient of the mean loss over the whole global batch (a rank with
            # no sample of it adds zeros).
            dp.allreduce_gradients(self.trainer.grads, len(xs[0]) / global_count)
        model.optimizer.step(self.trainer.params, self.trainer.grads)
        return loss


class _CpuRunner:
    """fit's device-specific part on the CPU: batches gathered on the host, one step each."""

    live_logs = True   # running logs cost nothing to read

    def __init__(self, model):
        self.model = model
        self.step_fn = _HostStep(model)
        self.scores = _Scores(model, self.step_fn.plan)

    dp = None   # a fastconv.distributed.DataParallel when fit is distributed

    def begin(self, xs, ys, sw, batch_size, shuffle):
        self.xs, self.ys, self.sw, self.shuffle = xs, ys, sw, shuffle or self.dp is not None
        m = min(batch_size, len(xs[0]))
        self.bx = [np.empty((m,) + a.shape[1:], dtype=np.float32) for a in xs]
        self.by = [None if y is None else np.empty((m,) + y.shape[1:], dtype=y.dtype) for y in ys]
        self.bw = None if sw is None else np.empty(m, dtype=np.float32)

    def begin_epoch(self, order):
        self.order = order
        self.scores.reset()

    def step(self, lo, hi, owner, need_loss=False):
        idx = self.order[lo:hi]
        if self.dp is not None:
            idx = self.dp.shard(idx)      # this rank's part of the global batch
        m = len(idx)
        if self.shuffle:
            # mode="clip": numpy buffers `out` for mode="raise"; the indices are valid.
            xb = [a.take(idx, axis=0, out=b[:m], mode="clip") for a, b in zip(self.xs, self.bx)]
            yb = [None if y is None else y.take(idx, axis=0, out=b[:m], mode="clip")
                  for y, b in zip(self.ys, self.by)]
            wb = None if self.sw is None else self.sw.take(idx, out=self.bw[:m], mode="clip")
        else:
            xb = [a[lo:hi] for a in self.xs]
            yb = [None if y is None else y[lo:hi] for y in self.ys]
            wb = None if self.sw is None else self.sw[lo:hi]
        return self.step_fn(xb, yb, wb, owner, self.scores, self.dp, hi - lo)

    def step_batch(self, xs, ys, sw, owner):
        """A step on a batch given as arrays (fit on an iterable of batches)."""
        return self.step_fn(xs, ys, sw, owner, self.scores)

    def logs(self):
        return self.scores.logs()

    def epoch_logs(self):
        """The epoch's logs: over every rank's samples when distributed."""
        if self.dp is None:
            return self.scores.logs()
        return self.scores.reduced_logs(self.dp)

    def end_epoch(self, need_weights):
        pass

    def end(self):
        pass

    def evaluate(self, xs, ys, sw, batch_size):
        if self.dp is None:
            return _evaluate_host(self.model, xs, ys, sw, batch_size)
        from ..distributed import shard_bounds

        # Each rank evaluates its slice; the means are averaged weighted by the slice sizes.
        lo, hi = shard_bounds(len(xs[0]), self.dp.rank, self.dp.size)
        part = _evaluate_host(self.model, [a[lo:hi] for a in xs], [None if t is None else t[lo:hi]
                                                                   for t in ys],
                              None if sw is None else sw[lo:hi], batch_size) if hi > lo else \
            [0.0] * (1 + len(self.model.metrics))
        return [float(v) for v in self.dp.average(part, hi - lo)]


def _runner(model, device):
    if device == "cuda":
        from .cuda_step import CudaRunner

        return CudaRunner(model, _trainer(model))
    return _CpuRunner(model)


# ------------------------------------------------------------------------------------ fit
def _is_batch_source(x):
    """Whether x is a source of (x, y) batches (a generator, an iterator, a PyDataset-like
    object with __getitem__ and __len__) rather than arrays."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or is_device_tensor(x):
        return False
    return hasattr(x, "__next__") or hasattr(x, "__iter__") or (
        hasattr(x, "__getitem__") and hasattr(x, "__len__"))


class _BatchSource:
    """The batches of an epoch from an iterable: a generator (or iterator) is read on across
    epochs, ``steps_per_epoch`` batches each (until it runs out); an object with __len__ and
    __getitem__ (Keras's PyDataset / Sequence) gives len(x) batches an epoch; any other
    iterable is iterated afresh each epoch."""

    def __init__(self, source, steps, owner):
        self.source, self.owner = source, owner
        self.indexed = hasattr(source, "__getitem__") and hasattr(source, "__len__") and \
            not hasattr(source, "__next__")
        self.iterator = source if hasattr(source, "__next__") else None
        self.steps = steps
        if self.steps is None and self.indexed:
            self.steps = len(source)
        self.exhausted = False

    def begin_epoch(self):
        if not self.indexed and (self.iterator is None or self.iterator is not self.source):
            self.iterator = iter(self.source)

    def batch(self, step):
        """The step's batch as (x, y, sample_weight or None); StopIteration when it is done."""
        if self.steps is not None and step >= self.steps:
            raise StopIteration
        if self.indexed:
            item = self.source[step]
        else:
            try:
                item = next(self.iterator)
            except StopIteration:
                self.exhausted = True
                raise
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"{self.owner}: each batch must be (x, y) or (x, y, sample_weight), "
                             f"got {type(item).__name__}"
                             + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
        return item[0], item[1], item[2] if len(item) == 3 else None


def fit(model, x, y, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
        steps_per_epoch=None, validation_freq=1, device="cpu", distributed=False):
    """Train ``model`` for ``epochs`` passes over (x, y) in mini-batches of ``batch_size``.

    x: (N, C, H, W) (or NHWC if channels_last) or (N, features); a list (or dict by name) for a
    model of several inputs; or a generator / iterable of (x, y) or (x, y, sample_weight)
    batches (then y is None; steps_per_epoch batches an epoch, or until it runs out). y: int
    labels (N,) for sparse_categorical_crossentropy, else the loss's targets (NHWC images for a
    channels_last autoencoder). validation_data: (x_val, y_val) or (x_val, y_val,
    sample_weight_val), evaluated after each epoch (every validation_freq-th, or the epochs
    listed); validation_split: the last fraction of x and y held out for it instead (before
    shuffling, as Keras). sample_weight (N,) and class_weight ({class: weight}) weight each
    sample's loss (and the metrics). initial_epoch: the epoch to start counting from (resuming).
    steps_per_epoch: stop each epoch after that many batches. verbose: 0 silent, 1 a progress
    bar (one line per epoch when the output is not a terminal), 2 a line per epoch. device:
    "cpu", or "cuda" to train on the GPU (data, weights and optimiser state stay there for the
    whole run). distributed: train data-parallel over the ranks of an MPI job
    (fastconv.distributed). Returns the History (also ``model.history``).
    """
    from ..callbacks import CallbackList, ProgbarLogger

    owner = f"{model._owner}.fit"
    _check_compiled(model, "fit")
    device = check_device(device, owner)
    epochs = _int_arg(epochs, "epochs", owner, 0)
    batch_size = _batch_size(batch_size, owner)
    verbose = _verbose(verbose, owner)
    initial_epoch = _int_arg(initial_epoch, "initial_epoch", owner, 0)
    steps_per_epoch = _int_arg(steps_per_epoch, "steps_per_epoch", owner, 1, allow_none=True)
    if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
        raise ValueError(f"{owner}: validation_split must be a number in [0, 1), got "
                         f"{validation_split!r}")
    if isinstance(validation_freq, (list, tuple, set, range)):
        val_epochs = {int(e) for e in validation_freq}
        validate_now = lambda epoch: epoch + 1 in val_epochs  # noqa: E731
    else:
        freq = _int_arg(validation_freq, "validation_freq", owner, 1)
        validate_now = lambda epoch: (epoch + 1) % freq == 0  # noqa: E731

    source = None
    if _is_batch_source(x):
        if y is not None:
            raise ValueError(f"{owner}: x is a source of (x, y) batches, so y must be None")
        if validation_split or sample_weight is not None:
            raise ValueError(f"{owner}: validation_split and sample_weight need arrays; a batch "
                             "source gives its own (x, y, sample_weight) batches")
        if device != "cpu":
            raise NotImplementedError(f"{owner}: batches from a generator train on the CPU; give "
                                      "arrays to train on cuda")
        source = _BatchSource(x, steps_per_epoch, owner)
        if not model.built:
            first = source.batch(0) if source.indexed else None
            if first is None:
                raise ValueError(f"{owner}: build the model (or give it an input shape) before "
                                 "fitting it on a generator")
            prepare_inputs(model, first[0], "fit")
        n, xs, ys, sw = None, None, None, None
    else:
        xs = prepare_inputs(model, x, "fit")
        n = len(xs[0])
        if n == 0:
            raise ValueError(f"{owner}: x is empty")
        ys = prepare_targets(model, y, n, "fit")
        sw = _sample_weights(sample_weight, class_weight, ys, n, owner)
    if model._compiled_trainable is None:
        _snapshot_trainable(model)
    val = None
    if validation_split:
        cut = int(n * (1.0 - validation_split))
        if cut < 1 or cut >= n:
            raise ValueError(f"{owner}: validation_split={validation_split} leaves "
                             f"{cut} training and {n - cut} validation samples of {n}")
        val = ([a[cut:] for a in xs], [None if t is None else t[cut:] for t in ys],
               None if sw is None else sw[cut:])
        xs, ys = [a[:cut] for a in xs], [None if t is None else t[:cut] for t in ys]
        sw = None if sw is None else sw[:cut]
        n = cut
    if validation_data is not None:
        if validation_split:
            raise ValueError(f"{owner}: give validation_data or validation_split, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(f"{owner}: validation_data must be (x_val, y_val) or (x_val, y_val, "
                             "sample_weight_val)")
        vx = prepare_inputs(model, validation_data[0], "fit")
        vy = prepare_targets(model, validation_data[1], len(vx[0]), "fit")
        vw = (_sample_weights(validation_data[2], None, vy, len(vx[0]), owner)
              if len(validation_data) == 3 else None)
        val = (vx, vy, vw)
    if source is None:
        _check_finite(xs + [t for t in ys if t is not None], ["x"] * len(xs) + ["y"] * len(ys),
                      owner)

    runner = _runner(model, device)
    if distributed:
        if device != "cpu" or source is not None:
            raise NotImplementedError(f"{owner}: distributed=True trains on arrays on the CPU for now "
                                      "(the GPU's NCCL all-reduce is not wired into the CUDA runner)")
        runner.dp = _distributed_setup(model, n, batch_size, epochs, shuffle, owner)
        if not runner.dp.is_chief:
            verbose = 0             # only rank 0 prints
    if source is None:
        steps = (n + batch_size - 1) // batch_size
        if steps_per_epoch is not None:
            steps = min(steps, steps_per_epoch)
    else:
        steps = source.steps
    cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                       verbose=verbose, epochs=epochs, steps=steps, batch_size=batch_size,
                       samples=n)
    history = cbs.history
    user_batch = [cb for cb in cbs._with("on_train_batch_end", "on_batch_end")
                  if not isinstance(cb, ProgbarLogger)]
    bars = [cb for cb in cbs._with("on_train_batch_end") if isinstance(cb, ProgbarLogger)]
    batch_begin = cbs._with("on_train_batch_begin", "on_batch_begin")
    model.stop_training = False
    model._training_thread = threading.current_thread()
    cbs.on_train_begin()
    try:
        if source is None:
            runner.begin(xs, ys, sw, batch_size, shuffle)
            order = np.arange(n)
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            if source is None:
                if shuffle:
                    model._shuffle_rng.shuffle(order)
                runner.begin_epoch(order)
            else:
                source.begin_epoch()
                runner.begin_epoch(None)
            start_time = time.perf_counter()
            next_draw = start_time
            done, step = 0, 0
            while steps is None or step < steps:
                for cb in batch_begin:
                    cb.on_train_batch_begin(step, {})
                if source is None:
                    lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                    loss = runner.step(lo, hi, owner, bool(user_batch))
                    m = hi - lo
                else:
                    try:
                        bx, by, bw = source.batch(step)
                    except StopIteration:
                        break
                    bxs = prepare_inputs(model, bx, "fit")
                    m = len(bxs[0])
                    bys = prepare_targets(model, by, m, "fit")
                    bws = _sample_weights(bw, class_weight, bys, m, owner)
                    loss = runner.step_batch(bxs, bys, bws, owner)
                done += m
                if user_batch:
                    logs = runner.logs()
                    logs.update(batch=step, size=m, batch_loss=loss)
                    for cb in user_batch:
                        cb.on_train_batch_end(step, logs)
                if bars:
                    now = time.perf_counter()
                    last = steps is not None and step + 1 == steps
                    if runner.live_logs or now >= next_draw or last:
                        logs = runner.logs()
                        for cb in bars:
                            cb.on_train_batch_end(step, logs)
                        next_draw = now + 0.25
                step += 1
            if source is not None and steps is None and step == 0:
                raise ValueError(f"{owner}: the batch source gave no batch in epoch {epoch + 1}")
            logs = runner.epoch_logs()
            elapsed = time.perf_counter() - start_time
            if val is not None and validate_now(epoch):
                results = runner.evaluate(val[0], val[1], val[2], max(batch_size, 256))
                for name, value in zip(["loss"] + [mt.name for mt in model.metrics], results):
                    logs["val_" + name] = value
            logs["time"] = elapsed
            needs_weights = any(type(cb).on_epoch_end is not Callback.on_epoch_end
                                and not isinstance(cb, (History, ProgbarLogger)) for cb in cbs)
            runner.end_epoch(needs_weights)
            cbs.on_epoch_end(epoch, logs)
            if getattr(runner, "dp", None) is not None:
                model.stop_training = runner.dp.any(model.stop_training)   # stop together
            if model.stop_training or (source is not None and source.exhausted):
                break
    finally:
        runner.end()
        model._training_thread = None
    cbs.on_train_end()
    model.history = history
    return history


def _distributed_setup(model, n, batch_size, epochs, shuffle, owner):
    """fit's start on every rank of an MPI job: a DataParallel whose setup has checked that the
    ranks run the same model, seed and data, given them rank 0's weights and shuffling state;
    and a stream of its own per rank for the layers that draw per sample (dropout, shifts)."""
    from .. import distributed as dist
    from ..layers.core import _SeededLayer
    from .saving import model_config

    odd = [m.name for m in model.metrics if not (hasattr(m, "total") and hasattr(m, "count"))]
    if odd:
        raise NotImplementedError(f"{owner}: distributed=True averages metrics kept as a running "
                                  f"total and count; {odd} are not")
    dp = dist.DataParallel()
    config = model_config(model)
    signature = {"model": model.name, "architecture": config["model"],
                 "compile": config.get("compile"), "samples": n, "batch_size": batch_size,
                 "epochs": epochs, "shuffle": bool(shuffle)}
    layers = model._graph.primitive_layers()
    buffers, seen = [], set()
    for layer in layers:
        packed = getattr(layer, "_packed", None)
        if packed is not None and id(packed[0]) not in seen:
            seen.add(id(packed[0]))
            buffers.append(packed[0])
    dp.setup(buffers, signature, seed=model.seed, rngs=[model._shuffle_rng])
    if dp.rank > 0:
        for i, layer in enumerate(layers):
            if isinstance(layer, _SeededLayer) and layer._rng is not None:
                layer._rng = np.random.default_rng([int(layer._rng.integers(1 << 62)), dp.rank, i])
    return dp


def train_on_batch(model, x, y, sample_weight=None, class_weight=None, return_dict=False,
                   device="cpu"):
    """One optimiser step on one batch; returns [loss, metrics...] (or a dict). device="cuda"
    sends the weights (and the optimiser's state) to the GPU, steps there and brings them back."""
    owner = f"{model._owner}.train_on_batch"
    _check_compiled(model, "train_on_batch")
    device = check_device(device, owner)
    xs = prepare_inputs(model, x, "train_on_batch")
    if model._compiled_trainable is None:
        _snapshot_trainable(model)
    n = len(xs[0])
    if n == 0:
        raise ValueError(f"{owner}: x is empty")
    ys = prepare_targets(model, y, n, "train_on_batch")
    sw = _sample_weights(sample_weight, class_weight, ys, n, owner)
    if device == "cuda":
        from .cuda_step import _device_state

        if sw is not None:
            raise NotImplementedError(f"{owner}: sample and class weights are not supported on cuda")
        state = _device_state(model, _trainer(model))
        model._training_thread = threading.current_thread()
        try:
            loss, correct = state.train_batch(xs[0], ys[0], owner)
        finally:
            model._training_thread = None
        results = [loss] + [correct / (n * state.units) for _ in state.accuracy_names]
        return _results(model, results, return_dict)
    step = _HostStep(model)
    scores = _Scores(model, step.plan)
    model._training_thread = threading.current_thread()
    try:
        step(xs, ys, sw, owner, scores)
    finally:
        model._training_thread = None
    return _results(model, list(scores.logs().values()), return_dict)


def _results(model, results, return_dict):
    if not return_dict:
        return results
    names = ["loss"] + [m.name for m in model.metrics]
    return dict(zip(names, results))


# ------------------------------------------------------------------------------------ inference
def _evaluate_host(model, xs, ys, sw, batch_size):
    losses = _output_losses(model)
    plan = _loss_plan(model, "evaluate", losses)
    scores = _Scores(model, plan)
    n = len(xs[0])
    ctx = B.Context(False, CPU)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        outs, _ = G.forward(plan, ctx, [a[lo:hi] for a in xs], False)
        yb = [None if t is None else t[lo:hi] for t in ys]
        wb = None if sw is None else sw[lo:hi]
        loss, _ = _loss_and_grads(model, losses, outs, yb, wb, plan.logits)
        scores.add(loss, hi - lo, outs[0], yb[0], wb)
    return list(scores.logs().values())


def evaluate(model, x, y, batch_size=None, verbose=0, sample_weight=None, return_dict=False,
             device="cpu", one_batch=False):
    """[loss, metrics...] on (x, y), in inference mode (dropout off), in batches."""
    owner = f"{model._owner}.evaluate"
    _check_compiled(model, "evaluate")
    device = check_device(device, owner)
    batch_size = _batch_size(batch_size, owner)
    verbose = _verbose(verbose, owner)
    xs = prepare_inputs(model, x, "evaluate")
    n = len(xs[0])
    if one_batch:
        batch_size = max(n, 1)
    ys = prepare_targets(model, y, n, "evaluate")
    sw = _sample_weights(sample_weight, None, ys, n, owner)
    model._check_not_training_elsewhere("evaluate")
    if device == "cuda":
        results = _runner(model, device).evaluate(xs, ys, sw, batch_size)
    else:
        results = _evaluate_host(model, xs, ys, sw, batch_size)
    if verbose:
        names = ["loss"] + [m.name for m in model.metrics]
        print(" - ".join(f"{name}: {value:.4f}" for name, value in zip(names, results)), flush=True)
    return _results(model, results, return_dict)


def predict(model, x, batch_size=None, verbose=0, device="cpu"):
    """The model's outputs for x, in batches, inference mode."""
    owner = f"{model._owner}.predict"
    device = check_device(device, owner)
    batch_size = _batch_size(batch_size, owner)
    _verbose(verbose, owner)
    xs = prepare_inputs(model, x, "predict")
    model._check_not_training_elsewhere("predict")
    if device == "cuda":
        from .cuda_step import predict_on_device

        return user_outputs(model, predict_on_device(model, xs, batch_size))
    plan = model._plan("predict")
    n = len(xs[0])
    shapes = [t.per_sample_shape for t in model._graph.outputs]
    outs = [np.empty((n,) + tuple(s), dtype=np.float32) for s in shapes]
    ctx = B.Context(False, CPU)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        ys, _ = G.forward(plan, ctx, [a[lo:hi] for a in xs], False)
        for o, yb in zip(outs, ys):
            o[lo:hi] = yb
    return user_outputs(model, outs)


# ------------------------------------------------------------------------------------ gradients
def compute_gradients(model, x, y, training=True, sample_weight=None):
    """(loss, grads) on (x, y) for every weight of ``model.params``; nothing is updated."""
    owner = f"{model._owner}.compute_gradients"
    _check_compiled(model, "compute_gradients")
    xs = prepare_inputs(model, x, "compute_gradients")
    n = len(xs[0])
    ys = prepare_targets(model, y, n, "compute_gradients")
    sw = _sample_weights(sample_weight, None, ys, n, owner)
    layers = model._graph.primitive_layers()
    losses = _output_losses(model)
    plan = _loss_plan(model, "gradients", losses, {id(layer) for layer in layers if layer.params})
    ctx = B.Context(training, CPU)
    outs, tape = G.forward(plan, ctx, xs, True)
    loss, douts = _loss_and_grads(model, losses, outs, ys, sw, plan.logits)
    views = {id(layer): [np.zeros(p.shape, np.float32) for p in layer.params] for layer in layers}
    G.backward(plan, ctx, tape, douts, views)
    return loss, [g for layer in layers for g in views[id(layer)]]


def input_gradients(model, x, y=None, output_gradient=None, training=False):
    """The gradient w.r.t. each input of the compiled loss on (x, y), or of
    sum(output * output_gradient)."""
    owner = f"{model._owner}.input_gradients"
    xs = prepare_inputs(model, x, "input_gradients")
    n = len(xs[0])
    if output_gradient is None:
        _check_compiled(model, "input_gradients")
        ys = prepare_targets(model, y, n, "input_gradients")
        losses = _output_losses(model)
        plan = _loss_plan(model, "input_gradients", losses, set(), True)
        ctx = B.Context(training, CPU)
        outs, tape = G.forward(plan, ctx, xs, True)
        _, douts = _loss_and_grads(model, losses, outs, ys, None, plan.logits)
    else:
        plan = model._plan("input_gradients", None, set(), True, key="output")
        ctx = B.Context(training, CPU)
        outs, tape = G.forward(plan, ctx, xs, True)
        seeds = output_gradient if not model._single_output else [output_gradient]
        douts = []
        for o, s in zip(outs, seeds):
            s = _target_layout(model, np.asarray(s, dtype=np.float32), o.shape[1:])
            if s.shape != o.shape:
                raise ValueError(f"{owner}: output_gradient has shape {s.shape} but the output has "
                                 f"shape {o.shape}")
            douts.append(np.ascontiguousarray(s))
    dxs = G.backward(plan, ctx, tape, douts, {})
    specs = _input_specs(model)
    res = []
    for d, (_, channels_last, _) in zip(dxs, specs):
        if channels_last and d.ndim == 4:
            d = np.ascontiguousarray(d.transpose(0, 2, 3, 1))
        res.append(d)
    return res[0] if model._single_input else res
