"""pq's one batched nearest-code search over all subspaces equals the per-subspace loop: same indices, z_q, loss
values, gradients and (vq-ema) codebook updates, for every batchable sub-kind, M, d, K and with tied codebook rows."""

import copy

import pytest
import torch

from pqstudy.quantizers import (
    EMAVectorQuantizer,
    FactorizedVectorQuantizer,
    FeatureBank,
    LCQuantizer,
    ProductQuantizer,
    VectorQuantizer,
    nearest_code,
)
from pqstudy.quantizers.base import _batched_running, nearest_code_batched

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_pq(sub_kind: str, m: int, d: int, k: int, ties: bool, l2_norm: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    if sub_kind == "vq":
        subs = [VectorQuantizer(codebook_size=k, dim=d, init="normal", l2_norm=l2_norm) for _ in range(m)]
    elif sub_kind == "vq-ema":
        subs = [EMAVectorQuantizer(codebook_size=k, dim=d, init="normal", l2_norm=l2_norm) for _ in range(m)]
    elif sub_kind == "vq-fc":
        subs = [FactorizedVectorQuantizer(codebook_size=k, dim=d, init="normal", l2_norm=l2_norm) for _ in range(m)]
    else:  # lc: one shared trainable bank, a projector per subspace (as build_quantizer makes pq of lc)
        bank = FeatureBank(torch.randn(k, 3), trainable=True)
        subs = [LCQuantizer(codebook=bank, dim=d, l2_norm=l2_norm) for _ in range(m)]
    if ties:  # every odd row a copy of the even row before it
        with torch.no_grad():
            for sub in subs:
                for table in _tables(sub):
                    table[1::2] = table[0 : k - 1 : 2][: table[1::2].shape[0]]
    return ProductQuantizer(subs)


def _tables(sub):
    if isinstance(sub, VectorQuantizer):
        return [sub.embedding.weight]
    if isinstance(sub, FactorizedVectorQuantizer):
        return [sub.vq.embedding.weight]
    if isinstance(sub, EMAVectorQuantizer):
        return [sub.embedding, sub.embed_avg]
    return [sub.bank.features]


def run(pq: ProductQuantizer, path, x: torch.Tensor, w: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = path(pq, x)
    total = sum(out.loss.values()) + (out.x_q * w).sum()
    total.backward()
    grads = {name: p.grad.clone() for name, p in pq.named_parameters() if p.grad is not None}
    return out, x.grad, grads, {name: b.clone() for name, b in pq.named_buffers()}


def assert_same(pq: ProductQuantizer, x: torch.Tensor, ties: bool):
    assert pq.batched_search
    ref = copy.deepcopy(pq)
    w = torch.randn(x.shape[0], pq.dim)
    a = run(pq, ProductQuantizer._quantize_batched, x, w)
    b = run(ref, ProductQuantizer._quantize_loop, x, w)
    assert torch.equal(a[0].idx, b[0].idx)
    torch.testing.assert_close(a[0].x_q, b[0].x_q, atol=1e-6, rtol=0)
    assert a[0].loss.keys() == b[0].loss.keys()
    for name in a[0].loss:
        torch.testing.assert_close(a[0].loss[name], b[0].loss[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=0)
    assert a[2].keys() == b[2].keys()
    assert bool(a[2]) != isinstance(pq.subquantizers[0], EMAVectorQuantizer)  # vq-ema alone has no parameter
    for name in a[2]:
        torch.testing.assert_close(a[2][name], b[2][name], atol=1e-6, rtol=0)
    for name in a[3]:  # vq-ema's EMA step, lc's frozen parts
        torch.testing.assert_close(a[3][name], b[3][name], atol=1e-6, rtol=0)
    if ties:  # a tied pair always resolves to its even (lower) row
        assert (a[0].idx % 2 == 0).all()


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [16, 300, 5000])
@pytest.mark.parametrize("d", [1, 2, 4])
@pytest.mark.parametrize("m", [1, 2, 8])
@pytest.mark.parametrize("sub_kind", ["vq", "vq-ema", "vq-fc", "lc"])
def test_batched_pq_equals_the_loop(sub_kind, m, d, k, ties):
    pq = make_pq(sub_kind, m, d, k, ties).train()
    x = torch.randn(48, m * d, generator=torch.Generator().manual_seed(m * 100 + d * 10 + k))
    assert_same(pq, x, ties)


@pytest.mark.parametrize("sub_kind", ["vq", "vq-ema", "vq-fc", "lc"])
def test_batched_pq_equals_the_loop_with_l2_norm(sub_kind):
    pq = make_pq(sub_kind, 4, 4, 64, ties=False, l2_norm=True).train()
    assert_same(pq, torch.randn(40, 16), ties=False)


def test_forward_uses_the_batched_search_and_mixed_kinds_fall_back(monkeypatch):
    pq = make_pq("vq", 4, 2, 32, ties=False)
    calls = []
    monkeypatch.setattr(ProductQuantizer, "_quantize_loop", lambda self, x: calls.append(x) or None)
    pq(torch.randn(2, 8, 3, 3))
    assert not calls
    mixed = ProductQuantizer([VectorQuantizer(codebook_size=32, dim=2), EMAVectorQuantizer(codebook_size=32, dim=2)])
    assert not mixed.batched_search
    monkeypatch.undo()
    out = mixed(torch.randn(2, 4, 3, 3))
    assert out.indices.shape == (2, 2, 3, 3)


@pytest.mark.parametrize("k", [1, 7, 300, 5000])
@pytest.mark.parametrize("ties", [False, True])
def test_nearest_code_batched_matches_nearest_code(k, ties):
    g = torch.Generator().manual_seed(k)
    x, cb = torch.randn(3, 200, 3, generator=g), torch.randn(3, k, 3, generator=g)
    if ties:
        cb[:, 1::2] = cb[:, 0 : k - 1 : 2][:, : cb[:, 1::2].shape[1]]
        x[:, : min(k, 20)] = cb[:, :20]  # exact hits on tied rows
    ref = torch.stack([nearest_code(x[i], cb[i]) for i in range(3)])
    assert torch.equal(nearest_code_batched(x, cb), ref)
    # the running min/argmin over code blocks (the GPU path) with small blocks and tiles, run on CPU
    assert torch.equal(_batched_running(x, cb, block=64, tile=3 * 64 * 16), ref)
    if ties:
        assert (ref % 2 == 0).all()


def test_nearest_code_batched_bad_shapes_name_them():
    with pytest.raises(ValueError, match=r"\(2, 5, 3\)"):
        nearest_code_batched(torch.randn(2, 5, 3), torch.randn(3, 4, 3))
    with pytest.raises(ValueError, match="M, N, d"):
        nearest_code_batched(torch.randn(5, 3), torch.randn(4, 3))
    assert nearest_code_batched(torch.randn(2, 0, 3), torch.randn(2, 4, 3)).shape == (2, 0)


def _digest(idx):
    import hashlib

    return hashlib.sha1(idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("m", "n", "k", "d", "seed", "digest"),
    [
        (64, 512, 512, 2, 5, "814c585ddffd07bc"),  # M = 64 as in the paper: batched running argmin, tiles as tasks
        (4, 1000, 3000, 3, 6, "99e9cecaaffeae44"),  # K > 1024: one cache-blocked nearest_code per subspace
    ],
)
def test_batched_indices_are_those_of_the_previous_kernel_on_any_thread_count(m, n, k, d, seed, digest, threads):
    """Digests of nearest_code_batched's indices at commit 0b3526c on x = randn(m, n, d), codebooks = randn(m, k, d)
    from a generator seeded with ``seed`` (see tests/test_nearest_code.py's REFERENCE_DIGESTS)."""
    g = torch.Generator().manual_seed(seed)
    x, books = torch.randn(m, n, d, generator=g), torch.randn(m, k, d, generator=g)
    torch.set_num_threads(threads)  # the one_thread fixture restores the count
    assert _digest(nearest_code_batched(x, books)) == digest


@pytest.mark.parametrize("sub_kind", ["vq", "vq-ema"])
def test_threads_change_no_pq_output(sub_kind):
    """The whole pq forward (indices, z_q, loss terms) on 3 threads equals the 1-thread one, at M = 64."""
    pq = make_pq(sub_kind, 64, 2, 512, ties=True).eval()
    z = torch.randn(4, 128, 8, 8, generator=torch.Generator().manual_seed(3))
    one = pq(z)
    torch.set_num_threads(3)
    three = pq(z)
    assert torch.equal(one.indices, three.indices) and torch.equal(one.z_q, three.z_q)
    assert all(torch.equal(one.loss[name], three.loss[name]) for name in one.loss)
