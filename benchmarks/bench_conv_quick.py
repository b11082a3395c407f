"""Quick CPU comparison: fastconv vs PyTorch (oneDNN) on the LeNet-5 and small-VGG layers.

One table: for each layer and batch, the wall time of forward, backward-input and
backward-weight for fastconv and torch (best and median of 2 x --reps calls), and the ratio of the
best times (torch / fastconv; above 1 means fastconv is faster). Both libraries run on the
same number of threads, timed in alternating blocks so both see the same machine load.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv_quick.py \
        [--threads 2] [--batch 64 256] [--reps 7] [--only C1,C3] [--pool] [--clock cpu]

The machine is shared, so the numbers are noisy: the best-of time is the least disturbed by
other processes; compare the ratios within one run, and repeat a run before trusting a small
difference. torch is a benchmark-time dependency only.
"""
import argparse
import time

import numpy as np

import fastconv
from fastconv import functional as F

# name: (C, K, H, W, R, S, padding)
LAYERS = {
    "C1": (1, 6, 32, 32, 5, 5, 0),
    "C3": (6, 16, 14, 14, 5, 5, 0),
    "C5": (16, 120, 5, 5, 5, 5, 0),
    "V1": (1, 32, 28, 28, 3, 3, 1),
    "V2": (32, 32, 28, 28, 3, 3, 1),
    "V3": (32, 64, 14, 14, 3, 3, 1),
    "V4": (64, 64, 14, 14, 3, 3, 1),
}


CLOCK = time.perf_counter


def time_pair(ours, theirs, reps, rounds=2):
    """(best, median) seconds of ours and of theirs, in alternating blocks of reps calls.

    Blocks, not call-by-call alternation: each library's OpenMP threads spin for a while after
    a parallel region, and on 2 cores the other library's threads would fight them. A short
    sleep between blocks lets the spinners go to sleep."""
    t = {0: [], 1: []}
    for _ in range(rounds):
        for i, fn in enumerate((ours, theirs)):
            fn()  # warm-up: workspaces, page faults, oneDNN primitive creation
            for _ in range(reps):
                t0 = CLOCK()
                fn()
                t[i].append(CLOCK() - t0)
            time.sleep(0.25)
    return [(min(t[i]), float(np.median(t[i]))) for i in (0, 1)]


def bench_conv(name, batch, reps, torch):
    C, K, H, W, R, S, pad = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C, R, S), dtype=np.float32) * 0.1
    b = rng.standard_normal(K, dtype=np.float32)
    y = F.conv2d(x, w, b, padding=pad)
    dy = rng.standard_normal(y.shape, dtype=np.float32)

    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
    tconv = torch.nn.functional.conv2d
    gi = torch.nn.grad.conv2d_input
    gw = torch.nn.grad.conv2d_weight

    rows = []
    with torch.no_grad():
        ours = {
            "fwd": lambda: F.conv2d(x, w, b, padding=pad),
            "bwd_in": lambda: F.conv2d_backward_input(dy, w, x.shape, padding=pad),
            "bwd_w": lambda: F.conv2d_backward_weight(dy, x, w.shape, padding=pad),
        }
        theirs = {
            "fwd": lambda: tconv(tx, tw, tb, padding=pad),
            "bwd_in": lambda: gi(tx.shape, tw, tdy, padding=pad),
            "bwd_w": lambda: gw(tx, tw.shape, tdy, padding=pad),
        }
        for op in ("fwd", "bwd_in", "bwd_w"):
            t_ours, t_torch = time_pair(ours[op], theirs[op], reps)
            rows.append((f"{name} {C}->{K} {H}x{W}", batch, op, t_ours, t_torch))
    return rows


def bench_pool(batch, reps, torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 32, 28, 28), dtype=np.float32)
    y = F.max_pool2d(x, 2)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    txg = tx.clone().requires_grad_(True)
    rows = []
    with torch.no_grad():
        cases = [
            ("maxpool 2x2", "fwd", lambda: F.max_pool2d(x, 2), lambda: torch.nn.functional.max_pool2d(tx, 2)),
            ("avgpool 2x2", "fwd", lambda: F.avg_pool2d(x, 2), lambda: torch.nn.functional.avg_pool2d(tx, 2)),
            ("avgpool 2x2", "bwd", lambda: F.avg_pool2d_backward(dy, x.shape, 2),
             lambda: torch.ops.aten.avg_pool2d_backward(tdy, tx, [2, 2], [2, 2], [0, 0], False, True, None)),
        ]
        for name, op, ours, theirs in cases:
            rows.append((f"{name} 32x28²", batch, op, *time_pair(ours, theirs, reps)))

    # max-pool backward needs torch's indices from the forward pass
    _, idx = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)
    rows.append(("maxpool 2x2 32x28²", batch, "bwd", *time_pair(
        lambda: F.max_pool2d_backward(dy, x, 2),
        lambda: torch.ops.aten.max_pool2d_with_indices_backward(tdy, txg, [2, 2], [2, 2], [0, 0], [1, 1], False, idx),
        reps)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated layer names, e.g. C1,V2")
    ap.add_argument("--pool", action="store_true", help="also time 2x2 max/avg pooling")
    ap.add_argument("--no-conv", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: the process's CPU time (all threads summed), which other processes "
                         "on a loaded machine disturb far less; with --threads 1 it is the work itself")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    import torch

    torch.set_num_threads(args.threads)
    fastconv.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(LAYERS)
    print(f"fastconv {fastconv.__version__} isa={fastconv.cpu_isa()} | torch {torch.__version__} "
          f"| threads {args.threads} | {args.clock} clock, best and median of 2x{args.reps} | ms")
    print(f"{'layer':22s} {'batch':>5s} {'op':6s} {'ours best':>10s} {'median':>8s} {'torch best':>10s} "
          f"{'median':>8s} {'torch/ours':>10s}")
    for batch in args.batch:
        rows = []
        if not args.no_conv:
            for n in names:
                rows += bench_conv(n, batch, args.reps, torch)
        if args.pool:
            rows += bench_pool(batch, args.reps, torch)
        for layer, bt, op, (o_best, o_med), (t_best, t_med) in rows:
            print(f"{layer:22s} {bt:5d} {op:6s} {o_best * 1e3:10.3f} {o_med * 1e3:8.3f} {t_best * 1e3:10.3f} "
                  f"{t_med * 1e3:8.3f} {t_best / o_best:10.2f}", flush=True)


if __name__ == "__main__":
    main()
