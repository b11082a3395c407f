"""Two builds of fastconv side by side: the same training work, alternated between them.

    python benchmarks/compare_builds.py OLD=/path/to/old/venv/bin/python NEW=/path/to/new/venv/bin/python \
        [--rounds 5] [--threads 2] [--lenet-images 60000] [--vgg-steps 10]

Each interpreter must import its own installed fastconv. Every round runs one process per
build, in alternating order, each timing a LeNet-5 classic epoch (batch 64) and small-VGG steps
(batch 128) on MNIST through the public API (models.lenet5, vgg_small, compile, fit); the table
gives each build's median, the ratio, and the spread. Use it to check that a change to the
Python layers costs no speed (issue 15's 3% bound): alternating processes on one machine is the
fairest comparison two installs allow. Run it with the OpenBLAS tuning variables unset.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (the CPU's name)

WORKER = r"""
import json, sys, time
import numpy as np
import fastconv
from fastconv import datasets, models

threads, lenet_images, vgg_steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fastconv.set_num_threads(threads)
(x, y), _ = datasets.load_mnist()


class Steps(models.Callback):
    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())


out = {"version": fastconv.__version__, "isa": fastconv.cpu_isa()}
model = models.lenet5(classic=True, seed=0)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:2048], y[:2048], epochs=1, batch_size=64, verbose=0)            # warm up
t0 = time.perf_counter()
model.fit(x[:lenet_images], y[:lenet_images], epochs=1, batch_size=64, verbose=0)
out["lenet5_epoch_s"] = time.perf_counter() - t0
vgg = models.vgg_small(seed=0)
vgg.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
steps = Steps()
vgg.fit(x[:128 * (vgg_steps + 2)], y[:128 * (vgg_steps + 2)], epochs=1, batch_size=128, verbose=0,
        callbacks=[steps])
out["vgg_step_ms"] = float(np.median(np.diff(steps.stamps)[1:]) * 1e3)
print("RESULT " + json.dumps(out))
"""


def run(python, args):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["FASTCONV_DATA"] = args.data_dir   # older builds find MNIST only this way
    proc = subprocess.run([python, "-c", WORKER, str(args.threads), str(args.lenet_images),
                           str(args.vgg_steps)], capture_output=True, text=True, env=env,
                          cwd=os.path.expanduser("~"), timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{python} failed:\n{proc.stderr[-2000:]}")



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs=2, metavar="NAME=PYTHON")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lenet-images", type=int, default=60000)
    parser.add_argument("--vgg-steps", type=int, default=10)
    parser.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                           "..", "fastconv", "data", "mnist"),
                        help="MNIST's folder (default: the copy in this repository)")
    parser.add_argument("--out", default=None, help="write the samples as JSON here")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    samples = {name: [] for name, _ in builds}
    for r in range(args.rounds):
        order = builds if r % 2 == 0 else builds[::-1]
        for name, python in order:
            result = run(python, args)
            samples[name].append(result)
            print(f"round {r + 1}: {name} ({result['version']}, {result['isa']}): LeNet-5 epoch "
                  f"{result['lenet5_epoch_s']:.3f} s, VGG step {result['vgg_step_ms']:.1f} ms",
                  flush=True)
    (a, _), (b, _) = builds
    print(f"\n{machine.cpu_model()}, {os.cpu_count()} CPUs, {args.threads} threads, {args.rounds} rounds "
          f"alternated; load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'':24}{a:>14}{b:>14}{b + '/' + a:>14}")
    for key, label in (("lenet5_epoch_s", "LeNet-5 epoch (s)"), ("vgg_step_ms", "small-VGG step (ms)")):
        ma = statistics.median(s[key] for s in samples[a])
        mb = statistics.median(s[key] for s in samples[b])
        print(f"{label:<24}{ma:>14.3f}{mb:>14.3f}{mb / ma:>14.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": machine.cpu_model(), "threads": args.threads, "samples": samples}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
