"""Models as graphs: the functional API, subclassed models, and Sequential as the chain case.

    inputs = fastconv.Input((1, 28, 28))
    x = Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = Add()([x, Conv2D(16, 3, padding="same", activation="relu")(x)])     # a residual block
    outputs = Dense(10)(Flatten()(MaxPool2D(2)(x)))
    model = fastconv.Model(inputs, outputs, seed=0)

    class Net(fastconv.Model):                 # traced into the same graph on its first call
        def __init__(self):
            super().__init__()
            self.conv = Conv2D(8, 3, activation="relu")
            self.head = Dense(10)
        def call(self, x):
            return self.head(Flatten()(self.conv(x)))

    model = Sequential([Conv2D(8, 3), Flatten(), Dense(10)], input_shape=(1, 28, 28))

A model is a layer: it can be called on symbolic tensors inside another model (its nodes are
inlined when the outer model runs, so a layer shared between them keeps one set of weights).
Compiling, training, evaluating and predicting are in fastconv.models.training; saving in
fastconv.models.saving.

Weights. When a model is built, the weights of its layers that no model holds yet move into one
flat float32 buffer (each layer's kernel and bias become views into it), so an optimiser step
is one kernel call over the whole buffer. ``trainable`` flags are read at ``compile``: the
weights of the layers trainable then are the ones ``fit`` and ``train_on_batch`` update (as in
Keras 2, which is what lets a GAN freeze its discriminator inside the combined model while the
discriminator, compiled alone before, still trains).
"""
from __future__ import annotations

import inspect
import threading

import numpy as np

from ..backend import CPU, backend_for, is_device_tensor
from ..layers import base as B
from . import graph as G

__all__ = ["Model", "Sequential"]


def _unique_name(layer, taken, counts):
    """Give ``layer`` Keras's kind of name (conv2d, conv2d_1, ...) unique within ``taken``."""
    base = layer._base_name
    count = counts.get(base, 0)
    name = base if count == 0 else f"{base}_{count}"
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    counts[base] = count + 1
    layer.name = name


class _TrainingFlag:
    """What a subclassed model's call() gets as ``training`` while it is traced: usable as an
    argument to layers, refused in Python control flow (the graph serves both modes)."""

    def __bool__(self):
        raise B.TracingError(
            "call() branches on `training`: fastconv traces call() once into a graph that serves "
            "both training and inference. Pass training= through to layers (Dropout and friends "
            "already behave differently in training) instead of branching on it")

    def __repr__(self):
        return "<training: decided when the graph runs>"


def _pack(layers):
    """Move the params of layers not yet packed into one new flat buffer (views into it)."""
    if B.shapes_only_active():
        return
    fresh = [layer for layer in layers if layer.params and not _is_packed(layer)]
    total = sum(p.size for layer in fresh for p in layer.params)
    if not fresh:
        return
    flat = np.empty(total, dtype=np.float32)
    offset = 0
    for layer in fresh:
        views, offsets = [], []
        for p in layer.params:
            view = flat[offset:offset + p.size].reshape(p.shape)
            view[...] = p
            views.append(view)
            offsets.append(offset)
            offset += p.size
        layer._set_params(views)
        layer._packed = (flat, offsets)


def _is_packed(layer):
    packed = getattr(layer, "_packed", None)
    return packed is not None and all(p.base is packed[0] for p in layer.params)


class Model(B.Layer):
    """A graph of layers from ``inputs`` to ``outputs`` (fastconv.Input and the symbolic
    tensors layers return), or, subclassed without them, the graph traced from ``call``.

    inputs, outputs: a symbolic tensor or a list of them. name: the model's name. seed: makes a
    run repeatable: the initial weights of layers not yet initialised by a seeded model, the
    shuffling and dropout draw from generators seeded by it.
    """

    _base_name = "functional"

    def __init__(self, inputs=None, outputs=None, name=None, seed=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._init_model_state(seed)
        if inputs is None and outputs is None:
            if type(self).call is Model.call:
                raise TypeError("Model: give inputs and outputs (the functional API), or subclass "
                                "Model and define call()")
            self._base_name = _snake(type(self).__name__)
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: give both inputs and outputs")
        self._init_graph(inputs, outputs)
        if seed is not None:
            self._seed_weights()

    def _init_model_state(self, seed):
        self.seed = seed
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._init_seed, self._shuffle_rng = seeds[0], np.random.default_rng(seeds[1])
        self._graph = None
        self._plans = {}
        self._training_thread = None
        self.optimizer = None
        self.loss = None
        self.losses = []
        self.metrics = []
        self.stop_training = False
        self.history = None
        self._compiled_trainable = None
        self._trainer = None
        self._cuda_trainer = None
        self.data_format = None
        self._single_input = self._single_output = True
        self._multi_input = False

    @property
    def _owner(self):
        return type(self).__name__

    # --- the graph ---------------------------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        ins = [inputs] if self._single_input else list(inputs)
        outs = [outputs] if self._single_output else list(outputs)
        self._graph = G.Graph(ins, outs, type(self).__name__)
        self._multi_input = not self._single_input
        taken = {layer.name for layer in self._graph.layers if layer.name}
        counts = {}
        for layer in self._graph.layers:
            if layer.name is None:
                _unique_name(layer, taken, counts)
                taken.add(layer.name)
        formats = {getattr(t.node.layer, "data_format", None) for t in ins}
        if self.data_format is None and "channels_last" in formats:
            self.data_format = "channels_last"
        self.input_shape = [t.per_sample_shape for t in ins]
        self.output_shape = [t.per_sample_shape for t in outs]
        if self._single_input:
            self.input_shape = self.input_shape[0]
        if self._single_output:
            self.output_shape = self.output_shape[0]
        self._plans = {}
        self.built = True
        _pack(self._graph.primitive_layers())

    def _seed_weights(self):
        """Initialise, from this model's seed and in running order, the layers that no seeded
        model has initialised (their weights were drawn when the graph was first built)."""
        rng = np.random.default_rng(self._init_seed)
        for layer in self._graph.primitive_layers():
            if not getattr(layer, "_seeded", False) and layer.built:
                shape = layer.input_shape
                layer.built = False
                packed = getattr(layer, "_packed", None)
                layer.build(shape, rng)
                if packed is not None:  # keep the flat buffer: copy the new values into it
                    flat, offsets = packed
                    for p, off in zip(layer.params, offsets):
                        flat[off:off + p.size] = p.ravel()
                    layer._set_params([flat[o:o + p.size].reshape(p.shape)
                                       for p, o in zip(layer.params, offsets)])
                layer._seeded = True

    @property
    def layers(self):
        """The model's own layers (input layers first for a functional model; a nested model
        is one entry), in running order."""
        if self._graph is None:
            return []
        return list(self._graph.layers)

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at ``index`` of ``layers``)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self._owner}: no layer named {name!r}; layers: "
                         f"{', '.join(str(layer.name) for layer in self.layers)}")

    def _primitive_layers(self):
        self._require_built("layers")
        return self._graph.primitive_layers()

    # --- trainable ---------------------------------------------------------------------------
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Set the flag on the model and on every layer inside it (as Keras does)."""
        self._trainable = bool(value)
        for layer in self.layers:
            if not isinstance(layer, B.InputLayer):
                layer.trainable = value

    def _trainable_layers(self):
        """The primitive layers whose weights train now: trainable, inside trainable models."""
        out, seen = [], set()

        def walk(model, on):
            for layer in model.layers:
                if isinstance(layer, B.InputLayer):
                    continue
                flag = on and layer.trainable
                if isinstance(layer, Model):
                    walk(layer, flag)
                elif flag and layer.params and id(layer) not in seen:
                    seen.add(id(layer))
                    out.append(layer)

        walk(self, self.trainable)
        return out

    # --- weights -----------------------------------------------------------------------------
    def _params_now(self):
        return self.params

    @property
    def params(self):
        """Every trainable-kind weight array of the model, layer by layer (running order)."""
        if not self.built:
            return []
        return [p for layer in self._graph.primitive_layers() for p in layer.params]

    @property
    def state(self):
        if not self.built:
            return []
        return [s for layer in self._graph.primitive_layers() for s in layer.state]

    @property
    def weights(self):
        """Every weight array, layer by layer (each layer's params, then its state)."""
        if not self.built:
            return []
        return [w for layer in self._graph.primitive_layers() for w in layer.weights]

    @property
    def trainable_weights(self):
        """The weights ``fit`` updates now (trainable layers inside trainable models)."""
        return [p for layer in self._trainable_layers() for p in layer.params]

    @property
    def non_trainable_weights(self):
        train = {id(p) for p in self.trainable_weights}
        return [w for w in self.weights if id(w) not in train]

    def get_weights(self):
        """Copies of every weight, in ``weights`` order, each layer's get_weights: fastconv's
        layout (conv OIHW, dense (out, in)), or Keras's for fastconv.keras layers."""
        self._require_built("get_weights")
        return [w for layer in self._graph.primitive_layers() for w in layer.get_weights()]

    def set_weights(self, weights):
        """Set every weight from a list in get_weights() order and layout (copied in place)."""
        self._require_built("set_weights")
        weights = list(weights)
        layers = self._graph.primitive_layers()
        expected = sum(len(layer.weights) for layer in layers)
        if len(weights) != expected:
            raise ValueError(f"{self._owner}.set_weights: got {len(weights)} arrays, the model has "
                             f"{expected} weight arrays")
        at = 0
        for layer in layers:
            k = len(layer.weights)
            layer.set_weights(weights[at:at + k])
            at += k

    def count_params(self):
        """Total number of weights (masked Conv2D weights not counted; shared layers once)."""
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self._graph.primitive_layers())

    def _require_built(self, what):
        if not self.built:
            try:
                self.build()
            except (ValueError, TypeError):
                raise RuntimeError(f"{self._owner}.{what}: the model is not built yet and its input "
                                   "shape is unknown; give input_shape= or call it on data first") from None

    # --- building ----------------------------------------------------------------------------
    def build(self, input_shape=None):
        """Build the model for per-sample ``input_shape`` (NCHW order; a list for several
        inputs). A functional model is built already; a subclassed one is traced here."""
        if self.built:
            return
        if input_shape is None:
            raise ValueError(f"{self._owner}.build: the input shape is unknown; pass input_shape= "
                             "or call the model on data")
        self._trace(input_shape)

    def _trace(self, input_shape):
        """Run ``call`` once on symbolic inputs of per-sample ``input_shape``: its graph."""
        multi = isinstance(input_shape, (list, tuple)) and input_shape and \
            isinstance(input_shape[0], (list, tuple))
        shapes = [tuple(s) for s in input_shape] if multi else [tuple(input_shape)]
        inputs = [B.Input(s) for s in shapes]
        kwargs = {}
        params = inspect.signature(self.call).parameters
        if "training" in params:
            kwargs["training"] = _TrainingFlag()
        try:
            outputs = self.call(inputs if multi else inputs[0], **kwargs)
        except B.TracingError as err:
            raise B.TracingError(f"{type(self).__name__}.call: {err}") from None
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for o in outs:
            if not isinstance(o, B.SymbolicTensor):
                raise B.TracingError(
                    f"{type(self).__name__}.call returned {type(o).__name__}, not the output of a "
                    "layer: call() must compute its result with fastconv layers, which fastconv "
                    "traces into a graph (NumPy or Python arithmetic on the input cannot be traced)")
        self._init_graph(inputs if multi else inputs[0], outputs)
        if self.seed is not None:
            self._seed_weights()

    def _build_for(self, input_shape):
        """Build (trace) for per-sample, channels-first ``input_shape`` if not built yet."""
        if not self.built:
            self._trace(input_shape)

    def call(self, inputs, training=None):
        """A subclass's computation, written with layers; traced once into the model's graph."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        self._build_for(input_shape)
        given = [tuple(s) for s in input_shape] if self._multi_input else tuple(input_shape)
        mine = [tuple(s) for s in self.input_shape] if self._multi_input else tuple(self.input_shape)
        if given != mine:
            raise ValueError(f"{self._owner}: called on per-sample shape {given} but it was built "
                             f"for {mine}")
        return self.output_shape

    # --- as a layer --------------------------------------------------------------------------
    def _call_symbolic(self, inputs):
        shapes = [t.per_sample_shape for t in inputs]
        self._build_for(shapes if len(shapes) > 1 else shapes[0])
        self.compute_output_shape(shapes if self._multi_input else shapes[0])
        outs = self.output_shape if not self._single_output else [self.output_shape]
        node = B.Node(self, inputs, outs, self._multi_input)
        return node.outputs[0] if self._single_output else node.outputs

    def __call__(self, x, training=False):
        """On arrays: the model's outputs for one batch (no batching; NHWC out for a
        channels_last model). On symbolic tensors: this model as a node of another graph."""
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        if any(isinstance(t, B.SymbolicTensor) for t in inputs):
            return self._call_symbolic(inputs)
        from . import training as T

        xs = T.prepare_inputs(self, x, "__call__")
        self._check_not_training_elsewhere("__call__")
        plan = self._plan("call" if training else "predict")
        ctx = B.Context(training, backend_for(xs[0]))
        outs, _ = G.forward(plan, ctx, xs, False)
        return T.user_outputs(self, outs)

    _INFERENCE = ("predict", "evaluate")   # plans that fold batch normalisation

    def _plan(self, purpose, feeds=None, trainable=None, input_grads=False, key=()):
        """The cached Plan for a purpose ("call", "train", "predict", ...); ``key`` names the
        feeds (the losses they come from). Inference plans fold batch normalisation into the
        layer before it."""
        cache_key = (purpose, key, None if trainable is None else frozenset(trainable), input_grads)
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = self._plans[cache_key] = G.Plan(
                self._graph, feeds, trainable, input_grads,
                fold_batch_norm=purpose in self._INFERENCE and not input_grads)
        return plan

    def forward(self, ctx, x):
        """(outputs, tape): the model run as one layer (NCHW arrays or device tensors)."""
        xs = list(x) if self._multi_input else [x]
        plan = self._plan("layer", trainable={id(layer) for layer in self._primitive_layers()},
                          input_grads=True)
        outs, tape = G.forward(plan, ctx, xs, ctx.training)
        return (outs[0] if self._single_output else outs), tape

    def backward(self, ctx, saved, dy, need_dx=True, grads=None):
        """dx (a list for several inputs) from dy and the tape ``forward`` returned; weight
        gradients go into ``grads`` (``params`` order) when given."""
        layers = self._primitive_layers()
        plan = self._plan("layer", trainable={id(layer) for layer in layers}, input_grads=True)
        douts = [dy] if self._single_output else list(dy)
        views = {}
        if grads is not None:
            at = 0
            for layer in layers:
                k = len(layer.params)
                views[id(layer)] = list(grads[at:at + k])
                at += k
        else:
            plan = self._plan("layer-frozen", trainable=set(), input_grads=True)
        dxs = G.backward(plan, ctx, list(saved), douts, views)
        if not need_dx:
            return None
        return dxs if self._multi_input else dxs[0]

    def _check_not_training_elsewhere(self, what):
        owner = self._training_thread
        if owner is not None and owner is not threading.current_thread():
            raise RuntimeError(f"{self._owner}.{what}: the model is training in another thread "
                               "(its weights change every step); wait for fit to return, or "
                               "predict with a copy of the model")

    # --- summary -----------------------------------------------------------------------------
    def summary(self, print_fn=print):
        """A table of each layer's name, type, output shape and parameter count (and, for a
        graph, the layers it reads), with the totals. Prints it (through print_fn; None to
        skip) and returns it as a string."""
        from .saving import summary_text

        self._require_built("summary")
        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    # --- the training API (fastconv.models.training) ------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                loss_weights=None):
        """Choose the optimiser (name or object), the loss (name or object; a list or dict for
        several outputs) and the metrics (a name, or a list of names or objects). Reads which
        layers are trainable (see the module docstring)."""
        from . import training as T

        T.compile_model(self, optimizer, loss, metrics, loss_weights)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_freq=1,
            device="cpu", distributed=False):
        """Train for ``epochs`` passes over (x, y); see fastconv.models.training.fit."""
        from . import training as T

        return T.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                     callbacks=callbacks, validation_split=validation_split,
                     validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
                     sample_weight=sample_weight, initial_epoch=initial_epoch,
                     steps_per_epoch=steps_per_epoch, validation_freq=validation_freq,
                     device=device, distributed=distributed)

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None,
                 return_dict=False, device="cpu"):
        """[loss, metrics...] on (x, y) in inference mode, in batches (a dict with
        return_dict=True)."""
        from . import training as T

        return T.evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                          sample_weight=sample_weight, return_dict=return_dict, device=device)

    def predict(self, x, batch_size=None, verbose=0, device="cpu"):
        """The model's outputs for x, in batches, inference mode (probabilities if it ends in a
        softmax, else logits); 4-D outputs come back NHWC if the model is channels_last."""
        from . import training as T

        return T.predict(self, x, batch_size=batch_size, verbose=verbose, device=device)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False,
                       device="cpu"):
        """One optimiser step on one batch; returns [loss, metrics...] (or a dict). device="cuda"
        runs the step on the GPU."""
        from . import training as T

        return T.train_on_batch(self, x, y, sample_weight=sample_weight, class_weight=class_weight,
                                return_dict=return_dict, device=device)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """[loss, metrics...] on one batch in inference mode (or a dict)."""
        from . import training as T

        return T.evaluate(self, x, y, batch_size=None, verbose=0, sample_weight=sample_weight,
                          return_dict=return_dict, one_batch=True)

    def predict_on_batch(self, x, device="cpu"):
        """The model's outputs for one batch, inference mode."""
        return self.predict(x, batch_size=1 << 30, device=device)

    def compute_gradients(self, x, y, training=True, sample_weight=None):
        """(loss, grads): the loss on (x, y) and its gradient w.r.t. every weight of ``params``
        (trainable or not), without updating anything. training=True runs layers in training
        mode (dropout active)."""
        from . import training as T

        return T.compute_gradients(self, x, y, training=training, sample_weight=sample_weight)

    def input_gradients(self, x, y=None, output_gradient=None, training=False):
        """d(loss)/d(input): the gradient of the compiled loss on (x, y), or, with
        ``output_gradient`` (an array per output), of sum(output * output_gradient): a saliency
        map for one class, say. Returns one array per input (an array for one input), in the
        layout x was given in."""
        from . import training as T

        return T.input_gradients(self, x, y, output_gradient=output_gradient, training=training)

    # --- saving (fastconv.models.saving) --------------------------------------------------------
    def get_config(self):
        """The architecture (and compile settings) as a JSON-able dict."""
        from .saving import model_config

        return model_config(self)

    @classmethod
    def from_config(cls, config):
        """A model (functional or Sequential) from ``get_config``'s dict."""
        from .saving import model_from_config

        return model_from_config(config)

    def save(self, path):
        """Write one .npz file, atomically: the architecture and compile settings as JSON plus
        every weight (optimiser state is not saved). Load it with fastconv.load_model."""
        from .saving import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """A model saved with ``save`` (the same as fastconv.load_model(path))."""
        from .saving import load_model

        return load_model(path)

    def save_weights(self, path):
        """Write the weights alone to a .npz file, atomically (load_weights reads them back into
        a model of the same architecture)."""
        from .saving import save_weights

        save_weights(self, path)

    def load_weights(self, path):
        """Read weights written by save_weights (or save) into this built model."""
        from .saving import load_weights

        load_weights(self, path)


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Sequential(Model):
    """A stack of layers run one after another: the graph of one chain.

    layers: a list of layers (or models), or add them one by one with ``add``.
    input_shape: the per-sample input shape, (C, H, W) or (H, W, C) if channels_last; it may
        also come from the first layer's input_shape=, or from the data on the first call.
    seed: makes a run repeatable: the initial weights, the shuffling and dropout all draw from
        generators seeded by it.
    data_format: "channels_last" if the inputs are NHWC (converted to NCHW once at the model
        boundary); defaults to the first layer's data_format, else NCHW.
    """

    _base_name = "sequential"

    def __init__(self, layers=None, input_shape=None, seed=None, data_format=None,
                 name="sequential", trainable=True):
        B.Layer.__init__(self, name=name, trainable=trainable)
        self._init_model_state(seed)
        self.data_format = B._check_data_format(data_format, "Sequential")
        self._explicit_format = data_format is not None
        self.declared_input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._layers = []
        for layer in layers or []:  # a first fastconv.Input sets the input shape (Keras 3 style)
            self.add(layer)
        if self._layers and (self.declared_input_shape or self._layers[0].declared_input_shape):
            self.build()  # as Keras: a Sequential that knows its input shape is built at once

    @property
    def layers(self):
        """The layers, in order."""
        return list(self._layers)

    def add(self, layer):
        """Append a layer (gives it a unique name if it has none). A fastconv.Input (or
        InputLayer) is accepted first, as in Keras: it sets the input shape."""
        if isinstance(layer, (B.SymbolicTensor, B.InputLayer)) and not self._layers:
            inp = layer.node.layer if isinstance(layer, B.SymbolicTensor) else layer
            if isinstance(inp, B.InputLayer):
                if inp.data_format is not None:
                    self.data_format = inp.data_format
                    self._explicit_format = True
                shape = tuple(inp.output_shape)
                if self.data_format == "channels_last" and len(shape) == 3:
                    shape = (shape[1], shape[2], shape[0])
                self.declared_input_shape = shape
                return
        if not isinstance(layer, B.Layer) or isinstance(layer, B.InputLayer):
            raise TypeError(f"Sequential.add: expected a fastconv.layers.Layer, got "
                            f"{type(layer).__name__}")
        if layer.name is None:
            taken = {other.name for other in self._layers}
            counts = {}
            for other in self._layers:
                counts[other._base_name] = counts.get(other._base_name, 0) + 1
            _unique_name(layer, taken, counts)
        self._layers.append(layer)
        self.built = False
        self._graph = None
        self._plans = {}

    @property
    def _channels_last(self):
        fmt = self.data_format
        if fmt is None and self._layers:
            fmt = self._layers[0].data_format
        return fmt == "channels_last"

    def _to_channels_first(self, shape):
        shape = tuple(int(d) for d in shape)
        if self._channels_last and len(shape) == 3:
            return (shape[2], shape[0], shape[1])
        return shape

    def build(self, input_shape=None):
        """Create every layer's weights for a per-sample ``input_shape`` (as the user writes it:
        (C, H, W), or (H, W, C) when channels_last). Called by fit/predict when needed."""
        if not self._layers:
            raise ValueError("Sequential.build: the model has no layers; add some first")
        if input_shape is None:
            input_shape = self.declared_input_shape or self._layers[0].declared_input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: the input shape is unknown; pass input_shape= to "
                             "Sequential or to the first layer, or call fit/predict on data")
        explicit = self._explicit_format or (self._layers and self._layers[0]._explicit_format)
        if not explicit:
            B.check_image_layout(input_shape, self._channels_last, "Sequential")
        shape = self._to_channels_first(input_shape)
        if self.built and shape == self.input_shape:
            return
        self._build_chain(shape)

    def _build_chain(self, shape):
        init_rng = np.random.default_rng(self._init_seed)
        inputs = B.Input(shape)
        x = inputs
        for i, layer in enumerate(self._layers):
            try:
                if not isinstance(layer, Model):
                    here = tuple(x.per_sample_shape)
                    if not layer.built or layer.input_shape != here:
                        layer.build(here, init_rng)
                        layer._seeded = self.seed is not None
                x = layer(x)
            except ValueError as err:
                raise ValueError(f"Sequential: layer {i} ({layer.name}): {err}") from None
        self._graph = G.Graph([inputs], [x], "Sequential")
        self._plans = {}
        self.input_shape = shape
        self.output_shape = x.per_sample_shape
        self.built = True
        _pack(self._graph.primitive_layers())
        if self.optimizer is not None:
            self.optimizer.reset()
        self._trainer = None
        self._cuda_trainer = None

    def _build_for(self, input_shape):
        shape = tuple(input_shape)
        if not self.built or shape != self.input_shape:
            self._build_chain(shape)

    def _trace(self, input_shape):
        self._build_chain(tuple(input_shape))

    def get_config(self):
        from .saving import model_config

        return model_config(self)
