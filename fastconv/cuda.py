"""fastconv's CUDA backend, seen from Python.

The compiled extension ``fastconv._cuda`` exists only where the package was built with a CUDA
compiler, and it needs an NVIDIA GPU and driver at run time. This module imports it lazily (on
first use) inside try/except, so ``import fastconv.cuda`` always works and answers questions
such as :func:`is_available` without raising.

Typical use::

    import numpy as np
    import fastconv.cuda as fc_cuda

    if fc_cuda.is_available():
        x = fc_cuda.Tensor.from_numpy(np.random.rand(8, 1, 28, 28))  # float32 on the GPU
        y = fastconv.functional.relu(x)                                # stays on the GPU
        print(y.numpy())                                               # copied back

Tensors share memory with other GPU libraries without copies: ``torch.from_dlpack(t)``,
``cupy.asarray(t)`` (``__cuda_array_interface__``) and ``Tensor.from_dlpack(torch_tensor)``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = [
    "Tensor",
    "device_count",
    "device_name",
    "empty_cache",
    "get_allow_tf32",
    "is_available",
    "is_built",
    "memory_stats",
    "require",
    "set_allow_tf32",
    "synchronize",
    "tensor",
    "to_device",
    "why_unavailable",
]

_lock = threading.Lock()
_loaded = False
_ext: Any = None
_import_error: BaseException | None = None


def _extension() -> Any:
    """Return the ``fastconv._cuda`` module, or None when it cannot be imported (cached)."""
    global _loaded, _ext, _import_error
    if not _loaded:
        with _lock:
            if not _loaded:
                try:
                    from . import _cuda  # noqa: PLC0415 (lazy on purpose)

                    _ext = _cuda
                except ImportError as err:  # built without CUDA, or a broken install
                    _ext = None
                    _import_error = err
                _loaded = True
    return _ext


def is_built() -> bool:
    """True when fastconv was built with its CUDA extension (whether or not a GPU is present)."""
    return _extension() is not None


def is_available() -> bool:
    """True when the CUDA extension is present and the CUDA runtime finds a usable GPU.

    Never raises: a missing extension, a missing driver or any CUDA error means False.
    """
    ext = _extension()
    if ext is None:
        return False
    try:
        return bool(ext.is_available())
    except Exception:  # pragma: no cover - the extension's query never throws
        return False


def why_unavailable() -> str:
    """Why no GPU can be used, as one sentence; the empty string when a GPU is available."""
    ext = _extension()
    if ext is None:
        return (
            "fastconv was built without CUDA (the fastconv._cuda extension could not be "
            f"imported: {_import_error}); rebuild where nvcc is on PATH"
        )
    if ext.is_available():
        return ""
    return f"no GPU/driver: {ext.why_unavailable()}"


def require() -> Any:
    """Return the CUDA extension, or raise RuntimeError saying why no GPU can be used."""
    ext = _extension()
    if ext is None or not ext.is_available():
        raise RuntimeError(f"fastconv.cuda: a CUDA GPU was asked for but {why_unavailable()}")
    return ext


def _require_module() -> Any:
    """The CUDA extension module for fastconv.functional's dispatch (RuntimeError if no GPU)."""
    return require()


def device_count() -> int:
    """Number of CUDA devices (0 without the extension or without a driver)."""
    ext = _extension()
    return int(ext.device_count()) if ext is not None else 0


def device_name(device: int = 0) -> str:
    """Name of CUDA device ``device`` (for example 'NVIDIA H100 80GB HBM3'), '' if none."""
    ext = _extension()
    return str(ext.device_name(device)) if ext is not None else ""


def synchronize() -> None:
    """Wait until all queued GPU work has finished; RuntimeError when no GPU is available."""
    require().synchronize()


def empty_cache() -> None:
    """Give the caching allocator's free blocks back to the driver (no-op without a GPU)."""
    ext = _extension()
    if ext is not None:
        ext.empty_cache()


def memory_stats() -> dict[str, int]:
    """The caching allocator's counters: allocated_bytes, cached_bytes, cuda_mallocs, cache_hits."""
    ext = _extension()
    if ext is None:
        return {"allocated_bytes": 0, "cached_bytes": 0, "cuda_mallocs": 0, "cache_hits": 0}
    return dict(ext.memory_stats())


def set_allow_tf32(allow: bool) -> None:
    """Allow TF32 tensor cores in conv2d, linear and sgemm (default False: exact FP32).

    With TF32 the GEMM engine multiplies on tensor cores with 10-bit mantissas and FP32
    accumulation (like ``torch.backends.cudnn.allow_tf32``); expect relative errors near 1e-3.
    Pooling, activations and softmax are unaffected.
    """
    ext = _extension()
    if ext is not None:
        ext.set_allow_tf32(bool(allow))


def get_allow_tf32() -> bool:
    """Whether TF32 was allowed with :func:`set_allow_tf32`."""
    ext = _extension()
    return bool(ext.get_allow_tf32()) if ext is not None else False


class _UnavailableTensor:
    """Stand-in for ``fastconv._cuda.Tensor`` when fastconv was built without CUDA.

    Every way of making one raises RuntimeError explaining why; ``isinstance(x, Tensor)`` is
    simply False for every object, so dispatch code can use it unconditionally.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require()

    @staticmethod
    def from_numpy(array: Any) -> Any:
        """Raise RuntimeError: no CUDA extension."""
        return require().Tensor.from_numpy(array)

    @staticmethod
    def from_dlpack(obj: Any) -> Any:
        """Raise RuntimeError: no CUDA extension."""
        return require().Tensor.from_dlpack(obj)

    @staticmethod
    def empty(shape: Any, dtype: Any = "float32") -> Any:
        """Raise RuntimeError: no CUDA extension."""
        return require().Tensor.empty(shape, dtype)

    @staticmethod
    def zeros(shape: Any, dtype: Any = "float32") -> Any:
        """Raise RuntimeError: no CUDA extension."""
        return require().Tensor.zeros(shape, dtype)


def _tensor_class() -> type:
    ext = _extension()
    return ext.Tensor if ext is not None else _UnavailableTensor


def to_device(array: Any) -> Any:
    """Copy a NumPy array (or array-like) to the GPU as a :class:`Tensor`.

    Float arrays become float32, integer arrays int64; a Tensor is returned as is.
    Raises RuntimeError when no GPU is available.
    """
    cls = _tensor_class()
    if isinstance(array, cls):
        return array
    require()
    return cls.from_numpy(np.asarray(array))


def tensor(array: Any) -> Any:
    """Alias of :func:`to_device`: a GPU :class:`Tensor` holding a copy of ``array``."""
    return to_device(array)


def __getattr__(name: str) -> Any:
    """Resolve ``Tensor`` lazily: the extension's class, or a stub that raises clearly."""
    if name == "Tensor":
        return _tensor_class()
    raise AttributeError(f"module 'fastconv.cuda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"Tensor"})
