"""``vq-fc``: factorised codes (ViT-VQGAN; VQGAN-LC's FC baseline).

A linear down-projection D → D′ (``quantizer.low_dim``; 0 = D/2, at least 1) before the lookup and an up-projection
D′ → D after it; the D′-dim codebook is learned by gradient exactly as in ``vq`` (same loss terms, computed in the D′
space, same ``init`` and ``legacy`` options). With ``l2_norm`` the lookup is cosine matching of l2-normalised D′-dim
codes, as in ViT-VQGAN. Straight-through gradients pass from the up-projection through the lookup to the
down-projection.
"""

from __future__ import annotations

from torch import Tensor, nn

from pqstudy.quantizers.base import Quantizer, VectorOutput
from pqstudy.quantizers.vq import VectorQuantizer


class FactorizedVectorQuantizer(Quantizer):
    def __init__(
        self,
        codebook_size: int = 1024,
        dim: int = 8,
        low_dim: int = 0,
        beta: float = 0.25,
        legacy: bool = True,
        l2_norm: bool = False,
        init: str = "uniform",
        chunk_size: int = 16384,
    ):
        super().__init__()
        self.codebook_size, self.dim, self.low_dim = codebook_size, dim, low_dim or max(1, dim // 2)
        self.proj_in = nn.Linear(dim, self.low_dim)
        self.vq = VectorQuantizer(codebook_size, self.low_dim, beta, legacy, l2_norm, init, chunk_size)
        self.proj_out = nn.Linear(self.low_dim, dim)

    @classmethod
    def from_config(cls, q, dim: int | None = None) -> FactorizedVectorQuantizer:
        return cls(q.codebook_size, dim or q.dim, q.low_dim, q.beta, q.legacy, q.l2_norm, q.init, q.chunk_size)

    def codebook(self) -> Tensor:
        """The D′-dim lookup codebook (K, D′)."""
        return self.vq.codebook()

    def quantize(self, x: Tensor) -> VectorOutput:
        out = self.vq.quantize(self.proj_in(x))
        return VectorOutput(self.proj_out(out.x_q), out.idx, out.loss)

    def lookup(self, idx: Tensor) -> Tensor:
        return self.proj_out(self.vq.lookup(idx))
