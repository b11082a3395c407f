"""Whole-model training speed: fastconv's layer API against PyTorch and TensorFlow/Keras, same
model, same work.

    python benchmarks/bench_train.py [--threads 1,2] [--steps 100] [--vgg-steps 10]
                                     [--data-dir DIR] [--out FILE.json] [--no-torch] [--no-keras]

writes benchmarks/results/train_<machine>.json and .txt unless --out says otherwise
(machine.py: <machine> names the CPU model and generation, the CPUs and fastconv's ISA).

Two measurements, each at every thread count (fastconv.set_num_threads, torch.set_num_threads,
TensorFlow's intra-op pool and, through threadpoolctl, NumPy's BLAS):

  LeNet-5, MNIST epoch, batch 64. fastconv: models.lenet5() (the classic network of DESIGN.md:
    28x28 padded by 2, tanh, average pooling, C3 wired by LeCun's connection table) trained with
    model.fit(x, y, epochs=1, batch_size=64, verbose=0) and Adam. PyTorch: the same layers
    (ZeroPad2d, Conv2d, Tanh, AvgPool2d, Linear) with C3 a full 6->16 Conv2d whose weight is
    multiplied by the 0/1 connection mask in every forward pass, which is how fastconv's
    Conv2D(connections=...) computes it too; same Adam, batch, shuffling and per-step loss and
    accuracy bookkeeping. Keras: the same network as a Keras user writes it, channels-last
    (keras.Sequential from Input((28, 28, 1)), ZeroPadding2D, Conv2D, AveragePooling2D, Dense),
    C3 a Conv2D subclass whose kernel is multiplied by the same mask in every call (Keras has
    no connection table), trained by model.fit with the same Adam and batch. Reported: seconds
    per 60,000-sample epoch. With --steps N (default 100; 0 = the whole epoch) only N steps are
    timed (fit on the first N*64 samples) and the epoch time is extrapolated as time * 938 / N;
    the table says so.

  small VGG, training step, batch 128. fastconv: models.vgg_small() with Adam; PyTorch and
    Keras: the same network (conv 32, 32, pool, conv 64, 64, pool, Dense 256, Dropout 0.5,
    Dense 10; Keras channels-last). Reported: the median milliseconds of one step (forward,
    loss, backward, Adam update) over --vgg-steps steps after --warmup-steps steps; fastconv's
    and Keras's steps are timed inside fit by a callback.

TensorFlow fixes its thread pools once per process, so the Keras column of each thread count
is measured in a subprocess of its own (this script with a hidden --keras-worker T), right
after fastconv and PyTorch: tf.config.threading.set_intra_op_parallelism_threads(T) and
set_inter_op_parallelism_threads(1), one pool of T threads like the other two. It runs where
TensorFlow imports (pip install tensorflow-cpu) and is skipped with a line saying why where it
does not. Keras compiles with its defaults (jit_compile="auto", which is no XLA on a CPU-only
machine) and fit's own tf.data input pipeline.

Data: MNIST from --data-dir (fastconv.datasets.load_mnist where the library has it, otherwise a
small IDX reader here), scaled to [0, 1]. Run with the OpenBLAS tuning variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py
"""
import argparse
import gzip
import importlib.util
import json
import os
import statistics
import sys
import time

# OpenBLAS's worker threads busy-wait (yielding) for 2^28 cycles after each call, about 0.1 s
# here; the next provider timed on these 2 cores then shares them with those threads (measured:
# fastconv's 2-thread GEMM ran at half speed in samples right after NumPy's, 30 instead of 61
# GFLOP/s). 2^4 cycles makes them sleep at once; NumPy's own 2-thread GEMM speed is unchanged
# (47-52 GFLOP/s at n = 512 either way). Set before NumPy is imported, which reads it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

import fastconv

try:  # the layer API (lands on main from the layers branch)
    import fastconv.models
    import fastconv.optimizers
except ImportError:
    fastconv_models = None
else:
    fastconv_models = fastconv.models

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF
except ImportError:  # the fastconv column is still measured
    torch = None

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Threads, machine_header, print_header, warn_slow_env  # noqa: E402
import machine  # noqa: E402  (the results file named for the machine; int_list)

MNIST_TRAIN = 60000
LEARNING_RATE = 1e-3
ADAM_EPSILON = 1e-7  # Keras's default, which fastconv's Adam uses; PyTorch is told the same

# LeNet-5's C3 connection table (LeCun et al. 1998, table I; DESIGN.md): C3 map k sees these S2 maps.
C3_TABLE = [[(k + i) % 6 for i in range(3)] for k in range(6)] + \
           [[(k + i) % 6 for i in range(4)] for k in range(6)] + \
           [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], list(range(6))]


# ----------------------------------------------------------------------------- data
def _read_idx(path):
    """One IDX file (raw or .gz) as a NumPy array (uint8 data, big-endian header)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist_train(data_dir):
    """MNIST's training set: x (60000, 1, 28, 28) float32 in [0, 1], y (60000,) int64."""
    datasets = getattr(fastconv, "datasets", None)
    if datasets is None:
        try:
            from fastconv import datasets  # noqa: F811  (lands with the datasets branch)
        except ImportError:
            datasets = None
    if datasets is not None and hasattr(datasets, "load_mnist"):
        (x, y), _ = datasets.load_mnist(data_dir, download=False)
        return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    paths = {}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        for name in (stem + ".gz", stem):
            if os.path.exists(os.path.join(data_dir, name)):
                paths[stem] = os.path.join(data_dir, name)
                break
        else:
            raise FileNotFoundError(f"{stem}[.gz] not found in {data_dir} (pass --data-dir)")
    images = _read_idx(paths["train-images-idx3-ubyte"])
    labels = _read_idx(paths["train-labels-idx1-ubyte"])
    x = (images.astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
    return x, labels.astype(np.int64)


# ----------------------------------------------------------------------------- PyTorch models
if torch is not None:
    class MaskedConv2d(nn.Conv2d):
        """A Conv2d whose weight is multiplied by a fixed 0/1 (K, C) connection mask each forward."""

        def __init__(self, in_channels, out_channels, kernel_size, table):
            super().__init__(in_channels, out_channels, kernel_size)
            mask = torch.zeros(out_channels, in_channels, 1, 1)
            for k, sources in enumerate(table):
                mask[k, sources] = 1.0
            self.register_buffer("mask", mask)

        def forward(self, x):
            return TF.conv2d(x, self.weight * self.mask, self.bias)

    def torch_lenet5():
        """The classic LeNet-5 of DESIGN.md in PyTorch, C3 by a masked full convolution."""
        return nn.Sequential(
            nn.ZeroPad2d(2),
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            MaskedConv2d(6, 16, 5, C3_TABLE), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
            nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))

    def torch_vgg_small():
        """The small VGG of DESIGN.md in PyTorch (870,634 parameters)."""
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))


def torch_train(model, x, y, batch_size, seed=0):
    """One epoch over (x, y) the way Sequential.fit runs it; returns per-step seconds and the mean loss.

    Shuffled order, batches gathered by index, forward, cross-entropy, backward, Adam step, and
    the loss and correct count read back every step (fit keeps both for its logs).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=ADAM_EPSILON)
    model.train()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    step_times, loss_sum, correct = [], 0.0, 0
    for lo in range(0, len(x), batch_size):
        t0 = time.perf_counter()
        idx = order[lo:lo + batch_size]
        xb, yb = tx[idx], ty[idx]
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = TF.cross_entropy(out, yb)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(idx)
        correct += int((out.argmax(1) == yb).sum())
        step_times.append(time.perf_counter() - t0)
    return step_times, loss_sum / len(x)


# ----------------------------------------------------------------------------- Keras (in a worker)
def keras_models(keras):
    """The two networks as a Keras user writes them (channels-last), built in the worker once
    TensorFlow's thread pools are set. Returns {name: builder}."""

    class MaskedConv2D(keras.layers.Conv2D):
        """A Conv2D whose kernel (R, S, C, K) is multiplied by a fixed 0/1 (C, K) connection
        mask in every call: LeNet-5's C3 table, which Keras has no layer for."""

        def __init__(self, filters, kernel_size, table, in_channels, **kwargs):
            super().__init__(filters, kernel_size, **kwargs)
            mask = np.zeros((1, 1, in_channels, filters), dtype=np.float32)
            for k, sources in enumerate(table):
                mask[0, 0, sources, k] = 1.0
            self.mask_value = mask

        def call(self, inputs):
            kernel = keras.ops.multiply(self.kernel, self.mask_value)
            y = keras.ops.add(self.convolution_op(inputs, kernel), self.bias)  # y is (N, P, Q, K)
            return self.activation(y)

    L = keras.layers

    def lenet5():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            L.ZeroPadding2D(2),
            L.Conv2D(6, 5, activation="tanh"), L.AveragePooling2D(2),
            MaskedConv2D(16, 5, C3_TABLE, 6, activation="tanh"), L.AveragePooling2D(2),
            L.Conv2D(120, 5, activation="tanh"), L.Flatten(),
            L.Dense(84, activation="tanh"), L.Dense(10)], name="lenet5")

    def vgg_small():
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(64, 3, padding="same", activation="relu"),
            L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.5), L.Dense(10)], name="vgg_small")

    return {"lenet5": lenet5, "vgg_small": vgg_small}


def keras_worker(args, threads):
    """The Keras column at one thread count, in this (sub)process: prints one JSON object,
    {"versions": ..., "results": [...]}, as its last line of output."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN and CPU-feature banners
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    x, y = load_mnist_train(args.data_dir)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # x is (N, 28, 28, 1): channels-last
    builders = keras_models(keras)

    class KerasStepTimer(keras.callbacks.Callback):
        """Wall-clock time of every step of fit, and the mean loss of the timed steps (the last
        running mean Keras logs)."""

        def __init__(self):
            super().__init__()
            self.step_times, self.losses = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # Keras logs the running mean of the epoch's losses; reading it waits for the step.
            self.losses.append(float(logs["loss"]))
            now = time.perf_counter()
            self.step_times.append(now - self.last)
            self.last = now

    def model_for(name):
        model = builders[name]()
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def train(model, xs, ys, batch):
        timer = KerasStepTimer()
        t0 = time.perf_counter()
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=[timer])
        return timer, time.perf_counter() - t0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    results = []
    if "lenet5" in models:
        batch, n, scale = _lenet_plan(len(x), args.steps)
        model = model_for("lenet5")
        # Warm-up: 2.5 batches, so that fit traces its step function for a full batch and for
        # a partial one (the epoch's last) before anything is timed.
        model.fit(x[:5 * batch // 2], y[:5 * batch // 2], batch_size=batch, epochs=1, verbose=0)
        timer, elapsed = train(model, x[:n], y[:n], batch)
        results.append({"model": "lenet5", "threads": threads, "value": elapsed * scale, "timed_s": elapsed,
                        "median_step_s": statistics.median(timer.step_times),
                        "loss": timer.losses[-1], "params": model.count_params(),
                        "params_note": "C3 holds a full 6->16 kernel, 900 entries masked to zero"})
    if "vgg_small" in models:
        batch, steps = 128, args.vgg_steps
        model = model_for("vgg_small")
        if args.warmup_steps:
            model.fit(x[-args.warmup_steps * batch:], y[-args.warmup_steps * batch:], batch_size=batch,
                      epochs=1, verbose=0)
        timer, _ = train(model, x[:steps * batch], y[:steps * batch], batch)
        results.append({"model": "vgg_small", "threads": threads,
                        "value": statistics.median(timer.step_times) * 1e3,
                        "min_ms": min(timer.step_times) * 1e3, "loss": timer.losses[-1],
                        "params": model.count_params()})
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__,
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux builds)")}
    print(json.dumps({"versions": versions, "results": results}))


def keras_column(args, threads):
    """Runs keras_worker for one thread count in a subprocess; returns (versions, results) or
    (None, why) when TensorFlow/Keras cannot run here."""
    if importlib.util.find_spec("tensorflow") is None:
        return None, "TensorFlow is not installed (pip install tensorflow-cpu)"
    if importlib.util.find_spec("keras") is None:
        return None, "Keras is not installed (pip install keras)"
    cmd = [sys.executable, os.path.abspath(__file__), "--keras-worker", str(threads),
           "--models", args.models, "--steps", str(args.steps), "--vgg-steps", str(args.vgg_steps),
           "--warmup-steps", str(args.warmup_steps)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out, why = machine.run_json_worker(cmd, env, "the Keras worker")
    return (None, why) if out is None else (out["versions"], out["results"])


# ----------------------------------------------------------------------------- fastconv side
class StepTimer(fastconv_models.Callback if fastconv_models is not None else object):
    """A fit callback that records the wall-clock time of every training step."""

    def __init__(self):
        super().__init__()
        self.last = None
        self.step_times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.last = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        self.last = now


def fastconv_train(model, x, y, batch_size):
    """One epoch of model.fit over (x, y); returns per-step seconds, epoch seconds and the loss."""
    timer = StepTimer()
    t0 = time.perf_counter()
    history = model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, callbacks=[timer])
    elapsed = time.perf_counter() - t0
    return timer.step_times, elapsed, history.history["loss"][-1]


def fastconv_model(name):
    model = fastconv.models.lenet5(seed=0) if name == "lenet5" else fastconv.models.vgg_small(seed=0)
    model.compile(optimizer=fastconv.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _torch_model(name):
    torch.manual_seed(0)
    return torch_lenet5() if name == "lenet5" else torch_vgg_small()


def _params(model):
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- main
def _lenet_plan(n_train, steps):
    """LeNet-5's timing plan: (batch 64, samples timed, factor from them to the whole epoch)."""
    batch = 64
    n = n_train if steps <= 0 else min(n_train, steps * batch)
    return batch, n, -(-n_train // batch) / -(-n // batch)


def bench_lenet(x, y, steps, t, has_torch):
    """Seconds per MNIST epoch at batch 64 (extrapolated from `steps` steps when steps > 0)."""
    batch, n, scale = _lenet_plan(len(x), steps)
    xs, ys = x[:n], y[:n]
    epoch_steps = -(-len(x) // batch)
    timed_steps = -(-n // batch)
    warm_x, warm_y = x[:2 * batch], y[:2 * batch]
    result = {"model": "lenet5", "what": "s/epoch", "batch": batch, "threads": t, "timed_steps": timed_steps,
              "epoch_steps": epoch_steps, "extrapolated": timed_steps != epoch_steps}
    model = fastconv_model("lenet5")
    model.fit(warm_x, warm_y, epochs=1, batch_size=batch, verbose=0)  # warm-up: allocations, caches
    step_times, elapsed, loss = fastconv_train(model, xs, ys, batch)
    result["fastconv"] = {"value": elapsed * scale, "timed_s": elapsed, "median_step_s": statistics.median(step_times),
                          "loss": loss, "params": model.count_params()}
    if has_torch:
        tmodel = _torch_model("lenet5")
        torch_train(tmodel, warm_x, warm_y, batch)
        t0 = time.perf_counter()
        step_times, loss = torch_train(tmodel, xs, ys, batch)
        elapsed = time.perf_counter() - t0
        result["torch"] = {"value": elapsed * scale, "timed_s": elapsed, "median_step_s": statistics.median(step_times),
                           "loss": loss, "params": _params(tmodel),
                           "params_note": "C3 holds a full 6->16 weight, 900 entries masked to zero"}
    return result


def bench_vgg(x, y, steps, warmup_steps, t, has_torch):
    """Median milliseconds per training step of the small VGG at batch 128."""
    batch = 128
    xs, ys = x[:steps * batch], y[:steps * batch]
    warm_x, warm_y = x[-warmup_steps * batch:], y[-warmup_steps * batch:]
    result = {"model": "vgg_small", "what": "ms/step", "batch": batch, "threads": t, "timed_steps": steps,
              "extrapolated": False}
    model = fastconv_model("vgg_small")
    if warmup_steps:
        model.fit(warm_x, warm_y, epochs=1, batch_size=batch, verbose=0)
    step_times, elapsed, loss = fastconv_train(model, xs, ys, batch)
    result["fastconv"] = {"value": statistics.median(step_times) * 1e3, "min_ms": min(step_times) * 1e3,
                          "loss": loss, "params": model.count_params()}
    if has_torch:
        tmodel = _torch_model("vgg_small")
        if warmup_steps:
            torch_train(tmodel, warm_x, warm_y, batch)
        step_times, loss = torch_train(tmodel, xs, ys, batch)
        result["torch"] = {"value": statistics.median(step_times) * 1e3, "min_ms": min(step_times) * 1e3,
                           "loss": loss, "params": _params(tmodel)}
    return result


PEERS = ("torch", "keras")


def print_results(results, skipped):
    """The table: each provider's time, the peers' times over fastconv's (above 1x fastconv is
    faster; "best peer/fc" against the faster of PyTorch and Keras), and each side's mean loss."""
    cols = ("model", "batch", "thr", "timed", "fastconv", "torch", "keras", "torch/fc", "keras/fc",
            "best peer/fc", "fc loss", "torch loss", "keras loss")
    rows = []
    for r in results:
        fc = r.get("fastconv")
        unit = r["what"]
        timed = f"{r['timed_steps']} steps" + (f" (x{r['epoch_steps'] / r['timed_steps']:.1f} extrapolated)"
                                               if r["extrapolated"] else "")
        fmt = (lambda v: f"{v:.2f} {unit}") if unit == "s/epoch" else (lambda v: f"{v:.1f} {unit}")
        peers = {p: r.get(p) for p in PEERS}
        ratios = {p: (peers[p]["value"] / fc["value"] if fc and peers[p] else None) for p in PEERS}
        best = min((v for v in ratios.values() if v is not None), default=None)
        r["best_peer_over_fastconv"] = best
        rows.append((r["model"], str(r["batch"]), str(r["threads"]), timed,
                     fmt(fc["value"]) if fc else "-",
                     *(fmt(peers[p]["value"]) if peers[p] else "-" for p in PEERS),
                     *(f"{ratios[p]:.2f}x" if ratios[p] is not None else "-" for p in PEERS),
                     f"{best:.2f}x" if best is not None else "-",
                     f"{fc['loss']:.3f}" if fc else "-",
                     *(f"{peers[p]['loss']:.3f}" if peers[p] else "-" for p in PEERS)))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for provider, why in skipped.items():
        print(f"{provider}: skipped: {why}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=machine.int_list(), default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--steps", type=int, default=100,
                   help="LeNet-5: time this many batch-64 steps and extrapolate to the epoch (0: whole epoch)")
    p.add_argument("--vgg-steps", type=int, default=10, help="small VGG: steps timed (default 10)")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--models", default="lenet5,vgg_small", help="which of lenet5,vgg_small to run")
    p.add_argument("--data-dir", default=os.environ.get("FASTCONV_MNIST"),
                   help="folder with MNIST's IDX files (default: fastconv's search, which ends at "
                        "the copy shipped with the package)")
    p.add_argument("--out", default=None,
                   help="JSON file to write, the table going to the same name with .txt "
                        "(default: benchmarks/results/train_<machine>.json)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    p.add_argument("--no-keras", action="store_true", help="leave TensorFlow/Keras out even when installed")
    p.add_argument("--keras-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.vgg_steps < 1:
        p.error(f"--vgg-steps must be >= 1, got {args.vgg_steps}")
    if args.warmup_steps < 0:
        p.error(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.keras_worker is not None:
        keras_worker(args, args.keras_worker)
        return
    if fastconv_models is None:
        sys.exit("bench_train.py needs fastconv's layer API (fastconv.models), which this install lacks; "
                 "merge main once the layers branch has landed")
    has_torch = torch is not None and not args.no_torch
    skipped = {}
    if torch is None:
        skipped["torch"] = "PyTorch is not installed (pip install torch)"
    elif args.no_torch:
        skipped["torch"] = "--no-torch"
    if args.no_keras:
        skipped["keras"] = "--no-keras"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    warn_slow_env()
    header = machine_header()
    out = args.out or machine.results_path("train", header)
    with machine.Tee(os.path.splitext(out)[0] + ".txt"):
        run(args, header, out, models, has_torch, skipped)


def run(args, header, out, models, has_torch, skipped):
    """Times every model at every thread count and prints the table (main's body, its output
    also going to the .txt)."""
    print_header(header)
    x, y = load_mnist_train(args.data_dir)
    print(f"  data      MNIST train {x.shape} from {args.data_dir or 'fastconv.datasets'}; Adam lr {LEARNING_RATE}, eps {ADAM_EPSILON}")
    print("  LeNet-5   classic (tanh, avg pool, C3 connection table; PyTorch and Keras: masked full C3 weight)\n",
          flush=True)
    results = []
    for t in args.threads:
        done = []
        with Threads(t):
            if "lenet5" in models:
                done.append(bench_lenet(x, y, args.steps, t, has_torch))
                print(f"lenet5 threads={t} done", file=sys.stderr, flush=True)
            if "vgg_small" in models:
                done.append(bench_vgg(x, y, args.vgg_steps, args.warmup_steps, t, has_torch))
                print(f"vgg_small threads={t} done", file=sys.stderr, flush=True)
        if "keras" not in skipped:
            versions, keras_results = keras_column(args, t)
            if versions is None:
                skipped["keras"] = keras_results
            else:
                header["keras"] = versions
                for r in keras_results:
                    next(d for d in done if d["model"] == r["model"])["keras"] = r
                print(f"keras threads={t} done", file=sys.stderr, flush=True)
        results += done
    if "keras" in header:
        v = header["keras"]
        print(f"  keras     TensorFlow {v['tensorflow']}, Keras {v['keras']}, oneDNN {v['onednn']}; "
              "channels-last, one intra-op pool of T threads, inter-op 1, in a subprocess per T\n")
    print_results(results, skipped)
    header["load_average_end"] = list(os.getloadavg())
    header["skipped"] = skipped
    print(f"\nload average at the end {header['load_average_end'][0]:.2f}; <peer>/fc above 1x: fastconv is "
          f"faster; JSON: {machine.shown_path(out)}")
    with open(out, "w") as f:
        json.dump({"header": header, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
