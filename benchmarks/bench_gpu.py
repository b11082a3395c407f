"""fastconv's CUDA kernels against PyTorch/cuDNN on the LeNet-5 and small-VGG layers.

One command, one table, JSON beside it:

    python benchmarks/bench_gpu.py --out bench_gpu.json

For each layer (LeNet-5 C1, C3, C5; the four VGG 3x3 "same" convolutions; 2x2 max pooling)
at batch 64 and 256, it times fastconv's forward, backward-input and backward-weight
(fastconv._cuda called directly, so the numbers are the kernels plus a thin binding) and
PyTorch's cuDNN, both in FP32 and with TF32 allowed (fastconv.cuda.set_allow_tf32,
torch.backends.cudnn.allow_tf32). Each time is
the median of --reps runs after --warmup runs, measured with CUDA events on the default
stream (fastconv and PyTorch both queue there). Ratios are fastconv time / PyTorch time, so
below 1 means fastconv is faster. Without PyTorch only fastconv is timed (host timers around
a synchronize). Without a GPU it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

# name, C, K, R, H, padding (per side) ; stride 1, dilation 1
CONV_LAYERS = [
    ("lenet C1 1->6 5x5 32x32", 1, 6, 5, 32, 0),
    ("lenet C3 6->16 5x5 14x14", 6, 16, 5, 14, 0),
    ("lenet C5 16->120 5x5 5x5", 16, 120, 5, 5, 0),
    ("vgg 1->32 3x3 28x28", 1, 32, 3, 28, 1),
    ("vgg 32->32 3x3 28x28", 32, 32, 3, 28, 1),
    ("vgg 32->64 3x3 14x14", 32, 64, 3, 14, 1),
    ("vgg 64->64 3x3 14x14", 64, 64, 3, 14, 1),
]
# name, C, H, window
POOL_LAYERS = [
    ("maxpool 2x2 32ch 28x28", 32, 28, 2),
    ("maxpool 2x2 64ch 14x14", 64, 14, 2),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON to this path")
    ap.add_argument("--reps", type=int, default=50, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed repetitions first")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="batch sizes")
    ap.add_argument("--no-torch", action="store_true", help="time fastconv only")
    return ap.parse_args(argv)


class Timer:
    """Median time of a callable, by CUDA events when torch is present, else host timers."""

    def __init__(self, torch: Any, sync: Callable[[], None], reps: int, warmup: int) -> None:
        self.torch, self.sync, self.reps, self.warmup = torch, sync, reps, warmup

    def median_ms(self, fn: Callable[[], Any]) -> float:
        """Run fn warmup + reps times; return the median of the timed runs in milliseconds."""
        for _ in range(self.warmup):
            fn()
        self.sync()
        times = []
        if self.torch is not None:
            cuda = self.torch.cuda
            for _ in range(self.reps):
                start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(self.reps):
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append((time.perf_counter() - t0) * 1e3)
        return float(statistics.median(times))


def header(ext: Any, torch: Any) -> dict[str, Any]:
    """The GPU, driver-side versions and library versions, for the table and the JSON."""
    import fastconv  # noqa: PLC0415

    info: dict[str, Any] = {
        "gpu": ext.device_name(0),
        "fastconv": getattr(fastconv, "__version__", "?"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "timer": "cuda events" if torch is not None else "host perf_counter + synchronize",
    }
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def conv_cases(batches: list[int]) -> list[dict[str, Any]]:
    """Every (conv layer, batch) pair with its shapes and FLOPs per pass."""
    cases = []
    for n in batches:
        for name, c, k, r, h, pad in CONV_LAYERS:
            p = h + 2 * pad - r + 1
            cases.append({"layer": name, "batch": n, "x": (n, c, h, h), "w": (k, c, r, r),
                          "pad": pad, "flops": 2.0 * n * k * p * p * c * r * r})
    return cases


def bench_conv(case: dict[str, Any], ext: Any, torch: Any, timer: Timer) -> list[dict[str, Any]]:
    """fastconv and cuDNN on one convolution: forward, backward input, backward weight."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case["x"]).astype(np.float32)
    w = (rng.standard_normal(case["w"]) * 0.1).astype(np.float32)
    b = rng.standard_normal(case["w"][0]).astype(np.float32)
    pad = case["pad"]
    T = ext.Tensor.from_numpy
    fx, fw, fb = T(x), T(w), T(b)
    fy = ext.conv2d_forward(fx, fw, fb, (1, 1), (pad,) * 4, (1, 1), 0)
    fdy = T(rng.standard_normal(fy.shape).astype(np.float32))
    passes = {
        "forward": lambda: ext.conv2d_forward(fx, fw, fb, (1, 1), (pad,) * 4, (1, 1), 0),
        "backward_input": lambda: ext.conv2d_backward_input(fdy, fw, case["x"], (1, 1),
                                                            (pad,) * 4, (1, 1)),
        "backward_weight": lambda: ext.conv2d_backward_weight(fdy, fx, case["w"], (1, 1),
                                                              (pad,) * 4, (1, 1)),
    }
    torch_passes: dict[str, Callable[[], Any]] = {}
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, w, b))
        tdy = torch.from_numpy(fdy.numpy()).cuda()
        F = torch.nn.functional
        conv_bwd = torch.ops.aten.convolution_backward
        torch_passes = {
            "forward": lambda: F.conv2d(tx, tw, tb, 1, pad),
            "backward_input": lambda: conv_bwd(tdy, tx, tw, None, [1, 1], [pad, pad], [1, 1],
                                               False, [0, 0], 1, [True, False, False]),
            "backward_weight": lambda: conv_bwd(tdy, tx, tw, None, [1, 1], [pad, pad], [1, 1],
                                                False, [0, 0], 1, [False, True, False]),
        }
    rows = []
    for name, fn in passes.items():
        row = {"layer": case["layer"], "batch": case["batch"], "pass": name,
               "fastconv_ms": timer.median_ms(fn)}
        row["fastconv_gflops"] = case["flops"] / row["fastconv_ms"] / 1e6
        ext.set_allow_tf32(True)
        try:
            row["fastconv_tf32_ms"] = timer.median_ms(fn)
        finally:
            ext.set_allow_tf32(False)
        if torch is not None:
            tfn = torch_passes[name]
            got = fn().numpy()
            out = tfn()
            want = (out if name == "forward" else out[0 if name == "backward_input" else 1])
            row["max_abs_diff_vs_torch"] = float(np.abs(got - want.cpu().numpy()).max())
            torch.backends.cudnn.allow_tf32 = False
            row["torch_fp32_ms"] = timer.median_ms(tfn)
            torch.backends.cudnn.allow_tf32 = True
            row["torch_tf32_ms"] = timer.median_ms(tfn)
            torch.backends.cudnn.allow_tf32 = False
            row["ratio_fp32"] = row["fastconv_ms"] / row["torch_fp32_ms"]
            row["ratio_tf32"] = row["fastconv_tf32_ms"] / row["torch_tf32_ms"]
        rows.append(row)
    return rows


def bench_pool(name: str, n: int, c: int, h: int, k: int, ext: Any, torch: Any,
               timer: Timer) -> list[dict[str, Any]]:
    """fastconv and PyTorch max pooling, forward and backward."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    fx = ext.Tensor.from_numpy(x)
    fy = ext.max_pool2d_forward(fx, (k, k), (k, k), (0, 0, 0, 0))
    fdy = ext.Tensor.from_numpy(rng.standard_normal(fy.shape).astype(np.float32))
    passes = {
        "forward": lambda: ext.max_pool2d_forward(fx, (k, k), (k, k), (0, 0, 0, 0)),
        "backward_input": lambda: ext.max_pool2d_backward(fdy, fx, (k, k), (k, k), (0, 0, 0, 0)),
    }
    torch_passes: dict[str, Callable[[], Any]] = {}
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        tdy = torch.from_numpy(fdy.numpy()).cuda()
        _, idx = torch.nn.functional.max_pool2d(tx, k, k, return_indices=True)
        torch_passes = {
            "forward": lambda: torch.nn.functional.max_pool2d(tx, k, k),
            "backward_input": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                tdy, tx, [k, k], [k, k], [0, 0], [1, 1], False, idx),
        }
    rows = []
    for pname, fn in passes.items():
        row = {"layer": name, "batch": n, "pass": pname, "fastconv_ms": timer.median_ms(fn)}
        if torch is not None:
            row["max_abs_diff_vs_torch"] = float(
                np.abs(fn().numpy() - torch_passes[pname]().cpu().numpy()).max())
            row["torch_fp32_ms"] = timer.median_ms(torch_passes[pname])
            row["ratio_fp32"] = row["fastconv_ms"] / row["torch_fp32_ms"]
        rows.append(row)
    return rows


def print_table(info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One table: times in ms, fastconv GFLOP/s, ratios fastconv / torch."""
    print("fastconv CUDA vs PyTorch cuDNN: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    cols = f"{'layer':26} {'N':>4} {'pass':16} {'fastconv':>9} {'GFLOP/s':>8} {'fc TF32':>9} " \
           f"{'cudnn32':>9} {'cudnnTF32':>9} {'x fp32':>7} {'x tf32':>7} {'maxdiff':>8}"
    print(cols)
    print("-" * len(cols))

    def fmt(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, float) else format("-", ">" + spec.split(".")[0])

    for r in rows:
        print(f"{r['layer']:26} {r['batch']:>4} {r['pass']:16} {fmt(r['fastconv_ms'], '9.4f')} "
              f"{fmt(r.get('fastconv_gflops'), '8.0f')} {fmt(r.get('fastconv_tf32_ms'), '9.4f')} "
              f"{fmt(r.get('torch_fp32_ms'), '9.4f')} "
              f"{fmt(r.get('torch_tf32_ms'), '9.4f')} {fmt(r.get('ratio_fp32'), '7.2f')} "
              f"{fmt(r.get('ratio_tf32'), '7.2f')} {fmt(r.get('max_abs_diff_vs_torch'), '8.1e')}")
    print("times: median ms; x fp32: fastconv FP32 / cuDNN FP32, x tf32: fastconv TF32 / cuDNN "
          "TF32 (below 1: fastconv faster); maxdiff: fastconv FP32 vs cuDNN FP32")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status."""
    args = parse_args(argv)
    try:
        import fastconv.cuda as fc_cuda  # noqa: PLC0415
    except ImportError as err:
        print(f"bench_gpu: fastconv is not installed ({err})")
        return 0
    if not fc_cuda.is_available():
        print(f"bench_gpu: no GPU: {fc_cuda.why_unavailable()}; nothing to benchmark")
        return 0
    ext = fc_cuda.require()
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415
        except ImportError:
            print("bench_gpu: PyTorch not installed; timing fastconv only")
            torch = None
        if torch is not None and not torch.cuda.is_available():
            print("bench_gpu: PyTorch has no CUDA; timing fastconv only")
            torch = None
    if torch is not None:
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm

    def sync() -> None:
        if torch is not None:
            torch.cuda.synchronize()
        ext.synchronize()

    timer = Timer(torch, sync, args.reps, args.warmup)
    info = header(ext, torch)
    rows: list[dict[str, Any]] = []
    for case in conv_cases(args.batches):
        rows += bench_conv(case, ext, torch, timer)
    for n in args.batches:
        for name, c, h, k in POOL_LAYERS:
            rows += bench_pool(name, n, c, h, k, ext, torch, timer)
    print_table(info, rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
