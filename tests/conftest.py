"""Shared test set-up: the device parametrisation, array transfer helpers, hypothesis profile.

Every op test takes the `device` fixture and runs once per device: "cpu" always, "cuda" when
the CUDA extension imports and sees a GPU. Without one the cuda cases still appear, skipped
with the reason, and carry the `gpu` marker so `-m "not gpu"` leaves them out entirely.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# The tests import `reference` (the float64 NumPy truth) by name, whatever the import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("fastconv", deadline=None, print_blob=True)
# Few examples, for runs under compute-sanitizer (10-100x slower kernels).
settings.register_profile("sanitize", deadline=None, print_blob=True, max_examples=4)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastconv"))


def _cuda_status():
    """(available, reason): whether fastconv's CUDA backend can run here, and why not."""
    try:
        import fastconv.cuda as fastconv_cuda
    except Exception as exc:  # ImportError, or the extension failing to load its runtime
        return False, f"fastconv.cuda does not import ({type(exc).__name__}: {exc})"
    is_available = getattr(fastconv_cuda, "is_available", None)
    if is_available is None:
        return False, "fastconv.cuda has no is_available()"
    try:
        if not is_available():
            why = getattr(fastconv_cuda, "why_unavailable", None)
            return False, why() if why is not None else "fastconv.cuda.is_available() is False"
    except Exception as exc:
        return False, f"fastconv.cuda.is_available() raised {type(exc).__name__}: {exc}"
    return True, ""


CUDA_AVAILABLE, CUDA_REASON = _cuda_status()


def _shipped_mnist():
    """The MNIST copy that ships inside the installed fastconv (fastconv/data/mnist)."""
    import fastconv.datasets

    return Path(fastconv.datasets.__file__).resolve().parent / "data" / "mnist"


# The real MNIST the data, training and CLI tests read: the copy the package ships, checked
# by SHA-256 whenever fastconv.datasets loads it.
MNIST_DIR = _shipped_mnist()


DEVICES = ["cpu"] + (["cuda"] if CUDA_AVAILABLE else [])

DEVICE_PARAMS = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not CUDA_AVAILABLE, reason=f"no CUDA GPU: {CUDA_REASON}"),
        ],
    ),
]


@pytest.fixture(params=DEVICE_PARAMS, scope="session")
def device(request):
    """The device an op test runs on: "cpu", or "cuda" where a GPU is present."""
    return request.param


def to_device(a, device):
    """The array a as the op's input on `device`: itself on the CPU, a CUDA tensor on "cuda"."""
    if device == "cpu":
        return a
    import fastconv.cuda as fastconv_cuda

    a = np.ascontiguousarray(a, dtype=np.float32) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
    tensor_type = getattr(fastconv_cuda, "Tensor", None)
    if tensor_type is not None and hasattr(tensor_type, "from_numpy"):
        return tensor_type.from_numpy(a)
    return fastconv_cuda.to_device(a)


def to_numpy(t):
    """An op's result as a NumPy array, wherever it lives."""
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "numpy"):
        return np.asarray(t.numpy())
    return np.asarray(t)


@pytest.fixture(scope="session")
def real_keras():
    """Keras 3 for the optional cross-checks (torch backend unless KERAS_BACKEND says otherwise).

    Skips when Keras is not installed, does not import (no usable backend), or is not Keras 3.
    """
    import importlib.util
    import warnings

    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed (optional cross-check: pip install keras torch)")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import keras
    except Exception as err:  # a Keras without a usable backend
        pytest.skip(f"Keras does not import here: {err}")
    if not keras.__version__.startswith("3"):
        pytest.skip(f"the cross-checks are written for Keras 3, found {keras.__version__}")
    return keras
