"""Named training recipes: ``fastconv train --preset NAME`` runs one, and Python code builds the
same model and optimiser from ``fastconv.presets.get(NAME)``.

    mnist99   MNIST to about 99% test accuracy in 2 epochs: lenet5_bn (LeNet-5 on the unpadded 28x28
              images, batch normalisation after both convolutions), batch 64, Adam under a
              one-cycle learning rate peaking at 1e-2. docs/MNIST99.md has the recipe, the
              seeds it was checked with and the time it takes.

A recipe is data (a Preset): the model's builder, the data set, epochs, batch size and the
one-cycle schedule. Everything it builds goes through the public API (fastconv.layers,
fastconv.models, fastconv.optimizers, fastconv.schedules), so the same lines work in a
script::

    from fastconv import datasets, presets
    recipe = presets.get("mnist99")
    (x, y), (x_test, y_test) = datasets.load_mnist()
    model = recipe.build_model(seed=0)
    recipe.compile(model, len(x))
    model.fit(x, y, batch_size=recipe.batch_size, epochs=recipe.epochs)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

__all__ = ["Preset", "PRESETS", "get", "lenet5_bn"]


def lenet5_bn(input_shape=(1, 28, 28), num_classes=10, seed=None):
    """LeNet-5's modern variant made for speed: the 28x28 images unpadded, batch normalisation
    after both convolutions. C1 6@5x5 (-> 24x24), BatchNormalization, ReLU, max pool 2; C3
    16@5x5 (-> 8x8, full connectivity), BatchNormalization, ReLU, max pool 2; Flatten (256),
    Dense 120 ReLU, Dense 84 ReLU, Dense ``num_classes`` logits. He initialisation; the
    convolutions have no bias (the normalisation's beta is one). 44,492 parameters, 44 of them
    the normalisations' moving statistics. 282k multiply-adds a sample forward, two thirds of
    lenet5_modern's 416k (no padding: C1 and C3 make 24x24 and 8x8 maps, not 28x28 and 10x10)."""
    from . import layers as L
    from . import models

    def conv_bn_relu(filters, name):
        return [L.Conv2D(filters, 5, use_bias=False, kernel_initializer="he_normal", name=name),
                L.BatchNormalization(name=f"{name}_bn"), L.ReLU(name=f"{name}_relu")]

    layers = (conv_bn_relu(6, "C1") + [L.MaxPool2D(2, name="S2")] +
              conv_bn_relu(16, "C3") + [L.MaxPool2D(2, name="S4"), L.Flatten(name="flatten"),
                                        L.Dense(120, activation="relu", kernel_initializer="he_normal",
                                                name="F5"),
                                        L.Dense(84, activation="relu", kernel_initializer="he_normal",
                                                name="F6"),
                                        L.Dense(num_classes, name="output")])
    return models.Sequential(layers, input_shape=tuple(input_shape), seed=seed, name="lenet5_bn")


@dataclass(frozen=True)
class Preset:
    """A training recipe: which model on which data set, for how long, with which optimiser.

    The optimiser is Adam with Smith's one-cycle learning rate (fastconv.schedules.OneCycle):
    from max_lr / div_factor up to max_lr over the first pct_start of the steps, then down to
    max_lr / div_factor / final_div_factor at the last step. The schedule's length is the
    run's steps, epochs * ceil(samples / batch_size), so the rate ends low whatever the size
    of the training set.
    """

    name: str
    summary: str
    model_name: str
    model_builder: Callable
    dataset: str
    epochs: int
    batch_size: int
    max_lr: float
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def build_model(self, seed=None):
        """A fresh, uncompiled model of the recipe (weights drawn from ``seed``)."""
        return self.model_builder(seed=seed)

    def schedule(self, n_train):
        """The one-cycle learning rate for ``n_train`` training samples."""
        from . import schedules

        steps = self.epochs * math.ceil(n_train / self.batch_size)
        return schedules.OneCycle(self.max_lr, max(steps, 1), pct_start=self.pct_start,
                                  div_factor=self.div_factor, final_div_factor=self.final_div_factor)

    def optimizer(self, n_train):
        """Adam under the recipe's schedule for ``n_train`` training samples."""
        from . import optimizers

        return optimizers.Adam(self.schedule(n_train))

    def compile(self, model, n_train):
        """model.compile with the recipe's optimiser, sparse categorical cross-entropy on the
        logits and accuracy; returns the model."""
        model.compile(optimizer=self.optimizer(n_train), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model


PRESETS = {
    "mnist99": Preset(
        name="mnist99",
        summary="MNIST to about 99% test accuracy in 2 epochs: lenet5_bn, batch 64, Adam one-cycle to 1e-2",
        model_name="lenet5_bn", model_builder=lenet5_bn, dataset="mnist", epochs=2, batch_size=64,
        max_lr=1e-2),
}


def get(name):
    """The Preset called ``name`` (ValueError naming the presets there are otherwise)."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; the presets are: {', '.join(sorted(PRESETS))}") from None
