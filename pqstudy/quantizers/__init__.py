"""Quantisers by name. Each class has ``from_config(QuantizerConfig, dim=None)``.

| kind | class | codebook |
|---|---|---|
| ``vq`` | :class:`VectorQuantizer` | learned by gradient |
| ``vq-fc`` | :class:`FactorizedVectorQuantizer` | learned, looked up in a D′-dim space (D → D′ → D) |
| ``vq-ema`` | :class:`EMAVectorQuantizer` | exponential moving averages, no gradient |
| ``lc`` | :class:`LCQuantizer` | frozen N × C features, learned projector C → D′ |
| ``pq`` | :class:`ProductQuantizer` | M subspaces, each a quantiser of ``sub_kind`` (any of the above) |

``lc`` (and ``pq`` of ``lc``) need their feature codebook built from training data: use
``build_quantizer(cfg.quantizer, cfg.data, cfg.train.seed)``.
"""

from __future__ import annotations

import torch

from pqstudy.quantizers.base import Quantizer, QuantOutput, VectorOutput, nearest_code, usage_counts
from pqstudy.quantizers.lc import FeatureBank, LCQuantizer
from pqstudy.quantizers.pq import ProductQuantizer
from pqstudy.quantizers.vq import VectorQuantizer
from pqstudy.quantizers.vq_ema import EMAVectorQuantizer
from pqstudy.quantizers.vq_fc import FactorizedVectorQuantizer

QUANTIZERS = {
    "vq": VectorQuantizer,
    "vq-fc": FactorizedVectorQuantizer,
    "vq-ema": EMAVectorQuantizer,
    "lc": LCQuantizer,
    "pq": ProductQuantizer,
}


def uses_lc(q) -> bool:
    """Whether ``QuantizerConfig`` q has an ``lc`` codebook (itself, or in every ``pq`` subspace)."""
    return q.kind == "lc" or (q.kind == "pq" and q.sub_kind == "lc")


def lc_dims(q, dim: int | None = None) -> tuple[int, int]:
    """(D, D′) of each ``lc`` (sub)quantiser: D per (sub)space and its lookup dim."""
    sub_dim = (dim or q.dim) // (q.subspaces if q.kind == "pq" else 1)
    return sub_dim, q.low_dim or sub_dim


def build_quantizer(q, data_cfg=None, seed: int = 0, *, codebook=None, init_codebook: bool = True,
                    device=None) -> Quantizer:
    """A quantiser from a ``QuantizerConfig``.

    ``lc`` kinds build their frozen codebook with :func:`pqstudy.codebook_init.build_codebook` from the training split
    of ``data_cfg`` (cached on disk, so rebuilding a model is cheap), or take ``codebook`` (N, C) as given.
    ``init_codebook=False`` skips the build and leaves a zero placeholder, for models whose state dict is loaded next
    (the placeholder takes the stored shape on ``load_state_dict``). ``device`` only places the k-means.
    """
    if q.kind not in QUANTIZERS:
        raise ValueError(f"quantizer.kind={q.kind!r}: unknown; choose one of {sorted(QUANTIZERS)}")
    if q.kind == "pq" and (q.sub_kind not in QUANTIZERS or q.sub_kind == "pq"):
        kinds = sorted(k for k in QUANTIZERS if k != "pq")
        raise ValueError(f"quantizer.sub_kind={q.sub_kind!r}: choose one of {kinds}")
    if not uses_lc(q):
        return QUANTIZERS[q.kind].from_config(q)
    sub_dim, lookup_dim = lc_dims(q)
    if codebook is None:
        if init_codebook:
            from pqstudy.codebook_init import build_codebook

            codebook = build_codebook(q, data_cfg, seed, lookup_dim=lookup_dim, device=device)
        else:
            from pqstudy.quantizers.lc import known_feature_dim

            codebook = torch.zeros(q.codebook_size, known_feature_dim(q) or lookup_dim)
    if codebook.shape[0] != q.codebook_size:
        raise ValueError(f"quantizer.codebook_size={q.codebook_size}: the given codebook has {codebook.shape[0]} rows")
    if q.kind == "lc":
        return LCQuantizer.from_config(q, dim=sub_dim, codebook=codebook)
    bank = FeatureBank(codebook, q.lc_trainable)  # one bank shared by every subspace (see pqstudy.quantizers.lc)
    return ProductQuantizer([LCQuantizer.from_config(q, dim=sub_dim, codebook=bank) for _ in range(q.subspaces)])

__all__ = [
    "QUANTIZERS",
    "EMAVectorQuantizer",
    "FactorizedVectorQuantizer",
    "FeatureBank",
    "LCQuantizer",
    "ProductQuantizer",
    "QuantOutput",
    "Quantizer",
    "VectorOutput",
    "VectorQuantizer",
    "build_quantizer",
    "lc_dims",
    "nearest_code",
    "uses_lc",
    "usage_counts",
]
