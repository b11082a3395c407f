"""Saving and loading models, and the summary table.

A model file is one .npz (an uncompressed zip of .npy arrays): ``config``, a JSON string with
the architecture and the compile settings, and ``weight_0000``, ``weight_0001``, ... in
``model.weights`` order. Every model kind saves the same way: a Sequential as its list of
layers, a functional model as its layers and nodes (which layer reads which), a subclassed
model as the graph its ``call`` traced to (it loads back as a functional model with the same
layers, weights and outputs).

Writing is atomic: the file goes to a temporary name in the same folder, is flushed and
fsynced, and is then renamed over the target, so a failed or killed save leaves the previous
file as it was.

Reading trusts nothing in the file: the format and version are checked, the JSON is validated
(types, sizes, nesting) and the architecture is built shapes-only (no weight allocated) and
compared with the shapes the weight arrays' headers announce, before any array is read or any
weight is allocated. Every error names the file.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

from .. import layers as L
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from .._io import atomic_write
from ..layers import base as B

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "model_config",
           "model_from_config", "summary_text", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastconv.Model"
FORMAT_VERSION = 2
_OLD_FORMAT = "fastconv.Sequential"      # version 1 files: a Sequential's layers
_MAX_CONFIG_BYTES = 64 << 20
_MAX_LAYERS = 100_000
_MAX_WEIGHT_BYTES = 16 << 30
_MAX_DEPTH = 64


# ---------------------------------------------------------------------------------- configs
def _layer_entry(layer):
    from .model import Model

    if isinstance(layer, Model):
        return model_config(layer)["model"]
    return {"class_name": L.class_name(type(layer)), "config": layer.get_config()}


_MODEL_CLASSES = {}


def register_model_class(kind, cls):
    """Load models saved as ``kind`` ("Sequential", "Functional", "keras.Sequential", ...) as
    ``cls``; a model class saves under the kind it was registered with."""
    _MODEL_CLASSES[kind] = cls
    cls._saved_kind = kind


def _model_class(kind):
    if "Sequential" not in _MODEL_CLASSES:  # fastconv's own two, whatever was registered first
        from .model import Model, Sequential

        register_model_class("Sequential", Sequential)
        register_model_class("Functional", Model)
    return _MODEL_CLASSES.get(kind)


def _kind(model):
    from .model import Sequential

    _model_class("Sequential")  # the defaults are registered
    kind = type(model).__dict__.get("_saved_kind")
    return kind or ("Sequential" if isinstance(model, Sequential) else "Functional")


def model_config(model):
    """{"format", "version", "model": {...}, "compile": {...}} for ``model`` (JSON-able)."""
    from .model import Sequential

    if isinstance(model, Sequential):
        inner = {"class_name": _kind(model), "config": {
            "name": model.name, "seed": model.seed, "data_format": model.data_format,
            "trainable": model.trainable,
            "input_shape": None if not model.built else list(model.input_shape),
            "layers": [_layer_entry(layer) for layer in model.layers]}}
    else:
        model._require_built("get_config")
        graph = model._graph
        layers, layer_index = [], {}
        node_index, nodes = {}, []
        for t in graph.inputs:
            layer_index[id(t.node.layer)] = len(layers)
            layers.append(_layer_entry(t.node.layer))
            node_index[id(t.node)] = len(nodes)
            nodes.append({"layer": layer_index[id(t.node.layer)], "inputs": []})
        for node in graph.nodes:
            if id(node.layer) not in layer_index:
                layer_index[id(node.layer)] = len(layers)
                layers.append(_layer_entry(node.layer))
            refs = [[node_index[id(t.node)], t.index] for t in node.inputs]
            node_index[id(node)] = len(nodes)
            nodes.append({"layer": layer_index[id(node.layer)], "inputs": refs})
        inner = {"class_name": _kind(model), "config": {
            "name": model.name, "seed": model.seed, "data_format": model.data_format,
            "trainable": model.trainable, "layers": layers, "nodes": nodes,
            "inputs": [node_index[id(t.node)] for t in graph.inputs],
            "outputs": [[node_index[id(t.node)], t.index] for t in graph.outputs],
            "single_input": model._single_input, "single_output": model._single_output}}
        if type(model).__dict__.get("_saved_kind") is None and type(model).__name__ != "Model":
            inner["traced_from"] = type(model).__name__
    config = {"format": FORMAT, "version": FORMAT_VERSION, "model": inner}
    if model.optimizer is not None and model.losses:
        config["compile"] = {"optimizer": model.optimizer.get_config(),
                             "loss": [None if loss is None else _losses.serialize(loss)
                                      for loss in model.losses],
                             "metrics": [_metric_config(m) for m in model.metrics]}
    return config


def _metric_config(metric):
    """A metric as compile(metrics=...) takes it back: its name when that is what made it
    ("accuracy", "mae"), else its serialized form."""
    try:
        again = _metrics.get(metric.name)
        if type(again) is type(metric) and again.get_config() == metric.get_config():
            return metric.name
    except (ValueError, TypeError):
        pass
    return _metrics.serialize(metric)


def model_from_config(config):
    """The (unbuilt weights-wise fresh) model a ``model_config`` dict describes."""
    if not isinstance(config, dict):
        raise ValueError(f"a model config must be a dict, got {type(config).__name__}")
    if "model" in config:
        _check_format(config, "config")
        model = _build(config["model"], "config", 0)
        _compile_from(model, config.get("compile"), "config")
        return model
    return _build(config, "config", 0)


def _build(entry, where, depth):
    from .model import Sequential

    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: models nested more than {_MAX_DEPTH} deep")
    _need(isinstance(entry, dict) and isinstance(entry.get("config"), dict), where,
          "each layer entry must be {'class_name': ..., 'config': {...}}")
    kind, cfg = entry.get("class_name"), entry["config"]
    model_cls = _model_class(kind) if isinstance(kind, str) else None
    if model_cls is not None and issubclass(model_cls, Sequential):
        layers = cfg.get("layers")
        _need(isinstance(layers, list) and len(layers) <= _MAX_LAYERS, where,
              "a Sequential's 'layers' must be a list")
        built = [_build(e, where, depth + 1) for e in layers]
        fmt = cfg.get("data_format")
        _need(fmt in (None, "channels_first", "channels_last"), where, "bad data_format")
        model = model_cls(built, seed=_opt_int(cfg.get("seed"), where, "seed"), data_format=fmt,
                          name=_opt_str(cfg.get("name"), where, "name") or "sequential")
        shape = cfg.get("input_shape")
        if shape is not None:
            shape = _shape(shape, where)
            model._build_chain(shape)
        if cfg.get("trainable") is False:
            model.trainable = False
        return model
    if model_cls is not None:
        layer_entries, nodes = cfg.get("layers"), cfg.get("nodes")
        _need(isinstance(layer_entries, list) and isinstance(nodes, list)
              and len(layer_entries) <= _MAX_LAYERS and len(nodes) <= 4 * _MAX_LAYERS, where,
              "a functional model needs lists 'layers' and 'nodes'")
        layers = [_build(e, where, depth + 1) for e in layer_entries]
        made = []
        for i, node in enumerate(nodes):
            _need(isinstance(node, dict) and isinstance(node.get("layer"), int)
                  and 0 <= node["layer"] < len(layers) and isinstance(node.get("inputs"), list),
                  where, f"node {i} is malformed")
            layer = layers[node["layer"]]
            if isinstance(layer, B.InputLayer):
                _need(not node["inputs"], where, f"node {i}: an input node reads nothing")
                made.append([layer.output_tensor])
                continue
            ins = []
            for ref in node["inputs"]:
                _need(isinstance(ref, list) and len(ref) == 2 and all(isinstance(v, int) for v in ref)
                      and 0 <= ref[0] < i and 0 <= ref[1] < len(made[ref[0]]), where,
                      f"node {i} reads a tensor that is not made before it")
                ins.append(made[ref[0]][ref[1]])
            _need(bool(ins), where, f"node {i} reads nothing")
            out = layer(ins if (layer._multi_input or len(ins) > 1) else ins[0])
            made.append(list(out) if isinstance(out, list) else [out])
        ins = cfg.get("inputs")
        outs = cfg.get("outputs")
        _need(isinstance(ins, list) and isinstance(outs, list) and ins and outs, where,
              "a functional model needs 'inputs' and 'outputs'")
        try:
            inputs = [made[i][0] for i in ins]
            outputs = [made[i][j] for i, j in outs]
        except (TypeError, IndexError, ValueError):
            raise ValueError(f"{where}: 'inputs'/'outputs' name tensors that do not exist") from None
        model = model_cls(inputs[0] if cfg.get("single_input", True) and len(inputs) == 1 else inputs,
                      outputs[0] if cfg.get("single_output", True) and len(outputs) == 1 else outputs,
                      name=_opt_str(cfg.get("name"), where, "name"),
                      seed=_opt_int(cfg.get("seed"), where, "seed"))
        fmt = cfg.get("data_format")
        _need(fmt in (None, "channels_first", "channels_last"), where, "bad data_format")
        model.data_format = fmt
        if cfg.get("trainable") is False:
            model.trainable = False
        return model
    try:
        cls = L.get_layer_class(kind)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    try:
        return cls.from_config(dict(cfg))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: layer {kind} with config {_short(cfg)}: {err}") from None


def _compile_from(model, c, where):
    if c is None:
        return
    _need(isinstance(c, dict), where, "'compile' must be a dict")
    try:
        loss = c.get("loss")
        if isinstance(loss, list):
            loss = [None if item is None else _losses.get(item) for item in loss]
            loss = loss[0] if len(loss) == 1 else loss
        model.compile(optimizer=_optimizers.get(c.get("optimizer")), loss=loss,
                      metrics=c.get("metrics") or None)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: its compile settings are invalid: {err}") from None


def _need(ok, where, what):
    if not ok:
        raise ValueError(f"{where}: not a valid fastconv model: {what}")


def _short(cfg):
    text = json.dumps(cfg)
    return text if len(text) < 200 else text[:200] + "..."


def _opt_int(v, where, what):
    _need(v is None or (isinstance(v, int) and not isinstance(v, bool)), where, f"{what} must be an int")
    return v


def _opt_str(v, where, what):
    _need(v is None or isinstance(v, str), where, f"{what} must be a string")
    return v


def _shape(v, where):
    _need(isinstance(v, list) and 0 < len(v) <= 8
          and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 1 << 31 for d in v),
          where, f"input_shape {v!r} is not a list of positive sizes")
    return tuple(v)


def _check_format(config, where):
    fmt, version = config.get("format"), config.get("version")
    if fmt == _OLD_FORMAT and version == 1:
        return
    _need(fmt == FORMAT, where, f"its format is {fmt!r}, not {FORMAT!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{where}: not a valid fastconv model: bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{where}: written by a newer fastconv (model format version {version}); "
                         f"this one reads versions 1 to {FORMAT_VERSION}: upgrade fastconv")


def _v1_to_v2(config):
    """A version 1 file (a Sequential) as a version 2 config."""
    inner = {"class_name": "Sequential", "config": {
        "name": config.get("name", "sequential"), "seed": config.get("seed"),
        "data_format": config.get("data_format"), "input_shape": config.get("input_shape"),
        "layers": config.get("layers")}}
    out = {"format": FORMAT, "version": FORMAT_VERSION, "model": inner}
    if "compile" in config:
        c = dict(config["compile"]) if isinstance(config["compile"], dict) else config["compile"]
        if isinstance(c, dict) and not isinstance(c.get("loss"), list):
            c["loss"] = [c.get("loss")]
        out["compile"] = c
    return out


# ---------------------------------------------------------------------------------- files
def save_model(model, path):
    """Write ``model`` to ``path`` (.npz), atomically."""
    model._require_built("save")
    arrays = {f"weight_{i:04d}": np.asarray(w, dtype=np.float32) for i, w in enumerate(model.weights)}
    arrays["config"] = np.array(json.dumps(model_config(model)))
    atomic_write(path, lambda tmp: _savez(tmp, arrays))


def save_weights(model, path):
    """Write the model's weights alone to ``path`` (.npz), atomically."""
    model._require_built("save_weights")
    arrays = {f"weight_{i:04d}": np.asarray(w, dtype=np.float32) for i, w in enumerate(model.weights)}
    atomic_write(path, lambda tmp: _savez(tmp, arrays))


def _savez(path, arrays):
    # Through a file object: np.savez given a name would add ".npz" to one that lacks it.
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class _Archive:
    """A model file opened for checking: the config and the weights' headers, nothing more."""

    def __init__(self, path, owner):
        self.path, self.owner = path, owner
        where = f"{owner}: {path}"
        try:
            self.zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{owner}: no such file: {path}") from None
        except IsADirectoryError:
            raise ValueError(f"{where} is a folder, not a fastconv model file") from None
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError(f"{where} is not a fastconv model file (not an .npz archive: {err})") from None
        names = self.zip.namelist()
        self.weight_names = sorted(n[:-4] for n in names if n.startswith("weight_") and n.endswith(".npy"))
        self.has_config = "config.npy" in names
        self.headers = []
        total = 0
        for name in self.weight_names:
            shape, dtype = self._header(name + ".npy", where)
            if dtype != np.float32:
                raise ValueError(f"{where}: array {name} is {dtype}, not float32")
            total += int(np.prod(shape, dtype=np.float64)) * 4
            if total > _MAX_WEIGHT_BYTES:
                raise ValueError(f"{where}: its weights would take more than "
                                 f"{_MAX_WEIGHT_BYTES >> 30} GiB; refusing to load them")
            self.headers.append(shape)

    def _header(self, member, where):
        try:
            with self.zip.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"{where}: its array {member} is unreadable: {err}") from None
        return tuple(shape), np.dtype(dtype)

    def config(self):
        where = f"{self.owner}: {self.path}"
        if not self.has_config:
            raise ValueError(f"{where} is not a fastconv model file (no config)")
        info = self.zip.getinfo("config.npy")
        if info.file_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"{where}: its config is {info.file_size} bytes; refusing more than "
                             f"{_MAX_CONFIG_BYTES >> 20} MiB")
        shape, dtype = self._header("config.npy", where)
        if shape != () or dtype.kind != "U":
            raise ValueError(f"{where} is not a fastconv model file (config is not a string)")
        with self.zip.open("config.npy") as f:
            text = str(np.lib.format.read_array(f, allow_pickle=False))
        try:
            config = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{where}: its config is not valid JSON: {err}") from None
        if not isinstance(config, dict):
            raise ValueError(f"{where}: its config is a {type(config).__name__}, not an object")
        return config

    def weights(self):
        out = []
        for name in self.weight_names:
            with self.zip.open(name + ".npy") as f:
                out.append(np.lib.format.read_array(f, allow_pickle=False))
        return out

    def close(self):
        self.zip.close()


def _check_shapes(model, headers, where):
    expected = [tuple(w.shape) for w in model.weights]
    if len(expected) != len(headers):
        raise ValueError(f"{where}: the architecture has {len(expected)} weight arrays but the file "
                         f"holds {len(headers)}")
    for i, (want, got) in enumerate(zip(expected, headers)):
        if want != got:
            raise ValueError(f"{where}: weight {i} has shape {got} in the file, but the architecture "
                             f"needs {want}")


def load_model(path, compile=True):
    """A model saved by ``save`` (any kind, or a version 1 Sequential file), built, with its
    weights, and compiled if it was (compile=False skips that)."""
    owner = "load_model"
    where = f"{owner}: {path}"
    archive = _Archive(path, owner)
    try:
        config = archive.config()
        _check_format(config, where)
        if config.get("format") == _OLD_FORMAT:
            config = _v1_to_v2(config)
        _need("model" in config, where, "no 'model' entry")
        try:
            with B.shape_only():
                dry = _build(config["model"], where, 0)
                if not dry.built:
                    raise ValueError(f"{where}: the model has no input shape, so its weights cannot "
                                     "be checked")
        except RecursionError:
            raise ValueError(f"{where}: its config nests too deeply") from None
        except (TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{where}: not a valid fastconv model: {type(err).__name__}: {err}") from None
        _check_shapes(dry, archive.headers, where)
        model = _build(config["model"], where, 0)
        model.set_weights(archive.weights())
        if compile:
            _compile_from(model, config.get("compile"), where)
        return model
    finally:
        archive.close()


def load_weights(model, path):
    """Read the weights of ``path`` (save_weights or save) into the built ``model``."""
    owner = f"{model._owner}.load_weights"
    model._require_built("load_weights")
    archive = _Archive(path, owner)
    try:
        _check_shapes(model, archive.headers, f"{owner}: {path}")
        model.set_weights(archive.weights())
    finally:
        archive.close()


# ---------------------------------------------------------------------------------- summary
def _shape_text(model, shape):
    shape = tuple(shape)
    channels_last = getattr(model, "_channels_last", model.data_format == "channels_last")
    if channels_last and len(shape) == 3:
        shape = (shape[1], shape[2], shape[0])
    return str((None,) + shape)


def summary_text(model):
    """The summary table of ``model`` as a string."""
    from .model import Model, Sequential

    functional = not isinstance(model, Sequential)
    rows = []
    if functional:
        producers = {}
        for t in model._graph.inputs:
            producers[id(t)] = t.node.layer.name
        for t in model._graph.inputs:
            rows.append((f"{t.node.layer.name} (InputLayer)", _shape_text(model, t.per_sample_shape),
                         "0", ""))
        for node in model._graph.nodes:
            for t in node.outputs:
                producers[id(t)] = node.layer.name
            shapes = ", ".join(_shape_text(model, t.per_sample_shape) for t in node.outputs)
            reads = ", ".join(producers.get(id(t), "?") for t in node.inputs)
            rows.append((f"{node.layer.name} ({type(node.layer).__name__})", shapes,
                         f"{node.layer.count_params():,}", reads))
    else:
        for layer in model.layers:
            out = layer.output_shape
            text = _shape_text(model, out) if not isinstance(layer, Model) or layer._single_output \
                else ", ".join(_shape_text(model, s) for s in out)
            rows.append((f"{layer.name} ({type(layer).__name__})", text,
                         f"{layer.count_params():,}", ""))
    head = ("Layer (type)", "Output Shape", "Param #", "Connected to")
    ncol = 4 if functional else 3
    widths = [max(len(r[i]) for r in rows + [head]) + 3 for i in range(ncol)]
    line = "=" * sum(widths)

    def fmt(r):
        text = f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2] - 3}}"
        return text + (f"   {r[3]}" if functional else "")

    total = model.count_params()
    trainable = sum(layer.count_params() - sum(int(s.size) for s in layer.state)
                    for layer in model._trainable_layers())
    lines = [f'Model: "{model.name}"', line, fmt(head), line] + [fmt(r) for r in rows] + [
        line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}", f"Input shape: {model.input_shape} (NCHW)"]
    return "\n".join(lines)
