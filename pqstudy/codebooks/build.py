"""Build (or load from the cache) the frozen N × C codebook of an ``lc`` quantiser (VQGAN-LC) from a feature source.

``build_codebook(q, data_cfg, seed)``:

1. draws ``n = quantizer.lc_samples`` feature vectors (0 = ``max(2N, 100000)``) from the training split: images in a
   seeded random order, all features of each image (:mod:`pqstudy.codebooks.sources`), until n are collected or the
   split is exhausted, then a seeded subset of exactly n;
2. turns them into N codebook rows by ``quantizer.lc_init`` (:mod:`pqstudy.codebooks.strategies`); ``uniform`` reads
   no data (step 1 is skipped) and takes C from the source (48 for pixel patches at F = 4, D′ for ``random``);
3. caches the result as a content-addressed file with its provenance (:mod:`pqstudy.codebooks.cache`); a later build
   with the same inputs loads the file, and changed data (a file added to or changed in a folder) builds a new one.

``codebook_for(cfg)`` is what training and ``pqstudy codebooks build`` call: the codebook of a run config, or None
for quantisers that draw their own.

Timing (2 CPU cores): pixel patches (C = 48), N = 1,024 from 100,000 samples: ~2 s for 10 iterations; N = 100,000 from
200,000 samples: ~10 s per Lloyd iteration. A k-means with N = 100,000 is built once per (data, seed) and cached.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from pqstudy.codebooks import cache
from pqstudy.codebooks.sources import FeatureSource, RandomFeatures, feature_source
from pqstudy.codebooks.strategies import check_strategy, codebook_from_features, uniform_codebook
from pqstudy.config import RunConfig, lookup_dim
from pqstudy.data import data_fingerprint, load_dataset
from pqstudy.quantizers import uses_lc


def resolve_samples(q, n_codes: int, source: FeatureSource | None = None) -> int:
    """Feature vectors to draw: ``quantizer.lc_samples``, or max(2N, 100000); N for feature-normal without data; 0 for
    ``uniform``, which draws no features."""
    if q.lc_init == "uniform":
        return 0
    if q.lc_init == "feature-normal" and source is not None and not source.needs_data:
        return n_codes
    return q.lc_samples if q.lc_samples > 0 else max(2 * n_codes, 100_000)


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


def provenance(q, source: FeatureSource, data_cfg, seed: int, n_codes: int, fingerprint: str | None = None) -> dict:
    """Every input of the build (the cache key; see :mod:`pqstudy.codebooks.cache`)."""
    key = {
        "version": cache.CODEBOOK_VERSION,
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
    key = provenance(q, source, data_cfg, seed, n_codes, fingerprint)
    return cache.artefact_path(cache.cache_dir(q), key, source.spec.split(":", 1)[0], source.dim)


def build_codebook(q, data_cfg=None, seed: int = 0, *, lookup_dim: int | None = None, device=None,
                   use_cache: bool = True) -> Tensor:
    """The (N, C) float32 ``lc`` codebook for ``QuantizerConfig`` ``q``, from the training split of ``data_cfg``.

    ``lookup_dim`` is D′, the default C of the ``random`` source; ``device`` places the feature network and the
    k-means. Cached on disk (see the module docstring).
    """
    check_strategy(q.lc_init)
    n_codes = q.codebook_size
    source = feature_source(q.lc_source, patch=q.lc_patch, feature_dim=q.lc_feature_dim or (lookup_dim or 0),
                            device=device or "cpu")
    reads_data = source.needs_data and q.lc_init != "uniform"
    if reads_data and data_cfg is None:
        raise ValueError(
            f"quantizer.lc_source={q.lc_source!r} builds the lc codebook from training images: pass data_cfg "
            "(pqstudy.codebooks.codebook_for(cfg) does)"
        )
    fingerprint = data_fingerprint(data_cfg) if reads_data and use_cache else None  # once per build
    key = provenance(q, source, data_cfg, seed, n_codes, fingerprint) if use_cache else None
    path = cache.artefact_path(cache.cache_dir(q), key, source.spec.split(":", 1)[0], source.dim) if use_cache else None
    if use_cache:
        stored = cache.load(path, key, (n_codes, source.dim))
        if stored is not None:
            return stored
    if q.lc_init == "uniform":
        codebook = uniform_codebook(n_codes, source.dim, seed)
    else:
        dataset = load_dataset(data_cfg, "train", seed) if reads_data else None
        features = sample_features(source, dataset, resolve_samples(q, n_codes, source), seed)
        if device is not None and q.lc_init == "kmeans":
            features = features.to(device)
        codebook = codebook_from_features(features, n_codes, q.lc_init, seed, q.lc_kmeans_iters).float().cpu()
    if use_cache:
        cache.save(path, codebook, key)
    return codebook


def lc_lookup_dim(q) -> int:
    """D′ of each ``lc`` (sub)quantiser of ``QuantizerConfig`` q."""
    return lookup_dim("lc", q.dim, q.low_dim, q.subspaces if q.kind == "pq" else 1)


def codebook_for(cfg: RunConfig, device=None) -> Tensor | None:
    """The initial codebook a run's quantiser is built with: the (N, C) ``lc`` features (built, or loaded from the
    cache), or None for the kinds that draw their own codes (``quantizer.init``) and for continuous models."""
    if cfg.model.kind != "quantized" or not uses_lc(cfg.quantizer):
        return None
    return build_codebook(cfg.quantizer, cfg.data, cfg.train.seed, lookup_dim=lc_lookup_dim(cfg.quantizer),
                          device=device)


def codebook_file(cfg: RunConfig) -> Path | None:
    """Where :func:`codebook_for` caches this run's codebook (None when it has none). Computes the data fingerprint,
    not the codebook."""
    if cfg.model.kind != "quantized" or not uses_lc(cfg.quantizer):
        return None
    q = cfg.quantizer
    source = feature_source(q.lc_source, patch=q.lc_patch, feature_dim=q.lc_feature_dim or lc_lookup_dim(q))
    return cache_path(q, source, cfg.data, cfg.train.seed)
