"""fit, evaluate and predict take Keras's arguments: validation_split and validation_freq,
shuffle, sample_weight and class_weight, initial_epoch, steps_per_epoch, verbose 0/1/2,
return_dict, metrics as a string or a list, and a generator or PyDataset-like source of
batches. Each test checks what the argument does, with numbers."""
import numpy as np
import pytest

from fastconv import callbacks, layers as L, losses, metrics, optimizers
from fastconv.models import Sequential


def _model(seed=0, classes=3):
    return Sequential([L.Dense(8, activation="tanh"), L.Dense(classes)], input_shape=(5,), seed=seed)


def _data(n=24, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, classes, n)


class _Record(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, logs["size"], logs["batch_loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x, y = _data(20)
    a = _model()
    a.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics="accuracy")
    ha = a.fit(x, y, epochs=2, batch_size=4, validation_split=0.25, verbose=0)
    b = _model()
    b.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics="accuracy")
    hb = b.fit(x[:15], y[:15], epochs=2, batch_size=4, validation_data=(x[15:], y[15:]), verbose=0)
    assert ha.history == hb.history
    assert set(ha.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    with pytest.raises(ValueError, match="validation_split must be a number in"):
        a.fit(x, y, validation_split=1.0, verbose=0)


def test_validation_freq_and_initial_epoch_and_steps_per_epoch():
    x, y = _data(24)
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    record = _Record()
    history = model.fit(x, y, epochs=5, initial_epoch=1, batch_size=4, steps_per_epoch=3,
                        validation_data=(x, y), validation_freq=2, callbacks=[record], verbose=0)
    assert history.epoch == [1, 2, 3, 4] and record.epochs == [1, 2, 3, 4]
    assert len(history.history["loss"]) == 4
    assert len(history.history["val_loss"]) == 2            # after epochs 2 and 4 (1-based)
    assert [b for b, _, _ in record.batches] == [0, 1, 2] * 4   # 3 steps an epoch
    assert model.optimizer.iterations == 12
    listed = _model()
    listed.compile("sgd", "sparse_categorical_crossentropy")
    h = listed.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), validation_freq=[1, 3],
                   verbose=0)
    assert len(h.history["val_loss"]) == 2


def test_shuffle_false_walks_the_data_in_order():
    x, y = _data(12)
    losses_seen = []
    for _ in range(2):
        model = _model(seed=5)
        model.compile(optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        record = _Record()
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False, callbacks=[record], verbose=0)
        losses_seen.append([loss for _, _, loss in record.batches])
    first = _model(seed=5)
    first.compile(optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    assert losses_seen[0] == losses_seen[1]
    assert losses_seen[0][0] == pytest.approx(first.evaluate(x[:4], y[:4], batch_size=4)[0], rel=1e-6)


def test_sample_weight_and_class_weight():
    x, y = _data(16)
    base = _model()
    base.compile("sgd", "sparse_categorical_crossentropy")
    plain = base.compute_gradients(x, y)
    weights = np.ones(16, np.float32)
    weights[:8] = 0.0                                        # only the last 8 samples count
    loss, grads = base.compute_gradients(x, y, sample_weight=weights)
    half_loss, half_grads = base.compute_gradients(x[8:], y[8:])
    assert loss == pytest.approx(half_loss / 2, rel=1e-5)   # summed over 8, divided by 16
    for g, h in zip(grads, half_grads):
        np.testing.assert_allclose(g, h / 2, rtol=1e-4, atol=1e-7)
    assert plain[0] != loss
    # class_weight {c: w} is sample_weight w for the samples of class c
    cw = {0: 2.0, 1: 0.5, 2: 1.0}
    a, b = _model(), _model()
    for m in (a, b):
        m.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    ha = a.fit(x, y, epochs=2, batch_size=4, class_weight=cw, verbose=0, shuffle=False)
    hb = b.fit(x, y, epochs=2, batch_size=4, sample_weight=np.array([cw[int(c)] for c in y]),
               verbose=0, shuffle=False)
    assert ha.history["loss"] == pytest.approx(hb.history["loss"], rel=1e-6)
    with pytest.raises(ValueError, match="one value per sample"):
        a.fit(x, y, sample_weight=np.ones(3), verbose=0)


def test_verbose_levels_print_as_keras(capsys):
    x, y = _data(12)
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, batch_size=4, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - 3/3 - ")
    assert "loss: " in lines[0] and "accuracy: " in lines[0] and "[" not in lines[0]
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2 or 'auto'"):
        model.fit(x, y, verbose=3)
    assert model.predict(x, verbose=0).shape == (12, 3)
    model.evaluate(x, y, verbose=1)
    assert capsys.readouterr().out.startswith("loss: ")


def test_metrics_as_a_string_or_a_list_and_return_dict():
    x, y = _data(30, classes=3)
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics="accuracy")
    assert [m.name for m in model.metrics] == ["accuracy"]   # not the letters a, c, c, ...
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["acc", metrics.SparseTopKCategoricalAccuracy(k=2)])
    history = model.fit(x, y, epochs=1, batch_size=10, validation_data=(x, y), verbose=0)
    assert set(history.history) == {"loss", "acc", "sparse_top_k_categorical_accuracy", "val_loss",
                                    "val_acc", "val_sparse_top_k_categorical_accuracy"}
    result = model.evaluate(x, y, return_dict=True)
    assert list(result) == ["loss", "acc", "sparse_top_k_categorical_accuracy"]
    probabilities = np.exp(model.predict(x))
    top2 = np.argsort(-probabilities, axis=1)[:, :2]
    assert result["sparse_top_k_categorical_accuracy"] == pytest.approx(
        np.mean([label in row for label, row in zip(y, top2)]))
    assert model.train_on_batch(x, y, return_dict=True).keys() == result.keys()


def test_loss_objects_with_from_logits_and_binary_targets():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)[:, None]
    model = Sequential([L.Dense(4, activation="tanh"), L.Dense(1)], input_shape=(5,), seed=1)
    model.compile(optimizers.Adam(0.05), losses.BinaryCrossentropy(from_logits=True),
                  metrics=[metrics.BinaryAccuracy(threshold=0.0)])
    history = model.fit(x, y, epochs=20, batch_size=10, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["binary_accuracy"][-1] > 0.9
    # the same model ending in a sigmoid: the loss takes the logits it fuses away
    sig = Sequential([L.Dense(4, activation="tanh"), L.Dense(1, activation="sigmoid")],
                     input_shape=(5,), seed=1)
    sig.compile(optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    h = sig.fit(x, y, epochs=20, batch_size=10, verbose=0)
    np.testing.assert_allclose(h.history["loss"], history.history["loss"], rtol=1e-4)
    assert 0.0 < sig.predict(x).min() and sig.predict(x).max() < 1.0


def test_fit_on_a_generator_and_on_a_pydataset():
    x, y = _data(24)

    def batches():
        while True:
            for i in range(0, 24, 6):
                yield x[i:i + 6], y[i:i + 6]

    class Dataset:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[6 * i:6 * i + 6], y[6 * i:6 * i + 6]

    results = []
    for source, kwargs in ((batches(), {"steps_per_epoch": 4}), (Dataset(), {})):
        model = _model(seed=2)
        model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(source, epochs=3, verbose=0, **kwargs)
        results.append(history.history)
        assert model.optimizer.iterations == 12
    arrays = _model(seed=2)
    arrays.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    expected = arrays.fit(x, y, epochs=3, batch_size=6, shuffle=False, verbose=0).history
    for history in results:
        assert history["loss"] == pytest.approx(expected["loss"], rel=1e-6)
        assert history["accuracy"] == expected["accuracy"]
    # a finite generator ends the training when it runs out
    short = _model()
    short.compile("sgd", "sparse_categorical_crossentropy")
    h = short.fit(((x[i:i + 6], y[i:i + 6]) for i in range(0, 24, 6)), epochs=5, steps_per_epoch=3,
                  verbose=0)
    assert len(h.history["loss"]) == 2
    with pytest.raises(ValueError, match="y must be None"):
        short.fit(batches(), y, verbose=0)


def test_nhwc_targets_for_a_channels_last_autoencoder():
    rng = np.random.default_rng(4)
    images = rng.random((8, 6, 6, 1), dtype=np.float32)        # NHWC in and out
    model = Sequential([L.Conv2D(2, 3, padding="same", activation="relu", data_format="channels_last",
                                 input_shape=(6, 6, 1)),
                        L.Conv2D(1, 3, padding="same", activation="sigmoid")], seed=0)
    model.compile(optimizers.Adam(0.01), "mse")
    history = model.fit(images, images, epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict(images).shape == (8, 6, 6, 1)
    assert "(None, 6, 6, 2)" in model.summary(print_fn=None)    # shown in the user's layout
