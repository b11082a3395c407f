"""The denoising autoencoder and the DCGAN (fastconv.models.zoo, fastconv.models.gan): shapes
and parameter counts, each model's forward against a float64 reference built from
tests/reference.py, training steps that lower the loss, save and load, the discriminator frozen
inside the combined model while it trains in its own steps, the classifier score against a
plain-loop reference, and the CLI commands on tiny runs (in subprocesses, as a user runs them).
The 10-epoch runs are in benchmarks/ (bench_generative.py and the logs in results/)."""
import math
import re
import subprocess
import sys

import numpy as np
import pytest

import fastconv
import reference as ref
from fastconv import layers as L
from fastconv import losses, models, optimizers
from fastconv.models import gan as G
from conftest import MNIST_DIR


@pytest.fixture(scope="module")
def digits():
    """512 training digits and 256 test digits (with labels), float32 in [0, 1]."""
    (x, y), (xt, yt) = fastconv.datasets.load_mnist()
    return x[:512], y[:512], xt[:256], yt[:256]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny kernels: one thread avoids OpenMP waits on a busy machine."""
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    yield
    fastconv.set_num_threads(threads)


def _same_as(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


# ------------------------------------------------------------------------------ shapes, counts
def test_denoising_autoencoder_shapes_and_parameters():
    model = models.denoising_autoencoder(seed=0)
    shapes = [tuple(layer.output_shape) for layer in model.layers]
    assert shapes == [(16, 14, 14), (8, 7, 7), (8, 14, 14), (16, 28, 28), (1, 28, 28)]
    # 1*16*9+16, 16*8*9+8, 8*8*9+8, 8*16*9+16, 16*1*9+1
    assert model.count_params() == 160 + 1160 + 584 + 1168 + 145 == 3217
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "Conv2D", "Conv2DTranspose", "Conv2DTranspose", "Conv2D"]
    assert [layer.activation for layer in model.layers] == ["relu"] * 4 + ["sigmoid"]
    assert [layer.strides for layer in model.layers] == [(2, 2)] * 4 + [(1, 1)]
    # the output starts near MNIST's mean grey level (see the docstring), the other biases at 0
    assert np.all(model.layers[-1].get_weights()[1] == -2.0)
    assert all(np.all(layer.get_weights()[1] == 0) for layer in model.layers[:-1])
    assert models.denoising_autoencoder((3, 32, 32), seed=0).output_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="input_shape"):
        models.denoising_autoencoder((28, 28))


def test_dcgan_generator_and_discriminator_shapes_and_parameters():
    gen = models.dcgan_generator(seed=0)
    assert gen.input_shape == (100,) and gen.output_shape == (1, 28, 28)
    shapes = [tuple(layer.output_shape) for layer in gen.layers]
    assert shapes == [(2352,), (2352,), (2352,), (48, 7, 7), (48, 7, 7), (48, 7, 7), (48, 7, 7),
                      (24, 14, 14), (24, 14, 14), (24, 14, 14), (1, 28, 28)]
    # Dense 100*2352 (no bias), BN 4*2352, stride-1 deconv 48*48*9 (no bias), BN 4*48, deconv
    # 48*24*16 (no bias), BN 4*24, deconv 24*16+1
    assert gen.count_params() == 235200 + 9408 + 20736 + 192 + 18432 + 96 + 385 == 284449
    assert sum(w.size for w in gen.trainable_weights) == \
        235200 + 4704 + 20736 + 96 + 18432 + 48 + 385 == 279601
    deconvs = [layer for layer in gen.layers if isinstance(layer, L.Conv2DTranspose)]
    assert [(d.filters, d.kernel_size, d.strides) for d in deconvs] == \
        [(48, (3, 3), (1, 1)), (24, (4, 4), (2, 2)), (1, (4, 4), (2, 2))]
    assert [layer.momentum for layer in gen.layers if isinstance(layer, L.BatchNormalization)] == \
        [0.9] * 3
    disc = models.dcgan_discriminator(seed=0)
    assert disc.input_shape == (1, 28, 28) and disc.output_shape == (1,)
    assert disc.count_params() == (16 * 32 + 32) + (32 * 64 * 16 + 64) + (3136 + 1) == 36513
    assert [layer.activation for layer in disc.layers if isinstance(layer, L.Conv2D)] == \
        ["leaky_relu"] * 2
    assert models.dcgan_generator(latent_dim=8, width=16, seed=0).count_params() == \
        8 * 784 + 4 * 784 + 16 * 16 * 9 + 4 * 16 + 16 * 8 * 16 + 4 * 8 + 8 * 16 + 1
    for kwargs, name in (({"latent_dim": 0}, "latent_dim"), ({"width": 7}, "width"),
                         ({"width": 2.0}, "width")):
        with pytest.raises(ValueError, match=name):
            models.dcgan_generator(**kwargs)
    with pytest.raises(ValueError, match="width"):
        models.dcgan_discriminator(width=0)


# ------------------------------------------------------------------------------ forward vs reference
def test_autoencoder_forward_matches_the_reference(digits):
    x = digits[0][:3]
    model = models.denoising_autoencoder(seed=1)
    w = [layer.get_weights() for layer in model.layers]
    h = ref.relu(ref.conv2d(x, *w[0], stride=2, padding="same"))
    h = ref.relu(ref.conv2d(h, *w[1], stride=2, padding="same"))
    h = ref.relu(ref.conv2d_transpose(h, *w[2], stride=2, padding="same"))
    h = ref.relu(ref.conv2d_transpose(h, *w[3], stride=2, padding="same"))
    want = ref.sigmoid(ref.conv2d(h, *w[4], padding="same"))
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)


def test_generator_and_discriminator_forward_match_the_reference():
    rng = np.random.default_rng(0)
    gen = models.dcgan_generator(latent_dim=10, width=8, seed=2)
    z = rng.standard_normal((5, 10)).astype(np.float32)
    dense, bn1, _, _, same7, bn7, _, up1, bn2, _, up2 = gen.layers
    h = ref.linear(z, dense.get_weights()[0])
    h = ref.relu(ref.batch_norm_training(h, *bn1.get_weights()[:2])[0]).reshape(5, 8, 7, 7)
    h = ref.conv2d_transpose(h, same7.get_weights()[0], stride=1, padding="same")
    h = ref.relu(ref.batch_norm_training(h, *bn7.get_weights()[:2])[0])
    h = ref.conv2d_transpose(h, up1.get_weights()[0], stride=2, padding="same")
    h = ref.relu(ref.batch_norm_training(h, *bn2.get_weights()[:2])[0])
    want = ref.tanh(ref.conv2d_transpose(h, *up2.get_weights(), stride=2, padding="same"))
    got = gen(z, training=True)                               # batch statistics
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    disc = models.dcgan_discriminator(width=4, seed=3)
    x = np.tanh(rng.standard_normal((3, 1, 28, 28))).astype(np.float32)
    c1, _, c2, _, _, dense = disc.layers
    h = ref.leaky_relu(ref.conv2d(x, *c1.get_weights(), stride=2, padding="same"), 0.2)
    h = ref.leaky_relu(ref.conv2d(h, *c2.get_weights(), stride=2, padding="same"), 0.2)
    want = ref.linear(h.reshape(3, -1), *dense.get_weights())
    np.testing.assert_allclose(disc.predict(x), want, rtol=1e-4, atol=1e-5)   # dropout off


# ------------------------------------------------------------------------------ training lowers the loss
def test_autoencoder_training_lowers_the_test_mse(digits):
    x, _, xt, _ = digits
    model = models.denoising_autoencoder(seed=0)
    model.compile(optimizers.Adam(3e-3), "mse")
    noisy, noisy_test = G.add_noise(x, seed=1), G.add_noise(xt, seed=2)
    before = model.evaluate(noisy_test, xt)[0]
    history = model.fit(noisy, x, epochs=4, batch_size=32, verbose=0)
    after = model.evaluate(noisy_test, xt)[0]
    losses_ = history.history["loss"]
    assert all(b < a for a, b in zip(losses_, losses_[1:])), losses_
    assert after < 0.6 * before, (before, after)


def test_add_noise():
    clean = np.linspace(0, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    noisy = G.add_noise(clean, 0.2, seed=5)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    np.testing.assert_array_equal(noisy, G.add_noise(clean, 0.2, seed=5))
    draw = np.random.default_rng(5).standard_normal(clean.shape, dtype=np.float32)
    np.testing.assert_array_equal(noisy, np.clip(clean + np.float32(0.2) * draw, 0, 1))
    np.testing.assert_array_equal(G.add_noise(clean, 0.0, seed=1), clean)
    with pytest.raises(ValueError, match="factor"):
        G.add_noise(clean, -0.1)
    with pytest.raises(TypeError, match="images"):
        G.add_noise(np.zeros((2, 28, 28), np.uint8))


def _small_gan(seed=0):
    gen = models.dcgan_generator(latent_dim=16, width=8, seed=seed)
    disc = models.dcgan_discriminator(width=4, seed=seed + 1)
    return G.DCGAN(gen, disc, learning_rate=1e-3, seed=seed)


def test_discriminator_and_generator_steps_lower_their_losses(digits):
    gan = _small_gan()
    real = digits[0][:32] * 2 - 1
    z = gan.noise(32, seed=7)
    fake = gan.generator.predict(z)
    both = np.concatenate([real, fake])
    labels = np.concatenate([np.ones((32, 1)), np.zeros((32, 1))]).astype(np.float32)
    d_before = gan.discriminator.evaluate(both, labels)[0]
    for _ in range(5):
        gan.discriminator.train_on_batch(both, labels)
    assert gan.discriminator.evaluate(both, labels)[0] < d_before
    ones = np.ones((32, 1), np.float32)
    g_before = gan.combined.evaluate(z, ones)[0]
    for _ in range(5):
        gan.combined.train_on_batch(z, ones)
    assert gan.combined.evaluate(z, ones)[0] < g_before


def test_frozen_discriminator_inside_the_combined_model_trains_in_its_own_steps(digits):
    gan = _small_gan()
    disc, gen = gan.discriminator, gan.generator
    assert not disc.trainable                    # as Keras's recipe leaves it
    assert len(gan.combined.trainable_weights) == len(gen.trainable_weights)
    ones = np.ones((16, 1), np.float32)
    d0, g0 = disc.get_weights(), gen.get_weights()
    gan.combined.train_on_batch(gan.noise(16), ones)          # the generator's step
    assert _same_as(d0, disc.get_weights())
    assert not _same_as(g0, gen.get_weights())
    g1 = gen.get_weights()
    disc.train_on_batch(digits[0][:16] * 2 - 1, ones)        # the discriminator's step
    assert not _same_as(d0, disc.get_weights())
    assert _same_as(g1, gen.get_weights())

    # The same through DCGAN.train: each optimiser counts its own steps, and a discriminator
    # whose weights are checked after every combined step never moves there.
    class Watch(fastconv.callbacks.Callback):
        moved_in_g_step = False

        def on_train_batch_end(self, batch, logs=None):
            before = disc.get_weights()
            gan.combined.train_on_batch(gan.noise(8), np.ones((8, 1), np.float32))
            Watch.moved_in_g_step |= not _same_as(before, disc.get_weights())

    d_steps, g_steps = disc.optimizer.iterations, gan.combined.optimizer.iterations
    history = gan.train(digits[0][:64] * 2 - 1, epochs=2, batch_size=16, verbose=0,
                        callbacks=[Watch()])
    assert disc.optimizer.iterations == d_steps + 8
    assert gan.combined.optimizer.iterations == g_steps + 8 + 8
    assert not Watch.moved_in_g_step
    assert set(history.history) == {"d_loss", "g_loss"} and len(history.epoch_times) == 2
    assert all(math.isfinite(v) for v in history.history["d_loss"] + history.history["g_loss"])


def test_dcgan_train_checks_its_arguments(digits):
    gan = _small_gan()
    x = digits[0][:64]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        gan.train(x * 4 - 2, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        gan.train(x[:10], epochs=1, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="per-sample shape"):
        gan.train(np.zeros((64, 1, 32, 32), np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        gan.train(x, epochs=1, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        gan.train(np.full((64, 1, 28, 28), np.nan, np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="device"):
        gan.train(x, epochs=1, verbose=0, device="tpu")
    with pytest.raises(ValueError, match="takes"):
        G.DCGAN(models.dcgan_generator(seed=0), models.dcgan_discriminator((1, 32, 32), seed=0))
    with pytest.raises(ValueError, match="one logit"):
        G.DCGAN(models.dcgan_generator(seed=0), models.lenet5(classic=False, seed=0))
    with pytest.raises(TypeError, match="generator"):
        G.DCGAN(generator="dcgan")
    with pytest.raises(ValueError, match="label_smoothing"):
        _small_gan().__class__(label_smoothing=0.5)
    assert _small_gan().label_smoothing == 0.1                 # the default: one-sided 0.1


def test_one_sided_label_smoothing_moves_only_the_real_target(digits):
    gen = models.dcgan_generator(latent_dim=16, width=8, seed=0)
    gan = G.DCGAN(gen, models.dcgan_discriminator(width=4, dropout=0.0, seed=1), seed=0,
                  label_smoothing=0.1)
    steps = G._HostSteps(gan, 3, (1, 28, 28))
    np.testing.assert_array_equal(steps.labels[:, 0], np.float32([0.9, 0.9, 0.9, 0, 0, 0]))
    np.testing.assert_array_equal(steps.ones, 1.0)         # the generator still aims at 1
    # the discriminator's step is binary cross-entropy against those targets (no dropout, so
    # predict gives the logits the step sees; the generator in training mode is deterministic)
    real, z = digits[0][:3] * 2 - 1, gan.noise(3, seed=1)
    logits = gan.discriminator.predict(np.concatenate([real, gan.generator(z, training=True)]))
    want, _ = ref.binary_cross_entropy_with_logits(logits, steps.labels)
    d_loss, _ = steps.step(real, z, gan.noise(3, seed=2))
    assert d_loss == pytest.approx(want, rel=1e-5)


def test_dcgan_sample_is_repeatable_and_in_range():
    gan = _small_gan()
    a, b = gan.sample(6, seed=3), gan.sample(6, seed=3)
    assert a.shape == (6, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    z = gan.noise(6, seed=3)
    np.testing.assert_allclose(a, (gan.generator.predict(z) + 1) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="z must be"):
        gan.sample(z=np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------------------ save / load
def test_save_and_load_both_models(tmp_path, digits):
    x = digits[0][:8]
    ae = models.denoising_autoencoder(seed=0)
    ae.compile(optimizers.Adam(1e-3), "mse")
    ae.fit(x, x, epochs=1, batch_size=4, verbose=0)
    ae.save(tmp_path / "ae.npz")
    back = fastconv.load_model(tmp_path / "ae.npz")
    np.testing.assert_array_equal(back.predict(x), ae.predict(x))
    assert back.count_params() == 3217

    gan = _small_gan()
    gan.train(digits[0][:32] * 2 - 1, epochs=1, batch_size=16, verbose=0)  # BN statistics move
    gan.save(tmp_path / "gan")
    again = G.DCGAN.load(tmp_path / "gan")
    np.testing.assert_array_equal(again.sample(4, seed=1), gan.sample(4, seed=1))
    np.testing.assert_array_equal(again.discriminator.predict(x), gan.discriminator.predict(x))
    assert _same_as(again.generator.get_weights(), gan.generator.get_weights())
    again.train(digits[0][:32] * 2 - 1, epochs=1, batch_size=16, verbose=0)   # and trains on


# ------------------------------------------------------------------------------ classifier score
def _score_reference(logits):
    """exp(mean_i sum_k p_ik log(p_ik / mean_j p_jk)), written out loop by loop."""
    logits = np.asarray(logits, np.float64)
    n, k = logits.shape
    p = np.zeros((n, k))
    for i in range(n):
        top = max(logits[i])
        e = [math.exp(v - top) for v in logits[i]]
        p[i] = [v / sum(e) for v in e]
    marginal = [sum(p[i, c] for i in range(n)) / n for c in range(k)]
    kl = 0.0
    for i in range(n):
        for c in range(k):
            if p[i, c] > 0:
                kl += p[i, c] * math.log(p[i, c] / marginal[c])
    return math.exp(kl / n)


def _linear_classifier(weight, bias):
    model = models.Sequential([L.Flatten(), L.Dense(len(bias))], input_shape=(1, 28, 28))
    model.layers[1].set_weights([weight, bias])
    return model


def test_classifier_score_matches_the_reference():
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 28, 28), dtype=np.float32)
    clf = _linear_classifier(rng.standard_normal((10, 784)).astype(np.float32) * 0.1,
                             rng.standard_normal(10).astype(np.float32))
    score, counts = G.classifier_score(clf, images, batch_size=7, return_counts=True)
    assert score == pytest.approx(_score_reference(clf.predict(images)), rel=1e-6)
    assert 1.0 < score < 10.0
    assert counts.sum() == 40 and np.array_equal(counts, np.bincount(
        clf.predict(images).argmax(1), minlength=10))
    # (N, 28, 28) images are taken as one channel; a softmax output is read as probabilities
    assert G.classifier_score(clf, images[:, 0]) == pytest.approx(score, rel=1e-6)
    soft = models.Sequential([L.Flatten(), L.Dense(10, activation="softmax")], input_shape=(1, 28, 28))
    soft.layers[1].set_weights(clf.layers[1].get_weights())
    assert G.classifier_score(soft, images) == pytest.approx(score, rel=1e-5)


def test_classifier_score_limits():
    """Ten classes, each certain and equally frequent: 10; one class for every image: 1."""
    weight = np.zeros((10, 784), np.float32)
    for c in range(10):
        weight[c, c] = 100.0                      # class c <- pixel c
    clf = _linear_classifier(weight, np.zeros(10, np.float32))
    images = np.zeros((50, 1, 28, 28), np.float32)
    for i in range(50):
        images[i, 0, 0, i % 10] = 1.0
    assert G.classifier_score(clf, images) == pytest.approx(10.0, rel=1e-6)
    assert G.classifier_score(clf, np.repeat(images[:1], 50, axis=0)) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        G.classifier_score(clf, np.full((2, 1, 28, 28), np.nan, np.float32))
    with pytest.raises(ValueError, match="per-sample shape"):
        G.classifier_score(clf, np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(TypeError, match="classifier"):
        G.classifier_score("lenet", images)


def test_score_classifier_without_training_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train=True"):
        G.score_classifier(tmp_path / "none.npz", train=False, verbose=0)


@pytest.mark.slow
def test_score_classifier_scores_real_digits_near_10_and_one_digit_at_1(tmp_path):
    """Trains the LeNet-5 (2 to 3 minutes on 2 cores) into tmp_path, then loads it back."""
    fastconv.set_num_threads(2)
    path = tmp_path / "classifier.npz"
    clf = G.score_classifier(path, verbose=0)
    assert clf.test_accuracy >= 0.99 and path.exists()
    clf = G.score_classifier(path, train=False, verbose=0)
    _, (xt, yt) = fastconv.datasets.load_mnist()
    score, counts = G.classifier_score(clf, xt, return_counts=True)
    assert 9.6 < score < 10.0
    assert np.abs(counts - np.bincount(yt)).max() < 30
    assert G.classifier_score(clf, np.repeat(xt[:1], 500, axis=0)) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------ pictures
def test_sample_grid_writes_one_picture_per_epoch(tmp_path, digits):
    pytest.importorskip("matplotlib", reason="SampleGrid needs matplotlib (pip install fastconv[plot])")
    gan = _small_gan()
    grid = G.SampleGrid(tmp_path / "samples", n=12, columns=4)
    gan.train(digits[0][:32] * 2 - 1, epochs=2, batch_size=16, verbose=0, callbacks=[grid])
    assert [p.name for p in grid.paths] == ["samples_epoch_01.png", "samples_epoch_02.png"]
    from matplotlib.image import imread

    picture = imread(grid.paths[0])
    # 3 rows x 4 columns of 28x28 at scale 2, 1 px apart: 230 x 170 px inside a 320 x 210 figure
    assert picture.shape[:2] == (30 + (3 * 29 - 1) * 2 + 10, 320)


def test_image_grid_places_each_image():
    pytest.importorskip("matplotlib", reason="fastconv.plot needs matplotlib")
    from fastconv import plot

    images = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 1, 4, 3) / 60
    fig = plot.show_image_grid(images, columns=2, row_titles=["a", "b", "c"], scale=3)
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape == (3 * 5 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(mosaic[5:9, 4:7], images[3, 0])      # row 1, column 1
    assert np.ma.getmaskarray(mosaic)[4].all() or np.isnan(mosaic.data[4]).all()   # the gap
    assert plot.figure_size_px(fig) == (max(320, 70 + 7 * 3 + 10), 30 + 14 * 3 + 10)
    with pytest.raises(ValueError, match="row titles"):
        plot.show_image_grid(images, columns=2, row_titles=["a"])
    with pytest.raises(ValueError, match="columns"):
        plot.show_image_grid(images, columns=0)


# ------------------------------------------------------------------------------ CLI
def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "fastconv", *map(str, args)], cwd=cwd,
                          timeout=timeout, capture_output=True, text=True)


def test_cli_denoise_prints_the_test_mse_and_writes_the_picture(tmp_path):
    pytest.importorskip("matplotlib", reason="--samples needs matplotlib (pip install fastconv[plot])")
    result = run_cli("train", "denoise", "--epochs", "1", "--limit", "256", "--threads", "1",
                     "--samples", tmp_path / "pics", "--save", tmp_path / "ae.npz", "--verbose", "2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "256 training and 10000 test images" in out and "Total params: 3,217" in out
    noisy = float(re.search(r"noisy test images against the clean ones: MSE (\d\.\d{4})", out).group(1))
    assert 0.015 < noisy < 0.03
    match = re.search(r"test MSE against the clean images: (\d\.\d{4}) \(the noisy images: "
                      r"(\d\.\d{4}); 10000 images\)", out)
    assert match, out
    assert float(match.group(2)) == noisy and 0 < float(match.group(1)) < 0.3
    assert (tmp_path / "pics" / "denoised.png").exists()
    assert fastconv.load_model(tmp_path / "ae.npz").count_params() == 3217


def test_cli_dcgan_writes_samples_and_saves_the_generator(tmp_path):
    pytest.importorskip("matplotlib", reason="--samples needs matplotlib (pip install fastconv[plot])")
    result = run_cli("train", "dcgan", "--epochs", "2", "--limit", "128", "--threads", "1",
                     "--score-samples", "0", "--samples", tmp_path / "pics",
                     "--save", tmp_path / "gen.npz", "--verbose", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "128 training and 10000 test images" in out
    assert "Total params: 284,449" in out and "Total params: 36,513" in out
    assert "batch size 16 real + 16 generated" in out
    assert len(re.findall(r"Epoch \d/2 - 8/8 - .* - d_loss: \d\.\d{4} - g_loss: \d\.\d{4}", out)) == 2, out
    assert "beta_1=0.5" in out and "classifier score" not in out
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == \
        ["samples_epoch_01.png", "samples_epoch_02.png"]
    assert fastconv.load_model(tmp_path / "gen.npz").output_shape == (1, 28, 28)


@pytest.mark.parametrize("args, message", [
    (["denoise", "--noise", "-0.5"], "--noise must be a finite number >= 0"),
    (["lenet5", "--noise", "0.3"], "--noise is an option of denoise, not of lenet5"),
    (["denoise", "--latent-dim", "10"], "--latent-dim is an option of dcgan, not of denoise"),
    (["dcgan", "--plots", "."], "use --samples DIR"),
    (["lenet5", "--samples", "."], "--samples is an option of denoise and dcgan"),
    (["dcgan", "--beta1", "1.0"], "--beta1 must be a finite number >= 0 and < 1"),
    (["dcgan", "--latent-dim", "0"], "--latent-dim must be >= 1"),
    (["dcgan", "--score-samples", "-1"], "--score-samples must be >= 0"),
    (["dcgan", "--optimizer", "sgd"], "dcgan trains with Adam"),
    (["denoise", "--augment", "2"], "--augment: denoise trains on the images as they are"),
    (["dcgan", "--distributed"], "--distributed trains the classifiers only"),
    (["dcgan", "--classifier", "."], "is a folder"),
    (["dcgan", "--epochs", "1", "--limit", "10", "--score-samples", "0"],
     "10 images are fewer than one batch of 16"),
])
def test_cli_generative_arguments_are_checked_before_training(tmp_path, args, message):
    result = run_cli("train", *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_samples_folder_must_be_writable(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_cli("train", "denoise", "--samples", afile, cwd=tmp_path)
    assert result.returncode == 2 and "--samples" in result.stderr and "not a folder" in result.stderr


@pytest.mark.slow
def test_cli_dcgan_prints_the_classifier_score(tmp_path):
    """With a score classifier (trained into tmp_path first, 2 to 3 minutes)."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST not found at {MNIST_DIR}")
    path = tmp_path / "classifier.npz"
    result = run_cli("train", "dcgan", "--epochs", "1", "--limit", "256", "--score-samples", "500",
                     "--classifier", path, "--verbose", "2", cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"the 10000 real test digits score 9\.\d\d", out), out
    assert re.search(r"16/16 - .* - score: \d+\.\d{4} - classes: \d+", out), out  # batch 16
    assert re.search(r"classifier score of 500 generated digits: \d+\.\d\d; classes present: "
                     r"\d+ of 10", out), out
    assert path.exists()


# ------------------------------------------------------------------------------ the GPU path
def _gan_for_devices(dropout):
    gen = models.dcgan_generator(latent_dim=16, width=8, seed=0)
    disc = models.dcgan_discriminator(width=4, dropout=dropout, seed=1)
    return G.DCGAN(gen, disc, learning_rate=1e-3, seed=0)


def test_dcgan_on_the_gpu_path_follows_the_cpu_step_for_step(monkeypatch, digits):
    """DCGAN.train(device="cuda") on tests/fake_cuda.py (the CUDA extension's functions on the
    CPU): without dropout (the same generator of masks, but the GPU seeds it per layer and
    step where the CPU layers draw their seeds) the same arithmetic as the CPU path, so the same losses, weights, batch statistics and Adam state."""
    import fake_cuda

    x = digits[0][:48] * 2 - 1
    cpu = _gan_for_devices(0.0)
    h_cpu = cpu.train(x, epochs=2, batch_size=16, verbose=0)
    fake_cuda.install(monkeypatch)
    gpu = _gan_for_devices(0.0)
    h_gpu = gpu.train(x, epochs=2, batch_size=16, verbose=0, device="cuda")
    for key in ("d_loss", "g_loss"):
        np.testing.assert_allclose(h_gpu.history[key], h_cpu.history[key], rtol=1e-5)
    for a, b in zip(gpu.generator.get_weights() + gpu.discriminator.get_weights(),
                    cpu.generator.get_weights() + cpu.discriminator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for model in ("discriminator", "combined"):
        here, there = getattr(gpu, model).optimizer, getattr(cpu, model).optimizer
        assert here.iterations == there.iterations == 6
        for s, t in zip(here._state, there._state):
            np.testing.assert_allclose(s["m"], t["m"], rtol=1e-4, atol=1e-8)
    # and on from there on the CPU, where the GPU run left off
    gpu.train(x, epochs=1, batch_size=16, verbose=0)
    cpu.train(x, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_allclose(gpu.sample(4, seed=2), cpu.sample(4, seed=2), atol=1e-4)


def test_dcgan_on_the_gpu_path_with_dropout_keeps_the_discriminator_frozen(monkeypatch, digits):
    import fake_cuda

    fake_cuda.install(monkeypatch)
    gan = _gan_for_devices(0.3)
    d0 = gan.discriminator.get_weights()
    frozen = []

    class Watch(fastconv.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            frozen.append(gan.discriminator.get_weights())

    history = gan.train(digits[0][:32] * 2 - 1, epochs=2, batch_size=16, verbose=0,
                        callbacks=[Watch()], device="cuda")
    assert all(math.isfinite(v) for v in history.history["d_loss"] + history.history["g_loss"])
    assert not _same_as(d0, frozen[0]) and not _same_as(frozen[0], frozen[1])  # D trains
    assert gan.discriminator.optimizer.iterations == gan.combined.optimizer.iterations == 4
