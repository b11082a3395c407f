"""Whole-epoch MNIST training on the GPU: fastconv against PyTorch eager (cuDNN), FP32 and TF32.

One command, one table, JSON beside it:

    python benchmarks/bench_gpu_train.py --epochs 3 --out bench_gpu_train.json

For each model (LeNet-5 "modern": fastconv.models.lenet5(classic=False); the small VGG:
fastconv.models.vgg_small) and each precision (FP32; TF32 allowed, via
fastconv.cuda.set_allow_tf32 and torch.backends.cudnn/cuda.matmul.allow_tf32) it trains a
fresh, seeded model for --epochs passes over the 60,000 MNIST training images with Adam
(lr --lr) and cross-entropy on the logits, on the GPU:

  fastconv  Sequential.fit(..., device="cuda"); each epoch is timed by a fit callback with
            perf_counter between on_epoch_begin and on_epoch_end (after a GPU synchronize).
  torch     the same data put on the GPU once; each epoch a torch.randperm on the device and
            batches gathered by indexing there, then the standard eager step (zero_grad,
            forward, F.cross_entropy, backward, Adam.step); each epoch is timed with
            perf_counter between two torch.cuda.synchronize() calls.

Neither side copies batches from the host during an epoch. torch.backends.cudnn.benchmark is
on. The first epoch (which includes warm-up: algorithm search, allocations) is reported on its
own; the main figure is the median of epochs 2..E. "torch/fc" is torch time / fastconv time
(median epoch), so above 1 means fastconv is faster. After training, the test accuracy is
measured on the 10,000 test images in inference mode, batch 1000. If the fastconv side fails
(no GPU build, API missing), its rows carry the error and PyTorch still runs. Without a CUDA
GPU visible to PyTorch it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from typing import Any

import numpy as np

MODELS = ("lenet5", "vgg_small")
PRECISIONS = ("fp32", "tf32")
FRAMEWORKS = ("fastconv", "torch")
ADAM_EPSILON = 1e-7  # fastconv's Adam default (Keras's); PyTorch is given the same
TRUNC_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON to this path")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (median of 2..E)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of lenet5,vgg_small")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of fp32,tf32")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                    help="comma list of fastconv,torch")
    ap.add_argument("--lenet-batch", type=int, default=64, help="LeNet-5 batch size")
    ap.add_argument("--vgg-batch", type=int, default=128, help="small VGG batch size")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--seed", type=int, default=0, help="model seed (fastconv) / manual_seed")
    ap.add_argument("--data-dir", default=None, help="MNIST folder for fastconv.datasets.load_mnist")
    args = ap.parse_args(argv)
    for name, allowed in (("models", MODELS), ("precisions", PRECISIONS),
                          ("frameworks", FRAMEWORKS)):
        items = [s.strip() for s in getattr(args, name).split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            ap.error(f"--{name}: {bad or 'empty'} not in {','.join(allowed)}")
        setattr(args, name, items)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    return args


def header(torch: Any) -> dict[str, Any]:
    """The GPU, library versions and settings, for the table and the JSON."""
    try:
        import fastconv  # noqa: PLC0415
        fc_version = getattr(fastconv, "__version__", "?")
    except Exception as err:  # noqa: BLE001
        fc_version = f"not importable ({err})"
    return {
        "gpu": torch.cuda.get_device_name(0),
        "fastconv": fc_version,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cudnn_benchmark": True,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "timer": "perf_counter per epoch, GPU synchronized at both ends",
    }


def torch_model(name: str, torch: Any) -> Any:
    """fastconv's lenet5(classic=False) or vgg_small as a torch.nn.Sequential, same init.

    He-normal (truncated at 2 std, rescaled as fastconv/Keras do) on the ReLU layers,
    Glorot-uniform on the output Dense, zero biases.
    """
    nn = torch.nn
    if name == "lenet5":
        layers = [nn.ZeroPad2d(2),
                  nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
                  nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)]
    elif name == "vgg_small":
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                  nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                  nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(3136, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10)]
    else:
        raise ValueError(f"unknown model {name!r}")
    model = nn.Sequential(*layers)
    weighted = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(weighted):
        if i < len(weighted) - 1:  # ReLU layers: he_normal
            fan_in = m.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) / TRUNC_NORMAL_STD
            nn.init.trunc_normal_(m.weight, 0.0, std, -2.0 * std, 2.0 * std)
        else:  # output Dense: fastconv's default glorot_uniform
            nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return model


def train_torch(model: Any, x: Any, y: Any, epochs: int, batch: int, lr: float,
                torch: Any) -> tuple[list[float], float]:
    """Train model on device tensors (x, y) for epochs; returns seconds per epoch, last loss.

    Each epoch: a randperm on x's device, batches gathered by indexing, the eager step. The
    loss is summed on the device and read back once per epoch (after the timed region).
    """
    F = torch.nn.functional
    cuda = x.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=ADAM_EPSILON)
    model.train()
    n = x.shape[0]
    times, last_loss = [], float("nan")
    for _ in range(epochs):
        sync()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=x.device)
        loss_sum = torch.zeros((), device=x.device)
        for lo in range(0, n, batch):
            idx = perm[lo:lo + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * idx.shape[0]
        sync()
        times.append(time.perf_counter() - t0)
        last_loss = float(loss_sum) / n
    return times, last_loss


def evaluate_torch(model: Any, x: Any, y: Any, torch: Any, batch: int = 1000) -> float:
    """Accuracy (0..1) of model on device tensors (x, y), eval mode, no_grad."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for lo in range(0, x.shape[0], batch):
            correct += int((model(x[lo:lo + batch]).argmax(1) == y[lo:lo + batch]).sum())
    return correct / x.shape[0]


def run_torch(name: str, tf32: bool, data: dict[str, Any], args: argparse.Namespace,
              batch: int, torch: Any) -> dict[str, Any]:
    """One PyTorch run: seed, build, train, evaluate; returns epoch times, loss, accuracy."""
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(args.seed)
    model = torch_model(name, torch).cuda()
    times, loss = train_torch(model, data["tx"], data["ty"], args.epochs, batch, args.lr, torch)
    acc = evaluate_torch(model, data["tx_test"], data["ty_test"], torch)
    return {"epoch_times_s": times, "final_train_loss": loss, "test_accuracy": acc}


def run_fastconv(name: str, tf32: bool, data: dict[str, Any], args: argparse.Namespace,
                 batch: int) -> dict[str, Any]:
    """One fastconv run: fit(device="cuda") with an epoch-timing callback, then evaluate."""
    import fastconv  # noqa: PLC0415
    import fastconv.cuda as fcuda  # noqa: PLC0415
    from fastconv import models  # noqa: PLC0415

    if not fcuda.is_available():
        raise RuntimeError(f"fastconv.cuda unavailable: {fcuda.why_unavailable()}")

    class EpochTimer(models.Callback):
        """Wall-clock seconds of each epoch, GPU synchronized before the end is read."""

        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self.t0 = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            """Synchronize, then start the clock."""
            fcuda.synchronize()
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            """Synchronize, then stop the clock."""
            fcuda.synchronize()
            self.times.append(time.perf_counter() - self.t0)

    fcuda.set_allow_tf32(tf32)
    try:
        m = models.lenet5(classic=False, seed=args.seed) if name == "lenet5" \
            else models.vgg_small(seed=args.seed)
        m.compile(optimizer=fastconv.optimizers.Adam(learning_rate=args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        timer = EpochTimer()
        hist = m.fit(data["x"], data["y"], epochs=args.epochs, batch_size=batch,
                     device="cuda", verbose=0, callbacks=[timer])
        results = m.evaluate(data["x_test"], data["y_test"], batch_size=1000, device="cuda")
    finally:
        fcuda.set_allow_tf32(False)
    fit_times = getattr(hist, "epoch_times", None) or hist.history.get("time")
    return {"epoch_times_s": timer.times,
            "fit_reported_times_s": list(fit_times) if fit_times else None,
            "final_train_loss": float(hist.history["loss"][-1]),
            "test_accuracy": float(results[1])}


def summarise(row: dict[str, Any], n: int) -> None:
    """Add first-epoch, median-epoch (2..E) and steps/s figures to a finished row."""
    times = row.get("epoch_times_s") or []
    steps = (n + row["batch"] - 1) // row["batch"]
    row["steps_per_epoch"] = steps
    row["first_epoch_s"] = times[0] if times else None
    row["median_epoch_s"] = float(statistics.median(times[1:])) if len(times) > 1 else None
    row["steps_per_s"] = steps / row["median_epoch_s"] if row["median_epoch_s"] else None


def print_table(info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One table: seconds per epoch, steps/s, test accuracy, torch / fastconv time."""
    print("MNIST training, fastconv vs PyTorch eager: "
          + ", ".join(f"{k} {v}" for k, v in info.items()))
    cols = (f"{'model':10} {'framework':9} {'prec':5} {'batch':>5} {'first s':>8} "
            f"{'median s':>9} {'steps/s':>8} {'test acc%':>9} {'torch/fc':>8}")
    print(cols)
    print("-" * len(cols))

    def fmt(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, float) else format("-", ">" + spec.split(".")[0])

    for r in rows:
        acc = r["test_accuracy"] * 100 if isinstance(r.get("test_accuracy"), float) else None
        print(f"{r['model']:10} {r['framework']:9} {r['precision']:5} {r['batch']:>5} "
              f"{fmt(r.get('first_epoch_s'), '8.3f')} {fmt(r.get('median_epoch_s'), '9.3f')} "
              f"{fmt(r.get('steps_per_s'), '8.0f')} {fmt(acc, '9.2f')} "
              f"{fmt(r.get('speedup_vs_torch'), '8.2f')}")
    for r in rows:
        if r.get("error"):
            print(f"  {r['model']} {r['framework']} {r['precision']}: ERROR {r['error']}")
    print("first s: epoch 1 (includes warm-up); median s: median of epochs 2..E; torch/fc: torch "
          "median / fastconv median (above 1: fastconv faster); test acc after the last epoch")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status."""
    args = parse_args(argv)
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        print("bench_gpu_train: PyTorch is not installed; nothing to compare against")
        return 0
    if not torch.cuda.is_available():
        print("bench_gpu_train: no CUDA GPU visible to PyTorch; nothing to benchmark")
        return 0
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithms
    try:
        from fastconv import datasets  # noqa: PLC0415
        (xtr, ytr), (xte, yte) = datasets.load_mnist(data_dir=args.data_dir)
    except Exception as err:  # noqa: BLE001
        print(f"bench_gpu_train: cannot load MNIST via fastconv.datasets ({err}); try --data-dir")
        return 1
    xtr, xte = (np.ascontiguousarray(a, dtype=np.float32) for a in (xtr, xte))
    ytr, yte = (np.ascontiguousarray(a, dtype=np.int64) for a in (ytr, yte))
    data: dict[str, Any] = {"x": xtr, "y": ytr, "x_test": xte, "y_test": yte}
    if "torch" in args.frameworks:
        data.update(tx=torch.from_numpy(xtr).cuda(), ty=torch.from_numpy(ytr).cuda(),
                    tx_test=torch.from_numpy(xte).cuda(), ty_test=torch.from_numpy(yte).cuda())
    info = header(torch)
    info.update(epochs=args.epochs, lr=args.lr, train_images=len(xtr))
    rows: list[dict[str, Any]] = []
    for name in args.models:
        batch = args.lenet_batch if name == "lenet5" else args.vgg_batch
        for prec in args.precisions:
            done: dict[str, dict[str, Any]] = {}
            for fw in args.frameworks:
                row: dict[str, Any] = {"model": name, "framework": fw, "precision": prec,
                                       "batch": batch, "epochs": args.epochs}
                print(f"bench_gpu_train: {name} {fw} {prec} batch {batch} ...", flush=True)
                try:
                    if fw == "fastconv":
                        row.update(run_fastconv(name, prec == "tf32", data, args, batch))
                    else:
                        row.update(run_torch(name, prec == "tf32", data, args, batch, torch))
                except Exception as err:  # noqa: BLE001 - report and carry on
                    row["error"] = f"{type(err).__name__}: {err}"
                    row["traceback"] = traceback.format_exc()
                summarise(row, len(xtr))
                torch.cuda.empty_cache()
                done[fw] = row
                rows.append(row)
            fc, tc = done.get("fastconv"), done.get("torch")
            if fc and tc and fc.get("median_epoch_s") and tc.get("median_epoch_s"):
                fc["speedup_vs_torch"] = tc["median_epoch_s"] / fc["median_epoch_s"]
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    print()
    print_table(info, rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
