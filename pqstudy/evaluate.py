"""evaluate(run_dir, split) → a flat metrics dict over the whole split.

PSNR and SSIM per image; codebook utilisation and perplexity from usage counts over every position of the split
(a subset understates the utilisation of a large codebook); bits per position; and the reference-network metrics
(LPIPS, rFID, KID, CMMD), each a number or missing with a ``<name>_missing_reason``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pqstudy.config import RunConfig, eval_metric_names, from_dict
from pqstudy.data import load_dataset, to_model_space
from pqstudy.metrics.codebook import codebook_metrics
from pqstudy.metrics.image import psnr, ssim, to_unit
from pqstudy.models import build_model
from pqstudy.runio import load_checkpoint, read_json, write_json


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU. On CPU, denormal floats are flushed to zero: tiny activations
    otherwise slow convolutions down several-fold."""
    torch.set_flush_denormal(True)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


@torch.no_grad()
def evaluate_model(model, cfg: RunConfig, device=None, split: str = "test", progress: bool = False,
                   usage_out: str | os.PathLike | None = None, usage_history=None,
                   random_backbones: bool = False, dataset=None) -> dict:
    """Evaluate ``model`` on ``split`` of ``cfg.data`` (first ``train.eval_limit`` images, or all of them);
    ``dataset`` is that split when the caller has already loaded it."""
    device = device or next(model.parameters()).device
    dataset = dataset if dataset is not None else load_dataset(cfg.data, split, seed=cfg.train.seed)
    n = min(len(dataset), cfg.train.eval_limit) if cfg.train.eval_limit else len(dataset)
    bs = cfg.train.eval_batch_size
    quantized = cfg.model.kind == "quantized"
    counts = None
    if quantized:
        counts = torch.zeros(model.quantizer.num_codebooks, model.quantizer.codebook_size, dtype=torch.long)
    reference = reference_metrics(cfg, device, random_backbones, dataset=dataset, n=n)
    was_training = model.training
    model.eval()
    psnr_sum = ssim_sum = 0.0
    for start in tqdm(range(0, n, bs), desc=f"eval {split}", disable=not progress, mininterval=1.0):
        x = to_model_space(dataset.get_batch(torch.arange(start, min(start + bs, n)))).to(device)
        out = model(x)
        rec = out.x_rec.clamp(-1.0, 1.0)
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
        metrics.update(codebook_metrics(counts))
        metrics["bits_per_position"] = model.quantizer.bits_per_position
    else:
        reason = f"continuous model ({cfg.model.kind}): no codebook"
        metrics.update({"utilisation": None, "perplexity": None, "bits_per_position": None,
                        "utilisation_missing_reason": reason})
    if reference is not None:
        metrics.update(reference.compute())
    metrics.update(not_computed(cfg))
    if usage_out is not None and quantized:
        arrays = {"eval_counts": counts.numpy().astype(np.int64)}
        if usage_history:
            arrays["train_counts"] = np.stack(usage_history)
        np.savez_compressed(usage_out, **arrays)
    return metrics


def load_model(run_dir: str | os.PathLike, device="cpu") -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run directory and its config."""
    cfg = from_dict(read_json(Path(run_dir) / "config.json"))
    model = build_model(cfg, init_codebook=False)
    model.load_state_dict(load_checkpoint(run_dir)["model"])
    return model.to(device).eval(), cfg


def metrics_path(run_dir: str | os.PathLike, split: str = "test") -> Path:
    """Where a run's metrics on ``split`` are stored: ``metrics.json`` for the test split (with the training
    fields; what the results store and runs.csv read), ``metrics_<split>.json`` for any other split."""
    return Path(run_dir) / ("metrics.json" if split == "test" else f"metrics_{split}.json")


def evaluate(run_dir: str | os.PathLike, split: str = "test", device: str = "auto", progress: bool = True,
             write: bool = True) -> dict:
    """Re-evaluate a run directory; with ``write`` the split's metrics file (``metrics_path``) is updated, keeping
    its other fields: the test split's metrics.json keeps the training fields, and another split never touches it."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    model, cfg = load_model(run_dir, dev)
    metrics = evaluate_model(model, cfg, dev, split=split, progress=progress)
    path = metrics_path(run_dir, split)
    if write:
        previous = read_json(path) if path.exists() else {}
        write_json(path, {**previous, **metrics})
    return metrics
