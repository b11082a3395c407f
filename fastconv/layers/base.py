"""The Layer base class, the per-call Context, and symbolic tensors for building graphs.

A layer holds only what describes it: its settings (filters, strides, ...), its weights, and
the shapes it was built for. Everything that belongs to one call lives in that call:

    y, saved = layer.forward(ctx, x)                         # ctx: training?, backend, weights
    dx = layer.backward(ctx, saved, dy, need_dx, grads)      # writes weight gradients into grads

``saved`` is whatever the backward needs (the input, the output, a dropout mask) and belongs
to the caller: a model's training step keeps one per node on its tape. So one layer object can
serve several threads at once, or appear twice in one model (a shared layer), and inference
never writes to the layer.

``ctx`` is a :class:`Context`: whether the call trains, the backend (CPU arrays or CUDA tensors,
fastconv.backend), and where the layer's weights are for this call (the layer's own NumPy
arrays, or their device copies during GPU training). A layer reads its weights with
``ctx.weights(self)``, never ``self.kernel`` directly, so the same code runs on both devices.

Called on arrays, a layer runs eagerly: ``y = layer(x)`` (inference) or ``layer(x,
training=True)``. Called on symbolic tensors (``fastconv.Input``), it records a node of a graph
and returns symbolic outputs, as in Keras's functional API::

    inputs = fastconv.Input((1, 28, 28))
    x = Conv2D(8, 3, activation="relu")(inputs)       # a SymbolicTensor of shape (None, 8, 26, 26)
    model = fastconv.Model(inputs, Dense(10)(Flatten()(x)))

Shapes given to ``build`` and ``input_shape=`` are per sample, without the batch: (C, H, W) for
images (NCHW order), (features,) for vectors.
"""
from __future__ import annotations

import contextlib
import threading
from typing import NamedTuple

import numpy as np

from ..backend import CPU, backend_for, is_device_tensor

__all__ = ["Layer", "Context", "SymbolicTensor", "Node", "InputLayer", "Input", "TracingError",
           "LayerGradients", "ACTIVATIONS", "ActivationSpec", "check_image_layout", "shape_only", "set_random_seed"]

# Activation names -> the code the compiled kernels fuse into their output pass.
# "softmax" has no code: it is a row-wise op applied after the fused pass.
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "leaky_relu": 4, "elu": 5,
               "gelu": 6, "gelu_tanh": 7, "softmax": None}
# The parameter of the activation strings, as Keras's activation functions default it.
_DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}


class TracingError(TypeError):
    """A model's ``call`` needed the value of a symbolic tensor (Python control flow on data)."""


_shape_only = threading.local()
_default_rng = np.random.default_rng()
_default_rng_lock = threading.Lock()


def set_random_seed(seed):
    """Seed the generator that layers built outside a seeded model draw their initial weights
    (and dropout masks) from: then a script that builds its layers in the same order gets the
    same weights."""
    global _default_rng
    with _default_rng_lock:
        _default_rng = np.random.default_rng(seed)


def _fresh_rng():
    """A generator for a layer built without one: a child of the default generator."""
    with _default_rng_lock:
        return np.random.default_rng(_default_rng.integers(1 << 63))


@contextlib.contextmanager
def shape_only():
    """Within this block, building a layer or a model resolves every shape but allocates no
    weight: each weight is a read-only broadcast zero of its shape. load_model uses it to check
    a file's architecture against its weights before building anything."""
    before = getattr(_shape_only, "on", False)
    _shape_only.on = True
    try:
        yield
    finally:
        _shape_only.on = before


def shapes_only_active():
    """Whether the calling thread is inside ``shape_only()``."""
    return getattr(_shape_only, "on", False)


# ---------------------------------------------------------------------------------- context
class Context:
    """What one call runs with.

    training: layers that differ in training (Dropout, max pooling's saved indices) act on it.
    backend: fastconv.backend.CPU or a CudaBackend.
    weights: None to use each layer's own arrays, or a dict id(layer) -> list of arrays (the
        device copies a GPU run uses).
    counters, seeds: the GPU's random-number state (an int64 device tensor whose [1] is the
        step, and id(layer) -> seed); unused on the CPU, where layers draw from their own
        NumPy generator.
    """

    __slots__ = ("training", "backend", "_weights", "counters", "seeds")

    def __init__(self, training=False, backend=CPU, weights=None, counters=None, seeds=None):
        self.training = bool(training)
        self.backend = backend
        self._weights = weights
        self.counters = counters
        self.seeds = seeds

    def weights(self, layer):
        """The arrays ``layer`` computes with in this call, in ``layer.params`` order."""
        if self._weights is None:
            return layer._params_now()
        return self._weights[id(layer)]

    def state(self, layer):
        """The layer's non-trainable state arrays for this call (running statistics), in
        ``layer.state`` order: its own arrays, or their device copies in a GPU run."""
        if self._weights is None:
            return layer.state
        return self._weights[("state", id(layer))]

    def with_training(self, training):
        """The same context with another training flag (a frozen BatchNormalization, say)."""
        return Context(training, self.backend, self._weights, self.counters, self.seeds)


class LayerGradients(NamedTuple):
    """What ``Layer.gradients`` returns: the output y, dx (a list for a layer of several
    inputs), and the weight gradients in ``params`` order."""

    y: object
    dx: object
    grads: list


# ---------------------------------------------------------------------------------- symbolic
class SymbolicTensor:
    """A placeholder for a batch of data, used to build a graph: it knows its shape (the batch
    as None, then the per-sample shape) and which node made it, never its values.

    Adding two symbolic tensors (``a + b``) records an Add layer. Anything that needs values
    (``if x ...``, ``float(x)``, ``np.asarray(x)``, ``len(x)``) raises TracingError: a model's
    graph is fixed when it is built, so data-dependent Python control flow cannot be traced.
    """

    __array_priority__ = 1000  # `ndarray + SymbolicTensor` defers to __radd__ (and refuses)

    def __init__(self, shape, node=None, index=0, name=None):
        self.shape = (None,) + tuple(int(d) for d in shape)
        self.node = node
        self.index = index
        self.name = name

    @property
    def per_sample_shape(self):
        """The shape without the batch axis."""
        return self.shape[1:]

    @property
    def ndim(self):
        """Number of dimensions, the batch included."""
        return len(self.shape)

    def __repr__(self):
        made = f", made by {self.node.layer.name!r}" if self.node is not None else ""
        return f"<SymbolicTensor shape={self.shape}{made}>"

    def _refuse(self, what):
        raise TracingError(
            f"{what} needs the value of a symbolic tensor {self.shape}: fastconv traces a "
            "model's call() once, with symbolic inputs, into a fixed graph, so call() cannot "
            "branch or compute on data values in Python. Express it with layers (Dropout and "
            "BatchNormalization already behave differently in training), or build separate "
            "models for the different paths")

    def __bool__(self):
        self._refuse("Python control flow (if/while/and/or on a tensor)")

    def __len__(self):
        self._refuse("len()")

    def __iter__(self):
        self._refuse("iterating over a tensor")

    def __float__(self):
        self._refuse("float()")

    def __int__(self):
        self._refuse("int()")

    def __index__(self):
        self._refuse("using a tensor as an index")

    def __array__(self, *args, **kwargs):
        self._refuse("converting to a NumPy array")

    def numpy(self):
        """Refused: a symbolic tensor has no values."""
        self._refuse("numpy()")

    def __add__(self, other):
        if not isinstance(other, SymbolicTensor):
            self._refuse(f"adding {type(other).__name__} to a tensor")
        from .merge import Add

        return Add()([self, other])

    def __radd__(self, other):
        if isinstance(other, SymbolicTensor):
            return other.__add__(self)
        self._refuse(f"adding a tensor to {type(other).__name__}")

    def _arith(self, *args):
        self._refuse("arithmetic on a tensor other than `+` between two tensors (use layers)")

    __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __matmul__ = _arith
    __neg__ = __pow__ = __lt__ = __le__ = __gt__ = __ge__ = _arith

    def __getitem__(self, item):
        self._refuse("indexing a tensor")

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


class Node:
    """One call of a layer in a graph: the layer, the symbolic tensors it took, and the ones it
    made. A layer called twice (shared) has two nodes."""

    __slots__ = ("layer", "inputs", "outputs", "multi_input")

    def __init__(self, layer, inputs, output_shapes, multi_input):
        self.layer = layer
        self.inputs = list(inputs)
        self.multi_input = multi_input
        self.outputs = [SymbolicTensor(shape, self, i) for i, shape in enumerate(output_shapes)]

    def __repr__(self):
        return f"<Node {self.layer.name!r} ({type(self.layer).__name__})>"


# ---------------------------------------------------------------------------------- helpers
class ActivationSpec(NamedTuple):
    """An activation as the kernels take it: its name, code (None for softmax), parameter
    (leaky_relu's slope, elu's alpha) and whether its backward needs the forward input (GELU's
    derivative is not a function of its output)."""

    name: object
    code: object
    alpha: object
    needs_input: bool

    @property
    def softmax(self):
        return self.code is None


def _activation(name, owner, alpha=None):
    """The ActivationSpec for an activation name (ValueError naming the known ones)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        known = ", ".join(repr(k) for k in ACTIVATIONS if k is not None)
        raise ValueError(f"{owner}: unknown activation {name!r}; known: None, {known}")
    code = ACTIVATIONS[key]
    if alpha is None:
        alpha = _DEFAULT_ALPHA.get(key)
    elif key not in _DEFAULT_ALPHA:
        raise ValueError(f"{owner}: activation {key!r} takes no parameter, got {alpha!r}")
    else:
        alpha = float(alpha)
        if not alpha >= 0.0 or alpha == float("inf"):
            raise ValueError(f"{owner}: the {key} parameter must be a finite number >= 0, got {alpha!r}")
    return ActivationSpec(key, code, alpha, code in (6, 7))


def _pair(value, what, owner):
    """An int or an (h, w) pair of positive ints -> (h, w)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: {what} must be an int or an (h, w) pair, got {value!r}") from None
        if len(pair) != 2:
            raise ValueError(f"{owner}: {what} must be an int or an (h, w) pair, got {value!r}")
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{owner}: {what} must be positive, got {value!r}")
    return pair


def _check_padding(padding, owner):
    """Validate a padding argument: "valid", "same", an int or an (h, w) pair (>= 0)."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"{owner}: padding must be 'valid', 'same', an int or an (h, w) pair, "
                             f"got {padding!r}")
        return padding.lower()
    try:
        values = (padding, padding) if isinstance(padding, (int, np.integer)) else tuple(padding)
        ok = len(values) == 2 and all(int(v) >= 0 for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{owner}: padding must be 'valid', 'same', an int or an (h, w) pair of "
                         f"non-negative ints, got {padding!r}")
    return int(values[0]) if values[0] == values[1] else (int(values[0]), int(values[1]))


def _check_data_format(data_format, owner):
    if data_format not in (None, "channels_first", "channels_last"):
        raise ValueError(f"{owner}: data_format must be None, 'channels_first' or 'channels_last', "
                         f"got {data_format!r}")
    return data_format


def _init_config(init):
    """An initialiser's config for saving; a plain callable is saved as the default (a loaded
    model gets its weights from the file anyway)."""
    return init.get_config() if hasattr(init, "get_config") else "glorot_uniform"


def _out_size(n, k, s, before, after, d=1):
    return (n + before + after - d * (k - 1) - 1) // s + 1


def _as_batch(x, owner):
    """x as contiguous float32 (a NumPy array), or the CUDA tensor itself."""
    if is_device_tensor(x):
        return x
    if isinstance(x, SymbolicTensor):
        return x
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: input must be a real numeric array, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------------- Layer
class Layer:
    """Base class of every layer.

    A built layer has ``input_shape`` and ``output_shape`` (per sample, NCHW order) and
    ``params``, its weight arrays (updated in place by the optimiser). Subclasses list their
    weight attributes in ``_param_names`` (non-trainable state such as running statistics in
    ``_state_names``) and implement ``_build(input_shape) -> output_shape``,
    ``forward(ctx, x) -> (y, saved)`` and ``backward(ctx, saved, dy, need_dx, grads) -> dx``.
    Layers of several inputs (Add, Concatenate) set ``_multi_input`` and take and return lists.

    trainable: False freezes the layer's weights in fit and train_on_batch (read when the model
    is compiled, as in Keras); no weight gradient is computed for a frozen layer.
    """

    _param_names: tuple = ()
    _state_names: tuple = ()
    _base_name = "layer"
    _multi_input = False

    def __init__(self, name=None, input_shape=None, data_format=None, trainable=True):
        self.name = name
        self.data_format = _check_data_format(data_format, type(self).__name__)
        if input_shape is not None:
            input_shape = tuple(int(d) for d in input_shape)
        self.declared_input_shape = input_shape  # as the user wrote it (HWC if channels_last)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._trainable = bool(trainable)
        self._explicit_format = data_format is not None
        self._rng = None

    # --- identity -------------------------------------------------------------------------
    @property
    def _owner(self):
        return f"{type(self).__name__} {self.name!r}" if self.name else type(self).__name__

    def __repr__(self):
        shape = f", output_shape={self.output_shape}" if self.built else ""
        return f"<{type(self).__name__} name={self.name!r}{shape}>"

    @property
    def trainable(self):
        """Whether fit and train_on_batch update this layer's weights (read at compile time)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    # --- building -------------------------------------------------------------------------
    def channels_first_shape(self, shape):
        """A per-sample shape as this layer was told it (HWC if channels_last) -> NCHW order."""
        shape = tuple(int(d) for d in shape)
        if self.data_format == "channels_last" and len(shape) == 3:
            return (shape[2], shape[0], shape[1])
        return shape

    def build(self, input_shape, rng=None):
        """Resolve shapes and create the weights for per-sample ``input_shape`` (NCHW order; a
        list of shapes for a layer of several inputs). Returns the per-sample output shape.

        rng: a numpy Generator for the initial weights (and dropout); a fresh one if None.
        """
        if self._multi_input:
            input_shape = [tuple(int(d) for d in s) for s in input_shape]
        else:
            input_shape = tuple(int(d) for d in input_shape)
        self._rng = rng if rng is not None else _fresh_rng()
        output_shape = tuple(int(d) for d in self._build(input_shape))
        if any(d < 1 for d in output_shape):
            raise ValueError(f"{self._owner}: input shape {input_shape} gives an empty output "
                             f"{output_shape}; the input is too small for this layer")
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.built = True
        return self.output_shape

    def _build(self, input_shape):
        return input_shape

    def compute_output_shape(self, input_shape):
        """The per-sample output shape for ``input_shape`` (builds the layer if it is not)."""
        if not self.built:
            return self.build(input_shape)
        if self._multi_input:
            same = [tuple(s) for s in input_shape] == list(self.input_shape)
        else:
            same = tuple(input_shape) == self.input_shape
        if not same:
            raise ValueError(f"{self._owner}: input has per-sample shape {tuple(input_shape)} but the "
                             f"layer was built for {self.input_shape}")
        return self.output_shape

    def _require_image(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self._owner}: expects image input (N, C, H, W) but got per-sample "
                             f"shape {input_shape} (inputs of shape {('N',) + tuple(input_shape)})")

    # --- weights --------------------------------------------------------------------------
    # Every call of a layer reads its weight list (Context.weights), so the list is kept and
    # made again only after one of its attributes is assigned.
    def __setattr__(self, name, value):
        if name in self._param_names or name == "_param_names":
            self.__dict__.pop("_param_list", None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name in self._param_names or name == "_param_names":
            self.__dict__.pop("_param_list", None)
        object.__delattr__(self, name)

    def _params_now(self):
        """``params`` without the copy: the kept list, not to be changed by the caller."""
        kept = self.__dict__.get("_param_list")
        if kept is None:
            kept = [getattr(self, n) for n in self._param_names if getattr(self, n, None) is not None]
            self.__dict__["_param_list"] = kept
        return kept

    @property
    def params(self):
        """The weight arrays (kernel, then bias where present), fastconv layout."""
        return list(self._params_now())

    @property
    def state(self):
        """Non-trainable state arrays (running statistics), saved with the weights."""
        return [getattr(self, n) for n in self._state_names if getattr(self, n, None) is not None]

    @property
    def weights(self):
        """Every weight array: ``params`` then ``state`` (Keras's order for its layers)."""
        return self.params + self.state

    @property
    def trainable_weights(self):
        """``params`` when the layer is trainable, else []."""
        return self.params if self.trainable else []

    @property
    def non_trainable_weights(self):
        """``state``, plus ``params`` when the layer is frozen."""
        return self.state + ([] if self.trainable else self.params)

    @property
    def layers(self):
        """The layers inside this one ([] for a plain layer; a Model lists its own)."""
        return []

    def _new_weight(self, initializer, shape, fan_in, fan_out):
        """A weight array of ``shape`` drawn by ``initializer`` from the build's generator
        (float32, contiguous); a broadcast zero under ``shape_only()``."""
        if shapes_only_active():
            return np.broadcast_to(np.float32(0.0), tuple(int(d) for d in shape))
        return np.ascontiguousarray(initializer(shape, fan_in, fan_out, self._rng), np.float32)

    def _set_params(self, arrays):
        """Rebind the weight attributes (used by a model to place them in one flat buffer)."""
        names = [n for n in self._param_names if getattr(self, n, None) is not None]
        for n, a in zip(names, arrays):
            setattr(self, n, a)

    def count_params(self):
        """Number of weights (for a masked Conv2D, only the connected ones; state included)."""
        return int(sum(p.size for p in self.weights))

    def get_weights(self):
        """Copies of the weights (``weights`` order) in fastconv's layout (conv OIHW, dense
        (out, in))."""
        return [np.array(w, copy=True) for w in self.weights]

    def set_weights(self, weights):
        """Set the weights from arrays in fastconv's layout, in the order of ``get_weights``.

        The arrays are copied into the layer's own buffers (so an optimiser keeps working).
        """
        self._check_built("set_weights")
        weights = list(weights)
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(f"{self._owner}: set_weights got {len(weights)} arrays, expected "
                             f"{len(mine)} (shapes {[tuple(p.shape) for p in mine]})")
        for i, (p, w) in enumerate(zip(mine, weights)):
            w = np.asarray(w, dtype=np.float32)
            if w.shape != p.shape:
                raise ValueError(f"{self._owner}: set_weights array {i} has shape {w.shape}, "
                                 f"expected {p.shape}")
            np.copyto(p, w)
        self._after_set_weights()

    def _after_set_weights(self):
        pass

    # PyTorch's layouts are fastconv's layouts.
    def get_weights_pytorch(self):
        """Weights in PyTorch's layout (Conv2d weight OIHW, Linear weight (out, in)): as get_weights."""
        return self.get_weights()

    def set_weights_pytorch(self, weights):
        """Set weights from PyTorch's layout (Conv2d weight OIHW, Linear weight (out, in))."""
        self.set_weights(weights)

    def get_weights_keras(self):
        """Weights in Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        return self.get_weights()

    def set_weights_keras(self, weights):
        """Set weights from Keras's layout (Conv2D kernel HWIO, Dense kernel (in, out))."""
        self.set_weights(weights)

    def _check_built(self, what):
        if not self.built:
            raise RuntimeError(f"{self._owner}: {what} before the layer is built; call it on an input "
                               "or give input_shape= and build the model first")

    # --- the per-call protocol -------------------------------------------------------------
    def forward(self, ctx, x):
        """(y, saved): the output for x (N, ...) and what ``backward`` needs (None if nothing).

        Reads the weights with ``ctx.weights(self)``; never writes to the layer.
        """
        raise NotImplementedError

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        """dx from dy (the gradient of the loss w.r.t. this layer's output) and ``saved``.

        grads: arrays to write the weight gradients into (``params`` order), or None when they
        are not needed (a frozen layer). need_dx=False lets a layer skip computing an unused dx
        (then it returns None).
        """
        raise NotImplementedError

    # A loss that applies the model's final activation itself (softmax with cross-entropy,
    # sigmoid with binary cross-entropy) runs the last layer without it: the layer names the
    # activation it ends with, and runs forward/backward to and from its pre-activation logits.
    final_activation = None

    def forward_logits(self, ctx, x):
        """(logits, saved): the output before ``final_activation``."""
        raise NotImplementedError(f"{self._owner} has no separable final activation")

    def backward_logits(self, ctx, saved, dlogits, need_dx=True, grads=None):
        """dx from the gradient w.r.t. the logits ``forward_logits`` returned."""
        raise NotImplementedError(f"{self._owner} has no separable final activation")

    # --- calling ----------------------------------------------------------------------------
    def __call__(self, x, training=False):
        """On arrays: run the layer on a batch (building it from x's shape on the first call);
        NHWC in and out if data_format is "channels_last". On symbolic tensors: record a node of
        a graph and return its symbolic output."""
        inputs = list(x) if self._multi_input else [x]
        if self._multi_input and not isinstance(x, (list, tuple)):
            raise TypeError(f"{self._owner}: takes a list of inputs, got {type(x).__name__}")
        if any(isinstance(t, SymbolicTensor) for t in inputs):
            return self._call_symbolic(inputs)
        return self._call_eager(inputs, training)

    def _call_symbolic(self, inputs):
        for t in inputs:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"{self._owner}: mixes symbolic tensors with {type(t).__name__}; "
                                "call a layer on symbolic tensors only (fastconv.Input) or on "
                                "arrays only")
        shapes = [t.per_sample_shape for t in inputs]
        try:
            out = self.compute_output_shape(shapes if self._multi_input else shapes[0])
        except ValueError as err:
            raise ValueError(f"{err}") from None
        node = Node(self, inputs, [out], self._multi_input)
        return node.outputs[0]

    def _call_eager(self, inputs, training):
        xs = [_as_batch(t, self._owner) for t in inputs]
        channels_last = self.data_format == "channels_last" and all(
            len(t.shape) == 4 for t in xs)
        if channels_last:
            xs = [np.ascontiguousarray(t.transpose(0, 3, 1, 2)) if isinstance(t, np.ndarray) else t
                  for t in xs]
        shapes = [tuple(t.shape[1:]) for t in xs]
        self.compute_output_shape(shapes if self._multi_input else shapes[0])
        ctx = Context(training, backend_for(xs[0]))
        y, _ = self.forward(ctx, xs if self._multi_input else xs[0])
        if channels_last and len(y.shape) == 4 and isinstance(y, np.ndarray):
            y = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
        return y

    def gradients(self, x, dy, training=True):
        """One forward and backward pass of this layer alone, NCHW: returns LayerGradients(y,
        dx, grads) with the weight gradients in ``params`` order (for gradient checks and
        teaching; models use forward/backward with their own tape)."""
        xs = [_as_batch(t, self._owner) for t in x] if self._multi_input else [_as_batch(x, self._owner)]
        shapes = [tuple(t.shape[1:]) for t in xs]
        self.compute_output_shape(shapes if self._multi_input else shapes[0])
        be = backend_for(xs[0])
        ctx = Context(training, be)
        y, saved = self.forward(ctx, xs if self._multi_input else xs[0])
        dy = _as_batch(dy, self._owner)
        if tuple(dy.shape) != tuple(y.shape):
            raise ValueError(f"{self._owner}: dy has shape {tuple(dy.shape)} but the output has "
                             f"shape {tuple(y.shape)}")
        grads = [be.zeros(p.shape) for p in self.params]
        dx = self.backward(ctx, saved, dy, True, grads)
        return LayerGradients(y, dx, grads)

    # --- serialisation ----------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments as a JSON-able dict."""
        config = {"name": self.name}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        if self.data_format is not None:
            config["data_format"] = self.data_format
        if not self._trainable:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config):
        """Build an (unbuilt) layer from ``get_config``'s dict."""
        return cls(**config)


# ---------------------------------------------------------------------------------- Input
class InputLayer(Layer):
    """The start of a graph: holds the per-sample shape of one model input (NCHW order)."""

    _base_name = "input_layer"

    def __init__(self, shape, name=None):
        super().__init__(name=name)
        shape = tuple(int(d) for d in shape)
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"Input: shape must be a non-empty tuple of positive sizes (per "
                             f"sample, without the batch), got {shape}")
        self.build(shape)
        self.output_tensor = Node(self, [], [shape], False).outputs[0]
        self.output_tensor.name = name

    def _build(self, input_shape):
        return input_shape

    def forward(self, ctx, x):
        return x, None

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        return dy

    def get_config(self):
        return {"name": self.name, "shape": list(self.output_shape)}

    @classmethod
    def from_config(cls, config):
        return cls(config["shape"], name=config.get("name"))


def check_image_layout(shape, channels_last, owner):
    """Refuse a per-sample image shape that looks written for the other layout: (28, 28, 1)
    read channels-first is 28 channels of 28x1 pixels, almost surely a mistake. ``shape`` is as
    the user wrote it. A data_format given explicitly skips this check (the caller's choice)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3:
        return
    a, b, c = shape
    if not channels_last and c in (1, 3, 4) and a > 4 and b > 4 and a > c:
        raise ValueError(
            f"{owner}: input shape {shape} looks channels-last (H, W, C) = {shape}, but this model "
            f"is channels-first and would read it as {a} channels of {b}x{c} pixels. Give the "
            f"shape as {(c, a, b)}, or pass data_format='channels_last' (fastconv.keras layers are "
            "channels-last by default)")
    if channels_last and a in (1, 3, 4) and b > 4 and c > 4 and c > a:
        raise ValueError(
            f"{owner}: input shape {shape} looks channels-first (C, H, W) = {shape}, but this model "
            f"is channels-last and would read it as {c} channels of {a}x{b} pixels. Give the shape "
            f"as {(b, c, a)}, or pass data_format='channels_first'")


def Input(shape, name=None, data_format=None):  # noqa: N802 (Keras's name)
    """A symbolic model input of per-sample ``shape`` (without the batch axis).

    fastconv.layers are channels-first: an image input is (C, H, W). data_format=
    "channels_last" takes the shape as (H, W, C) and stores it channels-first (the model then
    takes NHWC arrays and converts them once at its boundary).
    """
    data_format = _check_data_format(data_format, "Input")
    shape = tuple(int(d) for d in shape)
    if data_format is None:
        check_image_layout(shape, False, "Input")
    if data_format == "channels_last" and len(shape) == 3:
        shape = (shape[2], shape[0], shape[1])
    layer = InputLayer(shape, name=name)
    layer.data_format = data_format
    return layer.output_tensor

