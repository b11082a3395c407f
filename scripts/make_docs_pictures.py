"""Regenerate the pictures in docs/ that the README shows (see docs/PLOTS.md).

    python scripts/make_docs_pictures.py                       # 2 epochs of LeNet-5 on MNIST
    python scripts/make_docs_pictures.py --epochs 1 --out pics

Trains the classic LeNet-5 (fastconv.models.lenet5: tanh, average pooling, C3 table) with Adam
(1e-3, batch 64, seed 0) on the 60,000 MNIST training digits, validating on the 10,000 test
digits after each epoch, then writes:

    lenet5_history.png        loss and accuracy per epoch, training and validation
    lenet5_c1_filters.png     C1's six learned 5x5 kernels
    lenet5_c1_feature_maps.png  the first test digit (a 7) and C1's six maps of it
    lenet5_predictions.png    the first 12 test digits and the first 4 the model gets wrong
    edge_filters.png          two hand-made 3x3 kernels: a vertical and a horizontal edge detector
    edge_feature_maps.png     those two kernels in a Conv2D (set_weights) applied to the same 7

and prints the test accuracy and each file's pixel size and bytes. Needs matplotlib
(pip install fastconv[plot]) and the MNIST IDX files (--data-dir, else fastconv's usual search:
FASTCONV_DATA, the cache, then the copy shipped with the package).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import fastconv
from fastconv import datasets, models, plot
from fastconv.layers import Conv2D

ROOT = Path(__file__).resolve().parents[1]
VERTICAL_EDGE = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32)
HORIZONTAL_EDGE = VERTICAL_EDGE.T.copy()


def edge_detector(input_shape=(1, 28, 28)):
    """A Conv2D of two hand-set 3x3 kernels (vertical edges, horizontal edges), "same" padding,
    zero bias: map 0 is x[j-1] - x[j+1] summed over three rows, map 1 the same down columns."""
    conv = Conv2D(2, 3, padding="same", name="edges")
    conv.build(input_shape)
    kernel = np.stack([VERTICAL_EDGE, HORIZONTAL_EDGE])[:, None]      # (2, 1, 3, 3) OIHW
    conv.set_weights([kernel, np.zeros(2, dtype=np.float32)])
    return conv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where to write the PNGs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N digits only")
    args = parser.parse_args(argv)

    data_dir = args.data_dir
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(data_dir, download=False)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = models.lenet5(classic=True, seed=args.seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64,
                        validation_data=(x_test, y_test), verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    print(f"LeNet-5, {args.epochs} epoch(s) on {len(x_train)} digits in "
          f"{time.perf_counter() - start:.0f}s ({fastconv.get_num_threads()} threads): "
          f"test accuracy {accuracy:.4f}, loss {loss:.4f}")

    digit = x_test[0]                                   # (1, 28, 28): a 7
    c1 = next(layer for layer in model.layers if layer.name == "C1")
    predicted = model.predict(x_test, batch_size=500).argmax(axis=1)
    wrong = np.nonzero(predicted != y_test)[0][:4]
    chosen = np.concatenate([np.arange(12), wrong])
    edges = edge_detector()

    pictures = {
        "lenet5_history.png": lambda path: plot.plot_history(
            history, save=path,
            title=f"LeNet-5 on MNIST: {args.epochs} epoch(s), Adam 1e-3, batch 64"),
        "lenet5_c1_filters.png": lambda path: plot.show_filters(
            c1, save=path, title="LeNet-5 C1: the six learned kernels"),
        "lenet5_c1_feature_maps.png": lambda path: plot.show_feature_maps(
            model, digit, layer="C1", save=path,
            title="LeNet-5 C1 (tanh) on a test digit: six 28 x 28 maps"),
        "lenet5_predictions.png": lambda path: plot.show_predictions(
            predicted[chosen], x_test[chosen], y_test[chosen], save=path,
            title=f"predicted / true: the first 12 test digits and the first {len(wrong)} wrong ones"),
        "edge_filters.png": lambda path: plot.show_filters(
            edges, save=path, title="Hand-made kernels: vertical and horizontal edges"),
        "edge_feature_maps.png": lambda path: plot.show_feature_maps(
            edges, digit, save=path, map_titles=["vertical edges", "horizontal edges"],
            title="Hand-made edge detectors on a digit"),
    }
    for name, draw in pictures.items():
        path = out / name
        width, height = plot.figure_size_px(draw(path))
        print(f"{path}: {width} x {height} px, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
