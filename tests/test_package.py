"""The installed package as a user meets it: its version, its build info, and the CPU kernel choice.

These tests run against the INSTALLED fastconv (a wheel, or `pip install .`), never the source
tree's fastconv/ (which has no compiled _core). FASTCONV_ISA is read once, when the first
CPU kernel's dispatch runs (csrc/cpu/isa.cpp), so every test that forces one does it in a fresh
interpreter.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastconv

ISAS = ("avx512", "avx2", "generic")

# PEP 440, Appendix B: the canonical public version form (no local "+..." part).
PEP440_CANONICAL = re.compile(
    r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*((a|b|rc)(0|[1-9][0-9]*))?"
    r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)

VERSION_FILE = Path(__file__).resolve().parents[1] / "fastconv" / "_version.py"

# The CPU flags each ISA level needs (csrc/cpu/isa.cpp asks the same of cpuid).
ISA_FLAGS = {
    "avx512": {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"},
    "avx2": {"avx2", "fma"},
    "generic": set(),
}


def _cpu_flags():
    """The x86 feature flags of this CPU from /proc/cpuinfo, or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()  # not x86 (aarch64 lists "Features"): only the generic kernel exists


def _is_x86():
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def supported_isas():
    """The kernels this CPU can run, best first; None where that cannot be told."""
    flags = _cpu_flags()
    if flags is None:
        return None
    if not _is_x86():
        return ["generic"]
    return [isa for isa in ISAS if ISA_FLAGS[isa] <= flags]


def run_fresh(code, tmp_path, isa=None):
    """Run `code` in a fresh interpreter (cwd outside the source tree), FASTCONV_ISA set or cleared."""
    env = dict(os.environ)
    env.pop("FASTCONV_ISA", None)
    if isa is not None:
        env["FASTCONV_ISA"] = isa
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


# A check that the kernel in use also computes right: a 37x53 @ 53x29 product (edge tiles in
# every dimension for all three micro-kernels) against NumPy in float64.
ISA_PROBE = """
import numpy as np, fastconv, fastconv.functional as F
rng = np.random.default_rng(0)
a = rng.standard_normal((37, 53)).astype(np.float32)
b = rng.standard_normal((53, 29)).astype(np.float32)
err = float(np.abs(F.matmul(a, b) - a.astype(np.float64) @ b.astype(np.float64)).max())
print(fastconv.cpu_isa())
print(err)
"""


# ------------------------------------------------------------------------------------ version


def test_version_is_the_one_in_version_file():
    if not VERSION_FILE.exists():
        pytest.skip(f"the source tree's {VERSION_FILE} is not beside these tests")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', VERSION_FILE.read_text(), re.M)
    assert match, f"{VERSION_FILE} has no __version__ = \"...\" line"
    assert fastconv.__version__ == match.group(1)


def test_version_is_pep440():
    assert PEP440_CANONICAL.match(fastconv.__version__), fastconv.__version__


def test_distribution_metadata_has_the_same_version():
    # The wheel's METADATA comes from _version.py through scikit-build-core's regex provider.
    assert importlib.metadata.version("fastconv") == fastconv.__version__


def test_installed_package_is_imported_not_the_source_tree():
    # The source tree's fastconv/ has no compiled _core; a test run that imported it would
    # have failed already, but say it plainly: the extension sits beside the imported package.
    package_dir = Path(fastconv.__file__).resolve().parent
    assert Path(fastconv._core.__file__).resolve().parent == package_dir


# ------------------------------------------------------------------------------------- info()


def test_info_describes_the_build():
    info = fastconv.info()
    assert info["version"] == fastconv.__version__
    assert info["cpu_isa"] == fastconv.cpu_isa()
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["cuda_available"], bool)
    if not info["cuda_available"]:
        reason = info["cuda_unavailable_reason"]
        assert isinstance(reason, str) and reason.strip(), info


def test_cuda_extension_is_in_the_wheel_when_ci_built_it():
    # .ci/run sets FASTCONV_EXPECT_CUDA=1 when it compiled the CUDA sources with nvcc: the
    # extension must then be in the wheel and import on a machine with no GPU and no driver
    # (the CUDA runtime is linked statically), and info() must say why no GPU is usable.
    if os.environ.get("FASTCONV_EXPECT_CUDA") != "1":
        pytest.skip("FASTCONV_EXPECT_CUDA=1 not set (only CI knows whether nvcc built the CUDA extension)")
    import fastconv._cuda  # noqa: F401  (fails here if the wheel lacks it or it cannot load)

    info = fastconv.info()
    if not info["cuda_available"]:
        assert "built without" not in info["cuda_unavailable_reason"], info


# ------------------------------------------------------------------------------ the CPU kernel


def test_cpu_isa_is_one_of_the_three():
    assert fastconv.cpu_isa() in ISAS


def test_cpu_isa_honours_forced_isa_in_this_process():
    forced = os.environ.get("FASTCONV_ISA")
    supported = supported_isas()
    if not forced or supported is None or forced not in supported:
        pytest.skip("FASTCONV_ISA is not set to a kernel this CPU supports")
    assert fastconv.cpu_isa() == forced


def test_default_isa_is_the_best_the_cpu_supports(tmp_path):
    supported = supported_isas()
    if supported is None:
        pytest.skip("cannot read /proc/cpuinfo to know what this CPU supports")
    result = run_fresh("import fastconv; print(fastconv.cpu_isa())", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == supported[0]
    assert "FASTCONV_ISA" not in result.stderr


@pytest.mark.parametrize("isa", ISAS)
def test_forcing_an_isa(isa, tmp_path):
    supported = supported_isas()
    if supported is None:
        pytest.skip("cannot read /proc/cpuinfo to know what this CPU supports")
    result = run_fresh(ISA_PROBE, tmp_path, isa=isa)
    # Forcing never crashes the interpreter, supported or not.
    assert result.returncode == 0, result.stderr
    used, err = result.stdout.split()
    if isa in supported:
        assert used == isa
        assert "FASTCONV_ISA" not in result.stderr, result.stderr
    else:
        # Not on this CPU (e.g. avx512 on an AVX2-only machine): the best supported kernel
        # runs instead, and stderr says so.
        assert used == supported[0]
        assert "FASTCONV_ISA" in result.stderr and isa in result.stderr, result.stderr
    assert float(err) < 1e-4, f"{used}: max |error| {err} against float64 NumPy"


@pytest.mark.parametrize("value", ["sse9", "AVX-2000", "neon42"])
def test_an_invalid_isa_falls_back_with_a_warning(value, tmp_path):
    supported = supported_isas()
    if supported is None:
        pytest.skip("cannot read /proc/cpuinfo to know what this CPU supports")
    result = run_fresh(ISA_PROBE, tmp_path, isa=value)
    assert result.returncode == 0, result.stderr
    used, err = result.stdout.split()
    assert used == supported[0]
    assert "FASTCONV_ISA" in result.stderr and value in result.stderr, result.stderr
    assert float(err) < 1e-4


def test_an_empty_isa_means_no_choice(tmp_path):
    supported = supported_isas()
    if supported is None:
        pytest.skip("cannot read /proc/cpuinfo to know what this CPU supports")
    result = run_fresh("import fastconv; print(fastconv.cpu_isa())", tmp_path, isa="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == supported[0]
    assert "FASTCONV_ISA" not in result.stderr
