"""The interface every quantiser shares, and the chunked nearest-code search.

``forward(z: (B, D, H, W)) → QuantOutput(z_q, indices, loss, stats)``:
``z_q`` carries straight-through gradients to ``z``; ``indices`` is (B, M, H, W) with M = 1 except for product
quantisation; ``loss`` is a dict of named, already weighted terms; ``stats["usage"]`` is an (M, K) count of how often
each entry was chosen in the batch, computed with ``bincount`` (never a dense one-hot over K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantOutput:
    z_q: Tensor
    indices: Tensor
    loss: dict[str, Tensor]
    stats: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class VectorOutput:
    """What a quantiser returns for flat vectors: straight-through ``x_q`` (N, d), ``idx`` (N,), loss terms."""

    x_q: Tensor
    idx: Tensor
    loss: dict[str, Tensor]


@torch.no_grad()
def nearest_code(x: Tensor, codebook: Tensor, chunk_size: int = 16384) -> Tensor:
    """Index of the nearest codebook row (squared L2) for each row of ``x``.

    The codebook is scanned in chunks with a running min/argmin, so memory stays O(N · chunk_size) rather than
    O(N · K). ``||x||²`` is the same for every code and is left out of the comparison.
    """
    n, k = x.shape[0], codebook.shape[0]
    x = x.to(codebook.dtype)
    best_val = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    best_idx = torch.zeros(n, device=x.device, dtype=torch.long)
    for start in range(0, k, chunk_size):
        chunk = codebook[start : start + chunk_size]
        # ||c||² − 2 x·c  for this chunk of codes
        dist = torch.addmm(chunk.pow(2).sum(1), x, chunk.t(), beta=1.0, alpha=-2.0)
        val, idx = dist.min(dim=1)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx


def usage_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """(M, K) counts of each entry per sub-codebook from (B, M, H, W) indices, via one bincount."""
    m = indices.shape[1]
    flat = indices.transpose(0, 1).reshape(m, -1)
    offsets = torch.arange(m, device=indices.device).unsqueeze(1) * codebook_size
    return torch.bincount((flat + offsets).reshape(-1), minlength=m * codebook_size).view(m, codebook_size)


def commitment_terms(x: Tensor, x_q: Tensor, beta: float, legacy: bool) -> dict[str, Tensor]:
    """VQ-VAE loss terms. ``commitment`` = ‖sg(z_q) − z‖², ``codebook`` = ‖z_q − sg(z)‖².

    Standard form weights the commitment term by β; taming's ``legacy`` form swaps it onto the codebook term.
    """
    commit = torch.mean((x_q.detach() - x) ** 2)
    book = torch.mean((x_q - x.detach()) ** 2)
    if legacy:
        return {"commitment": commit, "codebook": beta * book}
    return {"commitment": beta * commit, "codebook": book}


def straight_through(x: Tensor, x_q: Tensor) -> Tensor:
    return x + (x_q - x).detach()


class Quantizer(nn.Module):
    """Base class: subclasses implement ``quantize`` on flat (N, dim) vectors and ``lookup`` from indices."""

    codebook_size: int
    dim: int
    num_codebooks: int = 1

    @property
    def bits_per_position(self) -> float:
        return self.num_codebooks * math.log2(self.codebook_size)

    def quantize(self, x: Tensor) -> VectorOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def lookup(self, idx: Tensor) -> Tensor:  # pragma: no cover - interface
        """Code vectors (…, dim) for indices (…); no straight-through."""
        raise NotImplementedError

    def forward(self, z: Tensor) -> QuantOutput:
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"{type(self).__name__} expects {self.dim} channels, got {d}")
        x = z.permute(0, 2, 3, 1).reshape(-1, d)
        out = self.quantize(x)
        z_q = out.x_q.view(b, h, w, d).permute(0, 3, 1, 2)
        indices = out.idx.view(b, h, w, self.num_codebooks).permute(0, 3, 1, 2) if out.idx.dim() == 2 else (
            out.idx.view(b, 1, h, w)
        )
        return QuantOutput(z_q.contiguous(), indices, out.loss, {"usage": usage_counts(indices, self.codebook_size)})

    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, M, H, W) indices → (B, D, H, W) quantised latents."""
        b, m, h, w = indices.shape
        idx = indices.permute(0, 2, 3, 1).reshape(-1, m)
        x_q = self.lookup(idx if m > 1 else idx[:, 0])
        return x_q.view(b, h, w, self.dim).permute(0, 3, 1, 2).contiguous()
