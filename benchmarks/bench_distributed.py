"""Data-parallel training on MPI: what the all-reduce costs, and 2 ranks x 1 thread against
1 process x 2 threads on the same machine.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_distributed.py \\
        [--ranks 2] [--rounds 3] [--reps 300] [--lenet-steps 60] [--vgg-steps 10] [--out FILE.json]

Needs fastconv[mpi] (mpi4py and an mpiexec). The script is the driver: each round it trains
in this process (1 rank, --ranks threads) and then starts itself under ``mpiexec -n RANKS``
(each rank 1 thread, fastconv.distributed's default share of the cores), so the competitors
alternate in time on the same machine and a change of load hits both. Reported: medians over
the rounds' medians, and their ratios.

What is timed:

  all-reduce alone: DataParallel.allreduce_gradients on a float32 buffer of LeNet-5's 61,706
    and the small VGG's 870,634 parameters (after a barrier, so that no rank waits for another),
    with the default 4 MiB buckets and with 256 KiB ones, next to mpi4py's plain blocking
    Allreduce of the same buffer (what the watchdog and the bucketing cost). The bus bandwidth
    column is the ring all-reduce's traffic 2 (N - 1) / N x bytes over the time.

  training step: model.fit(distributed=True) with the global batch of the single process
    (LeNet-5 modern, 61,706 parameters, batch 64; the small VGG without dropout, batch 128), on
    random data; a step is the time between two on_batch_end callbacks (forward, loss, backward,
    all-reduce, Adam), median over the steps after 3 warm-up steps. "all-reduce in step" is
    the time spent in allreduce_gradients inside those steps, waiting for the slower rank
    included. The VGG row also runs a step whose all-reduce overlaps the backward pass (256 KiB
    buckets started as each layer's gradients are ready: begin_gradients / gradients_ready /
    finish_gradients).
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # see benchmarks/README.md

import numpy as np

import fastconv
from fastconv import models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (cpu_model, shown_path)

LENET_PARAMS, VGG_PARAMS = 61_706, 870_634


def build(name):
    """(model, batch size): LeNet-5 modern, or the small VGG without dropout."""
    if name == "lenet5":
        model, batch = models.lenet5(classic=False, seed=0), 64
    else:
        model, batch = models.vgg_small(seed=0, dropout=0.0), 128
    model.compile(optimizer=fastconv.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, batch


def random_data(steps, batch):
    rng = np.random.default_rng(0)
    n = steps * batch
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


class StepTimer(models.Callback):
    """Times between consecutive on_batch_end calls."""

    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())

    def steps_ms(self, warmup=3):
        gaps = np.diff(self.stamps) * 1e3
        return gaps[max(warmup - 1, 0):]


def fit_step_ms(name, steps, distributed):
    model, batch = build(name)
    x, y = random_data(steps, batch)
    timer = StepTimer()
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0, callbacks=[timer], shuffle=True,
              distributed=distributed)
    return float(np.median(timer.steps_ms()))


# --------------------------------------------------------------------------------------------
# The MPI worker (one rank)
# --------------------------------------------------------------------------------------------
def overlapped_step_ms(name, steps, dp, overlap, bucket_bytes):
    """A hand-written fit step (the model's own plan, forward and backward over its tape) whose
    all-reduce either follows the backward pass or overlaps it, layer by layer."""
    from fastconv import distributed as dist
    from fastconv.layers import Context
    from fastconv.models import graph as G
    from fastconv.models import training as T

    model, batch = build(name)
    x, y = random_data(steps, batch)
    trainer = T._trainer(model)
    plan = T._loss_plan(model, "train", model.losses, trainer.ids)
    flat_grads = trainer.grads                  # one run: the whole gradient buffer
    dp.setup([trainer.params[0]], {"model": name}, seed=0)
    ddp = dist.DataParallel(bucket_bytes=bucket_bytes)
    start = {id(layer): offsets[0] for layer in trainer.layers
             for _, offsets in [layer._packed]}  # where each layer's gradients start
    times = []
    for step in range(steps):
        lo = step * batch
        idx = dp.shard(np.arange(lo, lo + batch))
        xb, yb = x[idx], y[idx]
        t0 = time.perf_counter()
        ctx = Context(True)
        outs, tape = G.forward(plan, ctx, [xb], True)
        _, grad = model.loss.forward_backward(outs[0], yb)
        if overlap:
            ddp.begin_gradients(flat_grads, len(idx) / batch)
            G.backward(plan, ctx, tape, [grad], trainer.grad_views,
                       on_grads=lambda layer: ddp.gradients_ready(0, start[id(layer)]))
            ddp.finish_gradients()
        else:
            G.backward(plan, ctx, tape, [grad], trainer.grad_views)
            ddp.allreduce_gradients(flat_grads, len(idx) / batch)
        model.optimizer.step(trainer.params, trainer.grads)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times[3:]))


def worker(args):
    from mpi4py import MPI

    from fastconv import distributed as dist

    dist.init()
    dp = dist.DataParallel()
    comm = dp.comm
    result = {"ranks": dp.size, "threads": fastconv.get_num_threads(),
              "mpi": MPI.Get_library_version().splitlines()[0].strip(), "allreduce": {}}
    for label, count in (("lenet5", LENET_PARAMS), ("vgg_small", VGG_PARAMS)):
        buf = np.ones(count, np.float32)
        row = {}
        for kind, bucket in (("mpi4py Allreduce", None), ("DataParallel 4 MiB", 4 << 20),
                             ("DataParallel 256 KiB", 256 << 10)):
            dpk = dist.DataParallel(bucket_bytes=bucket or 4 << 20)
            times = []
            for _ in range(args.reps):
                comm.Barrier()
                t0 = time.perf_counter()
                if bucket is None:
                    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                else:
                    dpk.allreduce_gradients(buf, 0.5)
                times.append(time.perf_counter() - t0)
            # the largest of the ranks' medians: the collective ends when the last rank has it
            row[kind] = max(comm.allgather(float(np.median(times) * 1e6)))
        result["allreduce"][label] = row

    # Training steps through fit(distributed=True), and the all-reduce's share of them.
    spent = []
    original = dist.DataParallel.allreduce_gradients

    def timed(self, buffers, weight=1.0):
        t0 = time.perf_counter()
        original(self, buffers, weight)
        spent.append((time.perf_counter() - t0) * 1e3)

    dist.DataParallel.allreduce_gradients = timed
    result["train"] = {}
    for name, steps in (("lenet5", args.lenet_steps), ("vgg_small", args.vgg_steps)):
        spent.clear()
        step = fit_step_ms(name, steps, True)
        in_step = float(np.median(spent[3:]))
        result["train"][name] = {"step_ms": max(comm.allgather(step)),
                                 "allreduce_in_step_ms": max(comm.allgather(in_step))}
    dist.DataParallel.allreduce_gradients = original
    for overlap, bucket, key in ((False, 4 << 20, "vgg after backward, 4 MiB"),
                                 (False, 256 << 10, "vgg after backward, 256 KiB"),
                                 (True, 256 << 10, "vgg overlapped, 256 KiB")):
        ms = overlapped_step_ms("vgg_small", args.vgg_steps, dp, overlap, bucket)
        result["train"][key] = max(comm.allgather(ms))
    if dp.rank == 0:
        with open(args.worker_out, "w") as f:
            json.dump(result, f)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------
def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def machine_info():
    """The CPU, the load and the versions this run reports."""
    return {"cpu": machine.cpu_model(), "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
            "python": platform.python_version(), "fastconv": fastconv.__version__,
            "isa": fastconv.cpu_isa(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--lenet-steps", type=int, default=60)
    parser.add_argument("--vgg-steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    exe = mpiexec()
    if exe is None:
        sys.exit('bench_distributed: no mpiexec; pip install "fastconv[mpi]"')
    info = machine_info()
    print("fastconv distributed benchmark")
    print(f"  machine   {info['cpu']}, {info['cpus']} CPUs, load average {info['load_average']:.2f}"
          " (shared with other work: ratios of competitors run in turn are what to read)")
    print(f"  fastconv  {info['fastconv']}, ISA {info['isa']}; python {info['python']}, {info['date']}")
    rounds = []
    for r in range(args.rounds):
        fastconv.set_num_threads(args.ranks)
        single = {name: fit_step_ms(name, steps, False)
                  for name, steps in (("lenet5", args.lenet_steps), ("vgg_small", args.vgg_steps))}
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "worker.json")
            env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            env.pop("OMP_NUM_THREADS", None)
            cmd = [exe, "-n", str(args.ranks), sys.executable, os.path.abspath(__file__), "--worker",
                   "--worker-out", out, "--reps", str(args.reps), "--lenet-steps",
                   str(args.lenet_steps), "--vgg-steps", str(args.vgg_steps)]
            subprocess.run(cmd, check=True, env=env)
            with open(out) as f:
                multi = json.load(f)
        rounds.append({"single": single, "multi": multi})
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    med = lambda values: statistics.median(values)
    first = rounds[0]["multi"]
    print(f"  MPI       {first['mpi']}; {first['ranks']} ranks x {first['threads']} thread(s)\n")
    print(f"all-reduce alone, float32, {first['ranks']} ranks (median us over {args.reps} reps, "
          f"median of {args.rounds} rounds)")
    print(f"{'buffer':<22}{'mpi4py Allreduce':>18}{'DP 4 MiB buckets':>18}{'DP 256 KiB':>12}"
          f"{'bus GB/s (DP 4M)':>18}")
    table = {"machine": info, "rounds": rounds, "allreduce_us": {}, "train_ms": {}}
    n = first["ranks"]
    for label, count in (("lenet5", LENET_PARAMS), ("vgg_small", VGG_PARAMS)):
        row = {k: med([rd["multi"]["allreduce"][label][k] for rd in rounds])
               for k in first["allreduce"][label]}
        table["allreduce_us"][label] = row
        bus = 2 * (n - 1) / n * count * 4 / (row["DataParallel 4 MiB"] * 1e-6) / 1e9
        print(f"{label + f' ({count:,})':<22}{row['mpi4py Allreduce']:>18.1f}"
              f"{row['DataParallel 4 MiB']:>18.1f}{row['DataParallel 256 KiB']:>12.1f}{bus:>18.2f}")
    print(f"\ntraining step, same global batch (median ms; ratio above 1x: the {n} ranks are faster)")
    print(f"{'model':<12}{'batch':>6}{f'1 proc x {n} thr':>16}{f'{n} ranks x 1 thr':>18}"
          f"{'ratio':>8}{'all-reduce in step':>20}")
    for name, batch in (("lenet5", 64), ("vgg_small", 128)):
        one = med([rd["single"][name] for rd in rounds])
        many = med([rd["multi"]["train"][name]["step_ms"] for rd in rounds])
        ar = med([rd["multi"]["train"][name]["allreduce_in_step_ms"] for rd in rounds])
        table["train_ms"][name] = {"single": one, "distributed": many, "allreduce_in_step": ar}
        print(f"{name:<12}{batch:>6}{one:>16.2f}{many:>18.2f}{one / many:>7.2f}x{ar:>20.3f}")
    print("\nsmall VGG step, all-reduce after the backward pass or overlapped with it (median ms)")
    for key in ("vgg after backward, 4 MiB", "vgg after backward, 256 KiB", "vgg overlapped, 256 KiB"):
        value = med([rd["multi"]["train"][key] for rd in rounds])
        table["train_ms"][key] = value
        print(f"  {key:<32}{value:>9.2f}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=1)
        print(f"JSON: {machine.shown_path(args.out)}")


if __name__ == "__main__":
    main()
