"""Pictures of a network: training curves, learned filters, feature maps and predictions.

Needs matplotlib, the optional ``plot`` extra (``pip install fastconv[plot]``)::

    from fastconv import plot
    plot.plot_history(history, save="history.png")            # loss and accuracy per epoch
    plot.show_filters(model.layers[1], save="filters.png")    # one tile per kernel
    plot.show_feature_maps(model, x_test[0], layer="C1", save="maps.png")
    plot.show_predictions(model, x_test[:16], y_test[:16], save="predictions.png")
    plot.show_image_grid(gan.sample(100), columns=10, save="samples.png")   # a mosaic

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot, no GUI backend, no
global state), returns it, and writes a PNG when ``save=`` is a path. Nothing opens a window
unless ``show=True`` is passed; only then is pyplot imported (with whatever backend the user
chose).

Sizes are fixed in pixels, so a saved PNG has a predictable size. Figures are made at
DPI = 100 and laid out on a pixel grid (no tight_layout, no bbox_inches="tight"):

    plot_history         800 x 320 px (two panels: loss, accuracy; 400 x 320 with only loss)
    show_filters         tiles of FILTER_TILE_PX (48) px (4 px per weight for kernels
                         larger than 12), 6 px apart;
                         C > 1: K rows x C columns, with "out k" / "in c" labels;
                         C = 1: the K kernels in rows of at most 8, numbered above
    show_feature_maps    tiles of MAP_TILE_PX (96) px: the input, then the K maps,
                         in rows of at most 8
    show_predictions     tiles of PRED_TILE_PX (72) px in rows of at most 8, "pred / true" below
    show_image_grid      one mosaic of images, each pixel ``scale`` px square, images 1 px
                         apart; optional row titles on the left

The tile grids are centred in a figure at least 320 px wide, and wider where the title needs
it (a custom title= longer than the grid widens the figure). figure_size_px(fig) gives the
(width, height) a saved PNG has; each function's docstring gives the formula.

The array-level work is done by functions that take plain NumPy arrays: show_filters takes a
(K, C, R, S) kernel as well as a layer, show_maps draws an image and its (K, H, W) maps, and
show_predictions takes predicted labels as well as a model. The model adapters only compute
those arrays from fastconv's layers (``layer.get_weights()``, ``layer.forward``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .layers.base import Context

try:
    from matplotlib.figure import Figure
except ImportError as err:  # the plot extra is optional
    raise ImportError("fastconv.plot needs matplotlib: pip install fastconv[plot]") from err

__all__ = [
    "plot_history", "show_filters", "show_feature_maps", "show_maps", "show_predictions",
    "feature_maps", "save_training_pictures", "figure_size_px", "show_image_grid",
    "DPI", "FILTER_TILE_PX", "MAP_TILE_PX", "PRED_TILE_PX", "MAX_COLUMNS",
]

DPI = 100               # dots per inch of every figure and every saved PNG
FILTER_TILE_PX = 48     # side of one kernel tile in show_filters
MAP_TILE_PX = 96        # side of one image or map tile in show_feature_maps / show_maps
PRED_TILE_PX = 72       # side of one image tile in show_predictions
MAX_COLUMNS = 8         # tiles per row where tiles wrap (filters of 1 channel, maps, predictions)

_MARGIN_PX = 10         # outer margin on every side
_TITLE_PX = 30          # band for the figure title
_LABEL_PX = 16          # band for a line of small text above or below a tile
_GAP_PX = 6             # space between filter tiles
_MIN_WIDTH_PX = 320     # narrow grids are centred in a figure at least this wide
_FONT_PT = 8            # tile labels
_TITLE_PT = 10          # figure titles
_WRONG = "#d62728"      # frame and text of a wrong prediction
_HISTORY_PX = (800, 320)


# ---------------------------------------------------------------------------------------------
# Figures on a pixel grid

def figure_size_px(fig):
    """(width, height) in pixels of ``fig`` as saved by these functions (at DPI)."""
    w, h = fig.get_size_inches()
    return int(round(w * DPI)), int(round(h * DPI))


def _new_figure(width_px, height_px, show):
    """A white figure of exactly width_px x height_px pixels at DPI.

    Without show, a bare Figure (drawn by Agg when saved; no backend is touched). With show,
    a pyplot figure, so that the user's backend can display it.
    """
    size = (width_px / DPI, height_px / DPI)
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=size, dpi=DPI, facecolor="white")
    return Figure(figsize=size, dpi=DPI, facecolor="white")


def _add_axes_px(fig, x, y, w, h):
    """An Axes whose box is w x h pixels with its top-left corner at pixel (x, y) (y downwards)."""
    width, height = figure_size_px(fig)
    return fig.add_axes((x / width, 1.0 - (y + h) / height, w / width, h / height))


def _text_px(fig, x, y, text, **kwargs):
    """Figure text anchored at pixel (x, y) (y downwards)."""
    width, height = figure_size_px(fig)
    kwargs.setdefault("fontsize", _FONT_PT)
    return fig.text(x / width, 1.0 - y / height, text, **kwargs)


def _title_width_px(title):
    """Pixels the figure title needs: its rendered width in _TITLE_PT bold, plus the margins."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font = FontProperties(size=_TITLE_PT, weight="bold")
    width_pt, _, _ = TextToPath().get_text_width_height_descent(title, font, ismath=False)
    return int(math.ceil(width_pt * DPI / 72.0)) + 2 * _MARGIN_PX + 4


def _grid(n_rows, n_cols, tile, gap_x, gap_y, left, top, right, bottom, title=""):
    """Lay out an n_rows x n_cols grid of tile x tile boxes under a title.

    Returns (width, height, origin) where origin(r, c) is the top-left pixel of box (r, c).
    The figure is at least _MIN_WIDTH_PX wide and wide enough for the title; the grid is
    centred in it.
    """
    grid_w = n_cols * tile + (n_cols - 1) * gap_x
    grid_h = n_rows * tile + (n_rows - 1) * gap_y
    natural_w = left + grid_w + right
    width = max(_MIN_WIDTH_PX, natural_w, _title_width_px(title))
    height = top + grid_h + bottom
    x0 = left + (width - natural_w) // 2

    def origin(r, c):
        return x0 + c * (tile + gap_x), top + r * (tile + gap_y)

    return width, height, origin


def _finish(fig, save, show):
    """Write the PNG (exactly figure_size_px pixels) and/or display the figure; return it."""
    if save is not None:
        fig.savefig(os.fspath(save), dpi=DPI, format="png", facecolor="white")
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig


def _bare(ax, frame_color=None, frame_width=0.8):
    """No ticks; a thin frame (or a coloured one)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(frame_width)
        spine.set_edgecolor(frame_color or "#999999")


def _color_range(a, symmetric):
    """(vmin, vmax) for a tile: +-max|a| when symmetric (0 is mid-grey), else a's range.

    A constant tile gets a non-empty range so that matplotlib does not divide by zero.
    """
    a = np.asarray(a, dtype=np.float64)
    if symmetric:
        m = float(np.max(np.abs(a))) if a.size else 0.0
        m = m if m > 0 else 1.0
        return -m, m
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _as_picture(image):
    """An image as imshow wants it: (H, W) grey or (H, W, 3) colour, from (H, W), (C, H, W) or
    (1, C, H, W). Colour images (C = 3) are shown in colour, others by their first channel."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] == 3:
            a = a.transpose(1, 2, 0)
            lo, hi = float(a.min()), float(a.max())
            return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        if a.shape[0] == 1:
            return a[0]
        if a.shape[-1] in (1, 3):  # channels_last
            return a[..., 0] if a.shape[-1] == 1 else _as_picture(a.transpose(2, 0, 1))
        return a[0]
    if a.ndim != 2:
        raise ValueError(f"fastconv.plot: an image must be (H, W), (C, H, W) or (1, C, H, W), "
                         f"got shape {np.shape(image)}")
    return a


def _show_image(ax, picture, **kwargs):
    if picture.ndim == 3:
        ax.imshow(picture, interpolation="nearest")
    else:
        kwargs.setdefault("cmap", "gray")
        ax.imshow(picture, interpolation="nearest", **kwargs)


# ---------------------------------------------------------------------------------------------
# Training curves

_HISTORY_ALIASES = {"accuracy": ("accuracy", "acc"), "val_accuracy": ("val_accuracy", "val_acc"),
                    "loss": ("loss",), "val_loss": ("val_loss",)}


def _history_dict(history):
    """{"loss": [...], ...} from a History object (its .history) or the dict itself."""
    h = getattr(history, "history", history)
    if not isinstance(h, dict):
        raise TypeError(f"plot_history: history must be a History (with .history) or a dict of "
                        f"per-epoch lists, got {type(history).__name__}")
    out = {}
    for key, aliases in _HISTORY_ALIASES.items():
        for alias in aliases:
            if h.get(alias) is not None and len(h[alias]) > 0:
                out[key] = np.asarray(h[alias], dtype=np.float64).ravel()
                break
    if "loss" not in out and "val_loss" not in out:
        raise ValueError(f"plot_history: history has no 'loss' or 'val_loss' values (keys: "
                         f"{sorted(h)})")
    return out


def plot_history(history, save=None, show=False, title=None):
    """Loss and accuracy per epoch, for training and validation.

    history: what ``Sequential.fit`` returns (a History; its ``.history`` is used) or a dict
        {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}, one value
        per epoch ("acc"/"val_acc" are read too). Missing keys are left out of the plot.
    save: a path: write the figure there as a PNG of 800 x 320 px (400 x 320 when there is
        no accuracy to draw).
    show: display it with pyplot (a window or inline); off by default.
    title: figure title (default "Training history").

    Returns the Figure: one Axes for the loss, and one for the accuracy where there is any.
    Epochs are numbered from 1; every value is marked, so a one-epoch run shows as points.
    """
    h = _history_dict(history)
    panels = [("loss", "Loss")]
    if "accuracy" in h or "val_accuracy" in h:
        panels.append(("accuracy", "Accuracy"))
    width = _HISTORY_PX[0] * len(panels) // 2
    height = _HISTORY_PX[1]
    fig = _new_figure(width, height, show)
    panel_w = width // len(panels)
    left, right, top, bottom = 62, 16, 48, 46
    for i, (key, label) in enumerate(panels):
        ax = _add_axes_px(fig, i * panel_w + left, top, panel_w - left - right, height - top - bottom)
        for series, name, style in ((key, "training", "o-"), ("val_" + key, "validation", "s--")):
            if series in h:
                values = h[series]
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=4, linewidth=1.5, label=name)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(label.lower(), fontsize=9)
        ax.set_title(label, fontsize=_TITLE_PT)
        ax.tick_params(labelsize=8)
        n_epochs = max(len(h.get(key, ())), len(h.get("val_" + key, ())))
        ax.set_xlim(0.5, n_epochs + 0.5)
        ax.set_xticks(_epoch_ticks(n_epochs))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    _text_px(fig, width / 2, 6, title or "Training history", ha="center", va="top",
             fontsize=_TITLE_PT, fontweight="bold")
    return _finish(fig, save, show)


def _epoch_ticks(n_epochs):
    """At most ~10 integer epoch ticks, starting at 1."""
    step = max(1, math.ceil(n_epochs / 10))
    return list(range(1, n_epochs + 1, step))


# ---------------------------------------------------------------------------------------------
# Filters

def _is_container(obj):
    """Whether ``obj`` is a model (it lists layers); a plain layer's ``layers`` is []."""
    return bool(getattr(obj, "layers", None))


def _find_conv(model):
    """The first layer of ``model`` (searching nested models in order) whose first weight is a
    4-D (K, C, R, S) kernel."""
    found = _first_conv_or_none(model)
    if found is not None:
        return found
    raise ValueError("fastconv.plot: the model has no convolution layer with a 4-D kernel "
                     "(is it built?)")


def _first_conv_or_none(model):
    for layer in model.layers:
        if _is_container(layer):
            found = _first_conv_or_none(layer)
            if found is not None:
                return found
            continue
        weights = layer.get_weights() if hasattr(layer, "get_weights") else []
        if weights and np.ndim(weights[0]) == 4:
            return layer
    return None


def _kernel_of(layer_or_weights):
    """(kernel (K, C, R, S) float32, name) from a layer, a model (its first conv layer), a
    get_weights() list, or an array (K, C, R, S), (K, R, S) or (R, S)."""
    obj = layer_or_weights
    name = None
    if _is_container(obj):  # a model: its first convolution
        obj = _find_conv(obj)
    if hasattr(obj, "get_weights"):
        name = getattr(obj, "name", None)
        weights = obj.get_weights()
        if not weights:
            raise ValueError(f"show_filters: layer {name!r} has no weights; is it built? (call it "
                             "on an input or build its model first)")
        obj = weights[0]
    elif isinstance(obj, (list, tuple)) and obj and np.ndim(obj[0]) == 4:
        obj = obj[0]  # [kernel, bias] as get_weights() gives it
    w = np.asarray(obj, dtype=np.float32)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[:, None]
    if w.ndim != 4:
        raise ValueError(f"show_filters: expected a conv layer or a kernel of shape (K, C, R, S), "
                         f"(K, R, S) or (R, S), got shape {w.shape}")
    return w, name


def show_filters(layer_or_weights, save=None, show=False, title=None, scale="shared",
                 max_filters=64, max_channels=16):
    """A grid of convolution kernels, each a grey R x S tile (0 is mid-grey).

    layer_or_weights: a Conv2D layer (its kernel from ``get_weights()[0]``), a model (its first
        convolution layer), or a kernel array (K, C, R, S) (OIHW), (K, R, S) or (R, S).
    Layout: with several input channels, one row per output map k and one column per input
        channel c (K x C tiles, labelled "out k" and "in c"); with one input channel, the K
        kernels side by side, at most 8 per row, numbered.
    scale: "shared": one colour scale for all tiles, symmetric about 0 (compares kernels);
        "tile": each tile scaled to its own +-max|w| (shows each one's pattern).
    max_filters, max_channels: at most this many output maps / input channels are drawn (the
        first ones); the title says so when some are left out.
    save: a path: write a PNG. Tiles are FILTER_TILE_PX = 48 px (4 px per weight for kernels
        larger than 12 x 12), 6 px apart (the gap is 16 px taller between rows of one-channel
        kernels, for the numbers), in a figure at least 320 px wide (or as wide as the title):
        e.g. LeNet-5's C1 (6, 1, 5, 5) gives 338 x 104 px, C3 (16, 6, 5, 5) 382 x 914 px;
        figure_size_px(fig) says it for any figure.

    Returns the Figure; it holds exactly one Axes per tile drawn.
    """
    if scale not in ("shared", "tile"):
        raise ValueError(f"show_filters: scale must be 'shared' or 'tile', got {scale!r}")
    w, name = _kernel_of(layer_or_weights)
    n_out, n_in, kh, kw = w.shape
    k_shown, c_shown = min(n_out, int(max_filters)), min(n_in, int(max_channels))
    shown = w[:k_shown, :c_shown]
    tile = max(FILTER_TILE_PX, 4 * max(kh, kw))

    heading = title or (f"Filters of {name}" if name else "Filters")
    heading += f" ({n_out} x {n_in} x {kh} x {kw})"
    if (k_shown, c_shown) != (n_out, n_in):
        heading += f", first {k_shown} x {c_shown} shown"
    shared = _color_range(shown, True)

    if n_in > 1:  # rows = output maps, columns = input channels
        rows, cols = k_shown, c_shown
        label_w = 44
        width, height, origin = _grid(rows, cols, tile, _GAP_PX, _GAP_PX,
                                      _MARGIN_PX + label_w, _TITLE_PX + _LABEL_PX,
                                      _MARGIN_PX, _MARGIN_PX, heading)
        cells = [((k, c), k, c) for k in range(rows) for c in range(cols)]
    else:         # one channel: kernels side by side, wrapping
        cols = min(k_shown, MAX_COLUMNS)
        rows = math.ceil(k_shown / cols)
        width, height, origin = _grid(rows, cols, tile, _GAP_PX, _GAP_PX + _LABEL_PX,
                                      _MARGIN_PX, _TITLE_PX + _LABEL_PX, _MARGIN_PX, _MARGIN_PX,
                                      heading)
        cells = [((k, 0), k // cols, k % cols) for k in range(k_shown)]

    fig = _new_figure(width, height, show)
    for (k, c), r, col in cells:
        x, y = origin(r, col)
        ax = _add_axes_px(fig, x, y, tile, tile)
        kernel = shown[k, c]
        vmin, vmax = shared if scale == "shared" else _color_range(kernel, True)
        ax.imshow(kernel, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        _bare(ax)
        if n_in == 1:
            _text_px(fig, x + tile / 2, y - 2, str(k), ha="center", va="bottom")
    if n_in > 1:
        for r in range(rows):
            x, y = origin(r, 0)
            _text_px(fig, x - 4, y + tile / 2, f"out {r}", ha="right", va="center")
        for c in range(cols):
            x, y = origin(0, c)
            _text_px(fig, x + tile / 2, y - 2, f"in {c}", ha="center", va="bottom")
    _text_px(fig, width / 2, 6, heading, ha="center", va="top", fontsize=_TITLE_PT,
             fontweight="bold")
    return _finish(fig, save, show)


# ---------------------------------------------------------------------------------------------
# Feature maps

def show_maps(image, maps, save=None, show=False, title=None, map_titles=None):
    """The input image and the K maps computed from it, as tiles of MAP_TILE_PX = 96 px.

    image: (H, W), (C, H, W) or (1, C, H, W) (3 channels are drawn in colour, others by
        their first channel, in grey).
    maps: (K, H', W') or (1, K, H', W'). Each map is drawn in grey with its own scale: from its
        minimum to its maximum when it is non-negative (ReLU maps), else symmetric about 0
        (0 is mid-grey, so a signed edge response shows black and white on grey).
    map_titles: K labels (default "map k").
    save: a path: write a PNG. 1 + K tiles in rows of at most 8, 8 px apart with a 16 px band
        above each tile for its label, in a figure at least 320 px wide: width =
        max(320, title, 20 + n*96 + (n-1)*8) for n = min(1 + K, 8) columns, height =
        56 + rows*96 + (rows-1)*24; e.g. 1 + 6 maps: 740 x 152 px, 1 + 2 maps: 324 x 152 px;
        figure_size_px(fig) says it for any figure.

    Returns the Figure; it holds exactly 1 + K Axes (the image first).
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"show_maps: maps must be (K, H, W) or (1, K, H, W), got shape {maps.shape}")
    picture = _as_picture(image)
    n_maps = maps.shape[0]
    if map_titles is None:
        map_titles = [f"map {k}" for k in range(n_maps)]
    if len(map_titles) != n_maps:
        raise ValueError(f"show_maps: {len(map_titles)} map_titles for {n_maps} maps")
    n_tiles = 1 + n_maps
    cols = min(n_tiles, MAX_COLUMNS)
    rows = math.ceil(n_tiles / cols)
    tile, gap = MAP_TILE_PX, 8
    heading = title or f"Input and {n_maps} feature maps"
    width, height, origin = _grid(rows, cols, tile, gap, gap + _LABEL_PX, _MARGIN_PX,
                                  _TITLE_PX + _LABEL_PX, _MARGIN_PX, _MARGIN_PX, heading)
    fig = _new_figure(width, height, show)
    labels = ["input"] + list(map_titles)
    for i in range(n_tiles):
        x, y = origin(i // cols, i % cols)
        ax = _add_axes_px(fig, x, y, tile, tile)
        if i == 0:
            _show_image(ax, picture)
        else:
            m = maps[i - 1]
            vmin, vmax = _color_range(m, symmetric=bool(m.min() < 0))
            ax.imshow(m, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        _bare(ax)
        _text_px(fig, x + tile / 2, y - 2, labels[i], ha="center", va="bottom")
    _text_px(fig, width / 2, 6, heading, ha="center", va="top", fontsize=_TITLE_PT,
             fontweight="bold")
    return _finish(fig, save, show)


def _layers_of(model):
    """The layers a model runs in order (a lone layer counts as a one-layer model)."""
    if _is_container(model):
        return list(model.layers)
    if hasattr(model, "forward"):
        return [model]
    raise TypeError(f"fastconv.plot: expected a Sequential model or a layer, got {type(model).__name__}")


def _layer_index(layers, layer, what):
    """Index into ``layers`` of ``layer``: an int (negative counts from the end), a name, or the
    layer object; None means the first layer with a 4-D kernel (the first convolution)."""
    if layer is None:
        for i, lay in enumerate(layers):
            weights = lay.get_weights() if hasattr(lay, "get_weights") else []
            if weights and np.ndim(weights[0]) == 4:
                return i
        raise ValueError(f"{what}: the model has no (built) convolution layer; pass layer=")
    if isinstance(layer, (int, np.integer)):
        i = int(layer)
        if not -len(layers) <= i < len(layers):
            raise ValueError(f"{what}: layer index {i} is out of range for a model of "
                             f"{len(layers)} layers")
        return i % len(layers)
    if isinstance(layer, str):
        names = [getattr(lay, "name", None) for lay in layers]
        if layer not in names:
            raise ValueError(f"{what}: no layer named {layer!r}; the layers are {names}")
        return names.index(layer)
    for i, lay in enumerate(layers):
        if lay is layer:
            return i
    raise ValueError(f"{what}: {layer!r} is not one of the model's layers")


def _channels_last(model):
    """Whether ``model`` takes NHWC input: its data_format, else its first layer's (as
    Sequential decides)."""
    fmt = getattr(model, "data_format", None)
    if fmt is None:
        fmt = getattr(_layers_of(model)[0], "data_format", None)
    return fmt == "channels_last"


def _one_sample(model, image):
    """image as a contiguous float32 batch of one, NCHW, for ``model``.

    (H, W) -> (1, 1, H, W); (C, H, W) -> (1, C, H, W); (1, C, H, W) as is. A channels_last
    model's (H, W, C) or (1, H, W, C) image is transposed to NCHW, as Sequential does once at
    its boundary.
    """
    x = np.asarray(image, dtype=np.float32)
    channels_last = _channels_last(model)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x.transpose(2, 0, 1)[None] if channels_last else x[None]
    elif x.ndim == 4 and x.shape[0] == 1:
        x = x.transpose(0, 3, 1, 2) if channels_last else x
    else:
        raise ValueError(f"show_feature_maps: image must be one image, (H, W), (C, H, W) or "
                         f"(1, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x)


def feature_maps(model, image, layer=None):
    """The output of one layer of ``model`` for one image: an array (K, H', W').

    Runs the model's top-level layers one after another (a chain, as in a Sequential), in
    inference mode, through their ``forward(Context(training=False), x)`` on NCHW arrays, up to
    and including ``layer`` (an index, a name or the layer
    object; None: the first convolution). ``model`` may be a Sequential or a single layer (an
    unbuilt one is built for the image's shape). The image is NCHW (see _one_sample).
    """
    layers = _layers_of(model)
    x = _one_sample(model, image)
    if _is_container(model) and not getattr(model, "built", True):
        model.build((x.shape[2], x.shape[3], x.shape[1]) if _channels_last(model) else x.shape[1:])
    elif not _is_container(model) and not getattr(model, "built", True):
        model.build(x.shape[1:])
    index = _layer_index(layers, layer, "show_feature_maps")
    ctx = Context(training=False)
    for lay in layers[:index + 1]:
        x, _ = lay.forward(ctx, x)   # NCHW inside, whatever the layer's data_format
    y = np.asarray(x, dtype=np.float32)
    if y.ndim != 4:
        name = getattr(layers[index], "name", index)
        raise ValueError(f"show_feature_maps: layer {name!r} gives vectors of shape {y.shape[1:]}, "
                         "not maps; pick a convolution or pooling layer")
    return y[0]


def show_feature_maps(model, image, layer=None, save=None, show=False, title=None, map_titles=None):
    """The input image and every map that one layer of ``model`` computes from it.

    model: a Sequential (or a single layer, e.g. a hand-set Conv2D).
    image: one image, (H, W), (C, H, W) or (1, C, H, W) ((H, W, C) for a channels_last model).
    layer: which layer: index, name (e.g. "C1") or the layer object; None: the first
        convolution. Its output is computed by running the layers before it (feature_maps).
    title: figure title (default "Feature maps of <layer name> (K x H' x W')").
    map_titles: K labels for the maps (default "map k").
    save: a path: write a PNG (sizes as in show_maps: 96 px tiles, e.g. 1 + 6 maps:
        740 x 152 px).

    Returns the Figure, with 1 + K Axes: the image, then the K maps.
    """
    layers = _layers_of(model)
    maps = feature_maps(model, image, layer)
    chosen = layers[_layer_index(layers, layer, "show_feature_maps")]
    name = getattr(chosen, "name", None) or type(chosen).__name__
    heading = title or f"Feature maps of {name} ({maps.shape[0]} x {maps.shape[1]} x {maps.shape[2]})"
    return show_maps(image, maps, save=save, show=show, title=heading, map_titles=map_titles)


# ---------------------------------------------------------------------------------------------
# Predictions

def show_predictions(model, images, labels, save=None, class_names=None, show=False, title=None):
    """Each image with "predicted / true" under it; wrong predictions in red, with a red frame.

    model: a model with ``predict(images)`` giving (N, classes) scores or probabilities; or
        the predictions themselves: (N,) class ids or an (N, classes) array of scores.
    images: (N, H, W), (N, C, H, W) (or (N, H, W, C) with 1 or 3 channels).
    labels: (N,) true class ids.
    class_names: optional names for the class ids (e.g. Fashion-MNIST's "Shirt").
    save: a path: write a PNG. Tiles of PRED_TILE_PX = 72 px in rows of at most 8, 8 px apart
        with a 16 px label band under each, in a figure at least 320 px wide: width =
        max(320, title, 20 + n*72 + (n-1)*8) for n = min(N, 8) columns, height =
        66 + rows*72 + (rows-1)*24; e.g. 16 images: 652 x 224 px.

    Returns the Figure, with one Axes per image.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if images.ndim not in (3, 4):
        raise ValueError(f"show_predictions: images must be (N, H, W) or (N, C, H, W), got shape "
                         f"{images.shape}")
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"show_predictions: {n} images but {len(labels)} labels")
    if n == 0:
        raise ValueError("show_predictions: no images")
    if hasattr(model, "predict"):
        batch = images[:, None] if images.ndim == 3 else images
        predicted = np.asarray(model.predict(batch))
    else:
        predicted = np.asarray(model)
    if predicted.ndim == 2:
        predicted = predicted.argmax(axis=1)
    predicted = predicted.astype(np.int64).ravel()
    if len(predicted) != n:
        raise ValueError(f"show_predictions: {len(predicted)} predictions for {n} images")

    def name(c):
        return str(class_names[c]) if class_names is not None else str(int(c))

    right = predicted == labels
    heading = title or f"predicted / true: {int(right.sum())} of {n} right"
    cols = min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    tile, gap = PRED_TILE_PX, 8
    width, height, origin = _grid(rows, cols, tile, gap, gap + _LABEL_PX, _MARGIN_PX, _TITLE_PX,
                                  _MARGIN_PX, _LABEL_PX + _MARGIN_PX, heading)
    fig = _new_figure(width, height, show)
    for i in range(n):
        x, y = origin(i // cols, i % cols)
        ax = _add_axes_px(fig, x, y, tile, tile)
        _show_image(ax, _as_picture(images[i]))
        ok = bool(right[i])
        _bare(ax, None if ok else _WRONG, 0.8 if ok else 2.5)
        _text_px(fig, x + tile / 2, y + tile + 2, f"{name(predicted[i])} / {name(labels[i])}",
                 ha="center", va="top", color="black" if ok else _WRONG,
                 fontweight="normal" if ok else "bold")
    _text_px(fig, width / 2, 6, heading, ha="center", va="top", fontsize=_TITLE_PT,
             fontweight="bold")
    return _finish(fig, save, show)


# ---------------------------------------------------------------------------------------------
# Image mosaics (generated digits; noisy / denoised / clean rows)

_ROW_TITLE_PX = 70      # band for row titles in show_image_grid


def show_image_grid(images, columns=10, save=None, show=False, title=None, row_titles=None,
                    scale=2, value_range=(0.0, 1.0)):
    """Images tiled into one mosaic, ``columns`` to a row, 1 px apart (white), grey levels from
    ``value_range`` (vmin, vmax) mapped black to white.

    images: (N, H, W), (N, 1, H, W) or (N, H, W, 1). row_titles: a label left of each row
        (as many as rows). scale: screen pixels per image pixel (an int >= 1).
    save: a path: write a PNG. The mosaic is m_w x m_h pixels with m_w = columns * (W + 1) - 1
        and m_h = rows * (H + 1) - 1; the figure is width = max(320, title, left + m_w * scale
        + 10) by height = 30 + m_h * scale + 10, where left is 70 with row titles, else 10;
        e.g. 100 digits of 28 x 28 in 10 columns at scale 2: 598 x 618 px.

    Returns the Figure (one Axes holding the mosaic).
    """
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 3 or len(a) == 0:
        raise ValueError(f"show_image_grid: images must be a non-empty (N, H, W) or (N, 1, H, W) "
                         f"array, got shape {np.shape(images)}")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"show_image_grid: columns must be an int >= 1, got {columns!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"show_image_grid: scale must be an int >= 1, got {scale!r}")
    vmin, vmax = (float(v) for v in value_range)
    if not vmax > vmin:
        raise ValueError(f"show_image_grid: value_range must be (vmin, vmax) with vmax > vmin, "
                         f"got {value_range!r}")
    n, h, w = a.shape
    columns = min(int(columns), n)
    rows = math.ceil(n / columns)
    if row_titles is not None and len(row_titles) != rows:
        raise ValueError(f"show_image_grid: {len(row_titles)} row titles for {rows} rows")
    mosaic = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        mosaic[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = a[i]
    mh, mw = mosaic.shape[0] * scale, mosaic.shape[1] * scale
    left = _ROW_TITLE_PX if row_titles is not None else _MARGIN_PX
    heading = title or ""
    width = max(_MIN_WIDTH_PX, left + mw + _MARGIN_PX, _title_width_px(heading) if heading else 0)
    height = _TITLE_PX + mh + _MARGIN_PX
    x0 = left + (width - (left + mw + _MARGIN_PX)) // 2
    fig = _new_figure(width, height, show)
    ax = _add_axes_px(fig, x0, _TITLE_PX, mw, mh)
    from matplotlib import colormaps

    cmap = colormaps["gray"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if row_titles is not None:
        for r, text in enumerate(row_titles):
            _text_px(fig, x0 - 6, _TITLE_PX + (r * (h + 1) + h / 2) * scale, str(text),
                     ha="right", va="center", fontsize=_TITLE_PT - 1)
    if heading:
        _text_px(fig, width / 2, 6, heading, ha="center", va="top", fontsize=_TITLE_PT,
                 fontweight="bold")
    return _finish(fig, save, show)


# ---------------------------------------------------------------------------------------------
# What `python -m fastconv train --plots DIR` writes

def save_training_pictures(model, history, image, out_dir):
    """Write history.png, filters.png (the first convolution's kernels) and feature_maps.png
    (that layer's maps for ``image``) into out_dir (created if missing).

    Returns {"history": path, "filters": path, "feature_maps": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = _layers_of(model)
    conv = layers[_layer_index(layers, None, "save_training_pictures")]
    paths = {"history": out / "history.png", "filters": out / "filters.png",
             "feature_maps": out / "feature_maps.png"}
    plot_history(history, save=paths["history"])
    show_filters(conv, save=paths["filters"])
    show_feature_maps(model, image, layer=conv, save=paths["feature_maps"])
    return paths
