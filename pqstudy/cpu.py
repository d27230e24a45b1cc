"""What this CPU is and can do, for choosing speed tricks at run time and for naming the machine in benchmarks."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

__all__ = ["cpu_flags", "cpu_model", "native_bf16"]


@functools.cache
def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in _cpuinfo():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated, 8–17× slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
