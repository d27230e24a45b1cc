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


# ---------------------------------------------------------------------------------------------------------------
# threads: the search as a few large tasks (pqstudy.quantizers.base.parallel_tasks), the same indices as ever


def _digest(idx):
    import hashlib

    return hashlib.sha1(idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


# Indices of nearest_code at commit 0b3526c (before the search ran as tasks on threads), as sha1 digests of the int64
# bytes, on x = randn(n, d) and codebook = randn(k, d) drawn in that order from a generator seeded with ``seed``.
# They hold on machines whose float32 matmul rounds alike; where one fails, compare with brute_force first.
REFERENCE_DIGESTS = [
    (2048, 20000, 8, 1, "f49668be8b310f98"),  # cache-blocked, two passes
    (3000, 5000, 64, 2, "a109ccf28b350b78"),  # cache-blocked, D = 64, a partial last query block
    (2048, 1024, 16, 3, "084fac114c95751c"),  # direct path in steps of 512 queries
    (9000, 1500, 3, 4, "21a28d2d9aeef762"),  # two outer query passes
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("n", "k", "d", "seed", "digest"), REFERENCE_DIGESTS)
def test_indices_are_those_of_the_previous_kernel_on_any_thread_count(n, k, d, seed, digest, threads):
    g = torch.Generator().manual_seed(seed)
    x, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    torch.set_num_threads(threads)  # the one_thread fixture restores the count
    assert _digest(nearest_code(x, codebook)) == digest
    assert torch.get_num_threads() == threads  # the caller's thread count is restored


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize(
    "n, k, d, chunk",
    [(700, 3000, 8, 16384), (1500, 2500, 5, 300), (2048, 5000, 64, 16384), (4000, 900, 4, 16384), (1, 3000, 8, 16384)],
)
def test_threads_change_no_index(n, k, d, chunk, threads):
    g = torch.Generator().manual_seed(n + k)
    x, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    codebook[1::2] = codebook[0::2][: k // 2]  # exact ties across code blocks: the lowest index must still win
    one = nearest_code(x, codebook, chunk_size=chunk)
    torch.set_num_threads(threads)
    assert torch.equal(nearest_code(x, codebook, chunk_size=chunk), one)
    assert bool((one % 2 == 0).all())


def test_parallel_tasks_runs_each_task_once_on_single_threaded_workers():
    from pqstudy.quantizers.base import parallel_tasks

    seen = []
    parallel_tasks([lambda i=i: seen.append((i, torch.get_num_threads())) for i in range(7)], threads=3)
    assert sorted(i for i, _ in seen) == list(range(7)) and {t for _, t in seen} == {1}
    torch.set_num_threads(2)
    with pytest.raises(ZeroDivisionError):
        parallel_tasks([lambda: None, lambda: 1 / 0], threads=2)
    assert torch.get_num_threads() == 2  # restored after a failing task too
    inline = []
    parallel_tasks([lambda: inline.append(torch.get_num_threads())], threads=2)  # one task: in this thread
    assert inline == [2]


@pytest.mark.parametrize(
    ("work", "units", "threads", "tasks"),
    [(1e12, 98, 1, 1), (1e12, 98, 2, 8), (1e12, 5, 2, 5), (1e12, 1, 8, 1), (3e7, 98, 2, 1), (1e8, 98, 2, 5)],
)
def test_task_count_from_work_units_and_threads(work, units, threads, tasks):
    from pqstudy.quantizers.base import task_count

    assert task_count(work, units, threads) == tasks


@pytest.mark.parametrize(("n", "parts"), [(10, 3), (98, 8), (3, 5), (1, 1), (7, 7)])
def test_split_evenly_covers_the_range_in_order(n, parts):
    from pqstudy.quantizers.base import split_evenly

    ranges = split_evenly(n, parts)
    assert [i for r in ranges for i in r] == list(range(n))
    assert len(ranges) == min(n, parts) and max(map(len, ranges)) - min(map(len, ranges)) <= 1
