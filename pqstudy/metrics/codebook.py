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
