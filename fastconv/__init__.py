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
from . import callbacks, datasets, initializers, layers, losses, metrics, models, optimizers
from .models import Sequential, load_model

__all__ = ["__version__", "functional", "layers", "models", "losses", "optimizers", "initializers",
           "metrics", "callbacks", "datasets", "Sequential", "load_model",
           "get_num_threads", "set_num_threads", "cpu_isa", "info", "buffer_cache_info",
           "clear_buffer_cache"]


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


def buffer_cache_info():
    """The CPU output-buffer cache's counters, a dict: hits, misses, idle_bytes, idle_blocks,
    limit_bytes.

    Every CPU op allocates its output (64 KiB and up) from this cache; when NumPy frees the
    array its memory waits there for the next output of about the same size, so a training loop
    stops page-faulting fresh memory each step. Idle memory is capped at limit_bytes: 256 MiB,
    or the FASTCONV_BUFFER_CACHE_MB environment variable read at import (0 turns it off).
    """
    return dict(_core.buffer_cache_stats())


def clear_buffer_cache():
    """Free the idle blocks of the CPU output-buffer cache; returns the bytes freed.

    Arrays still in use are untouched; the cache fills again as ops run.
    """
    return int(_core.buffer_cache_clear())


def info():
    """A dict describing this build: version, CPU kernel, threads, OpenMP and CUDA status."""
    d = {
        "version": __version__,
        "cpu_isa": cpu_isa(),
        "num_threads": get_num_threads(),
        "openmp": bool(_core.openmp),
        "buffer_cache_limit_bytes": int(_core.buffer_cache_stats()["limit_bytes"]),
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
