"""Callbacks: hooks a fit loop calls, with Keras's names, arguments and defaults.

A loop drives them through one ``CallbackList``, as Keras's fit does:

    callbacks = CallbackList(user_callbacks, add_history=True, add_progbar=verbose != 0,
                             model=model, verbose=verbose, epochs=epochs, steps=steps)
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps):
            callbacks.on_train_batch_begin(step)
            ...                                          # one optimiser step
            callbacks.on_train_batch_end(step, {"loss": running_mean_loss, ...})
        logs = {"loss": ..., "accuracy": ..., "val_loss": ..., "val_accuracy": ...}
        callbacks.on_epoch_end(epoch, logs)               # the same dict reaches every callback
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return callbacks.history                              # the History

What a callback may use on ``self.model``: ``stop_training`` (set it to stop after this
epoch), ``optimizer.learning_rate`` (read and assign a float), ``get_weights()`` /
``set_weights()``, ``save(path)`` and ``save_weights(path)``, and ``history``.
``self.params`` is the dict the loop passes (verbose, epochs, steps).

Callbacks here: History, ProgbarLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau,
LearningRateScheduler, CSVLogger, TerminateOnNaN, LambdaCallback.

Where fastconv departs from Keras 3: a callback that monitors a quantity (EarlyStopping,
ModelCheckpoint with save_best_only, ReduceLROnPlateau) raises ValueError, naming the keys it
was given, when the quantity is not in the epoch's logs (Keras warns and goes on, so a typo
silently turns the callback off); ModelCheckpoint accepts any file name (Keras insists on
.keras / .weights.h5) and writes each file atomically (fastconv._io.atomic_write).
"""
from __future__ import annotations

import csv
import inspect
import math
import numbers
import os

import numpy as np

from . import metrics as _metrics
from ._io import atomic_write
from .progress import Progbar

__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint",
    "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger", "TerminateOnNaN", "LambdaCallback",
]


class Callback:
    """Base class of the hooks a fit loop calls. Override the ones you need.

    ``self.model`` is the model (set by ``set_model``), ``self.params`` the loop's settings
    (verbose, epochs, steps; set by ``set_params``). ``logs`` at an epoch's end holds the
    epoch's metrics (loss, accuracy, val_loss, val_accuracy, ...); at a training batch's end,
    the running metrics so far. Set ``self.model.stop_training = True`` to stop after the
    current epoch. ``on_batch_begin`` / ``on_batch_end`` are the old names of
    ``on_train_batch_begin`` / ``on_train_batch_end``: the latter call the former unless
    overridden, so overriding either works.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Attach the model being trained."""
        self.model = model

    def set_params(self, params):
        """Attach the loop's settings (a dict: verbose, epochs, steps, ...)."""
        self.params = params

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch, with the last epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch (0-based) with that epoch's metrics (and val_* ones)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before each training step (0-based within the epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after each training step (0-based within the epoch) with the running metrics."""
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        """The old name of on_train_batch_begin (called by it)."""

    def on_batch_end(self, batch, logs=None):
        """The old name of on_train_batch_end (called by it)."""

    def on_test_begin(self, logs=None):
        """Called before an evaluation (or the validation pass of an epoch)."""

    def on_test_end(self, logs=None):
        """Called after an evaluation with its results."""

    def on_test_batch_begin(self, batch, logs=None):
        """Called before each evaluation batch."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after each evaluation batch with the running metrics."""

    def on_predict_begin(self, logs=None):
        """Called before a prediction run."""

    def on_predict_end(self, logs=None):
        """Called after a prediction run."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before each prediction batch."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after each prediction batch."""


def _overrides(callback, *names):
    """Whether ``callback`` does anything in any of the hooks ``names`` (a method overridden
    in its class, or a function set on the object, as LambdaCallback does)."""
    for name in names:
        if name in vars(callback) or getattr(type(callback), name) is not getattr(Callback, name):
            return True
    return False


class CallbackList(Callback):
    """The callbacks of one fit (or evaluate, or predict), called together in order.

    callbacks: a list of Callback objects (or None).
    add_history: append a History unless the list has one (``self.history`` is it).
    add_progbar: append a ProgbarLogger unless the list has one.
    model: the model, given to every callback (and ``model.history`` set to the History).
    **params: the loop's settings (verbose, epochs, steps), given to every callback.

    The same ``logs`` dict is passed to each callback in turn, so what one adds (say,
    ReduceLROnPlateau's "learning_rate") is seen by those after it, History included.
    Per-batch hooks are called only on the callbacks that define them.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        callbacks = [] if callbacks is None else list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"CallbackList: callbacks must be fastconv.callbacks.Callback "
                                f"objects, got {type(cb).__name__}")
        self.callbacks = callbacks
        self.history = next((cb for cb in callbacks if isinstance(cb, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self._batch_hooks = {}
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        """Add one more callback at the end."""
        if not isinstance(callback, Callback):
            raise TypeError(f"CallbackList.append: expected a Callback, got {type(callback).__name__}")
        self.callbacks.append(callback)
        self._batch_hooks = {}
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_model(self, model):
        """Give ``model`` to every callback (and set ``model.history`` to the History)."""
        self.model = model
        if self.history is not None and model is not None:
            model.history = self.history
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        """Give the loop's settings to every callback."""
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def _with(self, hook, *aliases):
        """The callbacks that define ``hook`` (or one of its aliases), cached per hook."""
        found = self._batch_hooks.get(hook)
        if found is None:
            found = [cb for cb in self.callbacks if _overrides(cb, hook, *aliases)]
            self._batch_hooks[hook] = found
        return found

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self._with("on_train_batch_begin", "on_batch_begin"):
            cb.on_train_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self._with("on_train_batch_end", "on_batch_end"):
            cb.on_train_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        self.on_train_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        self.on_train_batch_end(batch, logs)

    def on_test_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_test_begin(logs)

    def on_test_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_test_end(logs)

    def on_test_batch_begin(self, batch, logs=None):
        for cb in self._with("on_test_batch_begin"):
            cb.on_test_batch_begin(batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        for cb in self._with("on_test_batch_end"):
            cb.on_test_batch_end(batch, logs=logs)

    def on_predict_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_predict_end(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        for cb in self._with("on_predict_batch_begin"):
            cb.on_predict_batch_begin(batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        for cb in self._with("on_predict_batch_end"):
            cb.on_predict_batch_end(batch, logs=logs)


class History(Callback):
    """What ``fit`` returns: ``history`` maps each metric name to its value per epoch,
    ``epoch`` lists the epochs run, ``epoch_times`` their wall-clock seconds (the logs'
    "time" entry, which is kept out of ``history``)."""

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


class ProgbarLogger(Callback):
    """Prints the progress bar and each epoch's metrics (fastconv.progress.Progbar), as
    Keras's fit does: verbose=1 a bar redrawn in place (one line per epoch when the output is
    not a terminal), verbose=2 one line per epoch. Reads verbose, epochs and steps from the
    loop's params; ``stream`` defaults to sys.stdout. CallbackList(add_progbar=True) adds it.
    """

    _hidden = ("batch", "size", "time")   # bookkeeping entries of the logs, not metrics

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self.progbar = None
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self._in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs = int(params.get("epochs", 1) or 1)
        self.target = params.get("steps")

    def _start(self, title=None):
        self.progbar = Progbar(self.target, stream=self.stream, verbose=self.verbose, title=title)

    def _shown(self, logs):
        return {k: v for k, v in (logs or {}).items() if k not in self._hidden}

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start(f"Epoch {epoch + 1}/{self.epochs}" if self.epochs > 1 else None)

    def on_train_batch_end(self, batch, logs=None):
        if self.progbar is not None:
            self.progbar.update(batch + 1, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        if self.progbar is not None:
            self.progbar.finish(self._shown(logs))

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._start()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit and self.progbar is not None:
            self.progbar.update(batch + 1, self._shown(logs))

    def on_test_end(self, logs=None):
        if not self._in_fit and self.progbar is not None:
            self.progbar.finish(self._shown(logs))

    def on_predict_begin(self, logs=None):
        self._start()

    def on_predict_batch_end(self, batch, logs=None):
        if self.progbar is not None:
            self.progbar.update(batch + 1)

    def on_predict_end(self, logs=None):
        if self.progbar is not None:
            self.progbar.finish()


# --------------------------------------------------------------------------------------------
# Callbacks that watch one quantity of the logs
# --------------------------------------------------------------------------------------------
class _MonitorCallback(Callback):
    """Shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: which way is better
    for ``monitor`` and whether a value improves on the best one by more than min_delta."""

    def __init__(self, monitor, mode, min_delta=0.0, baseline=None):
        super().__init__()
        what = type(self).__name__
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{what}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{what}: monitor must be the name of a logged quantity, got {monitor!r}")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.best = baseline
        self._direction = None    # "min" or "max", resolved on first use (needs the model)

    def _resolve_direction(self):
        if self.mode != "auto":
            return self.mode
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name == "loss" or name.endswith("_loss"):
            return "min"
        for metric in getattr(self.model, "metrics", None) or []:
            if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
                return "max" if metric._direction == "up" else "min"
        try:
            metric = _metrics.get(name)
        except (ValueError, TypeError):
            metric = None
        if metric is not None:
            return "max" if metric._direction == "up" else "min"
        raise ValueError(f"{type(self).__name__}: cannot tell whether {self.monitor!r} should go up "
                         f"or down; pass mode='max' or mode='min'")

    def _monitored(self, logs):
        """The monitored value from ``logs``; ValueError naming what is there when it is not."""
        if not logs or self.monitor not in logs:
            have = ", ".join(sorted(logs or {})) or "nothing"
            hint = " (pass validation data to fit)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{type(self).__name__}: the monitored quantity {self.monitor!r} is "
                             f"not in the logs{hint}; they have: {have}")
        return float(logs[self.monitor])

    def _is_improvement(self, value, reference):
        if self._direction is None:
            self._direction = self._resolve_direction()
        if reference is None:
            return True
        if self._direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference


class EarlyStopping(_MonitorCallback):
    """Stop training when ``monitor`` has stopped improving (Keras 3's rules).

    monitor: the quantity in the epoch logs (default "val_loss").
    min_delta: a change smaller than this is no improvement.
    patience: stop once this many epochs in a row (at least one) brought no improvement.
    mode: "min", "max", or "auto" (from the name: losses and errors go down, accuracy up).
    baseline: training stops unless the quantity gets better than this within patience.
    restore_best_weights: at the end of training, put back the weights of the best epoch.
    start_from_epoch: epochs to wait before monitoring at all (warm-up).
    ``stopped_epoch`` is the (0-based) epoch training stopped at, 0 if it did not stop early.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        if int(patience) < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience!r}")
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitored(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()   # the first monitored epoch
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_MonitorCallback):
    """Save the model (or only its weights) after each epoch or every ``save_freq`` batches.

    filepath: where to save; it may hold {epoch} and any key of the logs with a format, such
        as "ckpt-{epoch:02d}-{val_loss:.4f}.npz" (epoch counts from 1, as Keras).
    monitor, mode: the quantity save_best_only compares (see EarlyStopping's mode).
    save_best_only: save only when ``monitor`` improves on the best value so far.
    save_weights_only: ``model.save_weights(path)`` instead of ``model.save(path)``.
    save_freq: "epoch", or a number of training batches between saves.
    initial_value_threshold: the best value to beat at first (with save_best_only).

    Each file is written atomically (fastconv._io.atomic_write): into a temporary file in
    the same folder, synced, then renamed over the target, so a crash during a save leaves
    the previous checkpoint whole. Missing folders are created.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode, baseline=initial_value_threshold)
        filepath = os.fspath(filepath)
        if not filepath:
            raise ValueError("ModelCheckpoint: filepath must not be empty")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive number of "
                             f"batches, got {save_freq!r}")
        self.filepath = filepath
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        self._epoch = 0
        self._batches_since_save = 0

    def on_train_begin(self, logs=None):
        self._batches_since_save = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch, batch, logs):
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"ModelCheckpoint: cannot fill in filepath {self.filepath!r} ({err!r}); "
                             f"it may use epoch{', batch' if batch is not None else ''} and the "
                             f"logs' keys: {', '.join(sorted(logs or {})) or 'none'}") from None

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = self._monitored(logs)
            if not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                before = "None" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {before} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if os.path.isdir(path):
            raise ValueError(f"ModelCheckpoint: filepath {path!r} is a folder; give a file name")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        save = self.model.save_weights if self.save_weights_only else self.model.save
        atomic_write(path, save)


class ReduceLROnPlateau(_MonitorCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    After ``patience`` epochs without an improvement larger than ``min_delta``, the
    optimiser's learning_rate becomes max(lr * factor, min_lr); then ``cooldown`` epochs pass
    before counting again. Adds "learning_rate" to each epoch's logs (so History records it).
    The optimiser must have a plain float learning rate (not a schedule).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        if not 0.0 <= float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor!r}")
        if float(min_lr) < 0.0:
            raise ValueError(f"ReduceLROnPlateau: min_lr must be >= 0, got {min_lr!r}")
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self):
        """Whether the cooldown after the last reduction is still running."""
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = self._monitored(logs)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        old = float(optimizer.learning_rate)
        if old > np.float32(self.min_lr):
            new = max(old * self.factor, self.min_lr)
            optimizer.learning_rate = new
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


# --------------------------------------------------------------------------------------------
# The others
# --------------------------------------------------------------------------------------------
class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    schedule: a function of the 0-based epoch and the current learning rate (a function of
        the epoch alone also works, as in Keras) returning the new rate, a float >= 0.
    Adds "learning_rate" to each epoch's logs. For a rate that changes every step, give the
    optimiser a schedule (fastconv.optimizers.schedules) instead.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self._two_args = _takes_two_args(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if self._two_args:
            rate = self.schedule(epoch, float(optimizer.learning_rate))
        else:
            rate = self.schedule(epoch)
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (numbers.Real, np.floating)) \
                or not math.isfinite(float(rate)) or float(rate) < 0.0:
            raise ValueError(f"LearningRateScheduler: the schedule must return a finite float >= 0, "
                             f"got {rate!r} for epoch {epoch}")
        optimizer.learning_rate = float(rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(rate)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _takes_two_args(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (Keras's format).

    filename: the file; separator: the field separator; append: add to an existing file
    (its header is kept) instead of starting a new one. The columns are "epoch" (0-based)
    then the logs' keys in sorted order; when the first epoch has no val_* keys, val_
    columns are added for each (written "NA") as Keras does. Each row is flushed at once.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        self._write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "r", encoding="utf-8") as f:
                self._write_header = not f.readline()
        self.close()
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._file is None:   # driven without on_train_begin: start the file now
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys,
                                          delimiter=self.sep, extrasaction="ignore")
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, _csv_value(logs.get(k, "NA"))) for k in self.keys)
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Close the file (fit's end does this)."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._file = None
        self._writer = None


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"[{', '.join(map(str, value))}]"
    return value


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite.

    raise_error=False sets ``model.stop_training`` (the epoch ends, on_train_end runs);
    raise_error=True raises RuntimeError at once.
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        if self.raise_error:
            raise RuntimeError(f"TerminateOnNaN: the loss is {float(loss)} at batch {batch}")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...).

    on_epoch_begin / on_epoch_end take (epoch, logs); on_train_begin / on_train_end take
    (logs); on_train_batch_begin / on_train_batch_end take (batch, logs). Any other hook of
    Callback can be given by its name as well, with that hook's arguments.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not (name.startswith("on_") and callable(getattr(Callback, name, None))):
                raise ValueError(f"LambdaCallback: {name!r} is not a callback hook")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)
