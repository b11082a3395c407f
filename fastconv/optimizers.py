"""Optimisers: in-place updates over whole parameter arrays.

``optimizer.step(params, grads)`` updates each float32 array in ``params`` in place from the
matching array in ``grads``. A Sequential model keeps all its weights in one flat buffer (the
layers hold views into it), so a step is one call of a C++ kernel (csrc/cpu/optimizers.cpp)
over one array whatever the depth of the network. State (momentum, moments) is allocated on
the first step and reused; a step allocates nothing.

The kernel does the float32 arithmetic of the NumPy expressions in ``_update_numpy``, operation
by operation; those run instead for arrays it cannot update in place (not C-contiguous float32)
and are the reference the tests hold it to, bit for bit.

    SGD(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)
        v = momentum * v - lr * (g + wd * p);  p += v            (nesterov: p += momentum * v - lr * g')
    Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0)
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon)     (Keras's form)
        weight_decay is decoupled (AdamW, as Keras does): p -= lr * wd * p before the step.

SGD's weight_decay is the classic L2 term added to the gradient. Look one up by name with
``get("adam")`` / ``get("sgd")``.
"""
from __future__ import annotations

import math

import numpy as np

from . import _core

__all__ = ["Optimizer", "SGD", "Adam", "get"]


class Optimizer:
    """Base class: subclasses implement ``_update(index, param, grad)`` and may use ``iterations``."""

    name = "optimizer"

    def __init__(self, learning_rate):
        if not float(learning_rate) > 0.0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be positive, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        self._state = None

    def step(self, params, grads):
        """Update every array of ``params`` in place from ``grads`` (same shapes, float32)."""
        if self._state is None or len(self._state) != len(params):
            self._state = [self._new_state(p) for p in params]
        self.iterations += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            self._update(self._state[i], p, g)

    def reset(self):
        """Forget the accumulated state (momentum, moments) and the step count."""
        self._state = None
        self.iterations = 0

    def _new_state(self, param):
        return {"scratch": np.empty_like(param)}

    def _update(self, state, param, grad):
        if _kernel_ready(param, grad, state):
            self._update_kernel(state, param, grad)
        else:
            self._update_numpy(state, param, grad)

    def _update_kernel(self, state, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def _update_numpy(self, state, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        """Name and arguments, JSON-able, that ``get`` turns back into an optimiser."""
        return {"name": self.name, "learning_rate": self.learning_rate}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if float(weight_decay) < 0.0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _new_state(self, param):
        state = super()._new_state(param)
        if self.momentum:
            state["velocity"] = np.zeros_like(param)
        return state

    def _update_kernel(self, state, param, grad):
        _core.sgd_update(param, grad, state.get("velocity"), self.learning_rate, self.momentum,
                         self.weight_decay, self.nesterov)

    def _update_numpy(self, state, param, grad):
        tmp = state["scratch"]
        g = grad
        if self.weight_decay:  # g = grad + wd * p
            np.multiply(param, np.float32(self.weight_decay), out=tmp)
            tmp += grad
            g = tmp
        np.multiply(g, np.float32(self.learning_rate), out=tmp)  # tmp = lr * g
        if not self.momentum:
            param -= tmp
            return
        v = state["velocity"]
        v *= np.float32(self.momentum)
        v -= tmp
        if self.nesterov:  # p += momentum * v - lr * g
            param -= tmp
            np.multiply(v, np.float32(self.momentum), out=tmp)
            param += tmp
        else:
            param += v

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's form, with optional decoupled weight decay (AdamW)."""

    name = "adam"

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
        super().__init__(learning_rate)
        for what, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"Adam: {what} must be in [0, 1), got {value!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"Adam: epsilon must be positive, got {epsilon!r}")
        if float(weight_decay) < 0.0:
            raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.weight_decay = float(weight_decay)

    def _new_state(self, param):
        state = super()._new_state(param)
        state["m"] = np.zeros_like(param)
        state["v"] = np.zeros_like(param)
        return state

    def _alpha(self):
        t = self.iterations
        return self.learning_rate * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)

    def _update_kernel(self, state, param, grad):
        b1, b2 = self.beta_1, self.beta_2
        _core.adam_update(param, grad, state["m"], state["v"], self._alpha(), b1, 1.0 - b1, b2,
                          1.0 - b2, self.epsilon, 1.0 - self.learning_rate * self.weight_decay)

    def _update_numpy(self, state, param, grad):
        b1, b2 = self.beta_1, self.beta_2
        m, v, tmp = state["m"], state["v"], state["scratch"]
        if self.weight_decay:
            param *= np.float32(1.0 - self.learning_rate * self.weight_decay)
        # m = b1 m + (1 - b1) g
        m *= np.float32(b1)
        np.multiply(grad, np.float32(1.0 - b1), out=tmp)
        m += tmp
        # v = b2 v + (1 - b2) g^2
        v *= np.float32(b2)
        np.multiply(grad, grad, out=tmp)
        tmp *= np.float32(1.0 - b2)
        v += tmp
        # p -= alpha m / (sqrt(v) + eps)
        alpha = self._alpha()
        np.sqrt(v, out=tmp)
        tmp += np.float32(self.epsilon)
        np.divide(m, tmp, out=tmp)
        tmp *= np.float32(alpha)
        param -= tmp

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon, "weight_decay": self.weight_decay}


_BY_NAME = {"sgd": SGD, "adam": Adam}


def _kernel_ready(param, grad, state):
    """Whether the C++ step can update these arrays in place (and read the gradient as is)."""
    arrays = [param, grad] + [a for key, a in state.items() if key != "scratch"]
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
               and a.size == param.size for a in arrays) and param.flags.writeable


def get(identifier):
    """An optimiser from a name ("adam", "sgd"), a config dict or an Optimizer object.

    Raises ValueError for an unknown name, naming the known ones.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        name = config.pop("name", None)
        if name not in _BY_NAME:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[name](**config)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    raise TypeError(f"optimizer must be a name or a fastconv.optimizers.Optimizer, got "
                    f"{type(identifier).__name__}")
