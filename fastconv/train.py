"""The command line: ``fastconv train ...``, ``fastconv info`` and ``fastconv --version``
(``python -m fastconv ...`` runs the same).

    fastconv train lenet5 --dataset mnist --epochs 10
    fastconv train vgg_small --dataset fashion-mnist --epochs 5 --save vgg.npz
    fastconv train --preset mnist99           (a named recipe: model, epochs, batch, schedule)
    fastconv info
    mpiexec -n 4 fastconv train vgg_small --distributed     (data-parallel; needs fastconv[mpi])

``train`` loads the data set (fastconv.datasets: MNIST ships with the package, so it needs no
data argument), builds the model (fastconv.models.lenet5 or vgg_small), trains it with a
progress bar and a line per epoch (its time), then prints the test accuracy:
``test accuracy: 0.9912 (loss 0.0301, 10000 images)``. Defaults: LeNet-5 with Adam 1e-3 and
batch 64; the small VGG with Adam 1e-3 and batch 128. ``--limit N`` trains on the first N
training images only. Every argument is checked before training starts (numbers in range, the
--save and --plots folders present and writable), so a bad one never costs a training run.
Errors print one line ``error: ...`` on stderr and exit with status 2.

``--preset NAME`` runs a named recipe of fastconv.presets (mnist99: MNIST to about 99% in two
epochs, docs/MNIST99.md): the preset chooses the model, data set, epochs, batch size, optimiser
and learning-rate schedule, so the model argument and those options are left out (giving one
is an error that names it); --seed, --threads, --limit, --data-dir, --save, --plots and
--verbose work as usual.

Two generative models train on the same data (fastconv.models.gan):

    fastconv train denoise --epochs 10 --samples pictures/     (the denoising autoencoder)
    fastconv train dcgan --epochs 10 --samples pictures/       (the DCGAN)

``denoise`` trains models.denoising_autoencoder() to restore images from noisy copies (x +
``--noise`` N(0, 1), clipped to [0, 1]; default 0.2) with Adam 1e-3, batch 128 and the mean
squared error, and prints the test MSE against the clean images:
``test MSE against the clean images: 0.0087 (the noisy images: 0.0212; 10000 images)``;
``--samples DIR`` writes DIR/denoised.png (rows of noisy, denoised and clean test digits).
``dcgan`` trains models.gan.DCGAN (Adam 2e-4 with beta_1 0.5, batch 16, one-sided label
smoothing 0.1) on the training images scaled to [-1, 1] and, on MNIST, prints the classifier
score of ``--score-samples`` generated digits after each epoch and at the end
(models.gan.classifier_score with the LeNet-5 of models.gan.score_classifier, trained once and
cached, or read from ``--classifier PATH``); ``--samples DIR`` writes DIR/samples_epoch_NN.png
after each epoch; ``--save`` saves the generator.

``--distributed`` trains data-parallel over the ranks of an MPI launch (fastconv.distributed):
``--batch-size`` is the global batch, each rank trains on its share of it, and only rank 0
prints, saves and plots. A launch whose ranks were given different arguments fails at start
with one ``error: ...`` line naming what differs; an error on one rank alone aborts the job.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "train", "check_train_args", "resolve_preset", "info"]

CLASSIFIERS = ("lenet5", "lenet5_modern", "vgg_small", "resnet_small")
GENERATIVE = ("denoise", "dcgan")
MODELS = CLASSIFIERS + GENERATIVE
DATASETS = ("mnist", "fashion-mnist")
DEFAULTS = {  # model -> (optimizer, learning rate, batch size)
    "lenet5": ("adam", 1e-3, 64),
    "lenet5_modern": ("adam", 1e-3, 64),
    "vgg_small": ("adam", 1e-3, 128),
    "resnet_small": ("adam", 1e-3, 128),
    "denoise": ("adam", 1e-3, 128),
    "dcgan": ("adam", 2e-4, 16),
}
NOISE_FACTOR = 0.2      # denoise: x + 0.2 N(0, 1), clipped to [0, 1]
LATENT_DIM = 100        # dcgan: the generator's noise vector
BETA_1 = 0.5            # dcgan: Adam's beta_1 (Radford et al., 2015)
SCORE_SAMPLES = 10000   # dcgan: generated digits the classifier score is measured on


class CLIError(Exception):
    """A problem with the command line's arguments or inputs (printed as ``error: ...``)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that shows each option's default, except where the default is
    None or False (the option's help then says what applies)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    """The argparse parser of the ``fastconv`` command (also ``python -m fastconv``)."""
    from . import presets
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="fastconv", formatter_class=_HelpFormatter,
                                     description="fastconv: train the reference CNNs, show the build.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a reference CNN, the denoising autoencoder or the DCGAN "
                                     "on MNIST or Fashion-MNIST",
                       formatter_class=_HelpFormatter)
    t.add_argument("model", choices=MODELS, nargs="?", default=None,
                   help="lenet5 (classic: tanh, average pooling, C3 table), lenet5_modern "
                        "(ReLU, max pooling, full C3), vgg_small, resnet_small (two residual "
                        "blocks, built with the functional API), denoise (the convolutional "
                        "denoising autoencoder) or dcgan (a DCGAN); left out with --preset")
    t.add_argument("--preset", choices=sorted(presets.PRESETS), default=None,
                   help="a named recipe (fastconv.presets) that chooses the model, data set, epochs, "
                        "batch size, optimiser and schedule: " +
                        "; ".join(f"{p.name}: {p.summary}" for p in presets.PRESETS.values()).replace("%", "%%"))
    t.add_argument("--dataset", choices=DATASETS, default=None, help="the data set (default: mnist)")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training set (default: 10)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: 64 for lenet5 and lenet5_modern, 16 for dcgan, "
                        "128 for vgg_small, resnet_small and denoise)")
    t.add_argument("--data-dir", default=None,
                   help="folder with the four IDX files (default: FASTCONV_DATA, the cache, then "
                        "for MNIST the copy that ships with fastconv)")
    t.add_argument("--download", action="store_true",
                   help="download the data set if no copy is found")
    t.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained model there (.npz; its folder must exist; dcgan: the "
                        "generator)")
    t.add_argument("--plots", default=None, metavar="DIR",
                   help="write history.png, filters.png and feature_maps.png into DIR (needs "
                        "fastconv[plot]; the classifiers only)")
    t.add_argument("--samples", default=None, metavar="DIR",
                   help="denoise: write DIR/denoised.png (noisy, denoised and clean test digits); "
                        "dcgan: DIR/samples_epoch_NN.png after each epoch (needs fastconv[plot])")
    t.add_argument("--noise", type=float, default=None,
                   help=f"denoise: the noise factor (default {NOISE_FACTOR}): x + factor N(0, 1), "
                        "clipped to [0, 1]")
    t.add_argument("--latent-dim", type=int, default=None,
                   help=f"dcgan: length of the generator's noise vector (default {LATENT_DIM})")
    t.add_argument("--beta1", type=float, default=None,
                   help=f"dcgan: Adam's beta_1, in [0, 1) (default {BETA_1})")
    t.add_argument("--score-samples", type=int, default=None, metavar="N",
                   help=f"dcgan on MNIST: generated digits the classifier score is measured on "
                        f"after each epoch (default {SCORE_SAMPLES}; 0: no score)")
    t.add_argument("--classifier", default=None, metavar="PATH",
                   help="dcgan: the score classifier's file (default: the user's cache folder); "
                        "trained there (2 to 3 minutes) if missing")
    t.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="the optimizer (default: adam)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-3 for Adam (dcgan: 2e-4), 0.05 for SGD)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, in [0, 1)")
    t.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this after each epoch (default: 1, constant)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and dropout")
    t.add_argument("--augment", type=int, default=None, metavar="PIXELS",
                   help="in training, shift each image by up to PIXELS pixels each way (a "
                        "RandomTranslation layer first; CPU only; default 0: off)")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: fastconv's, OMP_NUM_THREADS or the CPU count)")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="train on the CPU or on an NVIDIA GPU with fastconv's CUDA kernels")
    t.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N images only (default: all)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 quiet, 1 progress bar + a line per epoch, 2 a line per epoch")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the MPI ranks: mpiexec -n 4 fastconv train ... "
                        "--distributed (needs fastconv[mpi]); --batch-size is the global batch")

    sub.add_parser("info", help="version, CPU kernel (ISA), threads, CUDA availability")
    return parser


def _check_writable_folder(option, folder, what):
    """Raise CLIError unless folder is an existing folder this process may write into."""
    if not folder.exists():
        raise CLIError(f"{option}: the folder {str(folder)!r} for {what} does not exist; create it first")
    if not folder.is_dir():
        raise CLIError(f"{option}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{option}: the folder {str(folder)!r} is not writable")


def _check_save_path(path):
    """--save: the file can be written (its folder exists and is writable; not a folder)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise CLIError(f"--save: {path!r} is a folder; give a file name such as model.npz")
    _check_writable_folder("--save", target.parent if str(target.parent) else Path("."), "the model")
    if target.exists() and not os.access(target, os.W_OK):
        raise CLIError(f"--save: {path!r} exists and is not writable")


def _check_plots_folder(path, option="--plots"):
    """--plots (or --samples): DIR is a writable folder, or can be made in the nearest folder
    that exists."""
    target = Path(path).expanduser()
    if target.exists():
        if not target.is_dir():
            raise CLIError(f"{option}: {path!r} exists and is not a folder")
        _check_writable_folder(option, target, "the pictures")
        return
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _check_writable_folder(option, parent, "the pictures")


def _check_number(option, value, low=None, high=None, low_open=False, high_open=False):
    """Raise CLIError unless value is finite and in the given range."""
    if value is None:
        return
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise CLIError(f"{option} must be a finite number {' and '.join(s for s in (lo, hi) if s)}, "
                       f"got {value!r}")


# The options a preset chooses (argparse dest -> the option's name): giving one with --preset
# is an error, since the recipe is what the preset is.
_PRESET_OPTIONS = {"dataset": "--dataset", "epochs": "--epochs", "batch_size": "--batch-size",
                   "optimizer": "--optimizer", "lr": "--lr", "lr_decay": "--lr-decay",
                   "augment": "--augment"}
# What the options above default to without a preset.
_PLAIN_DEFAULTS = {"dataset": "mnist", "epochs": 10, "lr_decay": 1.0, "augment": 0}


def resolve_preset(args):
    """Fill in what ``args`` left open: with --preset, the preset's model, data set, epochs and
    batch size (after checking that none of the options it chooses was given); without, the
    plain defaults (mnist, 10 epochs, no decay, no augmentation). Returns the Preset or None.
    Raises CLIError. Safe to call twice."""
    from . import presets

    name = getattr(args, "preset", None)
    if name is None:
        if getattr(args, "model", None) is None:
            raise CLIError("give a model (" + ", ".join(MODELS) + ") or --preset (" +
                           ", ".join(sorted(presets.PRESETS)) + ")")
        for dest, value in _PLAIN_DEFAULTS.items():
            if getattr(args, dest, None) is None:
                setattr(args, dest, value)
        return None
    try:
        preset = presets.get(name)
    except ValueError as err:
        raise CLIError(f"--preset: {err}") from None
    if getattr(args, "_preset_applied", None) == name:
        return preset
    if args.model is not None:
        raise CLIError(f"--preset {name} trains its own model ({preset.model_name}); leave the "
                       f"model argument {args.model!r} out")
    given = [option for dest, option in _PRESET_OPTIONS.items() if getattr(args, dest, None) is not None]
    if given:
        raise CLIError(f"--preset {name} chooses {', '.join(given)} itself (the recipe: "
                       f"{preset.summary}); leave {'it' if len(given) == 1 else 'them'} out, or train "
                       f"a model without --preset")
    args.dataset, args.epochs, args.batch_size = preset.dataset, preset.epochs, preset.batch_size
    args.optimizer, args.lr, args.lr_decay, args.augment = "adam", preset.max_lr, 1.0, 0
    args._preset_applied = name
    return preset


def check_train_args(args):
    """Every check on ``train``'s arguments that needs no data and no model: run first, so a
    mistake is reported before a training run, not after it. Fills in the defaults and the
    preset's choices (resolve_preset). Raises CLIError."""
    import fastconv

    resolve_preset(args)
    if args.epochs < 0:
        raise CLIError(f"--epochs must be >= 0, got {args.epochs}")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.threads is not None:
        limit = fastconv._core.max_num_threads()
        if not 1 <= args.threads <= limit:
            raise CLIError(f"--threads must be between 1 and {limit}, got {args.threads}")
    _check_number("--lr", args.lr, low=0, low_open=True)
    _check_number("--momentum", args.momentum, low=0, high=1, high_open=True)
    _check_number("--lr-decay", args.lr_decay, low=0, low_open=True)
    if getattr(args, "augment", 0) < 0:
        raise CLIError(f"--augment must be >= 0 pixels, got {args.augment}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"data folder {args.data_dir!r} does not exist (--data-dir); it should hold the "
                       f"{args.dataset} IDX files (train-images-idx3-ubyte[.gz], ...)")
    if args.save:
        _check_save_path(args.save)
    if args.plots:
        _check_plots_folder(args.plots)
    _check_generative_args(args)


# Options of one model family only: (option, attribute, the models that take it).
_MODEL_OPTIONS = (
    ("--samples", "samples", GENERATIVE), ("--noise", "noise", ("denoise",)),
    ("--latent-dim", "latent_dim", ("dcgan",)), ("--beta1", "beta1", ("dcgan",)),
    ("--score-samples", "score_samples", ("dcgan",)), ("--classifier", "classifier", ("dcgan",)),
    ("--plots", "plots", CLASSIFIERS),
)


def _check_generative_args(args):
    """The options of denoise and dcgan: given only to the model that takes them, in range."""
    model = getattr(args, "model", None)
    for option, attr, takers in _MODEL_OPTIONS:
        if getattr(args, attr, None) not in (None, False) and model not in takers:
            hint = "; use --samples DIR for the pictures of denoise and dcgan" if attr == "plots" else ""
            raise CLIError(f"{option} is an option of {' and '.join(takers)}, not of {model}{hint}")
    if model not in GENERATIVE:
        return
    if getattr(args, "augment", 0):
        raise CLIError(f"--augment: {model} trains on the images as they are; leave --augment out")
    if getattr(args, "distributed", False):
        raise CLIError(f"--distributed trains the classifiers only; {model} trains in one process")
    if model == "dcgan" and args.optimizer not in (None, "adam"):
        raise CLIError("--optimizer: dcgan trains with Adam (--lr and --beta1 set it)")
    _check_number("--noise", args.noise, low=0)
    _check_number("--beta1", args.beta1, low=0, high=1, high_open=True)
    if args.latent_dim is not None and args.latent_dim < 1:
        raise CLIError(f"--latent-dim must be >= 1, got {args.latent_dim}")
    if args.score_samples is not None and args.score_samples < 0:
        raise CLIError(f"--score-samples must be >= 0, got {args.score_samples}")
    if args.samples:
        _check_plots_folder(args.samples, "--samples")
    if args.classifier:
        target = Path(args.classifier).expanduser()
        if target.is_dir():
            raise CLIError(f"--classifier: {args.classifier!r} is a folder; give a file such as "
                           "classifier.npz")
        if not target.exists():
            _check_writable_folder("--classifier", target.parent if str(target.parent) else Path("."),
                                   "the trained classifier")


def _load(dataset, data_dir, download):
    from . import datasets

    loader = datasets.load_mnist if dataset == "mnist" else datasets.load_fashion_mnist
    if data_dir is not None:  # the folder asked for, not a copy found elsewhere
        given = Path(data_dir).expanduser().resolve()
        try:
            found = datasets.find_dataset_dir(dataset, data_dir).resolve()
        except FileNotFoundError as err:
            raise CLIError(f"{dataset} not found: {err}") from None
        if found != given and given not in found.parents:
            raise CLIError(f"{dataset} not found in --data-dir {data_dir!r}: it holds no "
                           f"{dataset} IDX files (train-images-idx3-ubyte[.gz], ...) itself or in "
                           f"a subfolder named after the data set; leave --data-dir out to use "
                           f"{found}")
    try:
        return loader(data_dir, download=download)
    except FileNotFoundError as err:
        raise CLIError(f"{dataset} not found: {err}") from None
    except ValueError as err:  # a file that is not the data set's (checksum) or is malformed
        raise CLIError(f"{dataset}: {err}") from None


def _build_model(name, seed, augment=0):
    import fastconv
    from . import layers, models

    if name == "lenet5":
        model = models.lenet5(classic=True, seed=seed)
    elif name == "lenet5_modern":
        model = models.lenet5(classic=False, seed=seed)
    elif name == "resnet_small":
        model = models.resnet_small(seed=seed)
    else:
        model = models.vgg_small(seed=seed)
    if augment:
        shape = tuple(model.input_shape)
        shift = layers.RandomTranslation(augment / shape[-2], augment / shape[-1], name="augment")
        if isinstance(model, models.Sequential):
            model = models.Sequential([shift] + model.layers, input_shape=shape, seed=seed,
                                      name=model.name)
        else:
            inputs = fastconv.Input(shape, name="image")
            model = models.Model(inputs, model(shift(inputs)), seed=seed, name=model.name)
    return model


def train(args, out=None):
    """Run the ``train`` command for parsed ``args``; returns the test accuracy (denoise: the
    test MSE against the clean images; dcgan: the classifier score, or None without one)."""
    import fastconv
    from . import models, optimizers

    out = out if out is not None else sys.stdout
    check_train_args(args)
    preset = resolve_preset(args)  # None without --preset
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    if args.model in GENERATIVE:
        return _train_generative(args, out)
    opt_name, default_lr, default_batch = DEFAULTS[args.model] if preset is None else ("adam", preset.max_lr,
                                                                                       preset.batch_size)
    opt_name = args.optimizer or opt_name
    batch_size = args.batch_size if args.batch_size is not None else default_batch
    lr = args.lr if args.lr is not None else (default_lr if opt_name == "adam" else 0.05)

    augment = getattr(args, "augment", 0)
    device = getattr(args, "device", "cpu")
    if device == "cuda" and augment:
        raise CLIError("--augment: the RandomTranslation layer has no CUDA implementation yet; "
                       "train with --device cpu")
    if device == "cuda":
        from . import cuda as fc_cuda
        if not fc_cuda.is_available():
            raise CLIError(f"--device cuda: no usable GPU: {fc_cuda.why_unavailable()}")

    distributed = getattr(args, "distributed", False)
    if distributed:
        from . import distributed as dist
        if device != "cpu":
            raise CLIError("--distributed trains on the CPU only for now; drop --device cuda")
        try:
            dist.init(set_threads=args.threads is None)  # --threads wins over the share
        except dist.MPIUnavailableError as err:
            raise CLIError(f"--distributed: {err}") from None
        if not dist.is_chief():  # only rank 0 prints, saves and plots
            out = io.StringIO()

    if args.plots:  # fail before training, not after it, when matplotlib is missing
        try:
            from .plot import save_training_pictures
        except ImportError as e:
            raise CLIError(str(e)) from None

    if preset is not None:
        model = preset.build_model(args.seed)
    else:
        try:
            model = _build_model(args.model, args.seed, augment)
        except ValueError as err:
            raise CLIError(f"--augment {augment}: {err}") from None

    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = _load(args.dataset, args.data_dir, args.download)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images "
          f"(loaded in {time.perf_counter() - t0:.1f}s)", file=out)

    if preset is not None:  # Adam under the preset's one-cycle schedule, sized to the data
        optimizer = preset.optimizer(len(x_train))
    else:
        optimizer = (optimizers.Adam(lr) if opt_name == "adam"
                     else optimizers.SGD(lr, momentum=args.momentum, nesterov=args.momentum > 0))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary(print_fn=lambda s: print(s, file=out))
        where = (f"GPU {fastconv.cuda.device_name()}" if device == "cuda" else
                 f"threads {fastconv.get_num_threads()}, CPU kernel {fastconv.cpu_isa()}")
        if distributed:
            where += f", {dist.size()} MPI ranks (each batch split over them)"
        if preset is not None:
            print(f"preset {preset.name}: {preset.summary}", file=out)
        print(f"optimizer: {optimizer}, batch size {batch_size}, {where}", file=out, flush=True)

    callbacks = []
    if args.lr_decay != 1.0:
        decay = args.lr_decay

        class _Decay(models.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.optimizer.learning_rate *= decay

        callbacks.append(_Decay())
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=batch_size,
                        validation_data=(x_test, y_test), callbacks=callbacks,
                        verbose=args.verbose, device=device, distributed=distributed)
    times = history.epoch_times
    if times:
        print(f"time per epoch: mean {sum(times) / len(times):.2f}s, min {min(times):.2f}s "
              f"over {len(times)} epochs", file=out)
    if history.history.get("val_accuracy"):  # the test set was evaluated after the last epoch
        loss, accuracy = history.history["val_loss"][-1], history.history["val_accuracy"][-1]
    else:
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=500, device=device)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f}, {len(x_test)} images)", file=out, flush=True)
    if distributed and not dist.is_chief():
        return accuracy
    if args.save:
        try:
            model.save(args.save)
        except OSError as err:  # checked before training; the disk can still fill up
            raise CLIError(f"--save: could not write {args.save!r}: {err}") from None
        print(f"saved the model to {args.save}", file=out)
    if args.plots:
        try:
            paths = save_training_pictures(model, history, x_test[0], args.plots)
        except OSError as err:
            raise CLIError(f"--plots: could not write into {args.plots!r}: {err}") from None
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=out)
    return accuracy


# ------------------------------------------------------------------------------ denoise, dcgan
def _train_generative(args, out):
    """``train denoise`` and ``train dcgan`` (arguments checked already)."""
    import fastconv

    device = getattr(args, "device", "cpu")
    if device == "cuda":
        from . import cuda as fc_cuda
        if not fc_cuda.is_available():
            raise CLIError(f"--device cuda: no usable GPU: {fc_cuda.why_unavailable()}")
    if args.samples:  # fail before training, not after it, when matplotlib is missing
        try:
            from . import plot  # noqa: F401
        except ImportError as e:
            raise CLIError(str(e)) from None
    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = _load(args.dataset, args.data_dir, args.download)
    if args.limit is not None:
        x_train = x_train[:args.limit]
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images "
          f"(loaded in {time.perf_counter() - t0:.1f}s)", file=out)
    _, default_lr, default_batch = DEFAULTS[args.model]
    batch_size = args.batch_size if args.batch_size is not None else default_batch
    lr = args.lr if args.lr is not None else (default_lr if (args.optimizer or "adam") == "adam" else 0.05)
    where = (f"GPU {fastconv.cuda.device_name()}" if device == "cuda" else
             f"threads {fastconv.get_num_threads()}, CPU kernel {fastconv.cpu_isa()}")
    run = _train_denoise if args.model == "denoise" else _train_dcgan
    try:
        return run(args, out, x_train, x_test, y_test, batch_size, lr, device, where)
    except NotImplementedError as err:   # a part with no GPU path yet
        raise CLIError(f"--device {device}: {err}") from None


def _lr_decay_callback(decay, optimizers_of):
    from . import models

    class _Decay(models.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for opt in optimizers_of(self.model):
                opt.learning_rate *= decay

    return _Decay()


def _train_denoise(args, out, x_train, x_test, y_test, batch_size, lr, device, where):
    import numpy as np

    from . import models, optimizers
    from .models.gan import add_noise

    factor = NOISE_FACTOR if args.noise is None else args.noise
    # The noisy copies are drawn once (as Keras's autoencoder tutorial does), from the seed.
    x_train_noisy = add_noise(x_train, factor, seed=[args.seed, 1])
    x_test_noisy = add_noise(x_test, factor, seed=[args.seed, 2])
    noisy_mse = float(np.mean((x_test_noisy - x_test) ** 2))
    print(f"noise: factor {factor:g}, clipped to [0, 1]; the noisy test images against the clean "
          f"ones: MSE {noisy_mse:.4f}", file=out)
    model = models.denoising_autoencoder(tuple(x_train.shape[1:]), seed=args.seed)
    opt_name = args.optimizer or "adam"
    optimizer = (optimizers.Adam(lr) if opt_name == "adam"
                 else optimizers.SGD(lr, momentum=args.momentum, nesterov=args.momentum > 0))
    model.compile(optimizer=optimizer, loss="mse")
    if args.verbose:
        model.summary(print_fn=lambda s: print(s, file=out))
        print(f"optimizer: {optimizer}, loss: mean squared error, batch size {batch_size}, {where}",
              file=out, flush=True)
    callbacks = []
    if args.lr_decay != 1.0:
        callbacks.append(_lr_decay_callback(args.lr_decay, lambda m: [m.optimizer]))
    history = model.fit(x_train_noisy, x_train, epochs=args.epochs, batch_size=batch_size,
                        validation_data=(x_test_noisy, x_test), callbacks=callbacks,
                        verbose=args.verbose, device=device)
    times = history.epoch_times
    if times:
        print(f"time per epoch: mean {sum(times) / len(times):.2f}s, min {min(times):.2f}s "
              f"over {len(times)} epochs", file=out)
    if history.history.get("val_loss"):
        mse = history.history["val_loss"][-1]
    else:
        mse = float(np.ravel(model.evaluate(x_test_noisy, x_test, batch_size=500, device=device))[0])
    print(f"test MSE against the clean images: {mse:.4f} (the noisy images: {noisy_mse:.4f}; "
          f"{len(x_test)} images)", file=out, flush=True)
    _save(model, args.save, out)
    if args.samples:
        from . import plot

        folder = Path(args.samples).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        picks = np.array([int(np.flatnonzero(y_test == d)[0]) for d in range(10)]) \
            if y_test is not None and len(np.unique(y_test)) >= 10 else np.arange(min(10, len(x_test)))
        denoised = model.predict(x_test_noisy[picks], device=device)
        path = folder / "denoised.png"
        try:
            plot.show_image_grid(np.concatenate([x_test_noisy[picks], denoised, x_test[picks]]),
                                 columns=len(picks), save=path, scale=2,
                                 row_titles=["noisy", "denoised", "clean"],
                                 title=f"Denoising autoencoder: test MSE {mse:.4f} "
                                       f"(noisy {noisy_mse:.4f})")
        except OSError as err:
            raise CLIError(f"--samples: could not write into {args.samples!r}: {err}") from None
        print(f"wrote {path}", file=out)
    return mse


def _train_dcgan(args, out, x_train, x_test, y_test, batch_size, lr, device, where):
    import numpy as np

    from .models import gan as G

    callbacks, classifier = [], None
    n_score = SCORE_SAMPLES if args.score_samples is None else args.score_samples
    if n_score and args.dataset != "mnist":
        print(f"score: the classifier score is measured for MNIST only; none for {args.dataset}",
              file=out)
        n_score = 0
    if n_score:
        try:
            classifier = G.score_classifier(args.classifier, verbose=args.verbose,
                                            data_dir=args.data_dir)
        except (OSError, RuntimeError) as err:
            raise CLIError(f"--classifier: {err}") from None
        real = G.classifier_score(classifier, x_test)
        print(f"score classifier: LeNet-5 (modern), test accuracy {classifier.test_accuracy:.4f}; "
              f"the {len(x_test)} real test digits score {real:.2f}", file=out, flush=True)
        callbacks.append(G.ClassifierScore(classifier, n=n_score, seed=[args.seed, 3]))
    if args.samples:
        callbacks.append(G.SampleGrid(Path(args.samples).expanduser(), n=100, seed=[args.seed, 4]))
    if args.lr_decay != 1.0:
        callbacks.append(_lr_decay_callback(
            args.lr_decay, lambda gan: [gan.discriminator.optimizer, gan.combined.optimizer]))
    from . import models

    latent = LATENT_DIM if args.latent_dim is None else args.latent_dim
    beta_1 = BETA_1 if args.beta1 is None else args.beta1
    generator = models.dcgan_generator(latent, seed=args.seed)
    discriminator = models.dcgan_discriminator(tuple(x_train.shape[1:]), seed=args.seed + 1)
    if args.verbose:   # before DCGAN freezes the discriminator (its summary would say 0 trainable)
        for model in (generator, discriminator):
            model.summary(print_fn=lambda s: print(s, file=out))
    gan = G.DCGAN(generator, discriminator, learning_rate=lr, beta_1=beta_1, seed=args.seed)
    if args.verbose:
        print(f"optimizer: Adam(learning_rate={lr:g}, beta_1={beta_1:g}) for each, loss: binary "
              f"cross-entropy from logits, batch size {batch_size} real + {batch_size} generated, "
              f"{where}", file=out, flush=True)
    try:
        history = gan.train(x_train * 2.0 - 1.0, epochs=args.epochs, batch_size=batch_size,
                            callbacks=callbacks, verbose=args.verbose, device=device)
    except ValueError as err:   # e.g. --limit below one batch
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"--samples: could not write into {args.samples!r}: {err}") from None
    times = history.epoch_times
    if times:
        print(f"time per epoch: mean {sum(times) / len(times):.2f}s, min {min(times):.2f}s "
              f"over {len(times)} epochs", file=out)
    score = None
    if classifier is not None:   # the digits the last epoch's score was measured on
        score, counts = G.classifier_score(
            classifier, gan.sample(n_score, seed=[args.seed, 3], device=device), return_counts=True)
        print(f"classifier score of {n_score} generated digits: {score:.2f}; classes present: "
              f"{int(np.count_nonzero(counts))} of {len(counts)} (digits per class: "
              f"{' '.join(str(int(c)) for c in counts)})", file=out, flush=True)
    if args.save:
        _save(gan.generator, args.save, out)
    if args.samples:
        for cb in callbacks:
            if isinstance(cb, G.SampleGrid) and cb.paths:
                print(f"wrote {cb.paths[0]} ... {cb.paths[-1].name}" if len(cb.paths) > 1
                      else f"wrote {cb.paths[0]}", file=out)
    return score


def _save(model, path, out):
    if not path:
        return
    try:
        model.save(path)
    except OSError as err:  # checked before training; the disk can still fill up
        raise CLIError(f"--save: could not write {path!r}: {err}") from None
    print(f"saved the model to {path}", file=out)


def info(out=None):
    """Print fastconv's build: version, CPU kernel, threads, OpenMP, CUDA availability."""
    import fastconv

    out = out if out is not None else sys.stdout
    details = fastconv.info() if hasattr(fastconv, "info") else {
        "version": fastconv.__version__, "cpu_isa": fastconv.cpu_isa(),
        "num_threads": fastconv.get_num_threads()}
    for key, value in details.items():
        print(f"{key}: {value}", file=out)
    return details


def main(argv=None):
    """Entry point of the ``fastconv`` command (and ``python -m fastconv``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            info()
        else:
            train(args)
    except CLIError as err:
        print(f"error: {err}", file=sys.stderr)
        dist = sys.modules.get("fastconv.distributed")
        if dist is not None and dist.is_initialized() and dist.size() > 1:
            dist.abort("this rank failed alone; aborting the job", 2)  # the others would wait
        return 2
    except Exception as err:
        dist = sys.modules.get("fastconv.distributed")
        if dist is None or not isinstance(err, dist.DistributedError):
            raise
        if dist.is_chief():  # every rank raised it alike: say it once
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
