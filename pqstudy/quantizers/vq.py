"""``vq``: a codebook learned by gradient (VQ-VAE / taming ``VectorQuantizer2``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.quantizers.base import (
    Quantizer,
    VectorOutput,
    check_codebook,
    commitment_terms,
    nearest_code,
    straight_through,
)


class VectorQuantizer(Quantizer):
    def __init__(
        self,
        *,
        codebook_size: int = 1024,  # K
        dim: int = 8,  # D of the latent vectors
        beta: float = 0.25,  # commitment weight β (VQ-VAE, van den Oord et al. 2017; taming uses 0.25)
        legacy: bool = True,  # taming's swapped β: on the codebook term instead of the commitment term
        l2_norm: bool = False,  # cosine matching of l2-normalised latents and codes (ViT-VQGAN)
        init: str = "uniform",  # taming: U(±1/K); "normal": N(0, 1). Ignored when ``codebook`` is given
        chunk_size: int = 16384,  # codebook entries per block of the nearest-code search
        codebook: Tensor | None = None,  # (K, D) initial codes, used exactly as given (copied)
    ):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.legacy, self.l2_norm, self.chunk_size = beta, legacy, l2_norm, chunk_size
        if codebook is not None:
            check_codebook(codebook, (codebook_size, dim), "vq")
            self.embedding = nn.Embedding.from_pretrained(codebook.detach().float().clone(), freeze=False)
        else:
            self.embedding = nn.Embedding(codebook_size, dim)
            if init == "uniform":  # taming: U(-1/K, 1/K)
                nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
            elif init == "normal":
                nn.init.normal_(self.embedding.weight)
            else:
                raise ValueError(f"quantizer.init={init!r}: vq supports 'normal' or 'uniform'")

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
