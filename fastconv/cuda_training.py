"""Training a Sequential model on the GPU: ``model.fit(x, y, device="cuda")``.

What stays on the GPU for the whole run: the training set (copied once), the weights and
gradients (one flat buffer each, as on the CPU), the optimiser's state, every activation, and
the running loss and accuracy sums. A step gathers its batch on the GPU from the epoch's
permutation, runs forward and backward with fastconv's CUDA kernels, adds the loss to device
sums and updates the weights, without a single copy to or from the host. The host reads the
sums back only when the progress bar redraws (a few times a second) and at the end of an
epoch.

Launch overhead: a LeNet-5 step is about 40 small kernels, and launching them one by one from
Python costs more than running them. So after one ordinary (eager) step, the next full-size
step is recorded as a CUDA graph (fastconv._cuda.capture_begin / capture_end) and every later
step is one graph replay. What changes between steps lives in device memory (the batch
cursor and the optimiser step in ``counters``), so the same graph serves the whole run. If the
recording fails, training goes on eagerly and ``CudaTrainer.graph_error`` says why; the
environment variable FASTCONV_CUDA_GRAPHS=0 turns graphs off.

The arithmetic matches the CPU path: the same batches in the same order, the optimisers'
formulas in the same float32 operation order, so CPU and GPU training from one seed follow the
same loss curve to float tolerance (tests/test_cuda_training.py). Dropout is the exception: its
masks come from a counter-based generator on the GPU, not from NumPy's.

Supported layers: Conv2D (with or without a connection table), MaxPool2D, AvgPool2D,
GlobalAvgPool2D, Flatten, Dense, Dropout, activations, and ZeroPadding2D directly before a
Conv2D. Supported loss: sparse_categorical_crossentropy. Anything else raises
NotImplementedError naming it.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import cuda as _cuda_mod
from . import layers as L

__all__ = ["CudaTrainer", "check_device", "trainer_for"]


def check_device(device, owner):
    """Normalise a device argument: "cpu" or "cuda" (RuntimeError if no GPU for "cuda")."""
    if not isinstance(device, str) or device.lower() not in ("cpu", "cuda", "gpu"):
        raise ValueError(f"{owner}: device must be 'cpu' or 'cuda', got {device!r}")
    device = "cuda" if device.lower() in ("cuda", "gpu") else "cpu"
    if device == "cuda" and not _cuda_mod.is_available():
        raise RuntimeError(f"{owner}: device='cuda' was asked for but {_cuda_mod.why_unavailable()}")
    return device


# --------------------------------------------------------------------------- layer units
# Each unit runs one layer (or a ZeroPadding2D + Conv2D pair) on device tensors. forward keeps
# what backward needs; backward writes the layer's gradients into its views of the flat
# gradient buffer and returns dx (or None when need_dx is False).

class _Conv:
    def __init__(self, ext, conv, pad, w, g):
        self.ext, self.conv, self.pad = ext, conv, tuple(pad)
        self.w, self.g = w, g  # [kernel(, bias)] views of the flat buffers
        self.mask = (ext.Tensor.from_numpy(conv._mask) if conv._mask is not None else None)

    def forward(self, x, training):
        c = self.conv
        b = self.w[1] if c.use_bias else None
        y = self.ext.conv2d_forward(x, self.w[0], b, c._stride, self.pad, c._dilation, c._act)
        self.x, self.y = x, y
        return y

    def backward(self, dy, need_dx):
        ext, c = self.ext, self.conv
        if c._act:
            dy = ext.activation_backward(dy, self.y, c._act)
        ext.conv2d_backward_weight(dy, self.x, self.w[0].shape, c._stride, self.pad, c._dilation,
                                   out=self.g[0])
        if self.mask is not None:
            ext.multiply(self.g[0], self.mask, self.g[0])
        if c.use_bias:
            ext.conv2d_backward_bias(dy, out=self.g[1])
        dx = (ext.conv2d_backward_input(dy, self.w[0], self.x.shape, c._stride, self.pad,
                                        c._dilation) if need_dx else None)
        self.x = self.y = None
        return dx


class _Dense:
    def __init__(self, ext, dense, w, g, logits_only):
        self.ext, self.dense, self.w, self.g = ext, dense, w, g
        self.softmax = dense._softmax and not logits_only

    def forward(self, x, training):
        d = self.dense
        z = self.ext.linear_forward(x, self.w[0], self.w[1] if d.use_bias else None, d._act)
        self.x, self.y = x, z
        return self.ext.softmax(z) if self.softmax else z

    def backward(self, dy, need_dx):
        ext, d = self.ext, self.dense
        if self.softmax:
            raise NotImplementedError("Dense(activation='softmax') is only supported on cuda as "
                                      "the last layer, with a cross-entropy loss")
        if d._act:
            dy = ext.activation_backward(dy, self.y, d._act)
        dx, _, _ = ext.linear_backward(dy, self.x, self.w[0], dw_out=self.g[0],
                                       db_out=self.g[1] if d.use_bias else None)
        self.x = self.y = None
        return dx if need_dx else None


class _MaxPool:
    def __init__(self, ext, layer):
        self.ext, self.l = ext, layer

    def forward(self, x, training):
        self.x = x
        return self.ext.max_pool2d_forward(x, self.l._kernel, self.l._stride, self.l._pad)

    def backward(self, dy, need_dx):
        x, self.x = self.x, None
        if not need_dx:
            return None
        return self.ext.max_pool2d_backward(dy, x, self.l._kernel, self.l._stride, self.l._pad)


class _AvgPool:
    def __init__(self, ext, layer, global_pool=False):
        self.ext, self.l, self.global_pool = ext, layer, global_pool

    def forward(self, x, training):
        self.x_shape = x.shape
        if self.global_pool:
            y = self.ext.avg_pool2d_forward(x, self.l._kernel, self.l._kernel, (0, 0, 0, 0), True)
            return y.reshape(x.shape[0], x.shape[1])
        return self.ext.avg_pool2d_forward(x, self.l._kernel, self.l._stride, self.l._pad,
                                           self.l.count_include_pad)

    def backward(self, dy, need_dx):
        if not need_dx:
            return None
        if self.global_pool:
            n, c = self.x_shape[0], self.x_shape[1]
            return self.ext.avg_pool2d_backward(dy.reshape(n, c, 1, 1), self.x_shape,
                                                self.l._kernel, self.l._kernel, (0, 0, 0, 0), True)
        return self.ext.avg_pool2d_backward(dy, self.x_shape, self.l._kernel, self.l._stride,
                                            self.l._pad, self.l.count_include_pad)


class _Flatten:
    def forward(self, x, training):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx):
        return dy.reshape(*self.x_shape) if need_dx else None


class _Dropout:
    def __init__(self, ext, layer, seed, counters):
        self.ext, self.rate, self.seed, self.counters = ext, layer.rate, seed, counters

    def forward(self, x, training):
        self.mask = None
        if not training or self.rate == 0.0:
            return x
        y = self.ext.Tensor.empty(x.shape, "float32")
        self.mask = self.ext.Tensor.empty(x.shape, "float32")
        self.ext.dropout_forward(x, y, self.mask, self.rate, self.seed, self.counters)
        return y

    def backward(self, dy, need_dx):
        if not need_dx:
            return None
        if self.mask is None:
            return dy
        dx = self.ext.Tensor.empty(dy.shape, "float32")
        self.ext.multiply(dy, self.mask, dx)
        self.mask = None
        return dx


class _Act:
    def __init__(self, ext, layer):
        self.ext, self.l = ext, layer
        if layer._softmax:
            raise NotImplementedError("a softmax Activation layer is only supported on cuda as the "
                                      "last layer, with a cross-entropy loss")

    def forward(self, x, training):
        if not self.l._act:
            return x
        self.y = self.ext.activation_forward(x, self.l._act)
        return self.y

    def backward(self, dy, need_dx):
        if not need_dx:
            return None
        if not self.l._act:
            return dy
        dx = self.ext.activation_backward(dy, self.y, self.l._act)
        self.y = None
        return dx


# --------------------------------------------------------------------------- the trainer
class CudaTrainer:
    """A compiled Sequential model's GPU twin: device weights, gradients, optimiser state and
    the per-layer units that run a training step on them. Made by :func:`trainer_for`; used by
    ``Sequential.fit/evaluate/predict(device="cuda")``.

    use_graphs: record the training step as a CUDA graph after the first step (default: on,
    unless the environment variable FASTCONV_CUDA_GRAPHS is "0").
    """

    def __init__(self, model, use_graphs=None):
        self.ext = _cuda_mod.require()
        ext = self.ext
        self.model = model
        if model.loss is None or model.loss.name != "sparse_categorical_crossentropy":
            name = None if model.loss is None else model.loss.name
            raise NotImplementedError(f"Sequential: training on cuda supports the loss "
                                      f"'sparse_categorical_crossentropy', not {name!r}")
        if use_graphs is None:
            use_graphs = os.environ.get("FASTCONV_CUDA_GRAPHS", "1") != "0"
        self.use_graphs = bool(use_graphs)
        self.graph = None
        self.graph_key = None
        self.graph_error = None
        self.graph_replays = 0
        size = model._flat_params.size
        self.params = ext.Tensor.from_numpy(model._flat_params)
        self.grads = ext.Tensor.zeros((size,), "float32")
        self.counters = ext.Tensor.zeros((2,), "int64")  # [batch cursor, optimiser step]
        self.sums = ext.Tensor.zeros((3,), "int64")      # float64 [loss sum, correct, bad labels]
        self.eval_sums = ext.Tensor.zeros((3,), "int64")
        self.state = {}
        self.step_count = 0
        self._data_cache = {}
        self._views = []
        offset = 0
        for layer in model.layers:
            ws, gs = [], []
            for p in layer.params:
                ws.append(self.params.slice(offset, offset + p.size).reshape(*p.shape))
                gs.append(self.grads.slice(offset, offset + p.size).reshape(*p.shape))
                offset += p.size
            self._views.append((ws, gs))
        self._build_units()

    # --- units -------------------------------------------------------------------------------
    def _build_units(self):
        ext, model = self.ext, self.model
        model._plan()
        layers = list(model.layers)
        self.logits_mode = model._mode  # "skip_last", "dense_logits" or "logits"
        if self.logits_mode == "skip_last":
            layers = layers[:-1]
        seed_rng = np.random.default_rng(model._init_seed if model._init_seed is not None else 0)
        units, need = [], []
        i = 0
        while i < len(layers):
            layer = layers[i]
            index = model.layers.index(layer)
            ws, gs = self._views[index]
            if type(layer) is L.ZeroPadding2D and i + 1 < len(layers) and \
                    L._PaddedConv2D.fusable(layer, layers[i + 1]):
                conv = layers[i + 1]
                fused = L._PaddedConv2D(layer, conv)
                cw, cg = self._views[index + 1]
                units.append(_Conv(ext, conv, fused._pad, cw, cg))
                need.append(model._need_dx[index])
                i += 2
                continue
            if type(layer) is L.Conv2D:
                unit = _Conv(ext, layer, layer._pad, ws, gs)
            elif type(layer) is L.Dense:
                last = layer is model.layers[-1]
                unit = _Dense(ext, layer, ws, gs, logits_only=last and self.logits_mode == "dense_logits")
            elif type(layer) is L.MaxPool2D:
                unit = _MaxPool(ext, layer)
            elif type(layer) is L.AvgPool2D:
                unit = _AvgPool(ext, layer)
            elif type(layer) is L.GlobalAvgPool2D:
                unit = _AvgPool(ext, layer, global_pool=True)
            elif type(layer) is L.Flatten:
                unit = _Flatten()
            elif type(layer) is L.Dropout:
                seed = layer.seed if layer.seed is not None else int(seed_rng.integers(1 << 62))
                unit = _Dropout(ext, layer, int(seed) + 7919 * i, self.counters)
            elif isinstance(layer, L.Activation):
                unit = _Act(ext, layer)
            else:
                raise NotImplementedError(f"Sequential: layer {layer.name} ({type(layer).__name__}) "
                                          "has no CUDA implementation; train on device='cpu'")
            units.append(unit)
            need.append(model._need_dx[index])
            i += 1
        self.units = units
        self.need_dx = need
        out = model.output_shape
        if len(out) != 1:
            raise NotImplementedError("Sequential: training on cuda needs a model whose output is "
                                      f"(N, classes), got per-sample output {out}")
        self.classes = int(out[0])

    # --- weights and optimiser state to and from the host -------------------------------------
    def upload(self):
        """Copy the host weights (and optimiser state, when it matches) to the GPU."""
        model = self.model
        self.params.copy_(model._flat_params)
        opt = model.optimizer
        self.step_count = int(opt.iterations)
        self.counters.copy_(np.array([0, self.step_count], dtype=np.int64))
        host = opt._state[0] if opt._state is not None and len(opt._state) == 1 else None
        self.state = {}
        for key in self._state_keys():
            if host is not None and key in host and host[key].shape == model._flat_params.shape:
                self.state[key] = self.ext.Tensor.from_numpy(host[key])
            else:
                self.state[key] = self.ext.Tensor.zeros(model._flat_params.shape, "float32")

    def download(self):
        """Copy the GPU weights and optimiser state back into the model (and its optimiser)."""
        model = self.model
        np.copyto(model._flat_params, self.params.numpy())
        opt = model.optimizer
        opt.iterations = self.step_count
        if self.state:
            if opt._state is None or len(opt._state) != 1:
                opt._state = [opt._new_state(model._flat_params)]
            for key, tensor in self.state.items():
                np.copyto(opt._state[0][key], tensor.numpy())

    def _state_keys(self):
        from . import optimizers as O
        opt = self.model.optimizer
        if isinstance(opt._learning_rate, O.schedules.LearningRateSchedule) or any(
                getattr(opt, k, None) is not None for k in ("clipnorm", "clipvalue", "global_clipnorm")):
            raise NotImplementedError("Sequential: training on cuda takes a fixed learning rate "
                                      "(no schedule) and no gradient clipping yet")
        if type(opt) is O.Adam:
            return ("m", "v")
        if type(opt) is O.SGD:
            return ("velocity",) if opt.momentum else ()
        raise NotImplementedError(f"Sequential: training on cuda supports the SGD and Adam "
                                  f"optimizers, not {type(opt).__name__}")

    def _optimizer_step(self):
        from . import optimizers as O
        ext, opt = self.ext, self.model.optimizer
        if type(opt) is O.Adam:
            ext.adam_update(self.params, self.grads, self.state["m"], self.state["v"],
                            opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon,
                            opt.weight_decay, self.counters)
        else:
            ext.sgd_update(self.params, self.grads, self.state.get("velocity"), opt.learning_rate,
                           opt.momentum, opt.weight_decay, opt.nesterov)

    def _optimizer_key(self):
        return tuple(sorted(self.model.optimizer.get_config().items()))

    # --- data ----------------------------------------------------------------------------------
    def to_device(self, x, y):
        """(x, y) as device tensors, copied once per array and kept while the same arrays come
        back (fit then evaluate on the same data copies nothing twice)."""
        ext = self.ext
        key = (id(x), x.shape, id(y), y.shape)
        hit = self._data_cache.get(key)
        if hit is not None and hit[0] is x and hit[1] is y:
            return hit[2], hit[3]
        xd = x if isinstance(x, ext.Tensor) else ext.Tensor.from_numpy(np.ascontiguousarray(x, np.float32))
        yd = ext.Tensor.from_numpy(np.ascontiguousarray(y, np.int64))
        if len(self._data_cache) >= 4:
            self._data_cache.clear()
        self._data_cache[key] = (x, y, xd, yd)
        return xd, yd

    # --- one step -------------------------------------------------------------------------------
    def _forward(self, x, training):
        for unit in self.units:
            x = unit.forward(x, training)
        return x

    def _step(self, x_all, y_all, perm, batch_stride, xb, yb):
        """One training step on the batch at the cursor: no host copy, no sync."""
        ext = self.ext
        ext.gather_batch(x_all, y_all, perm, self.counters, batch_stride, xb, yb)
        logits = self._forward(xb, True)
        dlogits = ext.Tensor.empty(logits.shape, "float32")
        ext.softmax_xent_sums(logits, yb, dlogits, self.sums)
        grad = dlogits
        for unit, need_dx in zip(reversed(self.units), reversed(self.need_dx)):
            grad = unit.backward(grad, need_dx)
        self._optimizer_step()
        ext.step_end(self.counters)

    def _run_full_step(self, args):
        """A full-size step: eager the first time, then recorded once and replayed."""
        key = (args[3], tuple(args[4].shape), self._optimizer_key())
        if self.graph is not None and self.graph_key == key:
            self.graph.replay()
            self.graph_replays += 1
            return
        if not self.use_graphs or self.graph_error is not None or self.graph_key == ("eager",) + key:
            self._step(*args)
            return
        if self.graph_key != ("warm",) + key:
            # The first step of this shape runs eagerly: it fills the allocator's cache and
            # checks that the step works at all before it is recorded.
            self.graph = None
            self._step(*args)
            self.graph_key = ("warm",) + key
            return
        ext = self.ext
        try:
            ext.capture_begin()
            try:
                self._step(*args)
            except BaseException:
                ext.capture_abort()
                raise
            self.graph = ext.capture_end()
        except Exception as err:  # recording failed: go on without graphs
            self.graph = None
            self.graph_error = f"{type(err).__name__}: {err}"
            self.graph_key = ("eager",) + key
            # The step was recorded, not run (or the record was dropped): run it now.
            self._step(*args)
            return
        self.graph_key = key
        self.graph.replay()
        self.graph_replays += 1

    def read_sums(self):
        """(loss sum, correct count, bad labels) so far this epoch (waits for the GPU)."""
        loss, correct, bad = self.sums.numpy().view(np.float64)
        return float(loss), float(correct), float(bad)

    # --- an epoch -------------------------------------------------------------------------------
    def train_epoch(self, x_all, y_all, perm_host, batch_size, on_progress=None, per_batch=None):
        """One pass over the permutation ``perm_host`` in batches of ``batch_size``.

        on_progress(done, loss_sum, correct) is called a few times a second (each call reads
        the sums back). per_batch(step, loss, size), when given, is called after every step
        with that batch's mean loss (one read-back per step: slower). Returns (loss_sum,
        correct) for the epoch.
        """
        ext = self.ext
        n = len(perm_host)
        if getattr(self, "_perm", None) is None or self._perm.shape != (n,):
            self._perm = ext.Tensor.empty((n,), "int64")
        self._perm.copy_(np.ascontiguousarray(perm_host, np.int64))
        self.counters.copy_(np.array([0, self.step_count], dtype=np.int64))
        self.sums.zero_()
        sample = tuple(x_all.shape[1:])
        full, rest = divmod(n, batch_size)
        if full:
            if getattr(self, "_xb", None) is None or self._xb.shape != (batch_size,) + sample:
                self._xb = ext.Tensor.empty((batch_size,) + sample, "float32")
                self._yb = ext.Tensor.empty((batch_size,), "int64")
        args = (x_all, y_all, self._perm, batch_size, getattr(self, "_xb", None),
                getattr(self, "_yb", None))
        next_report = time.perf_counter() + 0.25
        previous = 0.0
        for step in range(full + (1 if rest else 0)):
            if step < full:
                self._run_full_step(args)
                size = batch_size
            else:
                xr = ext.Tensor.empty((rest,) + sample, "float32")
                yr = ext.Tensor.empty((rest,), "int64")
                self._step(x_all, y_all, self._perm, batch_size, xr, yr)
                size = rest
            self.step_count += 1
            done = min(n, (step + 1) * batch_size)
            if per_batch is not None:
                loss_sum, _, bad = self.read_sums()
                self._check(loss_sum, bad)
                per_batch(step, (loss_sum - previous) / size, size)
                previous = loss_sum
            if on_progress is not None and (time.perf_counter() >= next_report or done == n):
                loss_sum, correct, bad = self.read_sums()
                self._check(loss_sum, bad)
                on_progress(done, loss_sum, correct)
                next_report = time.perf_counter() + 0.25
        loss_sum, correct, bad = self.read_sums()
        self._check(loss_sum, bad)
        return loss_sum, correct

    @staticmethod
    def _check(loss_sum, bad):
        if bad:
            raise ValueError("Sequential.fit: some labels are outside [0, classes)")
        if not np.isfinite(loss_sum):
            raise FloatingPointError(f"Sequential.fit: the loss became {loss_sum}; lower the "
                                     "learning rate")

    # --- inference ------------------------------------------------------------------------------
    def evaluate(self, x_all, y_all, batch_size):
        """(loss sum, correct) over device tensors x_all, y_all in inference mode."""
        ext = self.ext
        self.eval_sums.zero_()
        n = x_all.shape[0]
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            logits = self._forward(x_all.slice(lo, hi), False)
            scratch = ext.Tensor.empty(logits.shape, "float32")
            ext.softmax_xent_sums(logits, y_all.slice(lo, hi), scratch, self.eval_sums)
        loss, correct, bad = self.eval_sums.numpy().view(np.float64)
        if bad:
            raise ValueError("Sequential.evaluate: some labels are outside [0, classes)")
        return float(loss), float(correct)

    def predict(self, x_all, batch_size):
        """The model's outputs (probabilities after a final softmax) as a NumPy array."""
        ext = self.ext
        n = x_all.shape[0]
        out = np.empty((n, self.classes), dtype=np.float32)
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            y = self._forward(x_all.slice(lo, hi), False)
            if self.logits_mode != "logits":
                y = ext.softmax(y)
            out[lo:hi] = y.numpy()
        return out


def trainer_for(model):
    """The model's CudaTrainer, made on first use and kept while the model's weights keep their
    layout (a rebuild or recompile makes a new one)."""
    key = (id(model._flat_params), id(model.optimizer), id(model.loss))
    trainer = getattr(model, "_cuda_trainer", None)
    if trainer is None or trainer._key != key:
        trainer = CudaTrainer(model)
        trainer._key = key
        model._cuda_trainer = trainer
    return trainer
