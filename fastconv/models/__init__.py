"""Models: graphs of layers, their training loop, saving, weight layouts and the model zoo.

    graph      the graph of a model and the executor that runs it over a tape
    model      Model (functional and subclassed) and Sequential, the chain case
    training   compile, fit, evaluate, predict, gradients: one loop for every device
    cuda_step  the GPU side of a training step (device weights, the step as a CUDA graph)
    saving     save / load_model / save_weights, the summary table
    interop    weights to and from PyTorch's and Keras's layouts
    zoo        lenet5, vgg_small, resnet_small, denoising_autoencoder, dcgan_generator,
               dcgan_discriminator

Callbacks are in fastconv.callbacks; the progress bar in fastconv.progress.
"""
from ..callbacks import Callback, EarlyStopping, History
from .interop import from_keras_weights, from_pytorch_weights, to_keras_weights, to_pytorch_weights
from .model import Model, Sequential
from .saving import load_model
from .zoo import (LENET5_C3_TABLE, dcgan_discriminator, dcgan_generator, denoising_autoencoder,
                  lenet5, resnet_small, vgg_small)

__all__ = [
    "Model", "Sequential", "load_model", "History", "Callback", "EarlyStopping", "lenet5",
    "vgg_small", "resnet_small", "LENET5_C3_TABLE", "to_keras_weights", "from_keras_weights",
    "to_pytorch_weights", "from_pytorch_weights", "denoising_autoencoder", "dcgan_generator",
    "dcgan_discriminator",
]
