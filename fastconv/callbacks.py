"""Callbacks: hooks that fit calls at the start and end of training, epochs and batches.

    model.fit(x, y, callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
"""
from __future__ import annotations

import math

__all__ = ["Callback", "History", "EarlyStopping"]


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
