"""Build (and cache) the frozen N × C codebook of an ``lc`` quantiser (VQGAN-LC) from a feature source.

``build_codebook(q, data_cfg, seed)``:

1. draws ``n = quantizer.lc_samples`` feature vectors (0 = ``max(2N, 100000)``) from the training split: images in a
   seeded random order, all features of each image (``pqstudy.features``), until n are collected or the split is
   exhausted, then a seeded subset of exactly n;
2. turns them into N codebook rows by ``quantizer.lc_init``:

   - ``uniform``: VQGAN-LC's random init, U(−1/N, 1/N) per entry (their ``models_vq.py:72``); reads no data (step 1
     is skipped) and takes C from the source (48 for pixel patches at F = 4, D′ for ``lc_source=random``);
   - ``feature-normal``: N(μ, σ²) with the features' per-channel mean and standard deviation (an extra arm, not the
     paper's: it lands next to k-means, unlike the paper's random init);
   - ``select``: N distinct feature vectors picked at random (random-selection init);
   - ``kmeans``: the N centres of a seeded k-means (Lloyd) on the features, seeded by k-means++ for N ≤ 2,048 and by
     random selection above, at most ``quantizer.lc_kmeans_iters`` iterations (stops early when no assignment
     changes); the assignment step is :func:`pqstudy.quantizers.base.nearest_code`, so N = 100,000 centres stay within
     O(n + N) memory. An empty cluster is re-seeded with the point farthest from its centre.

   When the data hold fewer feature vectors than N (e.g. N = 100,000 on a tiny dataset), the features are resampled
   with replacement up to N and jittered by 1% of each channel's standard deviation — the codebook gets its N rows
   and a warning says so (k-means then yields near-duplicate centres, which is what such data supports);
3. caches the result under ``quantizer.codebook_cache`` (``""`` = ``$PQSTUDY_CACHE_DIR/codebooks``, else
   ``~/.cache/pqstudy/codebooks``) keyed by every input (source and its fingerprint, strategy, N, sample count,
   iterations, seed, the dataset's name / size / limit and ``data_fingerprint`` of its files); a later build with the
   same inputs loads the file, and changed data (a file added to or changed in a folder) builds a new one.

Timing (2 CPU cores): pixel patches (C = 48), N = 1,024 from 100,000 samples: ~2 s for 10 iterations; N = 100,000 from
200,000 samples: ~10 s per Lloyd iteration. A k-means with N = 100,000 is built once per (data, seed) and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from pqstudy.data_fingerprint import data_fingerprint
from pqstudy.features import FeatureSource, RandomFeatures, feature_source

__all__ = [
    "CODEBOOK_VERSION",
    "build_codebook",
    "cache_path",
    "codebook_from_features",
    "kmeans",
    "sample_features",
    "uniform_codebook",
    "within_cluster_error",
]

CODEBOOK_VERSION = 1  # bump when the construction changes: old cache entries are then ignored
STRATEGIES = ("uniform", "feature-normal", "select", "kmeans")  # = pqstudy.config.LC_INITS


class CodebookWarning(UserWarning):
    """The codebook was built from fewer feature vectors than it has entries."""


def default_cache_dir() -> Path:
    env = os.environ.get("PQSTUDY_CACHE_DIR")
    return Path(env).expanduser() / "codebooks" if env else Path("~/.cache/pqstudy/codebooks").expanduser()


def resolve_samples(q, n_codes: int, source: FeatureSource | None = None) -> int:
    """Feature vectors to draw: ``quantizer.lc_samples``, or max(2N, 100000); N for feature-normal without data; 0 for
    ``uniform``, which draws no features."""
    if q.lc_init == "uniform":
        return 0
    if q.lc_init == "feature-normal" and source is not None and not source.needs_data:
        return n_codes
    return q.lc_samples if q.lc_samples > 0 else max(2 * n_codes, 100_000)


# ---------------------------------------------------------------------------------------------------------------
# strategies


def within_cluster_error(x: Tensor, centers: Tensor) -> float:
    """Mean squared distance from each row of ``x`` to its nearest centre (k-means' objective per point)."""
    from pqstudy.quantizers.base import nearest_code

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
    from pqstudy.quantizers.base import nearest_code

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


def _check_strategy(strategy: str) -> None:
    from pqstudy.config import RENAMED_LC_INITS, ConfigError

    if strategy in RENAMED_LC_INITS:
        raise ConfigError(f"quantizer.lc_init={strategy!r}: renamed to {RENAMED_LC_INITS[strategy]!r} (VQGAN-LC's "
                          f"random init is 'uniform'); choose one of {list(STRATEGIES)}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"quantizer.lc_init={strategy!r}: choose one of {list(STRATEGIES)}")


def codebook_from_features(features: Tensor, n_codes: int, strategy: str = "kmeans", seed: int = 0,
                           iters: int = 10) -> Tensor:
    """N codebook rows from feature vectors (n, C) by ``strategy`` (feature-normal | select | kmeans, or uniform,
    which only uses C); float32 (N, C)."""
    _check_strategy(strategy)
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


# ---------------------------------------------------------------------------------------------------------------
# features from data


def sample_features(source: FeatureSource, dataset, n_samples: int, seed: int = 0, batch_size: int = 256) -> Tensor:
    """``n_samples`` feature vectors (fewer if the split has fewer) from ``dataset`` in a seeded random image order."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(source, RandomFeatures):
        return source.sample(n_samples, g)
    order = torch.randperm(len(dataset), generator=g)
    parts, have = [], 0
    for start in range(0, len(order), batch_size):
        feats = source(dataset.get_batch(order[start : start + batch_size]))
        parts.append(feats)
        have += feats.shape[0]
        if have >= n_samples:
            break
    feats = torch.cat(parts)
    if feats.shape[0] > n_samples:
        feats = feats[torch.randperm(feats.shape[0], generator=g)[:n_samples]]
    return feats


# ---------------------------------------------------------------------------------------------------------------
# the cached build


def _cache_key(q, source: FeatureSource, data_cfg, seed: int, n_codes: int, fingerprint: str | None = None) -> dict:
    key = {
        "version": CODEBOOK_VERSION,
        "source": source.fingerprint(),
        "strategy": q.lc_init,
        "n_codes": n_codes,
        "samples": resolve_samples(q, n_codes, source),
        "iters": q.lc_kmeans_iters if q.lc_init == "kmeans" else 0,
        "seed": seed,
    }
    if source.needs_data and q.lc_init != "uniform":  # the uniform draw reads no data
        key["data"] = {"name": data_cfg.name, "image_size": data_cfg.image_size, "train_limit": data_cfg.train_limit,
                       "fingerprint": fingerprint if fingerprint is not None else data_fingerprint(data_cfg)}
    return key


def cache_path(q, source: FeatureSource, data_cfg, seed: int, n_codes: int | None = None,
               fingerprint: str | None = None) -> Path:
    """The cache file of this build; ``fingerprint`` is ``data_fingerprint(data_cfg)`` when already computed."""
    n_codes = n_codes or q.codebook_size
    key = _cache_key(q, source, data_cfg, seed, n_codes, fingerprint)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = source.spec.split(":", 1)[0]
    root = Path(q.codebook_cache).expanduser() if q.codebook_cache else default_cache_dir()
    return root / f"{slug}-{q.lc_init}-N{n_codes}-C{source.dim}-{digest}.pt"


def build_codebook(q, data_cfg=None, seed: int = 0, *, lookup_dim: int | None = None, device=None,
                   use_cache: bool = True) -> Tensor:
    """The (N, C) float32 ``lc`` codebook for ``QuantizerConfig`` ``q``, from the training split of ``data_cfg``.

    ``lookup_dim`` is D′, the default C of the ``random`` source. Cached on disk (see the module docstring).
    """
    _check_strategy(q.lc_init)
    n_codes = q.codebook_size
    source = feature_source(q.lc_source, patch=q.lc_patch, feature_dim=q.lc_feature_dim or (lookup_dim or 0),
                            device=device or "cpu")
    reads_data = source.needs_data and q.lc_init != "uniform"
    if reads_data and data_cfg is None:
        raise ValueError(
            f"quantizer.lc_source={q.lc_source!r} builds the lc codebook from training images: pass data_cfg "
            "(build_quantizer(cfg.quantizer, cfg.data, cfg.train.seed))"
        )
    fingerprint = data_fingerprint(data_cfg) if reads_data and use_cache else None  # once per build
    path = cache_path(q, source, data_cfg, seed, n_codes, fingerprint) if use_cache else None
    if use_cache and path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            codebook = stored["codebook"]
            if tuple(codebook.shape) == (n_codes, source.dim):
                return codebook
        except Exception as err:  # a corrupt cache file is rebuilt
            warnings.warn(f"{path}: unreadable codebook cache ({err}); rebuilding", CodebookWarning, stacklevel=2)
    if q.lc_init == "uniform":
        codebook = uniform_codebook(n_codes, source.dim, seed)
    else:
        if reads_data:
            from pqstudy.data import load_dataset

            dataset = load_dataset(data_cfg, "train", seed)
        else:
            dataset = None
        features = sample_features(source, dataset, resolve_samples(q, n_codes, source), seed)
        if device is not None and q.lc_init == "kmeans":
            features = features.to(device)
        codebook = codebook_from_features(features, n_codes, q.lc_init, seed, q.lc_kmeans_iters).float().cpu()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        meta = _cache_key(q, source, data_cfg, seed, n_codes, fingerprint)
        torch.save({"codebook": codebook.contiguous(), "meta": json.dumps(meta, sort_keys=True)}, tmp)
        os.replace(tmp, path)
    return codebook
