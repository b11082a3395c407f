"""Results do not depend on the thread count: 1 thread and 2 threads agree to float rounding."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
import fastconv.functional as F


@pytest.fixture
def restore_threads():
    """Put the thread count back however the test ends."""
    saved = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(saved)


def test_set_and_get_num_threads(restore_threads):
    for n in (1, 2):
        fastconv.set_num_threads(n)
        assert fastconv.get_num_threads() == n


RNG = np.random.default_rng(17)
X = RNG.standard_normal((4, 6, 23, 21)).astype(np.float32)
W = RNG.standard_normal((8, 6, 3, 3)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)
DY = RNG.standard_normal((4, 8, 12, 11)).astype(np.float32)     # conv2d(X, W, stride 2, padding 1)
GEO = dict(stride=2, padding=1)
POOL_DY = RNG.standard_normal((4, 6, 11, 10)).astype(np.float32)
LX = RNG.standard_normal((37, 129)).astype(np.float32)
LW = RNG.standard_normal((65, 129)).astype(np.float32)
LDY = RNG.standard_normal((37, 65)).astype(np.float32)
MA = RNG.standard_normal((131, 257)).astype(np.float32)
MB = RNG.standard_normal((257, 67)).astype(np.float32)

OPS = {
    "conv2d": lambda: F.conv2d(X, W, B, **GEO),
    "conv2d_same_dilated": lambda: F.conv2d(X, W, B, padding="same", dilation=2),
    "conv2d_backward_input": lambda: F.conv2d_backward_input(DY, W, X.shape, **GEO),
    "conv2d_backward_weight": lambda: F.conv2d_backward_weight(DY, X, W.shape, **GEO),
    "conv2d_backward_bias": lambda: F.conv2d_backward_bias(DY),
    "max_pool2d": lambda: F.max_pool2d(X, 2),
    "max_pool2d_backward": lambda: F.max_pool2d_backward(POOL_DY, X, 2),
    "avg_pool2d": lambda: F.avg_pool2d(X, 3, stride=2, padding=1, count_include_pad=False),
    "avg_pool2d_backward": lambda: F.avg_pool2d_backward(POOL_DY, X.shape, 2),
    "linear": lambda: F.linear(LX, LW),
    "linear_backward": lambda: F.linear_backward(LDY, LX, LW),
    "matmul": lambda: F.matmul(MA, MB),
    "relu": lambda: F.relu(X),
    "softmax_cross_entropy": lambda: F.softmax_cross_entropy(LX, np.arange(37) % 129),
}


def _as_arrays(result):
    if isinstance(result, tuple):
        return [np.asarray(r, np.float64) for r in result]
    return [np.asarray(result, np.float64)]


@pytest.mark.parametrize("op", list(OPS))
def test_one_and_two_threads_agree(op, restore_threads):
    fastconv.set_num_threads(1)
    one = _as_arrays(OPS[op]())
    fastconv.set_num_threads(2)
    two = _as_arrays(OPS[op]())
    assert len(one) == len(two)
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(float(np.max(np.abs(a))), 1.0),
                                   err_msg=f"{op}: 2 threads differ from 1")


# ---------------------------------------------------------------------------------------------
# One thread count for the whole process (issue 14, defect 10)

_LATER_THREAD = """
import os, threading
import numpy as np
import fastconv, fastconv.functional as F
fastconv.set_num_threads(2)
x = np.ones((8, 16, 64, 64), np.float32)      # large enough for relu's parallel region
seen = {}
def work():
    seen["get"] = fastconv.get_num_threads()
    before = len(os.listdir("/proc/self/task"))
    F.relu(x)
    seen["spawned"] = len(os.listdir("/proc/self/task")) - before
t = threading.Thread(target=work)
t.start()
t.join()
print(seen["get"], seen["spawned"])
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
@pytest.mark.skipif(not fastconv._core.openmp, reason="built without OpenMP")
def test_set_num_threads_holds_in_a_thread_started_later():
    """OMP_NUM_THREADS=1, then set_num_threads(2) on the main thread: a Python thread started
    afterwards sees 2 and its kernels run a team of 2 (OpenMP starts a worker thread for it).
    OpenMP's own setting is per thread: the new thread had 1 and started no worker."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("OMP_THREAD_LIMIT", None)
    run = subprocess.run([sys.executable, "-c", _LATER_THREAD], env=env, capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert run.returncode == 0, run.stderr[-3000:]
    get, spawned = map(int, run.stdout.split())
    assert get == 2
    assert spawned >= 1


def test_set_num_threads_bounds(restore_threads):
    limit = fastconv._core.max_num_threads()
    assert 64 <= limit <= 1024
    assert limit >= min(1024, 4 * (os.cpu_count() or 1))
    fastconv.set_num_threads(limit)
    assert fastconv.get_num_threads() == limit
    for bad in (0, -1, limit + 1, 10**6):
        with pytest.raises(ValueError, match=f"set_num_threads: n must be between 1 and {limit}"):
            fastconv.set_num_threads(bad)
    for bad in (2.5, "2", True, None):
        with pytest.raises(TypeError, match="set_num_threads: n must be an int"):
            fastconv.set_num_threads(bad)
    fastconv.set_num_threads(np.int64(2))
    assert fastconv.get_num_threads() == 2
