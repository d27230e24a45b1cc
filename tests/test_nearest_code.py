"""nearest_code: exact against brute force on every path (direct, cache-blocked, several outer passes), lowest index
on ties, and memory that never grows like N × K."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pqstudy.quantizers import nearest_code

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def brute_force(x, codebook):
    return torch.cdist(x.double(), codebook.double()).argmin(dim=1)


@pytest.mark.parametrize(
    "n, k, d, chunk",
    [
        (1, 1, 3, 16384),  # trivial
        (5, 7, 2, 3),  # direct path, tiny
        (300, 1000, 4, 16384),  # direct path: k within one block
        (700, 3000, 8, 16384),  # blocked: three code blocks, partial last block
        (2048, 5000, 64, 16384),  # blocked, D = 64
        (1500, 2500, 5, 300),  # chunk_size smaller than the cache block
        (9000, 1500, 3, 16384),  # two outer query passes
    ],
)
def test_matches_brute_force(n, k, d, chunk):
    g = torch.Generator().manual_seed(n + k + d)
    x, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    assert torch.equal(nearest_code(x, codebook, chunk_size=chunk), brute_force(x, codebook))


@pytest.mark.parametrize("k", [50, 3000])
def test_ties_go_to_the_lowest_index(k):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(k, 4, generator=g)
    codebook = torch.cat([base, base, base])  # every entry three times, in three different code blocks for k=3000
    x = torch.randn(2000, 4, generator=g)
    idx = nearest_code(x, codebook)
    assert bool((idx < k).all())
    assert torch.equal(idx, brute_force(x, base))


def test_exact_code_matches_and_dtypes():
    codebook = torch.randn(4000, 6, dtype=torch.float64)
    pick = torch.randint(4000, (1000,))
    assert torch.equal(nearest_code(codebook[pick], codebook), pick)
    assert nearest_code(torch.randn(0, 6), codebook.float()).shape == (0,)
    x = torch.randn(1200, 600)[:, ::100]  # non-contiguous inputs
    other = torch.randn(6, 2000).t()
    assert torch.equal(nearest_code(x, other), brute_force(x, other))


def test_no_dense_distance_matrix():
    """2,048 queries against K = 100,000: no allocation comes near the 819 MB of a dense N × K float matrix."""
    n, k = 2048, 100_000
    x, codebook = torch.randn(n, 8), torch.randn(k, 8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        idx = nearest_code(x, codebook)
    largest = max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)
    assert largest < n * k * 4 / 100, f"an allocation of {largest} bytes"
    sample = torch.arange(0, n, 97)
    assert torch.equal(idx[sample], brute_force(x[sample], codebook))
