"""``pq``: product quantisation (PQGAN). D channels split into M subspaces of D/M, one sub-quantiser each.

M = 1 is plain VQ; M = D (sub-dimension 1) is scalar quantisation. Each subspace may use any other kind of
quantiser (``quantizer.sub_kind``). Loss terms are averaged over subspaces, so with equal-size subspaces they equal
the single-codebook loss over all D channels.

Search: when every subspace is the same plain nearest-code kind (``vq``, ``vq-ema``, ``vq-fc``, ``lc``) with
same-shape codebooks, the M searches are one :func:`~pqstudy.quantizers.base.nearest_code_batched` call on (M, N, d)
against (M, K, d) instead of M calls in a Python loop. Everything around the search (l2 normalisation, projections,
loss terms, straight-through, EMA updates) is done per subspace exactly as that kind's ``quantize`` does it, so
values and gradients equal the per-subspace loop's (``_quantize_loop``, kept for any other sub-quantiser).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.quantizers.base import (
    Quantizer,
    VectorOutput,
    commitment_terms,
    nearest_code_batched,
    straight_through,
)
from pqstudy.quantizers.lc import LCQuantizer
from pqstudy.quantizers.vq import VectorQuantizer
from pqstudy.quantizers.vq_ema import EMAVectorQuantizer
from pqstudy.quantizers.vq_fc import FactorizedVectorQuantizer


class ProductQuantizer(Quantizer):
    def __init__(self, subquantizers: list[Quantizer]):
        """``subquantizers``: the M sub-quantisers, one per subspace, in channel order (same codebook size K)."""
        super().__init__()
        sizes = {q.codebook_size for q in subquantizers}
        if len(sizes) != 1:
            raise ValueError(f"pq: every subspace needs the same codebook size, got {sorted(sizes)}")
        self.subquantizers = nn.ModuleList(subquantizers)
        self.codebook_size = sizes.pop()
        self.sub_dims = [q.dim for q in subquantizers]
        self.dim = sum(self.sub_dims)
        self.num_codebooks = len(subquantizers)

    def quantize(self, x: Tensor) -> VectorOutput:
        if self.batched_search:
            return self._quantize_batched(x)
        return self._quantize_loop(x)

    @property
    def batched_search(self) -> bool:
        """Whether ``quantize`` searches all subspaces in one batched call (see the module docstring)."""
        kinds = {type(sub) for sub in self.subquantizers}
        if len(kinds) != 1 or kinds.pop() not in _BATCHABLE:
            return False
        return len({(_lookup_dim(sub), _sub_chunk(sub)) for sub in self.subquantizers}) == 1

    def _quantize_loop(self, x: Tensor) -> VectorOutput:
        """M separate ``sub.quantize`` calls (the reference the batched path is tested against)."""
        outs = [sub.quantize(xs) for sub, xs in zip(self.subquantizers, x.split(self.sub_dims, dim=1), strict=True)]
        return self._combine(outs)

    def _quantize_batched(self, x: Tensor) -> VectorOutput:
        prepared = [_BATCHABLE[type(sub)][0](sub, xs)
                    for sub, xs in zip(self.subquantizers, x.split(self.sub_dims, dim=1), strict=True)]
        queries = torch.stack([p[0].detach() for p in prepared])  # (M, N, d)
        codebooks = torch.stack([p[1] for p in prepared])  # (M, K, d), detached
        idx = nearest_code_batched(queries, codebooks, _sub_chunk(self.subquantizers[0]))
        outs = [_BATCHABLE[type(sub)][1](sub, p, i)
                for sub, p, i in zip(self.subquantizers, prepared, idx, strict=True)]
        return self._combine(outs)

    def _combine(self, outs: list[VectorOutput]) -> VectorOutput:
        losses = {}
        for out in outs:
            for name, value in out.loss.items():
                losses[name] = losses.get(name, 0.0) + value / self.num_codebooks
        return VectorOutput(torch.cat([o.x_q for o in outs], dim=1), torch.stack([o.idx for o in outs], dim=1), losses)

    def lookup(self, idx: Tensor) -> Tensor:
        if idx.dim() == 1:
            idx = idx.unsqueeze(-1)
        return torch.cat([sub.lookup(idx[..., i]) for i, sub in enumerate(self.subquantizers)], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# Per-kind halves of ``quantize`` around the search: ``prepare(sub, xs) → (queries, detached codebook, context)`` and
# ``finish(sub, prepared, idx) → VectorOutput``. Each mirrors that kind's ``quantize`` line for line (same operations in
# the same order), using only its public attributes and methods.


def _sub_chunk(sub: Quantizer) -> int:
    return sub.vq.chunk_size if isinstance(sub, FactorizedVectorQuantizer) else sub.chunk_size


def _lookup_dim(sub: Quantizer) -> int:
    if isinstance(sub, FactorizedVectorQuantizer):
        return sub.low_dim
    return sub.lookup_dim if isinstance(sub, LCQuantizer) else sub.dim


def _vq_prepare(sub: VectorQuantizer, xs: Tensor):
    if sub.l2_norm:
        xs = F.normalize(xs, dim=1)
    codebook = sub.codebook()
    return xs, codebook.detach(), codebook


def _vq_finish(sub: VectorQuantizer, prepared, idx: Tensor) -> VectorOutput:
    xs, _, codebook = prepared
    x_q = codebook[idx]  # indexing keeps the codebook's gradient
    loss = commitment_terms(xs, x_q, sub.beta, sub.legacy)
    return VectorOutput(straight_through(xs, x_q), idx, loss)


def _ema_prepare(sub: EMAVectorQuantizer, xs: Tensor):
    if sub.l2_norm:
        xs = F.normalize(xs, dim=1)
    return xs, sub.codebook(), None


def _ema_finish(sub: EMAVectorQuantizer, prepared, idx: Tensor) -> VectorOutput:
    xs = prepared[0]
    x_q = sub.codebook()[idx].clone()  # the pre-update codes; a buffer: no gradient
    if sub.training:
        sub.ema_update(xs.detach(), idx)
    loss = {"commitment": sub.beta * torch.mean((x_q - xs) ** 2)}
    return VectorOutput(straight_through(xs, x_q), idx, loss)


def _fc_prepare(sub: FactorizedVectorQuantizer, xs: Tensor):
    return _vq_prepare(sub.vq, sub.proj_in(xs))


def _fc_finish(sub: FactorizedVectorQuantizer, prepared, idx: Tensor) -> VectorOutput:
    out = _vq_finish(sub.vq, prepared, idx)
    return VectorOutput(sub.proj_out(out.x_q), out.idx, out.loss)


def _lc_prepare(sub: LCQuantizer, xs: Tensor):
    x_low = sub.proj_in(xs) if sub.proj_in is not None else xs
    if sub.l2_norm:
        x_low = F.normalize(x_low, dim=1)
    with torch.no_grad():
        codes = sub.codebook()
    return x_low, codes, None


def _lc_finish(sub: LCQuantizer, prepared, idx: Tensor) -> VectorOutput:
    x_low = prepared[0]
    x_q = sub.project(sub.bank.features[idx])  # only the chosen rows carry gradient to the projector
    loss = commitment_terms(x_low, x_q, sub.beta, sub.legacy)
    out = straight_through(x_low, x_q)
    return VectorOutput(sub.proj_out(out) if sub.proj_out is not None else out, idx, loss)


_BATCHABLE = {
    VectorQuantizer: (_vq_prepare, _vq_finish),
    EMAVectorQuantizer: (_ema_prepare, _ema_finish),
    FactorizedVectorQuantizer: (_fc_prepare, _fc_finish),
    LCQuantizer: (_lc_prepare, _lc_finish),
}
