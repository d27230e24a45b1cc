"""``lc``: VQGAN-LC's large frozen codebook with a learned projector.

A frozen N × C feature bank (given as a tensor; built by :mod:`pqstudy.codebooks`: k-means / random selection /
feature-statistics normal draw of pixel, encoder or CLIP features, or VQGAN-LC's uniform random init) is mapped into
the D′-dim latent space by a projector every step; latents take their nearest projected entry (squared L2,
straight-through gradients). Loss terms as ``vq``: ‖sg(z_q) − z‖² and ‖z_q − sg(z)‖² with β (and the ``legacy``
swap); the codebook term trains the projector.

Ablation variants (``quantizer.projector`` / ``quantizer.lc_trainable``):

- static codebook without projector (``projector=none``): C must equal D′ and the quantiser has no trainable parameter
  (unless D′ ≠ D adds the latent projections below);
- static codebook + projector (default): ``linear`` (C → D′) or ``mlp`` (C → C → D′, GELU);
- trainable codebook + projector (``lc_trainable=true``): the feature bank becomes a parameter.

With ``quantizer.low_dim`` = D′ ≠ D, latents are projected D → D′ before the lookup and back after it, as in ``vq-fc``.

Search and gradient are split: the whole bank is projected under ``no_grad`` for the nearest-code search, then only the
selected rows are projected again with autograd. The values are the same and so is the gradient (a row-wise projector
only receives gradient through selected rows), but the backward pass costs O(B·h·w·C) instead of O(N·C).

``pq`` of ``lc`` (``kind=pq, sub_kind=lc``): the M subspaces share one feature bank (one build, one tensor in memory;
with ``lc_trainable`` one shared parameter), and each has its own projector C → D′ (= D/M by default), so each has its
own frozen projected sub-codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.config import lookup_dim
from pqstudy.quantizers.base import Quantizer, VectorOutput, commitment_terms, nearest_code, straight_through

PROJECTORS = ("linear", "mlp", "none")
PROJECTOR_INITS = ("torch", "normal")


class FeatureBank(nn.Module):
    """The N × C codebook features: a buffer (frozen, saved in the state dict) or, if ``trainable``, a parameter."""

    def __init__(self, features: Tensor, trainable: bool = False):
        super().__init__()
        features = features.detach().float().contiguous()
        self.trainable = trainable
        if trainable:
            self.features = nn.Parameter(features.clone())
        else:
            self.register_buffer("features", features.clone())

    @property
    def shape(self) -> torch.Size:
        return self.features.shape


def make_projector(kind: str, in_dim: int, out_dim: int, init: str = "torch") -> nn.Module:
    """The codebook projector C → D′. ``init`` of the ``linear`` one: ``torch`` (nn.Linear's default) or ``normal``,
    VQGAN-LC's weight ~ N(0, std = D′^−½) with torch's default bias (their ``models_vq.py:115-116``, D′ = embed_dim).
    The ``mlp`` keeps torch's default in both cases, as VQGAN-LC's MLP projector does (``models_vq.py:119-124``, the
    normal init commented out)."""
    if init not in PROJECTOR_INITS:
        raise ValueError(f"quantizer.projector_init={init!r}: choose one of {list(PROJECTOR_INITS)}")
    if kind == "linear":
        layer = nn.Linear(in_dim, out_dim)
        if init == "normal":
            nn.init.normal_(layer.weight, std=out_dim**-0.5)
        return layer
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
    if kind == "none":
        if in_dim != out_dim:
            raise ValueError(
                f"quantizer.projector='none': the codebook features have C={in_dim} but the lookup dim is "
                f"D′={out_dim}; use projector=linear or mlp, or features of dimension {out_dim}"
            )
        return nn.Identity()
    raise ValueError(f"quantizer.projector={kind!r}: choose one of {list(PROJECTORS)}")


class LCQuantizer(Quantizer):
    def __init__(
        self,
        *,
        codebook: Tensor | FeatureBank,  # the frozen (N, C) features (pqstudy.codebooks builds them), or a shared bank
        dim: int = 8,  # D of the latent vectors (per subspace inside pq)
        projector: str = "linear",  # C → D′: linear (VQGAN-LC's main runs) | mlp | none (needs C == D′)
        trainable: bool = False,  # train the features too (VQGAN-LC --tuning_codebook 1); else a frozen buffer
        low_dim: int = 0,  # D′ of the lookup; 0 = D (pqstudy.config.lookup_dim): no latent projection
        beta: float = 0.25,  # commitment weight β, as vq
        legacy: bool = True,  # taming's swapped β, as vq
        l2_norm: bool = False,  # cosine matching of l2-normalised latents and projected codes
        chunk_size: int = 16384,  # codebook entries per block of the nearest-code search
        projector_init: str = "torch",  # linear projector: torch (nn.Linear) | normal (VQGAN-LC models_vq.py:116)
    ):
        super().__init__()
        if not isinstance(codebook, FeatureBank) and not (isinstance(codebook, Tensor) and codebook.dim() == 2):
            got = tuple(codebook.shape) if isinstance(codebook, Tensor) else type(codebook).__name__
            raise ValueError(f"lc: codebook must be the (N, C) feature tensor or a FeatureBank, got {got}; build it "
                             "with pqstudy.codebooks.codebook_for(cfg) or `pqstudy codebooks build`")
        self.bank = codebook if isinstance(codebook, FeatureBank) else FeatureBank(codebook, trainable)
        self.codebook_size, feature_dim = self.bank.shape
        self.dim, self.lookup_dim = dim, lookup_dim("lc", dim, low_dim)
        self.beta, self.legacy, self.l2_norm, self.chunk_size = beta, legacy, l2_norm, chunk_size
        self.feature_dim = feature_dim  # C
        self.projector = make_projector(projector, feature_dim, self.lookup_dim, projector_init)
        factorised = self.lookup_dim != dim
        self.proj_in = nn.Linear(dim, self.lookup_dim) if factorised else None
        self.proj_out = nn.Linear(self.lookup_dim, dim) if factorised else None

    def project(self, features: Tensor) -> Tensor:
        codes = self.projector(features)
        return F.normalize(codes, dim=-1) if self.l2_norm else codes

    def codebook(self) -> Tensor:
        """The projected codebook (N, D′)."""
        return self.project(self.bank.features)

    def quantize(self, x: Tensor) -> VectorOutput:
        x_low = self.proj_in(x) if self.proj_in is not None else x
        if self.l2_norm:
            x_low = F.normalize(x_low, dim=1)
        with torch.no_grad():
            codes = self.codebook()
        idx = nearest_code(x_low.detach(), codes, self.chunk_size)
        x_q = self.project(self.bank.features[idx])  # only the chosen rows carry gradient to the projector
        loss = commitment_terms(x_low, x_q, self.beta, self.legacy)
        out = straight_through(x_low, x_q)
        return VectorOutput(self.proj_out(out) if self.proj_out is not None else out, idx, loss)

    def lookup(self, idx: Tensor) -> Tensor:
        codes = self.project(self.bank.features[idx])
        return self.proj_out(codes) if self.proj_out is not None else codes
