"""keras.models on fastconv: Sequential, Model and load_model, channels-last by default.

They are fastconv's models (fastconv.models.Model, Sequential) with Keras's defaults: a
Sequential's images are NHWC unless its first layer says otherwise, ``get_weights`` gives
Keras's layouts (through the fastconv.keras layers), and ``summary()`` draws Keras 3's table.
"""
from __future__ import annotations

import shutil

from .. import models as _models
from ..models import saving as _saving

__all__ = ["Sequential", "Model", "load_model", "clone_model"]


class _KerasSummary:
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Keras 3's summary table: each layer's name and type, output shape (NHWC for images)
        and parameter count (and, for a graph, what it reads), then the totals with their
        memory. Prints it (print_fn, default print) and returns it as a string."""
        if expand_nested or layer_range is not None:
            raise NotImplementedError("summary: expand_nested and layer_range are not supported")
        self._require_built("summary")
        text = keras_summary(self, line_length, positions, show_trainable)
        (print_fn or print)(text)
        return text


class Sequential(_KerasSummary, _models.Sequential):
    """keras.Sequential(layers=None, name=None): a stack of layers, NHWC images by default."""

    def __init__(self, layers=None, name=None, trainable=True, input_shape=None, seed=None,
                 data_format=None):
        super().__init__(layers, input_shape=input_shape, seed=seed, data_format=data_format,
                         name=name or "sequential", trainable=trainable)


class Model(_KerasSummary, _models.Model):
    """keras.Model(inputs, outputs, name=None), or subclassed with call()."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, seed=None, **kwargs):
        if kwargs:
            raise TypeError(f"Model: unexpected keyword arguments {sorted(kwargs)}")
        super().__init__(inputs, outputs, name=name, seed=seed, trainable=trainable)


_saving.register_model_class("keras.Sequential", Sequential)
_saving.register_model_class("keras.Functional", Model)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model saved by ``model.save`` (any fastconv or fastconv.keras model)."""
    if custom_objects:
        raise NotImplementedError("load_model: custom_objects is not supported; register custom "
                                  "layer classes with fastconv.layers.register")
    return _saving.load_model(filepath, compile=compile)


def clone_model(model):
    """A new model of the same architecture with freshly initialised weights."""
    return _saving.model_from_config(_saving.model_config(model)["model"])


# ---------------------------------------------------------------------------------- summary
def _readable(nbytes):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _shape(model, shape):
    shape = tuple(shape)
    channels_last = getattr(model, "_channels_last", model.data_format == "channels_last")
    if channels_last and len(shape) == 3:
        shape = (shape[1], shape[2], shape[0])
    return "(" + ", ".join(str(d) for d in (None,) + shape) + ")"


def _rows(model):
    """(rows, sequential_like): [name (type), output shape, params, connected to] per row."""
    if isinstance(model, _models.Sequential):
        rows = []
        for layer in model.layers:
            out = layer.output_shape
            shapes = _shape(model, out) if not isinstance(layer, _models.Model) or layer._single_output \
                else ", ".join(_shape(model, s) for s in out)
            rows.append([f"{layer.name} ({type(layer).__name__})", shapes,
                         f"{layer.count_params():,}", ""])
        return rows, True
    graph = model._graph
    seen, shared, single = set(), False, len(graph.inputs) == 1
    for node in graph.nodes:
        shared = shared or id(node.layer) in seen
        seen.add(id(node.layer))
        single = single and len(node.inputs) == 1
    producer, calls = {}, {}
    rows = []
    for t in graph.inputs:
        producer[id(t)] = (t.node.layer.name, 0, 0)
        rows.append([f"{t.node.layer.name} (InputLayer)", _shape(model, t.per_sample_shape), "0", "-"])
    for node in graph.nodes:
        index = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = index + 1
        for i, t in enumerate(node.outputs):
            producer[id(t)] = (node.layer.name, index, i)
        reads = ", ".join(f"{n}[{a}][{b}]" for n, a, b in (producer[id(t)] for t in node.inputs))
        shapes = ", ".join(_shape(model, t.per_sample_shape) for t in node.outputs)
        rows.append([f"{node.layer.name} ({type(node.layer).__name__})", shapes,
                     f"{node.layer.count_params():,}", reads or "-"])
    return rows, single and not shared


def keras_summary(model, line_length=None, positions=None, show_trainable=False):
    """Keras 3's summary of ``model`` as text (its box table, then the parameter totals)."""
    rows, sequential_like = _rows(model)
    if sequential_like:
        default, positions = 88, positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        rows = [r[:3] for r in rows]
    else:
        default, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    right = [False, False, True, False]
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        right.append(False)
        trainable = {id(layer) for layer in model._trainable_layers()}
        for r, layer in zip(rows, _row_layers(model)):
            r.append("-" if not layer.weights else ("Y" if id(layer) in trainable or (
                isinstance(layer, _models.Model) and layer.trainable) else "N"))
    width = line_length or min(default, shutil.get_terminal_size().columns - 4)
    widths, at = [], 0
    for pos in positions:
        w = int(pos * width) - at
        if w < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(w)
        at += w
    inner = [w - 3 for w in widths]        # each cell: a border, a space each side
    inner[-1] -= 1                         # and the closing border

    def line(left, fill, mid, end):
        return left + mid.join(fill * (w + 2) for w in inner) + end

    def cells(values):
        out = []
        for v, w, r in zip(values, inner, right):
            v = v if len(v) <= w else v[:w - 1] + "…"
            out.append(f" {v:>{w}} " if r else f" {v:<{w}} ")
        return out

    text = [f'Model: "{model.name}"', line("┏", "━", "┳", "┓"),
            "┃" + "┃".join(cells(header)) + "┃", line("┡", "━", "╇", "┩")]
    for i, r in enumerate(rows):
        if i:
            text.append(line("├", "─", "┼", "┤"))
        text.append("│" + "│".join(cells(r)) + "│")
    text.append(line("└", "─", "┴", "┘"))
    trainable_count = sum(int(p.size) for p in model.trainable_weights)
    non_trainable = sum(int(w.size) for w in model.non_trainable_weights)
    text += [f" Total params: {trainable_count + non_trainable:,} "
             f"({_readable(4 * (trainable_count + non_trainable))})",
             f" Trainable params: {trainable_count:,} ({_readable(4 * trainable_count)})",
             f" Non-trainable params: {non_trainable:,} ({_readable(4 * non_trainable)})"]
    return "\n".join(text)


def _row_layers(model):
    if isinstance(model, _models.Sequential):
        return model.layers
    return [t.node.layer for t in model._graph.inputs] + [n.layer for n in model._graph.nodes]

