"""Weight initialisers for fastconv's layers.

Every initialiser is a callable ``init(shape, fan_in, fan_out, rng) -> float32 array``.
``fan_in`` and ``fan_out`` are the number of inputs and outputs a unit sees: for a Conv2D
kernel (K, C, R, S) they are C*R*S and K*R*S, for a Dense kernel (out, in) they are in and
out. ``rng`` is a ``numpy.random.Generator`` (the model's seeded generator), so a seeded
model initialises the same way every time.

The scaled families follow Keras's definitions (variance_scaling):

    name            distribution                    scale
    he_normal       truncated normal, std s/0.8796  s = sqrt(2 / fan_in)
    he_uniform      uniform(-l, l)                  l = sqrt(6 / fan_in)
    glorot_normal   truncated normal, std s/0.8796  s = sqrt(2 / (fan_in + fan_out))
    glorot_uniform  uniform(-l, l)                  l = sqrt(6 / (fan_in + fan_out))
    lecun_normal    truncated normal, std s/0.8796  s = sqrt(1 / fan_in)
    lecun_uniform   uniform(-l, l)                  l = sqrt(3 / fan_in)

"Truncated normal" redraws values beyond two standard deviations; 0.87962566 is the standard
deviation of a unit normal truncated that way, so the result has the intended variance.
Use ``get("he_normal")`` to look one up by name; ``Zeros``, ``Ones`` and ``Constant`` exist for
biases.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "Initializer", "VarianceScaling", "Zeros", "Ones", "Constant",
    "HeNormal", "HeUniform", "GlorotNormal", "GlorotUniform", "LecunNormal", "LecunUniform",
    "get",
]

# Standard deviation of a unit normal truncated to [-2, 2].
_TRUNCATED_NORMAL_STD = 0.87962566103423978


class Initializer:
    """Base class: subclasses implement ``__call__(shape, fan_in, fan_out, rng)``."""

    name = "initializer"

    def __call__(self, shape, fan_in, fan_out, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        """A JSON-able description: ``{"name": ..., ...}`` that ``get`` turns back into this."""
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    """All zeros (the default bias initialiser)."""

    name = "zeros"

    def __call__(self, shape, fan_in=1, fan_out=1, rng=None):
        return np.zeros(shape, dtype=np.float32)


class Ones(Initializer):
    """All ones."""

    name = "ones"

    def __call__(self, shape, fan_in=1, fan_out=1, rng=None):
        return np.ones(shape, dtype=np.float32)


class Constant(Initializer):
    """Every value equal to ``value``."""

    name = "constant"

    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, fan_in=1, fan_out=1, rng=None):
        return np.full(shape, self.value, dtype=np.float32)

    def get_config(self):
        return {"name": self.name, "value": self.value}

    def __repr__(self):
        return f"Constant({self.value})"


class VarianceScaling(Initializer):
    """Values with variance ``scale / n`` where n is fan_in, fan_out or their mean.

    mode: "fan_in", "fan_out" or "fan_avg"; distribution: "truncated_normal" or "uniform".
    """

    name = "variance_scaling"

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("truncated_normal", "uniform"):
            raise ValueError("VarianceScaling: distribution must be 'truncated_normal' or 'uniform', "
                             f"got {distribution!r}")
        self.scale = float(scale)
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, fan_in, fan_out, rng):
        if rng is None:
            rng = np.random.default_rng()
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, float(n))
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, size=shape).astype(np.float32)
        std = np.sqrt(variance) / _TRUNCATED_NORMAL_STD
        values = rng.standard_normal(size=shape)
        outside = np.abs(values) > 2.0
        while outside.any():  # redraw the (few) values beyond two standard deviations
            values[outside] = rng.standard_normal(size=int(outside.sum()))
            outside = np.abs(values) > 2.0
        return (values * std).astype(np.float32)

    def get_config(self):
        if type(self) is not VarianceScaling:
            return {"name": self.name}
        return {"name": self.name, "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution}

    def __repr__(self):
        return f"{type(self).__name__}()"


class HeNormal(VarianceScaling):
    """He et al. (2015): truncated normal, variance 2 / fan_in. Good for ReLU layers."""

    name = "he_normal"

    def __init__(self):
        super().__init__(2.0, "fan_in", "truncated_normal")


class HeUniform(VarianceScaling):
    """He et al. (2015): uniform(-sqrt(6/fan_in), +sqrt(6/fan_in))."""

    name = "he_uniform"

    def __init__(self):
        super().__init__(2.0, "fan_in", "uniform")


class GlorotNormal(VarianceScaling):
    """Glorot & Bengio (2010): truncated normal, variance 2 / (fan_in + fan_out)."""

    name = "glorot_normal"

    def __init__(self):
        super().__init__(1.0, "fan_avg", "truncated_normal")


class GlorotUniform(VarianceScaling):
    """Glorot & Bengio (2010): uniform(-l, l), l = sqrt(6 / (fan_in + fan_out)). Keras's default."""

    name = "glorot_uniform"

    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")


class LecunNormal(VarianceScaling):
    """LeCun et al. (1998): truncated normal, variance 1 / fan_in. Good for tanh layers."""

    name = "lecun_normal"

    def __init__(self):
        super().__init__(1.0, "fan_in", "truncated_normal")


class LecunUniform(VarianceScaling):
    """LeCun et al. (1998): uniform(-sqrt(3/fan_in), +sqrt(3/fan_in))."""

    name = "lecun_uniform"

    def __init__(self):
        super().__init__(1.0, "fan_in", "uniform")


_BY_NAME = {cls.name: cls for cls in (Zeros, Ones, Constant, VarianceScaling, HeNormal, HeUniform,
                                       GlorotNormal, GlorotUniform, LecunNormal, LecunUniform)}


def get(identifier):
    """Turn a name ("he_normal"), a config dict or an initialiser object into an initialiser.

    Raises ValueError for an unknown name, naming the known ones.
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        name = config.pop("name", None)
        if name not in _BY_NAME:
            raise ValueError(f"unknown initializer {name!r}; known: {', '.join(sorted(_BY_NAME))}")
        cls = _BY_NAME[name]
        return cls(**config) if cls in (Constant, VarianceScaling) else cls()
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown initializer {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    if callable(identifier):
        return identifier
    raise TypeError(f"initializer must be a name, a dict or a callable, got {type(identifier).__name__}")
