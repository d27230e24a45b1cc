"""Random draws from a ``torch.Generator`` that may live on another device than the tensors they are for.

The generators' random streams come from one CPU ``torch.Generator`` (its state is saved in the checkpoint, so a
resumed run is bitwise the unbroken one; sampling is seeded the same way). ``torch.randn(..., generator=g,
device="cuda")`` refuses a CPU generator, so every draw is made on the generator's own device and then moved to the
tensors' device: the same numbers on a CPU and on a GPU, and one checkpoint format for both. The copy is of noise the
size of one batch (a few MB at most), small against a training or sampling step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _source(generator: torch.Generator | None, device) -> torch.device:
    return generator.device if generator is not None else torch.device(device)


def randn(shape, *, generator: torch.Generator | None, device, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.randn(shape)`` drawn from ``generator`` (on its device), returned on ``device``."""
    return torch.randn(shape, generator=generator, device=_source(generator, device), dtype=dtype).to(device)


def rand(shape, *, generator: torch.Generator | None, device, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.rand(shape)`` drawn from ``generator`` (on its device), returned on ``device``."""
    return torch.rand(shape, generator=generator, device=_source(generator, device), dtype=dtype).to(device)


def multinomial(probs: Tensor, *, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` (N, K) → (N, 1), from ``generator`` (on its device), on ``probs``' device."""
    source = _source(generator, probs.device)
    return torch.multinomial(probs.to(source), 1, generator=generator).to(probs.device)
