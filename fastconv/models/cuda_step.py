"""The GPU side of training: ``model.fit(x, y, device="cuda")``.

The loop is fastconv.models.training's, and the layers are the model's own: this module only
holds what lives on the GPU and the step that drives the layers there.

What stays on the GPU for the whole run: the training set (copied once), the weights and
gradients (one device buffer per host flat buffer, each layer seeing views), the optimiser's
state, every activation, and the running loss and accuracy sums. A step gathers its batch on
the GPU from the epoch's permutation, runs the model's plan forward and backward with a CUDA
Context (the layers read their weights as device views, fastconv.layers.base.Context), adds the
loss to device sums and updates the weights, without a single copy to or from the host. The
host reads the sums back only when the progress bar redraws and at the end of an epoch.

Launch overhead: a LeNet-5 step is about 40 small kernels, and launching them one by one from
Python costs more than running them. So after one ordinary (eager) step, the next full-size
step is recorded as a CUDA graph (fastconv._cuda.capture_begin / capture_end) and every later
step is one graph replay. What changes between steps lives in device memory (the batch cursor
and the optimiser step in ``counters``), so the same graph serves the whole run; a change of
the learning rate records it again. If the recording fails, training goes on eagerly and
``graph_error`` says why; the environment variable FASTCONV_CUDA_GRAPHS=0 turns graphs off.

The arithmetic matches the CPU path: the same batches in the same order, the optimisers'
formulas in the same float32 operation order, so CPU and GPU training from one seed follow the
same loss curve to float tolerance. Dropout is the exception: its masks come from a
counter-based generator on the GPU, not from NumPy's.

Supported here: every layer whose ops the CUDA backend has (fastconv.backend.CudaBackend;
batch normalisation's running statistics live on the device too and come back with the weights),
the loss sparse_categorical_crossentropy on a model of one (N, classes) output, and the SGD and
Adam optimisers. Anything else raises NotImplementedError naming it.
"""
from __future__ import annotations

import os

import numpy as np

from .. import cuda as _cuda_mod
from .. import optimizers as O
from ..backend import backend_for
from ..layers import base as B
from . import graph as G

__all__ = ["CudaRunner", "predict_on_device"]


class _DeviceWeights:
    """Device copies of the weight buffers of ``layers``: one tensor per host flat buffer, and
    per layer the views of its params (what ``Context.weights`` hands the layer)."""

    def __init__(self, ext, layers):
        self.ext = ext
        self.buffers = {}   # id(host flat) -> (host flat, device tensor)
        self.views = {}     # id(layer) -> [device views]; ("state", id(layer)) -> [device copies]
        self.states = []    # (host array, device tensor) of the non-trainable state
        for layer in layers:
            if layer.state:
                copies = [ext.Tensor.from_numpy(a) for a in layer.state]
                self.views[("state", id(layer))] = copies
                self.states += list(zip(layer.state, copies))
            if not layer.params:
                self.views[id(layer)] = []
                continue
            flat, offsets = layer._packed
            if id(flat) not in self.buffers:
                self.buffers[id(flat)] = (flat, ext.Tensor.from_numpy(flat))
            dev = self.buffers[id(flat)][1]
            self.views[id(layer)] = [dev.slice(o, o + p.size).reshape(*p.shape)
                                     for p, o in zip(layer.params, offsets)]

    def upload(self):
        for flat, dev in self.buffers.values():
            dev.copy_(flat)
        for host, dev in self.states:
            dev.copy_(host)

    def download(self):
        for flat, dev in self.buffers.values():
            np.copyto(flat, dev.numpy())
        for host, dev in self.states:
            np.copyto(host, dev.numpy())


class _DeviceState:
    """Everything a compiled model keeps on the GPU between fit calls (made once per model,
    compile and weight layout; see ``_device_state``)."""

    def __init__(self, model, trainer, use_graphs=None):
        self.ext = _cuda_mod.require()
        ext = self.ext
        self.model = model
        self.backend = backend_for(ext.Tensor.zeros((1,), "float32"))
        from ..metrics import AutoAccuracy
        from .training import _loss_plan

        losses = model.losses
        from .. import losses as _losses

        kinds = {_losses.SparseCategoricalCrossentropy: "sparse_ce", _losses.MeanSquaredError: "mse",
                 _losses.BinaryCrossentropy: "bce"}
        loss = losses[0] if len(model._graph.outputs) == 1 and len(losses) == 1 else None
        self.loss_kind = kinds.get(type(loss)) if loss is not None else None
        if self.loss_kind is None or _unweighted_options(loss):
            name = [None if item is None else item.name for item in losses]
            raise NotImplementedError(
                f"{model._owner}: training on cuda supports one output with the loss "
                f"'sparse_categorical_crossentropy', 'mse' or 'binary_crossentropy' (from logits, "
                f"Keras's default reduction, no label smoothing), not {name}")
        out = model._graph.outputs[0].per_sample_shape
        if self.loss_kind == "sparse_ce" and len(out) != 1:
            raise NotImplementedError(f"{model._owner}: training on cuda needs a model whose output is "
                                      f"(N, classes), got per-sample output {out}")
        self.units = 1 if self.loss_kind == "sparse_ce" else int(np.prod(out))
        if self.loss_kind == "mse" and model.metrics:
            raise NotImplementedError(f"{model._owner}: on cuda an mse model reports the loss only; "
                                      "its metrics need device='cpu'")
        opt = model.optimizer
        if type(opt) not in (O.Adam, O.SGD):
            raise NotImplementedError(f"{model._owner}: training on cuda supports the SGD and Adam "
                                      f"optimizers, not {type(opt).__name__}")
        if isinstance(getattr(opt, "_learning_rate", None), O.schedules.LearningRateSchedule) or any(
                getattr(opt, k, None) is not None for k in ("clipnorm", "clipvalue", "global_clipnorm")):
            raise NotImplementedError(f"{model._owner}: training on cuda takes a fixed learning rate "
                                      "(no schedule) and no gradient clipping yet; change the rate "
                                      "between epochs with a callback instead")
        others = [m.name for m in model.metrics if not isinstance(m, AutoAccuracy)]
        if others:
            raise NotImplementedError(f"{model._owner}: on cuda the metrics are the loss and "
                                      f"'accuracy'; {others} need device='cpu'")
        self.accuracy_names = [m.name for m in model.metrics]
        if use_graphs is None:
            use_graphs = os.environ.get("FASTCONV_CUDA_GRAPHS", "1") != "0"
        self.use_graphs = bool(use_graphs)
        self.graph = None
        self.graph_key = None
        self.graph_error = None
        self.graph_replays = 0
        layers = model._graph.primitive_layers()
        self.weights = _DeviceWeights(ext, layers)
        self.trainer = trainer
        # Gradients: one device buffer per host buffer that holds trainable weights.
        grad_buffers = {}
        self.grad_views = {}
        for layer in trainer.layers:
            flat, offsets = layer._packed
            if id(flat) not in grad_buffers:
                grad_buffers[id(flat)] = ext.Tensor.zeros((flat.size,), "float32")
            g = grad_buffers[id(flat)]
            self.grad_views[id(layer)] = [g.slice(o, o + p.size).reshape(*p.shape)
                                          for p, o in zip(layer.params, offsets)]
        self.runs = []  # (device params view, device grads view) per optimiser run
        for flat, a, b in trainer.runs:
            dev = self.weights.buffers[id(flat)][1]
            g = grad_buffers[id(flat)]
            self.runs.append((dev.slice(a, b), g.slice(a, b)))
        self.counters = ext.Tensor.zeros((2,), "int64")  # [batch cursor, optimiser step]
        self.sums = ext.Tensor.zeros((3,), "int64")      # float64 [loss sum, correct, bad labels]
        self.eval_sums = ext.Tensor.zeros((3,), "int64")
        self.opt_state = []
        self.step_count = 0
        self._data_cache = {}
        seed_rng = np.random.default_rng(model._init_seed if model._init_seed is not None else 0)
        self.seeds = {}
        from ..layers.core import Dropout

        for i, layer in enumerate(layers):
            if isinstance(layer, Dropout):
                seed = layer.seed if layer.seed is not None else int(seed_rng.integers(1 << 62))
                self.seeds[id(layer)] = int(seed) + 7919 * i
        self.plan = _loss_plan(model, "train", losses, trainer.ids)
        self.eval_plan = _loss_plan(model, "evaluate", losses)
        if self.loss_kind != "mse" and not self.plan.logits[0]:
            raise NotImplementedError(f"{model._owner}: on cuda the cross-entropy reads logits; this "
                                      "loss reads probabilities (from_logits=False without a final "
                                      "softmax or sigmoid): train on device='cpu'")
        self.key = _state_key(model)

    # --- contexts --------------------------------------------------------------------------
    def context(self, training):
        return B.Context(training, self.backend, self.weights.views, self.counters, self.seeds)

    # --- weights and optimiser state to and from the host -------------------------------------
    def upload(self):
        """Copy the host weights (and optimiser state, when it matches) to the GPU."""
        self.weights.upload()
        opt = self.model.optimizer
        self.step_count = int(opt.iterations)
        self.counters.copy_(np.array([0, self.step_count], dtype=np.int64))
        host = opt._state if opt._state is not None and len(opt._state) == len(self.runs) else None
        keys = self._state_keys()
        self.opt_state = []
        for i, (p, _) in enumerate(self.runs):
            state = {}
            for key in keys:
                if host is not None and key in host[i] and host[i][key].size == p.size:
                    state[key] = self.ext.Tensor.from_numpy(host[i][key])
                else:
                    state[key] = self.ext.Tensor.zeros((p.size,), "float32")
            self.opt_state.append(state)

    def download(self):
        """Copy the GPU weights and optimiser state back into the model (and its optimiser)."""
        self.weights.download()
        opt = self.model.optimizer
        opt.iterations = self.step_count
        if self.opt_state and any(self.opt_state):
            if opt._state is None or len(opt._state) != len(self.runs):
                opt._state = [opt._new_state(p) for p in self.trainer.params]
            for host, dev in zip(opt._state, self.opt_state):
                for key, tensor in dev.items():
                    np.copyto(host[key], tensor.numpy())

    def _state_keys(self):
        opt = self.model.optimizer
        if type(opt) is O.Adam:
            return ("m", "v")
        return ("velocity",) if opt.momentum else ()

    def _optimizer_step(self):
        ext, opt = self.ext, self.model.optimizer
        for (p, g), state in zip(self.runs, self.opt_state):
            if type(opt) is O.Adam:
                ext.adam_update(p, g, state["m"], state["v"], opt.learning_rate, opt.beta_1,
                                opt.beta_2, opt.epsilon, opt.weight_decay, self.counters)
            else:
                ext.sgd_update(p, g, state.get("velocity"), opt.learning_rate, opt.momentum,
                               opt.weight_decay, opt.nesterov)

    def _optimizer_key(self):
        return tuple(sorted(self.model.optimizer.get_config().items()))

    # --- data ----------------------------------------------------------------------------------
    def to_device(self, x, y):
        """(x, y) as device tensors, copied once per array and kept while the same arrays come
        back (fit then evaluate on the same data copies nothing twice). Class ids go as int64,
        the float targets of mse and binary cross-entropy as float32."""
        ext = self.ext
        key = (id(x), x.shape, id(y), y.shape)
        hit = self._data_cache.get(key)
        if hit is not None and hit[0] is x and hit[1] is y:
            return hit[2], hit[3]
        xd = x if isinstance(x, ext.Tensor) else ext.Tensor.from_numpy(np.ascontiguousarray(x, np.float32))
        dtype = np.int64 if self.loss_kind == "sparse_ce" else np.float32
        yd = ext.Tensor.from_numpy(np.ascontiguousarray(y, dtype))
        if len(self._data_cache) >= 4:
            self._data_cache.clear()
        self._data_cache[key] = (x, y, xd, yd)
        return xd, yd

    def target_buffer(self, shape):
        """A device batch of targets: int64 class ids, or float32 for mse and bce."""
        if self.loss_kind == "sparse_ce":
            return self.ext.Tensor.empty((shape[0],), "int64")
        return self.ext.Tensor.empty(tuple(shape), "float32")

    # --- one step -------------------------------------------------------------------------------
    def _gather(self, x_all, y_all, perm, batch_stride, xb, yb):
        """xb, yb = the batch at the cursor (float targets through a second gather of the same
        rows, with throwaway labels)."""
        ext = self.ext
        if self.loss_kind == "sparse_ce":
            ext.gather_batch(x_all, y_all, perm, self.counters, batch_stride, xb, yb)
            return
        m, s = xb.shape[0], x_all.shape[0]
        if getattr(self, "_no_labels", None) is None or self._no_labels[0].shape[0] != s:
            self._no_labels = (ext.Tensor.zeros((s,), "int64"), {})
        labels, scratch = self._no_labels
        if m not in scratch:
            scratch[m] = ext.Tensor.empty((m,), "int64")
        ext.gather_batch(x_all, labels, perm, self.counters, batch_stride, xb, scratch[m])
        ext.gather_batch(y_all, labels, perm, self.counters, batch_stride, yb, scratch[m])

    def _loss(self, out, yb, sums):
        """d loss / d out, the batch's loss added to the device ``sums``."""
        ext = self.ext
        grad = ext.Tensor.empty(out.shape, "float32")
        if self.loss_kind == "sparse_ce":
            ext.softmax_xent_sums(out, yb, grad, sums)
        elif self.loss_kind == "mse":
            ext.mse_sums(out, yb, grad, sums.slice(0, 1))
        else:
            ext.bce_with_logits_sums(out, yb, grad, sums.slice(0, 2))
        return grad

    def _step(self, x_all, y_all, perm, batch_stride, xb, yb):
        """One training step on the batch at the cursor: no host copy, no sync."""
        self._gather(x_all, y_all, perm, batch_stride, xb, yb)
        self._train_on(xb, yb)
        self.ext.step_end(self.counters)

    def _train_on(self, xb, yb):
        ctx = self.context(True)
        outs, tape = G.forward(self.plan, ctx, [xb], True)
        grad = self._loss(outs[0], yb, self.sums)
        G.backward(self.plan, ctx, tape, [grad], self.grad_views)
        self._optimizer_step()

    def train_batch(self, x, y, owner):
        """One optimiser step on host arrays x, y (train_on_batch on the GPU): the weights and
        the optimiser's state go up, one step runs, they come back. Returns the batch's loss and
        correct count."""
        ext = self.ext
        self.upload()
        self.sums.zero_()
        xb, yb = self.to_device(x, y)
        self._train_on(xb, yb)
        self.step_count += 1
        self.counters.copy_(np.array([0, self.step_count], dtype=np.int64))
        loss_sum, correct, bad = self.read_sums()
        self.check(loss_sum, bad, owner)
        self.download()
        _ = ext
        return loss_sum / len(x), correct

    def run_full_step(self, args):
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

    def read_sums(self, sums=None):
        """(loss sum, correct count, bad labels) so far this epoch (waits for the GPU)."""
        loss, correct, bad = (self.sums if sums is None else sums).numpy().view(np.float64)
        if self.loss_kind == "mse":
            correct = bad = 0.0
        elif self.loss_kind == "bce":
            bad = 0.0
        return float(loss), float(correct), float(bad)

    @staticmethod
    def check(loss_sum, bad, owner):
        if bad:
            raise ValueError(f"{owner}: some labels are outside [0, classes)")
        if not np.isfinite(loss_sum):
            raise FloatingPointError(f"{owner}: the loss became {loss_sum} with finite data (fit "
                                     "checked it): training diverged; lower the learning rate")

    # --- inference ------------------------------------------------------------------------------
    def evaluate(self, x_all, y_all, batch_size, owner):
        """(loss sum, correct) over device tensors x_all, y_all in inference mode."""
        ext = self.ext
        self.eval_sums.zero_()
        n = x_all.shape[0]
        ctx = self.context(False)
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            outs, _ = G.forward(self.eval_plan, ctx, [x_all.slice(lo, hi)], False)
            self._loss(outs[0], y_all.slice(lo, hi), self.eval_sums)
        loss, correct, bad = self.read_sums(self.eval_sums)
        _ = ext
        if bad:
            raise ValueError(f"{owner}: some labels are outside [0, classes)")
        return float(loss), float(correct)


def _unweighted_options(loss):
    """Whether ``loss`` has settings the device losses do not implement (label smoothing, a
    reduction other than Keras's mean)."""
    return bool(getattr(loss, "label_smoothing", 0)) or \
        getattr(loss, "reduction", "sum_over_batch_size") not in ("sum_over_batch_size", "auto", "mean")


def _state_key(model):
    return (id(model.optimizer), tuple(id(loss) for loss in model.losses),
            tuple((id(layer), id(getattr(layer, "_packed", (None,))[0]))
                  for layer in model._graph.primitive_layers()))


def _device_state(model, trainer):
    state = getattr(model, "_cuda_trainer", None)
    if state is None or state.key != _state_key(model) or state.trainer is not trainer:
        state = _DeviceState(model, trainer)
        model._cuda_trainer = state
    return state


class CudaRunner:
    """fit's device-specific part on the GPU (the interface of training._CpuRunner)."""

    live_logs = False   # reading the running sums waits for the GPU: only when shown

    def __init__(self, model, trainer):
        self.model = model
        self.dev = _device_state(model, trainer)
        self.ext = self.dev.ext
        self.fitting = False

    def begin(self, xs, ys, sw, batch_size, shuffle):
        if sw is not None:
            raise NotImplementedError(f"{self.model._owner}: sample and class weights are not "
                                      "supported on cuda yet; train on device='cpu'")
        dev = self.dev
        dev.upload()
        self.fitting = True
        self.xd, self.yd = dev.to_device(xs[0], ys[0])
        self.batch_size = batch_size
        self.sample = tuple(xs[0].shape[1:])
        self.n = len(xs[0])
        self.perm = self.ext.Tensor.empty((self.n,), "int64")
        self.xb = self.ext.Tensor.empty((batch_size,) + self.sample, "float32")
        self.yb = dev.target_buffer((batch_size,) + tuple(ys[0].shape[1:]))
        self.target_sample = tuple(ys[0].shape[1:])
        self.previous = 0.0

    def begin_epoch(self, order):
        dev = self.dev
        self.perm.copy_(np.ascontiguousarray(order, np.int64))
        dev.counters.copy_(np.array([0, dev.step_count], dtype=np.int64))
        dev.sums.zero_()
        self.previous = 0.0
        self.args = (self.xd, self.yd, self.perm, self.batch_size, self.xb, self.yb)
        self.done = 0

    def step(self, lo, hi, owner, need_loss=False):
        dev, ext = self.dev, self.ext
        size = hi - lo
        if size == self.batch_size:
            dev.run_full_step(self.args)
        else:
            xr = ext.Tensor.empty((size,) + self.sample, "float32")
            yr = dev.target_buffer((size,) + self.target_sample)
            dev._step(self.xd, self.yd, self.perm, self.batch_size, xr, yr)
        dev.step_count += 1
        self.done += size
        if not need_loss:
            return None
        loss_sum, _, bad = dev.read_sums()
        dev.check(loss_sum, bad, owner)
        loss = (loss_sum - self.previous) / size
        self.previous = loss_sum
        return loss

    def logs(self):
        loss_sum, correct, bad = self.dev.read_sums()
        self.dev.check(loss_sum, bad, f"{self.model._owner}.fit")
        done = max(self.done, 1)
        logs = {"loss": loss_sum / done}
        for name in self.dev.accuracy_names:
            logs[name] = correct / (done * self.dev.units)
        return logs

    epoch_logs = logs

    def end_epoch(self, need_weights):
        if need_weights:
            self.dev.download()  # callbacks (checkpoints, early stopping) see the weights

    def end(self):
        if self.fitting:
            self.dev.download()
            self.fitting = False

    def evaluate(self, xs, ys, sw, batch_size):
        if sw is not None:
            raise NotImplementedError(f"{self.model._owner}: sample weights are not supported on "
                                      "cuda yet")
        dev = self.dev
        if not self.fitting:  # during fit the device holds the newest weights
            dev.weights.upload()
        xd, yd = dev.to_device(xs[0], ys[0])
        n = max(xd.shape[0], 1)
        loss_sum, correct = dev.evaluate(xd, yd, batch_size, f"{self.model._owner}.evaluate")
        return [loss_sum / n] + [correct / (n * dev.units) for _ in self.dev.accuracy_names]


def predict_on_device(model, xs, batch_size):
    """The model's outputs for xs (host arrays) computed on the GPU, as host arrays."""
    ext = _cuda_mod.require()
    be = backend_for(ext.Tensor.zeros((1,), "float32"))
    weights = _DeviceWeights(ext, model._graph.primitive_layers())
    ctx = B.Context(False, be, weights.views)
    plan = model._plan("predict")
    n = len(xs[0])
    shapes = [t.per_sample_shape for t in model._graph.outputs]
    outs = [np.empty((n,) + tuple(s), dtype=np.float32) for s in shapes]
    xds = [x if isinstance(x, ext.Tensor) else ext.Tensor.from_numpy(np.ascontiguousarray(x, np.float32))
           for x in xs]
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        ys, _ = G.forward(plan, ctx, [x.slice(lo, hi) for x in xds], False)
        for o, y in zip(outs, ys):
            o[lo:hi] = y.numpy()
    return outs
