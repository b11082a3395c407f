"""Moving weights between fastconv's layouts and PyTorch's or Keras's.

fastconv keeps PyTorch's layouts (conv OIHW, dense (out, in)):

    to_pytorch_weights(model)          -> list of arrays (what model.get_weights() gives)
    from_pytorch_weights(model, ws)    ws: a list, or a state_dict-like mapping (its values in order)
    to_keras_weights(model)            -> list: conv kernels HWIO, dense kernels (in, out)
    from_keras_weights(model, ws)      the reverse

The Keras pair also permutes the rows of a Dense kernel that reads a Flatten of a (C, H, W)
map: Keras (channels_last) flattens in H, W, C order, fastconv in C, H, W order; pass
``channels_last=False`` for a Keras model built channels_first. Each layer also has
get/set_weights_keras and get/set_weights_pytorch for the layer alone (no permutation).
"""
from __future__ import annotations

import numpy as np

from ..layers import Dense, Flatten
from . import graph as G

__all__ = ["to_keras_weights", "from_keras_weights", "to_pytorch_weights", "from_pytorch_weights"]


def _flatten_sources(model):
    """id(dense layer) -> the (C, H, W) a Flatten turned into its input, where that is so."""
    plan = G.Plan(model._graph, fuse=False)
    producer = {st.output: st for st in plan.steps}
    out = {}
    for st in plan.steps:
        if isinstance(st.layer, Dense):
            src = producer.get(st.inputs[0])
            if src is not None and isinstance(src.layer, Flatten):
                shape = src.layer.input_shape
                if len(shape) == 3 and shape[1] * shape[2] > 1:
                    out[id(st.layer)] = shape
    return out


def to_pytorch_weights(model):
    """Weights in PyTorch's layouts (Conv2d OIHW, Linear (out, in)): model.get_weights()."""
    return model.get_weights()


def from_pytorch_weights(model, weights):
    """Set weights from PyTorch's layouts: a list, or a mapping such as a state_dict whose
    values (tensors or arrays) are in the model's order (weight, bias per layer)."""
    if hasattr(weights, "values"):
        weights = list(weights.values())
    model.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def to_keras_weights(model, channels_last=True):
    """Weights in Keras's layouts: conv kernels HWIO, dense kernels (in, out), and a Dense after
    a Flatten with its rows in H, W, C order (channels_last=True) as Keras flattens."""
    model._require_built("to_keras_weights")
    sources = _flatten_sources(model) if channels_last else {}
    out = []
    for layer in model._graph.primitive_layers():
        weights = layer.get_weights_keras()
        source = sources.get(id(layer))
        if source is not None and weights:
            c, h, w = source
            units = layer.units
            weights[0] = np.ascontiguousarray(
                layer.kernel.reshape(units, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, units))
        out.extend(weights)
    return out


def from_keras_weights(model, weights, channels_last=True):
    """Set weights from Keras's layouts (the reverse of to_keras_weights)."""
    model._require_built("from_keras_weights")
    weights = list(weights)
    layers = model._graph.primitive_layers()
    expected = sum(len(layer.weights) for layer in layers)
    if len(weights) != expected:
        raise ValueError(f"from_keras_weights: got {len(weights)} arrays, the model has {expected}")
    sources = _flatten_sources(model) if channels_last else {}
    at = 0
    for layer in layers:
        k = len(layer.weights)
        chunk = [np.asarray(w, dtype=np.float32) for w in weights[at:at + k]]
        source = sources.get(id(layer))
        if source is not None and chunk:
            c, h, w = source
            kernel = chunk[0]
            if kernel.shape != (c * h * w, layer.units):
                raise ValueError(f"from_keras_weights: layer {layer.name} expects a ({c * h * w}, "
                                 f"{layer.units}) kernel, got {kernel.shape}")
            layer.set_weights([kernel.reshape(h, w, c, layer.units).transpose(3, 2, 0, 1)
                               .reshape(layer.units, c * h * w)] + chunk[1:])
        else:
            layer.set_weights_keras(chunk)
        at += k
