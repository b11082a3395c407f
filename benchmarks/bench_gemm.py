"""fastconv's SGEMM against NumPy's BLAS: one command, one table, JSON beside it.

    python benchmarks/bench_gemm.py [--threads 1 2] [--reps 9] [--quick] [--cpu-time] [--solo]
                                    [--sizes 1024,2048] [--ghz 2.8] [--out gemm.json]

writes benchmarks/results/gemm_<machine>.json and .txt (gemm_solo_<machine> with --solo) unless
--out says otherwise (machine.py names the machine).

For each thread count a worker subprocess is started with OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS set (and fastconv.set_num_threads called), so NumPy's BLAS runs with exactly
that many threads without needing threadpoolctl; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
removed from its environment so OpenBLAS picks its own kernel for the CPU. Sizes: square
n = 256..2048 and the GEMMs of conv layers (M = output channels, N = batch * P * Q,
K = C * R * S). Each sample times enough calls for ~50 ms; the two providers alternate
sample by sample so a noisy neighbour hits both alike; the table shows medians (best in
the JSON). GFLOP/s = 2 M N K / time. With --cpu-time, one-thread runs are timed by the
calling thread's CPU time (both libraries then run on that thread), which a busy machine
does not inflate; runs with more threads always use wall-clock time. With --solo each library
runs alone in a worker of its own, with OpenBLAS's default settings: no provider ever shares
the cores with the other's idle threads (see OPENBLAS_THREAD_TIMEOUT below).

The FP32 peak each rate is compared with ("% peak"): clock x FLOP per cycle per core x threads.
The clock is /proc/cpuinfo's "cpu MHz" unless --ghz gives one; it is uncertain either way (a
virtual machine reports its base clock there, and turbo runs above it: benchmarks/gemm_harness.cpp's
`clock` command measures the clock the core really runs at). FLOP per cycle: two FMA pipes x the
vector lanes of the ISA fastconv runs (8 floats for AVX2, 16 for AVX-512) x 2, halved where the
pipes are half as wide as the vectors (Zen 1's 128-bit pipes for AVX2, Zen 4's 256-bit ones for
AVX-512); --flops-per-cycle overrides it.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# OpenBLAS's worker threads busy-wait (yielding) for 2^28 cycles after each call, about 0.1 s
# here; the next provider timed on these 2 cores then shares them with those threads (measured:
# fastconv's 2-thread GEMM ran at half speed in samples right after NumPy's, 30 instead of 61
# GFLOP/s). 2^4 cycles makes them sleep at once; NumPy's own 2-thread GEMM speed is unchanged
# (47-52 GFLOP/s at n = 512 either way). Set before NumPy is imported, which reads it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (the machine's description and the results file named for it)

SQUARE = [256, 512, 1024, 2048]
# (label, M, N, K): conv layers as GEMMs, C (K_out, P*Q*batch) = W (K_out, C*R*S) x im2col.
CONV = [("lenet conv1 b64", 6, 784 * 64, 25),
        ("lenet conv2 b64", 16, 100 * 64, 150),
        ("3x3 32ch 28x28", 32, 784, 288),
        ("3x3 64ch 14x14", 64, 196, 576),
        ("3x3 128ch 56x56", 128, 3136, 576)]


def blas_info():
    """NumPy's BLAS: threadpoolctl's description when installed, else NumPy's build config."""
    try:
        import threadpoolctl
        info = [d for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        if info:
            d = info[0]
            return f"{d.get('internal_api')} {d.get('version')} kernel={d.get('architecture')}"
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')} ({cfg.get('openblas configuration', '')})"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def time_samples(fn, flops, reps, clock=time.perf_counter, target_s=0.05):
    """GFLOP/s of `reps` samples of fn, each sample long enough to last ~target_s."""
    fn()
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-6)
    inner = max(1, int(target_s / one))
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            fn()
        yield flops * inner / max(clock() - t0, 1e-9) / 1e9


def worker(threads, reps, quick, cpu_time, only=None, sizes=None, conv=True):
    """Measures every size with `threads` threads (one provider with `only`); prints one JSON
    list on stdout."""
    import fastconv
    from fastconv import _core

    fastconv.set_num_threads(threads)
    clock = time.thread_time if cpu_time and threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    cases = [(f"square {n}", n, n, n) for n in (sizes or (SQUARE[:2] if quick else SQUARE))]
    if conv:
        cases += CONV[:2] if quick else CONV
    rows = []
    for label, m, n, k in cases:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        flops = 2.0 * m * n * k
        providers = {"fastconv": lambda: _core.sgemm(a, b), "numpy": lambda: np.matmul(a, b)}
        if only:
            providers = {only: providers[only]}
        gens = {name: time_samples(fn, flops, reps, clock) for name, fn in providers.items()}
        samples = {name: [] for name in gens}
        for values in zip(*gens.values()):  # alternate the providers sample by sample
            for name, v in zip(gens, values):
                samples[name].append(v)
        row = {"case": label, "M": m, "N": n, "K": k, "threads": threads,
               "clock": "thread_cpu" if clock is time.thread_time else "wall"}
        for name, s in samples.items():
            row[f"{name}_gflops_median"] = statistics.median(s)
            row[f"{name}_gflops_best"] = max(s)
        rows.append(row)
    print(json.dumps(rows))


def flops_per_cycle(d):
    """FP32 FLOP per cycle of one core for the ISA fastconv runs: 2 FMA pipes x lanes x 2,
    halved where the pipes are narrower than the vectors (see the module's docstring)."""
    isa = d.get("fastconv_isa") or "generic"
    lanes = {"avx512": 16, "avx2": 8}.get(isa, 4)
    per_cycle = 2 * lanes * 2
    if d.get("cpu_uarch") == "Zen" and isa == "avx2":  # 128-bit FMA pipes: a ymm FMA takes two
        per_cycle //= 2
    if d.get("cpu_uarch") == "Zen 4" and isa == "avx512":  # 256-bit pipes: a zmm FMA takes two
        per_cycle //= 2
    return per_cycle



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=9, help="samples per size and provider (median taken)")
    ap.add_argument("--quick", action="store_true", help="n = 256, 512 and two conv shapes only")
    ap.add_argument("--sizes", type=machine.int_list(), default=None,
                    help="the square sizes n (default 256,512,1024,2048)")
    ap.add_argument("--no-conv", action="store_true", help="leave out the conv-shaped GEMMs")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time one-thread runs by thread CPU time (for a busy machine)")
    ap.add_argument("--solo", action="store_true",
                    help="time each library alone, in a process of its own, with its default "
                         "thread settings (no OPENBLAS_THREAD_TIMEOUT): no interference at all")
    ap.add_argument("--ghz", type=float, default=None,
                    help="the core clock for the peak (default: /proc/cpuinfo's cpu MHz)")
    ap.add_argument("--flops-per-cycle", type=int, default=None,
                    help="FP32 FLOP per cycle per core (default: from the CPU and fastconv's ISA)")
    ap.add_argument("--out", help="JSON file to write, the table going to the same name with .txt "
                                  "(default: benchmarks/results/gemm_<machine>.json)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["fastconv", "numpy"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ghz is not None and not args.ghz > 0:
        ap.error(f"--ghz must be positive, got {args.ghz}")
    if args.flops_per_cycle is not None and args.flops_per_cycle < 1:
        ap.error(f"--flops-per-cycle must be >= 1, got {args.flops_per_cycle}")
    if args.worker:
        worker(args.worker, args.reps, args.quick, args.cpu_time, args.only, args.sizes, not args.no_conv)
        return

    import fastconv
    header = machine.describe(fastconv.cpu_isa())
    header.update({"fastconv": fastconv.__version__, "numpy": np.__version__, "numpy_blas": blas_info(),
                   "python": platform.python_version()})
    ghz = args.ghz or (header["cpu_mhz_reported"] or 0) / 1e3 or None
    per_cycle = args.flops_per_cycle or flops_per_cycle(header)
    header.update({"peak_clock_ghz": ghz,
                   "peak_clock_from": "--ghz" if args.ghz else "/proc/cpuinfo cpu MHz",
                   "peak_flops_per_cycle_per_core": per_cycle,
                   "peak_gflops_per_core": ghz * per_cycle if ghz else None})
    out = args.out or machine.results_path("gemm_solo" if args.solo else "gemm", header)
    with machine.Tee(os.path.splitext(out)[0] + ".txt"):
        run(args, header, out)


def run(args, header, out):
    """The workers, the table, the JSON (main's body, its output also going to the .txt)."""
    for key, value in header.items():
        print(f"# {key}: {value}")
    peak = header["peak_gflops_per_core"]
    if peak:
        print(f"# FP32 peak: {header['peak_clock_ghz']:.3f} GHz ({header['peak_clock_from']}) x "
              f"{header['peak_flops_per_cycle_per_core']} FLOP/cycle = {peak:.1f} GFLOP/s per core "
              "(the clock is uncertain: turbo; gemm_harness clock measures it)")
    if args.solo:
        print("# solo: each library timed alone in its own process, default OpenBLAS settings")
    results = []
    for t in args.threads:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        env.update(OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        if args.solo:
            env.pop("OPENBLAS_THREAD_TIMEOUT", None)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(t), "--reps", str(args.reps)]
        cmd += (["--quick"] if args.quick else []) + (["--cpu-time"] if args.cpu_time else [])
        cmd += (["--sizes", ",".join(map(str, args.sizes))] if args.sizes else [])
        cmd += ["--no-conv"] if args.no_conv else []
        merged = None
        for only in (["fastconv", "numpy"] if args.solo else [None]):
            proc = subprocess.run(cmd + (["--only", only] if only else []), env=env,
                                  capture_output=True, text=True, check=True)
            rows = json.loads(proc.stdout.strip().splitlines()[-1])
            merged = rows if merged is None else [dict(a, **b) for a, b in zip(merged, rows)]
        results += merged

    print(f"{'case':<18}{'M':>6}{'N':>7}{'K':>6}{'thr':>4}  {'fastconv':>9}  {'numpy':>9}  {'ratio':>6}  "
          f"{'fc %peak':>8}  {'np %peak':>8}  clock")
    for r in results:
        ratio = r["fastconv_gflops_median"] / r["numpy_gflops_median"]
        r["ratio_median"] = ratio
        if peak:
            r["fastconv_pct_peak_median"] = 100 * r["fastconv_gflops_median"] / (peak * r["threads"])
            r["numpy_pct_peak_median"] = 100 * r["numpy_gflops_median"] / (peak * r["threads"])
        pct = (f"{r['fastconv_pct_peak_median']:>7.1f}%  {r['numpy_pct_peak_median']:>7.1f}%" if peak
               else f"{'-':>8}  {'-':>8}")
        print(f"{r['case']:<18}{r['M']:>6}{r['N']:>7}{r['K']:>6}{r['threads']:>4}  "
              f"{r['fastconv_gflops_median']:>9.1f}  {r['numpy_gflops_median']:>9.1f}  {ratio:>6.2f}  {pct}  {r['clock']}")
    header["load_average_end"] = list(os.getloadavg())
    print(f"(GFLOP/s, medians; ratio = fastconv / numpy; %peak of threads x the peak per core; "
          f"load average at the end {header['load_average_end'][0]:.2f})")
    with open(out, "w") as f:
        json.dump({"header": header, "results": results}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
