"""Two builds of fastconv in ONE process: the installed one and an older one, their training
steps alternated round by round.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_builds_inprocess.py \
        OLD_FASTCONV_DIR [--threads 1,2] [--rounds 21]

OLD_FASTCONV_DIR is the older build's installed package folder (.../site-packages/fastconv).
It is imported as ``fastconv_old`` beside the installed ``fastconv`` (through a symlink in a
temporary folder; a build whose package imports itself by its absolute name will not load
this way). Both run in the same process, on the same data, with the same thread count, one
round of each in turn (the order flipped every round), so the load from other processes on a
shared machine falls on both alike: on a shared 2-vCPU machine whole-epoch runs in separate
processes (benchmarks/compare_builds.py) scattered by +-20% from round to round, which this
does not. Reported: median and minimum milliseconds per step of each, and NEW/OLD as the
median of the per-round ratios and as the ratio of the minimums.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (the CPU's name; int_list)

CASES = [  # name, model builder, batch, steps a round
    ("LeNet-5 classic", lambda L: L.models.lenet5(classic=True, seed=0), 64, 60),
    ("small VGG", lambda L: L.models.vgg_small(seed=0), 128, 4),
]


def load_old(folder):
    tmp = tempfile.mkdtemp(prefix="fastconv_old_")
    os.symlink(os.path.abspath(folder), os.path.join(tmp, "fastconv_old"))
    sys.path.insert(0, tmp)
    import fastconv_old
    return fastconv_old


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the older build's installed fastconv package folder")
    parser.add_argument("--threads", type=machine.int_list(), default=[1, 2])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    import fastconv as new
    old = load_old(args.old)
    libs = {"OLD": old, "NEW": new}
    (x, y), _ = new.datasets.load_mnist()
    print(f"{machine.cpu_model()}, {os.cpu_count()} CPUs; NEW: the installed fastconv "
          f"{new.__version__} ({new.cpu_isa()}), OLD: fastconv_old {old.__version__} "
          f"({old.cpu_isa()}); {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    for threads in args.threads:
        for lib in libs.values():
            lib.set_num_threads(threads)
        for name, build, batch, steps in CASES:
            models = {}
            for key, lib in libs.items():
                model = build(lib)
                model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
                model.fit(x[:batch * 4], y[:batch * 4], epochs=1, batch_size=batch, verbose=0)
                models[key] = model
            ms = {key: [] for key in libs}
            for r in range(args.rounds):
                for key in (list(libs) if r % 2 == 0 else list(libs)[::-1]):
                    t0 = time.perf_counter()
                    models[key].fit(x[:batch * steps], y[:batch * steps], epochs=1, batch_size=batch,
                                    verbose=0)
                    ms[key].append((time.perf_counter() - t0) / steps * 1e3)
            ratios = [n / o for o, n in zip(ms["OLD"], ms["NEW"])]
            print(f"{name}, batch {batch}, {threads} thread(s), {steps} steps a round: "
                  f"OLD median {statistics.median(ms['OLD']):.2f} ms/step (min {min(ms['OLD']):.2f}), "
                  f"NEW median {statistics.median(ms['NEW']):.2f} (min {min(ms['NEW']):.2f}); NEW/OLD "
                  f"{statistics.median(ratios):.3f} (median of rounds), "
                  f"{min(ms['NEW']) / min(ms['OLD']):.3f} (minimums)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
