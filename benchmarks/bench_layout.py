"""What channels-last data costs: a Keras model (fastconv.keras, NHWC) against the same model in
fastconv's own layers (NCHW), side by side in one process.

    python benchmarks/bench_layout.py [--threads 2] [--rounds 5] [--steps 40]

The kernels run NCHW either way. A fastconv.keras model converts its NHWC inputs (and NHWC
targets) once, when fit starts, and its Flatten reads the last image in Keras's H, W, C order
(one small transpose a step, forward and backward). The table gives, per training step of the
Keras MNIST convnet (batch 128): the step time of each, the difference as a share of the NCHW
step, and the one-time conversion of the training set as a share of an epoch. Issue 16's bound
is 3% of a step.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastconv
from fastconv import keras
from fastconv import layers as L
from fastconv.keras import layers as KL

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (the CPU's name)


def keras_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        KL.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), KL.MaxPooling2D((2, 2)),
        KL.Conv2D(64, (3, 3), activation="relu"), KL.MaxPooling2D((2, 2)), KL.Flatten(),
        KL.Dropout(0.5), KL.Dense(10, activation="softmax")])


def native_model():
    return fastconv.Sequential([
        L.Conv2D(32, 3, activation="relu"), L.MaxPool2D(2), L.Conv2D(64, 3, activation="relu"),
        L.MaxPool2D(2), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")],
        input_shape=(1, 28, 28), seed=0)


class Steps(fastconv.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())


def step_ms(model, x, y, batch):
    steps = Steps()
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0, callbacks=[steps], shuffle=True)
    return float(np.median(np.diff(steps.stamps)[2:]) * 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    fastconv.set_num_threads(args.threads)
    (x_train, y_train), _ = keras.datasets.mnist.load_data()
    n = 128 * args.steps
    nhwc = x_train[:n, :, :, None].astype("float32") / 255
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    labels = y_train[:n].astype(np.int64)
    models = {"keras NHWC": keras_model(), "fastconv NCHW": native_model()}
    for m in models.values():
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    data = {"keras NHWC": nhwc, "fastconv NCHW": nchw}
    times = {k: [] for k in models}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            times[name].append(step_ms(models[name], data[name], labels, 128))
    full = x_train[:, :, :, None].astype("float32") / 255
    t0 = time.perf_counter()
    for _ in range(5):
        np.ascontiguousarray(full.transpose(0, 3, 1, 2))
    convert_ms = (time.perf_counter() - t0) / 5 * 1e3
    k, f = statistics.median(times["keras NHWC"]), statistics.median(times["fastconv NCHW"])
    cpu = machine.cpu_model()
    print(f"{cpu}, {args.threads} threads, fastconv {fastconv.__version__} ({fastconv.cpu_isa()}), "
          f"{args.rounds} rounds of {args.steps} steps, batch 128; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"step, keras NHWC       {k:8.2f} ms")
    print(f"step, fastconv NCHW    {f:8.2f} ms")
    print(f"difference             {100 * (k - f) / f:+8.2f} % of a step")
    epoch_ms = f * (60000 / 128)
    print(f"NHWC -> NCHW of the 60,000 training images once: {convert_ms:.1f} ms = "
          f"{100 * convert_ms / epoch_ms:.2f} % of an epoch")


if __name__ == "__main__":
    main()
