"""One optimiser step over a model's flat weight buffer: fastconv's C++ step vs the NumPy
expressions it replaces (the optimiser's own _update_numpy, its bit-for-bit reference) vs
torch.optim on one tensor of the same size.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optimizers.py \\
        [--sizes 61706,870634] [--repeats 15] [--threads N] [--out results.json]

Sizes: LeNet-5 (modern, 61,706 weights) and the small VGG (870,634). The providers run
interleaved, one sample each in turn, so that a busy machine slows them alike; the table
gives medians per step and the ratios to fastconv. The napkin floor: a step reads and
writes each state buffer once (SGD with momentum: p, g, v = 5 passes of 4 bytes per weight;
Adam and RMSprop: 7), so 870,634 weights take 17-24 MB of traffic, about 1-2 ms at the
10-20 GB/s one core streams here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # as bench.py: no spinning BLAS threads

import numpy as np  # noqa: E402

import fastconv  # noqa: E402
from fastconv import optimizers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import machine_header, print_header, torch, warn_slow_env  # noqa: E402

# name, fastconv optimiser, torch optimiser (None: no counterpart), on one flat buffer
CASES = [
    ("sgd momentum", lambda: optimizers.SGD(0.01, momentum=0.9),
     lambda p: torch.optim.SGD([p], lr=0.01, momentum=0.9)),
    ("adam", lambda: optimizers.Adam(1e-3),
     lambda p: torch.optim.Adam([p], lr=1e-3, eps=1e-7)),
    ("adamw", lambda: optimizers.AdamW(1e-3),
     lambda p: torch.optim.AdamW([p], lr=1e-3, eps=1e-7, weight_decay=0.004)),
    ("rmsprop", lambda: optimizers.RMSprop(1e-3),
     lambda p: torch.optim.RMSprop([p], lr=1e-3, alpha=0.9, eps=1e-7)),
    ("rmsprop centered momentum", lambda: optimizers.RMSprop(1e-3, momentum=0.9, centered=True),
     lambda p: torch.optim.RMSprop([p], lr=1e-3, alpha=0.9, eps=1e-7, momentum=0.9, centered=True)),
]


def providers(make, make_torch, n, rng):
    """{name: one-step function} for one optimiser and size (fresh state each)."""
    g = rng.standard_normal(n).astype(np.float32) * 1e-3
    fast, slow = make(), make()
    p_fast = rng.standard_normal(n).astype(np.float32)
    p_slow = p_fast.copy()
    slow._begin_step([p_slow])

    def fastconv_step():
        fast.step([p_fast], [g])

    def numpy_step():
        slow._begin_step([p_slow])
        slow._update_numpy(slow._state[0], p_slow, g)

    out = {"fastconv": fastconv_step, "numpy": numpy_step}
    if torch is not None:
        param = torch.nn.Parameter(torch.from_numpy(p_fast.copy()))
        param.grad = torch.from_numpy(g.copy())
        opt = make_torch(param)

        def torch_step():
            opt.step()

        out["torch"] = torch_step
    return out


def measure(funcs, repeats, min_sample_s):
    """Median seconds per call of each function, sampled in turn."""
    inner = {}
    for name, fn in funcs.items():   # warm up, and size each sample to min_sample_s
        fn()
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-7)))
    samples = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, fn in funcs.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="61706,870634")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--min-sample-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for fastconv and torch (default: as they start)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        fastconv.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    warn_slow_env()
    header = machine_header()
    header["threads"] = fastconv.get_num_threads()
    if torch is not None:
        header["torch_threads"] = torch.get_num_threads()
    print_header(header)
    print(f"  threads   fastconv {header['threads']}, torch {header.get('torch_threads', '-')}; "
          f"medians of {args.repeats} interleaved samples\n")
    rows = []
    rng = np.random.default_rng(0)
    print(f"{'optimizer':<27}{'weights':>9}{'fastconv ms':>13}{'numpy ms':>10}{'torch ms':>10}"
          f"{'numpy/fc':>10}{'torch/fc':>10}")
    for name, make, make_torch in CASES:
        for n in (int(s) for s in args.sizes.split(",")):
            t = measure(providers(make, make_torch, n, rng), args.repeats, args.min_sample_ms / 1e3)
            row = {"optimizer": name, "weights": n, **{f"{k}_ms": v * 1e3 for k, v in t.items()}}
            rows.append(row)
            fc, torch_s = t["fastconv"], t.get("torch")
            torch_ms = "-" if torch_s is None else f"{torch_s * 1e3:.3f}"
            torch_ratio = "-" if torch_s is None else f"{torch_s / fc:.2f}"
            print(f"{name:<27}{n:>9,}{fc * 1e3:>13.3f}{t['numpy'] * 1e3:>10.3f}{torch_ms:>10}"
                  f"{t['numpy'] / fc:>10.2f}{torch_ratio:>10}")
    if args.out:
        for key in ("threadpools", "blas"):   # library file names, not where they are installed
            for lib in header.get(key, []):
                if lib.get("filepath"):
                    lib["filepath"] = os.path.basename(lib["filepath"])
        with open(args.out, "w") as f:
            json.dump({"header": header, "rows": rows}, f, indent=1)
        print(f"\nwrote {os.path.basename(args.out)}")


if __name__ == "__main__":
    main()
