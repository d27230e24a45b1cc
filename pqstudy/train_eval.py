"""One run end to end, as ``pqstudy train`` and the notebooks do it: train, then evaluate and write the results.

``train_and_evaluate(cfg, out_dir)`` → the run directory holds config.json, checkpoint.pt, history.json (training,
:func:`pqstudy.train.train`), then metrics.json and usage.npz (:func:`evaluate_run`): the final model evaluated on the
test split (``*_test`` codebook statistics, PSNR/SSIM, the reference metrics) and one encoder + quantiser pass over
the training split for ``utilisation`` / ``perplexity`` as the papers count them (:func:`pqstudy.evaluate.usage_pass`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pqstudy.config import RunConfig
from pqstudy.data import load_dataset
from pqstudy.evaluate import evaluate_model, write_usage
from pqstudy.preflight import validate_run
from pqstudy.runio import write_json
from pqstudy.runlock import locked
from pqstudy.train import LOCK, Trained, check_launch, diverged, record_error, train


def train_and_evaluate(cfg: RunConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                       stop_at: int | None = None) -> dict:
    """Train one run into ``out_dir`` and evaluate it on the test split. Returns the metrics dict (an interrupted
    run's ``{"run_id", "step", "interrupted"}`` when ``stop_at`` stopped it: no evaluation then).

    Both splits are loaded before ``out_dir`` is created, so bad data fails before any training and leaves no
    directory behind. Under torchrun every rank trains and rank 0 alone evaluates (the others return their training
    summary). A run whose test PSNR/SSIM is not finite raises ``TrainingDiverged`` and writes ``error.json``
    instead of ``metrics.json``.
    """
    validate_run(cfg)
    check_launch(cfg)  # a bad data-parallel launch fails before the data is loaded
    train_set = load_dataset(cfg.data, "train", seed=cfg.train.seed)
    test_set = load_dataset(cfg.data, "test", seed=cfg.train.seed)
    trained = train(cfg, out_dir, resume=resume, progress=progress, stop_at=stop_at, train_set=train_set)
    if trained.interrupted or not trained.main:  # data-parallel: rank 0 evaluates, alone
        return trained.summary
    return evaluate_run(cfg, out_dir, trained, test_set=test_set, train_set=train_set, progress=progress)


def evaluate_run(cfg: RunConfig, out_dir: str | os.PathLike, trained: Trained, test_set=None, train_set=None,
                 progress: bool = True) -> dict:
    """The evaluation step of a freshly trained run: metrics.json (the test metrics, the training-split usage and
    ``trained.summary``) and usage.npz. Returns the metrics."""
    out = Path(out_dir)
    with locked(out / LOCK, f"run directory {out}"):
        try:
            return _evaluate_run(cfg, out, trained, test_set, train_set, progress)
        except OSError as err:
            record_error(out, {"error": f"{type(err).__name__}: {err}", "run_id": trained.summary["run_id"]})
            raise


def _evaluate_run(cfg: RunConfig, out: Path, trained: Trained, test_set, train_set, progress: bool) -> dict:
    model, rid = trained.model, trained.summary["run_id"]
    metrics, counts = evaluate_model(model, cfg, device=trained.device, progress=progress, dataset=test_set,
                                     train_usage=True, train_dataset=train_set)
    if counts.train_pass_counts is not None:
        write_usage(out / "usage.npz", counts.train_pass_counts, counts.eval_counts, trained.usage_history)
    bad = [k for k in ("psnr", "ssim") if not math.isfinite(metrics[k])]
    if bad:
        error = {"error": "non-finite evaluation", "step": trained.summary["steps"], "run_id": rid,
                 **{k: str(metrics[k]) for k in bad}}
        raise diverged(out, error, f"the test {'/'.join(bad)} of the trained model is not finite "
                                   f"({', '.join(f'{k}={metrics[k]}' for k in bad)})")
    metrics.update(trained.summary)
    write_json(out / "metrics.json", metrics)
    return metrics
