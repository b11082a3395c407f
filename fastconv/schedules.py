"""Learning-rate schedules: the rate as a function of the optimiser's step count.

Give one to an optimiser as its learning_rate (``Adam(learning_rate=CosineDecay(1e-3, 5000))``):
each step uses ``schedule(optimizer.iterations)``, the number of steps taken before it
(0 for the first step, as in Keras), computed once per step on the host in float64.
Also reachable as ``fastconv.optimizers.schedules``, Keras's path.

    ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False)
        lr(step) = initial * decay_rate ** (step / decay_steps)     (staircase: floor of it)
    CosineDecay(initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0)
        without warm-up: initial * ((1 - alpha) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2 + alpha)
        with warmup_target: a straight line from initial to warmup_target over warmup_steps,
        then the cosine from warmup_target over decay_steps (Keras 3)
    PiecewiseConstantDecay(boundaries, values)
        values[0] while step <= boundaries[0], values[1] while step <= boundaries[1], ...,
        values[-1] after the last boundary
    OneCycle(max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
        Smith's one-cycle policy as torch.optim.lr_scheduler.OneCycleLR defines it: from
        max_lr / div_factor up to max_lr over the first pct_start of the steps, then down to
        max_lr / div_factor / final_div_factor, each phase a half cosine (anneal_strategy="cos")

``get_config()`` gives a schedule's arguments, ``from_config`` (or ``deserialize`` of
``serialize(schedule)``, the {"class_name", "config"} form optimisers save) makes it again.
"""
from __future__ import annotations

import bisect
import math
import numbers

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "PiecewiseConstantDecay",
           "OneCycle", "serialize", "deserialize"]


def _number(value, what, owner, positive=False, nonneg=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{owner}: {what} must be a finite number, got {value!r}")
    value = float(value)
    if positive and not value > 0.0:
        raise ValueError(f"{owner}: {what} must be > 0, got {value!r}")
    if nonneg and value < 0.0:
        raise ValueError(f"{owner}: {what} must be >= 0, got {value!r}")
    return value


def _check_step(step, owner):
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not step >= 0:
        raise ValueError(f"{owner}: step must be a number >= 0, got {step!r}")
    return float(step)


class LearningRateSchedule:
    """Base class: a schedule is called with the step count and returns the rate (a float).

    Subclasses implement ``__call__(step)`` and ``get_config()`` (their constructor's
    arguments, JSON-able); ``from_config`` then rebuilds them.
    """

    def __call__(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):  # pragma: no cover - abstract
        """The constructor's arguments as a JSON-able dict."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """The schedule ``get_config`` describes."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps); with staircase=True the
    exponent is floored, so the rate drops once every decay_steps steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        owner = "ExponentialDecay"
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate", owner,
                                             nonneg=True)
        self.decay_steps = _number(decay_steps, "decay_steps", owner, positive=True)
        self.decay_rate = _number(decay_rate, "decay_rate", owner, nonneg=True)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = _check_step(step, self.name) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay (Loshchilov & Hutter's SGDR without restarts), with Keras 3's linear warm-up.

    Without warmup_target: from initial_learning_rate down to alpha * initial_learning_rate
    over decay_steps, then constant. With warmup_target: a straight line from
    initial_learning_rate to warmup_target over warmup_steps, then the cosine from
    warmup_target down to alpha * warmup_target over decay_steps.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        owner = "CosineDecay"
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate", owner,
                                             nonneg=True)
        self.decay_steps = _number(decay_steps, "decay_steps", owner, positive=True)
        self.alpha = _number(alpha, "alpha", owner, nonneg=True)
        self.name = name
        self.warmup_target = (None if warmup_target is None else
                              _number(warmup_target, "warmup_target", owner, nonneg=True))
        self.warmup_steps = _number(warmup_steps, "warmup_steps", owner, nonneg=True)

    def _decay(self, step, start):
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _check_step(step, self.name)
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            return (self.initial_learning_rate
                    + (self.warmup_target - self.initial_learning_rate) * step / self.warmup_steps)
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A step schedule: values[0] while step <= boundaries[0], values[i] while
    boundaries[i-1] < step <= boundaries[i], values[-1] after the last boundary.

    boundaries: increasing step counts; values: one more rate than boundaries.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        owner = "PiecewiseConstantDecay"
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"{owner}: values must have one more entry than boundaries, got "
                             f"{len(boundaries)} boundaries and {len(values)} values")
        self.boundaries = [_number(b, "boundaries", owner) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{owner}: boundaries must be strictly increasing, got {boundaries!r}")
        self.values = [_number(v, "values", owner, nonneg=True) for v in values]
        self.name = name

    def __call__(self, step):
        step = _check_step(step, self.name)
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class OneCycle(LearningRateSchedule):
    """Smith's one-cycle learning rate, exactly as torch.optim.lr_scheduler.OneCycleLR.

    max_lr: the peak rate. total_steps: the steps of the whole run (epochs * steps per epoch).
    pct_start: the share of the steps spent rising. The rate starts at max_lr / div_factor,
    rises to max_lr at step pct_start * total_steps - 1, then falls to
    max_lr / div_factor / final_div_factor at step total_steps - 1 and stays there.
    anneal_strategy: "cos" (half-cosine phases) or "linear". three_phase: rise, fall back to
    the start over as many steps, then fall to the final rate (torch's three_phase=True).

    Differences from torch: only the rate is scheduled (torch's OneCycleLR also cycles the
    momentum, which fastconv's optimisers keep fixed); past total_steps the rate stays at
    its final value (torch raises); a phase of zero length ends at once (torch divides by
    zero).
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                 anneal_strategy="cos", three_phase=False, name="OneCycle"):
        owner = "OneCycle"
        self.max_lr = _number(max_lr, "max_lr", owner, positive=True)
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) \
                or total_steps < 1:
            raise ValueError(f"{owner}: total_steps must be a positive integer, got {total_steps!r}")
        self.total_steps = int(total_steps)
        self.pct_start = _number(pct_start, "pct_start", owner)
        if not 0.0 <= self.pct_start <= 1.0:
            raise ValueError(f"{owner}: pct_start must be in [0, 1], got {pct_start!r}")
        self.div_factor = _number(div_factor, "div_factor", owner, positive=True)
        self.final_div_factor = _number(final_div_factor, "final_div_factor", owner, positive=True)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{owner}: anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.three_phase = bool(three_phase)
        self.name = name
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        rise_end = self.pct_start * self.total_steps - 1.0
        last = self.total_steps - 1.0
        if self.three_phase:
            # (last step of the phase, rate at its start, rate at its end)
            self._phases = [(rise_end, initial, self.max_lr),
                            (2.0 * self.pct_start * self.total_steps - 2.0, self.max_lr, initial),
                            (last, initial, final)]
        else:
            self._phases = [(rise_end, initial, self.max_lr), (last, self.max_lr, final)]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def __call__(self, step):
        step = min(_check_step(step, self.name), self.total_steps - 1.0)
        phase_start = 0.0
        for i, (phase_end, start, end) in enumerate(self._phases):
            if step <= phase_end or i == len(self._phases) - 1:
                span = phase_end - phase_start
                pct = (step - phase_start) / span if span != 0 else 1.0
                return self._anneal(start, end, pct)
            phase_start = phase_end
        raise AssertionError("unreachable")  # pragma: no cover

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "anneal_strategy": self.anneal_strategy, "three_phase": self.three_phase,
                "name": self.name}


_BY_NAME = {cls.__name__: cls for cls in (ExponentialDecay, CosineDecay, PiecewiseConstantDecay,
                                          OneCycle)}


def serialize(schedule):
    """{"class_name": ..., "config": ...}: what an optimiser's get_config stores for it."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"serialize: expected a LearningRateSchedule, got {type(schedule).__name__}")
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """The schedule ``serialize`` described; ValueError for an unknown class name."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize: expected {{'class_name': ..., 'config': ...}}, got {config!r}")
    cls = _BY_NAME.get(config["class_name"])
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {config['class_name']!r}; known: "
                         f"{', '.join(sorted(_BY_NAME))}")
    return cls.from_config(dict(config.get("config", {})))
