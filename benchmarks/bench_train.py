"""Whole-model training speed: fastconv's layer API against PyTorch, same model, same work.

    python benchmarks/bench_train.py [--threads 1,2] [--steps 100] [--vgg-steps 10]
                                     [--data-dir DIR] [--out train_results.json]

Two measurements, each at every thread count (fastconv.set_num_threads, torch.set_num_threads and,
through threadpoolctl, NumPy's BLAS):

  LeNet-5, MNIST epoch, batch 64. fastconv: models.lenet5() (the classic network of DESIGN.md:
    28x28 padded by 2, tanh, average pooling, C3 wired by LeCun's connection table) trained with
    model.fit(x, y, epochs=1, batch_size=64, verbose=0) and Adam. PyTorch: the same layers
    (ZeroPad2d, Conv2d, Tanh, AvgPool2d, Linear) with C3 a full 6->16 Conv2d whose weight is
    multiplied by the 0/1 connection mask in every forward pass, which is how fastconv's
    Conv2D(connections=...) computes it too; same Adam, batch, shuffling and per-step loss and
    accuracy bookkeeping. Reported: seconds per 60,000-sample epoch. With --steps N (default
    100; 0 = the whole epoch) only N steps are timed (fit on the first N*64 samples) and the
    epoch time is extrapolated as time * 938 / N; the table says so.

  small VGG, training step, batch 128. fastconv: models.vgg_small() with Adam; PyTorch: the same
    network (conv 32, 32, pool, conv 64, 64, pool, Dense 256, Dropout 0.5, Dense 10). Reported:
    the median milliseconds of one step (forward, loss, backward, Adam update) over --vgg-steps
    steps after --warmup-steps steps; fastconv's steps are timed inside model.fit by a callback.

Data: MNIST from --data-dir (fastconv.datasets.load_mnist where the library has it, otherwise a
small IDX reader here), scaled to [0, 1]. Run with the OpenBLAS tuning variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py
"""
import argparse
import gzip
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
from bench import Threads, machine_header, print_header, warn_slow_env, _int_list  # noqa: E402

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
def bench_lenet(x, y, steps, t, has_torch):
    """Seconds per MNIST epoch at batch 64 (extrapolated from `steps` steps when steps > 0)."""
    batch = 64
    epoch_steps = -(-len(x) // batch)
    n = len(x) if steps <= 0 else min(len(x), steps * batch)
    xs, ys = x[:n], y[:n]
    timed_steps = -(-n // batch)
    scale = epoch_steps / timed_steps
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


def print_results(results):
    cols = ("model", "batch", "thr", "timed", "fastconv", "torch", "torch/fc", "fc loss", "torch loss")
    rows = []
    for r in results:
        fc, tc = r.get("fastconv"), r.get("torch")
        unit = r["what"]
        timed = f"{r['timed_steps']} steps" + (f" (x{r['epoch_steps'] / r['timed_steps']:.1f} extrapolated)"
                                               if r["extrapolated"] else "")
        fmt = (lambda v: f"{v:.2f} {unit}") if unit == "s/epoch" else (lambda v: f"{v:.1f} {unit}")
        rows.append((r["model"], str(r["batch"]), str(r["threads"]), timed,
                     fmt(fc["value"]) if fc else "-", fmt(tc["value"]) if tc else "-",
                     f"{tc['value'] / fc['value']:.2f}x" if fc and tc else "-",
                     f"{fc['loss']:.3f}" if fc else "-", f"{tc['loss']:.3f}" if tc else "-"))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=_int_list, default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--steps", type=int, default=100,
                   help="LeNet-5: time this many batch-64 steps and extrapolate to the epoch (0: whole epoch)")
    p.add_argument("--vgg-steps", type=int, default=10, help="small VGG: steps timed (default 10)")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--models", default="lenet5,vgg_small", help="which of lenet5,vgg_small to run")
    p.add_argument("--data-dir", default=os.environ.get("FASTCONV_MNIST"),
                   help="folder with MNIST's IDX files (default: fastconv's search, which ends at "
                        "the copy shipped with the package)")
    p.add_argument("--out", default="train_results.json", help="JSON file to write")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if fastconv_models is None:
        sys.exit("bench_train.py needs fastconv's layer API (fastconv.models), which this install lacks; "
                 "merge main once the layers branch has landed")
    has_torch = torch is not None and not args.no_torch
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    warn_slow_env()
    header = machine_header()
    print_header(header)
    x, y = load_mnist_train(args.data_dir)
    print(f"  data      MNIST train {x.shape} from {args.data_dir or 'fastconv.datasets'}; Adam lr {LEARNING_RATE}, eps {ADAM_EPSILON}")
    print("  LeNet-5   classic (tanh, avg pool, C3 connection table; PyTorch: masked full C3 weight)\n", flush=True)
    results = []
    for t in args.threads:
        with Threads(t):
            if "lenet5" in models:
                results.append(bench_lenet(x, y, args.steps, t, has_torch))
                print(f"lenet5 threads={t} done", file=sys.stderr, flush=True)
            if "vgg_small" in models:
                results.append(bench_vgg(x, y, args.vgg_steps, args.warmup_steps, t, has_torch))
                print(f"vgg_small threads={t} done", file=sys.stderr, flush=True)
    print_results(results)
    header["load_average_end"] = list(os.getloadavg())
    print(f"\nload average at the end {header['load_average_end'][0]:.2f}; torch/fc above 1x: fastconv is faster; "
          f"JSON: {args.out}")
    with open(args.out, "w") as f:
        json.dump({"header": header, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
