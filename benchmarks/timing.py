"""What the benchmarks share: alternating timing, the CPU's name, the machine's load, a competing busy process, and
writing their result rows.

Import it from a benchmark run as a script (``python benchmarks/x.py`` puts ``benchmarks/`` on ``sys.path``)::

    from timing import cpu_name, machine_load, start_burner, time_alternating, write_rows
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timing:
    best_ms: float  # the least-contended call
    median_ms: float


def time_alternating(fns: dict, repeats: int, warmup: int = 2) -> dict[str, Timing]:
    """Call each of ``fns`` ``warmup`` times, then ``repeats`` rounds of one call each, in turn, so that every callable
    sees the same machine load; the best and median wall time of each. Wrap the call in ``torch.no_grad()`` where the
    callables need no gradients."""
    results = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            results[name].append(time.perf_counter() - t)
    return {name: Timing(min(ts) * 1e3, statistics.median(ts) * 1e3) for name, ts in results.items()}


def cpu_name() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` without lscpu, else what ``platform`` knows)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_load() -> dict:
    """The 1-minute load average and the processes running right now besides this one (Linux ``/proc/loadavg``;
    None where unknown): whether other work shared the machine during a measurement."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        running = int(fields[3].split("/")[0]) - 1  # the count includes this process
        return {"loadavg_1min": float(fields[0]), "other_running": running}
    except (OSError, ValueError, IndexError):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {"loadavg_1min": load, "other_running": None}


def start_burner() -> subprocess.Popen:
    """A competing CPU-bound process: a Python busy loop pinned to the last CPU this process may run on. Kill it
    (``.kill(); .wait()``) when done."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = f"import os\nos.sched_setaffinity(0, {{{cpus[-1]}}})\n" if len(cpus) > 1 else ""
    burner = subprocess.Popen([sys.executable, "-c", pin + "while True:\n    pass\n"])
    time.sleep(0.5)
    if burner.poll() is not None:
        raise RuntimeError(f"the busy-loop process exited with code {burner.returncode}")
    return burner


def write_rows(rows: list[dict], out: str | Path, append: bool = False) -> None:
    """Write ``rows`` as the CSV ``out`` (its folder made); with ``append``, after the rows already there."""
    import pandas as pd

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    if append and out.exists():
        table = pd.concat([pd.read_csv(out), table], ignore_index=True)
    table.to_csv(out, index=False)
