"""A convolutional denoising autoencoder on MNIST, written out layer by layer.

    python examples/denoising_autoencoder.py [--epochs 10] [--threads 2] [--limit N] [--picture denoised.png]

The network restores digits from noisy copies (x + 0.2 N(0, 1), clipped to [0, 1]): an
encoder of two stride-2 convolutions (28 -> 14 -> 7), a decoder of two stride-2 transposed
convolutions (7 -> 14 -> 28) and a 3x3 convolution with a sigmoid back to one grey channel. It
is trained with Adam on the mean squared error between its output for the noisy images and
the clean ones. The same network is ``fastconv.models.denoising_autoencoder`` and
``fastconv train denoise``.
"""
import argparse

import numpy as np

import fastconv
from fastconv import initializers
from fastconv import layers as L


def build(seed=0):
    he = "he_uniform"
    return fastconv.Sequential([
        fastconv.Input((1, 28, 28), name="noisy"),
        # encoder: (1, 28, 28) -> (16, 14, 14) -> (8, 7, 7)
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu", kernel_initializer=he, name="encode1"),
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu", kernel_initializer=he, name="encode2"),
        # decoder: (8, 7, 7) -> (8, 14, 14) -> (16, 28, 28) -> (1, 28, 28)
        L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", kernel_initializer=he,
                          name="decode1"),
        L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu", kernel_initializer=he,
                          name="decode2"),
        # The output starts at sigmoid(-2) = 0.12, near the mean grey level of a digit: from 0.5
        # the first steps would push every decoder ReLU to zero and the model would stay stuck
        # on one constant image.
        L.Conv2D(1, 3, padding="same", activation="sigmoid", kernel_initializer=he,
                 bias_initializer=initializers.Constant(-2.0), name="restore"),
    ], seed=seed, name="denoising_autoencoder")


def add_noise(images, factor=0.2, seed=0):
    rng = np.random.default_rng(seed)
    noisy = images + np.float32(factor) * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N digits only")
    parser.add_argument("--picture", default=None, help="write noisy / denoised / clean rows here (PNG)")
    args = parser.parse_args()
    if args.threads:
        fastconv.set_num_threads(args.threads)
    (x_train, _), (x_test, y_test) = fastconv.datasets.load_mnist()
    x_train = x_train[:args.limit]
    x_train_noisy, x_test_noisy = add_noise(x_train, seed=1), add_noise(x_test, seed=2)

    model = build()
    model.summary()
    model.compile(optimizer=fastconv.optimizers.Adam(1e-3), loss="mse")
    model.fit(x_train_noisy, x_train, epochs=args.epochs, batch_size=128,
              validation_data=(x_test_noisy, x_test))
    mse = model.evaluate(x_test_noisy, x_test, batch_size=500)[0]
    print(f"test MSE against the clean images: {mse:.4f} "
          f"(the noisy images: {np.mean((x_test_noisy - x_test) ** 2):.4f})")

    if args.picture:
        from fastconv import plot

        picks = [int(np.flatnonzero(y_test == digit)[0]) for digit in range(10)]
        rows = np.concatenate([x_test_noisy[picks], model.predict(x_test_noisy[picks]), x_test[picks]])
        plot.show_image_grid(rows, columns=10, row_titles=["noisy", "denoised", "clean"],
                             save=args.picture)
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
