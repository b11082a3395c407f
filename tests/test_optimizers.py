"""Tests for RMSprop and AdamW (their updates against float64 formulas written here, and
against torch's where installed), gradient clipping, Keras's defaults, configs and bad input.
The C++ steps against their float32 NumPy arithmetic, bit for bit, are in test_models.py
(test_optimizer_kernel_is_the_numpy_arithmetic_bit_for_bit), beside SGD's and Adam's."""
import json

import numpy as np
import pytest

from fastconv import optimizers


def ref_rmsprop(p, grads, lr, rho, momentum, eps, centered, wd=0.0):
    """RMSprop in float64: epsilon after the square root (fastconv's CUDA kernel, PyTorch)."""
    p = p.astype(np.float64)
    ms = np.zeros_like(p)
    mg = np.zeros_like(p)
    buf = np.zeros_like(p)
    for g in grads:
        g = g.astype(np.float64)
        p = p * (1 - lr * wd)
        ms = rho * ms + (1 - rho) * g * g
        if centered:
            mg = rho * mg + (1 - rho) * g
            den = np.sqrt(ms - mg * mg) + eps
        else:
            den = np.sqrt(ms) + eps
        step = lr * g / den
        if momentum:
            buf = momentum * buf + step
            p = p - buf
        else:
            p = p - step
    return p


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"centered": True}, {"rho": 0.7, "epsilon": 1e-4},
                                {"centered": True, "momentum": 0.5, "weight_decay": 0.1}])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4)])
def test_rmsprop_matches_formula(kw, shape):
    rng = np.random.default_rng(len(shape) * 10 + len(kw))
    p0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(5)]
    opt = optimizers.RMSprop(0.01, **kw)
    p = p0.copy()
    for g in grads:
        opt.step([p], [g])
    want = ref_rmsprop(p0, grads, 0.01, kw.get("rho", 0.9), kw.get("momentum", 0.0), kw.get("epsilon", 1e-7),
                       kw.get("centered", False), kw.get("weight_decay", 0.0))
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-6)
    assert opt.iterations == 5


def test_rmsprop_matches_torch():
    """With momentum and centering off, and weight decay off, fastconv's RMSprop is PyTorch's
    (epsilon after the root, the same moving average)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (optional cross-check)")
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(11).astype(np.float32)
    for kw, torch_kw in (({}, {}), ({"momentum": 0.9}, {"momentum": 0.9}),
                         ({"centered": True}, {"centered": True})):
        param = torch.nn.Parameter(torch.tensor(p0))
        ref = torch.optim.RMSprop([param], lr=0.01, alpha=0.9, eps=1e-7, **torch_kw)
        opt = optimizers.RMSprop(0.01, **kw)
        p = p0.copy()
        for _ in range(6):
            g = rng.standard_normal(11).astype(np.float32)
            param.grad = torch.tensor(g)
            ref.step()
            opt.step([p], [g])
        # momentum: torch keeps lr outside its buffer, Keras (and fastconv) inside: equal at a fixed lr
        np.testing.assert_allclose(p, param.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=str(kw))


def test_adamw_is_adam_with_keras_defaults():
    w = optimizers.AdamW()
    assert (w.learning_rate, w.weight_decay, w.beta_1, w.beta_2, w.epsilon) == (0.001, 0.004, 0.9, 0.999, 1e-7)
    assert isinstance(w, optimizers.Adam) and w.name == "adamw"
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(13).astype(np.float32)
    p, ref = p0.copy(), p0.astype(np.float64)
    m = v = np.zeros(13)
    opt = optimizers.AdamW(0.01, weight_decay=0.05)
    for t in range(1, 5):
        g = rng.standard_normal(13).astype(np.float32)
        opt.step([p], [g])
        ref = ref * (1 - 0.01 * 0.05)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        ref = ref - 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)


def test_keras_defaults_and_names():
    r = optimizers.get("rmsprop")
    assert isinstance(r, optimizers.RMSprop)
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    assert isinstance(optimizers.get("AdamW"), optimizers.AdamW)
    assert isinstance(optimizers.get(optimizers.RMSprop), optimizers.RMSprop)
    for opt in (optimizers.RMSprop(0.02, rho=0.8, momentum=0.3, centered=True, weight_decay=0.01),
                optimizers.AdamW(0.003, weight_decay=0.1, clipvalue=0.5),
                optimizers.SGD(0.1, momentum=0.9, global_clipnorm=2.0)):
        config = json.loads(json.dumps(opt.get_config()))
        again = optimizers.get(config)
        assert type(again) is type(opt) and again.get_config() == opt.get_config()
        assert type(opt).from_config(opt.get_config()).get_config() == opt.get_config()


def test_clipping():
    g1 = np.array([3.0, 4.0], np.float32)            # norm 5
    g2 = np.array([0.0, 12.0], np.float32)           # norm 12; together 13
    # clipnorm: each array on its own
    p1, p2 = np.zeros(2, np.float32), np.zeros(2, np.float32)
    optimizers.SGD(1.0, clipnorm=6.0).step([p1, p2], [g1, g2])
    np.testing.assert_allclose(p1, -g1, rtol=1e-6)                  # under the limit: as is
    np.testing.assert_allclose(p2, -g2 * 6 / 12, rtol=1e-6)
    # global_clipnorm: all arrays together
    p1, p2 = np.zeros(2, np.float32), np.zeros(2, np.float32)
    optimizers.SGD(1.0, global_clipnorm=6.5).step([p1, p2], [g1, g2])
    np.testing.assert_allclose(p1, -g1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(p2, -g2 * 0.5, rtol=1e-6)
    # clipvalue: every element
    p = np.zeros(2, np.float32)
    optimizers.SGD(1.0, clipvalue=3.5).step([p], [g1])
    np.testing.assert_allclose(p, [-3.0, -3.5])
    # the caller's gradients are left as they were, and the kernel path is taken
    assert g2.tolist() == [0.0, 12.0]
    opt = optimizers.Adam(0.1, clipnorm=1.0)
    big = np.full(5, 100.0, np.float32)
    q = np.zeros(5, np.float32)
    opt.step([q], [big])
    assert np.all(opt._state[0]["m"] == np.float32(0.1) * np.float32(100.0 / np.sqrt(5 * 100.0 ** 2)))
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="clipnorm must be a positive number"):
        optimizers.Adam(clipnorm=0)


def test_learning_rate_is_settable():
    opt = optimizers.RMSprop(0.01)
    opt.learning_rate = 0.002
    assert opt.learning_rate == 0.002 and opt.get_config()["learning_rate"] == 0.002
    opt.learning_rate = np.float32(0.5)
    assert opt.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0"):
        opt.learning_rate = float("nan")
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        optimizers.RMSprop(-1.0)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        optimizers.AdamW("fast")


def test_bad_arguments():
    with pytest.raises(ValueError, match="rho must be in"):
        optimizers.RMSprop(rho=1.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        optimizers.RMSprop(momentum=-0.1)
    with pytest.raises(ValueError, match="epsilon must be positive"):
        optimizers.RMSprop(epsilon=0)
    with pytest.raises(ValueError, match="AdamW: beta_1 must be in"):
        optimizers.AdamW(beta_1=1.0)
    with pytest.raises(ValueError, match="2 parameter arrays but 1 gradient arrays"):
        optimizers.RMSprop().step([np.zeros(2, np.float32), np.zeros(2, np.float32)], [np.zeros(2, np.float32)])


def test_rmsprop_kernel_rejects_bad_buffers():
    from fastconv import _core

    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="rmsprop_update: ms must be a writeable C-contiguous float32 array"):
        _core.rmsprop_update(p, np.zeros(4, np.float32), np.zeros(4), None, None, 0.1, 0.9, 0.1, 0.0, 1e-7, 1.0)
    with pytest.raises(ValueError, match="rmsprop_update: mg has 3 elements, p has 4"):
        _core.rmsprop_update(p, np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32),
                             None, 0.1, 0.9, 0.1, 0.0, 1e-7, 1.0)
    with pytest.raises(ValueError, match="rmsprop_update: g has 5 elements, p has 4"):
        _core.rmsprop_update(p, np.zeros(5, np.float32), np.zeros(4, np.float32), None, None,
                             0.1, 0.9, 0.1, 0.0, 1e-7, 1.0)


def test_sequential_trains_with_rmsprop_and_a_schedule():
    from fastconv import layers as L
    from fastconv.models import Sequential

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = Sequential([L.Dense(8, activation="relu"), L.Dense(2)], input_shape=(6,), seed=0)
    sched = optimizers.schedules.CosineDecay(0.01, decay_steps=40)
    model.compile(optimizers.RMSprop(learning_rate=sched), "sparse_categorical_crossentropy", "accuracy")
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert model.optimizer.iterations == 40
    assert model.optimizer.learning_rate == pytest.approx(0.0, abs=1e-12)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8
