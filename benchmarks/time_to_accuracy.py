"""Time to accuracy: a recipe trained from scratch, test accuracy against seconds of training.

    python benchmarks/time_to_accuracy.py [--preset mnist99] [--seeds 0,1,2] [--threads 2]
                                          [--torch] [--keras] [--evals-per-epoch 2]
                                          [--out FILE.json] [--plot FILE.png | --no-plot]

writes benchmarks/results/time_to_accuracy_<preset>_<machine>.json and .txt (machine.py names
the machine) and, where matplotlib imports, docs/<preset>_time_to_accuracy.png.

fastconv trains the preset (fastconv.presets: model, batch size, epochs, Adam under a one-cycle
schedule) with model.fit, once per seed. A callback stops the clock --evals-per-epoch times an
epoch (default 2: every half epoch), evaluates the MNIST test set (10,000 images) and starts
the clock again, so each point is (seconds of training, test accuracy). The seconds are the wall
time of fit minus the evaluations: fit's own set-up (its one pass of data checks) counts, the
data loading before fit does not. The CPU time of the process is recorded beside it (on a
machine shared with other work the wall time grows with the load and the CPU time much less;
both are in the JSON, with the load average at the start and the end of every run).

--torch and --keras train the same recipe in PyTorch and TensorFlow/Keras where they import:
the same network (Keras channels-last, as a Keras user writes it; BatchNormalization with
Keras's momentum 0.99 and epsilon 1e-3 in all three), Adam with the same one-cycle schedule
(torch.optim.lr_scheduler.OneCycleLR with cycle_momentum=False; a LearningRateSchedule with the
same formula in Keras), batch 64, shuffled every epoch, the same thread count (Keras in a
subprocess: TensorFlow fixes its pools once per process). A provider that does not import is
skipped with a line saying why.

Run with the OpenBLAS tuning variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/time_to_accuracy.py --seeds 0,1,2,3,4
"""
import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time

import numpy as np

import fastconv
from fastconv import datasets, models, presets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (the machine's description and the results file named for it)

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def load_data():
    """MNIST as float32 (N, 1, 28, 28) in [0, 1] and int64 labels: (x, y), (x_test, y_test)."""
    (x, y), (xt, yt) = datasets.load_mnist()
    return ((np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)),
            (np.ascontiguousarray(xt, dtype=np.float32), np.asarray(yt, dtype=np.int64)))


def eval_steps(steps_per_epoch, epochs, per_epoch):
    """The steps after which the test set is evaluated: per_epoch times an epoch, the last step
    of each epoch included."""
    points = set()
    for e in range(epochs):
        for i in range(1, per_epoch + 1):
            points.add(e * steps_per_epoch + math.ceil(i * steps_per_epoch / per_epoch))
    return sorted(points)


class Stopwatch:
    """Training time with the evaluations taken out: wall and process CPU seconds."""

    def __init__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.paused_wall = self.paused_cpu = 0.0

    def pause(self):
        self._p = (time.perf_counter(), time.process_time())
        return (self._p[0] - self.wall0 - self.paused_wall, self._p[1] - self.cpu0 - self.paused_cpu)

    def resume(self):
        self.paused_wall += time.perf_counter() - self._p[0]
        self.paused_cpu += time.process_time() - self._p[1]


def point(step, steps_per_epoch, wall, cpu, accuracy):
    return {"step": step, "epoch": round(step / steps_per_epoch, 3), "train_s": round(wall, 3),
            "train_cpu_s": round(cpu, 3), "test_accuracy": accuracy, "load_average": os.getloadavg()[0]}


# ----------------------------------------------------------------------------- fastconv
def run_fastconv(recipe, data, seed, per_epoch):
    """One training run of the preset; returns its points."""
    (x, y), (xt, yt) = data
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    evals = set(eval_steps(steps_per_epoch, recipe.epochs, per_epoch))
    model = recipe.compile(recipe.build_model(seed=seed), len(x))
    points = []

    class Evaluate(models.Callback):
        """Stops the clock, evaluates the test set, starts the clock again."""

        def __init__(self, watch):
            super().__init__()
            self.watch, self.step = watch, 0

        def on_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step in evals:
                wall, cpu = self.watch.pause()
                accuracy = float(self.model.evaluate(xt, yt, batch_size=1000)[1])
                points.append(point(self.step, steps_per_epoch, wall, cpu, accuracy))
                self.watch.resume()

    watch = Stopwatch()
    model.fit(x, y, batch_size=recipe.batch_size, epochs=recipe.epochs, verbose=0,
              callbacks=[Evaluate(watch)])
    return points


# ----------------------------------------------------------------------------- PyTorch
def run_torch(recipe, data, seed, per_epoch, threads):
    """The same recipe in PyTorch (the preset's model must be lenet5_bn); returns its points."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF

    if recipe.model_name != "lenet5_bn":
        raise ValueError(f"no PyTorch twin of {recipe.model_name}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    (x, y), (xt, yt) = data

    def conv_bn_relu(c_in, c_out):
        conv = nn.Conv2d(c_in, c_out, 5, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        return [conv, nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01), nn.ReLU()]

    def dense(n_in, n_out, relu=True):
        layer = nn.Linear(n_in, n_out)
        if relu:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        return [layer, nn.ReLU()] if relu else [layer]

    model = nn.Sequential(*conv_bn_relu(1, 6), nn.MaxPool2d(2), *conv_bn_relu(6, 16), nn.MaxPool2d(2),
                          nn.Flatten(), *dense(256, 120), *dense(120, 84), *dense(84, 10, relu=False))
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.max_lr, eps=1e-7)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.max_lr, total_steps=total, pct_start=recipe.pct_start,
        div_factor=recipe.div_factor, final_div_factor=recipe.final_div_factor, cycle_momentum=False)
    evals = set(eval_steps(steps_per_epoch, recipe.epochs, per_epoch))
    tx, ty, txt, tyt = map(torch.from_numpy, (x, y, xt, yt))
    generator = torch.Generator().manual_seed(seed)
    points, step = [], 0
    watch = Stopwatch()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x), generator=generator)
        model.train()
        for lo in range(0, len(x), recipe.batch_size):
            idx = order[lo:lo + recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = TF.cross_entropy(model(tx[idx]), ty[idx])
            loss.backward()
            optimizer.step()
            if step + 1 < total:  # OneCycleLR raises past its last step
                schedule.step()
            step += 1
            if step in evals:
                wall, cpu = watch.pause()
                model.eval()
                with torch.no_grad():
                    accuracy = float((model(txt).argmax(1) == tyt).float().mean())
                model.train()
                points.append(point(step, steps_per_epoch, wall, cpu, accuracy))
                watch.resume()
    return points


# ----------------------------------------------------------------------------- Keras (worker)
def keras_worker(args):
    """Trains the recipe in Keras for each seed in this (sub)process; prints one JSON line."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    recipe = presets.get(args.preset)
    if recipe.model_name != "lenet5_bn":
        raise ValueError(f"no Keras twin of {recipe.model_name}")
    (x, y), (xt, yt) = load_data()
    x, xt = x.transpose(0, 2, 3, 1).copy(), xt.transpose(0, 2, 3, 1).copy()  # channels-last
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        """fastconv.schedules.OneCycle's formula (cosine phases) in Keras ops."""

        def __call__(self, step):
            s = keras.ops.minimum(keras.ops.cast(step, "float32"), total - 1.0)
            initial = recipe.max_lr / recipe.div_factor
            final = initial / recipe.final_div_factor
            rise_end = recipe.pct_start * total - 1.0

            def anneal(start, end, pct):
                return end + (start - end) / 2.0 * (keras.ops.cos(math.pi * pct) + 1.0)

            up = anneal(initial, recipe.max_lr, s / rise_end)
            down = anneal(recipe.max_lr, final, (s - rise_end) / (total - 1.0 - rise_end))
            return keras.ops.where(s <= rise_end, up, down)

    L = keras.layers
    runs = {}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)

        def conv_bn_relu(filters):
            return [L.Conv2D(filters, 5, use_bias=False, kernel_initializer="he_normal"),
                    L.BatchNormalization(), L.ReLU()]

        model = keras.Sequential([keras.Input((28, 28, 1)), *conv_bn_relu(6), L.MaxPooling2D(2),
                                  *conv_bn_relu(16), L.MaxPooling2D(2), L.Flatten(),
                                  L.Dense(120, activation="relu", kernel_initializer="he_normal"),
                                  L.Dense(84, activation="relu", kernel_initializer="he_normal"),
                                  L.Dense(10)])
        model.compile(optimizer=keras.optimizers.Adam(OneCycle()),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        evals = set(eval_steps(steps_per_epoch, recipe.epochs, args.evals_per_epoch))
        points = []

        class Evaluate(keras.callbacks.Callback):
            def __init__(self, watch):
                super().__init__()
                self.watch, self.step = watch, 0

            def on_train_batch_end(self, batch, logs=None):
                self.step += 1
                if self.step in evals:
                    float(logs["loss"])  # waits for the step
                    wall, cpu = self.watch.pause()
                    accuracy = float(self.model.evaluate(xt, yt, batch_size=1000, verbose=0)[1])
                    points.append(point(self.step, steps_per_epoch, wall, cpu, accuracy))
                    self.watch.resume()

        watch = Stopwatch()
        model.fit(x, y, batch_size=recipe.batch_size, epochs=recipe.epochs, shuffle=True, verbose=0,
                  callbacks=[Evaluate(watch)])
        runs[str(seed)] = points
    print(json.dumps({"versions": {"tensorflow": tf.__version__, "keras": keras.__version__}, "runs": runs}))


def run_keras(args):
    """keras_worker in a subprocess; returns (versions, {seed: points}) or (None, why)."""
    for package in ("tensorflow", "keras"):
        if importlib.util.find_spec(package) is None:
            return None, f"{package} is not installed (pip install tensorflow-cpu)"
    cmd = [sys.executable, os.path.abspath(__file__), "--keras-worker", "--preset", args.preset,
           "--seeds", ",".join(map(str, args.seeds)), "--threads", str(args.threads),
           "--evals-per-epoch", str(args.evals_per_epoch)]
    out, why = machine.run_json_worker(cmd, dict(os.environ, OMP_NUM_THREADS=str(args.threads)),
                                       "the Keras worker")
    return (None, why) if out is None else (out["versions"], out["runs"])


# ----------------------------------------------------------------------------- report
def first_reaching(points, target):
    """(seconds, CPU seconds, epoch) of the first point at or above target, or None."""
    for p in points:
        if p["test_accuracy"] >= target:
            return p
    return None


def summarize(name, runs, target, budget_s):
    """Prints one block per provider: each seed's points, when it reached the target, the
    final accuracy; then min / median over the seeds."""
    print(f"\n{name}")
    finals, reach = [], []
    for seed, points in runs.items():
        hit = first_reaching(points, target)
        finals.append(points[-1]["test_accuracy"])
        if hit:
            reach.append(hit["train_s"])
        trail = "  ".join(f"{p['epoch']:g}ep {p['train_s']:.2f}s {100 * p['test_accuracy']:.2f}%" for p in points)
        when = (f"{100 * target:.1f}% after {hit['train_s']:.2f} s (CPU {hit['train_cpu_s']:.2f} s, epoch "
                f"{hit['epoch']:g})" if hit else f"never {100 * target:.1f}%")
        print(f"  seed {seed}: {trail}  | {when}; final {100 * points[-1]['test_accuracy']:.2f}%, "
              f"{points[-1]['train_s']:.2f} s of training, load {points[-1]['load_average']:.1f}")
    if finals:
        print(f"  final test accuracy over {len(finals)} seeds: min {100 * min(finals):.2f}%, median "
              f"{100 * statistics.median(finals):.2f}%, max {100 * max(finals):.2f}%")
        total = [pts[-1]["train_s"] for pts in runs.values()]
        print(f"  training time of the whole recipe: min {min(total):.2f} s, median {statistics.median(total):.2f} s"
              f" (budget {budget_s:g} s)")
        print(f"  reached {100 * target:.1f}% in {len(reach)} of {len(finals)} runs" +
              (f", after min {min(reach):.2f} s, median {statistics.median(reach):.2f} s" if reach else ""))


def plot(results, target, budget_s, path, title):
    """Test accuracy against training seconds, one line per run, a colour per provider."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install matplotlib)")
        return None
    colours = {"fastconv": "tab:blue", "torch": "tab:red", "keras": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for provider, runs in results.items():
        for i, points in enumerate(runs.values()):
            ax.plot([0] + [p["train_s"] for p in points], [None] + [100 * p["test_accuracy"] for p in points],
                    marker="o", ms=3, lw=1.2, alpha=0.85, color=colours.get(provider),
                    label=provider if i == 0 else None)
    ax.axhline(100 * target, color="grey", ls="--", lw=0.8)
    ax.axvline(budget_s, color="grey", ls=":", lw=0.8)
    ax.set_ylim(97.0, 99.6)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds of training (wall clock, evaluations excluded)")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(presets.PRESETS), default="mnist99", help="the recipe")
    p.add_argument("--seeds", type=machine.int_list(0), default=[0, 1, 2], help="seeds, one run each (default 0,1,2)")
    p.add_argument("--threads", type=int, default=2, help="threads of every provider (default 2)")
    p.add_argument("--evals-per-epoch", type=int, default=2, help="test-set evaluations an epoch (default 2)")
    p.add_argument("--target", type=float, default=0.99, help="the accuracy to reach (default 0.99)")
    p.add_argument("--budget", type=float, default=5.0, help="the seconds it should take (default 5)")
    p.add_argument("--torch", action="store_true", help="also train the recipe in PyTorch")
    p.add_argument("--keras", action="store_true", help="also train the recipe in TensorFlow/Keras")
    p.add_argument("--out", default=None, help="JSON file to write, the log going to the same name with "
                                               ".txt (default: benchmarks/results/time_to_accuracy_<preset>_<machine>.json)")
    p.add_argument("--plot", default=None, help="PNG to draw (default: docs/<preset>_time_to_accuracy.png)")
    p.add_argument("--no-plot", action="store_true", help="draw no picture")
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.evals_per_epoch < 1:
        p.error(f"--evals-per-epoch must be >= 1, got {args.evals_per_epoch}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.keras_worker:
        keras_worker(args)
        return
    fastconv.set_num_threads(args.threads)
    recipe = presets.get(args.preset)
    header = machine.describe(fastconv.cpu_isa())
    header.update({"fastconv": fastconv.__version__, "threads": args.threads, "preset": recipe.name,
                   "recipe": recipe.summary, "target": args.target, "budget_s": args.budget,
                   "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}})
    out = args.out or machine.results_path(f"time_to_accuracy_{recipe.name}", header)
    with machine.Tee(os.path.splitext(out)[0] + ".txt"):
        print(f"time to {100 * args.target:.1f}% MNIST test accuracy: preset {recipe.name} ({recipe.summary})")
        print(f"  machine   {header['machine']}, load average {header['load_average_start'][0]:.2f} at the start")
        print(f"  threads   {args.threads} (OMP/GOMP environment: {header['omp_env'] or 'none'}); seconds = "
              f"wall time of fit minus the test-set evaluations ({args.evals_per_epoch} an epoch); "
              f"{header['date_utc']} UTC", flush=True)
        data = load_data()
        results, skipped = {"fastconv": {}}, {}
        for seed in args.seeds:
            results["fastconv"][str(seed)] = run_fastconv(recipe, data, seed, args.evals_per_epoch)
            print(f"fastconv seed {seed} done", file=sys.stderr, flush=True)
        if args.torch:
            if importlib.util.find_spec("torch") is None:
                skipped["torch"] = "PyTorch is not installed (pip install torch)"
            else:
                results["torch"] = {str(s): run_torch(recipe, data, s, args.evals_per_epoch, args.threads)
                                    for s in args.seeds}
                import torch
                header["torch"] = torch.__version__
        if args.keras:
            versions, runs = run_keras(args)
            if versions is None:
                skipped["keras"] = runs
            else:
                results["keras"], header["keras"] = runs, versions
        for provider, runs in results.items():
            summarize(provider, runs, args.target, args.budget)
        for provider, why in skipped.items():
            print(f"\n{provider}: skipped: {why}")
        header["load_average_end"] = list(os.getloadavg())
        print(f"\nload average at the end {header['load_average_end'][0]:.2f}; JSON: {machine.shown_path(out)}")
        picture = None
        if not args.no_plot:
            picture = plot(results, args.target, args.budget,
                           args.plot or os.path.join(DOCS, f"{recipe.name}_time_to_accuracy.png"),
                           f"{recipe.name}: {recipe.summary}\n{header['machine']}, threads: {args.threads}, "
                           f"load average {header['load_average_start'][0]:.1f}, {header['date_utc'][:10]}")
            if picture:
                print(f"picture: {machine.shown_path(picture)}")
    with open(out, "w") as f:
        json.dump({"header": header, "results": results, "skipped": skipped,
                   "picture": machine.shown_path(picture) if picture else None}, f, indent=1)



if __name__ == "__main__":
    main()
