"""Tests for fastconv.layers and fastconv.initializers.

Gradients are checked through the layer API with central differences along random
directions: f(x) = sum(layer(x) * g) for a fixed random upstream gradient g, accumulated in
float64, against <dx, v> and <dparam, v>. The layers compute in float32, so steps are large
enough (1e-2 for smooth functions, 1e-3 for piecewise-linear ones on inputs kept away from
their kinks) and tolerances are relative (1e-2); a test below shows the check catches a
gradient that is off by 2%. Forward values are checked against float64 NumPy references and
the worked examples in tests/data/seed_vectors.json.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from fastconv import initializers, layers as L


# ----------------------------------------------------------------------------- helpers
def _spec_dir():
    """tests/data: the tests' own copy of the worked examples (seed_vectors.json)."""
    return Path(__file__).resolve().parent / "data"


def _directional(f, array, direction, eps):
    """Central difference of f() along ``direction``, perturbing ``array`` in place."""
    saved = array.copy()
    array += (eps * direction).astype(np.float32)
    plus = f()
    np.copyto(array, saved)
    array -= (eps * direction).astype(np.float32)
    minus = f()
    np.copyto(array, saved)
    return (plus - minus) / (2 * eps)


def check_layer_gradients(layer, x, eps=1e-2, rtol=1e-2, seed=0, directions=3, scale_dx=1.0):
    """Assert the layer's backward matches central differences of its forward.

    Checks dx and every parameter's gradient along ``directions`` random directions.
    scale_dx lets a test corrupt dx on purpose (to show the check can fail).
    """
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not layer.built:  # seeded weights: the check is deterministic
        layer.build(x.shape[1:], np.random.default_rng(seed + 1))
    y = layer(x, training=True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    result = layer.gradients(x, g)
    dx = result.dx * scale_dx
    grads = [gr.copy() for gr in result.grads]
    g64 = g.astype(np.float64)

    def f():
        return float(np.sum(layer(x, training=True).astype(np.float64) * g64))

    targets = [("x", x, dx)] + [(f"param{i}", p, gr) for i, (p, gr) in enumerate(zip(layer.params, grads))]
    mask = getattr(layer, "_mask", None)
    for name, array, grad in targets:
        for _ in range(directions):
            v = rng.standard_normal(array.shape)
            if name == "param0" and mask is not None:
                v *= mask  # unconnected weights are not parameters
            v /= np.linalg.norm(v)  # a unit direction: eps is the step's length
            numeric = _directional(f, array, v, eps)
            analytic = float(np.sum(grad.astype(np.float64) * v))
            assert abs(numeric - analytic) <= rtol * max(abs(analytic), abs(numeric)) + 1e-4, \
                f"{type(layer).__name__} d/d{name}: analytic {analytic:.6g} vs numeric {numeric:.6g}"
    return result


def spaced(shape, seed=0, gap=0.01):
    """Values a permutation apart: no two within ``gap``, so max pooling and ReLU kinks are
    not crossed by small perturbations."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    values = (rng.permutation(n) - n / 2 + 0.5) * gap
    return values.reshape(shape).astype(np.float32)


def conv_ref(x, w, b, stride, pads, dilation):
    """float64 NCHW/OIHW convolution with explicit (top, left, bottom, right) padding."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    sh, sw = stride
    dh, dw = dilation
    p = (h - dh * (r - 1) - 1) // sh + 1
    q = (wd - dw * (s - 1) - 1) // sw + 1
    y = np.zeros((n, k, p, q))
    for i in range(r):
        for j in range(s):
            patch = x[:, :, i * dh:i * dh + sh * (p - 1) + 1:sh, j * dw:j * dw + sw * (q - 1) + 1:sw]
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, i, j].astype(np.float64))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


# ----------------------------------------------------------------------------- the check itself
def test_gradient_check_catches_a_wrong_gradient():
    layer = L.Conv2D(3, 3, activation="tanh")
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    check_layer_gradients(layer, x)  # right: passes
    with pytest.raises(AssertionError, match="dx"):
        check_layer_gradients(layer, x, scale_dx=1.02)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid"])
@pytest.mark.parametrize("stride,padding,dilation", [(1, "valid", 1), (2, "same", 1), (1, "same", 2),
                                                     ((2, 1), (1, 2), 1)])
def test_conv2d_gradients(activation, stride, padding, dilation):
    layer = L.Conv2D(4, (3, 2), strides=stride, padding=padding, dilation_rate=dilation,
                     activation=activation)
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 8)).astype(np.float32)
    check_layer_gradients(layer, x)


def test_conv2d_relu_gradients():
    layer = L.Conv2D(4, 3, padding="same", activation="relu")
    check_layer_gradients(layer, spaced((2, 2, 6, 6)), eps=1e-3)


def test_conv2d_masked_gradients_and_zero_weights():
    mask = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=bool)
    layer = L.Conv2D(4, 3, activation="tanh", connections=mask)
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    result = check_layer_gradients(layer, x)
    assert np.all(layer.kernel[~mask] == 0.0)
    assert np.all(result.grads[0][~mask] == 0.0)
    assert np.any(result.grads[0][mask] != 0.0)
    assert layer.count_params() == int(mask.sum()) * 9 + 4


@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid", "softmax"])
def test_dense_gradients(activation):
    layer = L.Dense(5, activation=activation)
    x = np.random.default_rng(4).standard_normal((3, 7)).astype(np.float32)
    check_layer_gradients(layer, x)


def test_dense_relu_gradients():
    check_layer_gradients(L.Dense(5, activation="relu", kernel_initializer="he_uniform"),
                          spaced((3, 6)), eps=1e-3)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_max_pool_gradients(padding):
    check_layer_gradients(L.MaxPool2D(2, strides=(2, 1), padding=padding), spaced((2, 3, 5, 5)),
                          eps=1e-3)


@pytest.mark.parametrize("padding", ["valid", "same", 1])
def test_avg_pool_gradients(padding):
    layer = L.AvgPool2D(3, strides=2, padding=padding)
    check_layer_gradients(layer, np.random.default_rng(5).standard_normal((2, 2, 7, 6)))


@pytest.mark.parametrize("layer", [L.Tanh(), L.Sigmoid(), L.Softmax(), L.Flatten(), L.GlobalAvgPool2D(),
                                   L.ZeroPadding2D(((1, 2), (0, 3))), L.Activation(None)],
                         ids=lambda l: type(l).__name__)
def test_simple_layer_gradients(layer):
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5)).astype(np.float32)
    if isinstance(layer, L.Softmax):
        x = x.reshape(2, 60)
    check_layer_gradients(layer, x)


def test_relu_layer_gradients():
    check_layer_gradients(L.ReLU(), spaced((2, 3, 4, 4)), eps=1e-3)


def test_dropout_gradient_uses_the_same_mask():
    layer = L.Dropout(0.4, seed=7)
    x = np.ones((50, 40), dtype=np.float32)
    result = layer.gradients(x, np.ones((50, 40), np.float32))
    np.testing.assert_array_equal(result.dx, result.y)  # d(x * mask)/dx = mask = y for x = 1
    assert 0.5 < np.mean(result.y == 0.0) / 0.4 < 1.5


# ----------------------------------------------------------------------------- forward values
@pytest.mark.parametrize("stride,padding,dilation", [(1, "valid", 1), (2, "same", 1), (3, "same", 2),
                                                     (1, (2, 1), 1)])
def test_conv2d_forward_matches_reference(stride, padding, dilation):
    rng = np.random.default_rng(8)
    layer = L.Conv2D(5, 3, strides=stride, padding=padding, dilation_rate=dilation,
                     bias_initializer="glorot_uniform")
    x = rng.standard_normal((2, 3, 11, 10)).astype(np.float32)
    y = layer(x)
    pads = layer._pad
    ref = conv_ref(x, layer.kernel, layer.bias, layer.strides, pads, layer.dilation_rate)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    if padding == "same":
        assert y.shape[2:] == (-(-11 // stride), -(-10 // stride))


def test_conv2d_same_puts_the_extra_pixel_bottom_right():
    layer = L.Conv2D(1, 2, padding="same")
    layer.build((1, 3, 3))
    assert layer._pad == (0, 0, 1, 1)


def test_conv2d_fused_activations():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    plain = L.Conv2D(3, 3)
    y = plain(x).astype(np.float64)
    for name, f in (("relu", lambda v: np.maximum(v, 0)), ("tanh", np.tanh),
                    ("sigmoid", lambda v: 1 / (1 + np.exp(-v)))):
        layer = L.Conv2D(3, 3, activation=name)
        layer.build(x.shape[1:])
        layer.set_weights(plain.get_weights())
        np.testing.assert_allclose(layer(x), f(y), rtol=1e-5, atol=1e-6)


def test_seed_vectors_conv_and_pool():
    path = _spec_dir() / "seed_vectors.json"
    if not path.exists():
        pytest.skip(f"no seed vectors at {path}")
    data = json.loads(path.read_text())
    for case in data["conv2d"]:
        x = np.array(case["x_nhwc"], dtype=np.float32)
        w = np.array(case["w_hwio"], dtype=np.float32)
        layer = L.Conv2D(w.shape[3], w.shape[:2], strides=case["stride"], padding=case["padding"].lower(),
                         use_bias=False, data_format="channels_last")
        layer.build(layer.channels_first_shape(x.shape[1:]))
        layer.set_weights_keras([w])
        y = layer(x)  # NHWC out
        planes = np.array(case["y_nhwc_channel_planes"], dtype=np.float32)  # (K, P, Q)
        np.testing.assert_allclose(y[0].transpose(2, 0, 1), planes, err_msg=case["name"])
    for case in data["max_pool"]:
        x = np.array(case["x_nhwc"], dtype=np.float32)
        layer = L.MaxPool2D(case["pool"], strides=case["stride"], padding=case["padding"].lower(),
                            data_format="channels_last")
        np.testing.assert_allclose(layer(x), np.array(case["y_nhwc"], dtype=np.float32),
                                   err_msg=case["name"])
    for case in data["shapes"]:
        shape_in = tuple(case["in_nhwc"])
        if "kernel" in case:
            padding = case["padding"]
            padding = padding.lower() if isinstance(padding, str) else padding
            layer = L.Conv2D(case["filters"], case["kernel"], strides=case["stride"], padding=padding,
                             data_format="channels_last")
        else:
            layer = L.MaxPool2D(case["pool"], strides=case["stride"], padding=case["padding"].lower(),
                                data_format="channels_last")
        out = layer.build(layer.channels_first_shape(shape_in[1:]))
        assert (out[1], out[2], out[0]) == tuple(case["out_nhwc"][1:]), case["name"]
    for case in data["parameter_counts"]:
        layer = L.Conv2D(case["filters"], case["kernel"])
        layer.build((case["in_channels"], 32, 32))
        assert layer.count_params() == case["params"]


def test_avg_pool_same_excludes_padding_like_keras():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    y = L.AvgPool2D(2, padding="same")(x)
    # windows: [1 2 4 5] [3 6] [7 8] [9] -> means of the real cells only
    np.testing.assert_allclose(y[0, 0], [[3.0, 4.5], [7.5, 9.0]])
    y = L.AvgPool2D(2, strides=1, padding=1)(x)  # numeric padding: PyTorch's count_include_pad
    assert y[0, 0, 0, 0] == pytest.approx(1.0 / 4)


def test_max_pool_and_global_average_values():
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    np.testing.assert_array_equal(L.MaxPool2D(2)(x)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_allclose(L.GlobalAvgPool2D()(x), [[7.5, 23.5]])


def test_zero_padding_and_flatten():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    y = L.ZeroPadding2D((1, 2))(x)
    assert y.shape == (1, 1, 4, 7)
    np.testing.assert_array_equal(y[0, 0, 1:3, 2:5], x[0, 0])
    assert y.sum() == x.sum()
    assert L.Flatten()(np.zeros((4, 2, 3, 5))).shape == (4, 30)
    pad = L.ZeroPadding2D(1)
    first = pad(np.ones((1, 1, 2, 2), dtype=np.float32))
    pad(np.full((1, 1, 2, 2), 5.0, dtype=np.float32))
    assert first.sum() == 4.0  # a later call does not overwrite an earlier result


def test_dropout_inference_identity_and_training_rate():
    x = np.ones((200, 100), dtype=np.float32)
    layer = L.Dropout(0.3, seed=0)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    again = L.Dropout(0.3, seed=0)(x, training=True)
    np.testing.assert_array_equal(again, y)


def test_softmax_layer_rows_sum_to_one():
    x = np.random.default_rng(10).standard_normal((4, 6)).astype(np.float32) * 10
    y = L.Softmax()(x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- weights & layouts
def test_keras_and_pytorch_layouts():
    conv = L.Conv2D(4, (3, 2))
    conv.build((2, 8, 8))
    k, b = conv.get_weights_keras()
    assert k.shape == (3, 2, 2, 4)
    np.testing.assert_array_equal(k[1, 0, 1, 3], conv.kernel[3, 1, 1, 0])
    other = L.Conv2D(4, (3, 2))
    other.build((2, 8, 8))
    other.set_weights_keras([k, b])
    np.testing.assert_array_equal(other.kernel, conv.kernel)
    np.testing.assert_array_equal(conv.get_weights_pytorch()[0], conv.kernel)
    dense = L.Dense(3)
    dense.build((5,))
    dk, _ = dense.get_weights_keras()
    assert dk.shape == (5, 3)
    np.testing.assert_array_equal(dk.T, dense.kernel)


def test_set_a_filter_by_hand():
    conv = L.Conv2D(2, 3, use_bias=False)
    conv.build((1, 5, 5))
    w = np.zeros((2, 1, 3, 3), dtype=np.float32)
    w[0, 0, 1, 1] = 1.0          # identity filter
    w[1, 0] = [[-1, 0, 1]] * 3   # horizontal gradient
    conv.set_weights([w])
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    y = conv(x)
    np.testing.assert_array_equal(y[0, 0], x[0, 0, 1:4, 1:4])
    np.testing.assert_array_equal(y[0, 1], np.full((3, 3), 6.0))


def test_set_weights_errors():
    conv = L.Conv2D(2, 3)
    with pytest.raises(RuntimeError, match="before the layer is built"):
        conv.set_weights([np.zeros((2, 1, 3, 3)), np.zeros(2)])
    conv.build((1, 5, 5))
    with pytest.raises(ValueError, match=r"shape \(2, 1, 2, 2\), expected \(2, 1, 3, 3\)"):
        conv.set_weights([np.zeros((2, 1, 2, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="got 1 arrays, expected 2"):
        conv.set_weights([np.zeros((2, 1, 3, 3))])


def test_masked_conv_set_weights_keeps_zeros():
    mask = np.array([[True, False], [False, True]])
    conv = L.Conv2D(2, 1, connections=mask)
    conv.build((2, 3, 3))
    conv.set_weights([np.ones((2, 2, 1, 1)), np.zeros(2)])
    np.testing.assert_array_equal(conv.kernel[:, :, 0, 0], mask.astype(np.float32))


# ----------------------------------------------------------------------------- bad input
def test_layer_argument_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        L.Conv2D(4, 3, activation="swish")
    with pytest.raises(ValueError, match="unknown activation 'selu'"):
        L.Dense(4, activation="selu")
    with pytest.raises(ValueError, match="filters must be a positive int"):
        L.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        L.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be an int or an"):
        L.Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match="rate must be in"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="unknown initializer 'he_magic'"):
        L.Dense(3, kernel_initializer="he_magic")
    with pytest.raises(ValueError, match="connections must be a boolean"):
        L.Conv2D(4, 3, connections=np.ones((3, 2)))


def test_layer_shape_errors():
    with pytest.raises(ValueError, match=r"expects image input \(N, C, H, W\)"):
        L.Conv2D(4, 3)(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="does not fit the 2x2 input"):
        L.Conv2D(4, 3)(np.zeros((1, 1, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="put a Flatten"):
        L.Dense(4)(np.zeros((1, 1, 2, 2), dtype=np.float32))
    conv = L.Conv2D(4, 3)
    conv(np.zeros((1, 1, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"per-sample shape \(2, 5, 5\) but the layer was built for \(1, 5, 5\)"):
        conv(np.zeros((1, 2, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="connections has shape"):
        L.Conv2D(2, 1, connections=np.ones((2, 3), bool))(np.zeros((1, 2, 3, 3), dtype=np.float32))


# ----------------------------------------------------------------------------- initialisers
@pytest.mark.parametrize("name,std", [
    ("he_normal", lambda fi, fo: np.sqrt(2 / fi)), ("he_uniform", lambda fi, fo: np.sqrt(2 / fi)),
    ("glorot_normal", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("glorot_uniform", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("lecun_normal", lambda fi, fo: np.sqrt(1 / fi)), ("lecun_uniform", lambda fi, fo: np.sqrt(1 / fi))])
def test_initializer_scales(name, std):
    init = initializers.get(name)
    fan_in, fan_out = 300, 200
    w = init((200, 300), fan_in, fan_out, np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (200, 300)
    assert abs(w.std() / std(fan_in, fan_out) - 1) < 0.02
    assert abs(w.mean()) < 0.01 * std(fan_in, fan_out) * 10
    if name.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * std(fan_in, fan_out) + 1e-6
    else:  # truncated at two standard deviations of the untruncated normal
        assert np.abs(w).max() <= 2 * std(fan_in, fan_out) / 0.87962566 + 1e-6


def test_initializers_are_seeded_and_named():
    a = initializers.HeNormal()((10, 10), 10, 10, np.random.default_rng(3))
    b = initializers.get("he_normal")((10, 10), 10, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.all(initializers.get("zeros")((3,)) == 0)
    assert np.all(initializers.get({"name": "constant", "value": 0.5})((2,)) == 0.5)
    with pytest.raises(ValueError, match="unknown initializer 'nope'; known:"):
        initializers.get("nope")


def test_conv_fans_use_receptive_field():
    conv = L.Conv2D(64, 3, kernel_initializer="he_normal")
    conv.build((32, 16, 16))
    assert abs(conv.kernel.std() / np.sqrt(2 / (32 * 9)) - 1) < 0.03


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("layer", [
    L.Conv2D(4, (3, 2), strides=2, padding=(1, 0), dilation_rate=(1, 2), activation="tanh", use_bias=False,
             kernel_initializer="lecun_normal", connections=np.eye(4, 2, dtype=bool), name="c"),
    L.MaxPool2D(3, strides=2, padding="same"), L.AvgPool2D((2, 3), padding=1, count_include_pad=False),
    L.GlobalAvgPool2D(), L.ZeroPadding2D(((1, 2), (3, 4))), L.Flatten(), L.Dropout(0.25, seed=3),
    L.Dense(7, activation="softmax", bias_initializer=initializers.Constant(0.5), input_shape=(3,)),
    L.Activation("sigmoid"), L.ReLU(), L.Tanh(), L.Sigmoid(), L.Softmax(),
    L.Dense(2, kernel_initializer=lambda shape, fan_in, fan_out, rng: np.ones(shape, np.float32),
            name="custom_init")],
    ids=lambda l: type(l).__name__)
def test_config_round_trip(layer):
    entry = {"class_name": type(layer).__name__, "config": layer.get_config()}
    json.dumps(entry)  # JSON-able
    again = L.layer_from_config(json.loads(json.dumps(entry)))
    assert type(again) is type(layer)
    if layer.name == "custom_init":  # a plain callable is saved as the default initialiser
        assert again.kernel_initializer.name == "glorot_uniform"
    else:
        assert again.get_config() == layer.get_config()
    if isinstance(layer, L.Conv2D):
        np.testing.assert_array_equal(again.connections, layer.connections)
    with pytest.raises(ValueError, match="unknown layer class 'Conv3D'"):
        L.layer_from_config({"class_name": "Conv3D", "config": {}})


# ----------------------------------------------------------------------------- RandomTranslation
def shifted(image, sy, sx, fill):
    """image (C, H, W) moved sy rows down and sx columns right, the border filled: plain loops."""
    c, h, w = image.shape
    out = np.full(image.shape, fill, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            if 0 <= i - sy < h and 0 <= j - sx < w:
                out[:, i, j] = image[:, i - sy, j - sx]
    return out


def test_random_translation_shifts_each_image_within_the_range():
    rng = np.random.default_rng(0)
    layer = L.RandomTranslation(2 / 9, 3 / 11, fill_value=-1.0, seed=4)
    layer.build((2, 9, 11))
    x = rng.standard_normal((40, 2, 9, 11)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), x)                    # inference: the identity
    y = layer(x, training=True)
    seen = set()
    for i in range(len(x)):
        matches = [(sy, sx) for sy in range(-2, 3) for sx in range(-3, 4)
                   if np.array_equal(y[i], shifted(x[i], sy, sx, -1.0).astype(np.float32))]
        assert len(matches) == 1, f"image {i}: not a shift by at most (2, 3) pixels"
        seen.add(matches[0])
    assert len(seen) > 10                                          # shifts differ between images
    again = L.RandomTranslation(2 / 9, 3 / 11, fill_value=-1.0, seed=4)
    again.build((2, 9, 11))
    np.testing.assert_array_equal(again(x, training=True), y)      # a seed repeats the shifts


def test_random_translation_backward_is_the_adjoint_of_its_forward():
    """The layer is linear once its shifts are drawn: <forward(x), g> = <x, backward(g)>, which
    for a linear map is the finite-difference check, exactly."""
    rng = np.random.default_rng(1)
    layer = L.RandomTranslation(0.3, seed=2)
    layer.build((3, 7, 8))
    x = rng.standard_normal((6, 3, 7, 8)).astype(np.float32)
    ctx = L.Context(training=True)
    y, saved = layer.forward(ctx, x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(ctx, saved, g)
    assert np.vdot(y.astype(np.float64), g) == pytest.approx(np.vdot(x.astype(np.float64), dx), rel=1e-6)
    eps = 1e-2                                                     # and one directional difference
    v = rng.standard_normal(x.shape).astype(np.float32)
    layer._rng = np.random.default_rng(5)
    y_plus, saved_plus = layer.forward(ctx, x + eps * v)
    layer._rng = np.random.default_rng(5)
    y_minus, _ = layer.forward(ctx, x - eps * v)
    numeric = np.vdot((y_plus - y_minus).astype(np.float64) / (2 * eps), g)
    assert numeric == pytest.approx(np.vdot(v.astype(np.float64), layer.backward(ctx, saved_plus, g)),
                                    rel=1e-4)


def test_random_translation_config_and_errors():
    layer = L.RandomTranslation(0.1, 0.2, fill_value=0.5, seed=3, name="aug")
    again = L.layer_from_config({"class_name": "RandomTranslation", "config": layer.get_config()})
    assert (again.height_factor, again.width_factor, again.fill_value, again.seed, again.name) == \
        (0.1, 0.2, 0.5, 3, "aug")
    with pytest.raises(ValueError, match="height_factor must be a number in"):
        L.RandomTranslation(1.5)
    with pytest.raises(ValueError, match="width_factor must be a number in"):
        L.RandomTranslation(0.1, -0.1)
    with pytest.raises(ValueError, match="expects"):
        L.RandomTranslation(0.1).build((10,))
