"""Generative models on MNIST: the DCGAN trainer, the classifier score of generated digits, and
the noise of the denoising autoencoder.

    gan = DCGAN(seed=0)                               # dcgan_generator + dcgan_discriminator
    gan.train(x_train * 2 - 1, epochs=10, batch_size=16, callbacks=[SampleGrid("samples/")])
    digits = gan.sample(10000)                        # (10000, 1, 28, 28) in [0, 1]
    classifier = score_classifier()                   # LeNet-5 (modern) at >= 99 %, cached
    classifier_score(classifier, digits)              # exp(E_x[KL(p(y|x) || p(y))]), 1 to 10

How a DCGAN step runs: Keras's GAN recipe, on the public model API. The discriminator D is
compiled alone (binary cross-entropy on its logit, Adam), then frozen (``trainable = False``)
and called inside the combined model z -> D(G(z)), which is compiled after it: fastconv reads
trainable flags at compile time, so ``combined.train_on_batch`` updates the generator G only,
while ``discriminator.train_on_batch`` still updates D. Per step, with B real images:

    fake = G(z, training=True)                    z ~ N(0, 1), (B, latent_dim); batch statistics
    D.train_on_batch([real; fake], [1; 0])        one step on the 2B images (D has no batch norm)
    combined.train_on_batch(z', 1)                G's step: D's logit for G(z') pushed to "real"

The mean over the 2B images makes D's loss half the sum of its loss on the real and on the fake
batch, which Adam, scaled by its own running moments, takes as the same step. G's loss is the
"non-saturating" one of Goodfellow et al. (2014): -log D(G(z)), not log(1 - D(G(z))).

The classifier score is the Inception score of Salimans et al. (2016) with an MNIST classifier
in place of Inception: high when each digit is classified confidently (p(y|x) sharp) and the
digits cover the classes evenly (p(y) flat); at most the number of classes. MNIST's own test
digits score about 9.8; one digit repeated scores 1.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from ..callbacks import Callback, CallbackList
from ..layers import base as B
from .model import Model
from .zoo import dcgan_discriminator, dcgan_generator, lenet5

__all__ = ["DCGAN", "SampleGrid", "ClassifierScore", "classifier_score", "score_classifier",
           "add_noise", "SCORE_CLASSIFIER_FILE"]

SCORE_CLASSIFIER_FILE = "score_classifier_lenet5_modern.npz"


# ------------------------------------------------------------------------------------ noise
def add_noise(images, factor=0.2, seed=None):
    """The denoising autoencoder's corruption: images + factor * N(0, 1), clipped to [0, 1]
    (Chollet, "Building Autoencoders in Keras", 2016). images: float, in [0, 1], any shape.
    Returns a new float32 array; seed makes it repeatable."""
    images = np.asarray(images)
    if images.dtype.kind != "f":
        raise TypeError(f"add_noise: images must be a float array in [0, 1], got dtype {images.dtype}")
    factor = float(factor)
    if not np.isfinite(factor) or factor < 0:
        raise ValueError(f"add_noise: factor must be a finite number >= 0, got {factor!r}")
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float32) + np.float32(factor) * rng.standard_normal(
        images.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0, out=noisy)


# ------------------------------------------------------------------------------------ score
def _check_images(images, owner, shape=None):
    a = np.asarray(images)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: images must be a real numeric array, got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"{owner}: images must be (N, 1, 28, 28) or (N, 28, 28), got shape "
                         f"{np.shape(images)}")
    if shape is not None and tuple(a.shape[1:]) != tuple(shape):
        raise ValueError(f"{owner}: images have per-sample shape {tuple(a.shape[1:])}, the model "
                         f"takes {tuple(shape)}")
    if len(a) == 0:
        raise ValueError(f"{owner}: no images")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{owner}: images have NaN or Inf values")
    return a


def classifier_score(classifier, images, batch_size=500, return_counts=False, device="cpu"):
    """exp(E_x[KL(p(y|x) || p(y))]): the Inception score with an MNIST classifier.

    classifier: a model giving class logits (or probabilities, if it ends in a softmax) for
        images; score_classifier() gives the one fastconv's DCGAN is measured with.
    images: (N, 1, 28, 28) or (N, 28, 28) in [0, 1], the range the classifier was trained on
        (DCGAN.sample gives that range).
    return_counts: also return how many images the classifier puts in each class, (K,) ints.

    p(y|x) is the softmax of the classifier's output (float64), p(y) its mean over the images.
    The score lies between 1 (every image the same class, or every p(y|x) = p(y)) and K, the
    number of classes (each image one class for sure, the classes equally often).
    """
    owner = "classifier_score"
    if not hasattr(classifier, "predict"):
        raise TypeError(f"{owner}: classifier must be a fastconv model, got {type(classifier).__name__}")
    x = _check_images(images, owner, getattr(classifier, "input_shape", None))
    out = np.asarray(classifier.predict(x, batch_size=batch_size, device=device), dtype=np.float64)
    if out.ndim != 2 or out.shape[1] < 2:
        raise ValueError(f"{owner}: the classifier must give (N, classes) scores, got shape {out.shape}")
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        log_p = np.log(np.maximum(out, 1e-300))           # probabilities already
    else:
        z = out - out.max(axis=1, keepdims=True)          # logits: log softmax
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    log_marginal = np.log(np.maximum(p.mean(axis=0), 1e-300))
    kl = np.sum(p * (log_p - log_marginal), axis=1)
    score = float(np.exp(kl.mean()))
    if return_counts:
        return score, np.bincount(out.argmax(axis=1), minlength=out.shape[1])
    return score


def _cache_dir():
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fastconv"


def score_classifier(path=None, train=True, min_accuracy=0.99, epochs=10, seed=0, verbose=1,
                     data_dir=None):
    """The MNIST classifier that classifier_score measures generated digits with.

    LeNet-5 in its modern form (models.lenet5(classic=False): ReLU, max pooling) trained on
    MNIST's 60,000 training digits for ``epochs`` epochs (Adam 2e-3, batch 128, the rate
    halved after every 3 epochs): about 99.2 % on the test set, in 2 to 3 minutes on 2 CPU
    cores. It is saved to ``path`` (default: $XDG_CACHE_HOME/fastconv or ~/.cache/fastconv,
    file SCORE_CLASSIFIER_FILE) and loaded from there next time.

    Loaded or trained, the classifier is checked on MNIST's 10,000 test digits: RuntimeError
    if its accuracy is below ``min_accuracy``. train=False: FileNotFoundError instead of
    training when there is no saved classifier. Returns the model; its test accuracy is in
    ``model.test_accuracy``.
    """
    from .. import datasets
    from .saving import load_model

    path = Path(path).expanduser() if path is not None else _cache_dir() / SCORE_CLASSIFIER_FILE
    if not path.exists() and not train:
        raise FileNotFoundError(f"score_classifier: no classifier at {path}; call it with "
                                "train=True to train one (2 to 3 minutes on 2 CPU cores)")
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(data_dir)
    if path.exists():
        model = load_model(path)
        if verbose:
            print(f"score classifier: loaded {path}", flush=True)
    else:
        if verbose:
            print(f"score classifier: training LeNet-5 (modern) on MNIST for {epochs} epochs; "
                  f"it will be saved to {path}", flush=True)
        model = lenet5(classic=False, seed=seed)
        model.compile(_optimizers.Adam(2e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])

        class _Halve(Callback):
            def on_epoch_end(self, epoch, logs=None):
                if (epoch + 1) % 3 == 0:
                    self.model.optimizer.learning_rate *= 0.5

        model.fit(x_train, y_train, epochs=epochs, batch_size=128, callbacks=[_Halve()],
                  verbose=2 if verbose else 0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000)
    if accuracy < min_accuracy:
        raise RuntimeError(f"score_classifier: the classifier {'loaded from' if path.exists() else 'trained for'} "
                           f"{path} has test accuracy {accuracy:.4f} < {min_accuracy}; delete "
                           "the file to train it again, or train it for more epochs")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        if verbose:
            print(f"score classifier: test accuracy {accuracy:.4f}, saved to {path}", flush=True)
    model.test_accuracy = float(accuracy)
    return model


# ------------------------------------------------------------------------------------ DCGAN
def _adam(learning_rate, beta_1):
    return _optimizers.Adam(learning_rate, beta_1=beta_1)


class DCGAN:
    """A deep convolutional GAN (Radford et al., 2015) trained with Keras's recipe (see the
    module docstring for the step).

    generator: a model from (latent_dim,) noise to images in [-1, 1] (default:
        models.dcgan_generator()). discriminator: a model from those images to one logit
        (default: models.dcgan_discriminator()). Both are compiled here: Adam with
        ``learning_rate`` and ``beta_1`` (Radford et al.'s 2e-4 and 0.5) and
        BinaryCrossentropy(from_logits=True); the discriminator is then frozen (``trainable =
        False``) and the combined model compiled, which keeps it fixed in the generator's steps
        while it still trains in its own (fastconv reads the flags at compile). As in Keras,
        the flag stays False afterwards (its summary shows no trainable weights), and a
        BatchNormalization in a discriminator would run on its moving statistics: keep batch
        normalisation out of the discriminator (dcgan_discriminator has none). seed: the default
        models' weights, the noise, the shuffling and dropout. label_smoothing: one-sided (the
        real images' target is 1 - label_smoothing, the generated ones' 0; the generator still
        aims at 1), in [0, 0.5); the default 0.1 lifts the classifier score of the default
        models on MNIST.

    Attributes: generator, discriminator, combined (z -> discriminator(generator(z))),
    latent_dim, history (the last train's History), stop_training (a callback may set it).
    """

    def __init__(self, generator=None, discriminator=None, latent_dim=100, learning_rate=2e-4,
                 beta_1=0.5, seed=None, label_smoothing=0.1):
        seeds = np.random.SeedSequence(seed).spawn(3)
        seed_of = lambda s: None if seed is None else int(s.generate_state(1)[0])  # noqa: E731
        if generator is None:
            generator = dcgan_generator(latent_dim, seed=seed_of(seeds[0]))
        if not isinstance(generator, Model):
            raise TypeError(f"DCGAN: generator must be a fastconv model, got {type(generator).__name__}")
        if discriminator is None:
            shape = tuple(generator.output_shape) if generator.built else (1, 28, 28)
            discriminator = dcgan_discriminator(shape, seed=seed_of(seeds[1]))
        if not isinstance(discriminator, Model):
            raise TypeError(f"DCGAN: discriminator must be a fastconv model, got "
                            f"{type(discriminator).__name__}")
        for name, model in (("generator", generator), ("discriminator", discriminator)):
            if not model.built:
                raise ValueError(f"DCGAN: the {name} is not built; give it an input shape")
        if len(tuple(generator.input_shape)) != 1:
            raise ValueError(f"DCGAN: the generator must take noise vectors (latent_dim,), its input "
                             f"shape is {tuple(generator.input_shape)}")
        if tuple(generator.output_shape) != tuple(discriminator.input_shape):
            raise ValueError(f"DCGAN: the generator makes {tuple(generator.output_shape)} images but "
                             f"the discriminator takes {tuple(discriminator.input_shape)}")
        if tuple(discriminator.output_shape) != (1,):
            raise ValueError(f"DCGAN: the discriminator must give one logit per image, its output "
                             f"shape is {tuple(discriminator.output_shape)}")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = int(generator.input_shape[0])
        self.learning_rate, self.beta_1 = float(learning_rate), float(beta_1)
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"DCGAN: label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
        discriminator.trainable = True
        discriminator.compile(_adam(learning_rate, beta_1), _losses.BinaryCrossentropy(from_logits=True))
        discriminator.trainable = False                      # inside the combined model only
        z = B.Input((self.latent_dim,), name="noise")
        self.combined = Model(z, discriminator(generator(z)), name="dcgan")
        self.combined.compile(_adam(learning_rate, beta_1), _losses.BinaryCrossentropy(from_logits=True))
        self._rng = np.random.default_rng(seeds[2])
        self.history = None
        self.stop_training = False

    def noise(self, n, seed=None):
        """(n, latent_dim) float32 standard normal noise (from ``seed``, else the GAN's stream)."""
        rng = self._rng if seed is None else np.random.default_rng(seed)
        return rng.standard_normal((int(n), self.latent_dim), dtype=np.float32)

    def sample(self, n=None, seed=None, z=None, batch_size=500, device="cpu"):
        """Generated images in [0, 1], (n, C, H, W): the generator in inference mode (batch
        normalisation with its moving statistics) on ``z``, or on n noise vectors drawn from
        ``seed`` (the same seed gives the same digits from the same weights)."""
        if z is None:
            if n is None or int(n) < 1:
                raise ValueError(f"DCGAN.sample: give n >= 1 or z, got n={n!r}")
            z = self.noise(n, seed)
        else:
            z = np.asarray(z, dtype=np.float32)
            if z.ndim != 2 or z.shape[1] != self.latent_dim:
                raise ValueError(f"DCGAN.sample: z must be (n, {self.latent_dim}), got shape {z.shape}")
        images = self.generator.predict(z, batch_size=batch_size, device=device)
        return np.clip((images + 1.0) * 0.5, 0.0, 1.0)

    def train(self, x, epochs=1, batch_size=16, callbacks=None, verbose=1, shuffle=True,
              device="cpu"):
        """Train on real images ``x`` (N, C, H, W), scaled to [-1, 1] like the generator's tanh.

        Each epoch is N // batch_size steps (the last incomplete batch is left out), each step
        one discriminator step on batch_size real and batch_size generated images and one
        generator step on batch_size noise vectors. callbacks: fastconv.callbacks.Callback
        objects; their ``self.model`` is this DCGAN (so ``self.model.generator``, ``sample``,
        ``stop_training``); the epoch's logs hold d_loss and g_loss (means over the epoch)
        and "time". SampleGrid writes a picture after each epoch; ClassifierScore adds the
        score. verbose: 0 silent, 1 a progress bar, 2 a line per epoch. device: "cpu", or
        "cuda" to keep both models, their gradients and optimisers on the GPU for the whole run
        (the real images and the noise go up each step, the losses come back; the weights come
        back into the models after each epoch). Returns the History (also ``self.history``).
        """
        owner = "DCGAN.train"
        from .training import check_device

        for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"{owner}: verbose must be 0, 1 or 2, got {verbose!r}")
        x = _check_images(x, owner, self.discriminator.input_shape)
        if x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6:
            raise ValueError(f"{owner}: x has values in [{x.min():g}, {x.max():g}]; scale the real "
                             "images to [-1, 1] (x * 2 - 1 for images in [0, 1]), the range of "
                             "the generator's tanh")
        n = len(x)
        if n < batch_size:
            raise ValueError(f"{owner}: {n} images are fewer than one batch of {batch_size}")
        device = check_device(device, owner)
        steps = n // batch_size
        engine = (_HostSteps if device == "cpu" else _DeviceSteps)(self, batch_size, x.shape[1:])
        real = np.empty((batch_size,) + x.shape[1:], np.float32)

        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=steps, batch_size=batch_size,
                           samples=steps * batch_size)
        batch_hooks = cbs._with("on_train_batch_end", "on_batch_end")
        self.stop_training = False
        order = np.arange(n)
        logs = {}
        cbs.on_train_begin()
        try:
            for epoch in range(epochs):
                cbs.on_epoch_begin(epoch)
                if shuffle:
                    self._rng.shuffle(order)
                start = time.perf_counter()
                d_sum = g_sum = 0.0
                for step in range(steps):
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    np.take(x, idx, axis=0, out=real)
                    d_loss, g_loss = engine.step(real, self.noise(batch_size), self.noise(batch_size))
                    d_sum += d_loss
                    g_sum += g_loss
                    if batch_hooks:
                        cbs.on_train_batch_end(step, {"d_loss": d_sum / (step + 1),
                                                      "g_loss": g_sum / (step + 1)})
                engine.sync()          # the weights back in the models, for the callbacks
                logs = {"d_loss": d_sum / steps, "g_loss": g_sum / steps,
                        "time": time.perf_counter() - start}
                if not (np.isfinite(logs["d_loss"]) and np.isfinite(logs["g_loss"])):
                    raise FloatingPointError(f"{owner}: the losses became {logs['d_loss']} (D) and "
                                             f"{logs['g_loss']} (G) in epoch {epoch + 1}: training "
                                             "diverged; lower the learning rate")
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            engine.sync()
        cbs.on_train_end(logs)
        self.history = cbs.history
        return cbs.history

    def save(self, folder):
        """Write generator.npz and discriminator.npz into ``folder`` (created if missing); load
        them with DCGAN.load (the optimisers' state is not saved)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.generator.save(folder / "generator.npz")
        self.discriminator.save(folder / "discriminator.npz")

    @classmethod
    def load(cls, folder, learning_rate=2e-4, beta_1=0.5, seed=None, label_smoothing=0.1):
        """A DCGAN from the two files DCGAN.save wrote into ``folder`` (compiled afresh)."""
        from .saving import load_model

        folder = Path(folder)
        gen = load_model(folder / "generator.npz")
        disc = load_model(folder / "discriminator.npz")   # saved frozen; __init__ unfreezes it
        return cls(gen, disc, learning_rate=learning_rate, beta_1=beta_1, seed=seed,
                   label_smoothing=label_smoothing)


# ------------------------------------------------------------------------------------ steps
def _labels(gan, batch_size):
    """The discriminator's targets for [real; fake]: 1 - label_smoothing, then 0 (one-sided
    smoothing, Salimans et al. 2016: only the real images' target moves)."""
    real = np.full((batch_size, 1), 1.0 - gan.label_smoothing, np.float32)
    return np.concatenate([real, np.zeros((batch_size, 1), np.float32)])


class _HostSteps:
    """DCGAN.train's step on the CPU: the recipe of the module docstring, on the public API."""

    def __init__(self, gan, batch_size, image_shape):
        self.gan = gan
        self.both = np.empty((2 * batch_size,) + tuple(image_shape), np.float32)  # [real; fake]
        self.ones = np.ones((batch_size, 1), np.float32)
        self.labels = _labels(gan, batch_size)

    def step(self, real, z_fake, z_gen):
        """(D's loss, G's loss) of one step on real images and two batches of noise."""
        b = len(real)
        self.both[:b] = real
        self.both[b:] = self.gan.generator(z_fake, training=True)
        d_loss = self.gan.discriminator.train_on_batch(self.both, self.labels)[0]
        g_loss = self.gan.combined.train_on_batch(z_gen, self.ones)[0]
        return d_loss, g_loss

    def sync(self):
        pass


class _DeviceModel:
    """A compiled model's training state on the GPU: gradient buffers, Adam's moments and the
    step counters, over device weights it shares with the other models of the DCGAN."""

    def __init__(self, ext, model, weights, seed_offset):
        from ..layers.core import Dropout
        from .training import _loss_plan, _output_losses, _trainer

        opt = model.optimizer
        if type(opt) is not _optimizers.Adam:
            raise NotImplementedError(f"DCGAN.train on cuda: the {model.name} trains with Adam "
                                      f"only, not {type(opt).__name__}")
        self.ext, self.model, self.opt = ext, model, opt
        self.trainer = _trainer(model)
        grads = {}
        self.grad_views = {}
        for layer in self.trainer.layers:
            flat, offsets = layer._packed
            g = grads.setdefault(id(flat), ext.Tensor.zeros((flat.size,), "float32"))
            self.grad_views[id(layer)] = [g.slice(o, o + p.size).reshape(*p.shape)
                                          for p, o in zip(layer.params, offsets)]
        self.runs = [(weights.buffers[id(flat)][1].slice(a, b), grads[id(flat)].slice(a, b))
                     for flat, a, b in self.trainer.runs]
        self.moments = [(ext.Tensor.zeros((p.size,), "float32"), ext.Tensor.zeros((p.size,), "float32"))
                        for p, _ in self.runs]
        host = opt._state if opt._state is not None and len(opt._state) == len(self.runs) else None
        if host is not None:   # Adam's moments from earlier steps on the CPU
            for (m, v), state in zip(self.moments, host):
                m.copy_(state["m"])
                v.copy_(state["v"])
        self.steps = int(opt.iterations)
        self.counters = ext.Tensor.from_numpy(np.array([0, self.steps], np.int64))
        self.plan = _loss_plan(model, "train", _output_losses(model), self.trainer.ids)
        layers = model._graph.primitive_layers()
        self.seeds = {id(layer): 7919 * (i + 1) + seed_offset for i, layer in enumerate(layers)
                      if isinstance(layer, Dropout)}

    def context(self, backend, weights, training=True):
        return B.Context(training, backend, weights.views, self.counters, self.seeds)

    def step(self, backend, weights, x, target):
        """One step of binary cross-entropy from logits on device tensors; returns the loss."""
        ext, opt = self.ext, self.opt
        ctx = self.context(backend, weights)
        outs, tape = _graph_forward(self.plan, ctx, [x], True)
        loss, dlogits = ext.bce_with_logits(outs[0], target)
        _graph_backward(self.plan, ctx, tape, [dlogits], self.grad_views)
        for (p, g), (m, v) in zip(self.runs, self.moments):
            ext.adam_update(p, g, m, v, opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon,
                            opt.weight_decay, self.counters)
        ext.step_end(self.counters)
        self.steps += 1
        return float(loss)

    def download(self):
        """Adam's step count and moments back into the host optimiser."""
        opt = self.opt
        opt.iterations = self.steps
        if opt._state is None or len(opt._state) != len(self.runs):
            opt._state = [opt._new_state(p) for p in self.trainer.params]
        for state, (m, v) in zip(opt._state, self.moments):
            np.copyto(state["m"], m.numpy())
            np.copyto(state["v"], v.numpy())


def _graph_forward(plan, ctx, xs, keep_tape):
    from . import graph

    return graph.forward(plan, ctx, xs, keep_tape)


def _graph_backward(plan, ctx, tape, douts, grads):
    from . import graph

    return graph.backward(plan, ctx, tape, douts, grads)


class _DeviceSteps:
    """DCGAN.train's step on the GPU, the same arithmetic as _HostSteps: the weights of both
    models, their gradients, Adam's moments and batch normalisation's statistics stay on the
    device; per step the host sends the real batch and the noise and reads back the two losses.
    Dropout's masks come from the GPU's counter-based generator (not NumPy's)."""

    def __init__(self, gan, batch_size, image_shape):
        from .. import cuda
        from ..backend import backend_for
        from .cuda_step import _DeviceWeights

        ext = self.ext = cuda.require()
        self.backend = backend_for(ext.Tensor.zeros((1,), "float32"))
        self.gan = gan
        # One device copy of each host weight buffer, seen by all three models' contexts.
        self.weights = _DeviceWeights(ext, gan.combined._graph.primitive_layers())
        self.weights.upload()
        self.disc = _DeviceModel(ext, gan.discriminator, self.weights, 0)
        self.gen = _DeviceModel(ext, gan.combined, self.weights, 104729)
        self.gen_plan = gan.generator._plan("call")
        self.both = ext.Tensor.empty((2 * batch_size,) + tuple(image_shape), "float32")
        self.real = self.both.slice(0, batch_size)
        self.fake = self.both.slice(batch_size, 2 * batch_size)
        self.ones = ext.Tensor.from_numpy(np.ones((batch_size, 1), np.float32))
        self.labels = ext.Tensor.from_numpy(_labels(gan, batch_size))

    def step(self, real, z_fake, z_gen):
        ext, be, w = self.ext, self.backend, self.weights
        self.real.copy_(real)
        outs, _ = _graph_forward(self.gen_plan, self.gen.context(be, w), [ext.Tensor.from_numpy(z_fake)],
                                 False)
        be.copy_into(self.fake, outs[0])
        d_loss = self.disc.step(be, w, self.both, self.labels)
        g_loss = self.gen.step(be, w, ext.Tensor.from_numpy(z_gen), self.ones)
        return d_loss, g_loss

    def sync(self):
        self.weights.download()
        self.disc.download()
        self.gen.download()


# ------------------------------------------------------------------------------------ callbacks
class SampleGrid(Callback):
    """After each epoch, write a grid of the generator's digits for fixed noise to
    ``folder``/samples_epoch_NN.png (needs matplotlib: fastconv[plot]).

    n: digits in the grid, in rows of ``columns``; seed: the fixed noise, so the pictures of
    successive epochs show the same latent points. ``paths`` lists the files written.
    """

    def __init__(self, folder, n=100, columns=10, seed=0, tile=2):
        super().__init__()
        from .. import plot  # noqa: F401  (fail now, not after an epoch, without matplotlib)

        self.folder, self.n, self.columns, self.seed, self.tile = Path(folder), int(n), int(columns), seed, tile
        self.paths = []
        self._z = None

    def on_epoch_end(self, epoch, logs=None):
        from .. import plot

        if self._z is None:
            self._z = self.model.noise(self.n, seed=self.seed)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"samples_epoch_{epoch + 1:02d}.png"
        extra = f", score {logs['score']:.2f}" if logs and "score" in logs else ""
        plot.show_image_grid(self.model.sample(z=self._z), columns=self.columns, save=path,
                             scale=self.tile, title=f"DCGAN samples after epoch {epoch + 1}{extra}")
        self.paths.append(path)


class ClassifierScore(Callback):
    """After each epoch (every ``every``-th), add the classifier score of ``n`` generated digits
    to the logs as "score", and the number of classes among them as "classes" (put it before
    SampleGrid in the list for the picture's title to show it)."""

    def __init__(self, classifier, n=10000, seed=1, every=1):
        super().__init__()
        self.classifier, self.n, self.seed, self.every = classifier, int(n), seed, int(every)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        score, counts = classifier_score(self.classifier, self.model.sample(self.n, seed=self.seed),
                                         return_counts=True)
        logs["score"] = score
        logs["classes"] = int(np.count_nonzero(counts))
