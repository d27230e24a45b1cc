"""train_and_evaluate_generator(cfg, run_dir, tokenizer_dir): one generation run, trained and scored.

What ``pqstudy generate`` and ``notebooks/generation.ipynb`` call: :func:`pqstudy.generation.train.train_generator`,
then :func:`pqstudy.generation.evaluate.evaluate_generator`, then ``metrics.json`` in the run directory. A run stopped
early (``stop_at``) is left resumable and has no metrics. Under torchrun every rank trains and rank 0 alone evaluates
(the others return their training summary).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pqstudy.generation.config import GenRunConfig
from pqstudy.generation.evaluate import evaluate_generator
from pqstudy.generation.train import train_generator
from pqstudy.runio import write_json


def train_and_evaluate_generator(cfg: GenRunConfig, run_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike,
                                 *, resume: bool = False, progress: bool = True, stop_at: int | None = None) -> dict:
    """Train (or resume) and evaluate; returns the metrics written to ``<run_dir>/metrics.json`` (or the interrupted
    run's summary)."""
    started = time.perf_counter()
    trained = train_generator(cfg, run_dir, tokenizer_dir, resume=resume, progress=progress, stop_at=stop_at)
    if trained.interrupted or not trained.main:  # data-parallel: rank 0 evaluates, alone
        return trained.summary
    t0 = time.perf_counter()
    metrics = evaluate_generator(cfg, run_dir, tokenizer_dir, trained=trained)
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 3)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json(Path(run_dir) / "metrics.json", metrics)
    return metrics
