"""keras.datasets on fastconv: mnist and fashion_mnist, with Keras's load_data()."""
from . import fashion_mnist, mnist

__all__ = ["mnist", "fashion_mnist"]
