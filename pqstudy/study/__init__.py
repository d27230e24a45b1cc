"""The study: run grids of configs through ``notebooks/train_eval.ipynb`` and collect their results.

``run_sweep`` executes one notebook per config (papermill) and records each run in the results store
(``results/runs/<run_id>.json``); ``runs_dataframe`` / ``write_runs_csv`` turn the store into one tidy table.
Names are imported on first use (so ``python -m pqstudy.study.notebook`` runs without a double import).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "parse_shard": "runner",
    "run_sweep": "runner",
    "select_shard": "runner",
    "unique_configs": "runner",
    "load_run": "store",
    "load_runs": "store",
    "record_run": "store",
    "runs_dataframe": "store",
    "write_runs_csv": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pqstudy.study.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pqstudy.study' has no attribute {name!r}")
