# Continue training a saved vgg_small for more epochs (Adam restarts: the .npz holds no optimizer state).
import sys
import fastconv
from fastconv import datasets, models, optimizers
path, epochs, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fastconv.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
(x, y), (xt, yt) = datasets.load_mnist()   # the copy shipped with fastconv
m = models.load_model(path)
m.compile(optimizer=optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
class Decay(models.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.optimizer.learning_rate *= 0.6
h = m.fit(x, y, epochs=epochs, batch_size=128, validation_data=(xt, yt), callbacks=[Decay()], verbose=2)
print("test accuracy:", h.history["val_accuracy"][-1])
m.save(path.replace(".npz", "_continued.npz"))
