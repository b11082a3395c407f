"""fastconv's own SGEMM (csrc/cpu/gemm/) against float64 NumPy.

The micro-kernel is chosen once per process (FASTCONV_ISA forces one), so each ISA is
checked in a subprocess of its own: edge sizes around every kernel's register tile (MR, NR)
and cache blocks (MC, KC, NC), all four transpose combinations. A forced ISA the CPU lacks
must fall back to the best supported kernel with a warning, not crash. In-process tests
cover threads (1 and 2 threads give bit-identical results: the split never changes the
order of a sum) and the Python-level errors. alpha, beta (with NaN in C), the epilogue and
the packed-B entry are not reachable from Python; the slow test builds and runs the C++
harness benchmarks/gemm_harness.cpp, which checks them.
"""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import _core

REPO = Path(__file__).resolve().parents[1]
ISAS = ["avx512", "avx2", "generic"]

# The dispatch table's blocking (csrc/cpu/gemm/dispatch.cpp):  MR  NR   MC   KC    NC
BLOCKING = {"avx512": (12, 32, 192, 256, 3072),
            "avx2": (6, 16, 144, 256, 4080),
            "generic": (6, 8, 96, 256, 2048)}


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (an empty set where it is not readable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_supported(isa):
    """Whether this CPU can run an ISA's kernel (what csrc/cpu/isa.cpp checks, read from Linux)."""
    if isa == "generic":
        return True
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    need = {"avx2": {"avx2", "fma"},
            "avx512": {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"}}[isa]
    return need <= cpu_flags()


def best_isa():
    return next(isa for isa in ISAS if isa_supported(isa))


def reference(a, b, trans_a, trans_b):
    """op(a) @ op(b) in float64, and the float32 error bound of each element:
    (K + 2) * 2^-24 * (|op(a)| @ |op(b)|)."""
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    k = a64.shape[1]
    return a64 @ b64, (k + 2) * 6e-8 * (np.abs(a64) @ np.abs(b64)) + 1e-30


def operands(rng, m, n, k, trans_a, trans_b):
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def edge_sizes(isa):
    """(M, N, K) triples around the kernel's register tile and cache blocks."""
    mr, nr, mc, kc, nc = BLOCKING[isa]
    small = sorted({1, 2, 3, 7, 13, mr - 1, mr + 1, nr - 1, nr + 1})
    sizes = [(m, n, k) for m in small for n in small for k in (1, 3, 17)]
    sizes += [(mc + 1, nr + 1, 5), (mr + 1, nc + 1, 3), (13, 29, kc + 1), (mc + 1, 97, 2 * kc + 1),
              (1000, 17, 31), (7, 1000, 11), (31, 23, 1000), (1, 1, 1000), (150, 300, 513)]
    return sizes


# Run in a subprocess with FASTCONV_ISA set: every edge size and transpose combination,
# printing the kernel in use and one line per failure.
CHECK_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import test_gemm as t
from fastconv import _core
isa = _core.isa()
print("isa", isa)
rng = np.random.default_rng(0)
bad = 0
for m, n, k in t.edge_sizes(isa):
    for ta in (False, True):
        for tb in (False, True):
            a, b = t.operands(rng, m, n, k, ta, tb)
            c = _core.sgemm(a, b, ta, tb)
            want, tol = t.reference(a, b, ta, tb)
            if c.shape != want.shape or c.dtype != np.float32 or not (np.abs(c - want) <= tol).all():
                bad += 1
                print("FAIL", m, n, k, ta, tb)
print("failures", bad)
"""


def run_with_isa(isa, script=CHECK_SCRIPT):
    """Runs `script` in a fresh interpreter with FASTCONV_ISA=isa, importing the same fastconv."""
    env = dict(os.environ, FASTCONV_ISA=isa,
               PYTHONPATH=os.pathsep.join([str(Path(fastconv.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=Path.home())


@pytest.mark.parametrize("isa", ISAS)
def test_each_isa_matches_float64_on_edge_sizes(isa):
    if not isa_supported(isa):
        pytest.skip(f"this CPU cannot run the {isa} kernel")
    out = run_with_isa(isa)
    assert out.returncode == 0, out.stderr
    assert f"isa {isa}" in out.stdout
    assert "failures 0" in out.stdout, out.stdout[-2000:]
    assert out.stderr == ""


@pytest.mark.parametrize("forced", ["avx512", "avx2", "not-an-isa"])
def test_forcing_an_unsupported_isa_falls_back_with_a_warning(forced):
    if forced in ISAS and isa_supported(forced):
        pytest.skip(f"this CPU supports {forced}: nothing to fall back from")
    out = run_with_isa(forced)
    assert out.returncode == 0, out.stderr
    assert f"isa {best_isa()}" in out.stdout
    assert "failures 0" in out.stdout, out.stdout[-2000:]
    assert f"FASTCONV_ISA={forced}" in out.stderr and f"using {best_isa()}" in out.stderr


def test_default_isa_is_the_best_supported():
    assert _core.isa() in ISAS
    if "FASTCONV_ISA" not in os.environ:
        assert _core.isa() == best_isa()
    assert fastconv.cpu_isa() == _core.isa()


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(301, 517, 600), (20, 9000, 700)])
def test_one_and_two_threads_agree_bit_for_bit(trans_a, trans_b, m, n, k):
    """Several K slices and column blocks; M = 20 reads B in place when not transposed."""
    rng = np.random.default_rng(1)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        c1 = _core.sgemm(a, b, trans_a, trans_b)
        fastconv.set_num_threads(2)
        c2 = _core.sgemm(a, b, trans_a, trans_b)
    finally:
        fastconv.set_num_threads(before)
    want, tol = reference(a, b, trans_a, trans_b)
    assert (np.abs(c1 - want) <= tol).all()
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("m,n,k", [(6, 784 * 8, 25), (16, 100 * 8, 150), (32, 784, 288),
                                   (64, 196, 576), (1, 1, 1), (0, 3, 4), (3, 0, 4), (3, 4, 0)])
def test_conv_shapes_and_empty_dimensions(m, n, k):
    rng = np.random.default_rng(2)
    a, b = operands(rng, m, n, k, False, False)
    c = _core.sgemm(a, b)
    want, tol = reference(a, b, False, False)
    assert c.shape == (m, n) and c.dtype == np.float32
    assert (np.abs(c - want) <= tol).all()


def test_matmul_uses_the_same_gemm():
    rng = np.random.default_rng(3)
    a, b = operands(rng, 37, 53, 71, False, False)
    want, tol = reference(a, b, False, False)
    assert (np.abs(fastconv.functional.matmul(a, b) - want) <= tol).all()


def test_mismatched_inner_dimensions_raise():
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.sgemm(np.zeros((3, 4), np.float32), np.zeros((5, 6), np.float32))


@pytest.mark.slow
def test_cpp_harness_checks_alpha_beta_epilogue_and_packed_b(tmp_path):
    """Builds benchmarks/gemm_harness.cpp from the C++ sources and runs its checks: alpha and
    beta (NaN in C when beta == 0), row/column bias + activations, the im2col packed-B entry,
    and sgemm called inside a parallel region, for every ISA the CPU supports."""
    cxx = shutil.which("g++")
    cpu = REPO / "csrc" / "cpu"
    if cxx is None or not (cpu / "gemm").is_dir():
        pytest.skip("needs g++ and the source tree")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    # Each ISA folder's files get that ISA's flags, as CMakeLists.txt gives them.
    flags = {"avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
             "avx2": ["-mavx2", "-mfma"]}
    sources = [(src, None) for src in sorted((cpu / "gemm").glob("*.cpp"))] + [(cpu / "isa.cpp", None)]
    if x86:
        sources += [(src, isa) for isa in flags for src in sorted((cpu / isa).glob("sgemm_*.cpp"))]
    sources.append((REPO / "benchmarks" / "gemm_harness.cpp", None))
    objects = []
    for src, isa in sources:
        obj = tmp_path / (src.parent.name + "_" + src.name + ".o")
        cmd = [cxx, "-O2", "-std=c++17", "-fopenmp", f"-I{REPO / 'csrc'}", "-c", str(src), "-o", str(obj)]
        cmd += (["-DFASTCONV_X86=1"] if x86 else []) + (flags[isa] if isa else [])
        subprocess.run(cmd, check=True, timeout=300)
        objects.append(str(obj))
    exe = tmp_path / "gemm_harness"
    subprocess.run([cxx, "-fopenmp", *objects, "-o", str(exe)], check=True, timeout=120)
    for isa in ISAS:
        if not isa_supported(isa):
            continue
        out = subprocess.run([str(exe), "check"], env=dict(os.environ, FASTCONV_ISA=isa),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:]
        assert f"isa={isa}" in out.stdout and " 0 failures" in out.stdout
