"""Tests for fastconv.plot: every picture is drawn, saved, read back and measured.

Each saved PNG is checked for the PNG signature, read back with matplotlib.image.imread, and
compared with the pixel size the figure promises (and the size the docstrings state), checked
to be non-blank, and its figure counted for the right number of tiles (Axes). The model-level
pictures come from a small network trained for a few steps on 512 real MNIST digits (skipped
if the shared copy is absent). A hand-set vertical-edge filter is checked to respond on a
digit's strokes and to give exactly 0 on the blank background. All headless (no pyplot).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="fastconv.plot needs matplotlib (pip install fastconv[plot])")

import matplotlib.image as mpimg  # noqa: E402

from fastconv import plot  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-made 3x3 edge detectors (cross-correlation, as conv2d computes):
# the vertical one responds to left-right changes, the horizontal one to top-bottom changes.
VERTICAL_EDGE = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32)
HORIZONTAL_EDGE = VERTICAL_EDGE.T.copy()


def _shared_mnist():
    """shared/data/mnist beside the project (one level further up for a worktree)."""
    repo = Path(__file__).resolve().parents[1]
    for base in (repo.parent, repo.parent.parent):
        candidate = base / "shared" / "data" / "mnist"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "mnist"


MNIST_DIR = _shared_mnist()


def check_png(path, fig, size=None):
    """The file is a real, non-blank PNG of the figure's promised pixel size; returns its pixels."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    width, height = plot.figure_size_px(fig)
    assert pixels.shape[:2] == (height, width)
    if size is not None:
        assert (width, height) == size
    assert float(pixels[..., :3].std()) > 0.01
    assert len(data) < 200_000
    return pixels


# ---------------------------------------------------------------------------------------------
# Without matplotlib

def test_import_without_matplotlib_names_the_extra(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.delitem(sys.modules, "fastconv.plot", raising=False)
    with pytest.raises(ImportError, match=r"fastconv.plot needs matplotlib: pip install fastconv\[plot\]"):
        importlib.import_module("fastconv.plot")


# ---------------------------------------------------------------------------------------------
# Array level

HISTORY = {"loss": [2.1, 0.9, 0.5], "accuracy": [0.35, 0.74, 0.86],
           "val_loss": [1.2, 0.7, 0.55], "val_accuracy": [0.62, 0.80, 0.84]}


class FakeHistory:
    """What Sequential.fit returns, as far as plot_history cares."""

    def __init__(self, history):
        self.history = history


@pytest.mark.parametrize("history", [HISTORY, FakeHistory(HISTORY)], ids=["dict", "History"])
def test_plot_history_draws_loss_and_accuracy(tmp_path, history):
    fig = plot.plot_history(history, save=tmp_path / "h.png")
    check_png(tmp_path / "h.png", fig, size=(800, 320))
    loss_ax, acc_ax = fig.axes
    assert [ln.get_label() for ln in loss_ax.get_lines()] == ["training", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), HISTORY["val_loss"])
    np.testing.assert_allclose(acc_ax.get_lines()[0].get_ydata(), HISTORY["accuracy"])


def test_plot_history_loss_only_one_epoch(tmp_path):
    fig = plot.plot_history({"loss": [0.7]}, save=tmp_path / "h.png")
    check_png(tmp_path / "h.png", fig, size=(400, 320))
    assert len(fig.axes) == 1
    assert len(fig.axes[0].get_lines()) == 1


def test_plot_history_rejects_no_loss():
    with pytest.raises(ValueError, match="no 'loss'"):
        plot.plot_history({"accuracy": [0.5]})
    with pytest.raises(TypeError, match="History"):
        plot.plot_history([0.5, 0.4])


def test_show_filters_grid_rows_outputs_cols_inputs(tmp_path):
    w = np.random.default_rng(0).standard_normal((5, 3, 5, 5)).astype(np.float32)
    fig = plot.show_filters(w, save=tmp_path / "f.png")
    # 5 rows x 3 columns of 48 px tiles, 6 px apart: 220 px wide, widened to 320; 320 high.
    check_png(tmp_path / "f.png", fig, size=(320, 320))
    assert len(fig.axes) == 5 * 3
    # Axes are row-major: output map k, input channel c -> tile k * 3 + c shows w[k, c].
    for k, c in ((0, 0), (3, 2), (4, 1)):
        np.testing.assert_array_equal(fig.axes[k * 3 + c].images[0].get_array(), w[k, c])
    # Tiles of one row share a top edge, tiles of one column a left edge.
    boxes = [ax.get_position() for ax in fig.axes]
    assert boxes[0].y1 == pytest.approx(boxes[2].y1) and boxes[0].x0 == pytest.approx(boxes[3].x0)
    assert boxes[3].y1 < boxes[0].y1 and boxes[1].x0 > boxes[0].x0


def test_show_filters_one_channel_and_shared_scale(tmp_path):
    w = np.zeros((6, 1, 5, 5), dtype=np.float32)
    w[2, 0, 1, 1] = -3.0
    w[4, 0, 2, 2] = 1.5
    fig = plot.show_filters(w, save=tmp_path / "f.png")
    pixels = check_png(tmp_path / "f.png", fig, size=(338, 104))
    assert len(fig.axes) == 6
    for ax in fig.axes:  # one symmetric scale for all: 0 is mid-grey everywhere
        assert ax.images[0].get_clim() == (-3.0, 3.0)
    assert pixels.shape == (104, 338, 4)
    fig = plot.show_filters(w, scale="tile")
    assert fig.axes[4].images[0].get_clim() == (-1.5, 1.5)


def test_show_filters_limits_and_shapes():
    w = np.ones((20, 30, 3, 3), dtype=np.float32)
    fig = plot.show_filters(w, max_filters=4, max_channels=3)
    assert len(fig.axes) == 12
    assert len(plot.show_filters(np.ones((3, 3))).axes) == 1        # (R, S): one kernel
    assert len(plot.show_filters(np.ones((5, 3, 3))).axes) == 5     # (K, R, S)
    assert len(plot.show_filters([np.ones((2, 2, 3, 3)), np.zeros(2)]).axes) == 4  # get_weights()
    with pytest.raises(ValueError, match="shape"):
        plot.show_filters(np.ones((1, 1, 1, 3, 3)))


def test_show_maps_image_then_every_map(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((1, 28, 28)).astype(np.float32)
    maps = rng.standard_normal((6, 24, 24)).astype(np.float32)
    fig = plot.show_maps(image, maps, save=tmp_path / "m.png")
    check_png(tmp_path / "m.png", fig, size=(740, 152))
    assert len(fig.axes) == 1 + 6
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), image[0])
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), maps[2])
    lo, hi = fig.axes[3].images[0].get_clim()   # signed map: symmetric about 0
    assert lo == -hi == -np.abs(maps[2]).max()
    relu_map = np.abs(maps[:1])                  # non-negative map: its own range
    fig = plot.show_maps(image[0], relu_map)
    assert fig.axes[1].images[0].get_clim() == (relu_map.min(), relu_map.max())
    fig = plot.show_maps(image, rng.standard_normal((16, 10, 10)))  # 17 tiles wrap: 8 a row
    assert len(fig.axes) == 17 and plot.figure_size_px(fig) == (844, 392)


def test_show_predictions_marks_wrong_ones(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((12, 1, 28, 28)).astype(np.float32)
    labels = np.arange(12) % 10
    predicted = labels.copy()
    predicted[[3, 7]] = [5, 1]
    fig = plot.show_predictions(predicted, images, labels, save=tmp_path / "p.png",
                                class_names=[f"c{i}" for i in range(10)])
    check_png(tmp_path / "p.png", fig, size=(652, 224))
    assert len(fig.axes) == 12
    texts = {t.get_text(): t for t in fig.texts}
    assert "c5 / c3" in texts and "c1 / c7" in texts and "c0 / c0" in texts
    assert texts["c5 / c3"].get_color() == plot._WRONG
    assert texts["c0 / c0"].get_color() == "black"
    assert "10 of 12 right" in " ".join(texts)
    red = fig.axes[3].spines["top"].get_edgecolor()
    assert red[:3] == pytest.approx((0xd6 / 255, 0x27 / 255, 0x28 / 255))
    assert fig.axes[0].spines["top"].get_edgecolor()[:3] != red[:3]
    # Scores work as well as class ids.
    scores = np.eye(10)[predicted]
    assert len(plot.show_predictions(scores, images[:, 0], labels).axes) == 12
    with pytest.raises(ValueError, match="labels"):
        plot.show_predictions(predicted, images, labels[:5])


def test_saved_png_size_is_what_figure_size_px_says(tmp_path):
    w = np.random.default_rng(3).standard_normal((3, 2, 7, 7))
    fig = plot.show_filters(w, save=tmp_path / "f.png")
    width, height = plot.figure_size_px(fig)
    # 3 rows x 2 columns of 48 px tiles 6 px apart, 54 px labels left, 46 px above, 10 below.
    assert (width, height) == (max(320, 54 + 2 * 48 + 6 + 10), 46 + 3 * 48 + 2 * 6 + 10)
    check_png(tmp_path / "f.png", fig)
