"""The CPU kernels' ISA dispatch (csrc/cpu/isa.h): one ISA level chosen per process, and every op
family's table (sgemm, conv2d, pool2d, vmath) following it.

FASTCONV_ISA is read once, so each forced level runs in a fresh interpreter. What the conv2d table
picks is visible from Python (`_core._conv2d_algorithms`): at the generic level only the GEMM paths
exist, at avx2 and avx512 the AVX2 kernels (Winograd, direct over channels, direct along rows).
The tests on the source tree check the layout rule: ISA-specific code only in csrc/cpu/<isa>/, and
no ISA name compared outside the selection code.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_package import supported_isas

REPO = Path(__file__).resolve().parents[1]
CPU_SRC = REPO / "csrc" / "cpu"
ISA_FOLDERS = ("avx2", "avx512")

# Layers whose algorithm depends on the ISA (x shape, w shape, stride, pads, dilation).
PROBE = """
import json, fastconv, fastconv._core as core
shapes = {
    "vgg_3x3_32": ([2, 32, 14, 14], [32, 32, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
    "lenet_c3": ([2, 6, 14, 14], [16, 6, 5, 5], [1, 1], [0, 0, 0, 0], [1, 1]),
    "lenet_c1": ([2, 1, 32, 32], [6, 1, 5, 5], [1, 1], [0, 0, 0, 0], [1, 1]),
    "lenet_c5": ([2, 16, 5, 5], [120, 16, 5, 5], [1, 1], [0, 0, 0, 0], [1, 1]),
    "dcgan_d2": ([2, 32, 14, 14], [64, 32, 4, 4], [2, 2], [1, 1, 1, 1], [1, 1]),
}
print(json.dumps({"isa": fastconv.cpu_isa(),
                  "algos": {k: list(core._conv2d_algorithms(*v)) for k, v in shapes.items()}}))
"""

EXPECTED = {
    "generic": {"vgg_3x3_32": ["im2col_gemm"] * 3, "lenet_c3": ["im2col_gemm"] * 3,
                "lenet_c1": ["im2col_gemm"] * 3, "lenet_c5": ["whole_image_gemm"] * 3,
                "dcgan_d2": ["im2col_gemm"] * 3},
    "avx2": {"vgg_3x3_32": ["winograd"] * 3,
             "lenet_c3": ["direct_channels", "direct_rows", "direct_channels"],
             "lenet_c1": ["direct_rows", "im2col_gemm", "direct_rows"],
             "lenet_c5": ["whole_image_gemm"] * 3,
             "dcgan_d2": ["direct_channels", "sub_pixel", "direct_channels"]},
}
EXPECTED["avx512"] = EXPECTED["avx2"]   # the AVX2 conv kernels serve the avx512 level too


def run_probe(isa):
    env = dict(os.environ, FASTCONV_ISA=isa)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=str(Path.home()),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_conv2d_table_follows_the_selected_isa(isa):
    supported = supported_isas()
    if supported is None:
        pytest.skip("cannot read /proc/cpuinfo to know what this CPU supports")
    if isa not in supported:
        pytest.skip(f"this CPU cannot run the {isa} level")
    got, stderr = run_probe(isa)
    assert got["isa"] == isa
    assert "FASTCONV_ISA" not in stderr
    assert got["algos"] == EXPECTED[isa]


def test_a_level_the_cpu_lacks_runs_the_best_supported_tables():
    supported = supported_isas()
    if supported is None or "avx512" in supported:
        pytest.skip("needs a CPU without AVX-512 (and a readable /proc/cpuinfo)")
    got, stderr = run_probe("avx512")
    assert got["isa"] == supported[0]
    assert got["algos"] == EXPECTED[supported[0]]
    assert "FASTCONV_ISA=avx512" in stderr and f"using {supported[0]}" in stderr


# ----------------------------------------------------------------------- the source tree's rule

needs_source = pytest.mark.skipif(not CPU_SRC.is_dir(), reason="the source tree is not beside these tests")


def cpu_sources():
    return sorted(p for p in CPU_SRC.rglob("*") if p.suffix in (".cpp", ".h"))


@needs_source
def test_isa_specific_code_lives_in_its_isa_folder():
    misplaced = []
    for path in cpu_sources():
        rel = path.relative_to(CPU_SRC)
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        text = path.read_text()
        if folder in ISA_FOLDERS:
            # The name says the ISA (sgemm_avx2_6x16.cpp, vmath_avx512.cpp).
            if f"_{folder}" not in path.stem:
                misplaced.append(f"{rel}: name does not say {folder}")
        elif "immintrin.h" in text or re.search(r"_mm(256|512)_", text):
            # (SSE2, the x86-64 baseline, may appear anywhere: pack.cpp, stream_store.h.)
            misplaced.append(f"{rel}: AVX intrinsics outside csrc/cpu/avx2/ and csrc/cpu/avx512/")
    assert not misplaced, misplaced
    for isa in ISA_FOLDERS:
        assert any((CPU_SRC / isa).glob("*.cpp")), f"csrc/cpu/{isa}/ has no kernels"


@needs_source
def test_no_isa_name_is_compared_outside_the_selection():
    # The one place that maps names to levels is csrc/cpu/isa.cpp (FASTCONV_ISA's parsing).
    pattern = re.compile(r'strcmp\s*\([^;]*"(generic|avx2|avx512)"|\.isa\s*,\s*"|isa\s*==\s*"')
    offenders = [str(p.relative_to(REPO)) for p in cpu_sources() + [REPO / "csrc" / "bind_cpu.cpp"]
                 if p.name != "isa.cpp" and pattern.search(p.read_text())]
    assert not offenders, offenders
