"""Codebook statistics from usage counts (M sub-codebooks × K entries)."""

from __future__ import annotations

import torch
from torch import Tensor


def utilisation(counts: Tensor) -> Tensor:
    """Fraction of entries used at least once, per sub-codebook: (M, K) counts → (M,)."""
    return (counts > 0).float().mean(dim=1)


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of the empirical code distribution, per sub-codebook: (M, K) → (M,)."""
    counts = counts.double()
    p = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)
    return torch.exp(entropy).float()


def codebook_metrics(counts: Tensor) -> dict:
    """Flat summary: mean/min utilisation, mean perplexity, and the per-sub-codebook lists."""
    util, ppl = utilisation(counts), perplexity(counts)
    return {
        "utilisation": float(util.mean()),
        "utilisation_min": float(util.min()),
        "perplexity": float(ppl.mean()),
        "codes_used": int((counts > 0).sum()),
        "utilisation_per_codebook": [round(float(u), 6) for u in util],
    }


def positions_counted(counts: Tensor) -> int:
    """Latent positions behind (M, K) counts: each position picks one entry in every sub-codebook, so a row sums
    to the number of positions (images × h × w), not M × positions."""
    return int(counts[0].sum()) if counts.numel() else 0


def train_usage_metrics(counts: Tensor, images: int) -> dict:
    """Utilisation and perplexity as the papers count them: over the training split, from the (M, K) counts of one
    pass of the final model. ``positions_per_entry`` = positions / K: how often each entry of a sub-codebook could
    be picked under uniform use (6.4 for the test split's 10,000 × 64 positions at K = 100,000, which caps the
    expected utilisation of even a perfectly uniform code at 1 − e^−6.4 ≈ 99.83%)."""
    positions = positions_counted(counts)
    return {
        **codebook_metrics(counts),
        "positions_counted": positions,
        "positions_per_entry": positions / counts.shape[1],
        "utilisation_split": f"train: one pass of the final model over the {images} training images",
    }


def suffixed(metrics: dict, suffix: str) -> dict:
    """``{key}_{suffix}`` for every key: e.g. the test split's ``utilisation_test``."""
    return {f"{k}_{suffix}": v for k, v in metrics.items()}
