"""Crash safety: hostile calls, each in a fresh interpreter, must end in a clean Python exception.

Every row of CASES is one hostile call: the code, the exception it must raise, a fragment of
that exception's message, and any environment it needs. The code runs in a subprocess (a
crash must not take the test run with it); the subprocess reports what was raised. A signal
(a segfault, "double free or corruption", std::terminate from an exception that left an
OpenMP region), a different exception, no exception, or a message without the fragment
fails the row. Rows are added by appending to CASES (model-level rows: atomic save,
predict with a bad batch_size, load_model of hostile files, threads).

Memory cases cap the subprocess's address space (RLIMIT_AS) after a warm-up call, so a
workspace the kernels allocate inside a parallel region fails: the std::bad_alloc must come
back as MemoryError on the calling thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import pytest

import fastconv


@dataclass(frozen=True)
class Case:
    id: str
    code: str                      # runs after PRELUDE (unless prelude=False)
    raises: str                    # the exception's class name, or one of its bases' names
    message: str                   # a fragment its message must contain
    env: Dict[str, str] = field(default_factory=dict)
    prelude: bool = True
    needs: Optional[str] = None    # a Python expression, evaluated here: skip the row if false
    why_skip: str = ""


PRELUDE = "import numpy as np\nimport fastconv\nimport fastconv.functional as F\nfrom fastconv import _core\n"

# The runner: execute the case, report the exception (or its absence) as one JSON line.
RUNNER = r"""
import json, sys, traceback
code = sys.stdin.read()
try:
    exec(compile(code, "<case>", "exec"), {"__name__": "__case__"})
except BaseException as exc:
    names = [c.__name__ for c in type(exc).__mro__]
    print("RESULT " + json.dumps({"raised": names, "message": str(exc)}), flush=True)
    sys.exit(0)
print("RESULT " + json.dumps({"raised": None, "message": ""}), flush=True)
"""

# Warm the OpenMP threads and their allocator arenas, then cap the address space a little
# above what the process has mapped: the next large allocation fails.
MEMORY_CAP = """
import resource
F.conv2d(np.ones((4, 8, 12, 12), np.float32), np.ones((8, 8, 3, 3), np.float32), padding=1)
with open("/proc/self/statm") as f:
    mapped = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + (64 << 20), resource.RLIM_INFINITY))
"""

POOL_PADDED = """
x = np.random.default_rng(0).random((1, 1, 3, 16), dtype=np.float32)
y, idx = F.max_pool2d_with_indices(x, 3, stride=1, padding=1)
idx[...] = 0          # cell (0, 0) of each window: a padded cell for the top row and left column
for _ in range(100):  # the original report: heap corruption showed after a few calls
    F.max_pool2d_backward_indices(np.ones_like(y), idx, x.shape, 3, stride=1, padding=1)
    F.conv2d(np.ones((2, 3, 20, 20), np.float32), np.ones((4, 3, 3, 3), np.float32))
"""

CASES = [
    # ---- pooling indices (issue 14, defect 1)
    Case("pool_index_on_padding", POOL_PADDED, "ValueError", "indices holds 0 at flat position 0, a padded cell"),
    Case("pool_index_on_bottom_padding", """
x = np.ones((2, 3, 5, 5), np.float32)
y, idx = F.max_pool2d_with_indices(x, 3, stride=2, padding=1)
idx[1, 2, -1, 1] = 8                  # the window's bottom-right cell: row 5, past the image
F.max_pool2d_backward_indices(np.ones_like(y), idx, x.shape, 3, stride=2, padding=1)
""", "ValueError", "a padded cell of its 3x3 window"),
    Case("pool_index_past_window", """
x = np.ones((1, 2, 7, 7), np.float32)
y, idx = F.max_pool2d_with_indices(x, 3, stride=2)
idx[0, 1, 2, 2] = 200
F.max_pool2d_backward_indices(np.ones_like(y), idx, x.shape, 3, stride=2)
""", "ValueError", "indices holds 200 at flat position 17, outside a 3x3 window"),
    Case("pool_index_past_2x2_window", """
x = np.ones((2, 3, 8, 8), np.float32)
y, idx = F.max_pool2d_with_indices(x, 2)
idx[1, 1, 3, 3] = 4
F.max_pool2d_backward_indices(np.ones_like(y), idx, x.shape, 2)
""", "ValueError", "outside a 2x2 window"),
    Case("pool_index_wrong_dtype", """
x = np.ones((1, 1, 4, 4), np.float32)
y, idx = F.max_pool2d_with_indices(x, 2)
_core.max_pool2d_backward_indices(np.ones_like(y), idx.astype(np.int32), [1, 1, 4, 4], (2, 2), (2, 2), (0, 0, 0, 0))
""", "ValueError", "indices must be the C-contiguous uint8 array"),
    # ---- sizes (defect 2): the Python checks, then the C++ ones behind them
    Case("conv_padding_1e9_stride_2e9",
         "F.conv2d(np.ones((1, 32, 1, 1)), np.ones((4, 32, 1, 1)), padding=10**9, stride=2 * 10**9)",
         "ValueError", "conv2d: padding (1000000000, 1000000000, 1000000000, 1000000000) makes a padded image"),
    Case("conv_padding_30000", "F.conv2d(np.ones((1, 32, 1, 1)), np.ones((4, 32, 1, 1)), padding=30000, stride=30000)",
         "ValueError", "makes a padded image (32, 60001, 60001) of more than 2^31-1 elements"),
    Case("conv_dilation_2_62", "F.conv2d(np.ones((1, 2, 8, 8)), np.ones((3, 2, 5, 5)), dilation=2**62)",
         "ValueError", "conv2d: dilation must be at most 2^31-1"),
    Case("conv_stride_2_64", "F.conv2d(np.ones((1, 2, 8, 8)), np.ones((3, 2, 1, 1)), stride=2**64)",
         "ValueError", "conv2d: stride must be at most 2^31-1"),
    Case("core_conv_dilation_2_62",
         "_core.conv2d_forward(np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 5, 5), np.float32), None, (1, 1), (0, 0, 0, 0), (2**62, 1))",
         "ValueError", "conv2d: dilation must be between 1 and 2^31-1"),
    Case("core_conv_dilated_kernel_larger",
         "_core.conv2d_forward(np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 5, 5), np.float32), None, (1, 1), (0, 0, 0, 0), (2**31 - 1, 1))",
         "ValueError", "is larger than the padded input"),
    Case("core_conv_padding_2_40",
         "_core.conv2d_forward(np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 1, 1), np.float32), None, (1, 1), (2**40, 0, 0, 0), (1, 1))",
         "ValueError", "conv2d: padding must be between 0 and 2^31-1"),
    Case("core_conv_padded_image_overflows",
         "_core.conv2d_forward(np.ones((1, 2**20, 1, 1), np.float32), np.ones((1, 2**20, 1, 1), np.float32), None, (2**31 - 1, 2**31 - 1), (2**30, 2**30, 2**30, 2**30), (1, 1))",
         "ValueError", "makes a padded image (1048576, 2147483649, 2147483649)"),
    Case("conv_backward_input_huge_x_shape",
         "F.conv2d_backward_input(np.ones((1, 3, 1, 1)), np.ones((3, 2, 1, 1)), (2**31, 2, 1, 1))",
         "ValueError", "x_shape must hold sizes from 0 to 2^31-1"),
    Case("core_conv_backward_input_x_shape_overflows",
         "_core.conv2d_backward_input(np.ones((1, 3, 1, 1), np.float32), np.ones((3, 2, 1, 1), np.float32), [2**62, 2, 2**40, 1], (1, 1), (0, 0, 0, 0), (1, 1))",
         "ValueError", "has more than 2^31-1 elements"),
    Case("conv_backward_weight_huge_w_shape",
         "F.conv2d_backward_weight(np.ones((1, 2**20, 1, 1)), np.ones((1, 2**11, 1, 1)), (2**20, 2**11, 1, 1))",
         "ValueError", "w of shape (1048576, 2048, 1, 1) has more than 2^31-1 elements"),
    Case("core_output_overflows",
         "_core.conv2d_forward(np.ones((2**16, 1, 1, 1), np.float32), np.ones((2**16, 1, 1, 1), np.float32), None, (1, 1), (0, 0, 0, 0), (1, 1))",
         "ValueError", "y of shape (65536, 65536, 1, 1) has more than 2^31-1 elements"),
    Case("pool_kernel_2_31", "F.max_pool2d(np.ones((1, 1, 4, 4)), 2**31)", "ValueError",
         "max_pool2d: kernel_size must be at most 2^31-1"),
    Case("core_pool_kernel_2_40",
         "_core.max_pool2d_forward(np.ones((1, 1, 4, 4), np.float32), (2**40, 2**40), (1, 1), (2**39, 2**39, 2**39, 2**39))",
         "ValueError", "kernel_size must be between 1 and 2^31-1"),
    Case("core_pool_window_cells_overflow",
         "_core.avg_pool2d_forward(np.ones((1, 1, 4, 4), np.float32), (2**31 - 1, 2**31 - 1), (1, 1), (2**30 - 1, 2**30 - 1, 2**30, 2**30), True)",
         "ValueError", "the window (kernel_size) of shape (2147483647, 2147483647) has more than 2^31-1 elements"),
    Case("avg_pool_backward_huge_x_shape",
         "F.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (2**31 - 1, 2**31 - 1, 1, 1), 1)",
         "ValueError", "x of shape (2147483647, 2147483647, 1, 1) has more than 2^31-1 elements"),
    Case("linear_output_overflows", "F.linear(np.ones((2**16, 1)), np.ones((2**16, 1)))",
         "ValueError", "linear: y of shape (65536, 65536) has more than 2^31-1 elements"),
    Case("matmul_output_overflows", "F.matmul(np.ones((2**16, 1)), np.ones((1, 2**16)))",
         "ValueError", "sgemm: the product of shape (65536, 65536) has more than 2^31-1 elements"),
    # ---- a failed allocation inside a parallel region becomes MemoryError (defect 2)
    Case("memory_direct_padded_image", MEMORY_CAP + """
# 2 images: each thread copies its image into a padded workspace of 32 x 8001 x 8001 floats (8 GB).
assert _core._conv2d_algorithms([2, 32, 1, 1], [4, 32, 1, 1], (4000, 4000), (4000,) * 4, (1, 1))[0] == "direct_channels"
F.conv2d(np.ones((2, 32, 1, 1), np.float32), np.ones((4, 32, 1, 1), np.float32), padding=4000, stride=4000)
""", "MemoryError", "", needs="fastconv.cpu_isa() != 'generic'", why_skip="the AVX2 direct kernel does not run here"),
    Case("memory_im2col_workspace", MEMORY_CAP + """
# 2 images, each with an im2col workspace of 14400 x 2116 floats (122 MB) inside the parallel region.
assert _core._conv2d_algorithms([2, 64, 60, 60], [200, 64, 15, 15], (1, 1), (0,) * 4, (1, 1))[0] == "im2col_gemm"
F.conv2d(np.ones((2, 64, 60, 60), np.float32), np.ones((200, 64, 15, 15), np.float32))
""", "MemoryError", ""),
    # ---- threads (defect 10)
    Case("threads_million", "fastconv.set_num_threads(10**6)", "ValueError", "set_num_threads: n must be between 1 and"),
    Case("threads_zero", "fastconv.set_num_threads(0)", "ValueError", "got 0"),
    Case("threads_float", "fastconv.set_num_threads(2.5)", "TypeError", "n must be an int"),
    Case("core_threads_million", "_core.set_num_threads(10**6)", "ValueError", "set_num_threads: n must be between 1 and"),
    # ---- FASTCONV_BUFFER_CACHE_MB (defect 12): warned about at import, naming the variable
    *[Case(f"buffer_cache_env_{name}",
           "import warnings\nwarnings.simplefilter('error')\nimport fastconv",
           "RuntimeWarning", f"FASTCONV_BUFFER_CACHE_MB='{value}' is not a whole number of MiB",
           env={"FASTCONV_BUFFER_CACHE_MB": value}, prelude=False)
      for name, value in [("exponent", "1e3"), ("negative", "-5"), ("word", "abc"),
                          ("too_large", str(2**54)), ("fraction", "1.5")]],
]

# ---- the model layer (issue 14, defects 4, 5, 6, 7, 11)
MODEL = """
from fastconv import layers as L, models
model = models.Sequential([L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(4)],
                          input_shape=(1, 8, 8), seed=0)
model.compile("adam", "sparse_categorical_crossentropy")
x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
y = np.arange(6) % 4
"""


def _hostile_file(build):
    """Code that writes a model file with ``build(config, arrays)`` applied, then loads it."""
    return MODEL + f"""
import json, os, tempfile
path = os.path.join(tempfile.mkdtemp(), "m.npz")
model.save(path)
with np.load(path) as data:
    arrays = {{k: data[k] for k in data.files}}
config = json.loads(str(arrays["config"]))
{build}
arrays["config"] = np.array(json.dumps(config))
with open(path, "wb") as f:
    np.savez(f, **arrays)
fastconv.load_model(path)
"""


CASES += [
    Case("predict_batch_size_negative", MODEL + "model.predict(x, batch_size=-1)", "ValueError",
         "predict: batch_size must be >= 1, got -1"),
    Case("evaluate_batch_size_negative", MODEL + "model.evaluate(x, y, batch_size=-5)", "ValueError",
         "evaluate: batch_size must be >= 1, got -5"),
    Case("fit_batch_size_float", MODEL + "model.fit(x, y, batch_size=2.5, verbose=0)", "TypeError",
         "batch_size must be an int"),
    Case("fit_nan_data", MODEL + "x[3, 0, 2, 2] = np.nan\nmodel.fit(x, y, verbose=0)", "ValueError",
         "x has NaN or Inf values (sample 3 is the first)"),
    Case("train_on_batch_nan_data_is_blamed", MODEL + "x[1] = np.inf\nmodel.train_on_batch(x, y)",
         "FloatingPointError", "because input 0 of this batch has NaN or Inf values"),
    Case("nan_weights_are_blamed", MODEL + "model.layers[0].kernel[...] = np.nan\nmodel.train_on_batch(x, y)",
         "FloatingPointError", "weights of layer 'conv2d' are no longer finite"),
    Case("relu_keeps_nan_in_a_model", MODEL + """
x[2] = np.nan
out = model.predict(x)
assert np.isnan(out[2]).all() and np.isfinite(np.delete(out, 2, axis=0)).all()
raise AssertionError("NaN stayed NaN")""", "AssertionError", "NaN stayed NaN"),
    Case("load_unknown_version", _hostile_file("config['version'] = 99"), "ValueError",
         "written by a newer fastconv (model format version 99)"),
    Case("load_huge_architecture", _hostile_file(
        "config['model']['config']['layers'][0]['config']['filters'] = 2**40"), "ValueError",
        "weight 0 has shape (3, 1, 3, 3) in the file, but the architecture needs (1099511627776, 1, 3, 3)"),
    Case("load_config_not_a_dict", _hostile_file("config = [1, 2, 3]"), "ValueError",
         "its config is a list, not an object"),
    Case("load_unknown_layer", _hostile_file(
        "config['model']['config']['layers'][1]['class_name'] = 'Evil'"), "ValueError",
        "unknown layer class 'Evil'"),
    Case("load_bad_layer_argument", _hostile_file(
        "config['model']['config']['layers'][2]['config']['units'] = 'many'"), "ValueError",
        "units must be a positive int"),
    Case("load_a_npy_file", MODEL + """
import os, tempfile
path = os.path.join(tempfile.mkdtemp(), "w.npy")
np.save(path, np.zeros(3))
fastconv.load_model(path)""", "ValueError", "is not a fastconv model file (not an .npz archive"),
    Case("load_deep_nesting", MODEL + """
import json, os, tempfile
inner = {"class_name": "Flatten", "config": {"name": "f"}}
for _ in range(200):
    inner = {"class_name": "Sequential", "config": {"name": "s", "layers": [inner]}}
path = os.path.join(tempfile.mkdtemp(), "m.npz")
with open(path, "wb") as f:
    np.savez(f, config=np.array(json.dumps({"format": "fastconv.Model", "version": 2, "model": inner})))
fastconv.load_model(path)""", "ValueError", "nested more than 64 deep"),
    Case("save_into_a_missing_folder", MODEL + "model.save('/no/such/folder/m.npz')",
         "FileNotFoundError", "does not exist"),
    Case("predict_while_training_elsewhere", MODEL + """
import threading
errors = []
class Probe(models.Callback):
    def on_train_batch_end(self, batch, logs=None):
        t = threading.Thread(target=lambda: errors.append(_try()))
        t.start(); t.join()
def _try():
    try:
        model.predict(x)
    except RuntimeError as err:
        return str(err)
model.fit(x, y, epochs=1, batch_size=3, verbose=0, callbacks=[Probe()])
raise RuntimeError(errors[0])""", "RuntimeError", "the model is training in another thread"),
]


def run_case(case: Case):
    """(returncode, result dict or None, stderr) of the case run in a fresh interpreter."""
    code = (PRELUDE if case.prelude else "") + case.code
    env = dict(os.environ, **case.env)
    run = subprocess.run([sys.executable, "-c", RUNNER], input=code, env=env, capture_output=True,
                         text=True, timeout=120, cwd=str(Path(__file__).resolve().parent))
    result = None
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    return run.returncode, result, run.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_call_raises_cleanly(case):
    if case.needs is not None and not eval(case.needs, {"fastconv": fastconv}):
        pytest.skip(case.why_skip)
    returncode, result, stderr = run_case(case)
    assert returncode >= 0, f"{case.id}: killed by signal {-returncode}\n{stderr[-3000:]}"
    assert returncode == 0 and result is not None, f"{case.id}: exit {returncode}\n{stderr[-3000:]}"
    assert result["raised"] is not None, f"{case.id}: no exception (expected {case.raises})"
    assert case.raises in result["raised"], (
        f"{case.id}: raised {result['raised'][0]}: {result['message']} (expected {case.raises})")
    assert case.message in result["message"], (
        f"{case.id}: the message {result['message']!r} lacks {case.message!r}")


def test_the_runner_reports_a_crash():
    """The table's check can fail: a segfaulting case is reported as a signal."""
    returncode, result, _ = run_case(Case("segfault", "import ctypes\nctypes.string_at(0)", "", ""))
    assert returncode < 0 and result is None


def test_save_killed_midway_leaves_the_old_file_loadable(tmp_path):
    """save writes a temporary file and renames it: SIGKILL at any moment leaves either the old
    model or the new one, never a truncated file (before: 11 of 12 kills left an unloadable file)."""
    import signal
    import time

    path = tmp_path / "m.npz"
    script = f"""
import numpy as np, fastconv
from fastconv import layers as L, models
model = models.Sequential([L.Flatten(), L.Dense(2000), L.Dense(2000)], input_shape=(500,), seed=0)
model.save({str(path)!r})
print("saved", flush=True)
while True:
    model.save({str(path)!r})
"""
    for trial in range(6):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                cwd=str(tmp_path))
        assert proc.stdout.readline().strip() == "saved"
        time.sleep(0.05 + 0.07 * trial)        # somewhere inside a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        model = fastconv.load_model(path)      # the last complete save
        assert model.count_params() == 500 * 2000 + 2000 + 2000 * 2000 + 2000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.npz"]
    assert all(name.startswith(".tmp-") for name in leftovers), leftovers
