"""What the benchmark scripts print about the machine they ran on: the CPU (name, family,
widest ISA, logical CPUs) and the FMA peak that the C benchmark measures.

    sys.path.insert(0, "<repository>/bench"); from machine import cpu_name, fma_peak
"""
import os
import re
import subprocess


def cpu_name():
    name, flags, fam = "unknown CPU", "", None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
                elif line.startswith("cpu family") and fam is None:
                    fam = line.split(":", 1)[1].strip()
    except OSError:
        pass
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"
    return "%s (family %s, %s), %d logical CPUs" % (name, fam or "?", isa, os.cpu_count())


def fma_peak(bench):
    """GFLOP/s: the FMA peak `bench --only peak` measures (the higher of its two measures,
    at its start and its end), or None where bench is not built or prints none."""
    if not os.path.exists(bench):
        return None
    out = subprocess.run([bench, "--only", "peak"], capture_output=True, text=True).stdout
    m = re.findall(r"FMA peak ([0-9.]+) GFLOP/s", out)
    return max(float(x) for x in m) if m else None
