"""``vq``: a codebook learned by gradient (VQ-VAE / taming ``VectorQuantizer2``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.quantizers.base import Quantizer, VectorOutput, commitment_terms, nearest_code, straight_through


class VectorQuantizer(Quantizer):
    def __init__(
        self,
        codebook_size: int = 1024,
        dim: int = 8,
        beta: float = 0.25,
        legacy: bool = True,
        l2_norm: bool = False,
        init: str = "normal",
        chunk_size: int = 16384,
    ):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.legacy, self.l2_norm, self.chunk_size = beta, legacy, l2_norm, chunk_size
        self.embedding = nn.Embedding(codebook_size, dim)
        if init == "uniform":  # taming: U(-1/K, 1/K)
            nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        elif init == "normal":
            nn.init.normal_(self.embedding.weight)
        else:
            raise ValueError(f"quantizer.init={init!r}: vq supports 'normal' or 'uniform'")

    @classmethod
    def from_config(cls, q, dim: int | None = None) -> VectorQuantizer:
        return cls(q.codebook_size, dim or q.dim, q.beta, q.legacy, q.l2_norm, q.init, q.chunk_size)

    def codebook(self) -> Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_norm else w

    def quantize(self, x: Tensor) -> VectorOutput:
        if self.l2_norm:
            x = F.normalize(x, dim=1)
        codebook = self.codebook()
        idx = nearest_code(x.detach(), codebook.detach(), self.chunk_size)
        x_q = codebook[idx]  # indexing keeps the codebook's gradient
        loss = commitment_terms(x, x_q, self.beta, self.legacy)
        return VectorOutput(straight_through(x, x_q), idx, loss)

    def lookup(self, idx: Tensor) -> Tensor:
        return self.codebook()[idx]
