"""The interface every quantiser shares, and the chunked nearest-code search.

``forward(z: (B, D, H, W)) → QuantOutput(z_q, indices, loss, stats)``:
``z_q`` carries straight-through gradients to ``z``; ``indices`` is (B, M, H, W) with M = 1 except for product
quantisation; ``loss`` is a dict of named, already weighted terms; ``stats["usage"]`` is an (M, K) count of how often
each entry was chosen in the batch, computed with ``bincount`` (never a dense one-hot over K).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pqstudy.precision import fp32_region, to_fp32


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


# Cache-blocked search on CPU (see ``nearest_code``). A (_QUERY_BLOCK × _CODE_BLOCK) float32 distance tile is 2 MiB:
# it stays in a core's L2 cache between the matmul that writes it and the reduction that reads it.
_CODE_BLOCK = 1024
_QUERY_BLOCK = 512
_OUTER_QUERIES = 8192  # queries per outer pass; bounds the (chunks × queries) table of chunk minima
_DIRECT_ELEMENTS = 1 << 19  # problems with at most this many distances are searched in one tile

# Threads on CPU (see ``parallel_tasks``): with T torch threads a search runs as a few large tasks, each on one thread
# with single-threaded kernels, instead of hundreds of small multi-threaded kernels that each end in a barrier (under
# load one descheduled thread stalls every barrier: at T = 2 next to one busy process, 800 such calls took 14 s where
# one thread took 1.7 s). Up to _TASKS_PER_THREAD tasks per thread (a slow thread holds back at most one small task)
# of at least _MIN_TASK_FLOP each (thread start-up and the Python per-tile work stay small beside it).
_TASKS_PER_THREAD = 4
_MIN_TASK_FLOP = 20e6
_PARALLEL_LOCK = threading.Lock()


def task_count(work_flop: float, units: int, threads: int | None = None) -> int:
    """How many tasks to split ``units`` independent pieces of work (``work_flop`` in all) into on ``threads``
    (default: torch's thread count): at most ``_TASKS_PER_THREAD`` per thread, at least ``_MIN_TASK_FLOP`` each."""
    threads = torch.get_num_threads() if threads is None else threads
    if threads <= 1 or units <= 1:
        return 1
    return max(1, min(units, threads * _TASKS_PER_THREAD, int(work_flop // _MIN_TASK_FLOP)))


def split_evenly(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous, non-empty ranges whose lengths differ by at most one."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def parallel_tasks(tasks: list, threads: int | None = None) -> None:
    """Run the callables ``tasks`` (each writing its own, disjoint part of an output) on ``threads`` worker threads
    (default: torch's thread count) whose torch kernels are single-threaded; in the calling thread when there is one
    task or one thread. torch releases the GIL inside its kernels, so the threads run in parallel; the thread count
    of the caller is restored afterwards. Results do not depend on the thread count: every kernel sees the same
    shapes as a single-threaded run, and float32 matmuls of a given shape give the same bits on 1 thread or many."""
    threads = torch.get_num_threads() if threads is None else threads
    if threads <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with _PARALLEL_LOCK:  # one parallel search at a time: each sets and restores the thread count
        previous = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(min(threads, len(tasks)), initializer=torch.set_num_threads,
                                    initargs=(1,)) as pool:
                for future in [pool.submit(task) for task in tasks]:
                    future.result()
        finally:
            torch.set_num_threads(previous)


@torch.no_grad()
def nearest_code(x: Tensor, codebook: Tensor, chunk_size: int = 16384) -> Tensor:
    """Index of the nearest codebook row (squared L2) for each row of ``x``; ties go to the lowest index.

    Never materialises the N × K distance matrix: the extra memory is one 2 MiB distance tile per thread plus a table
    of block minima of min(N, 8192) × K/1024 floats (3 MiB at K = 100,000). ``||x||²`` is the same for every code and
    is left out; the rest, ``||c||² − 2 x·c``, is one matmul of the augmented rows ``[−2x, 1]`` and ``[c, ||c||²]``.
    ``chunk_size`` caps the codebook entries per block. Exact up to float32 rounding of that expansion (a near-tie
    within rounding may resolve differently from a float64 search).

    On CPU the search is cache-blocked and two-pass. Pass 1 computes each (query block × code block) distance tile
    and keeps only its row minima (``amin``, a vectorised reduction ~8× cheaper than ``min`` with indices); pass 2
    recomputes, for each query, the one code block that holds its minimum and takes the index there. The index
    reduction thus touches N · block distances instead of N · K. With several torch threads each pass is cut into a
    few large tasks (ranges of code blocks; groups of queries) run by :func:`parallel_tasks`; the tiles and so the
    indices are the same for any thread count. On other devices (GPU) the codebook is scanned in chunks with a
    running min/argmin.
    """
    # fp32 even under bf16 autocast, which would run the distance matmul in bf16: near-ties then go to other codes
    # (0.2-6% of positions on the default study's trained runs; pqstudy.precision, benchmarks/bf16_quality.py)
    with fp32_region("search", x.device.type):
        return _nearest_code(x, codebook, chunk_size)


def _nearest_code(x: Tensor, codebook: Tensor, chunk_size: int) -> Tensor:
    n, k = x.shape[0], codebook.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    dtype = codebook.dtype if codebook.dtype in (torch.float32, torch.float64) else torch.float32
    x, codebook = x.to(dtype), codebook.to(dtype)
    if x.device.type != "cpu":
        return _nearest_code_running(x, codebook, chunk_size)
    xa = torch.cat([x * -2.0, x.new_ones(n, 1)], dim=1)  # (n, D+1): xa · [c, ||c||²] = ||c||² − 2 x·c
    block = max(1, min(chunk_size, _CODE_BLOCK))
    if n * k <= _DIRECT_ELEMENTS or k <= block:
        out = torch.empty(n, dtype=torch.long)
        step = max(1, _DIRECT_ELEMENTS // k)
        ca_t = _augmented_t(codebook)

        def direct(steps: range) -> None:
            for q in steps:
                s = q * step
                out[s : s + step] = torch.min(xa[s : s + step] @ ca_t, dim=1).indices

        n_steps = -(-n // step)
        tasks = split_evenly(n_steps, task_count(2.0 * n * k * xa.shape[1], n_steps))
        parallel_tasks([lambda r=r: direct(r) for r in tasks])
        return out
    return torch.cat([_nearest_code_blocked(xa[q : q + _OUTER_QUERIES], codebook, block)
                      for q in range(0, n, _OUTER_QUERIES)])


def _augmented_t(codes: Tensor) -> Tensor:
    """``[c, ||c||²]ᵀ`` (D+1, k) for a block of codes."""
    return torch.cat([codes, codes.pow(2).sum(1, keepdim=True)], dim=1).t()


def _nearest_code_blocked(xa: Tensor, codebook: Tensor, block: int) -> Tensor:
    n, k = xa.shape[0], codebook.shape[0]
    n_blocks = -(-k // block)
    flop = 2.0 * n * k * xa.shape[1]
    minima = xa.new_empty(n_blocks, n)  # row minima of every tile: (code block, query)
    queries = [(q, min(n, q + _QUERY_BLOCK)) for q in range(0, n, _QUERY_BLOCK)]

    def pass1(blocks: range) -> None:  # one task: a range of code blocks against every query block
        tile = xa.new_empty(min(n, _QUERY_BLOCK), block)
        for j in blocks:
            s = j * block
            ca_t = _augmented_t(codebook[s : s + block])  # (D+1, block')
            width = ca_t.shape[1]
            for q, e in queries:
                t = tile[: e - q, :width]
                torch.mm(xa[q:e], ca_t, out=t)
                torch.amin(t, dim=1, out=minima[j, q:e])

    parallel_tasks([lambda r=r: pass1(r) for r in split_evenly(n_blocks, task_count(flop, n_blocks))])
    best_block = minima.argmin(dim=0)  # first block holding the minimum: ties go to the lowest index
    out = torch.empty(n, dtype=torch.long)
    order = torch.argsort(best_block, stable=True)
    blocks, counts = torch.unique_consecutive(best_block[order], return_counts=True)
    groups = list(zip(blocks.tolist(), torch.cumsum(counts, 0).sub(counts).tolist(), counts.tolist(), strict=True))

    def pass2(part: range) -> None:  # one task: the queries of some code blocks, each block searched once
        for j, start, count in (groups[i] for i in part):
            rows = order[start : start + count]
            s = j * block
            ca_t = _augmented_t(codebook[s : s + block])
            out[rows] = torch.min(xa[rows] @ ca_t, dim=1).indices + s

    parallel_tasks([lambda r=r: pass2(r) for r in split_evenly(len(groups), task_count(flop / n_blocks, len(groups)))])
    return out


def _nearest_code_running(x: Tensor, codebook: Tensor, chunk_size: int) -> Tensor:
    """Chunked scan with a running min/argmin (GPU path)."""
    n, k = x.shape[0], codebook.shape[0]
    best_val = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    best_idx = torch.zeros(n, device=x.device, dtype=torch.long)
    for start in range(0, k, chunk_size):
        chunk = codebook[start : start + chunk_size]
        dist = torch.addmm(chunk.pow(2).sum(1), x, chunk.t(), beta=1.0, alpha=-2.0)
        val, idx = dist.min(dim=1)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx


_BATCHED_TILE = 1 << 21  # CPU: distances per (M × queries × codes) tile of the batched search (8 MiB of float32)
_BATCHED_TILE_GPU = 1 << 25  # GPU: 128 MiB of float32 per tile


@torch.no_grad()
def nearest_code_batched(x: Tensor, codebooks: Tensor, chunk_size: int = 16384) -> Tensor:
    """:func:`nearest_code` for M independent subspaces at once: x (M, N, d), codebooks (M, K, d) → indices (M, N).

    Row n of subspace m gets the index of its nearest row of ``codebooks[m]`` (squared L2); ties go to the lowest
    index. One batched matmul (``bmm``) of the augmented rows ``[−2x, 1]`` and ``[c, ||c||²]`` per tile replaces M
    separate searches. Memory is bounded: the queries are taken in blocks that keep each (M × queries × codes)
    distance tile within 8 MiB on CPU (128 MiB on GPU); on GPU the codebooks are scanned in blocks of ``chunk_size``
    entries with a running min/argmin (strict ``<``, so an earlier block wins a tie). Never materialises M × N × K.
    With several torch threads on CPU the query tiles are shared out as a few large tasks (:func:`parallel_tasks`).

    On CPU with K > ``min(chunk_size, 1024)`` each subspace goes to :func:`nearest_code`'s cache-blocked two-pass
    search instead: its ``amin`` pass is ~8× cheaper than the min-with-indices a batched running argmin needs over
    all N·K distances (measured 2× faster at M=8, K=5,000), and the per-subspace Python overhead is small next to it.
    """
    if x.dim() != 3 or codebooks.dim() != 3:
        raise ValueError(f"nearest_code_batched: x must be (M, N, d) and codebooks (M, K, d), got "
                         f"{tuple(x.shape)} and {tuple(codebooks.shape)}")
    m, n, d = x.shape
    if codebooks.shape[0] != m or codebooks.shape[2] != d:
        raise ValueError(f"nearest_code_batched: codebooks {tuple(codebooks.shape)} do not match x {tuple(x.shape)} "
                         "(same M and d needed)")
    if n == 0 or m == 0:
        return torch.zeros(m, n, dtype=torch.long, device=x.device)
    with fp32_region("search", x.device.type):  # fp32 distances under autocast, as nearest_code
        return _nearest_code_batched(x, codebooks, chunk_size)


def _nearest_code_batched(x: Tensor, codebooks: Tensor, chunk_size: int) -> Tensor:
    m, k = codebooks.shape[:2]
    dtype = codebooks.dtype if codebooks.dtype in (torch.float32, torch.float64) else torch.float32
    x, codebooks = x.to(dtype), codebooks.to(dtype)
    cpu = x.device.type == "cpu"
    block = max(1, min(chunk_size, _CODE_BLOCK) if cpu else chunk_size)
    if cpu and k > block:  # nearest_code's two-pass search (amin, ~8× cheaper than min) wins over a running argmin
        return torch.stack([nearest_code(x[i], codebooks[i], chunk_size) for i in range(m)])
    return _batched_running(x, codebooks, block, _BATCHED_TILE if cpu else _BATCHED_TILE_GPU)


def _batched_running(x: Tensor, codebooks: Tensor, block: int, tile: int) -> Tensor:
    """Batched search over code blocks of ``block`` entries with a running min/argmin, ≤ ``tile`` distances a tile;
    on CPU the query tiles are shared out as tasks (:func:`parallel_tasks`)."""
    m, n, d = x.shape
    k = codebooks.shape[1]
    block = max(1, min(block, k))
    step = max(1, tile // (m * block))  # queries per tile
    xa = torch.cat([x * -2.0, x.new_ones(m, n, 1)], dim=2)  # (M, N, d+1)
    blocks = [_augmented_t_batched(codebooks[:, s : s + block]) for s in range(0, k, block)]  # (M, d+1, block')
    out = torch.empty(m, n, dtype=torch.long, device=x.device)

    def search(tiles: range) -> None:
        for q in (i * step for i in tiles):
            xq = xa[:, q : q + step]
            best_val, best_idx = torch.min(torch.bmm(xq, blocks[0]), dim=2)
            for j, ca_t in enumerate(blocks[1:], start=1):
                val, idx = torch.min(torch.bmm(xq, ca_t), dim=2)
                better = val < best_val
                best_val = torch.where(better, val, best_val)
                best_idx = torch.where(better, idx + j * block, best_idx)
            out[:, q : q + step] = best_idx

    n_tiles = -(-n // step)
    parts = task_count(2.0 * m * n * k * (d + 1), n_tiles) if x.device.type == "cpu" else 1
    parallel_tasks([lambda r=r: search(r) for r in split_evenly(n_tiles, parts)], threads=None if parts > 1 else 1)
    return out


def _augmented_t_batched(codes: Tensor) -> Tensor:
    """``[c, ||c||²]ᵀ`` (M, d+1, k) for a block of codes (M, k, d)."""
    return torch.cat([codes, codes.pow(2).sum(2, keepdim=True)], dim=2).transpose(1, 2)


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


def check_codebook(codebook: Tensor, shape: tuple[int, int], kind: str) -> None:
    """A given initial codebook must be a (K, d) tensor of the quantiser's shape."""
    if not isinstance(codebook, Tensor) or tuple(codebook.shape) != tuple(shape):
        got = tuple(codebook.shape) if isinstance(codebook, Tensor) else type(codebook).__name__
        raise ValueError(f"{kind}: the initial codebook must be a tensor of shape {tuple(shape)} (K, d), got {got}")


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
        # Under bf16 autocast the whole quantiser runs in fp32 on an fp32 latent: search, loss terms, EMA statistics
        # (pqstudy.precision; benchmarks/bf16_quality.py). The decoder takes the fp32 z_q back into autocast.
        with fp32_region("quantizer", z.device.type) as guarded:
            x = z.permute(0, 2, 3, 1).reshape(-1, d)
            out = self.quantize(to_fp32(x) if guarded else x)
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
