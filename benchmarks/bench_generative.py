"""The denoising autoencoder trained in fastconv and in PyTorch, side by side in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_generative.py \
        [--threads 1,2] [--epochs 10] [--batch-size 128] [--limit N] [--torch-padding exact]
        [--out benchmarks/results/generative_train.json]

The model (fastconv.models.denoising_autoencoder; DESIGN's autoencoder, 28 -> 14 -> 7 -> 14 ->
28): Conv2D 16 and 8, 3x3 stride 2 "same", ReLU; Conv2DTranspose 8 and 16, 3x3 stride 2
"same", ReLU; Conv2D 1 3x3 "same", sigmoid. PyTorch's copy is the same function of the same
weights: TensorFlow's "same" puts the odd padding pixel at the bottom/right, so its strided
convolutions pad (0, 1) explicitly (F.pad) and its transposed convolutions run unpadded and
drop the last row and column (checked against fastconv's output before training). With
--torch-padding native, PyTorch's own idiom instead (padding=1, output_padding=1): the same
sizes and parameter count, the image shifted by a pixel, no pad or crop copies.

Everything but the library is shared: the initial weights (fastconv's draw: He-uniform
kernels, zero biases but the output's -2; copied into PyTorch), the data (MNIST scaled to [0, 1]; noisy copies x + 0.2 N(0, 1) clipped
to [0, 1], drawn once, the same arrays for both), the shuffling (one permutation per epoch,
both train on the same batches in the same order), batch 128, Adam 1e-3 (epsilon 1e-7, Keras's
and fastconv's default, given to PyTorch too), the mean squared error.

Interleaving: in each epoch both libraries train one epoch, fastconv first in even epochs and
PyTorch first in odd ones, so load from other processes on a shared machine falls on both
alike. fastconv's time is its fit epoch (History.epoch_times: the loop of steps); PyTorch's
the same loop written out (batch slice, forward, loss, backward, Adam step, the loss read
back each step as fit does). Reported per thread count: each epoch's seconds, the medians and
their ratio (PyTorch / fastconv: above 1 means fastconv is faster), and the test MSE of both
against the clean test images after the last epoch.
"""
import argparse
import json
import os
import statistics
import sys
import time

# See bench_train.py: OpenBLAS's idle threads otherwise spin for 0.1 s after each call.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

import fastconv
from fastconv import models, optimizers
from fastconv.models.gan import add_noise

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF
except ImportError:
    torch = None

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Threads, machine_header, print_header, warn_slow_env  # noqa: E402
import machine  # noqa: E402  (the results file named for the machine; int_list)

ADAM_EPSILON = 1e-7
LEARNING_RATE = 1e-3
NOISE = 0.2


# ----------------------------------------------------------------------------- PyTorch's model
if torch is not None:
    class TorchDenoiser(nn.Module):
        """The autoencoder in PyTorch. padding "exact": TensorFlow's "same" (the odd pixel
        bottom/right), the function fastconv computes; "native": padding=1 (and
        output_padding=1), PyTorch's idiom."""

        def __init__(self, padding="exact"):
            super().__init__()
            exact = padding == "exact"
            self.exact = exact
            p = 0 if exact else 1
            self.encode1 = nn.Conv2d(1, 16, 3, stride=2, padding=p)
            self.encode2 = nn.Conv2d(16, 8, 3, stride=2, padding=p)
            self.decode1 = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=p, output_padding=p)
            self.decode2 = nn.ConvTranspose2d(8, 16, 3, stride=2, padding=p, output_padding=p)
            self.restore = nn.Conv2d(16, 1, 3, padding=1)

        def forward(self, x):                                  # x is (N, 1, 28, 28)
            if self.exact:
                x = TF.relu(self.encode1(TF.pad(x, (0, 1, 0, 1))))   # (N, 16, 14, 14)
                x = TF.relu(self.encode2(TF.pad(x, (0, 1, 0, 1))))   # (N, 8, 7, 7)
                x = TF.relu(self.decode1(x)[:, :, :14, :14])         # (N, 8, 14, 14) of 15x15
                x = TF.relu(self.decode2(x)[:, :, :28, :28])         # (N, 16, 28, 28) of 29x29
            else:
                x = TF.relu(self.encode1(x))
                x = TF.relu(self.encode2(x))
                x = TF.relu(self.decode1(x))
                x = TF.relu(self.decode2(x))
            return torch.sigmoid(self.restore(x))              # (N, 1, 28, 28)

    def copy_weights(fc_model, net):
        """fastconv's weights into the PyTorch copy (both use OIHW kernels, and (in, out, kh, kw)
        for the transposed ones)."""
        with torch.no_grad():
            for name in ("encode1", "encode2", "decode1", "decode2", "restore"):
                kernel, bias = fc_model.get_layer(name).get_weights()
                layer = getattr(net, name)
                layer.weight.copy_(torch.from_numpy(kernel))
                layer.bias.copy_(torch.from_numpy(bias))


# ----------------------------------------------------------------------------- one epoch each
def fastconv_epoch(model, x_noisy, x_clean):
    """One fit epoch on data already in this epoch's order; its seconds and mean loss."""
    history = model.fit(x_noisy, x_clean, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    return history.epoch_times[0], history.history["loss"][0]


def torch_epoch(net, opt, x_noisy, x_clean):
    """The same epoch in PyTorch: its seconds and mean loss."""
    tx, ty = torch.from_numpy(x_noisy), torch.from_numpy(x_clean)
    n = len(tx)
    net.train()
    start = time.perf_counter()
    total = 0.0
    for lo in range(0, n, BATCH):
        xb, yb = tx[lo:lo + BATCH], ty[lo:lo + BATCH]
        opt.zero_grad(set_to_none=True)
        loss = TF.mse_loss(net(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
    return time.perf_counter() - start, total / n


def torch_mse(net, x_noisy, x_clean):
    net.eval()
    with torch.no_grad():
        total = 0.0
        for lo in range(0, len(x_noisy), 1000):
            out = net(torch.from_numpy(x_noisy[lo:lo + 1000]))
            total += float(((out - torch.from_numpy(x_clean[lo:lo + 1000])) ** 2).sum())
    return total / x_clean.size


def run(threads, data, epochs, seed, padding):
    (x_train, x_train_noisy), (x_test, x_test_noisy) = data
    with Threads(threads):
        model = models.denoising_autoencoder(seed=seed)
        model.compile(optimizers.Adam(LEARNING_RATE, epsilon=ADAM_EPSILON), "mse")
        net = None
        if torch is not None:
            torch.manual_seed(seed)
            net = TorchDenoiser(padding)
            copy_weights(model, net)
            if padding == "exact":   # the same function: check it before timing anything
                probe = x_test_noisy[:16]
                with torch.no_grad():
                    theirs = net(torch.from_numpy(probe)).numpy()
                gap = float(np.abs(theirs - model.predict(probe)).max())
                if gap > 1e-4:
                    raise SystemExit(f"PyTorch's copy differs from fastconv's model by {gap:g}")
            opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, eps=ADAM_EPSILON)
        order_rng = np.random.default_rng(seed + 1)
        rows = []
        for epoch in range(epochs):
            perm = order_rng.permutation(len(x_train))
            xn, xc = x_train_noisy[perm], x_train[perm]         # this epoch's order, for both
            row = {"epoch": epoch + 1}
            order = ("fastconv", "torch") if epoch % 2 == 0 else ("torch", "fastconv")
            for lib in order:
                if lib == "fastconv":
                    row["fastconv_s"], row["fastconv_loss"] = fastconv_epoch(model, xn, xc)
                elif net is not None:
                    row["torch_s"], row["torch_loss"] = torch_epoch(net, opt, xn, xc)
            rows.append(row)
            print(f"  {threads} thread(s), epoch {epoch + 1}/{epochs}: fastconv "
                  f"{row['fastconv_s']:.2f} s (loss {row['fastconv_loss']:.5f})"
                  + (f", PyTorch {row['torch_s']:.2f} s (loss {row['torch_loss']:.5f})"
                     if net is not None else "") + f", load {os.getloadavg()[0]:.1f}", flush=True)
        result = {"threads": threads, "epochs": rows,
                  "fastconv_test_mse": float(np.ravel(model.evaluate(x_test_noisy, x_test, batch_size=1000))[0]),
                  "load_average_end": list(os.getloadavg())}
        if net is not None:
            result["torch_test_mse"] = torch_mse(net, x_test_noisy, x_test)
    fc = [r["fastconv_s"] for r in rows]
    result["fastconv_median_s"] = statistics.median(fc)
    if net is not None:
        tt = [r["torch_s"] for r in rows]
        result["torch_median_s"] = statistics.median(tt)
        result["speedup_median"] = result["torch_median_s"] / result["fastconv_median_s"]
        result["epochs_fastconv_faster"] = sum(f < t for f, t in zip(fc, tt))
        result["mse_ratio"] = result["fastconv_test_mse"] / result["torch_test_mse"]
    return result


def print_table(results, padding, n_train):
    print()
    print(f"Denoising autoencoder, MNIST ({n_train:,} training images), batch {BATCH}, Adam {LEARNING_RATE:g}, MSE, "
          f"noise {NOISE}; PyTorch padding: {padding}")
    print("seconds per epoch (each library one epoch in turn; PyTorch / fastconv above 1x: "
          "fastconv is faster)")
    for res in results:
        print(f"\n{res['threads']} thread(s)")
        print(f"  {'epoch':>5}  {'fastconv s':>10}  {'PyTorch s':>9}  {'ratio':>6}")
        for r in res["epochs"]:
            t = r.get("torch_s")
            print(f"  {r['epoch']:>5}  {r['fastconv_s']:>10.2f}  "
                  + (f"{t:>9.2f}  {t / r['fastconv_s']:>5.2f}x" if t is not None else f"{'-':>9}  {'-':>6}"))
        line = f"  {'median':>5}  {res['fastconv_median_s']:>10.2f}"
        if "torch_median_s" in res:
            line += (f"  {res['torch_median_s']:>9.2f}  {res['speedup_median']:>5.2f}x   "
                     f"(fastconv faster in {res['epochs_fastconv_faster']} of {len(res['epochs'])} epochs)")
        print(line)
        mse = f"  test MSE against the clean images: fastconv {res['fastconv_test_mse']:.5f}"
        if "torch_test_mse" in res:
            mse += (f", PyTorch {res['torch_test_mse']:.5f} (fastconv / PyTorch "
                    f"{res['mse_ratio']:.3f})")
        print(mse + f"; load average at the end {res['load_average_end'][0]:.1f}")


def main(argv=None):
    global BATCH
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=machine.int_list(), default=[1, 2], help="thread counts, e.g. 1,2")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-padding", choices=("exact", "native"), default="exact")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs, --batch-size and --limit must be >= 1")
    BATCH = args.batch_size
    warn_slow_env()
    header = machine_header()
    print_header(header)
    (x_train, _), (x_test, _) = fastconv.datasets.load_mnist()
    if args.limit:
        x_train = x_train[:args.limit]
    data = ((x_train, add_noise(x_train, NOISE, seed=args.seed)),
            (x_test, add_noise(x_test, NOISE, seed=args.seed + 100)))
    print(f"  noisy test images against the clean ones: MSE {float(np.mean((data[1][1] - x_test) ** 2)):.5f}")
    results = [run(t, data, args.epochs, args.seed, args.torch_padding) for t in args.threads]
    print_table(results, args.torch_padding, len(x_train))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"header": header, "batch_size": BATCH, "epochs": args.epochs,
                       "train_images": len(x_train), "torch_padding": args.torch_padding,
                       "learning_rate": LEARNING_RATE, "noise": NOISE, "results": results}, f, indent=1)
        print(f"\nwrote {args.out}")


BATCH = 128

if __name__ == "__main__":
    main()
