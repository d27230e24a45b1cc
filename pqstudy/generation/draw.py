"""Random draws from a ``torch.Generator`` that may live on another device than the tensors they are for.

The generators' random streams come from one CPU ``torch.Generator`` (its state is saved in the checkpoint, so a
resumed run is bitwise the unbroken one; sampling is seeded the same way). ``torch.randn(..., generator=g,
device="cuda")`` refuses a CPU generator, so every draw is made on the generator's own device and then moved to the
tensors' device: the same numbers on a CPU and on a GPU, and one checkpoint format for both. The copy is of noise the
size of one batch (a few MB at most), small against a training or sampling step.

Data-parallel training (``share=(rank, world_size)``): rank ``r`` holds every ``world_size``-th row of the global
batch from row ``r`` (:func:`pqstudy.train.batch_indices`), and every rank's generator is in the same state. Each
rank draws the *global* batch's rows and keeps its own, so the ranks together draw exactly what one process draws
for the whole batch, and every rank's generator stays in step with the others (a resume on another world size
continues the same stream). The extra draws are noise for ``world_size − 1`` more shares, small beside a step.
"""

from __future__ import annotations

import torch
from torch import Tensor

WHOLE = (0, 1)  # one process: the whole batch


def _source(generator: torch.Generator | None, device) -> torch.device:
    return generator.device if generator is not None else torch.device(device)


def _share_of(draw, shape, generator: torch.Generator | None, device, dtype, share: tuple[int, int]) -> Tensor:
    """``draw`` (torch.randn / torch.rand) of the global batch's shape from ``generator`` on its device; this rank's
    rows of it (every ``world_size``-th from ``rank``; ``shape[0]`` is the rank's rows), on ``device``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    rank, size = share
    if not 0 <= rank < size:
        raise ValueError(f"share={share}: expected (rank, world_size) with 0 <= rank < world_size")
    out = draw((shape[0] * size, *shape[1:]), generator=generator, device=_source(generator, device), dtype=dtype)
    return out[rank::size].contiguous().to(device)


def randn(shape, *, generator: torch.Generator | None, device, dtype: torch.dtype | None = None,
          share: tuple[int, int] = WHOLE) -> Tensor:
    """``torch.randn(shape)`` drawn from ``generator`` (on its device), returned on ``device``; with ``share``, this
    rank's rows of the global batch's draw (``shape[0]`` is the rank's rows)."""
    return _share_of(torch.randn, shape, generator, device, dtype, share)


def rand(shape, *, generator: torch.Generator | None, device, dtype: torch.dtype | None = None,
         share: tuple[int, int] = WHOLE) -> Tensor:
    """``torch.rand(shape)`` drawn from ``generator`` (on its device), returned on ``device``; ``share`` as in
    :func:`randn`."""
    return _share_of(torch.rand, shape, generator, device, dtype, share)


def multinomial(probs: Tensor, *, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` (N, K) → (N, 1), from ``generator`` (on its device), on ``probs``' device."""
    source = _source(generator, probs.device)
    return torch.multinomial(probs.to(source), 1, generator=generator).to(probs.device)
