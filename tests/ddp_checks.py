"""What the data-parallel tests share (tests/test_distributed*.py; not collected by pytest): the torchrun launch of
tests/ddp_worker.py on 2 gloo ranks, and the checks every data-parallel run must pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pqstudy import distributed
from pqstudy.runio import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun_env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}
    for name in distributed.ENV_VARIABLES:  # a test process must not look like a rank itself
        env.pop(name, None)
    return env


def run_worker(root: Path, spec: dict) -> None:
    """Write ``spec`` (tests/ddp_worker.py's format) under ``root`` and run the worker on 2 gloo ranks."""
    path = root / "spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run([*TORCHRUN, str(REPO / "tests" / "ddp_worker.py"), str(path)], env=torchrun_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def assert_ranks_identical(run_dir: Path) -> None:
    """Both ranks hold bit-identical weights, and rank 0's checkpoint holds what it trained."""
    rank0 = torch.load(run_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(run_dir / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    ckpt = load_checkpoint(run_dir)
    assert all(torch.equal(ckpt["model"][k], rank0[k]) for k in rank0)  # rank 0 wrote what it trained


def assert_nan_recorded(run_dir: Path, step: int) -> None:
    """A run whose loss became NaN on one rank at ``step``: every rank stopped there, rank 0 recorded it."""
    for rank in (0, 1):
        assert f"loss became nan at step {step}" in (run_dir / f"rank{rank}.error").read_text()
    error = json.loads((run_dir / "error.json").read_text())
    assert error["error"] == "non-finite loss" and error["step"] == step
    assert not (run_dir / "rank0.pt").exists() and not (run_dir / "metrics.json").exists()
