"""The layers autoencoders and GANs need: Conv2DTranspose, UpSampling2D, BatchNormalization,
LeakyReLU, ELU, GELU, Reshape, and the leaky_relu / elu / gelu activation strings of Conv2D and
Dense.

Forward values are checked against tests/reference.py's float64 loops; gradients against
central differences of the layer's own forward (test_layers.check_layer_gradients);
BatchNormalization's running statistics against Keras's momentum rule; its inference folding
into the layer before it against the unfolded plan; Reshape's channels-last order against
NumPy's reshape of NHWC data.
"""
import numpy as np
import pytest

import fastconv
import reference as ref
from fastconv import layers as L
from fastconv.models import Model, Sequential
from fastconv.models import graph as G
from test_layers import check_layer_gradients, spaced

RNG = np.random.default_rng(0)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------ Conv2DTranspose
@pytest.mark.parametrize("strides,padding,output_padding,dilation,kernel", [
    (2, "same", None, 1, 3), (2, "valid", None, 1, 3), (1, "same", None, 2, 3), (3, "valid", None, 1, 2),
    (2, 1, 1, 1, 3), ((2, 1), (0, 1), (1, 0), 1, (4, 3)), (2, "same", 1, 1, 3)])
def test_conv2d_transpose_forward_matches_reference(strides, padding, output_padding, dilation, kernel):
    layer = L.Conv2DTranspose(4, kernel, strides=strides, padding=padding,
                              output_padding=output_padding, dilation_rate=dilation,
                              bias_initializer="glorot_uniform")
    x = _x((2, 3, 5, 6), 1)
    y = layer(x)
    want = ref.conv2d_transpose(x.astype(np.float64), layer.kernel.astype(np.float64),
                                layer.bias.astype(np.float64), strides, padding, output_padding, dilation)
    assert y.shape == want.shape
    ref.assert_close(y, want, 1e-5, "conv2d_transpose layer")
    if padding == "same" and output_padding is None:
        s = (strides, strides) if isinstance(strides, int) else strides
        assert y.shape[2:] == (5 * s[0], 6 * s[1])     # Keras's "same" size rule


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "elu", "gelu"])
@pytest.mark.parametrize("strides,padding", [(2, "same"), (1, "valid"), (2, 1)])
def test_conv2d_transpose_gradients(activation, strides, padding):
    layer = L.Conv2DTranspose(3, 3, strides=strides, padding=padding, activation=activation)
    check_layer_gradients(layer, _x((2, 2, 4, 5), 2))


@pytest.mark.parametrize("act,slope", [("relu", 0.0), ("leaky_relu", 0.2)])
def test_conv2d_transpose_relu_and_leaky_gradients(act, slope):
    """Piecewise-linear activations: against the reference's backward through the kink's mask
    (finite differences would cross kinks of the pre-activations, which are not spaced)."""
    layer = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation=act,
                              bias_initializer="glorot_uniform")
    x = _x((2, 2, 4, 5), 11)
    result = layer.gradients(x, _x((2, 3, 8, 10), 12))
    dy = _x((2, 3, 8, 10), 12).astype(np.float64)
    z = ref.conv2d_transpose(x.astype(np.float64), layer.kernel.astype(np.float64),
                             layer.bias.astype(np.float64), 2, "same")
    dz = dy * np.where(z > 0, 1.0, slope)
    dx, dw = ref.conv2d_transpose_backward(dz, x, layer.kernel, 2, "same")
    ref.assert_close(result.dx, dx, 1e-5, "dx")
    ref.assert_close(result.grads[0], dw, 1e-5, "dkernel")
    ref.assert_close(result.grads[1], dz.sum(axis=(0, 2, 3)), 1e-5, "dbias")


def test_conv2d_transpose_keras_layout_and_config():
    layer = L.Conv2DTranspose(5, (3, 2), strides=2, padding="same", output_padding=1, name="up")
    layer.build((4, 6, 6))
    k = layer.get_weights_keras()[0]
    assert k.shape == (3, 2, 5, 4)                        # Keras: (kh, kw, filters, in)
    np.testing.assert_array_equal(k[1, 0, 2, 3], layer.kernel[3, 2, 1, 0])
    again = L.layer_from_config({"class_name": "Conv2DTranspose", "config": layer.get_config()})
    again.build((4, 6, 6))
    assert again.output_shape == layer.output_shape == (5, 12, 11)   # Keras: (n-1)s + k - 2(k//2) + op
    with pytest.raises(ValueError, match="output_padding"):
        L.Conv2DTranspose(2, 3, output_padding=-1)


# ------------------------------------------------------------------------------ UpSampling2D
@pytest.mark.parametrize("interpolation,align_corners", [("nearest", False), ("bilinear", False),
                                                         ("bilinear", True)])
@pytest.mark.parametrize("size", [2, (3, 2)])
def test_upsampling_forward_and_gradients(interpolation, align_corners, size):
    layer = L.UpSampling2D(size, interpolation=interpolation, align_corners=align_corners)
    x = _x((2, 3, 4, 5), 3)
    y = layer(x)
    want = ref.upsample2d(x.astype(np.float64), size if isinstance(size, tuple) else (size, size),
                          interpolation, align_corners)
    ref.assert_close(y, want, 1e-5, "upsample")
    check_layer_gradients(L.UpSampling2D(size, interpolation=interpolation,
                                         align_corners=align_corners), x)


# ------------------------------------------------------------------------------ activations
@pytest.mark.parametrize("layer,fn", [
    (L.LeakyReLU(0.1), lambda x: ref.leaky_relu(x, 0.1)),
    (L.LeakyReLU(), lambda x: ref.leaky_relu(x, 0.3)),
    (L.ELU(0.7), lambda x: ref.elu(x, 0.7)),
    (L.GELU(), ref.gelu),
    (L.GELU(approximate=True), ref.gelu_tanh)], ids=lambda v: getattr(v, "activation", ""))
def test_activation_layers(layer, fn):
    x = spaced((2, 3, 4, 4))
    ref.assert_close(layer(x), fn(x.astype(np.float64)), 1e-5, type(layer).__name__)
    check_layer_gradients(layer, x, eps=1e-3)
    again = L.layer_from_config({"class_name": type(layer).__name__, "config": layer.get_config()})
    np.testing.assert_array_equal(again(x), layer(x))


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "gelu"])
def test_conv_and_dense_take_the_new_activation_strings(activation):
    x = spaced((2, 3, 6, 6))
    conv = L.Conv2D(4, 3, activation=activation)
    check_layer_gradients(conv, x, eps=1e-3)
    z = ref.conv2d(x.astype(np.float64), conv.kernel.astype(np.float64), conv.bias.astype(np.float64))
    fn = {"leaky_relu": lambda v: ref.leaky_relu(v, 0.2), "elu": lambda v: ref.elu(v, 1.0),
          "gelu": ref.gelu}[activation]
    ref.assert_close(conv(x), fn(z), 1e-5, activation)
    check_layer_gradients(L.Dense(5, activation=activation), spaced((3, 7)), eps=1e-3)


def test_activation_parameter_errors():
    with pytest.raises(ValueError, match="takes no parameter"):
        L.Activation("relu", alpha=0.1)
    with pytest.raises(ValueError, match="finite number >= 0"):
        L.LeakyReLU(-0.5)


# ------------------------------------------------------------------------------ BatchNormalization
def test_batch_norm_training_inference_and_running_statistics():
    layer = L.BatchNormalization(momentum=0.9, epsilon=1e-3, gamma_initializer="glorot_uniform",
                                 beta_initializer="glorot_uniform")
    x = _x((4, 3, 5, 5), 4) * 2 + 1
    layer.build(x.shape[1:])
    mm0, mv0 = layer.moving_mean.copy(), layer.moving_variance.copy()
    y = layer(x, training=True)
    want, mean, var = ref.batch_norm_training(x.astype(np.float64), layer.gamma, layer.beta, 1e-3)
    ref.assert_close(y, want, 1e-4, "training output")
    ref.assert_close(layer.moving_mean, 0.9 * mm0 + 0.1 * mean, 1e-5, "moving mean")
    ref.assert_close(layer.moving_variance, 0.9 * mv0 + 0.1 * var, 1e-5, "moving variance (biased)")
    before = layer.moving_mean.copy()
    y_inf = layer(x)                                              # inference: running statistics
    np.testing.assert_array_equal(layer.moving_mean, before)     # ... and no update
    scale = layer.gamma / np.sqrt(layer.moving_variance.astype(np.float64) + 1e-3)
    want_inf = (x - layer.moving_mean[None, :, None, None]) * scale[None, :, None, None] + \
        layer.beta[None, :, None, None]
    ref.assert_close(y_inf, want_inf, 1e-5, "inference output")
    layer.trainable = False                                       # frozen: inference mode
    np.testing.assert_allclose(layer(x, training=True), y_inf, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(layer.moving_mean, before)


@pytest.mark.parametrize("shape,center,scale", [((4, 3, 3, 4), True, True), ((6, 5), True, True),
                                                ((3, 2, 4, 4), False, True), ((3, 2, 4, 4), True, False)])
def test_batch_norm_gradients(shape, center, scale):
    layer = L.BatchNormalization(center=center, scale=scale, gamma_initializer="glorot_uniform")
    result = check_layer_gradients(layer, _x(shape, 5))
    assert len(result.grads) == int(center) + int(scale)


def test_batch_norm_weights_config_and_saving(tmp_path):
    model = Sequential([L.Conv2D(3, 3, use_bias=False), L.BatchNormalization(momentum=0.8), L.ReLU(),
                        L.Flatten(), L.Dense(2)], input_shape=(1, 6, 6), seed=0)
    bn = model.layers[1]
    assert [w.shape for w in bn.get_weights()] == [(3,)] * 4      # gamma, beta, moving mean, variance
    assert len(model.trainable_weights) == 5 and len(model.non_trainable_weights) == 2
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _x((16, 1, 6, 6), 6), RNG.integers(0, 2, 16)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert not np.array_equal(bn.moving_mean, 0)                  # the running mean moved
    path = tmp_path / "bn.npz"
    model.save(path)
    again = fastconv.load_model(path)
    for a, b in zip(again.layers[1].get_weights(), bn.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_inference_folds_batch_norm_into_the_layer_before():
    inputs = fastconv.Input((2, 7, 7))
    h = L.BatchNormalization(gamma_initializer="glorot_uniform")(L.Conv2D(4, 3, padding="same")(inputs))
    h = L.BatchNormalization()(L.Conv2DTranspose(3, 3, strides=2, padding="same")(L.ReLU()(h)))
    out = L.BatchNormalization()(L.Dense(5)(L.Flatten()(h)))
    model = Model(inputs, out, seed=1)
    model.compile("adam", "mse")
    x = _x((8, 2, 7, 7), 7)
    model.fit(x, _x((8, 5), 8), epochs=1, batch_size=4, verbose=0)   # running statistics move
    folded = model._plan("predict")
    assert sum(st.bn is not None for st in folded.steps) == 3
    assert not any(isinstance(st.layer, L.BatchNormalization) for st in folded.steps)
    plain = G.Plan(model._graph)
    ctx = L.Context(False)
    got = G.forward(folded, ctx, [x], False)[0][0]
    want = G.forward(plain, ctx, [x], False)[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ Reshape
def test_reshape_channels_first_and_last():
    x = _x((3, 2, 4, 6), 9)
    layer = L.Reshape((8, 6))
    np.testing.assert_array_equal(layer(x), x.reshape(3, 8, 6))
    check_layer_gradients(L.Reshape((-1, 2)), x)
    # Keras's order: the NHWC memory is reshaped, a 3-D target is (H, W, C).
    keras_like = L.Reshape((6, 2, 4), data_format="channels_last")
    keras_like.build((2, 4, 6))
    assert keras_like.output_shape == (4, 6, 2)                  # held channels-first
    ctx = L.Context(False)
    y, _ = keras_like.forward(ctx, x)
    want = x.transpose(0, 2, 3, 1).reshape(3, 6, 2, 4).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(y, want)
    linear = L.Reshape((12, 4), data_format="channels_last")   # linear: backward is the adjoint
    linear.build(x.shape[1:])
    y, saved = linear.forward(ctx, x)
    g = _x(y.shape, 11)
    dx = linear.backward(ctx, saved, g)
    assert np.vdot(y.astype(np.float64), g) == pytest.approx(np.vdot(x.astype(np.float64), dx), rel=1e-6)
    flat = L.Reshape((7, 7, 8), data_format="channels_last")     # a generator's Dense -> image
    v = _x((2, 392), 10)
    flat.build((392,))
    y, _ = flat.forward(ctx, v)
    np.testing.assert_array_equal(y, v.reshape(2, 7, 7, 8).transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((5, 5)).build((2, 4, 6))
