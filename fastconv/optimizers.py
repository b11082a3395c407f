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
    AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
        Adam with Keras's AdamW defaults
    RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)
        ms = rho ms + (1 - rho) g^2;  p -= lr g / (sqrt(ms) + epsilon)   (see RMSprop for the rest)

SGD's weight_decay is the classic L2 term added to the gradient. Every optimiser also takes
Keras's clipnorm, clipvalue and global_clipnorm, and a learning-rate schedule
(``fastconv.optimizers.schedules``, also importable as fastconv.schedules) instead of a fixed
rate: step t (``iterations`` = t before it, counting from 0) uses schedule(t), computed once
per step on the host. Look one up by name with ``get("adam")``, ``get("rmsprop")``, ...
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core
from . import schedules
from . import schedules as _schedules

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get", "schedules"]


class Optimizer:
    """Base class: subclasses implement ``_update_kernel`` and ``_update_numpy`` for one array.

    learning_rate: a float > 0, or a schedule (fastconv.optimizers.schedules) evaluated at
        ``iterations`` before each step. Reading ``optimizer.learning_rate`` gives the rate
        the next step will use (a float); assigning a float changes it (callbacks such as
        ReduceLROnPlateau do), assigning a schedule replaces it.
    clipnorm / global_clipnorm / clipvalue (at most one, as in Keras): before the step, scale
        each gradient array whose L2 norm exceeds clipnorm down to that norm / scale all of
        them together when their joint norm exceeds global_clipnorm / clip every element to
        [-clipvalue, clipvalue]. clipnorm works per array passed to ``step``: Keras clips
        each weight's gradient on its own, so a loop that passes one flat buffer of all the
        weights gets global_clipnorm's behaviour from it.
    """

    name = "optimizer"

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None):
        what = type(self).__name__
        if isinstance(learning_rate, dict):
            learning_rate = _schedules.deserialize(learning_rate)
        if not isinstance(learning_rate, _schedules.LearningRateSchedule):
            if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) \
                    or not (math.isfinite(learning_rate) and learning_rate > 0.0):
                raise ValueError(f"{what}: learning_rate must be positive, got {learning_rate!r}")
            learning_rate = float(learning_rate)
        self._learning_rate = learning_rate
        given = {k: v for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                   ("global_clipnorm", global_clipnorm)) if v is not None}
        if len(given) > 1:
            raise ValueError(f"{what}: only one of clipnorm, clipvalue and global_clipnorm can be "
                             f"set, got {', '.join(f'{k}={v}' for k, v in given.items())}")
        for key, value in given.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{what}: {key} must be a positive number, got {value!r}")
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.iterations = 0
        self._state = None
        self._lr = None   # this step's rate, set by _begin_step

    @property
    def learning_rate(self):
        """The rate the next step uses (a schedule is evaluated at ``iterations``)."""
        rate = self._learning_rate
        if isinstance(rate, _schedules.LearningRateSchedule):
            return float(rate(self.iterations))
        return rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, _schedules.LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, _schedules.LearningRateSchedule):
            raise TypeError(f"{type(self).__name__}: this optimizer's learning rate is a "
                            f"{type(self._learning_rate).__name__} schedule, so it cannot be set "
                            "to a number; create the optimizer with a float learning_rate instead")
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating)) \
                or not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{type(self).__name__}: learning_rate must be a finite number >= 0, "
                             f"got {value!r}")
        self._learning_rate = float(value)

    def step(self, params, grads):
        """Update every array of ``params`` in place from ``grads`` (same shapes, float32)."""
        if len(params) != len(grads):
            raise ValueError(f"{type(self).__name__}.step: {len(params)} parameter arrays but "
                             f"{len(grads)} gradient arrays")
        self._begin_step(params)
        grads = self._clip(grads)
        for state, p, g in zip(self._state, params, grads):
            self._update(state, p, g)

    def _begin_step(self, params):
        """Allocate the state on the first step; fix this step's rate; count the step."""
        if self._state is None or len(self._state) != len(params):
            self._state = [self._new_state(p) for p in params]
        self._lr = self._rate_at(self.iterations)
        self.iterations += 1

    def _rate_at(self, step):
        rate = self._learning_rate
        if isinstance(rate, _schedules.LearningRateSchedule):
            rate = float(rate(step))
            if not (math.isfinite(rate) and rate >= 0.0):
                raise ValueError(f"{type(self).__name__}: the learning-rate schedule gave {rate} at "
                                 f"step {step}")
        return rate

    def _clip(self, grads):
        """The gradients after clipnorm / global_clipnorm / clipvalue (copies; the originals
        are left as they are)."""
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue, out=s["clipped"])
                    for s, g in zip(self._state, grads)]
        if self.clipnorm is not None:
            return [self._scaled(s, g, self.clipnorm / max(_norm(g), self.clipnorm))
                    for s, g in zip(self._state, grads)]
        if self.global_clipnorm is not None:
            total = math.sqrt(sum(_norm(g) ** 2 for g in grads))
            scale = self.global_clipnorm / max(total, self.global_clipnorm)
            return [self._scaled(s, g, scale) for s, g in zip(self._state, grads)]
        return grads

    @staticmethod
    def _scaled(state, grad, scale):
        if scale == 1.0:
            return grad
        return np.multiply(grad, np.float32(scale), out=state["clipped"])

    def reset(self):
        """Forget the accumulated state (momentum, moments) and the step count."""
        self._state = None
        self.iterations = 0

    def _new_state(self, param):
        state = {"scratch": np.empty_like(param)}
        if self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None:
            state["clipped"] = np.empty(param.shape, dtype=np.float32)
        return state

    def _update(self, state, param, grad):
        if _kernel_ready(param, grad, state):
            self._update_kernel(state, param, grad)
        else:
            self._update_numpy(state, param, grad)

    def _update_kernel(self, state, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def _update_numpy(self, state, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def _base_config(self):
        rate = self._learning_rate
        config = {"name": self.name,
                  "learning_rate": (_schedules.serialize(rate)
                                    if isinstance(rate, _schedules.LearningRateSchedule) else rate)}
        for key in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def get_config(self):
        """Name and arguments, JSON-able, that ``get`` (or ``from_config``) turns back into an
        optimiser; a schedule is stored as {"class_name": ..., "config": ...}."""
        return self._base_config()

    @classmethod
    def from_config(cls, config):
        """The optimiser ``get_config`` describes."""
        config = dict(config)
        config.pop("name", None)
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _norm(grad):
    """The L2 norm of an array, summed in float64."""
    flat = np.asarray(grad).reshape(-1).astype(np.float64, copy=False)
    return math.sqrt(float(np.dot(flat, flat)))


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
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
        _core.sgd_update(param, grad, state.get("velocity"), self._lr, self.momentum,
                         self.weight_decay, self.nesterov)

    def _update_numpy(self, state, param, grad):
        tmp = state["scratch"]
        g = grad
        if self.weight_decay:  # g = grad + wd * p
            np.multiply(param, np.float32(self.weight_decay), out=tmp)
            tmp += grad
            g = tmp
        np.multiply(g, np.float32(self._lr), out=tmp)  # tmp = lr * g
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
        config = self._base_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay)
        return config


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's form, with optional decoupled weight decay (AdamW)."""

    name = "adam"

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        what = type(self).__name__
        for key, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{what}: {key} must be in [0, 1), got {value!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"{what}: epsilon must be positive, got {epsilon!r}")
        if weight_decay is None:
            weight_decay = 0.0
        if float(weight_decay) < 0.0:
            raise ValueError(f"{what}: weight_decay must be >= 0, got {weight_decay!r}")
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
        return self._lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)

    def _update_kernel(self, state, param, grad):
        b1, b2 = self.beta_1, self.beta_2
        _core.adam_update(param, grad, state["m"], state["v"], self._alpha(), b1, 1.0 - b1, b2,
                          1.0 - b2, self.epsilon, 1.0 - self._lr * self.weight_decay)

    def _update_numpy(self, state, param, grad):
        b1, b2 = self.beta_1, self.beta_2
        m, v, tmp = state["m"], state["v"], state["scratch"]
        if self.weight_decay:
            param *= np.float32(1.0 - self._lr * self.weight_decay)
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
        config = self._base_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      weight_decay=self.weight_decay)
        return config


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), Keras's AdamW: Adam
    with weight_decay on by default (0.004). Each step first shrinks the weights,
    p *= 1 - lr * weight_decay, then takes Adam's step (the same kernel as Adam's)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012) with Keras's arguments and defaults.

        ms = rho ms + (1 - rho) g^2                       (the mean square of the gradient)
        centered: mg = rho mg + (1 - rho) g;  denominator = sqrt(max(ms - mg^2, 0)) + epsilon
        else:     denominator = sqrt(ms) + epsilon
        step = lr g / denominator
        momentum > 0: buf = momentum buf + step;  p -= buf        else: p -= step

    epsilon is added after the square root, as PyTorch does and as fastconv's CUDA
    rmsprop_update does (Keras 3 adds it under the root: sqrt(ms + epsilon)). weight_decay
    (None or 0: off) is decoupled, as Keras's: p *= 1 - lr * weight_decay before the step.
    """

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        if not 0.0 <= float(rho) < 1.0:
            raise ValueError(f"RMSprop: rho must be in [0, 1), got {rho!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"RMSprop: momentum must be in [0, 1), got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"RMSprop: epsilon must be positive, got {epsilon!r}")
        if weight_decay is not None and float(weight_decay) < 0.0:
            raise ValueError(f"RMSprop: weight_decay must be >= 0, got {weight_decay!r}")
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        self.weight_decay = None if weight_decay is None else float(weight_decay)

    def _new_state(self, param):
        state = super()._new_state(param)
        state["ms"] = np.zeros_like(param)
        state["scratch2"] = np.empty_like(param)
        if self.centered:
            state["mg"] = np.zeros_like(param)
        if self.momentum:
            state["momentum"] = np.zeros_like(param)
        return state

    def _decay(self):
        return 1.0 - self._lr * self.weight_decay if self.weight_decay else 1.0

    def _update_kernel(self, state, param, grad):
        _core.rmsprop_update(param, grad, state["ms"], state.get("mg"), state.get("momentum"),
                             self._lr, self.rho, 1.0 - self.rho, self.momentum, self.epsilon,
                             self._decay())

    def _update_numpy(self, state, param, grad):
        ms, tmp, tmp2 = state["ms"], state["scratch"], state["scratch2"]
        c = np.float32(1.0 - self.rho)
        if self.weight_decay:
            param *= np.float32(self._decay())
        # ms = rho ms + (1 - rho) g^2
        ms *= np.float32(self.rho)
        np.multiply(grad, grad, out=tmp)
        tmp *= c
        ms += tmp
        # tmp = denominator
        if self.centered:  # mg = rho mg + (1 - rho) g;  sqrt(max(ms - mg^2, 0)) + eps
            mg = state["mg"]
            mg *= np.float32(self.rho)
            np.multiply(grad, c, out=tmp2)
            mg += tmp2
            np.multiply(mg, mg, out=tmp2)
            np.subtract(ms, tmp2, out=tmp)
            np.maximum(tmp, np.float32(0.0), out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(ms, out=tmp)
        tmp += np.float32(self.epsilon)
        # step = (g lr) / denominator
        np.multiply(grad, np.float32(self._lr), out=tmp2)
        np.divide(tmp2, tmp, out=tmp)
        if self.momentum:  # buf = momentum buf + step;  p -= buf
            buf = state["momentum"]
            buf *= np.float32(self.momentum)
            buf += tmp
            param -= buf
        else:
            param -= tmp

    def get_config(self):
        config = self._base_config()
        config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                      centered=self.centered, weight_decay=self.weight_decay)
        return config


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def _kernel_ready(param, grad, state):
    """Whether the C++ step can update these arrays in place (and read the gradient as is)."""
    arrays = [param, grad] + [a for key, a in state.items() if not key.startswith("scratch")]
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
               and a.size == param.size for a in arrays) and param.flags.writeable


def get(identifier):
    """An optimiser from a name ("adam", "adamw", "rmsprop", "sgd"), a config dict (what
    ``get_config`` gives), an Optimizer class or an Optimizer object.

    Raises ValueError for an unknown name, naming the known ones.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, dict):
        config = dict(identifier)
        name = config.pop("name", None)
        key = name.lower() if isinstance(name, str) else name
        if key not in _BY_NAME:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key](**config)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    raise TypeError(f"optimizer must be a name or a fastconv.optimizers.Optimizer, got "
                    f"{type(identifier).__name__}")
