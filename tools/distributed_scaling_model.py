"""The tables of docs/DISTRIBUTED.md: data-parallel step time against the number of machines.

    python tools/distributed_scaling_model.py [--lenet-step-ms 3.68] [--vgg-step-ms 170.3]

A ring all-reduce of S bytes over N machines sends and receives 2 (N - 1) / N x S bytes per
machine in 2 (N - 1) messages, so it takes

    t_allreduce(N) = 2 (N - 1) / N x S / bandwidth + 2 (N - 1) x latency

A step on N machines with per-machine batch b costs b x c (c: compute seconds per sample on one
machine, from a measured single-process step) plus the all-reduce when nothing overlaps:

    t_step(N, b) = b x c + t_allreduce(N)

and compute hides the all-reduce (were it all overlapped) from b* = t_allreduce(N) / c; the step
is 90% computation, without overlap, from b = 9 b*. Two ways to use N machines:

    weak scaling: each machine keeps the single-process batch (the global batch grows N-fold):
        efficiency = b c / t_step(N, b)  (the fraction of an ideal N-fold speed-up)
    strong scaling: the global batch B stays, each machine takes B / N of it:
        speed-up = B c / t_step(N, B / N)  ("-" where B / N < 1: some machines would idle) The defaults are one 2-core machine's
measured steps at 2 threads (benchmarks/results/train.txt: LeNet-5 3.45 s per 938-step epoch of
batch 64, the small VGG 170.3 ms per step of batch 128).
"""
import argparse

PARAMS = {"LeNet-5": 61_706, "small VGG": 870_634}
NETWORKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 5e-6)}  # bytes/s, latency
MACHINES = (2, 4, 8, 16, 32, 64, 128, 256)


def allreduce_seconds(n, nbytes, bandwidth, latency):
    """A ring all-reduce of nbytes over n machines."""
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lenet-step-ms", type=float, default=3450 / 938, help="batch 64")
    parser.add_argument("--vgg-step-ms", type=float, default=170.3, help="batch 128")
    args = parser.parse_args()
    per_sample = {"LeNet-5": args.lenet_step_ms / 1e3 / 64, "small VGG": args.vgg_step_ms / 1e3 / 128}
    batch = {"LeNet-5": 64, "small VGG": 128}
    for net, (bandwidth, latency) in NETWORKS.items():
        print(f"\n{net}, latency {latency * 1e6:.0f} us a message")
        print("| N | LeNet-5 all-reduce ms | b* | weak eff. (b = 64) | strong, B = 64 "
              "| small VGG all-reduce ms | b* | weak eff. (b = 128) | strong, B = 128 |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in MACHINES:
            cells = [str(n)]
            for model in PARAMS:
                t = allreduce_seconds(n, 4 * PARAMS[model], bandwidth, latency)
                c, b = per_sample[model], batch[model]
                weak = b * c / (b * c + t)
                strong = (f"{b * c / (b / n * c + t):.1f}x, {(b / n * c + t) * 1e3:.2f} ms"
                          if n <= b else "-")
                cells += [f"{t * 1e3:.2f}", f"{t / c:.1f}", f"{weak:.0%}", strong]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
