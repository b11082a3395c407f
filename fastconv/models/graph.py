"""A model's graph, and the executor that runs it forward and backward over a tape.

Building. ``Graph(inputs, outputs)`` walks back from the output symbolic tensors to the inputs
and orders the nodes so that each comes after the nodes it reads (a Sequential is the chain
case). A node whose layer is itself a model is *flattened*: its own nodes are inlined, so the
executor only ever runs primitive layers, and a layer shared between the outer and an inner
model is still one layer with one set of weights.

Running. A :class:`Plan` turns the flattened graph into steps: one per primitive node, with
two rewrites that change nothing in the results:
  * a ZeroPadding2D whose only reader is a Conv2D runs as one convolution with the padding
    summed (one copy of the batch cheaper);
  * when a loss applies the model's final activation itself (softmax with cross-entropy), the
    output node runs to its logits.
Every tensor of the graph has a slot; ``forward`` fills the slots in step order and returns the
outputs and a tape (each step's ``saved``); ``backward`` walks the steps in reverse, adds the
gradients of a slot read by several steps, writes each layer's weight gradients into the views
it is given (a layer used twice gets the sum) and zeroes those of layers the loss did not reach.

Nothing here keeps per-call state: the tape belongs to the caller.
"""
from __future__ import annotations

from ..layers import base as B
from ..layers.convolution import Conv2D
from ..layers.reshaping import ZeroPadding2D

__all__ = ["Graph", "Plan", "forward", "backward"]

_MAX_NESTING = 64


class Graph:
    """The nodes between some input and output symbolic tensors, in an order that runs.

    inputs, outputs: lists of SymbolicTensor. ``nodes`` excludes the inputs' own nodes;
    ``layers`` lists each layer once (input layers first, then in node order).
    """

    def __init__(self, inputs, outputs, owner="Model"):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        for what, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not tensors:
                raise ValueError(f"{owner}: {what} must name at least one symbolic tensor")
            for t in tensors:
                if not isinstance(t, B.SymbolicTensor):
                    raise TypeError(f"{owner}: {what} must be symbolic tensors (fastconv.Input and "
                                    f"layer outputs), got {type(t).__name__}")
        for t in self.inputs:
            if not isinstance(t.node.layer, B.InputLayer):
                raise ValueError(f"{owner}: every input must come from fastconv.Input(), but one was "
                                 f"made by layer {t.node.layer.name!r}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"{owner}: the same Input is listed twice in inputs")
        input_nodes = {id(t.node) for t in self.inputs}
        order, seen = [], set()
        stack = [(t.node, False) for t in reversed(self.outputs)]
        while stack:  # iterative post-order DFS: deep chains do not hit the recursion limit
            node, expanded = stack.pop()
            if id(node) in seen:
                continue
            if expanded:
                seen.add(id(node))
                order.append(node)
                continue
            if isinstance(node.layer, B.InputLayer) and id(node) not in input_nodes:
                raise ValueError(f"{owner}: an output depends on Input {node.layer.name!r}, which is "
                                 "not among the model's inputs")
            stack.append((node, True))
            for t in reversed(node.inputs):
                if id(t.node) not in seen:
                    stack.append((t.node, False))
        self.nodes = [n for n in order if not isinstance(n.layer, B.InputLayer)]
        layers, seen_layers = [], set()
        for t in self.inputs:
            layers.append(t.node.layer)
            seen_layers.add(id(t.node.layer))
        for n in self.nodes:
            if id(n.layer) not in seen_layers:
                seen_layers.add(id(n.layer))
                layers.append(n.layer)
        self.layers = layers

    def primitive_layers(self, depth=0):
        """Every non-model layer reached, each once, in running order (nested models opened)."""
        if depth > _MAX_NESTING:
            raise ValueError(f"models nested more than {_MAX_NESTING} deep")
        out, seen = [], set()
        for layer in self.layers:
            if isinstance(layer, B.InputLayer):
                continue
            inner = getattr(layer, "_graph", None)
            found = inner.primitive_layers(depth + 1) if inner is not None else [layer]
            for leaf in found:
                if id(leaf) not in seen:
                    seen.add(id(leaf))
                    out.append(leaf)
        return out


class Step:
    """One primitive layer call of a plan: read ``inputs`` slots, write the ``output`` slot.

    Once the plan is final, ``bind`` fixes what the executor calls, so its loops do no lookups:
    ``fwd(ctx, x) -> (y, saved)`` and ``bwd(ctx, saved, dy, need_dx, grads) -> dx`` (the
    layer's own methods, or its logits or fused-padding forms), ``single`` (one input, passed
    as itself), ``frees`` (the slots nobody reads after this step), ``grad_key`` (the layer's
    id where its weight gradients are wanted, else None) and ``need_any``.
    """

    __slots__ = ("layer", "inputs", "output", "kind", "pad", "need_dx", "run_backward", "bn",
                 "fwd", "bwd", "single", "frees", "grad_key", "need_any")

    def __init__(self, layer, inputs, output):
        self.layer = layer
        self.inputs = inputs
        self.output = output
        self.kind = "layer"        # or "logits", "padded_conv"
        self.pad = None            # the fused padding of a "padded_conv" step
        self.bn = None             # an inference BatchNormalization folded into this step
        self.need_dx = [True] * len(inputs)
        self.run_backward = True

    def bind(self, frees, grad_key):
        layer = self.layer
        self.single = not layer._multi_input
        self.frees = frees
        self.grad_key = grad_key
        self.need_any = any(self.need_dx)
        if self.kind == "layer":
            self.fwd, self.bwd = layer.forward, layer.backward
        elif self.kind == "logits":
            self.fwd, self.bwd = layer.forward_logits, layer.backward_logits
        else:
            self.fwd, self.bwd = self._forward_padded, layer.backward_padded
        if self.bn is not None:
            self.fwd = self._forward_folded

    def _forward_padded(self, ctx, x):
        return self.layer.forward_padded(ctx, x, self.pad, self.layer._act)

    def _forward_folded(self, ctx, x):
        return _folded_forward(self, ctx, x), None


def _flatten(graph, input_slots, new_slot, steps, depth=0):
    """Append the primitive steps of ``graph`` (its inputs already in ``input_slots``); return
    the slots of its outputs."""
    if depth > _MAX_NESTING:
        raise ValueError(f"models nested more than {_MAX_NESTING} deep")
    slot_of = {id(t): s for t, s in zip(graph.inputs, input_slots)}
    for node in graph.nodes:
        ins = [slot_of[id(t)] for t in node.inputs]
        inner = getattr(node.layer, "_graph", None)
        if inner is not None:
            outs = _flatten(inner, ins, new_slot, steps, depth + 1)
        else:
            outs = [new_slot()]
            steps.append(Step(node.layer, ins, outs[0]))
        for t, s in zip(node.outputs, outs):
            slot_of[id(t)] = s
    return [slot_of[id(t)] for t in graph.outputs]


def _folded_forward(step, ctx, x):
    """A convolution, transposed convolution or dense layer with the inference batch
    normalisation after it folded into its kernel and bias (fastconv.functional.fold_batch_norm):
    one op, the same numbers up to rounding."""
    from ..functional import fold_batch_norm
    from ..layers.convolution import Conv2DTranspose
    from ..layers.core import Dense

    layer, bn, be = step.layer, step.bn, ctx.backend
    w = ctx.weights(layer)
    gamma, beta = bn._gamma_beta(ctx)
    mean, var = ctx.state(bn)
    transposed = isinstance(layer, Conv2DTranspose)
    kernel, bias = fold_batch_norm(w[0], w[1] if layer.use_bias else None, gamma, beta, mean, var,
                                   bn.epsilon, axis=1 if transposed else 0)
    if isinstance(layer, Dense):
        return be.linear(x, kernel, bias, 0)
    if transposed:
        y = be.conv2d_backward_input(x, kernel, (x.shape[0],) + tuple(layer.output_shape),
                                     layer._stride, layer._pad, layer._dilation)
        be.bias_activation_(y, bias, 0)
        return y
    pad = step.pad if step.kind == "padded_conv" else layer._pad
    return be.conv2d(x, kernel, bias, layer._stride, pad, layer._dilation, 0)


class Plan:
    """How a graph runs for one purpose: its primitive steps, slots and rewrites.

    graph: the model's Graph. feeds: per output, None or a function that, given the activation
    the output's layer ends with (``final_activation``: "softmax", "sigmoid" or None), says
    what its loss takes: "fuse" (run that layer to its logits), "logits" or "output" (a loss's
    ``feed``). trainable: ids of the layers whose weight gradients are wanted (None: none,
    inference). input_grads: whether gradients reach the inputs.

    After construction, ``logits[i]`` says whether output i comes out as logits (fused, or
    because the loss reads the output as logits), ``fused[i]`` the activation fused away.
    """

    def __init__(self, graph, feeds=None, trainable=None, input_grads=False, fuse=True,
                 fold_batch_norm=False):
        counter = [0]

        def new_slot():
            counter[0] += 1
            return counter[0] - 1

        self.input_slots = [new_slot() for _ in graph.inputs]
        steps = []
        self.output_slots = _flatten(graph, self.input_slots, new_slot, steps)
        self.n_slots = counter[0]
        readers = [0] * self.n_slots
        for st in steps:
            for s in st.inputs:
                readers[s] += 1
        outputs = set(self.output_slots)
        producer = {st.output: st for st in steps}

        if fuse:  # ZeroPadding2D -> Conv2D as one convolution
            kept = []
            for st in steps:
                layer = st.layer
                src = producer.get(st.inputs[0]) if len(st.inputs) == 1 else None
                if (type(layer) is Conv2D and src is not None and type(src.layer) is ZeroPadding2D
                        and st.kind == "layer" and readers[src.output] == 1
                        and src.output not in outputs and _fusable(src.layer, layer)):
                    t, b, l, r = src.layer.pads
                    ct, cl, cb, cr = layer._pad
                    st.kind, st.pad = "padded_conv", (ct + t, cl + l, cb + b, cr + r)
                    st.inputs = list(src.inputs)
                    kept.remove(src)
                kept.append(st)
            steps = kept

        if fold_batch_norm:  # inference only: BatchNormalization into the layer before it
            steps = _fold_batch_norms(steps, readers, outputs)
            producer = {st.output: st for st in steps}

        self.logits = [False] * len(self.output_slots)
        self.fused = [None] * len(self.output_slots)
        for i, (slot, feed) in enumerate(zip(self.output_slots, feeds or [])):
            st = producer.get(slot)
            last = getattr(st.layer, "final_activation", None) if st is not None else None
            how = feed(last) if feed is not None else "output"
            if (how == "fuse" and st.kind == "layer" and readers[slot] == 0
                    and self.output_slots.count(slot) == 1):
                st.kind = "logits"
                self.logits[i] = True
                self.fused[i] = last
            elif how == "logits":
                self.logits[i] = True

        # Which slots carry a gradient, so backward skips what nobody needs.
        trainable = trainable or set()
        wanted = [False] * self.n_slots
        for s in self.input_slots:
            wanted[s] = bool(input_grads)
        for st in steps:
            st.need_dx = [wanted[s] for s in st.inputs]
            has_grads = id(st.layer) in trainable and bool(st.layer.params)
            st.run_backward = has_grads or any(st.need_dx)
            wanted[st.output] = st.run_backward
        last_reader = {}
        for i, st in enumerate(steps):
            for s in st.inputs:
                last_reader[s] = i
        for i, st in enumerate(steps):
            frees = tuple(sorted({s for s in st.inputs if last_reader[s] == i and s not in outputs}))
            st.bind(frees, id(st.layer) if id(st.layer) in trainable else None)
        self.steps = steps
        self.trainable = trainable
        self.input_grads = bool(input_grads)


def _fold_batch_norms(steps, readers, outputs):
    """Steps with each BatchNormalization that directly follows a linear Conv2D,
    Conv2DTranspose or Dense (no activation, no other reader) folded into that step."""
    from ..layers.convolution import Conv2DTranspose
    from ..layers.core import Dense
    from ..layers.normalization import BatchNormalization

    producer = {st.output: st for st in steps}
    kept = []
    for st in steps:
        src = producer.get(st.inputs[0]) if type(st.layer) is BatchNormalization else None
        if (src is not None and src.bn is None and src.kind in ("layer", "padded_conv")
                and type(src.layer) in (Conv2D, Conv2DTranspose, Dense)
                and src.layer._act == 0 and not getattr(src.layer, "_softmax", False)
                and readers[src.output] == 1 and src.output not in outputs):
            src.bn = st.layer
            src.output = st.output
            producer[st.output] = src
            continue
        kept.append(st)
    return kept


def _fusable(pad_layer, conv):
    """Whether ZeroPadding2D + Conv2D can run as one convolution: padding < kernel."""
    t, b, l, r = pad_layer.pads
    ct, cl, cb, cr = conv._pad
    kh, kw = conv.kernel_size
    return max(t + ct, b + cb) < kh and max(l + cl, r + cr) < kw


def forward(plan, ctx, xs, keep_tape):
    """Run the plan on inputs ``xs`` (one array or tensor per model input). Returns (outputs,
    tape): the outputs (logits where the plan says so) and, when ``keep_tape``, what backward
    needs."""
    values = [None] * plan.n_slots
    for s, x in zip(plan.input_slots, xs):
        values[s] = x
    steps = plan.steps
    tape = [None] * len(steps) if keep_tape else None
    for i, st in enumerate(steps):
        if st.single:
            y, saved = st.fwd(ctx, values[st.inputs[0]])
        else:
            y, saved = st.fwd(ctx, [values[s] for s in st.inputs])
        values[st.output] = y
        if keep_tape:
            tape[i] = saved
        for s in st.frees:   # nobody reads it again: let the array go
            values[s] = None
    return [values[s] for s in plan.output_slots], tape


def backward(plan, ctx, tape, douts, grads, on_grads=None):
    """Walk the tape back from ``douts`` (the loss gradient of each output; None for an output
    the loss does not use). grads: id(layer) -> list of arrays to write its weight gradients into
    (for the layers of plan.trainable). on_grads(layer), when given, is called as soon as a
    layer's gradients are written (a data-parallel loop can start sending them). Returns the
    gradients of the inputs (None where not wanted)."""
    be = ctx.backend
    g = [None] * plan.n_slots
    for s, d in zip(plan.output_slots, douts):
        if d is not None:
            g[s] = d if g[s] is None else be.add(g[s], d)
    written = set()
    steps = plan.steps
    for i in range(len(steps) - 1, -1, -1):
        st = steps[i]
        dy = g[st.output]
        if dy is None:
            continue
        g[st.output] = None
        if not st.run_backward:
            continue
        key = st.grad_key
        views = grads.get(key) if key is not None else None
        dest = views
        if views is not None and key in written:  # a shared layer: add this call's share
            dest = [be.zeros(v.shape) for v in views]
        dx = st.bwd(ctx, tape[i], dy, st.need_any, dest)
        tape[i] = None
        if views is not None:
            if dest is not views:
                for v, d in zip(views, dest):
                    be.add_(v, d)
            written.add(key)
            if on_grads is not None:
                on_grads(st.layer)
        if not st.need_any:
            continue
        if st.single:
            s = st.inputs[0]
            if dx is not None:
                g[s] = dx if g[s] is None else be.add(g[s], dx)
            continue
        for s, wanted, d in zip(st.inputs, st.need_dx, dx):
            if wanted and d is not None:
                # out of place: the same array may have gone to two slots (Add's backward)
                g[s] = d if g[s] is None else be.add(g[s], d)
    for key in plan.trainable:  # layers the loss did not reach this time: zero gradient
        if key not in written and key in grads:
            for v in grads[key]:
                be.zero_(v)
    return [g[s] for s in plan.input_slots]
