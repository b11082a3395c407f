"""A small ResNet on MNIST, written with fastconv's functional API.

    python examples/resnet_mnist.py [--epochs 6] [--threads 2]

Two residual blocks (two 3x3 convolutions and an identity shortcut, added, then ReLU), max
pooling between them, and a dense classifier. The same network is ``fastconv.models.
resnet_small`` and ``fastconv train resnet_small``; this file spells it out layer by layer.
"""
import argparse

import fastconv
from fastconv import layers as L


def residual_block(x, filters, name):
    """x + conv(relu(conv(x))), then ReLU."""
    y = L.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name=f"{name}_conv1")(x)
    y = L.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    return L.ReLU(name=f"{name}_relu")(L.Add(name=f"{name}_add")([x, y]))


def build(width=16, seed=0):
    inputs = fastconv.Input((1, 28, 28), name="image")
    x = L.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name="stem")(inputs)
    x = residual_block(x, width, "block1")
    x = L.MaxPool2D(2, name="pool1")(x)
    x = L.Conv2D(2 * width, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                 name="widen")(x)
    x = residual_block(x, 2 * width, "block2")
    x = L.MaxPool2D(2, name="pool2")(x)
    outputs = L.Dense(10, name="output")(L.Flatten(name="flatten")(x))
    return fastconv.Model(inputs, outputs, name="resnet_small", seed=seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        fastconv.set_num_threads(args.threads)
    (x_train, y_train), (x_test, y_test) = fastconv.datasets.load_mnist()
    model = build()
    model.summary()

    class Decay(fastconv.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate *= 0.7

    model.compile(optimizer=fastconv.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=128,
              validation_data=(x_test, y_test), callbacks=[Decay()])
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f})")


if __name__ == "__main__":
    main()
