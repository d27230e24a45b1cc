"""Codebook construction strategies (``quantizer.lc_init``) on feature vectors: pure tensor maths, seeded.

- ``uniform``: VQGAN-LC's random init, U(−1/N, 1/N) per entry (their ``models_vq.py:72``); uses only C;
- ``feature-normal``: N(μ, σ²) with the features' per-channel mean and standard deviation (an extra arm, not the
  paper's: it lands next to k-means, unlike the paper's random init);
- ``select``: N distinct feature vectors picked at random (random-selection init);
- ``kmeans``: the N centres of a seeded k-means (Lloyd) on the features, seeded by k-means++ for N ≤ 2,048 and by
  random selection above, at most ``quantizer.lc_kmeans_iters`` iterations (stops early when no assignment changes);
  the assignment step is :func:`pqstudy.quantizers.base.nearest_code`, so N = 100,000 centres stay within O(n + N)
  memory. An empty cluster is re-seeded with the point farthest from its centre.

When the data hold fewer feature vectors than N (e.g. N = 100,000 on a tiny dataset), the features are resampled with
replacement up to N and jittered by 1% of each channel's standard deviation — the codebook gets its N rows and a
:class:`CodebookWarning` says so (k-means then yields near-duplicate centres, which is what such data supports).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from pqstudy.config import LC_INITS, RENAMED_LC_INITS, ConfigError
from pqstudy.quantizers.base import nearest_code

STRATEGIES = LC_INITS  # uniform | feature-normal | select | kmeans


class CodebookWarning(UserWarning):
    """The codebook was built from fewer feature vectors than it has entries, or a cache file was not usable."""


def within_cluster_error(x: Tensor, centers: Tensor) -> float:
    """Mean squared distance from each row of ``x`` to its nearest centre (k-means' objective per point)."""
    idx = nearest_code(x, centers)
    return float((x - centers[idx]).pow(2).sum(1).mean())


KMEANS_PP_MAX = 2048  # k-means++ seeding up to this many centres; random selection above (k sequential steps)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding on a random subset of at most max(8k, 10000) rows: each new centre is drawn with probability
    proportional to the squared distance to the nearest centre so far. Returns row indices into ``x``."""
    n = x.shape[0]
    pool = torch.randperm(n, generator=generator)[: max(8 * k, 10_000)]
    sub = x[pool.to(x.device)].float()
    sq = sub.pow(2).sum(1)
    chosen = [int(torch.randint(len(pool), (1,), generator=generator))]
    d2 = (sq - 2 * sub @ sub[chosen[0]] + sq[chosen[0]]).clamp(min=0)
    for _ in range(1, k):
        weights = d2.cpu().double()
        i = int(torch.multinomial(weights, 1, generator=generator)) if float(weights.sum()) > 0 else chosen[-1]
        chosen.append(i)
        d2 = torch.minimum(d2, (sq - 2 * sub @ sub[i] + sq[i]).clamp(min=0))
    return pool[torch.tensor(chosen)]


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int = 10, seed: int = 0) -> Tensor:
    """Seeded Lloyd k-means: ``k`` centres (k, C) of the rows of ``x`` (n ≥ k).

    Seeding: k-means++ (on a subset) for k ≤ ``KMEANS_PP_MAX``, random selection of k distinct rows above (k-means++
    takes k sequential steps, too many for k = 100,000; with so many centres per point random seeding is adequate).
    """
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    g = torch.Generator().manual_seed(seed)
    start = kmeans_plus_plus(x, k, g) if k <= KMEANS_PP_MAX else torch.randperm(n, generator=g)[:k]
    centers = x[start.to(x.device)].clone()
    assign = None
    for _ in range(iters):
        new_assign = nearest_code(x, centers)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = counts == 0
        centers = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
        if bool(empty.any()):  # re-seed empty clusters with the points farthest from their centres
            far = (x - centers[assign]).pow(2).sum(1).argsort(descending=True)
            centers[empty] = x[far[: int(empty.sum())]]
    return centers


def uniform_codebook(n_codes: int, dim: int, seed: int = 0) -> Tensor:
    """VQGAN-LC's random codebook: (N, C) float32 entries drawn from U(−1/N, 1/N), seeded; no features needed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n_codes, dim, generator=g) * 2.0 - 1.0) / n_codes


def check_strategy(strategy: str) -> None:
    if strategy in RENAMED_LC_INITS:
        raise ConfigError(f"quantizer.lc_init={strategy!r}: renamed to {RENAMED_LC_INITS[strategy]!r} (VQGAN-LC's "
                          f"random init is 'uniform'); choose one of {list(STRATEGIES)}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"quantizer.lc_init={strategy!r}: choose one of {list(STRATEGIES)}")


def codebook_from_features(features: Tensor, n_codes: int, strategy: str = "kmeans", seed: int = 0,
                           iters: int = 10) -> Tensor:
    """N codebook rows from feature vectors (n, C) by ``strategy`` (feature-normal | select | kmeans, or uniform,
    which only uses C); float32 (N, C)."""
    check_strategy(strategy)
    if strategy == "uniform":
        return uniform_codebook(n_codes, features.shape[1], seed)
    features = features.float()
    n = features.shape[0]
    if n == 0:
        raise ValueError("no feature vectors to build the codebook from")
    g = torch.Generator().manual_seed(seed)
    if strategy == "feature-normal":
        mean, std = features.mean(0), features.std(0, unbiased=False)
        return mean + std * torch.randn(n_codes, features.shape[1], generator=g)
    if n < n_codes:
        warnings.warn(
            f"only {n} feature vectors for a codebook of N={n_codes}: resampling them with replacement and 1% jitter "
            "(raise data.train_limit or use more data for distinct entries)",
            CodebookWarning, stacklevel=3,
        )
        extra = features[torch.randint(n, (n_codes - n,), generator=g)]
        jitter = 0.01 * features.std(0, unbiased=False).clamp(min=1e-6)
        features = torch.cat([features, extra + jitter * torch.randn(extra.shape, generator=g)])
        n = n_codes
    if strategy == "select":
        return features[torch.randperm(n, generator=g)[:n_codes]].clone()
    return kmeans(features, n_codes, iters=iters, seed=seed)
