"""The instruction set this machine's CPU runs, named as LLVM's `mcpu` for the llvm target.

Without an `mcpu`, LLVM compiles x86-64 for the 2003 baseline: SSE2, four float32 lanes, no
FMA (docs/cpu.md measured it: a convolution's inner loop in 1538 xmm instructions, not one ymm).
The x86-64 psABI levels name what a CPU adds since, in steps every compiler knows:

    x86-64-v2  SSE4.2, POPCNT            (2009 on)
    x86-64-v3  AVX2, FMA, BMI2, F16C     (Haswell 2013, Zen 1 on)
    x86-64-v4  AVX-512 F/BW/CD/DQ/VL     (Skylake-X, Zen 4 on)

A level, not the CPU's own name (`znver4`), goes into the target and so into every key: two
machines with the same level share built libraries through the cache, and one without AVX-512
is never handed a library that needs it. Nothing here imports tvm.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# The CPU flags (as /proc/cpuinfo spells them) each level adds to the one before.
LEVELS = (
    ("x86-64-v2", {"cx16", "popcnt", "sse4_1", "sse4_2", "ssse3"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
)


def x86_64_level(flags: set[str]) -> str | None:
    """The highest level whose flags (and every lower level's) are all in `flags`; None below
    x86-64-v2 (LLVM's baseline then is the right code)."""
    level = None
    for name, needs in LEVELS:
        if not needs <= flags:
            break
        level = name
    return level


def _fields(cpuinfo: Path) -> list[tuple[str, str]]:
    """/proc/cpuinfo's `key : value` lines in order, stripped; none where the file is absent
    (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, _, value in
            (line.partition(":") for line in text.splitlines())]


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The first processor's flags; empty where the file is absent."""
    return next((set(value.split()) for key, value in _fields(cpuinfo) if key == "flags"), set())


def mcpu() -> str | None:
    """The `mcpu` for an llvm target built on and for this machine; None where LLVM's own
    default is right (not x86-64, or flags unknown)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None   # aarch64's default has NEON: every float32 kernel gets its lanes
    return x86_64_level(cpu_flags())


def physical_cores(cpuinfo: Path = CPUINFO) -> int:
    """Cores (not hardware threads) this process may run on: the thread count torch uses by
    default, and the one TVM's runtime should. TVM's own default halves the logical CPUs on
    x86 (it assumes SMT), which on a 2-core VM without SMT leaves one core idle."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    cores, phys = set(), "0"
    for key, value in _fields(cpuinfo):
        if key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return max(1, min(logical, len(cores) or logical))
