"""Sequential models, training, saving, and the two reference networks.

    model = Sequential([Conv2D(32, 3, padding="same", activation="relu"), MaxPool2D(2),
                        Flatten(), Dense(10)], input_shape=(1, 28, 28), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=3, batch_size=64, validation_data=(x_test, y_test))
    loss, acc = model.evaluate(x_test, y_test)
    model.save("model.npz"); model = load_model("model.npz")

How training runs. ``fit`` converts the data once (contiguous float32 NCHW; NHWC input is
transposed once when the model is channels_last) and allocates one batch buffer; each step
gathers its samples into that buffer with ``np.take(..., out=)``, runs every layer's forward
(the layers call the compiled kernels with shapes resolved at build time), the loss, every
layer's backward in reverse, and one optimiser step. All the weights live in one flat float32
buffer (each layer's kernel and bias are views into it) and so do their gradients, so the
optimiser update is a dozen vectorised NumPy calls per step. Nothing grows from epoch to epoch.

With a cross-entropy loss the model trains on logits: if it ends in a Softmax layer (or
Dense(activation="softmax")), the loss is applied to that softmax's input with the fused
softmax_cross_entropy and the softmax's own backward is skipped; ``predict`` still returns
probabilities. A model that ends in a plain Dense is read as giving logits.

Moving weights between layouts (fastconv keeps PyTorch's: conv OIHW, dense (out, in)):

    to_pytorch_weights(model)          -> list of arrays (what model.get_weights() gives)
    from_pytorch_weights(model, ws)    ws: a list, or a state_dict-like mapping (its values in order)
    to_keras_weights(model)            -> list: conv kernels HWIO, dense kernels (in, out)
    from_keras_weights(model, ws)      the reverse

The Keras pair also permutes the rows of a Dense kernel that follows a Flatten of a (C, H, W)
map: Keras (channels_last) flattens in H, W, C order, fastconv in C, H, W order; pass
``channels_last=False`` for a Keras model built channels_first. Each layer also has
get/set_weights_keras and get/set_weights_pytorch for the layer alone (no permutation).
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from . import cuda_training as _cuda_training
from . import layers as L
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers

__all__ = [
    "Sequential", "load_model", "History", "Callback", "EarlyStopping", "lenet5", "vgg_small",
    "LENET5_C3_TABLE", "to_keras_weights", "from_keras_weights", "to_pytorch_weights",
    "from_pytorch_weights",
]

_FORMAT = "fastconv.Sequential"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------
class Callback:
    """Hooks called by ``fit``. Override the ones you need; ``self.model`` is the model.

    ``logs`` at epoch end holds loss, accuracy (with metrics=["accuracy"]), val_loss and
    val_accuracy (with validation_data); at batch end, loss and size. Set
    ``self.model.stop_training = True`` to stop after the current epoch.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Attach the model being trained."""
        self.model = model

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch (0-based) with that epoch's metrics."""

    def on_batch_end(self, batch, logs=None):
        """Called after each training step (0-based within the epoch) with its loss and size."""


class History(Callback):
    """What ``fit`` returns: ``history`` maps each metric name to its value per epoch,
    ``epoch`` lists the epochs run, ``epoch_times`` their wall-clock seconds."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self.epoch_times = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            if key == "time":
                self.epoch_times.append(value)
            else:
                self.history.setdefault(key, []).append(value)


class EarlyStopping(Callback):
    """Stop when ``monitor`` (default "val_loss") has not improved by ``min_delta`` for
    ``patience`` epochs; ``restore_best_weights`` puts back the best epoch's weights."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if not logs or self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitored metric {self.monitor!r} is not in the logs "
                             f"(have: {', '.join(sorted(logs or {}))})")
        value = logs[self.monitor]
        better = (value < self.best - self.min_delta) if self.mode == "min" else \
                 (value > self.best + self.min_delta)
        if better:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)


# --------------------------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------------------------
def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class _ProgressBar:
    """One epoch's progress: samples done, loss, accuracy, samples/s and time left.

    Uses tqdm when it is installed, else redraws one text line (only on a terminal), at most
    ten times a second so that it costs nothing measurable per step.
    """

    _interval = 0.1

    def __init__(self, total, epoch, epochs, stream=None):
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.perf_counter()
        self.next_draw = self.start + self._interval
        self.prefix = f"Epoch {epoch + 1}/{epochs}"
        self.tqdm = None
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.live:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.tqdm = tqdm(total=total, desc=self.prefix, unit="sample", unit_scale=True,
                                 leave=False, file=self.stream, mininterval=self._interval)
        self.drawn = 0

    def update(self, done, loss, accuracy):
        """Report ``done`` samples so far with the running mean loss and accuracy (or None)."""
        if not self.live:
            return
        now = time.perf_counter()
        if now < self.next_draw and done < self.total:
            return
        self.next_draw = now + self._interval
        elapsed = max(now - self.start, 1e-9)
        speed = done / elapsed
        if self.tqdm is not None:
            self.tqdm.update(done - self.drawn)
            self.drawn = done
            post = {"loss": f"{loss:.4f}"}
            if accuracy is not None:
                post["acc"] = f"{accuracy:.4f}"
            self.tqdm.set_postfix(post, refresh=False)
            return
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "=" * filled + (">" if filled < width else "") + "." * max(width - filled - 1, 0)
        left = (self.total - done) / speed if speed > 0 else 0.0
        text = (f"\r{self.prefix} [{bar}] {done}/{self.total} - loss: {loss:.4f}"
                + (f" - accuracy: {accuracy:.4f}" if accuracy is not None else "")
                + f" - {speed:,.0f} samples/s - ETA {_format_seconds(left)}   ")
        self.stream.write(text)
        self.stream.flush()

    def close(self):
        """Remove the live line (the epoch summary is printed after it)."""
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.live:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Sequential
# --------------------------------------------------------------------------------------------
class Sequential:
    """A stack of layers run one after another.

    layers: a list of fastconv.layers objects (or add them one by one with ``add``).
    input_shape: the per-sample input shape, (C, H, W) or (H, W, C) if channels_last; it may
        also come from the first layer's input_shape=, or from the data on the first call.
    seed: makes a run repeatable: the initial weights, the shuffling and dropout all draw from
        generators seeded by it.
    data_format: "channels_last" if the inputs are NHWC (converted to NCHW once at the model
        boundary); defaults to the first layer's data_format, else NCHW.
    """

    def __init__(self, layers=None, input_shape=None, seed=None, data_format=None, name="sequential"):
        self.name = name
        self.layers = []
        self.seed = seed
        self.data_format = L._check_data_format(data_format, "Sequential")
        self.declared_input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.input_shape = None   # per sample, NCHW order, once built
        self.output_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.history = None
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._init_seed, self._shuffle_rng = seeds[0], np.random.default_rng(seeds[1])
        for layer in layers or []:
            self.add(layer)

    # --- assembling ---------------------------------------------------------------------------
    def add(self, layer):
        """Append a layer (gives it a unique name if it has none)."""
        if not isinstance(layer, L.Layer):
            raise TypeError(f"Sequential.add: expected a fastconv.layers.Layer, got {type(layer).__name__}")
        if layer.name is None:
            base = layer._base_name
            taken = {other.name for other in self.layers}
            count = sum(1 for other in self.layers if other._base_name == base)
            name = base if count == 0 else f"{base}_{count}"
            while name in taken:
                count += 1
                name = f"{base}_{count}"
            layer.name = name
        self.layers.append(layer)
        self.built = False

    @property
    def _channels_last(self):
        fmt = self.data_format
        if fmt is None and self.layers:
            fmt = self.layers[0].data_format
        return fmt == "channels_last"

    def _to_channels_first(self, shape):
        shape = tuple(int(d) for d in shape)
        if self._channels_last and len(shape) == 3:
            return (shape[2], shape[0], shape[1])
        return shape

    def build(self, input_shape=None):
        """Create every layer's weights for a per-sample ``input_shape`` (as the user writes it:
        (C, H, W), or (H, W, C) when channels_last). Called by fit/predict when needed."""
        if not self.layers:
            raise ValueError("Sequential.build: the model has no layers; add some first")
        if input_shape is None:
            input_shape = self.declared_input_shape or self.layers[0].declared_input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: the input shape is unknown; pass input_shape= to "
                             "Sequential or to the first layer, or call fit/predict on data")
        shape = self._to_channels_first(input_shape)
        if self.built and shape == self.input_shape:
            return
        init_rng = np.random.default_rng(self._init_seed)
        self.input_shape = shape
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.build(shape, init_rng)
            except ValueError as err:
                raise ValueError(f"Sequential: layer {i} ({layer.name}): {err}") from None
        self.output_shape = shape
        self._pack_weights()
        self.built = True
        if self.optimizer is not None:
            self.optimizer.reset()

    def _pack_weights(self):
        """Move every weight (and gradient) into one flat buffer; layers keep views into it."""
        total = sum(p.size for layer in self.layers for p in layer.params)
        self._flat_params = np.empty(total, dtype=np.float32)
        self._flat_grads = np.zeros(total, dtype=np.float32)
        offset = 0
        for layer in self.layers:
            views, grad_views = [], []
            for p in layer.params:
                view = self._flat_params[offset:offset + p.size].reshape(p.shape)
                view[...] = p
                views.append(view)
                grad_views.append(self._flat_grads[offset:offset + p.size].reshape(p.shape))
                offset += p.size
            layer._set_params(views)
            layer.grads = grad_views
        # The first layers that have no trainable layer before them need not compute dx.
        self._need_dx = []
        seen_params = False
        for layer in self.layers:
            self._need_dx.append(seen_params)
            seen_params = seen_params or bool(layer.params)

    # --- compiling ---------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimiser (name or object), the loss (name or object) and the metrics
        (None or ["accuracy"]). Unknown names raise ValueError naming the known ones."""
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self.metrics = [_metrics.get(m) for m in (metrics or [])]

    def _check_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"Sequential.{what}: the model is not compiled; call "
                               "model.compile(optimizer=..., loss=...) first")

    def _plan(self):
        """Decide how the loss meets the output (see the module docstring) for this compile."""
        last = self.layers[-1]
        self._mode = "plain"
        if self.loss.expects_logits:
            if isinstance(last, L.Activation) and last._softmax:
                self._mode = "skip_last"
            elif isinstance(last, L.Dense) and last._softmax:
                self._mode = "dense_logits"
            else:
                self._mode = "logits"
        layers = self.layers[:-1] if self._mode == "skip_last" else self.layers
        # Units to run: layers, with a ZeroPadding2D + Conv2D pair fused into one convolution.
        units, need = [], []
        i = 0
        while i < len(layers):
            layer = layers[i]
            if i + 1 < len(layers) and L._PaddedConv2D.fusable(layer, layers[i + 1]):
                units.append(L._PaddedConv2D(layer, layers[i + 1]))
                need.append(self._need_dx[i])
                i += 2
                continue
            units.append(layer)
            need.append(self._need_dx[i])
            i += 1
        self._forward_steps = [unit.forward for unit in units]
        backward = []
        for unit, need_dx in zip(reversed(units), reversed(need)):
            if self._mode == "dense_logits" and unit is last:
                backward.append((unit.backward_logits, need_dx))
            else:
                backward.append((unit.backward, need_dx))
        self._backward_steps = backward
        self._track_accuracy = "accuracy" in self.metrics
        out = self.output_shape
        self._acc_units = 1 if (len(out) == 1 and out[0] > 1) else int(np.prod(out))

    def _loss_input(self, x, training):
        """Run the forward pass and return what the loss takes (logits or output)."""
        for forward in self._forward_steps:
            x = forward(x, training)
        if self._mode == "dense_logits":
            return self.layers[-1]._z
        return x

    def _backward(self, grad):
        for backward, need_dx in self._backward_steps:
            grad = backward(grad, need_dx)

    # --- data ---------------------------------------------------------------------------------
    def _prepare_x(self, x, what):
        """x as contiguous float32 NCHW (one conversion), building the model if needed."""
        if isinstance(x, (list, tuple)):
            x = np.asarray(x, dtype=np.float32)
        if not isinstance(x, np.ndarray):
            return x  # a device tensor: used as given
        if x.ndim < 2:
            raise ValueError(f"Sequential.{what}: x must have a batch axis, got shape {x.shape}")
        if self._channels_last and x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.built:
            if self.declared_input_shape is None and self.layers and \
                    self.layers[0].declared_input_shape is None:
                self.build(x.shape[1:] if not self._channels_last or x.ndim != 4
                           else (x.shape[2], x.shape[3], x.shape[1]))
            else:
                self.build()
        if x.shape[1:] != self.input_shape:
            told = self.input_shape
            if self._channels_last and len(told) == 3:
                raise ValueError(f"Sequential.{what}: x has per-sample shape "
                                 f"{(x.shape[2], x.shape[3], x.shape[1])} (H, W, C) but the model was "
                                 f"built for {(told[1], told[2], told[0])}")
            raise ValueError(f"Sequential.{what}: x has per-sample shape {x.shape[1:]} but the model "
                             f"was built for input shape {told} (x.shape={x.shape})")
        return x

    def _prepare_xy(self, x, y, what):
        x = self._prepare_x(x, what)
        y = self.loss.prepare_target(y, (None,) + tuple(self.output_shape), owner=f"Sequential.{what}")
        if len(y) != len(x):
            raise ValueError(f"Sequential.{what}: x has {len(x)} samples but y has {len(y)}")
        return x, y

    # --- training -----------------------------------------------------------------------------
    def _train_step(self, xb, yb, dp=None, global_count=0):
        if len(xb):
            out = self._loss_input(xb, True)
            loss, grad = self.loss.forward_backward(out, yb)
            if not np.isfinite(loss):
                raise FloatingPointError(f"Sequential.fit: the loss became {loss}; lower the learning rate")
            correct = _metrics.count_correct(out, yb) if self._track_accuracy else 0
            self._backward(grad)
        else:  # distributed: no sample of this global batch on this rank (weight 0 below)
            loss, correct = 0.0, 0
        if dp is not None:  # [distributed] the global batch's mean-loss gradient on every rank
            dp.allreduce_gradients(self._opt_grads, len(xb) / global_count)
        self.optimizer.step(self._opt_params, self._opt_grads)
        return loss, correct

    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, callbacks=None,
            verbose=1, device="cpu", distributed=False):
        """Train for ``epochs`` passes over (x, y) in mini-batches of ``batch_size``.

        x: (N, C, H, W) (or NHWC if channels_last) or (N, features); y: int labels (N,) for
        sparse_categorical_crossentropy, else the loss's targets. validation_data: (x_val, y_val),
        evaluated after each epoch. verbose: 0 silent, 1 progress bar and a line per epoch,
        2 a line per epoch. device: "cpu", or "cuda" to train on the GPU (data, weights and
        optimiser state stay there for the whole run; the weights come back to the model at
        the end; see fastconv.cuda_training). distributed=True: data-parallel over the MPI ranks
        of an ``mpiexec`` launch (fastconv.distributed; needs fastconv[mpi]): every rank passes
        the same data and batch_size, the global batch, and trains on its shard of each batch;
        the logs are averaged over the ranks and only rank 0 prints. Returns a History
        (history.history["loss"], ["accuracy"], ...; history.epoch_times).
        """
        self._check_compiled("fit")
        device = _cuda_training.check_device(device, "Sequential.fit")
        if int(epochs) < 0 or int(batch_size) < 1:
            raise ValueError(f"Sequential.fit: epochs must be >= 0 and batch_size >= 1, got "
                             f"epochs={epochs}, batch_size={batch_size}")
        epochs, batch_size = int(epochs), int(batch_size)
        x, y = self._prepare_xy(x, y, "fit")
        n = len(x)
        if n == 0:
            raise ValueError("Sequential.fit: x is empty")
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("Sequential.fit: validation_data must be a pair (x_val, y_val)")
            x_val, y_val = self._prepare_xy(validation_data[0], validation_data[1], "fit")
        self._plan()
        self._opt_params, self._opt_grads = [self._flat_params], [self._flat_grads]
        # [distributed] (issue 18): check the launch, equal weights and shuffling on every rank.
        dp = None
        if distributed:
            dp = self._distributed_setup(device, n, batch_size, epochs, shuffle)
            verbose = verbose if dp.is_chief else 0

        history = History()
        callbacks = [history] + list(callbacks or [])
        batch_callbacks = [cb for cb in callbacks[1:]
                           if type(cb).on_batch_end is not Callback.on_batch_end]
        for cb in callbacks:
            cb.set_model(self)
            cb.params = {"epochs": epochs, "batch_size": batch_size, "samples": n}
            cb.on_train_begin()
        self.stop_training = False

        if device == "cuda":
            return self._fit_cuda(x, y, epochs, batch_size,
                                  (x_val, y_val) if validation_data is not None else None,
                                  shuffle, callbacks, history, batch_callbacks, verbose)

        # One batch buffer for the whole run; each step gathers into (a prefix of) it.
        batch_x = np.empty((min(batch_size, n),) + x.shape[1:], dtype=np.float32)
        batch_y = np.empty((min(batch_size, n),) + y.shape[1:], dtype=y.dtype)
        order = np.arange(n)
        steps = (n + batch_size - 1) // batch_size
        for epoch in range(epochs):
            bar = self._epoch_begin(callbacks, epoch, epochs, order, shuffle, verbose)
            start_time = time.perf_counter()
            loss_sum, correct_sum, done = 0.0, 0, 0
            for step in range(steps):
                lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                idx = order[lo:hi] if dp is None else dp.shard(order[lo:hi])  # [distributed]
                m = len(idx)
                if shuffle or dp is not None:
                    xb, yb = batch_x[:m], batch_y[:m]
                    # mode="clip": numpy buffers `out` for mode="raise"; the indices are valid.
                    x.take(idx, axis=0, out=xb, mode="clip")
                    y.take(idx, axis=0, out=yb, mode="clip")
                else:
                    xb, yb = x[lo:hi], y[lo:hi]
                loss, correct = self._train_step(xb, yb, dp, hi - lo)
                loss_sum += loss * m
                correct_sum += correct
                done += m
                if bar is not None and done:  # distributed: rank 0's running means, all ranks' count
                    bar.update(hi, loss_sum / done, correct_sum / (done * self._acc_units)
                               if self._track_accuracy else None)
                for cb in batch_callbacks:
                    cb.on_batch_end(step, {"loss": loss, "size": m})
            elapsed = time.perf_counter() - start_time
            if bar is not None:
                bar.close()
            validate = (None if validation_data is None else
                        lambda: self._evaluate_prepared(x_val, y_val, max(batch_size, 256)))
            if dp is not None:  # [distributed] sums over the ranks; each validates its shard
                loss_sum, correct_sum = map(float, dp.reduce_sums([loss_sum, correct_sum]))
                if validation_data is not None:
                    validate = lambda: self._evaluate_shard(dp, x_val, y_val, max(batch_size, 256))
            logs = self._epoch_logs(epoch, epochs, n, elapsed, loss_sum, correct_sum, validate,
                                    verbose)
            for cb in callbacks:
                cb.on_epoch_end(epoch, dict(logs) if cb is not history else logs)
            if dp is not None:  # [distributed] stop together
                self.stop_training = dp.any(self.stop_training)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        self.history = history
        return history

    def _distributed_setup(self, device, n, batch_size, epochs, shuffle):
        """[distributed] fit's start on every rank: a DataParallel whose setup has checked that
        the ranks run the same model, seed and data, given them rank 0's weights and shuffling
        state, and a per-rank stream for the layers that draw per sample (dropout, shifts)."""
        from . import distributed as _dist

        if device != "cpu":
            raise NotImplementedError("Sequential.fit: distributed=True trains on the CPU only "
                                      "for now; the GPU path (fastconv.distributed.NcclAllReduce) "
                                      "is not wired into the CUDA trainer yet")
        dp = _dist.DataParallel()
        config = self.get_config()
        signature = {"model": self.name, "layers": config["layers"],
                     "input_shape": config["input_shape"], "compile": config.get("compile"),
                     "samples": n, "batch_size": batch_size, "epochs": epochs,
                     "shuffle": bool(shuffle)}
        dp.setup([self._flat_params], signature, seed=self.seed, rngs=[self._shuffle_rng])
        for i, layer in enumerate(self.layers):
            if isinstance(layer, L._SeededLayer) and dp.rank > 0 and layer._rng is not None:
                layer._rng = np.random.default_rng(
                    [int(layer._rng.integers(1 << 62)), dp.rank, i])
        return dp

    def _evaluate_shard(self, dp, x, y, batch_size):
        """[distributed] _evaluate_prepared over this rank's shard, averaged over the ranks."""
        from .distributed import shard_bounds

        lo, hi = shard_bounds(len(x), dp.rank, dp.size)
        results = self._evaluate_prepared(x[lo:hi], y[lo:hi], batch_size) if hi > lo else \
            [0.0] * (2 if self._track_accuracy else 1)
        return [float(v) for v in dp.average(results, hi - lo)]

    def _epoch_begin(self, callbacks, epoch, epochs, order, shuffle, verbose):
        """Start an epoch of fit (CPU or GPU): the callbacks, the sample order (shuffled in place
        when ``shuffle``), and the progress bar (None unless verbose == 1)."""
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        if shuffle:
            self._shuffle_rng.shuffle(order)
        return _ProgressBar(len(order), epoch, epochs) if verbose == 1 else None

    def _bar_update(self, bar, done, loss_sum, correct):
        """Redraw the progress bar from the running sums of an epoch."""
        bar.update(done, loss_sum / done,
                   correct / (done * self._acc_units) if self._track_accuracy else None)

    def _epoch_logs(self, epoch, epochs, n, elapsed, loss_sum, correct_sum, validate, verbose):
        """An epoch's logs (loss, accuracy, val_* from ``validate()`` when given, time), printed
        as one line when verbose."""
        logs = {"loss": loss_sum / n}
        if self._track_accuracy:
            logs["accuracy"] = correct_sum / (n * self._acc_units)
        if validate is not None:
            results = validate()
            logs["val_loss"] = results[0]
            if self._track_accuracy:
                logs["val_accuracy"] = results[1]
        if verbose:
            parts = [f"Epoch {epoch + 1}/{epochs}", f"{elapsed:.2f}s", f"{n / elapsed:,.0f} samples/s"]
            parts += [f"{k}: {v:.4f}" for k, v in logs.items()]
            print(" - ".join(parts), flush=True)
        logs["time"] = elapsed
        return logs

    def _evaluate_cuda(self, trainer, xd, yd, batch_size):
        """[loss, accuracy...] over device tensors, as _evaluate_prepared on the CPU."""
        n = max(xd.shape[0], 1)
        loss_sum, correct = trainer.evaluate(xd, yd, batch_size)
        return [loss_sum / n] + ([correct / (n * self._acc_units)] if self._track_accuracy else [])

    def _fit_cuda(self, x, y, epochs, batch_size, validation, shuffle, callbacks, history,
                  batch_callbacks, verbose):
        """fit's loop on the GPU: the same batches in the same order as on the CPU."""
        trainer = _cuda_training.trainer_for(self)
        trainer.upload()
        xd, yd = trainer.to_device(x, y)
        if validation is not None:
            xvd, yvd = trainer.to_device(*validation)
        n = len(x)
        order = np.arange(n)
        per_batch = None
        if batch_callbacks:
            def per_batch(step, loss, size):
                for cb in batch_callbacks:
                    cb.on_batch_end(step, {"loss": loss, "size": size})
        try:
            for epoch in range(epochs):
                bar = self._epoch_begin(callbacks, epoch, epochs, order, shuffle, verbose)
                progress = None
                if bar is not None:
                    def progress(done, loss_sum, correct, bar=bar):
                        self._bar_update(bar, done, loss_sum, correct)
                start_time = time.perf_counter()
                loss_sum, correct_sum = trainer.train_epoch(xd, yd, order, batch_size, progress,
                                                            per_batch)
                elapsed = time.perf_counter() - start_time
                if bar is not None:
                    bar.close()
                validate = (None if validation is None else
                            lambda: self._evaluate_cuda(trainer, xvd, yvd, max(batch_size, 256)))
                logs = self._epoch_logs(epoch, epochs, n, elapsed, loss_sum, correct_sum,
                                        validate, verbose)
                needs_weights = any(type(cb).on_epoch_end is not Callback.on_epoch_end
                                    and not isinstance(cb, History) for cb in callbacks)
                if needs_weights:
                    trainer.download()  # callbacks (checkpoints, early stopping) see the weights
                for cb in callbacks:
                    cb.on_epoch_end(epoch, dict(logs) if cb is not history else logs)
                if self.stop_training:
                    break
        finally:
            trainer.download()
        for cb in callbacks:
            cb.on_train_end()
        self.history = history
        return history

    def train_on_batch(self, x, y):
        """One optimiser step on one batch; returns [loss] (+ [accuracy] with that metric)."""
        self._check_compiled("train_on_batch")
        x, y = self._prepare_xy(x, y, "train_on_batch")
        self._plan()
        self._opt_params, self._opt_grads = [self._flat_params], [self._flat_grads]
        loss, correct = self._train_step(x, y)
        return [loss] + ([correct / (len(x) * self._acc_units)] if self._track_accuracy else [])

    def compute_gradients(self, x, y, training=True):
        """The loss on (x, y) and its gradient w.r.t. every weight, without updating anything.

        Returns (loss, grads), grads a list of arrays in get_weights() order. training=True runs
        layers in training mode (dropout active).
        """
        self._check_compiled("compute_gradients")
        x, y = self._prepare_xy(x, y, "compute_gradients")
        self._plan()
        out = self._loss_input(x, training)
        loss, grad = self.loss.forward_backward(out, y)
        self._backward(grad)
        return loss, [g.copy() for layer in self.layers for g in layer.grads]

    # --- inference ----------------------------------------------------------------------------
    def evaluate(self, x, y, batch_size=32, verbose=0, device="cpu"):
        """[loss, accuracy...] on (x, y), in inference mode (dropout off), in batches.
        device="cuda" runs it on the GPU (sparse_categorical_crossentropy models)."""
        self._check_compiled("evaluate")
        device = _cuda_training.check_device(device, "Sequential.evaluate")
        x, y = self._prepare_xy(x, y, "evaluate")
        self._plan()
        if device == "cuda":
            trainer = _cuda_training.trainer_for(self)
            trainer.params.copy_(self._flat_params)
            results = self._evaluate_cuda(trainer, *trainer.to_device(x, y), int(batch_size))
        else:
            results = self._evaluate_prepared(x, y, int(batch_size))
        if verbose:
            print(" - ".join(f"{name}: {value:.4f}"
                             for name, value in zip(["loss"] + self.metrics, results)), flush=True)
        return results

    def _evaluate_prepared(self, x, y, batch_size):
        n = len(x)
        loss_sum, correct_sum = 0.0, 0
        for lo in range(0, n, batch_size):
            xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
            out = self._loss_input(xb, False)
            loss, _ = self.loss.forward_backward(out, yb)
            loss_sum += loss * len(xb)
            if self._track_accuracy:
                correct_sum += _metrics.count_correct(out, yb)
        results = [loss_sum / max(n, 1)]
        if self._track_accuracy:
            results.append(correct_sum / max(n * self._acc_units, 1))
        return results

    def predict(self, x, batch_size=32, device="cpu"):
        """The model's outputs for x, in batches, inference mode (probabilities if it ends in a
        softmax, else logits). 4-D outputs come back NHWC if the model is channels_last.
        device="cuda" runs it on the GPU (compiled classifier models)."""
        device = _cuda_training.check_device(device, "Sequential.predict")
        x = self._prepare_x(x, "predict")
        if device == "cuda":
            self._check_compiled("predict(device='cuda')")
            trainer = _cuda_training.trainer_for(self)
            trainer.params.copy_(self._flat_params)
            xd = trainer.ext.Tensor.from_numpy(x)
            return trainer.predict(xd, int(batch_size))
        n = len(x)
        out = np.empty((n,) + tuple(self.output_shape), dtype=np.float32)
        for lo in range(0, n, int(batch_size)):
            y = x[lo:lo + batch_size]
            for layer in self.layers:
                y = layer.forward(y, False)
            out[lo:lo + len(y)] = y
        if self._channels_last and out.ndim == 4:
            out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
        return out

    def __call__(self, x, training=False):
        """Forward pass on one batch (no batching, no gradient bookkeeping beyond the layers')."""
        x = self._prepare_x(x, "__call__")
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    # --- weights ------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of every layer's weights, in order, fastconv layout (conv OIHW, dense (out, in))."""
        self._require_built("get_weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Set every weight from a list in get_weights() order and layout (copied in place)."""
        self._require_built("set_weights")
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"Sequential.set_weights: got {len(weights)} arrays, the model has "
                             f"{expected} weight arrays")
        at = 0
        for layer in self.layers:
            k = len(layer.params)
            layer.set_weights(weights[at:at + k])
            at += k

    def count_params(self):
        """Total number of trainable parameters (masked Conv2D weights not counted)."""
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def _require_built(self, what):
        if not self.built:
            try:
                self.build()
            except ValueError:
                raise RuntimeError(f"Sequential.{what}: the model is not built yet and its input shape "
                                   "is unknown; give input_shape= or call it on data first") from None

    def summary(self, print_fn=print):
        """A table of each layer's name, type, output shape and parameter count, with the total.
        Prints it (through print_fn; None to skip) and returns it as a string."""
        self._require_built("summary")
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(layer.output_shape)),
                 f"{layer.count_params():,}") for layer in self.layers]
        head = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in rows + [head]) + 3 for i in range(3)]
        line = "=" * sum(widths)
        fmt = lambda r: f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2] - 3}}"
        total = self.count_params()
        text = "\n".join([f'Model: "{self.name}"', line, fmt(head), line]
                         + [fmt(r) for r in rows]
                         + [line, f"Total params: {total:,}", f"Input shape: {self.input_shape} (NCHW)"])
        if print_fn is not None:
            print_fn(text)
        return text

    # --- saving -------------------------------------------------------------------------------
    def get_config(self):
        """The architecture (and compile settings) as a JSON-able dict."""
        config = {"format": _FORMAT, "version": _FORMAT_VERSION, "name": self.name, "seed": self.seed,
                  "data_format": self.data_format,
                  "input_shape": None if self.input_shape is None else list(self.input_shape),
                  "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                             for layer in self.layers]}
        if self.optimizer is not None and self.loss is not None:
            config["compile"] = {"optimizer": self.optimizer.get_config(),
                                 "loss": self.loss.get_config(), "metrics": list(self.metrics)}
        return config

    def save(self, path):
        """Write ONE .npz file: the architecture and compile settings as JSON plus every weight
        (optimiser state is not saved). Load it with Sequential.load or load_model."""
        self._require_built("save")
        arrays = {f"weight_{i:04d}": w for i, w in enumerate(self.get_weights())}
        config = json.dumps(self.get_config())
        with open(path, "wb") as f:
            np.savez(f, config=np.array(config), **arrays)

    @classmethod
    def load(cls, path):
        """A model saved by ``save``, built, with its weights, and compiled if it was."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "config" not in data.files:
                    raise ValueError(f"Sequential.load: {path} is not a fastconv model file (no config)")
                config = json.loads(str(data["config"]))
                weights = [data[k] for k in sorted(k for k in data.files if k.startswith("weight_"))]
        except FileNotFoundError:
            raise FileNotFoundError(f"Sequential.load: no such file: {path}") from None
        if config.get("format") != _FORMAT:
            raise ValueError(f"Sequential.load: {path} is not a fastconv Sequential model file")
        layers = [L.layer_from_config(entry) for entry in config["layers"]]
        model = cls(layers, seed=config.get("seed"), data_format=config.get("data_format"),
                    name=config.get("name", "sequential"))
        if config.get("input_shape") is not None:
            shape = tuple(config["input_shape"])  # stored NCHW
            if model._channels_last and len(shape) == 3:
                shape = (shape[1], shape[2], shape[0])
            model.build(shape)
            model.set_weights(weights)
        if "compile" in config:
            c = config["compile"]
            model.compile(optimizer=c["optimizer"], loss=c["loss"], metrics=c["metrics"])
        return model


def load_model(path):
    """Load a model saved with ``Sequential.save`` (the same as ``Sequential.load(path)``)."""
    return Sequential.load(path)


# --------------------------------------------------------------------------------------------
# Layout conversions
# --------------------------------------------------------------------------------------------
def _flatten_source(model, index):
    """(C, H, W) if layer ``index`` is a Dense right after a Flatten of an image, else None."""
    if index == 0 or not isinstance(model.layers[index - 1], L.Flatten):
        return None
    shape = model.layers[index - 1].input_shape
    return shape if len(shape) == 3 and shape[1] * shape[2] > 1 else None


def to_pytorch_weights(model):
    """Weights in PyTorch's layouts (Conv2d OIHW, Linear (out, in)): model.get_weights()."""
    return model.get_weights()


def from_pytorch_weights(model, weights):
    """Set weights from PyTorch's layouts: a list, or a mapping such as a state_dict whose
    values (tensors or arrays) are in the model's order (weight, bias per layer)."""
    if hasattr(weights, "values"):
        weights = list(weights.values())
    model.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def to_keras_weights(model, channels_last=True):
    """Weights in Keras's layouts: conv kernels HWIO, dense kernels (in, out), and a Dense after
    a Flatten with its rows in H, W, C order (channels_last=True) as Keras flattens."""
    model._require_built("to_keras_weights")
    out = []
    for i, layer in enumerate(model.layers):
        weights = layer.get_weights_keras()
        source = _flatten_source(model, i) if isinstance(layer, L.Dense) and channels_last else None
        if source is not None and weights:
            c, h, w = source
            units = layer.units
            weights[0] = np.ascontiguousarray(
                layer.kernel.reshape(units, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, units))
        out.extend(weights)
    return out


def from_keras_weights(model, weights, channels_last=True):
    """Set weights from Keras's layouts (the reverse of to_keras_weights)."""
    model._require_built("from_keras_weights")
    weights = list(weights)
    expected = sum(len(layer.params) for layer in model.layers)
    if len(weights) != expected:
        raise ValueError(f"from_keras_weights: got {len(weights)} arrays, the model has {expected}")
    at = 0
    for i, layer in enumerate(model.layers):
        k = len(layer.params)
        chunk = [np.asarray(w, dtype=np.float32) for w in weights[at:at + k]]
        source = _flatten_source(model, i) if isinstance(layer, L.Dense) and channels_last else None
        if source is not None and chunk:
            c, h, w = source
            kernel = chunk[0]
            if kernel.shape != (c * h * w, layer.units):
                raise ValueError(f"from_keras_weights: layer {layer.name} expects a ({c * h * w}, "
                                 f"{layer.units}) kernel, got {kernel.shape}")
            layer.set_weights([kernel.reshape(h, w, c, layer.units).transpose(3, 2, 0, 1)
                               .reshape(layer.units, c * h * w)] + chunk[1:])
        else:
            layer.set_weights_keras(chunk)
        at += k


# --------------------------------------------------------------------------------------------
# The reference networks
# --------------------------------------------------------------------------------------------
def _lenet5_c3_table():
    """LeCun et al. (1998), Table I: which of the 6 S2 maps each of the 16 C3 maps sees."""
    table = np.zeros((16, 6), dtype=bool)
    for i in range(6):
        table[i, [(i + j) % 6 for j in range(3)]] = True          # maps 0-5: 3 neighbours
        table[6 + i, [(i + j) % 6 for j in range(4)]] = True      # maps 6-11: 4 neighbours
    for row, maps in zip((12, 13, 14), ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5))):
        table[row, list(maps)] = True                              # maps 12-14: 4 non-neighbours
    table[15, :] = True                                            # map 15: all six
    return table


LENET5_C3_TABLE = _lenet5_c3_table()


def lenet5(classic=True, input_shape=(1, 28, 28), num_classes=10, seed=None):
    """LeNet-5 (LeCun et al., 1998) as DESIGN.md describes it.

    Takes 28x28 MNIST images (input_shape (1, 28, 28)) and pads them by 2 to the paper's 32x32
    with a ZeroPadding2D first (give input_shape=(1, 32, 32) to skip it). Then C1 6@5x5,
    S2 2x2 subsampling, C3 16@5x5, S4 2x2, C5 120@5x5 (-> 1x1), Flatten, F6 Dense 84, and an
    output Dense of ``num_classes`` logits (softmax is in the loss).

    classic=True: tanh after C1, C3, C5 and F6, average pooling, and C3 wired by the paper's
    connection table (LENET5_C3_TABLE): 60,806 parameters (C3 has 1,516).
    classic=False: the modern variant: full C3, ReLU and max pooling, He initialisation:
    61,706 parameters.
    """
    input_shape = tuple(input_shape)
    act = "tanh" if classic else "relu"
    init = "glorot_uniform" if classic else "he_normal"
    pool = L.AvgPool2D if classic else L.MaxPool2D
    layers = []
    if input_shape[-2:] != (32, 32):
        layers.append(L.ZeroPadding2D(2, name="pad"))
    layers += [
        L.Conv2D(6, 5, activation=act, kernel_initializer=init, name="C1"),
        pool(2, name="S2"),
        L.Conv2D(16, 5, activation=act, kernel_initializer=init, name="C3",
                 connections=LENET5_C3_TABLE if classic else None),
        pool(2, name="S4"),
        L.Conv2D(120, 5, activation=act, kernel_initializer=init, name="C5"),
        L.Flatten(name="flatten"),
        L.Dense(84, activation=act, kernel_initializer=init, name="F6"),
        L.Dense(num_classes, name="output"),
    ]
    return Sequential(layers, input_shape=input_shape, seed=seed,
                      name="lenet5" if classic else "lenet5_modern")


def vgg_small(input_shape=(1, 28, 28), num_classes=10, seed=None, dropout=0.5):
    """The small VGG of DESIGN.md: conv32, conv32, maxpool 2, conv64, conv64, maxpool 2,
    flatten (3136), Dense 256 ReLU, Dropout 0.5, Dense ``num_classes`` (logits). 3x3 "same"
    convolutions with ReLU and He initialisation; 870,634 parameters. Train it with Adam."""
    conv = lambda filters, name: L.Conv2D(filters, 3, padding="same", activation="relu",
                                          kernel_initializer="he_normal", name=name)
    layers = [conv(32, "conv1_1"), conv(32, "conv1_2"), L.MaxPool2D(2, name="pool1"),
              conv(64, "conv2_1"), conv(64, "conv2_2"), L.MaxPool2D(2, name="pool2"),
              L.Flatten(name="flatten"),
              L.Dense(256, activation="relu", kernel_initializer="he_normal", name="fc1"),
              L.Dropout(dropout, name="dropout"),
              L.Dense(num_classes, name="output")]
    return Sequential(layers, input_shape=tuple(input_shape), seed=seed, name="vgg_small")
