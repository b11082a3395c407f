"""One rank of the distributed tests (tests/test_distributed.py runs it under mpiexec).

    python mpi_worker.py OUT.json [--distributed] [--seed S] [--fault die|hang|raise]

Trains a small convolutional model (no dropout, so that the runs are comparable) on random data
made from a fixed seed, with a global batch of 25 over 201 samples: 25 is odd, so two ranks get
13 and 12 samples, and the last batch holds one sample, so one rank has none. Writes the
history and the final weights to OUT.json (OUT.rank<r>.json when distributed). --fault makes
rank 1 die (SIGKILL), hang, or raise at its third step.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np

import fastconv
from fastconv import layers as L

SAMPLES, BATCH, EPOCHS = 201, 25, 3


def data():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((SAMPLES, 2, 9, 9)).astype(np.float32)
    y = rng.integers(0, 5, SAMPLES)
    x_val = rng.standard_normal((37, 2, 9, 9)).astype(np.float32)
    y_val = rng.integers(0, 5, 37)
    return x, y, x_val, y_val


def model(seed):
    net = fastconv.Sequential([
        L.Conv2D(4, 3, strides=1, padding="same", activation="relu"),
        L.MaxPool2D(2),
        L.Conv2D(6, 3, strides=2, padding=1, activation="tanh"),
        L.Flatten(),
        L.Dense(5),
    ], input_shape=(2, 9, 9), seed=seed)
    net.compile(optimizer=fastconv.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    return net


class Fault(fastconv.models.Callback):
    """On rank 1 at its third step: die, hang or raise."""

    def __init__(self, kind, rank):
        super().__init__()
        self.kind, self.rank = kind, rank

    def on_batch_end(self, batch, logs=None):
        if self.rank != 1 or batch != 2:
            return
        if self.kind == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.kind == "hang":
            time.sleep(600)
        elif self.kind == "raise":
            raise RuntimeError("a deliberate failure on rank 1")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fault", choices=("die", "hang", "raise"), default=None)
    args = parser.parse_args()
    rank = 0
    if args.distributed:
        from fastconv import distributed as dist
        rank = dist.rank()
    x, y, x_val, y_val = data()
    net = model(args.seed)
    callbacks = [Fault(args.fault, rank)] if args.fault else []
    try:
        history = net.fit(x, y, epochs=EPOCHS, batch_size=BATCH, validation_data=(x_val, y_val),
                          verbose=0, distributed=args.distributed, callbacks=callbacks)
    except Exception as err:
        if args.distributed and isinstance(err, dist.DistributedError):
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise
    out = args.out if not args.distributed else args.out.replace(".json", f".rank{rank}.json")
    with open(out, "w") as f:
        json.dump({"history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
                   "weights": [float(v) for w in net.get_weights() for v in w.ravel()], "threads": fastconv.get_num_threads()}, f)


if __name__ == "__main__":
    main()
