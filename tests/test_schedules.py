"""Tests for the learning-rate schedules (fastconv.optimizers.schedules): each against its
formula written here, torch.optim.lr_scheduler.OneCycleLR and Keras's schedules where
installed, an optimiser driven by a schedule step by step, and saving."""
import json
import math
import warnings

import numpy as np
import pytest

from fastconv import optimizers
from fastconv.optimizers import schedules


def test_exponential_decay():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 1, 7, 10, 25):
        assert s(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-12)
    stairs = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    assert [stairs(t) for t in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_decay_with_and_without_warmup():
    s = schedules.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    for step in (0, 1, 50, 99, 100, 500):
        frac = min(step, 100) / 100
        assert s(step) == pytest.approx(0.9 * 0.5 * (1 + math.cos(math.pi * frac)) + 0.1, rel=1e-12)
    w = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=0.5, warmup_steps=4)
    assert [w(t) for t in (0, 1, 2, 3)] == pytest.approx([0.0, 0.125, 0.25, 0.375])
    assert w(4) == pytest.approx(0.5)
    assert w(9) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert w(14) == pytest.approx(0.0, abs=1e-15) and w(1000) == pytest.approx(0.0, abs=1e-15)


def test_piecewise_constant():
    s = schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1])
    assert [s(t) for t in range(9)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more entry"):
        schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        schedules.PiecewiseConstantDecay([6, 3], [1.0, 0.5, 0.1])


def ref_one_cycle(step, max_lr, total, pct=0.3, div=25.0, final_div=1e4, linear=False, three=False):
    """Smith's one-cycle rate, written from torch's OneCycleLR definition."""
    lo = max_lr / div
    end = lo / final_div
    if three:
        phases = [(pct * total - 1, lo, max_lr), (2 * pct * total - 2, max_lr, lo), (total - 1, lo, end)]
    else:
        phases = [(pct * total - 1, lo, max_lr), (total - 1, max_lr, end)]
    start = 0.0
    for i, (stop, a, b) in enumerate(phases):
        if step <= stop or i == len(phases) - 1:
            t = (step - start) / (stop - start)
            return a + (b - a) * t if linear else b + (a - b) / 2 * (math.cos(math.pi * t) + 1)
        start = stop


@pytest.mark.parametrize("kw", [{}, {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
                                {"anneal_strategy": "linear"}, {"three_phase": True}])
def test_one_cycle(kw):
    s = schedules.OneCycle(0.8, total_steps=40, **kw)
    for step in range(40):
        want = ref_one_cycle(step, 0.8, 40, kw.get("pct_start", 0.3), kw.get("div_factor", 25.0),
                             kw.get("final_div_factor", 1e4), kw.get("anneal_strategy") == "linear",
                             kw.get("three_phase", False))
        assert s(step) == pytest.approx(want, rel=1e-12), step
    peak = int(0.3 * 40) - 1 if "pct_start" not in kw else int(0.25 * 40) - 1
    assert s(peak) == pytest.approx(0.8)
    assert s(0) == pytest.approx(0.8 / kw.get("div_factor", 25.0))
    assert s(1000) == s(39)    # past the end: stays at the final rate


def test_one_cycle_matches_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional cross-check)")
    param = torch.nn.Parameter(torch.zeros(1))
    for kw in ({}, {"pct_start": 0.2, "div_factor": 5.0, "final_div_factor": 50.0, "three_phase": True},
               {"anneal_strategy": "linear"}):
        opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=57, **kw)
        ours = schedules.OneCycle(0.5, 57, **kw)
        for step in range(57):
            assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12), (kw, step)
            opt.step()
            sched.step()


@pytest.mark.slow
def test_against_keras(real_keras):
    keras = real_keras
    K = keras.optimizers.schedules
    pairs = [(schedules.ExponentialDecay(0.1, 7, 0.6, staircase=True), K.ExponentialDecay(0.1, 7, 0.6, staircase=True)),
             (schedules.ExponentialDecay(0.1, 7, 0.6), K.ExponentialDecay(0.1, 7, 0.6)),
             (schedules.CosineDecay(0.2, 30, alpha=0.05), K.CosineDecay(0.2, 30, alpha=0.05)),
             (schedules.CosineDecay(0.01, 30, warmup_target=0.3, warmup_steps=8),
              K.CosineDecay(0.01, 30, warmup_target=0.3, warmup_steps=8)),
             (schedules.PiecewiseConstantDecay([5, 12], [0.3, 0.2, 0.1]),
              K.PiecewiseConstantDecay([5, 12], [0.3, 0.2, 0.1]))]
    for ours, theirs in pairs:
        for step in range(45):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = float(keras.ops.convert_to_numpy(theirs(step)))
            assert ours(step) == pytest.approx(want, rel=1e-5), (ours, step)   # Keras: float32


@pytest.mark.parametrize("make", [optimizers.SGD, optimizers.Adam, optimizers.RMSprop])
def test_optimizer_uses_the_schedule_at_its_step_count(make):
    """Step t (iterations == t before it, from 0) uses schedule(t): the same parameters as an
    optimiser whose fixed rate is set to schedule(t) before each step."""
    sched = schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.02, 0.005])
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(9).astype(np.float32)
    scheduled, manual = make(learning_rate=sched), make(learning_rate=0.1)
    p1, p2 = p0.copy(), p0.copy()
    seen = []
    for t in range(4):
        assert scheduled.iterations == t
        assert scheduled.learning_rate == sched(t)          # the rate the next step uses
        seen.append(scheduled.learning_rate)
        manual.learning_rate = sched(t)
        g = rng.standard_normal(9).astype(np.float32)
        scheduled.step([p1], [g])
        manual.step([p2], [g])
        np.testing.assert_array_equal(p1, p2)
    assert seen == [0.1, 0.1, 0.02, 0.005]
    with pytest.raises(TypeError, match="cannot be set to a number"):
        scheduled.learning_rate = 0.5
    scheduled.learning_rate = schedules.ExponentialDecay(0.1, 10, 0.5)   # a schedule replaces it
    assert scheduled.learning_rate == pytest.approx(0.1 * 0.5 ** 0.4)


def test_schedules_round_trip_through_optimizer_configs():
    for sched in (schedules.ExponentialDecay(0.1, 10, 0.9, staircase=True),
                  schedules.CosineDecay(0.1, 100, alpha=0.01, warmup_target=0.5, warmup_steps=10),
                  schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.01, 0.001]),
                  schedules.OneCycle(0.3, 500, pct_start=0.2, three_phase=True)):
        again = schedules.deserialize(json.loads(json.dumps(schedules.serialize(sched))))
        assert type(again) is type(sched) and again.get_config() == sched.get_config()
        opt = optimizers.Adam(learning_rate=sched, clipnorm=1.0)
        config = json.loads(json.dumps(opt.get_config()))
        restored = optimizers.get(config)
        assert type(restored._learning_rate) is type(sched)
        assert [restored._learning_rate(t) for t in (0, 7, 300)] == [sched(t) for t in (0, 7, 300)]
        assert restored.clipnorm == 1.0
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedules.deserialize({"class_name": "Nope", "config": {}})


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        schedules.CosineDecay(0.1, -3)
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        schedules.OneCycle(0.1, 0)
    with pytest.raises(ValueError, match="pct_start"):
        schedules.OneCycle(0.1, 10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        schedules.OneCycle(0.1, 10, anneal_strategy="exp")
    with pytest.raises(TypeError, match="initial_learning_rate must be a finite number"):
        schedules.ExponentialDecay("0.1", 10, 0.5)
    with pytest.raises(ValueError, match="step must be a number >= 0"):
        schedules.CosineDecay(0.1, 10)(-1)
