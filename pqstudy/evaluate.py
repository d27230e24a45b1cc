"""evaluate(run_dir, split) → a flat metrics dict over the whole split.

PSNR and SSIM per image; codebook utilisation and perplexity from usage counts over every position of the split
(a subset understates the utilisation of a large codebook); bits per position; and the reference-network metrics
(LPIPS, rFID, KID, CMMD), each a number or missing with a ``<name>_missing_reason``.

Utilisation is counted twice. ``utilisation`` / ``perplexity`` come from one pass of the final model's encoder and
quantiser over the *training* split (:func:`usage_pass`), as the papers count them: the test split's 10,000 × 64
positions give only 6.4 positions per entry at K = 100,000, too few to tell a fully used codebook (at most
1 − e^−6.4 ≈ 99.83% even under uniform use) from one that is not. ``utilisation_test`` / ``perplexity_test`` are
the same statistics over the evaluated split, as before.

On CPU with oneDNN the model and images run in ``channels_last`` (:func:`pqstudy.cpu.channels_last`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from pqstudy.config import RunConfig, eval_metric_names
from pqstudy.cpu import flush_denormals, memory_format, resolve_device
from pqstudy.data import load_dataset, to_model_space
from pqstudy.metrics.codebook import codebook_metrics, suffixed, train_usage_metrics
from pqstudy.metrics.image import psnr, ssim, to_unit
from pqstudy.models.checkpoint import load_model
from pqstudy.precision import autocast
from pqstudy.runio import read_json, write_json


def reference_metrics(cfg: RunConfig, device, random_backbones: bool = False, dataset=None, n: int = 0):
    """The streaming LPIPS/rFID/KID/CMMD accumulator for ``train.eval_metrics`` (None when that is empty).

    rFID/KID take the first ``train.fid_samples`` images of the split (all when 0); when the split is in memory,
    its originals' Inception features are cached by content (:mod:`pqstudy.metrics.feature_cache`).
    """
    names = requested_reference_metrics(cfg)
    if not names:
        return None
    from pqstudy.metrics.reference import ReferenceMetrics

    fid_n = min(n, cfg.train.fid_samples) if cfg.train.fid_samples else n
    fid_reference = None
    if dataset is not None and getattr(dataset, "images", None) is not None and {"rfid", "kid"} & set(names):
        fid_reference = dataset.images[:fid_n]
    return ReferenceMetrics(names=names, device=device, random_backbones=random_backbones, fid_samples=fid_n,
                            fid_reference=fid_reference)


def requested_reference_metrics(cfg: RunConfig) -> tuple[str, ...]:
    return eval_metric_names(cfg.train.eval_metrics)


def not_computed(cfg: RunConfig) -> dict:
    """``None`` with a reason for each reference metric that ``train.eval_metrics`` leaves out: *not computed in
    this profile*, which is distinct from *missing weights* (``<name>_missing_reason`` without ``_not_computed``)."""
    from pqstudy.metrics.reference import REFERENCE_METRICS

    requested = requested_reference_metrics(cfg)
    out: dict = {}
    for name in REFERENCE_METRICS:
        if name in requested:
            continue
        out[name] = None
        if name == "kid":
            out["kid_std"] = None
        out[f"{name}_not_computed"] = (
            f"not computed in the {cfg.profile} profile (train.eval_metrics={cfg.train.eval_metrics!r}); "
            "add it there to compute it"
        )
    return out


USAGE_BATCH = 256  # images per batch of the usage pass (encoder + quantiser; larger batches measured no faster)


@torch.inference_mode()
def count_usage(model, dataset, n: int | None = None, batch_size: int = USAGE_BATCH, device=None,
                progress: bool = False, desc: str = "usage") -> torch.Tensor:
    """(M, K) usage counts of the first ``n`` images of ``dataset`` (all when None): encoder + quantiser of
    ``model`` in eval mode, no decoder."""
    device = device or next(model.parameters()).device
    n = len(dataset) if n is None else min(n, len(dataset))
    fmt = memory_format(device)
    q = model.quantizer
    counts = torch.zeros(q.num_codebooks, q.codebook_size, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, mininterval=1.0):
            x = to_model_space(dataset.get_batch(torch.arange(start, min(start + batch_size, n))))
            _, quant = model.encode(x.to(device).contiguous(memory_format=fmt))
            counts += quant.stats["usage"].cpu()
    finally:
        model.train(was_training)
    return counts


def usage_pass(model, cfg: RunConfig, device=None, dataset=None, progress: bool = False) -> tuple[dict, torch.Tensor]:
    """The papers' utilisation: one pass of the final model over the whole training split. Returns the metrics
    (``utilisation``, ``perplexity``, ``positions_counted``, ``positions_per_entry``, ``utilisation_split``, ...,
    ``usage_pass_seconds``) and the (M, K) counts. ``dataset`` is the training split when already loaded."""
    dataset = dataset if dataset is not None else load_dataset(cfg.data, "train", seed=cfg.train.seed)
    started = time.perf_counter()
    counts = count_usage(model, dataset, device=device, progress=progress, desc="usage train")
    metrics = train_usage_metrics(counts, images=len(dataset))
    metrics["usage_pass_seconds"] = round(time.perf_counter() - started, 3)
    return metrics, counts


def continuous_usage(cfg: RunConfig) -> dict:
    """The codebook fields of a continuous model: each None, with the reason."""
    reason = f"continuous model ({cfg.model.kind}): no codebook"
    return {"utilisation": None, "perplexity": None, "positions_counted": None, "positions_per_entry": None,
            "utilisation_missing_reason": reason}


def write_usage(path: str | os.PathLike, train_pass_counts: torch.Tensor, eval_counts: torch.Tensor,
                usage_history=None) -> None:
    """``usage.npz``: ``train_pass_counts`` (M, K), the final model's counts over the training split (what the usage
    figures read first, :data:`pqstudy.figures.USAGE_COUNT_KEYS`); ``eval_counts`` (M, K) over the evaluated (test)
    split, as before; ``train_counts`` (R, M, K), the counts of each training-history window (the
    utilisation-vs-epoch curve)."""
    arrays = {"train_pass_counts": train_pass_counts.numpy().astype(np.int64),
              "eval_counts": eval_counts.numpy().astype(np.int64)}
    if usage_history:
        arrays["train_counts"] = np.stack(usage_history)
    np.savez_compressed(path, **arrays)


class UsageCounts(NamedTuple):
    """The (M, K) usage counts an evaluation saw (None for a continuous model, or a pass not made)."""

    eval_counts: torch.Tensor | None  # over the evaluated split
    train_pass_counts: torch.Tensor | None  # over the training split (the usage pass), when it ran


@torch.no_grad()
def evaluate_model(model, cfg: RunConfig, device=None, split: str = "test", progress: bool = False,
                   random_backbones: bool = False, dataset=None, train_usage: bool = False,
                   train_dataset=None) -> tuple[dict, UsageCounts]:
    """Evaluate ``model`` on ``split`` of ``cfg.data`` (first ``train.eval_limit`` images, or all of them);
    ``dataset`` is that split when the caller has already loaded it. Returns the metrics and the usage counts
    (:func:`write_usage` stores them as ``usage.npz``); writes nothing.

    The split's codebook statistics get the split as suffix (``utilisation_test``, ``perplexity_test``, ...).
    With ``train_usage`` the training-split pass (:func:`usage_pass`, on ``train_dataset`` when given) adds the
    unsuffixed ``utilisation`` / ``perplexity`` / ``positions_counted`` / .... ``eval_seconds`` is the time of the
    split's evaluation."""
    device = device or next(model.parameters()).device
    dataset = dataset if dataset is not None else load_dataset(cfg.data, split, seed=cfg.train.seed)
    n = min(len(dataset), cfg.train.eval_limit) if cfg.train.eval_limit else len(dataset)
    bs = cfg.train.eval_batch_size
    fmt = memory_format(device)
    quantized = cfg.model.kind == "quantized"
    counts = train_counts = None
    if quantized:
        counts = torch.zeros(model.quantizer.num_codebooks, model.quantizer.codebook_size, dtype=torch.long)
    started = time.perf_counter()
    reference = reference_metrics(cfg, device, random_backbones, dataset=dataset, n=n)
    was_training = model.training
    model.eval()
    psnr_sum = ssim_sum = 0.0
    for start in tqdm(range(0, n, bs), desc=f"eval {split}", disable=not progress, mininterval=1.0):
        x = to_model_space(dataset.get_batch(torch.arange(start, min(start + bs, n)))).to(device)
        with autocast(device, cfg.train.precision):  # the run's precision (train.precision); metrics in fp32
            out = model(x.contiguous(memory_format=fmt))
        rec = out.x_rec.float().clamp(-1.0, 1.0).contiguous()
        real01, rec01 = to_unit(x), to_unit(rec)
        psnr_sum += float(psnr(real01, rec01).sum())
        ssim_sum += float(ssim(real01, rec01).sum())
        if quantized:
            counts += out.quant.stats["usage"].cpu()
        if reference is not None:
            reference.update(x, rec)
    model.train(was_training)

    metrics: dict = {"split": split, "images": n, "psnr": psnr_sum / n, "ssim": ssim_sum / n}
    if quantized:
        metrics.update(suffixed(codebook_metrics(counts), split))
        metrics["bits_per_position"] = model.quantizer.bits_per_position
    else:
        metrics.update({f"utilisation_{split}": None, f"perplexity_{split}": None, "bits_per_position": None})
    if reference is not None:
        metrics.update(reference.compute())
    metrics.update(not_computed(cfg))
    metrics["eval_seconds"] = round(time.perf_counter() - started, 3)
    if train_usage:
        if quantized:
            usage, train_counts = usage_pass(model, cfg, device, dataset=train_dataset, progress=progress)
            metrics.update(usage)
        else:
            metrics.update(continuous_usage(cfg))
    return metrics, UsageCounts(counts, train_counts)


def metrics_path(run_dir: str | os.PathLike, split: str = "test") -> Path:
    """Where a run's metrics on ``split`` are stored: ``metrics.json`` for the test split (with the training
    fields; what the results store and runs.csv read), ``metrics_<split>.json`` for any other split."""
    return Path(run_dir) / ("metrics.json" if split == "test" else f"metrics_{split}.json")


USAGE_KEYS = ("utilisation", "utilisation_min", "perplexity", "codes_used", "utilisation_per_codebook",
              "positions_counted", "positions_per_entry", "utilisation_split", "usage_pass_seconds")


def evaluate(run_dir: str | os.PathLike, split: str = "test", device: str = "auto", progress: bool = True,
             write: bool = True, usage: bool | None = None) -> dict:
    """Re-evaluate a run directory; with ``write`` the split's metrics file (``metrics_path``) is updated, keeping
    its other fields: the test split's metrics.json keeps the training fields, and another split never touches it.

    ``usage`` (test split only) reruns the training-split usage pass (``utilisation``, ``perplexity``,
    ``positions_counted``, ... and ``usage.npz``; 50,000 encoder passes on CIFAR-10). ``None``: only when
    metrics.json lacks ``utilisation_split``, i.e. a run recorded before utilisation was counted over the training
    split, whose ``utilisation`` is the test split's; ``False`` then drops those stale fields instead.
    """
    run_dir = Path(run_dir)
    path = metrics_path(run_dir, split)
    previous = read_json(path) if write and path.exists() else {}
    if usage and split != "test":
        raise ValueError(f"usage=True: the training-split usage pass belongs to metrics.json (split='test'), "
                         f"not split={split!r}")
    if usage is None:
        usage = split == "test" and "utilisation_split" not in (read_json(path) if path.exists() else {})
    if split == "test" and "utilisation_split" not in previous:
        previous = {k: v for k, v in previous.items() if k not in USAGE_KEYS}
    dev = resolve_device(device)
    flush_denormals()
    model, cfg = load_model(run_dir, dev)
    usage_file = run_dir / "usage.npz"
    history = None
    if usage and usage_file.exists():
        with np.load(usage_file) as old:
            history = list(old["train_counts"]) if "train_counts" in old.files else None
    metrics, counts = evaluate_model(model, cfg, dev, split=split, progress=progress, train_usage=usage)
    if usage and write and counts.train_pass_counts is not None:
        write_usage(usage_file, counts.train_pass_counts, counts.eval_counts, history)
    if write:
        write_json(path, {**previous, **metrics})
    return metrics
