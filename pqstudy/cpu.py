"""What this CPU is and can do, for choosing speed tricks at run time and for naming the machine in benchmarks."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

__all__ = [
    "channels_last",
    "cpu_flags",
    "cpu_model",
    "device_name",
    "emulated_bf16",
    "flush_denormals",
    "memory_format",
    "native_bf16",
    "resolve_device",
]


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


def emulated_bf16(device) -> bool:
    """Whether bf16 is emulated on ``device``: a CPU without native bf16, where bf16 autocast is 8–17× slower than
    fp32. Nothing in pqstudy picks bf16 by itself there (``train.precision`` has no ``auto``; the Inception features
    of :func:`pqstudy.metrics.distribution.choose_precision` stay fp32); a user who sets it gets a warning."""
    import torch

    return torch.device(device).type == "cpu" and not native_bf16()


def channels_last(device) -> bool:
    """Whether convolutions should run in ``channels_last`` (NHWC) memory format on ``device``.

    On a CPU with oneDNN (``torch.backends.mkldnn``) NHWC convolutions skip the layout reorders that NCHW needs:
    a default-profile training step takes 0.38 s instead of 0.52 s at one thread on a Xeon @ 2.50GHz (AVX-512;
    ``benchmarks/train_throughput.py``). Elsewhere (CUDA, CPUs without oneDNN) NCHW stays. Float32 both ways: the
    results agree to float32 rounding. ``PQSTUDY_CHANNELS_LAST=0|1`` overrides the rule (for benchmarks).
    """
    forced = os.environ.get("PQSTUDY_CHANNELS_LAST", "")
    if forced not in ("", "0", "1"):
        raise ValueError(f"PQSTUDY_CHANNELS_LAST={forced!r}: expected 0 or 1")
    if forced:
        return forced == "1"
    import torch

    return torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available()


def memory_format(device):
    """``torch.channels_last`` where :func:`channels_last` says so, else ``torch.contiguous_format``."""
    import torch

    return torch.channels_last if channels_last(device) else torch.contiguous_format


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU; any other name as a ``torch.device``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device) -> str:
    """The machine a benchmark ran on: the GPU's name for a CUDA device, else the CPU's model."""
    import torch

    dev = torch.device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()


def flush_denormals() -> None:
    """Flush denormal floats to zero, process-wide: tiny activations otherwise slow CPU convolutions down several-fold.
    Called where training and evaluation start."""
    import torch

    torch.set_flush_denormal(True)
