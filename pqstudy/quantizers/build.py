"""``QuantizerConfig`` → quantiser: the one place that maps config fields to each kind's keyword arguments.

The quantisers themselves know only tensors. An ``lc`` (or ``pq`` of ``lc``) quantiser needs its frozen (N, C) feature
codebook as ``codebook``: :func:`pqstudy.codebooks.codebook_for` builds (or loads) it; a model loaded from a
checkpoint takes it from the checkpoint (:mod:`pqstudy.models.checkpoint`).
"""

from __future__ import annotations

from torch import Tensor

from pqstudy.config import QuantizerConfig
from pqstudy.quantizers.base import Quantizer
from pqstudy.quantizers.lc import FeatureBank, LCQuantizer
from pqstudy.quantizers.pq import ProductQuantizer
from pqstudy.quantizers.vq import VectorQuantizer
from pqstudy.quantizers.vq_ema import EMAVectorQuantizer
from pqstudy.quantizers.vq_fc import FactorizedVectorQuantizer


def _vq(q: QuantizerConfig, dim: int, codebook) -> VectorQuantizer:
    return VectorQuantizer(codebook_size=q.codebook_size, dim=dim, beta=q.beta, legacy=q.legacy, l2_norm=q.l2_norm,
                           init=q.init, chunk_size=q.chunk_size, codebook=codebook)


def _vq_fc(q: QuantizerConfig, dim: int, codebook) -> FactorizedVectorQuantizer:
    return FactorizedVectorQuantizer(codebook_size=q.codebook_size, dim=dim, low_dim=q.low_dim, beta=q.beta,
                                     legacy=q.legacy, l2_norm=q.l2_norm, init=q.init, chunk_size=q.chunk_size,
                                     codebook=codebook)


def _vq_ema(q: QuantizerConfig, dim: int, codebook) -> EMAVectorQuantizer:
    return EMAVectorQuantizer(codebook_size=q.codebook_size, dim=dim, beta=q.ema_beta, decay=q.ema_decay,
                              eps=q.ema_eps, l2_norm=q.l2_norm, init=q.init, chunk_size=q.chunk_size,
                              count_init=q.ema_count_init, codebook=codebook)


def _lc(q: QuantizerConfig, dim: int, codebook) -> LCQuantizer:
    return LCQuantizer(codebook=codebook, dim=dim, projector=q.projector, trainable=q.lc_trainable, low_dim=q.low_dim,
                       beta=q.beta, legacy=q.legacy, l2_norm=q.l2_norm, chunk_size=q.chunk_size,
                       projector_init=q.projector_init)


# kind → builder(q, dim of the (sub)space, initial codebook or None); ``pq`` composes these per subspace
BUILDERS = {"vq": _vq, "vq-fc": _vq_fc, "vq-ema": _vq_ema, "lc": _lc}


def uses_lc(q: QuantizerConfig) -> bool:
    """Whether ``QuantizerConfig`` q has an ``lc`` codebook (itself, or in every ``pq`` subspace)."""
    return q.kind == "lc" or (q.kind == "pq" and q.sub_kind == "lc")


def build_quantizer(q: QuantizerConfig, codebook: Tensor | None = None) -> Quantizer:
    """The quantiser of ``QuantizerConfig`` q, its codes initialised from ``codebook`` when given.

    ``codebook``: for ``lc`` (and ``pq`` of ``lc``, whose M subspaces share it) the (N, C) feature codebook, required;
    for ``vq`` / ``vq-ema`` (K, D) and ``vq-fc`` (K, D′) initial codes; for ``pq`` of those (M, K, d), one per
    subspace. Without it the gradient- and EMA-trained kinds draw their codes by ``quantizer.init``.
    """
    if q.kind != "pq" and q.kind not in BUILDERS:
        raise ValueError(f"quantizer.kind={q.kind!r}: unknown; choose one of {sorted([*BUILDERS, 'pq'])}")
    if q.kind == "pq" and q.sub_kind not in BUILDERS:
        raise ValueError(f"quantizer.sub_kind={q.sub_kind!r}: choose one of {sorted(BUILDERS)}")
    if uses_lc(q):
        if codebook is None:
            raise ValueError(
                f"quantizer.kind={q.kind!r}: an lc quantiser needs its (N, C) feature codebook; build it with "
                "pqstudy.codebooks.codebook_for(cfg) (or `pqstudy codebooks build`) and pass codebook="
            )
        if codebook.shape[0] != q.codebook_size:
            raise ValueError(f"quantizer.codebook_size={q.codebook_size}: the given codebook has "
                             f"{codebook.shape[0]} rows")
    if q.kind != "pq":
        return BUILDERS[q.kind](q, q.dim, codebook)
    sub_dim = q.dim // q.subspaces
    if q.sub_kind == "lc":
        bank = FeatureBank(codebook, q.lc_trainable)  # one bank shared by every subspace (see pqstudy.quantizers.lc)
        return ProductQuantizer([_lc(q, sub_dim, bank) for _ in range(q.subspaces)])
    if codebook is not None and (codebook.dim() != 3 or codebook.shape[0] != q.subspaces):
        raise ValueError(f"quantizer.kind='pq': the initial codebooks must be (M={q.subspaces}, K, d), got "
                         f"{tuple(codebook.shape)}")
    build = BUILDERS[q.sub_kind]
    return ProductQuantizer([build(q, sub_dim, None if codebook is None else codebook[i]) for i in range(q.subspaces)])
