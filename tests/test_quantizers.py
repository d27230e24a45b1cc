import math

import pytest
import torch

from pqstudy.config import QuantizerConfig
from pqstudy.quantizers import ProductQuantizer, VectorQuantizer, build_quantizer, nearest_code, usage_counts


def brute_force_nearest(x, codebook):
    return torch.cdist(x.double(), codebook.double()).argmin(dim=1)


@pytest.mark.parametrize("k, chunk", [(7, 3), (64, 64), (300, 128), (1000, 999)])
def test_nearest_code_matches_brute_force(k, chunk):
    torch.manual_seed(0)
    x, codebook = torch.randn(257, 5), torch.randn(k, 5)
    assert torch.equal(nearest_code(x, codebook, chunk_size=chunk), brute_force_nearest(x, codebook))


@pytest.mark.parametrize("kind, m", [("vq", 1), ("pq", 1), ("pq", 2), ("pq", 8)])
def test_shapes_and_bits(kind, m):
    q = build_quantizer(QuantizerConfig(kind=kind, codebook_size=16, dim=8, subspaces=m))
    z = torch.randn(3, 8, 4, 5)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (3, m, 4, 5) and out.indices.dtype == torch.long
    assert out.stats["usage"].shape == (m, 16) and int(out.stats["usage"].sum()) == 3 * m * 4 * 5
    assert q.bits_per_position == pytest.approx(m * math.log2(16))
    assert set(out.loss) == {"commitment", "codebook"}
    assert torch.allclose(q.decode_indices(out.indices), out.z_q, atol=1e-6)


@pytest.mark.parametrize("kind, m", [("vq", 1), ("pq", 4)])
def test_straight_through_and_codebook_gradients(kind, m):
    q = build_quantizer(QuantizerConfig(kind=kind, codebook_size=16, dim=8, subspaces=m))
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.square().sum() + sum(out.loss.values())).backward()
    # straight-through: d(sum z_q^2)/dz passes the gradient at z_q onto z
    assert z.grad is not None and z.grad.abs().sum() > 0
    codebook_grads = [p.grad for p in q.parameters()]
    assert codebook_grads and all(g is not None and g.abs().sum() > 0 for g in codebook_grads)


def test_straight_through_is_identity_gradient():
    q = VectorQuantizer(codebook_size=8, dim=4)
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    g = torch.randn(1, 4, 2, 2)
    q(z).z_q.backward(g)
    assert torch.allclose(z.grad, g)


def test_pq_with_one_subspace_equals_vq():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=32, dim=6)
    pq = ProductQuantizer([VectorQuantizer(codebook_size=32, dim=6)])
    pq.subquantizers[0].load_state_dict(vq.state_dict())
    z = torch.randn(4, 6, 5, 5)
    a, b = vq(z), pq(z)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.z_q, b.z_q)
    for name in a.loss:
        assert torch.allclose(a.loss[name], b.loss[name])


def test_pq_subspaces_are_independent_vq():
    torch.manual_seed(0)
    pq = build_quantizer(QuantizerConfig(kind="pq", codebook_size=8, dim=6, subspaces=3))
    z = torch.randn(2, 6, 3, 3)
    out = pq(z)
    for i, sub in enumerate(pq.subquantizers):
        assert torch.equal(out.indices[:, i], sub(z[:, 2 * i : 2 * i + 2]).indices[:, 0])


def test_scalar_quantisation_is_pq_with_m_equal_d():
    torch.manual_seed(0)
    q = build_quantizer(QuantizerConfig(kind="pq", codebook_size=5, dim=4, subspaces=4))
    z = torch.randn(2, 4, 3, 3)
    out = q(z)
    for i, sub in enumerate(q.subquantizers):
        levels = sub.embedding.weight[:, 0]  # each subspace holds K scalars
        nearest = (z[:, i].unsqueeze(-1) - levels).abs().argmin(-1)
        assert torch.equal(out.indices[:, i], nearest)
        assert torch.allclose(out.z_q[:, i], levels[nearest])


@pytest.mark.parametrize("legacy", [True, False])
def test_legacy_beta_switch(legacy):
    q = VectorQuantizer(codebook_size=8, dim=4, beta=0.25, legacy=legacy)
    z = torch.randn(2, 4, 3, 3)
    out = q(z)
    mse = torch.mean((out.z_q - z) ** 2)
    if legacy:  # taming: ||sg(zq) - z||² + β ||zq - sg(z)||²
        assert torch.allclose(out.loss["commitment"], mse) and torch.allclose(out.loss["codebook"], 0.25 * mse)
    else:  # VQ-VAE: β ||sg(zq) - z||² + ||zq - sg(z)||²
        assert torch.allclose(out.loss["commitment"], 0.25 * mse) and torch.allclose(out.loss["codebook"], mse)


def test_l2_norm_matching_uses_unit_vectors():
    q = VectorQuantizer(codebook_size=16, dim=4, l2_norm=True)
    out = q(torch.randn(2, 4, 3, 3))
    assert torch.allclose(out.z_q.norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)


@pytest.mark.parametrize("m, k", [(1, 10), (3, 7), (2, 100_000)])
def test_usage_counts_equal_brute_force(m, k):
    idx = torch.randint(0, k, (4, m, 5, 6))
    counts = usage_counts(idx, k)
    assert counts.shape == (m, k)
    for j in range(m):
        ref = torch.zeros(k, dtype=torch.long)
        for v in idx[:, j].flatten().tolist():
            ref[v] += 1
        assert torch.equal(counts[j], ref)


def test_wrong_channel_count_is_a_clear_error():
    q = VectorQuantizer(codebook_size=8, dim=4)
    with pytest.raises(ValueError, match="expects 4 channels"):
        q(torch.randn(1, 3, 2, 2))
