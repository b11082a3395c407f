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

import fastconv  # noqa: E402

from fastconv import plot  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-made 3x3 edge detectors (cross-correlation, as conv2d computes):
# the vertical one responds to left-right changes, the horizontal one to top-bottom changes.
VERTICAL_EDGE = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32)
HORIZONTAL_EDGE = VERTICAL_EDGE.T.copy()


from conftest import MNIST_DIR  # noqa: E402


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
    fig = plot.show_maps(image, rng.standard_normal((8, 10, 10)))  # 9 tiles wrap: 8 a row
    assert len(fig.axes) == 9 and plot.figure_size_px(fig) == (844, 272)


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
    scores = np.eye(10)[predicted[:4]]
    fig = plot.show_predictions(scores, images[:4, 0], labels[:4])
    assert len(fig.axes) == 4 and "3 of 4 right" in fig.texts[-1].get_text()
    with pytest.raises(ValueError, match="labels"):
        plot.show_predictions(predicted, images, labels[:5])


def test_saved_png_size_is_what_figure_size_px_says(tmp_path):
    w = np.random.default_rng(3).standard_normal((3, 2, 7, 7))
    fig = plot.show_filters(w, save=tmp_path / "f.png")
    width, height = plot.figure_size_px(fig)
    # 3 rows x 2 columns of 48 px tiles 6 px apart, 54 px labels left, 46 px above, 10 below.
    assert (width, height) == (max(320, 54 + 2 * 48 + 6 + 10), 46 + 3 * 48 + 2 * 6 + 10)
    check_png(tmp_path / "f.png", fig)


# ---------------------------------------------------------------------------------------------
# Model level: a small network trained a few steps on real digits

@pytest.fixture(scope="module")
def digits():
    """The first 640 MNIST test digits, (640, 1, 28, 28) float32 in [0, 1], and their labels."""
    from fastconv import datasets

    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"the shipped MNIST copy is not at {MNIST_DIR}")
    x = datasets.load_idx(images)[:640].astype(np.float32)[:, None] / 255.0
    y = datasets.load_idx(labels)[:640].astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def trained(digits):
    """(model, history): conv 4@3x3 relu, max pool 2, conv 6@3x3 relu, flatten, dense 10,
    trained one epoch on 512 digits (8 steps of 64), validated on 128 more."""
    L = pytest.importorskip("fastconv.layers", reason="the layer API (fastconv.layers) is not on this branch")
    from fastconv.models import Sequential

    x, y = digits
    model = Sequential([L.Conv2D(4, 3, activation="relu", name="conv"), L.MaxPool2D(2, name="pool"),
                        L.Conv2D(6, 3, activation="relu", name="conv2"), L.Flatten(name="flat"),
                        L.Dense(10, name="out")], input_shape=(1, 28, 28), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(1)   # tiny kernels: one thread avoids OpenMP waits on a busy machine
    try:
        history = model.fit(x[:512], y[:512], epochs=1, batch_size=64,
                            validation_data=(x[512:], y[512:]), verbose=0)
    finally:
        fastconv.set_num_threads(threads)
    return model, history


def test_model_history(trained, tmp_path):
    model, history = trained
    fig = plot.plot_history(history, save=tmp_path / "h.png")
    check_png(tmp_path / "h.png", fig, size=(800, 320))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_lines()[0].get_ydata()[0] == pytest.approx(history.history["loss"][0])
    assert acc_ax.get_lines()[1].get_ydata()[0] == pytest.approx(history.history["val_accuracy"][0])


def test_model_filters(trained, tmp_path):
    model, _ = trained
    conv, conv2 = model.layers[0], model.layers[2]
    fig = plot.show_filters(conv, save=tmp_path / "f1.png")
    check_png(tmp_path / "f1.png", fig, size=(320, 104))
    assert len(fig.axes) == 4 * 1
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), conv.get_weights()[0][3, 0])
    fig = plot.show_filters(conv2, save=tmp_path / "f2.png")
    check_png(tmp_path / "f2.png", fig, size=(320, 46 + 6 * 48 + 5 * 6 + 10))
    assert len(fig.axes) == 6 * 4
    np.testing.assert_array_equal(fig.axes[2 * 4 + 3].images[0].get_array(), conv2.get_weights()[0][2, 3])
    assert len(plot.show_filters(model).axes) == 4   # a model: its first convolution
    assert "conv" in " ".join(t.get_text() for t in fig.texts)


def test_model_feature_maps_by_index_name_and_object(trained, digits, tmp_path):
    import fastconv.functional as F

    model, _ = trained
    image = digits[0][0]                                  # (1, 28, 28), a 7
    fig = plot.show_feature_maps(model, image, layer="conv", save=tmp_path / "m.png")
    check_png(tmp_path / "m.png", fig, size=(max(320, 20 + 5 * 96 + 4 * 8), 152))
    assert len(fig.axes) == 1 + 4
    # The maps are the layers' real outputs: conv -> relu -> max pool -> conv -> relu.
    k1, b1 = model.layers[0].get_weights()
    k2, b2 = model.layers[2].get_weights()
    c1 = np.maximum(F.conv2d(image[None], k1, b1), 0)
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), c1[0, 0], rtol=1e-5, atol=1e-6)
    c2 = np.maximum(F.conv2d(F.max_pool2d(c1, 2), k2, b2), 0)
    maps = plot.feature_maps(model, image, layer=2)
    assert maps.shape == (6, 11, 11)
    np.testing.assert_allclose(maps, c2[0], rtol=1e-4, atol=1e-5)
    for layer in (0, "conv", model.layers[0], None, -5):
        np.testing.assert_allclose(plot.feature_maps(model, image[0], layer=layer), c1[0], rtol=1e-5,
                                   atol=1e-6)
    fig = plot.show_feature_maps(model, image, layer=model.layers[2])
    assert len(fig.axes) == 1 + 6
    with pytest.raises(ValueError, match="not maps"):
        plot.show_feature_maps(model, image, layer="out")
    with pytest.raises(ValueError, match="no layer named"):
        plot.show_feature_maps(model, image, layer="C9")


def test_model_predictions(trained, digits, tmp_path):
    model, _ = trained
    x, y = digits
    fig = plot.show_predictions(model, x[600:616], y[600:616], save=tmp_path / "p.png")
    check_png(tmp_path / "p.png", fig, size=(652, 224))
    assert len(fig.axes) == 16
    predicted = model.predict(x[600:616]).argmax(axis=1)
    labels = [t.get_text() for t in fig.texts if " / " in t.get_text() and "right" not in t.get_text()]
    assert labels == [f"{p} / {t}" for p, t in zip(predicted, y[600:616])]
    right = int((predicted == y[600:616]).sum())
    assert any(t.get_text().endswith(f"{right} of 16 right") for t in fig.texts)


def test_save_training_pictures(trained, digits, tmp_path):
    model, history = trained
    paths = plot.save_training_pictures(model, history, digits[0][0], tmp_path / "pics")
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == [
        "feature_maps.png", "filters.png", "history.png"]
    for key, size in (("history", (800, 320)), ("filters", (320, 104)), ("feature_maps", (532, 152))):
        pixels = mpimg.imread(paths[key])
        assert Path(paths[key]).read_bytes()[:8] == PNG_SIGNATURE
        assert pixels.shape[:2] == (size[1], size[0]) and pixels[..., :3].std() > 0.01


# ---------------------------------------------------------------------------------------------
# A hand-set edge detector on a real digit

def _cross_correlate_same(image, kernel):
    """3x3 cross-correlation with one pixel of zero padding, in float64 NumPy."""
    padded = np.pad(image.astype(np.float64), 1)
    h, w = image.shape
    return sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))


def test_hand_set_edge_filters_on_a_digit(digits, tmp_path):
    L = pytest.importorskip("fastconv.layers", reason="the layer API (fastconv.layers) is not on this branch")
    x, y = digits
    one = x[int(np.argmax(y == 1))]                       # (1, 28, 28): a mostly vertical stroke
    edges = L.Conv2D(2, 3, padding="same", name="edges")
    edges.build((1, 28, 28))
    edges.set_weights([np.stack([VERTICAL_EDGE, HORIZONTAL_EDGE])[:, None], np.zeros(2, np.float32)])

    fig = plot.show_feature_maps(edges, one, save=tmp_path / "edges.png")
    check_png(tmp_path / "edges.png", fig, size=(324, 152))
    assert len(fig.axes) == 1 + 2
    vertical, horizontal = plot.feature_maps(edges, one)
    np.testing.assert_allclose(vertical, _cross_correlate_same(one[0], VERTICAL_EDGE), atol=1e-5)
    np.testing.assert_allclose(horizontal, _cross_correlate_same(one[0], HORIZONTAL_EDGE), atol=1e-5)

    ink = one[0] > 0
    near_ink = _cross_correlate_same(ink, np.ones((3, 3))) > 0   # within one pixel of the digit
    background = ~near_ink
    assert background.sum() > 400
    assert np.abs(vertical[background]).mean() < 1e-6
    assert np.abs(horizontal[background]).mean() < 1e-6
    assert np.abs(vertical[near_ink]).max() > 0.5
    # The stroke of a 1 is vertical: the vertical detector answers it far more than the
    # horizontal one, with opposite signs on its edges: [1, 0, -1] gives x[j-1] - x[j+1],
    # negative on the left edge (dark to bright) and positive on the right edge.
    assert np.abs(vertical).sum() > 2 * np.abs(horizontal).sum()
    assert vertical.max() > 1.0 and vertical.min() < -1.0
    rows = np.nonzero(ink.any(axis=1))[0]
    middle = rows[len(rows) // 2]
    cols = np.nonzero(ink[middle])[0]
    assert vertical[middle, cols[0]] < -0.5 and vertical[middle, cols[-1]] > 0.5


def test_long_title_widens_the_figure():
    w = np.ones((2, 1, 3, 3), dtype=np.float32)
    narrow = plot.show_filters(w, title="k")
    wide = plot.show_filters(w, title="a title much longer than two small 48 px kernel tiles " * 2)
    assert plot.figure_size_px(narrow) == (320, 104)
    assert plot.figure_size_px(wide)[0] > 700 and plot.figure_size_px(wide)[1] == 104


def test_nothing_is_shown_unless_asked(monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(True))
    w = np.ones((2, 1, 3, 3), dtype=np.float32)
    fig = plot.show_filters(w)
    assert shown == [] and fig not in [plt.figure(n) for n in plt.get_fignums()]
    fig = plot.show_filters(w, show=True)   # a pyplot figure, handed to plt.show
    try:
        assert shown == [True] and fig.number in plt.get_fignums()
    finally:
        plt.close(fig)


def test_feature_maps_build_unbuilt_models_and_take_channels_last():
    L = pytest.importorskip("fastconv.layers", reason="the layer API (fastconv.layers) is not on this branch")
    from fastconv.models import Sequential
    import fastconv.functional as F

    image = np.random.default_rng(4).random((1, 12, 12)).astype(np.float32)
    conv = L.Conv2D(3, 3, name="c")
    maps = plot.feature_maps(conv, image)                 # a lone layer, built for the image
    assert conv.built and maps.shape == (3, 10, 10)
    kernel, bias = conv.get_weights()
    np.testing.assert_allclose(maps, F.conv2d(image[None], kernel, bias)[0], rtol=1e-5, atol=1e-6)

    model = Sequential([L.Conv2D(2, 3, name="c"), L.MaxPool2D(2, name="p")], seed=1)
    assert plot.feature_maps(model, image[0], layer="p").shape == (2, 5, 5)
    assert model.built

    nhwc = L.Conv2D(3, 3, data_format="channels_last", name="c")
    nhwc.build((1, 12, 12))
    nhwc.set_weights([kernel, bias])
    np.testing.assert_allclose(plot.feature_maps(nhwc, image.transpose(1, 2, 0)), maps, rtol=1e-6)
