"""fastconv: a small, fast convolution library.

C++ (OpenMP) kernels on the CPU and CUDA kernels on NVIDIA GPUs for conv2d, pooling,
activations and losses, forward and backward, with a Keras-shaped layer API on top.

    >>> import numpy as np, fastconv.functional as F
    >>> x = np.random.rand(8, 1, 28, 28).astype(np.float32)
    >>> w = np.random.rand(6, 1, 5, 5).astype(np.float32)
    >>> F.conv2d(x, w, padding="same").shape
    (8, 6, 28, 28)
"""
import operator as _operator
import os as _os

from ._version import __version__

try:
    from . import _core
except ImportError:
    _here = _os.path.dirname(_os.path.abspath(__file__))
    if any(name.startswith("_core") for name in _os.listdir(_here)):
        raise  # the extension is there but does not load: its own error says why
    raise ImportError(
        f"fastconv was imported from {_here}, a folder without its compiled extension "
        "(_core): the source tree, which Python finds first when it runs in the repository "
        "root (the current folder comes first on sys.path). Install fastconv "
        "(pip install .) and run Python, or python -m fastconv, from another folder; the "
        "`fastconv` and `pytest` commands work from anywhere.") from None

from . import functional
from . import callbacks, datasets, initializers, layers, losses, metrics, models, optimizers
from .layers import Input, SymbolicTensor
from .layers.base import set_random_seed
from .models import Model, Sequential, load_model

__all__ = ["__version__", "functional", "layers", "models", "losses", "optimizers", "initializers",
           "metrics", "datasets", "callbacks", "Input", "Model", "Sequential", "SymbolicTensor",
           "load_model", "set_random_seed",
           "get_num_threads", "set_num_threads", "cpu_isa", "info", "buffer_cache_info",
           "clear_buffer_cache"]


def get_num_threads():
    """Number of OpenMP threads the CPU kernels use (1 where fastconv was built without OpenMP).

    Until set_num_threads is called this is OpenMP's default (OMP_NUM_THREADS, else the CPU
    count); after it, the count set, in every thread of the process.
    """
    return _core.get_num_threads()


def set_num_threads(n):
    """Set the number of threads every CPU kernel uses, for the whole process.

    The setting holds in every Python thread, including ones started later (OpenMP's own
    omp_set_num_threads holds only in the thread that calls it). n is an int from 1 to 4 per
    CPU (at least 64, at most 1024); anything else raises ValueError (TypeError for a
    non-integer). A parallel region may still run on fewer threads where OpenMP is limited
    (OMP_THREAD_LIMIT, OMP_DYNAMIC); results stay correct.
    """
    if isinstance(n, bool):
        raise TypeError(f"set_num_threads: n must be an int, got {n!r}")
    try:
        n = _operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an int, got {n!r}") from None
    limit = _core.max_num_threads()
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be between 1 and {limit} (4 threads per CPU, "
                         f"at least 64, at most 1024), got {n}")
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
    or the FASTCONV_BUFFER_CACHE_MB environment variable read at import, a whole number of MiB
    (0 turns it off; any other value keeps 256 MiB and warns with a RuntimeWarning).
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


def _warn_about_environment():
    """Warn (RuntimeWarning) about environment settings fastconv could not take."""
    problem = _core._buffer_cache_env_problem()
    if problem:
        import warnings

        warnings.warn(problem, RuntimeWarning, stacklevel=3)


_warn_about_environment()
