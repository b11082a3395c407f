"""Run the two generative trainings of the README and keep their pictures and logs.

    python scripts/make_generative_pictures.py                 # both, 10 epochs each, 2 threads
    python scripts/make_generative_pictures.py --only dcgan --threads 2

Runs, through the command line's own code (fastconv.train.main), exactly:

    fastconv train denoise --epochs 10 --threads T --samples DIR/denoise
    fastconv train dcgan   --epochs 10 --threads T --samples DIR/dcgan

then copies the pictures into docs/:

    denoising_autoencoder_digits.png   noisy / denoised / clean test digits (0 to 9)
    dcgan_digits.png                   100 generated digits after the last epoch
    dcgan_digits_epoch_01.png          the same latent points after the first epoch

and writes each run's output (per-epoch times and losses, the test MSE; the DCGAN's classifier
score per epoch) to benchmarks/results/train_denoise_mnist_cpu.log and
train_dcgan_mnist_cpu.log, headed by the command, the date, the CPU and the load average, since
the development machine is shared. Needs matplotlib (pip install fastconv[plot]); the DCGAN run
trains the score classifier first if it is not in the cache yet (2 to 3 minutes).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import fastconv
from fastconv import train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import machine  # noqa: E402  (the CPU's name, as the benchmarks give it)


class _Tee(io.TextIOBase):
    """Write to several streams (the terminal and the log)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)



def run(model, epochs, threads, folder, log_path):
    argv = ["train", model, "--epochs", str(epochs), "--threads", str(threads),
            "--samples", str(folder), "--verbose", "2"]
    with open(log_path, "w") as log:
        tee = _Tee(sys.stdout, log)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        print(f"$ fastconv {' '.join(argv)}", file=tee)
        print(f"# {now}; {machine.cpu_model()}, {os.cpu_count()} CPUs, fastconv {fastconv.__version__} "
              f"({fastconv.cpu_isa()}); load average at the start {os.getloadavg()[0]:.1f} (the "
              f"machine is shared: times are as measured, with other jobs running)", file=tee)
        with contextlib.redirect_stdout(tee):
            status = train.main(argv)
        print(f"# load average at the end {os.getloadavg()[0]:.1f}", file=tee)
    if status:
        raise SystemExit(f"fastconv train {model} failed (status {status})")


def _strip_folder(log_path, folder):
    """Name the temporary pictures folder DIR and the home folder ~ in a log (a committed log
    names no path of this machine)."""
    if log_path.exists():
        text = log_path.read_text().replace(str(folder), "DIR")
        home = str(Path.home())
        log_path.write_text(text.replace(home, "~") if len(home) > 1 else text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("denoise", "dcgan"), default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results, docs = ROOT / "benchmarks" / "results", ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "denoise"):
            run("denoise", args.epochs, args.threads, tmp / "denoise",
                results / "train_denoise_mnist_cpu.log")
            shutil.copyfile(tmp / "denoise" / "denoised.png", docs / "denoising_autoencoder_digits.png")
        if args.only in (None, "dcgan"):
            run("dcgan", args.epochs, args.threads, tmp / "dcgan", results / "train_dcgan_mnist_cpu.log")
            pictures = sorted((tmp / "dcgan").glob("samples_epoch_*.png"))
            shutil.copyfile(pictures[-1], docs / "dcgan_digits.png")
            shutil.copyfile(pictures[0], docs / "dcgan_digits_epoch_01.png")
    for name in ("train_denoise_mnist_cpu.log", "train_dcgan_mnist_cpu.log"):
        _strip_folder(results / name, tmp)
    print("wrote the pictures into docs/ and the logs into benchmarks/results/")


if __name__ == "__main__":
    main()
