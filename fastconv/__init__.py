"""fastconv: a small, fast convolution library.

C++ (OpenMP) kernels on the CPU and CUDA kernels on NVIDIA GPUs for conv2d, pooling,
activations and losses, forward and backward, with a Keras-shaped layer API on top.

    >>> import numpy as np, fastconv.functional as F
    >>> x = np.random.rand(8, 1, 28, 28).astype(np.float32)
    >>> w = np.random.rand(6, 1, 5, 5).astype(np.float32)
    >>> F.conv2d(x, w, padding="same").shape
    (8, 6, 28, 28)
"""
from ._version import __version__
from . import _core
from . import functional
from . import datasets, initializers, layers, losses, metrics, models, optimizers
from .models import Sequential, load_model

__all__ = ["__version__", "functional", "layers", "models", "losses", "optimizers", "initializers",
           "metrics", "datasets", "Sequential", "load_model",
           "get_num_threads", "set_num_threads", "cpu_isa", "info"]


def get_num_threads():
    """Number of OpenMP threads the CPU kernels use (1 where fastconv was built without OpenMP)."""
    return _core.get_num_threads()


def set_num_threads(n):
    """Set the number of OpenMP threads the CPU kernels use (at least 1)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _core.set_num_threads(n)


def cpu_isa():
    """The CPU GEMM micro-kernel in use: "avx512", "avx2" or "generic".

    Chosen at import from what the processor supports; the FASTCONV_ISA environment variable
    (avx512, avx2 or generic) forces one, falling back to the best supported kernel.
    """
    return _core.isa()


def info():
    """A dict describing this build: version, CPU kernel, threads, OpenMP and CUDA status."""
    d = {
        "version": __version__,
        "cpu_isa": cpu_isa(),
        "num_threads": get_num_threads(),
        "openmp": bool(_core.openmp),
    }
    try:
        from . import cuda

        d["cuda_available"] = bool(cuda.is_available())
        if not d["cuda_available"]:
            d["cuda_unavailable_reason"] = cuda.why_unavailable()
    except ImportError:  # the CUDA module is optional
        d["cuda_available"] = False
        d["cuda_unavailable_reason"] = "fastconv was built without its CUDA extension"
    return d
