"""Instruction-set levels of torch's CPU math, for tests that must not depend on the CPU that runs them.

torch picks its vectorised kernels (``ATEN_CPU_CAPABILITY``), oneDNN its JIT code (``ONEDNN_MAX_CPU_ISA``) and MKL its
code path (``MKL_CBWR``) from the CPU at start-up, so the same run rounds differently on an AVX-512 Xeon and an
AVX2 EPYC. Each variable caps the level; set before torch is imported, it lets one machine compute as another would.

- :data:`PORTABLE`: the lowest level, one thread. The behaviour guard (tests/test_behaviour.py) trains its reference
  cases under it in a subprocess. Measured on the 9 cases (4 steps each): an AMD EPYC (Zen 5, AVX-512) and the same
  binary under qemu-x86_64 ``-cpu Haswell-v4`` (an Intel CPUID: vendor, cache sizes, AVX2) agreed to 3.3e-7 relative
  on every loss, PSNR and KL term, 5.7e-7 absolute on SSIM, and exactly on every code count; unpinned, the levels of
  one machine (AVX-512 / AVX2 / SSE4.1) and the Intel-recorded reference spread 3.6e-4 on losses, 1.0e-3 on PSNR,
  6.6e-2 on SSIM and flipped a code.
- :func:`lower`: the level below this machine's own, for CI's second pass over the numerics tests
  (``python tests/isa.py lower`` prints it as ``NAME=VALUE`` words for ``env``).
"""

from __future__ import annotations

import os
import sys

# The lowest level every x86-64 CPU runs the same way: ATen's scalar kernels, oneDNN's SSE4.1 code, MKL's
# cross-vendor reproducible path, one thread (thread count changes reduction order).
PORTABLE = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
DEFAULT = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}
_BELOW = {"AVX512": AVX2, "AVX2": DEFAULT}
_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def own_capability() -> str:
    """torch's CPU capability on this machine when nothing caps it ("AVX512", "AVX2" or "DEFAULT"), read in a fresh
    interpreter so that a cap already set here does not hide it."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def lower(capability: str | None = None) -> dict[str, str]:
    """The settings one level below ``capability`` (this machine's own when None): AVX2 on an AVX-512 CPU, the scalar
    level on an AVX2 one; empty where there is nothing lower."""
    return dict(_BELOW.get(capability or own_capability(), {}))


if __name__ == "__main__":
    if sys.argv[1:] != ["lower"]:
        sys.exit("usage: python tests/isa.py lower")
    print(" ".join(f"{k}={v}" for k, v in lower().items()))
