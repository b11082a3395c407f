"""Which machine a benchmark ran on, and the results file named for it.

Every benchmark that writes results (bench.py, bench_gemm.py, bench_train.py,
time_to_accuracy.py) names its files after the machine, so that a run on one machine never
overwrites another's:

    benchmarks/results/<kind>_<machine slug>.json   (and .txt / .log beside it)
    e.g. benchmarks/results/train_amd-epyc-zen3-2cpu-avx2.json

The slug is the CPU model, its microarchitecture where the model name does not say it (a
virtual machine often reports a bare "AMD EPYC": the family and model numbers then tell Zen 1
from Zen 3 or Zen 4), the number of CPUs the process sees, and the ISA fastconv's kernels run
with (FASTCONV_ISA may force a lower one). The header that goes with it (describe()) records
the CPU model, family/model/stepping, microarchitecture, SIMD flags, core count, date and load
average.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _cpuinfo():
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


# AMD's x86 families and model ranges -> microarchitecture (AMD's processor programming
# references; a model number inside a range of the family is that generation).
_AMD_UARCH = {
    0x17: [(0x00, 0x2F, "Zen"), (0x30, 0xFF, "Zen 2")],  # Zen+ (0x08, 0x18) reported as Zen
    0x19: [(0x00, 0x0F, "Zen 3"), (0x10, 0x1F, "Zen 4"), (0x20, 0x5F, "Zen 3"),
           (0x60, 0x7F, "Zen 4"), (0xA0, 0xAF, "Zen 4")],
    0x1A: [(0x00, 0xFF, "Zen 5")],
}


def cpu_uarch(vendor, family, model):
    """'Zen 3' for AMD family 25 model 1, and so on; None where the table does not know it."""
    if vendor != "AuthenticAMD" or family is None or model is None:
        return None
    for lo, hi, name in _AMD_UARCH.get(family, []):
        if lo <= model <= hi:
            return name
    return None


def _int_or_none(text):
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return None


def describe(isa=None):
    """A dict naming the machine: cpu_model, vendor, family/model/stepping, cpu_uarch,
    cpu_flags_simd, cpus (what this process may use), cores (physical, where known), the
    fastconv ISA (``isa``, passed in so this module needs no fastconv), date_utc,
    load_average_start and the machine slug."""
    info = _cpuinfo()
    model_name = cpu_model()
    vendor = info.get("vendor_id")
    family, model = _int_or_none(info.get("cpu family")), _int_or_none(info.get("model"))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count()
    cores = None
    try:
        cores = int(info.get("cpu cores", "")) or None
    except ValueError:
        pass
    d = {
        "cpu_model": model_name,
        "cpu_vendor": vendor,
        "cpu_family": family,
        "cpu_model_number": model,
        "cpu_stepping": _int_or_none(info.get("stepping")),
        "cpu_uarch": cpu_uarch(vendor, family, model),
        "cpu_mhz_reported": float(info["cpu MHz"]) if "cpu MHz" in info else None,
        "cpu_flags_simd": sorted(f for f in info.get("flags", "").split()
                                 if f.startswith(("avx", "fma"))),
        "cpus": cpus,
        "cores": cores,
        "fastconv_isa": isa,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_start": list(os.getloadavg()),
    }
    d["machine"] = machine_name(d)
    d["machine_slug"] = machine_slug(d)
    return d


def machine_name(d):
    """'AMD EPYC (Zen 3), 2 CPUs, fastconv ISA avx2': the words a table quotes."""
    name = d["cpu_model"]
    if d.get("cpu_uarch") and d["cpu_uarch"].lower() not in name.lower():
        name += f" ({d['cpu_uarch']})"
    name += f", {d['cpus']} CPUs"
    if d.get("fastconv_isa"):
        name += f", fastconv ISA {d['fastconv_isa']}"
    return name


def machine_slug(d):
    """'amd-epyc-zen3-2cpu-avx2': the machine part of a results file's name."""
    name = d["cpu_model"].lower()
    name = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\b[a-z0-9]+-core\b", " ", name)
    name = re.sub(r"\b(\d+(th|rd|nd|st) gen)\b", " ", name)
    parts = [p for p in re.split(r"[^a-z0-9]+", name) if p]
    uarch = (d.get("cpu_uarch") or "").lower().replace(" ", "")
    if uarch and uarch not in parts:
        parts.append(uarch)
    parts.append(f"{d['cpus']}cpu")
    if d.get("fastconv_isa"):
        parts.append(d["fastconv_isa"])
    return "-".join(parts)


def cpu_model():
    """The CPU's model name, as lscpu or /proc/cpuinfo give it."""
    return _lscpu_model() or _cpuinfo().get("model name") or platform.processor() or platform.machine()


def int_list(minimum=1):
    """An argparse type: comma-separated integers, each at least ``minimum`` ("1,2" -> [1, 2])."""
    def parse(text):
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
        return values
    return parse


def shown_path(path):
    """``path`` relative to the repository when it lies inside it, so that a results file names
    no machine's folders."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full = os.path.abspath(path)
    return os.path.relpath(full, root) if full.startswith(root + os.sep) else str(path)


def run_json_worker(cmd, env, what):
    """Run a worker process (``cmd``, environment ``env``) whose last line of output is a JSON
    object: (that object, None), or (None, why it failed) naming ``what`` ("the Keras worker")."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return None, f"{what} failed (exit {proc.returncode}): {err[-1] if err else 'no output'}"
    return json.loads(lines[-1]), None


def results_path(kind, d, ext="json"):
    """benchmarks/results/<kind>_<slug>.<ext> for the machine described by d."""
    return os.path.join(RESULTS_DIR, f"{kind}_{d['machine_slug']}.{ext}")


class Tee:
    """Copies everything written to sys.stdout into a file as well (the .txt beside a JSON),
    while the ``with`` block runs."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "w")
        self._stdout = sys.stdout
        sys.stdout = self
        return self

    def write(self, text):
        self._stdout.write(text)
        self._file.write(text)
        return len(text)

    def flush(self):
        self._stdout.flush()
        self._file.flush()

    def __exit__(self, *exc):
        sys.stdout = self._stdout
        self._file.close()
        return False


if __name__ == "__main__":
    for key, value in describe().items():
        print(f"{key}: {value}")
