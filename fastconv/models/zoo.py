"""The reference networks: LeNet-5 and the small VGG of DESIGN.md, a small ResNet, the
convolutional denoising autoencoder and the DCGAN's generator and discriminator."""
from __future__ import annotations

import numpy as np

from .. import initializers
from .. import layers as L
from .model import Model, Sequential

__all__ = ["lenet5", "vgg_small", "resnet_small", "LENET5_C3_TABLE", "denoising_autoencoder",
           "dcgan_generator", "dcgan_discriminator"]


def _lenet5_c3_table():
    """LeCun et al. (1998), Table I: which of the 6 S2 maps each of the 16 C3 maps sees."""
    table = np.zeros((16, 6), dtype=bool)
    for i in range(6):
        table[i, [(i + j) % 6 for j in range(3)]] = True          # maps 0-5: 3 neighbours
        table[6 + i, [(i + j) % 6 for j in range(4)]] = True      # maps 6-11: 4 neighbours
    for row, maps in zip((12, 13, 14), ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5))):
        table[row, list(maps)] = True                              # maps 12-14: 4 non-neighbours
    table[15, :] = True                                            # map 15: all six
    return table


LENET5_C3_TABLE = _lenet5_c3_table()


def lenet5(classic=True, input_shape=(1, 28, 28), num_classes=10, seed=None):
    """LeNet-5 (LeCun et al., 1998) as DESIGN.md describes it.

    Takes 28x28 MNIST images (input_shape (1, 28, 28)) and pads them by 2 to the paper's 32x32
    with a ZeroPadding2D first (give input_shape=(1, 32, 32) to skip it). Then C1 6@5x5,
    S2 2x2 subsampling, C3 16@5x5, S4 2x2, C5 120@5x5 (-> 1x1), Flatten, F6 Dense 84, and an
    output Dense of ``num_classes`` logits (softmax is in the loss).

    classic=True: tanh after C1, C3, C5 and F6, average pooling, and C3 wired by the paper's
    connection table (LENET5_C3_TABLE): 60,806 parameters (C3 has 1,516).
    classic=False: the modern variant: full C3, ReLU and max pooling, He initialisation:
    61,706 parameters.
    """
    input_shape = tuple(input_shape)
    act = "tanh" if classic else "relu"
    init = "glorot_uniform" if classic else "he_normal"
    pool = L.AvgPool2D if classic else L.MaxPool2D
    layers = []
    if input_shape[-2:] != (32, 32):
        layers.append(L.ZeroPadding2D(2, name="pad"))
    layers += [
        L.Conv2D(6, 5, activation=act, kernel_initializer=init, name="C1"),
        pool(2, name="S2"),
        L.Conv2D(16, 5, activation=act, kernel_initializer=init, name="C3",
                 connections=LENET5_C3_TABLE if classic else None),
        pool(2, name="S4"),
        L.Conv2D(120, 5, activation=act, kernel_initializer=init, name="C5"),
        L.Flatten(name="flatten"),
        L.Dense(84, activation=act, kernel_initializer=init, name="F6"),
        L.Dense(num_classes, name="output"),
    ]
    return Sequential(layers, input_shape=input_shape, seed=seed,
                      name="lenet5" if classic else "lenet5_modern")


def vgg_small(input_shape=(1, 28, 28), num_classes=10, seed=None, dropout=0.5):
    """The small VGG of DESIGN.md: conv32, conv32, maxpool 2, conv64, conv64, maxpool 2,
    flatten (3136), Dense 256 ReLU, Dropout 0.5, Dense ``num_classes`` (logits). 3x3 "same"
    convolutions with ReLU and He initialisation; 870,634 parameters. Train it with Adam."""
    conv = lambda filters, name: L.Conv2D(filters, 3, padding="same", activation="relu",
                                          kernel_initializer="he_normal", name=name)
    layers = [conv(32, "conv1_1"), conv(32, "conv1_2"), L.MaxPool2D(2, name="pool1"),
              conv(64, "conv2_1"), conv(64, "conv2_2"), L.MaxPool2D(2, name="pool2"),
              L.Flatten(name="flatten"),
              L.Dense(256, activation="relu", kernel_initializer="he_normal", name="fc1"),
              L.Dropout(dropout, name="dropout"),
              L.Dense(num_classes, name="output")]
    return Sequential(layers, input_shape=tuple(input_shape), seed=seed, name="vgg_small")


def _residual_block(x, filters, name):
    """x + conv(relu(conv(x))), then ReLU: two 3x3 "same" convolutions around a shortcut."""
    y = L.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name=f"{name}_conv1")(x)
    y = L.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    return L.ReLU(name=f"{name}_relu")(L.Add(name=f"{name}_add")([x, y]))


def resnet_small(input_shape=(1, 28, 28), num_classes=10, seed=None, width=16):
    """A small ResNet built with the functional API: a 3x3 stem of ``width`` maps, a residual
    block (two 3x3 convolutions and an identity shortcut, added, then ReLU), 2x2 max pooling, a
    3x3 convolution to 2*width maps and a second residual block, pooling again, then Flatten and
    a Dense of ``num_classes`` logits. He initialisation; train it with Adam."""
    inputs = L.Input(tuple(input_shape), name="image")
    x = L.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name="stem")(inputs)
    x = _residual_block(x, width, "block1")
    x = L.MaxPool2D(2, name="pool1")(x)
    x = L.Conv2D(2 * width, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name="widen")(x)
    x = _residual_block(x, 2 * width, "block2")
    x = L.MaxPool2D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    outputs = L.Dense(num_classes, name="output")(x)
    return Model(inputs, outputs, name="resnet_small", seed=seed)


def denoising_autoencoder(input_shape=(1, 28, 28), seed=None):
    """The design notes' convolutional denoising autoencoder: 28 -> 14 -> 7 -> 14 -> 28.

    Encoder: Conv2D 16 then Conv2D 8, 3x3, stride 2, "same", ReLU. Decoder: Conv2DTranspose 8
    then Conv2DTranspose 16, 3x3, stride 2, "same", ReLU, then Conv2D to the input's channels,
    3x3 "same", sigmoid: pixels in [0, 1], like the images it is trained to restore. For
    (1, 28, 28) images: 3,217 parameters, the code in the middle is (8, 7, 7). Train it with
    Adam on the mean squared error between its output for noisy images and the clean ones
    (fastconv train denoise).

    Initialisation: He uniform kernels, zero biases, except the output's bias: -2, so that the
    first output is sigmoid(-2) = 0.12, about MNIST's mean grey level (0.13). Started at 0.5
    instead (a zero bias), the first steps drive every pixel down hard, the decoder's ReLUs go
    to zero for every input, and the network settles on one constant image for all inputs.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"denoising_autoencoder: input_shape must be (C, H, W), got {input_shape}")
    conv = lambda filters, name, **kw: L.Conv2D(filters, 3, padding="same", name=name,  # noqa: E731
                                                kernel_initializer="he_uniform", **kw)
    up = lambda filters, name: L.Conv2DTranspose(filters, 3, strides=2, padding="same",  # noqa: E731
                                                 activation="relu", kernel_initializer="he_uniform",
                                                 name=name)
    layers = [conv(16, "encode1", strides=2, activation="relu"),
              conv(8, "encode2", strides=2, activation="relu"),
              up(8, "decode1"), up(16, "decode2"),
              conv(input_shape[0], "restore", activation="sigmoid",
                   bias_initializer=initializers.Constant(-2.0))]
    return Sequential(layers, input_shape=input_shape, seed=seed, name="denoising_autoencoder")


def dcgan_generator(latent_dim=100, width=48, seed=None):
    """The DCGAN's generator for 28x28 digits (Radford et al., 2015, at MNIST scale).

    z (latent_dim,) -> Dense 7*7*width (no bias), BatchNormalization, ReLU, Reshape (width, 7,
    7) -> Conv2DTranspose width 3x3 stride 1 "same" (no bias), BatchNormalization, ReLU ->
    (width, 7, 7) -> Conv2DTranspose width/2 4x4 stride 2 "same" (no bias), BatchNormalization,
    ReLU -> (width/2, 14, 14) -> Conv2DTranspose 1 4x4 stride 2 "same", tanh -> (1, 28, 28) in
    [-1, 1] (train it on images scaled to [-1, 1]). The stride-1 block at 7x7 is the one of
    TensorFlow's DCGAN tutorial. The biases before a batch normalisation are left out: its beta
    does their work. The batch normalisations' moving statistics follow the batches with
    momentum 0.9 (Keras's default is 0.99): the generator changes quickly while it trains, and
    the digits it draws in inference mode use those statistics. Glorot uniform kernels. With
    the defaults (latent_dim 100, width 48): 279,601 trainable parameters, and 4,848 moving
    statistics of the batch normalisations (284,449 in all).
    """
    for name, value in (("latent_dim", latent_dim), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"dcgan_generator: {name} must be a positive int, got {value!r}")
    if width % 2:
        raise ValueError(f"dcgan_generator: width must be even (the last block has width/2 "
                         f"maps), got {width}")
    layers = [L.Dense(7 * 7 * width, use_bias=False, name="project"),
              L.BatchNormalization(momentum=0.9, name="project_bn"),
              L.ReLU(name="project_relu"),
              L.Reshape((width, 7, 7), name="to_maps"),
              L.Conv2DTranspose(width, 3, strides=1, padding="same", use_bias=False,
                                name="refine7"),
              L.BatchNormalization(momentum=0.9, name="refine7_bn"),
              L.ReLU(name="refine7_relu"),
              L.Conv2DTranspose(width // 2, 4, strides=2, padding="same", use_bias=False,
                                name="grow14"),
              L.BatchNormalization(momentum=0.9, name="grow14_bn"),
              L.ReLU(name="grow14_relu"),
              L.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh",
                                name="grow28")]
    return Sequential(layers, input_shape=(int(latent_dim),), seed=seed, name="dcgan_generator")


def dcgan_discriminator(input_shape=(1, 28, 28), width=32, dropout=0.2, seed=None):
    """The DCGAN's discriminator: one logit per image (real > 0, fake < 0).

    Conv2D width 4x4 stride 2 "same", LeakyReLU 0.2, Dropout -> Conv2D 2*width 4x4 stride 2
    "same", LeakyReLU 0.2, Dropout -> Flatten -> Dense 1, a logit (train it with
    fastconv.losses.BinaryCrossentropy(from_logits=True)). The leaky ReLUs are the
    convolutions' own activation ("leaky_relu", slope 0.2), applied in the kernel's output
    pass. No batch normalisation, so a batch of real images and one of generated images can go
    through it together. Dropout 0.2 by default (TensorFlow's DCGAN tutorial has 0.3; with 0.2
    the default DCGAN's classifier score rose a little faster on MNIST). Glorot uniform
    kernels. With the defaults and (1, 28, 28) images: 36,513 parameters.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"dcgan_discriminator: input_shape must be (C, H, W), got {input_shape}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"dcgan_discriminator: width must be a positive int, got {width!r}")
    layers = [L.Conv2D(width, 4, strides=2, padding="same", activation="leaky_relu", name="down14"),
              L.Dropout(dropout, name="down14_dropout"),
              L.Conv2D(2 * width, 4, strides=2, padding="same", activation="leaky_relu",
                       name="down7"),
              L.Dropout(dropout, name="down7_dropout"),
              L.Flatten(name="flatten"),
              L.Dense(1, name="logit")]
    return Sequential(layers, input_shape=input_shape, seed=seed, name="dcgan_discriminator")
