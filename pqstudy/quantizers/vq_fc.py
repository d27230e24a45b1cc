"""``vq-fc``: factorised codes (ViT-VQGAN; VQGAN-LC's FC baseline).

A linear down-projection D → D′ (``quantizer.low_dim``; 0 = D/2, at least 1, unlike ``lc``'s 0 = D: see
:func:`pqstudy.config.lookup_dim`) before the lookup and an up-projection
D′ → D after it; the D′-dim codebook is learned by gradient exactly as in ``vq`` (same loss terms, computed in the D′
space, same ``init`` and ``legacy`` options). With ``l2_norm`` the lookup is cosine matching of l2-normalised D′-dim
codes, as in ViT-VQGAN. Straight-through gradients pass from the up-projection through the lookup to the
down-projection.
"""

from __future__ import annotations

from torch import Tensor, nn

from pqstudy.config import lookup_dim
from pqstudy.quantizers.base import Quantizer, VectorOutput
from pqstudy.quantizers.vq import VectorQuantizer


class FactorizedVectorQuantizer(Quantizer):
    def __init__(
        self,
        *,
        codebook_size: int = 1024,  # K
        dim: int = 8,  # D of the latent vectors
        low_dim: int = 0,  # D′ of the lookup; 0 = D/2, at least 1 (pqstudy.config.lookup_dim)
        beta: float = 0.25,  # commitment weight β, as vq
        legacy: bool = True,  # taming's swapped β, as vq
        l2_norm: bool = False,  # cosine matching of l2-normalised D′-dim codes (ViT-VQGAN)
        init: str = "uniform",  # the D′-dim codebook's init, as vq (taming: U(±1/K))
        chunk_size: int = 16384,  # codebook entries per block of the nearest-code search
        codebook: Tensor | None = None,  # (K, D′) initial codes of the lookup, used exactly as given
    ):
        super().__init__()
        self.codebook_size, self.dim, self.low_dim = codebook_size, dim, lookup_dim("vq-fc", dim, low_dim)
        self.proj_in = nn.Linear(dim, self.low_dim)
        self.vq = VectorQuantizer(codebook_size=codebook_size, dim=self.low_dim, beta=beta, legacy=legacy,
                                  l2_norm=l2_norm, init=init, chunk_size=chunk_size, codebook=codebook)
        self.proj_out = nn.Linear(self.low_dim, dim)

    def codebook(self) -> Tensor:
        """The D′-dim lookup codebook (K, D′)."""
        return self.vq.codebook()

    def quantize(self, x: Tensor) -> VectorOutput:
        out = self.vq.quantize(self.proj_in(x))
        return VectorOutput(self.proj_out(out.x_q), out.idx, out.loss)

    def lookup(self, idx: Tensor) -> Tensor:
        return self.proj_out(self.vq.lookup(idx))
