"""Tests for fastconv.callbacks: the CallbackList a loop drives, History, EarlyStopping,
ModelCheckpoint (formatting, best-only, atomic writes), ReduceLROnPlateau,
LearningRateScheduler, CSVLogger, TerminateOnNaN, LambdaCallback and ProgbarLogger, driven
by a scripted loop over known logs (so each decision is checked epoch by epoch) and by
today's Sequential.fit. Keras 3's own callbacks are a second reference where keras is
installed (slow: importing it takes seconds)."""
import csv
import io
import os
import warnings

import numpy as np
import pytest

from fastconv import callbacks as C
from fastconv import layers as L
from fastconv import optimizers
from fastconv._io import atomic_write
from fastconv.models import Sequential, load_model


class FakeModel:
    """What callbacks use of a model: stop_training, optimizer, weights, save/save_weights."""

    def __init__(self, lr=0.1):
        self.stop_training = False
        self.optimizer = optimizers.SGD(lr)
        self.weights = [np.zeros(3, np.float32)]
        self.saves = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path):
        self.saves.append(("model", path))
        with open(path, "w") as f:
            f.write(f"model {self.weights[0][0]}")

    def save_weights(self, path):
        self.saves.append(("weights", path))
        with open(path, "w") as f:
            f.write(f"weights {self.weights[0][0]}")


def drive(callbacks, epoch_logs, model=None, steps=2, batch_logs=None):
    """A scripted fit: epoch e ends with epoch_logs[e]; the weights record the epoch."""
    model = model or FakeModel()
    cbs = C.CallbackList(callbacks, add_history=True, model=model, verbose=0,
                         epochs=len(epoch_logs), steps=steps)
    cbs.on_train_begin()
    ran = []
    logs = {}
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            model.weights[0][:] = epoch
            cbs.on_train_batch_end(step, dict(batch_logs or {"loss": logs.get("loss", 0.0)}))
        logs = dict(logs)
        cbs.on_epoch_end(epoch, logs)
        ran.append(epoch)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return ran, cbs.history, model


# ----------------------------------------------------------------------------- CallbackList, History
def test_callback_list_order_shared_logs_and_aliases():
    calls = []

    class Old(C.Callback):               # the old name of the batch hook still works
        def on_batch_end(self, batch, logs=None):
            calls.append(("old", batch))

    class New(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(("new", batch))

        def on_epoch_end(self, epoch, logs=None):
            logs["added"] = epoch          # later callbacks (History last) see it

    lam = C.LambdaCallback(on_train_begin=lambda logs: calls.append(("begin",)),
                           on_epoch_begin=lambda epoch, logs: calls.append(("epoch", epoch)))
    model = FakeModel()
    ran, history, _ = drive([Old(), New(), lam], [{"loss": 1.0}, {"loss": 0.5}], model=model)
    assert ran == [0, 1]
    assert calls == [("begin",), ("epoch", 0), ("old", 0), ("new", 0), ("old", 1), ("new", 1),
                     ("epoch", 1), ("old", 0), ("new", 0), ("old", 1), ("new", 1)]
    assert history.history == {"loss": [1.0, 0.5], "added": [0, 1]} and history.epoch == [0, 1]
    assert model.history is history
    cbs = C.CallbackList([Old()], model=model, verbose=1, epochs=3, steps=7)
    assert cbs.callbacks[0].params == {"verbose": 1, "epochs": 3, "steps": 7}
    assert cbs.callbacks[0].model is model and cbs.history is None
    assert len(C.CallbackList([], add_history=True, add_progbar=True)) == 2
    with pytest.raises(TypeError, match="Callback objects"):
        C.CallbackList([object()])


def test_batch_hooks_skip_callbacks_that_do_not_define_them():
    class Counting(C.Callback):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def on_batch_end(self, batch, logs=None):
            self.calls += 1

    counting, lam = Counting(), C.LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    cbs = C.CallbackList([C.Callback(), counting, C.History(), lam, C.CSVLogger(os.devnull)])
    for step in range(5):
        cbs.on_train_batch_end(step, {"loss": 1.0})
    assert counting.calls == 5
    assert cbs._with("on_train_batch_end", "on_batch_end") == [counting, lam]
    assert cbs._with("on_test_batch_end") == []


def test_history_keeps_time_apart():
    h = C.History()
    h.on_epoch_end(0, {"loss": 1.0, "time": 2.5})
    h.on_epoch_end(1, {"loss": 0.5, "time": 2.0})
    assert h.history == {"loss": [1.0, 0.5]} and h.epoch_times == [2.5, 2.0] and h.epoch == [0, 1]


# ----------------------------------------------------------------------------- EarlyStopping
def logs_of(key, values):
    return [{key: v} for v in values]


def test_early_stopping_counts_as_keras():
    # best at epoch 1; epochs 2, 3 do not improve -> with patience 2 it stops at epoch 3
    stop = C.EarlyStopping(monitor="loss", patience=2)
    ran, _, _ = drive([stop], logs_of("loss", [1.0, 0.9, 0.95, 0.96, 0.5, 0.4]))
    assert ran == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best == 0.9
    # patience 0 and 1 both stop at the first epoch without improvement (Keras 3's count)
    for patience in (0, 1):
        stop = C.EarlyStopping(monitor="loss", patience=patience)
        assert drive([stop], logs_of("loss", [1.0, 0.9, 0.95, 0.5]))[0] == [0, 1, 2]
    # min_delta: 1.0 -> 0.95 is not an improvement of more than 0.1 (1.0 -> 0.85 is)
    stop = C.EarlyStopping(monitor="val_loss", min_delta=0.1, patience=1)
    assert drive([stop], logs_of("val_loss", [1.0, 0.95, 0.5]))[0] == [0, 1]
    stop = C.EarlyStopping(monitor="val_loss", min_delta=0.1, patience=1)
    assert drive([stop], logs_of("val_loss", [1.0, 0.85, 0.8]))[0] == [0, 1, 2]
    # mode auto: accuracy goes up
    stop = C.EarlyStopping(monitor="val_accuracy", patience=1)
    assert drive([stop], logs_of("val_accuracy", [0.5, 0.6, 0.55, 0.9]))[0] == [0, 1, 2]
    # start_from_epoch: the first two epochs are not watched
    stop = C.EarlyStopping(monitor="loss", patience=1, start_from_epoch=2)
    assert drive([stop], logs_of("loss", [1.0, 2.0, 3.0, 2.5, 2.6]))[0] == [0, 1, 2, 3, 4]
    # baseline: epochs that improve but stay above it still count towards patience (they
    # stop nothing themselves, as in Keras 3)
    values = [1.0, 0.9, 0.95, 0.96, 0.3]
    assert drive([C.EarlyStopping(monitor="loss", patience=2)], logs_of("loss", values))[0] == [0, 1, 2, 3]
    stop = C.EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    assert drive([stop], logs_of("loss", values))[0] == [0, 1, 2]


def test_early_stopping_restores_the_best_weights_at_the_end():
    stop = C.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    _, _, model = drive([stop], logs_of("loss", [1.0, 0.5, 0.7, 0.2]))
    assert stop.stopped_epoch == 2 and stop.best_epoch == 1
    assert model.weights[0].tolist() == [1.0, 1.0, 1.0]          # the weights after epoch 1
    stop = C.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    _, _, model = drive([stop], logs_of("loss", [1.0, 0.5, 0.7]))   # no early stop: restored too
    assert stop.stopped_epoch == 0 and model.weights[0].tolist() == [1.0, 1.0, 1.0]


def test_monitor_errors():
    with pytest.raises(ValueError, match=r"'val_loss' is not in the logs \(pass validation data to fit\); "
                                         "they have: loss"):
        drive([C.EarlyStopping()], logs_of("loss", [1.0]))
    with pytest.raises(ValueError, match="cannot tell whether 'score' should go up or down"):
        drive([C.EarlyStopping(monitor="score")], logs_of("score", [1.0]))
    assert drive([C.EarlyStopping(monitor="score", mode="max")], logs_of("score", [1.0, 0.5]))[0] == [0, 1]
    with pytest.raises(ValueError, match="mode must be"):
        C.EarlyStopping(mode="up")


# ----------------------------------------------------------------------------- ModelCheckpoint
def test_checkpoint_names_and_best_only(tmp_path):
    pattern = str(tmp_path / "sub" / "ckpt-{epoch:02d}-{val_loss:.4f}.txt")
    every = C.ModelCheckpoint(pattern)
    _, _, model = drive([every], logs_of("val_loss", [0.5, 0.25, 0.75]))
    names = sorted(os.listdir(tmp_path / "sub"))
    assert names == ["ckpt-01-0.5000.txt", "ckpt-02-0.2500.txt", "ckpt-03-0.7500.txt"]
    assert (tmp_path / "sub" / "ckpt-02-0.2500.txt").read_text() == "model 1.0"
    best = C.ModelCheckpoint(str(tmp_path / "best.txt"), monitor="val_loss", save_best_only=True)
    _, _, model = drive([best], logs_of("val_loss", [0.5, 0.25, 0.75, 0.3]))
    assert [kind for kind, _ in model.saves] == ["model", "model"]          # epochs 0 and 1 only
    assert (tmp_path / "best.txt").read_text() == "model 1.0" and best.best == 0.25
    weights = C.ModelCheckpoint(str(tmp_path / "w.txt"), save_weights_only=True, monitor="val_acc",
                                save_best_only=True)
    _, _, model = drive([weights], logs_of("val_acc", [0.5, 0.4, 0.9]))    # auto: accuracy goes up
    assert [kind for kind, _ in model.saves] == ["weights", "weights"]
    assert (tmp_path / "w.txt").read_text() == "weights 2.0"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]   # no temporary left


def test_checkpoint_every_n_batches(tmp_path):
    ckpt = C.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.txt"), save_freq=3)
    drive([ckpt], logs_of("loss", [1.0, 0.9]), steps=4)   # 8 batches: saves after 3 and 6
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.txt", "e2-b2.txt"]
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or a positive number"):
        C.ModelCheckpoint("x", save_freq="batch")


def test_checkpoint_bad_filepath(tmp_path):
    with pytest.raises(ValueError, match=r"cannot fill in filepath .*they have|logs' keys: loss"):
        drive([C.ModelCheckpoint(str(tmp_path / "{val_loss:.2f}.txt"))], logs_of("loss", [1.0]))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        drive([C.ModelCheckpoint(str(tmp_path / "folder"))], logs_of("loss", [1.0]))


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"the old checkpoint")

    def broken(path):
        with open(path, "wb") as f:
            f.write(b"half a new one")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"the old checkpoint"
    assert os.listdir(tmp_path) == ["model.npz"]
    seen = []

    def writer(path):
        seen.append(path)
        assert os.path.dirname(path) == str(tmp_path) and path.endswith("model.npz")
        with open(path, "wb") as f:
            f.write(b"new")

    assert atomic_write(target, writer) == str(target)
    assert target.read_bytes() == b"new" and not os.path.exists(seen[0])
    with pytest.raises(RuntimeError, match="did not create"):
        atomic_write(tmp_path / "other", lambda path: None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "no" / "such" / "file", writer)


def test_checkpoint_with_sequential_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([L.Dense(8, activation="tanh"), L.Dense(2)], input_shape=(6,), seed=0)
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    path = str(tmp_path / "best-{epoch:02d}.npz")
    seen = []
    cbs = [C.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True),
           C.CSVLogger(str(tmp_path / "log.csv")),
           C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(sorted(logs)))]
    history = model.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), callbacks=cbs, verbose=0)
    saved = sorted(os.listdir(tmp_path))
    assert "log.csv" in saved and saved[0].startswith("best-01")
    last = load_model(str(tmp_path / [n for n in saved if n.endswith(".npz")][-1]))
    assert isinstance(last, Sequential) and len(last.get_weights()) == 4
    assert seen[0] == ["accuracy", "loss", "time", "val_accuracy", "val_loss"]
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["loss"]) for r in rows] == pytest.approx(history.history["loss"])


# ----------------------------------------------------------------------------- learning rate
def test_reduce_lr_on_plateau():
    reduce = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.02,
                                 min_delta=0.0)
    model = FakeModel(lr=0.1)
    seen = []
    watch = C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["learning_rate"]))
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    drive([reduce, watch], logs_of("val_loss", values), model=model)
    # Keras's count (logs get the rate before the epoch's reduction): epoch 0 sets the best;
    # 1, 2 wait -> halved at 2; the cooldown counter runs down at 3, which already waits
    # (wait 1), so 4 halves again; 6 improves; 7, 8 wait -> 0.0125, held at min_lr 0.02
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02])
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="factor must be in"):
        C.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler():
    model = FakeModel(lr=0.1)
    seen = []
    sched = C.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    watch = C.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["learning_rate"]))
    _, history, _ = drive([sched, watch], logs_of("loss", [1, 1, 1]), model=model)
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    one_arg = C.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    _, _, model = drive([one_arg], logs_of("loss", [1, 1]))
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    for bad in ("0.1", -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="must return a finite float >= 0"):
            drive([C.LearningRateScheduler(lambda epoch, lr, bad=bad: bad)], logs_of("loss", [1]))
    # with today's Sequential: the optimiser's rate follows the schedule
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    m = Sequential([L.Dense(2)], input_shape=(4,), seed=0)
    m.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    m.fit(x, rng.integers(0, 2, 16), epochs=3, verbose=0,
          callbacks=[C.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert m.optimizer.learning_rate == pytest.approx(0.1 / 3)


# ----------------------------------------------------------------------------- the others
def test_csv_logger(tmp_path):
    path = str(tmp_path / "log.tsv")
    def lines():
        with open(path) as f:
            return f.read().splitlines()

    drive([C.CSVLogger(path, separator="\t")], [{"loss": 1.5, "accuracy": 0.25}, {"loss": 1.25, "accuracy": 0.5}])
    assert lines() == ["epoch\taccuracy\tloss\tval_accuracy\tval_loss", "0\t0.25\t1.5\tNA\tNA",
                       "1\t0.5\t1.25\tNA\tNA"]
    drive([C.CSVLogger(path, separator="\t", append=True)], [{"loss": 1.0, "accuracy": 0.75}])
    assert lines()[-1] == "0\t0.75\t1.0\tNA\tNA" and len(lines()) == 4     # no second header
    drive([C.CSVLogger(path)], [{"loss": 2.0, "val_loss": 3.0}])
    assert lines() == ["epoch,loss,val_loss", "0,2.0,3.0"]


def test_terminate_on_nan(capsys):
    ran, _, model = drive([C.TerminateOnNaN()], [{"loss": 1.0}, {"loss": float("nan")}, {"loss": 1.0}])
    assert ran == [0, 1] and model.stop_training
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="the loss is inf at batch 0"):
        drive([C.TerminateOnNaN(raise_error=True)], [{"loss": float("inf")}])


def test_lambda_callback_errors():
    with pytest.raises(ValueError, match="'on_banana' is not a callback hook"):
        C.LambdaCallback(on_banana=print)
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        C.LambdaCallback(on_epoch_end=3)
    seen = []
    C.LambdaCallback(on_test_end=lambda logs: seen.append(logs)).on_test_end({"loss": 1})
    assert seen == [{"loss": 1}]


def test_progbar_logger_writes_one_line_per_epoch_to_a_file():
    stream = io.StringIO()
    cbs = C.CallbackList([C.ProgbarLogger(stream=stream)], add_history=True, model=FakeModel(),
                         verbose=1, epochs=2, steps=3)
    cbs.on_train_begin()
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        for step in range(3):
            cbs.on_train_batch_end(step, {"loss": 0.5 - 0.1 * step, "size": 8})
        cbs.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.75, "time": 1.0})
    cbs.on_train_end()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - 3/3 [==============================] - ")
    assert lines[1].endswith("/step - loss: 0.2500 - accuracy: 0.7500")
    assert "size" not in stream.getvalue() and "time" not in stream.getvalue()


# ----------------------------------------------------------------------------- Keras (optional)
@pytest.mark.slow
def test_against_keras(real_keras):
    keras = real_keras
    rng = np.random.default_rng(5)
    for trial in range(20):
        values = list(np.round(rng.uniform(0, 1, 12), 1))
        kw = dict(patience=int(rng.integers(0, 4)), min_delta=float(rng.choice([0.0, 0.05])), mode="min")
        ours = C.EarlyStopping(monitor="val_loss", **kw)
        theirs = keras.callbacks.EarlyStopping(monitor="val_loss", **kw)
        ran, _, _ = drive([ours], logs_of("val_loss", values))
        model = FakeModel()
        theirs.set_model(model)
        theirs.on_train_begin()
        keras_ran = []
        for epoch, v in enumerate(values):
            theirs.on_epoch_end(epoch, {"val_loss": v})
            keras_ran.append(epoch)
            if model.stop_training:
                break
        assert ran == keras_ran, (values, kw)
        kw = dict(factor=0.5, patience=int(rng.integers(1, 3)), cooldown=int(rng.integers(0, 2)),
                  min_lr=0.01, min_delta=0.05, mode="min")
        ours, theirs = C.ReduceLROnPlateau(**kw), keras.callbacks.ReduceLROnPlateau(**kw)
        mine, other = FakeModel(0.1), FakeModel(0.1)
        ours.set_model(mine)
        theirs.set_model(other)
        ours.on_train_begin()
        theirs.on_train_begin()
        for epoch, v in enumerate(values):
            ours.on_epoch_end(epoch, {"val_loss": v})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs.on_epoch_end(epoch, {"val_loss": v})
            assert mine.optimizer.learning_rate == pytest.approx(float(other.optimizer.learning_rate)), \
                (values, kw, epoch)
