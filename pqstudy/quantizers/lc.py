"""``lc``: VQGAN-LC's large frozen codebook with a learned projector.

A frozen N × C feature bank (built by :func:`pqstudy.codebook_init.build_codebook`: k-means / random selection /
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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "features")
        if stored is not None and stored.shape != self.features.shape:  # a placeholder bank takes the stored shape
            data = torch.empty_like(stored, device=self.features.device, dtype=self.features.dtype)
            if self.trainable:
                self.features = nn.Parameter(data)
            else:
                self.features = data
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
        codebook: Tensor | FeatureBank,
        dim: int,
        projector: str = "linear",
        trainable: bool = False,
        low_dim: int = 0,
        beta: float = 0.25,
        legacy: bool = True,
        l2_norm: bool = False,
        chunk_size: int = 16384,
        projector_init: str = "torch",
    ):
        super().__init__()
        self.bank = codebook if isinstance(codebook, FeatureBank) else FeatureBank(codebook, trainable)
        self.codebook_size, feature_dim = self.bank.shape
        self.dim, self.lookup_dim = dim, low_dim or dim
        self.beta, self.legacy, self.l2_norm, self.chunk_size = beta, legacy, l2_norm, chunk_size
        self.projector_kind, self.projector_init, self.feature_dim = projector, projector_init, feature_dim
        self.projector = make_projector(projector, feature_dim, self.lookup_dim, projector_init)
        factorised = self.lookup_dim != dim
        self.proj_in = nn.Linear(dim, self.lookup_dim) if factorised else None
        self.proj_out = nn.Linear(self.lookup_dim, dim) if factorised else None

    @classmethod
    def from_config(cls, q, dim: int | None = None, codebook: Tensor | FeatureBank | None = None) -> LCQuantizer:
        """``codebook``: the (N, C) features or a shared bank; without it only ``lc_source=random`` can build one."""
        dim = dim or q.dim
        if codebook is None:
            if q.lc_source != "random":
                raise ValueError(
                    f"quantizer.kind='lc' with lc_source={q.lc_source!r} builds its codebook from training data: use "
                    "pqstudy.quantizers.build_quantizer(cfg.quantizer, cfg.data, cfg.train.seed)"
                )
            from pqstudy.codebook_init import build_codebook

            codebook = build_codebook(q, None, 0, lookup_dim=q.low_dim or dim)
        return cls(codebook, dim, q.projector, q.lc_trainable, q.low_dim, q.beta, q.legacy, q.l2_norm, q.chunk_size,
                   q.projector_init)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "bank.features")
        if stored is not None and stored.shape[1] != self.feature_dim:  # a placeholder: rebuild for the stored C
            device = self.bank.features.device
            self.feature_dim = stored.shape[1]
            self.projector = make_projector(self.projector_kind, self.feature_dim, self.lookup_dim,
                                            self.projector_init).to(device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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


def known_feature_dim(q) -> int | None:
    """C of the ``lc`` features for ``QuantizerConfig`` q when known without loading anything (for validation)."""
    from pqstudy.features import source_feature_dim

    if q.lc_source == "random":
        return q.lc_feature_dim or (q.low_dim or q.dim // q.subspaces)
    return source_feature_dim(q.lc_source, patch=q.lc_patch, feature_dim=q.lc_feature_dim)
