"""A DCGAN on MNIST with Keras's GAN recipe, written out step by step.

    python examples/dcgan_mnist.py [--epochs 10] [--threads 2] [--limit N] [--samples samples/]

The generator grows digits from 100 numbers of noise: Dense to 48 maps of 7x7, batch
normalisation and ReLU, a 3x3 stride-1 transposed convolution to 48 maps of 7x7 (batch
normalisation, ReLU), a transposed convolution to 24 maps of 14x14 (batch normalisation,
ReLU), a transposed convolution to one 28x28 image with tanh; the batch normalisations keep
their moving statistics with momentum 0.9. The discriminator reads a digit through two
stride-2 convolutions with leaky ReLUs and dropout, and gives one logit: real or generated.
Each step trains the discriminator on a batch of 16 real digits (target 0.9: one-sided label
smoothing) and 16 generated digits (target 0), then the generator through the frozen
discriminator, to make it say "real" (target 1; binary cross-entropy from logits, Adam 2e-4
with beta_1 0.5, as Radford et al. 2015). After each epoch it prints the classifier score of
10,000 generated digits (about 9.8 for real digits, 1 for one digit repeated).
``fastconv.models.gan.DCGAN`` and ``fastconv train dcgan`` run the same training.
"""
import argparse
import time

import numpy as np

import fastconv
from fastconv import layers as L
from fastconv.losses import BinaryCrossentropy
from fastconv.models.gan import classifier_score, score_classifier
from fastconv.optimizers import Adam

LATENT = 100


def build_generator(seed=0):
    return fastconv.Sequential([
        fastconv.Input((LATENT,), name="noise"),
        L.Dense(48 * 7 * 7, use_bias=False), L.BatchNormalization(momentum=0.9), L.ReLU(),
        L.Reshape((48, 7, 7)),                                                  # (48, 7, 7)
        L.Conv2DTranspose(48, 3, strides=1, padding="same", use_bias=False),    # (48, 7, 7)
        L.BatchNormalization(momentum=0.9), L.ReLU(),
        L.Conv2DTranspose(24, 4, strides=2, padding="same", use_bias=False),    # (24, 14, 14)
        L.BatchNormalization(momentum=0.9), L.ReLU(),
        L.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),  # (1, 28, 28)
    ], seed=seed, name="generator")


def build_discriminator(seed=1):
    return fastconv.Sequential([
        fastconv.Input((1, 28, 28), name="image"),
        L.Conv2D(32, 4, strides=2, padding="same", activation="leaky_relu"),    # (32, 14, 14)
        L.Dropout(0.2),
        L.Conv2D(64, 4, strides=2, padding="same", activation="leaky_relu"),    # (64, 7, 7)
        L.Dropout(0.2),
        L.Flatten(), L.Dense(1),                                                # a logit
    ], seed=seed, name="discriminator")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N digits only")
    parser.add_argument("--samples", default=None, help="write a grid of digits per epoch into this folder")
    args = parser.parse_args()
    if args.threads:
        fastconv.set_num_threads(args.threads)
    (x_train, _), _ = fastconv.datasets.load_mnist()
    x_train = x_train[:args.limit] * 2.0 - 1.0                        # the generator's tanh range
    classifier = score_classifier()                     # trained once (2-3 minutes), then cached

    generator, discriminator = build_generator(), build_discriminator()
    discriminator.compile(Adam(2e-4, beta_1=0.5), BinaryCrossentropy(from_logits=True))
    # Frozen, then compiled into the combined model: fastconv reads trainable flags at compile
    # time, so combined.train_on_batch moves the generator only, while
    # discriminator.train_on_batch still moves the discriminator.
    discriminator.trainable = False
    z = fastconv.Input((LATENT,))
    combined = fastconv.Model(z, discriminator(generator(z)))
    combined.compile(Adam(2e-4, beta_1=0.5), BinaryCrossentropy(from_logits=True))

    rng = np.random.default_rng(0)
    b = args.batch_size
    # one-sided label smoothing: the real digits' target is 0.9, the generated ones' 0
    real_or_fake = np.concatenate([np.full((b, 1), 0.9), np.zeros((b, 1))]).astype(np.float32)
    ones = np.ones((b, 1), np.float32)                     # the generator aims at "real": 1
    fixed_noise = rng.standard_normal((100, LATENT), dtype=np.float32)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        d_loss = g_loss = 0.0
        steps = len(x_train) // b
        for step in range(steps):
            real = x_train[order[step * b:(step + 1) * b]]
            fake = generator(rng.standard_normal((b, LATENT), dtype=np.float32), training=True)
            d_loss += discriminator.train_on_batch(np.concatenate([real, fake]), real_or_fake)[0]
            g_loss += combined.train_on_batch(rng.standard_normal((b, LATENT), dtype=np.float32),
                                              ones)[0]
        seconds = time.perf_counter() - start
        digits = (generator.predict(rng.standard_normal((10000, LATENT), dtype=np.float32),
                                    batch_size=500) + 1) / 2
        score, counts = classifier_score(classifier, digits, return_counts=True)
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds:.1f}s, d_loss {d_loss / steps:.4f}, "
              f"g_loss {g_loss / steps:.4f}, classifier score {score:.2f}, "
              f"classes {np.count_nonzero(counts)}/10", flush=True)
        if args.samples:
            from pathlib import Path

            from fastconv import plot

            Path(args.samples).mkdir(parents=True, exist_ok=True)
            plot.show_image_grid((generator.predict(fixed_noise) + 1) / 2, columns=10,
                                 save=f"{args.samples}/epoch_{epoch + 1:02d}.png",
                                 title=f"after epoch {epoch + 1}: score {score:.2f}")


if __name__ == "__main__":
    main()
