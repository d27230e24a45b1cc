"""``pq``: product quantisation (PQGAN). D channels split into M subspaces of D/M, one sub-quantiser each.

M = 1 is plain VQ; M = D (sub-dimension 1) is scalar quantisation. Each subspace may use any other kind of
quantiser (``quantizer.sub_kind``). Loss terms are averaged over subspaces, so with equal-size subspaces they equal
the single-codebook loss over all D channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pqstudy.quantizers.base import Quantizer, VectorOutput


class ProductQuantizer(Quantizer):
    def __init__(self, subquantizers: list[Quantizer]):
        super().__init__()
        sizes = {q.codebook_size for q in subquantizers}
        if len(sizes) != 1:
            raise ValueError(f"pq: every subspace needs the same codebook size, got {sorted(sizes)}")
        self.subquantizers = nn.ModuleList(subquantizers)
        self.codebook_size = sizes.pop()
        self.sub_dims = [q.dim for q in subquantizers]
        self.dim = sum(self.sub_dims)
        self.num_codebooks = len(subquantizers)

    @classmethod
    def from_config(cls, q, dim: int | None = None) -> ProductQuantizer:
        from pqstudy.quantizers import QUANTIZERS

        dim = dim or q.dim
        sub = QUANTIZERS[q.sub_kind]
        return cls([sub.from_config(q, dim=dim // q.subspaces) for _ in range(q.subspaces)])

    def quantize(self, x: Tensor) -> VectorOutput:
        parts, idxs, losses = [], [], {}
        for sub, xs in zip(self.subquantizers, x.split(self.sub_dims, dim=1), strict=True):
            out = sub.quantize(xs)
            parts.append(out.x_q)
            idxs.append(out.idx)
            for name, value in out.loss.items():
                losses[name] = losses.get(name, 0.0) + value / self.num_codebooks
        return VectorOutput(torch.cat(parts, dim=1), torch.stack(idxs, dim=1), losses)

    def lookup(self, idx: Tensor) -> Tensor:
        if idx.dim() == 1:
            idx = idx.unsqueeze(-1)
        return torch.cat([sub.lookup(idx[..., i]) for i, sub in enumerate(self.subquantizers)], dim=-1)
