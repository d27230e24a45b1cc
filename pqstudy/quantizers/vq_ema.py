"""``vq-ema``: a codebook updated by exponential moving averages (VQ-VAE / VQ-VAE-2; VQGAN-LC's EMA baseline).

No gradient reaches the codebook (it is a buffer). In training mode each forward, after the lookup, updates with
decay γ = ``quantizer.ema_decay`` (0.99) and Laplace smoothing ε = ``quantizer.ema_eps`` (1e-5):

    n_k ← γ n_k + (1 − γ) · #{i : idx_i = k}            (cluster sizes, start at ``quantizer.ema_count_init``)
    m_k ← γ m_k + (1 − γ) · Σ_{i : idx_i = k} z_i         (code sums, start at the initial codes)
    ñ_k = (n_k + ε) / (Σ_j n_j + K ε) · Σ_j n_j          (Laplace-smoothed sizes)
    e_k = m_k / ñ_k

The sums start at the initial codes. Starting the sizes at 1 (the default) keeps an unused entry where it was instead
of dividing by a near-zero size. VQGAN-LC's EMA baseline starts them at 0 (``ema_count_init=0``, its
``models_vq.py:129``): an entry unused from the start then has n_k = 0 and e_k = m_k / ñ_k with a tiny ñ_k, so it is
flung far away from the data and stays unused — part of what that baseline measures. Counts and sums use ``bincount``
/ ``index_add_`` (no one-hot over K). Evaluation mode never updates. In data-parallel training
(``pqstudy.distributed``) the counts and sums are summed over the ranks before the update, so every rank applies the
update one process would from the whole global batch, and the codebooks stay identical across ranks.

The loss is the commitment term only, ``ema_beta`` · ‖sg(z_q) − z‖² (taming's EMAVectorQuantizer: β = 0.25; VQGAN-LC:
1, ``F.mse_loss(z_q.detach(), z)`` at ``models_vq.py:198``). ``quantizer.beta`` and ``legacy`` weigh the codebook term
of the gradient-trained kinds, which EMA has not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pqstudy import distributed
from pqstudy.quantizers.base import Quantizer, VectorOutput, check_codebook, nearest_code, straight_through


class EMAVectorQuantizer(Quantizer):
    def __init__(
        self,
        *,
        codebook_size: int = 1024,  # K
        dim: int = 8,  # D of the latent vectors
        beta: float = 0.25,  # weight of the commitment term (taming 0.25; VQGAN-LC's EMA baseline 1)
        decay: float = 0.99,  # γ of the moving averages (VQ-VAE-2, VQGAN-LC models_vq.py:127)
        eps: float = 1e-5,  # Laplace smoothing ε of the cluster sizes (VQ-VAE-2, VQGAN-LC models_vq.py:128)
        l2_norm: bool = False,  # l2-normalised latents and codes
        init: str = "uniform",  # taming: U(±1/K); "normal": N(0, 1). Ignored when ``codebook`` is given
        chunk_size: int = 16384,  # codebook entries per block of the nearest-code search
        count_init: float = 1.0,  # initial cluster sizes n_k (VQGAN-LC: 0, models_vq.py:129; see the docstring)
        codebook: Tensor | None = None,  # (K, D) initial codes, used as given (l2-normalised with ``l2_norm``)
    ):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"quantizer.ema_decay={decay!r}: must be in (0, 1)")
        if not count_init >= 0:
            raise ValueError(f"quantizer.ema_count_init={count_init!r}: must be >= 0")
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.decay, self.eps, self.l2_norm, self.chunk_size = beta, decay, eps, l2_norm, chunk_size
        if codebook is not None:
            check_codebook(codebook, (codebook_size, dim), "vq-ema")
            weight = codebook.detach().float().clone()
        elif init == "uniform":  # taming: U(-1/K, 1/K)
            weight = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        elif init == "normal":
            weight = torch.randn(codebook_size, dim)
        else:
            raise ValueError(f"quantizer.init={init!r}: vq-ema supports 'normal' or 'uniform'")
        if l2_norm:
            weight = F.normalize(weight, dim=1)
        self.register_buffer("embedding", weight)
        self.register_buffer("cluster_size", torch.full((codebook_size,), float(count_init)))
        self.register_buffer("embed_avg", weight.clone())

    def codebook(self) -> Tensor:
        return self.embedding

    @torch.no_grad()
    def ema_update(self, x: Tensor, idx: Tensor) -> None:
        """One EMA step from latents ``x`` (N, D) assigned to entries ``idx`` (N,)."""
        x = x.to(self.embed_avg.dtype)
        counts = torch.bincount(idx, minlength=self.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, x)
        if distributed.active():  # data-parallel: every rank updates from the whole global batch, as one process would
            both = distributed.all_reduce_sum_(torch.cat([counts.unsqueeze(1), sums], dim=1))  # one collective
            counts, sums = both[:, 0], both[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        codes = self.embed_avg / smoothed.unsqueeze(1)
        self.embedding.copy_(F.normalize(codes, dim=1) if self.l2_norm else codes)

    def quantize(self, x: Tensor) -> VectorOutput:
        if self.l2_norm:
            x = F.normalize(x, dim=1)
        idx = nearest_code(x.detach(), self.embedding, self.chunk_size)
        x_q = self.embedding[idx].clone()  # the pre-update codes; a buffer: no gradient
        if self.training:
            self.ema_update(x.detach(), idx)
        loss = {"commitment": self.beta * torch.mean((x_q - x) ** 2)}
        return VectorOutput(straight_through(x, x_q), idx, loss)

    def lookup(self, idx: Tensor) -> Tensor:
        return self.embedding[idx]
