"""fastconv.keras: Keras programs run with only their imports changed.

The programs below are written as Keras's tutorials write them (channels-last data,
``input_shape=(28, 28, 1)``, ``keras.datasets.mnist.load_data()``, ``validation_split``,
Keras's weight layouts); only the import lines name fastconv. Each checks real results: the
classifier learns, the autoencoders reconstruct, the anomaly detector separates, the hand-made
filters respond where they should. Where Keras itself installs (keras with its torch backend,
or tensorflow), the same architectures are cross-checked against it: parameter counts, output
shapes and the summary's rows.
"""

import numpy as np
import pytest

from fastconv import keras  # instead of: from tensorflow import keras
from fastconv.keras import layers  # instead of: from tensorflow.keras import layers


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return (x_train, y_train), (x_test, y_test)


def test_load_data_is_keras_shaped(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert keras.backend.image_data_format() == "channels_last"


@pytest.mark.slow
def test_the_convnet_tutorial(mnist):
    """Keras's "simple MNIST convnet", on 6,000 training images for two epochs."""
    (x_train, y_train), (x_test, y_test) = mnist
    num_classes = 10
    x_train = x_train[:6000].astype("float32") / 255
    x_test = x_test[:2000].astype("float32") / 255
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    y_train = keras.utils.to_categorical(y_train[:6000], num_classes)
    y_test = keras.utils.to_categorical(y_test[:2000], num_classes)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])
    assert model.count_params() == 34_826          # Keras's count for this model
    text = model.summary(print_fn=lambda s: None)
    assert "(None, 26, 26, 32)" in text and "(None, 1600)" in text   # shapes shown NHWC
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    score = model.evaluate(x_test, y_test, verbose=0)
    assert score[1] > 0.85, score
    probabilities = model.predict(x_test[:5], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
def test_the_dense_autoencoder_with_reshape(mnist):
    (x_train, _), (x_test, _) = mnist
    x_train = x_train[:4000].astype("float32") / 255
    x_test = x_test[:500].astype("float32") / 255
    keras.utils.set_random_seed(1)
    autoencoder = keras.Sequential([
        layers.Flatten(input_shape=(28, 28)),
        layers.Dense(64, activation="relu"),
        layers.Dense(784, activation="sigmoid"),
        layers.Reshape((28, 28)),
    ])
    autoencoder.compile(optimizer="adam", loss="mse")
    first = autoencoder.evaluate(x_test, x_test, verbose=0)[0]
    autoencoder.fit(x_train, x_train, epochs=3, batch_size=64, shuffle=True,
                    validation_data=(x_test, x_test), verbose=0)
    decoded = autoencoder.predict(x_test, verbose=0)
    assert decoded.shape == (500, 28, 28)
    mse = float(np.mean((decoded - x_test) ** 2))
    assert mse < 0.5 * first and mse < 0.05, (first, mse)


@pytest.mark.slow
def test_the_anomaly_detector_with_per_sample_mae(mnist):
    """Train on one digit; flag samples whose reconstruction error passes a threshold."""
    (x_train, y_train), (x_test, y_test) = mnist
    normal = x_train[y_train == 1][:2000].reshape(-1, 784).astype("float32") / 255
    keras.utils.set_random_seed(2)
    autoencoder = keras.Sequential([
        layers.Dense(32, activation="relu", input_shape=(784,)),
        layers.Dense(8, activation="relu"),
        layers.Dense(32, activation="relu"),
        layers.Dense(784, activation="sigmoid"),
    ])
    autoencoder.compile(optimizer="adam", loss="mae")
    autoencoder.fit(normal, normal, epochs=5, batch_size=64, verbose=0)
    train_loss = keras.losses.mae(normal, autoencoder.predict(normal, verbose=0))
    assert train_loss.shape == (2000,)                       # one value per sample
    threshold = np.mean(train_loss) + np.std(train_loss)
    test = x_test.reshape(-1, 784).astype("float32") / 255
    test_loss = keras.losses.mae(test, autoencoder.predict(test, verbose=0))
    flagged = test_loss > threshold
    ones, others = y_test == 1, y_test != 1
    assert flagged[ones].mean() < 0.2 and flagged[others].mean() > 0.8, \
        (flagged[ones].mean(), flagged[others].mean())


def test_hand_made_edge_filters_with_set_weights(mnist):
    """Two 3x3 filters set by hand on an HWIO kernel: one answers vertical edges, the other
    horizontal ones."""
    model = keras.Sequential([layers.Conv2D(2, (3, 3), use_bias=False, input_shape=(28, 28, 1))])
    vertical = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype="float32")
    kernel = np.zeros((3, 3, 1, 2), dtype="float32")           # Keras's HWIO
    kernel[:, :, 0, 0] = vertical
    kernel[:, :, 0, 1] = vertical.T
    model.layers[0].set_weights([kernel])
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], kernel)
    image = np.zeros((1, 28, 28, 1), dtype="float32")
    image[0, :, 14:, 0] = 1.0                                   # a vertical edge at column 14
    maps = model.predict(image, verbose=0)
    assert maps.shape == (1, 26, 26, 2)
    assert np.abs(maps[0, :, :, 0]).max() == 3.0 and np.abs(maps[0, :, :, 1]).max() == 0.0
    assert set(np.nonzero(maps[0, 5, :, 0])[0].tolist()) == {12, 13}


@pytest.mark.slow
def test_the_convolutional_denoising_autoencoder(mnist):
    (x_train, _), (x_test, _) = mnist
    x_train = np.expand_dims(x_train[:6000].astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test[:500].astype("float32") / 255, -1)
    rng = np.random.default_rng(3)
    noise_factor = 0.2
    x_train_noisy = np.clip(x_train + noise_factor * rng.normal(size=x_train.shape), 0, 1).astype("float32")
    x_test_noisy = np.clip(x_test + noise_factor * rng.normal(size=x_test.shape), 0, 1).astype("float32")

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(16, (3, 3), activation="relu", padding="same", strides=2)(inputs)
    x = layers.Conv2D(8, (3, 3), activation="relu", padding="same", strides=2)(x)
    x = layers.Conv2DTranspose(8, kernel_size=3, strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(16, kernel_size=3, strides=2, activation="relu", padding="same")(x)
    outputs = layers.Conv2D(1, kernel_size=(3, 3), activation="sigmoid", padding="same")(x)
    autoencoder = keras.Model(inputs, outputs)
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")   # as keras.io's tutorial
    assert autoencoder.count_params() == 160 + 1160 + 584 + 1168 + 145
    before = float(np.mean((autoencoder.predict(x_test_noisy, verbose=0) - x_test) ** 2))
    autoencoder.fit(x_train_noisy, x_train, epochs=4, batch_size=64, shuffle=True,
                    validation_data=(x_test_noisy, x_test), verbose=0)
    denoised = autoencoder.predict(x_test_noisy, verbose=0)
    assert denoised.shape == (500, 28, 28, 1)                  # NHWC out, as the targets
    after = float(np.mean((denoised - x_test) ** 2))
    assert after < 0.3 * before and after < 0.03, (before, after)


# ------------------------------------------------------------------------------ layout errors
def test_a_channels_first_shape_on_channels_last_layers_is_named():
    with pytest.raises(ValueError, match=r"looks channels-first.*data_format"):
        keras.Sequential([layers.Conv2D(8, 3, input_shape=(1, 28, 28))])
    model = keras.Sequential([layers.Conv2D(8, 3, input_shape=(28, 28, 1)), layers.Flatten(),
                              layers.Dense(2)])
    with pytest.raises(ValueError, match="looks channels-first"):
        model.predict(np.zeros((2, 1, 28, 28), np.float32))
    assert model.predict(np.zeros((2, 28, 28), np.float32)).shape == (2, 2)   # grey, no channel axis


# ------------------------------------------------------------------------------ real Keras
def _architectures(k):
    """The same three architectures, in either Keras (k is the module)."""
    L = k.layers
    convnet = k.Sequential([k.Input(shape=(28, 28, 1)), L.Conv2D(32, (3, 3), activation="relu"),
                            L.MaxPooling2D((2, 2)), L.Conv2D(64, (3, 3), activation="relu"),
                            L.MaxPooling2D((2, 2)), L.Flatten(), L.Dropout(0.5),
                            L.Dense(10, activation="softmax")])
    inputs = k.Input(shape=(28, 28, 1))
    x = L.Conv2D(16, 3, activation="relu", padding="same", strides=2)(inputs)
    x = L.BatchNormalization()(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    skip = L.Concatenate()([x, L.Conv2D(4, 1)(inputs)])
    outputs = L.Conv2D(1, 3, padding="same", activation="sigmoid")(L.UpSampling2D()(skip))
    unet = k.Model(inputs, outputs)
    generator = k.Sequential([k.Input(shape=(100,)), L.Dense(7 * 7 * 16, use_bias=False),
                              L.BatchNormalization(), L.ReLU(), L.Reshape((7, 7, 16)),
                              L.Conv2DTranspose(8, 4, strides=2, padding="same", use_bias=False),
                              L.BatchNormalization(), L.ReLU(),
                              L.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")])
    return {"convnet": convnet, "unet": unet, "generator": generator}


@pytest.mark.slow
def test_same_counts_shapes_and_summary_rows_as_real_keras(real_keras):
    real = real_keras
    theirs, ours = _architectures(real), _architectures(keras)
    for name in theirs:
        t, o = theirs[name], ours[name]
        assert o.count_params() == t.count_params(), name
        their_layers = [layer for layer in t.layers if type(layer).__name__ != "InputLayer"]
        our_layers = [layer for layer in o.layers if type(layer).__name__ != "InputLayer"]
        assert [type(layer).__name__ for layer in our_layers] == \
            [type(layer).__name__ for layer in their_layers], name
        for a, b in zip(our_layers, their_layers):
            assert a.count_params() == b.count_params(), (name, a.name)
            want = tuple(b.output.shape)
            have = "(" + ", ".join(str(d) for d in (None,) + _user_shape(o, a.output_shape)) + ")"
            assert have == str(want).replace(",)", ")"), (name, a.name, have, want)
        lines = []
        t.summary(print_fn=lines.append)
        their_text = "\n".join(lines)
        ours_text = o.summary(print_fn=lambda s: None)
        for marker in ("Layer (type)", "Output Shape", "Param #", "Total params:", "Trainable params:",
                       "Non-trainable params:"):
            assert marker in their_text and marker in ours_text, marker
        for ch in "┏┃┡│└":
            assert ch in ours_text and ch in their_text
        their_total = [line for line in their_text.splitlines() if "Total params" in line][0]
        our_total = [line for line in ours_text.splitlines() if "Total params" in line][0]
        assert our_total.split("(")[0].strip() == their_total.split("(")[0].strip()


def _user_shape(model, shape):
    shape = tuple(shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
