"""The quantiser family beyond vq/pq: vq-fc, vq-ema, lc (its codebook construction and feature sources), pq of lc,
usage tracking at K = 100,000, and a smoke training run of every kind."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pqstudy.codebooks import (
    CodebookWarning,
    build_codebook,
    codebook_from_features,
    kmeans,
    within_cluster_error,
)
from pqstudy.codebooks.build import lc_lookup_dim
from pqstudy.codebooks.sources import FeatureWeightsNotFound, PixelPatches, feature_source
from pqstudy.config import ConfigError, DataConfig, QuantizerConfig, RunConfig, get_profile
from pqstudy.preflight import validate_run
from pqstudy.quantizers import (
    QUANTIZERS,
    EMAVectorQuantizer,
    FactorizedVectorQuantizer,
    LCQuantizer,
    ProductQuantizer,
    build_quantizer,
    usage_counts,
    uses_lc,
)

PHOTOS = DataConfig(name="photos", image_size=32, train_limit=64)  # 64 images × 64 pixel patches


pytestmark = pytest.mark.usefixtures("one_thread", "codebook_cache")  # tests/conftest.py


def lc_config(**kw) -> QuantizerConfig:
    base = dict(kind="lc", codebook_size=32, dim=8, lc_source="random", lc_init="select", lc_samples=256)
    base.update(kw)
    return QuantizerConfig(**base)


def built(q_cfg: QuantizerConfig, data_cfg: DataConfig = PHOTOS, seed: int = 0):
    """``build_quantizer`` with an lc codebook built by :mod:`pqstudy.codebooks`, as training does."""
    codebook = build_codebook(q_cfg, data_cfg, seed, lookup_dim=lc_lookup_dim(q_cfg)) if uses_lc(q_cfg) else None
    return build_quantizer(q_cfg, codebook=codebook)


def train_steps(module, steps=3, shape=(4, 8, 4, 4), lr=1e-2, seed=0):
    """A few Adam steps on reconstruction + quantiser loss of a learnable input."""
    torch.manual_seed(seed)
    z = torch.randn(*shape, requires_grad=True)
    opt = torch.optim.Adam([z, *module.parameters()], lr=lr)
    module.train()
    for _ in range(steps):
        out = module(z)
        loss = F.mse_loss(out.z_q, torch.zeros_like(out.z_q)) + sum(out.loss.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return out


# ---------------------------------------------------------------------------------------------------------------
# the shared interface


@pytest.mark.parametrize("kind, sub_kind, m", [("vq-fc", "vq", 1), ("vq-ema", "vq", 1), ("lc", "vq", 1),
                                               ("pq", "vq-fc", 2), ("pq", "vq-ema", 4), ("pq", "lc", 4)])
def test_every_kind_has_the_interface(kind, sub_kind, m):
    q_cfg = lc_config(kind=kind, sub_kind=sub_kind, subspaces=m, codebook_size=16)
    q = built(q_cfg)
    z = torch.randn(3, 8, 4, 5)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (3, m, 4, 5) and out.indices.dtype == torch.long
    assert out.stats["usage"].shape == (m, 16) and int(out.stats["usage"].sum()) == 3 * m * 4 * 5
    assert q.bits_per_position == pytest.approx(m * math.log2(16))
    assert "commitment" in out.loss and all(v.dim() == 0 for v in out.loss.values())
    q.eval()
    out = q(z)
    assert torch.allclose(q.decode_indices(out.indices), out.z_q, atol=1e-5)


def test_vq_fc_projects_down_and_up_and_learns_its_codebook():
    q = build_quantizer(QuantizerConfig(kind="vq-fc", codebook_size=16, dim=8, low_dim=3))
    assert isinstance(q, FactorizedVectorQuantizer) and q.codebook().shape == (16, 3)
    assert build_quantizer(QuantizerConfig(kind="vq-fc", codebook_size=16, dim=8)).low_dim == 4  # default D/2
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(z)
    (out.z_q.square().sum() + sum(out.loss.values())).backward()
    assert z.grad.abs().sum() > 0
    for name, p in q.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------------------------------------
# vq-ema


def test_ema_update_matches_a_hand_computed_step():
    q = EMAVectorQuantizer(codebook_size=3, dim=2, beta=0.25, decay=0.99, eps=1e-5)
    codes = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 0.0]])
    q.embedding.copy_(codes)
    q.embed_avg.copy_(codes)
    x = torch.tensor([[1.0, 1.0], [0.0, 1.0], [9.0, 9.0]])  # → entries 0, 0, 1; entry 2 unused
    q.train()
    out = q.quantize(x)
    assert out.idx.tolist() == [0, 0, 1]
    assert torch.equal(out.x_q, torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))  # the pre-update codes
    # by hand: n = 0.99·1 + 0.01·(2, 1, 0); m = 0.99·codes + 0.01·(Σ of assigned x)
    n = [1.01, 1.00, 0.99]
    m = [[0.01, 0.02], [9.99, 9.99], [-9.9, 0.0]]
    total = sum(n)
    smoothed = [(nk + 1e-5) / (total + 3 * 1e-5) * total for nk in n]
    expected = torch.tensor([[mk / sk for mk in row] for row, sk in zip(m, smoothed, strict=True)])
    assert torch.allclose(q.cluster_size, torch.tensor(n), rtol=1e-6)
    assert torch.allclose(q.embed_avg, torch.tensor(m), rtol=1e-6, atol=1e-7)
    assert torch.allclose(q.embedding, expected, rtol=1e-5)
    assert expected[2].tolist() == pytest.approx([-10.0, 0.0], abs=1e-4)  # an unused entry stays put
    assert out.loss["commitment"].item() == pytest.approx(0.25 * (2 + 1 + 2) / 6)
    # evaluation never updates; the codebook has no gradient and no parameters
    q.eval()
    before = q.embedding.clone()
    q.quantize(torch.randn(5, 2))
    assert torch.equal(q.embedding, before)
    assert not list(q.parameters())


def test_ema_codebook_moves_towards_the_data_without_gradient():
    q = build_quantizer(QuantizerConfig(kind="vq-ema", codebook_size=8, dim=4, init="normal"))
    z = torch.randn(16, 4, 4, 4) + 3.0
    before = q.embedding.clone()
    q.train()
    for _ in range(50):
        q(z)
    used = q(z).stats["usage"][0] > 0
    assert (q.embedding[used] - 3.0).abs().mean() < (before[used] - 3.0).abs().mean()


# ---------------------------------------------------------------------------------------------------------------
# lc


def test_lc_codebook_stays_bit_identical_while_the_projector_learns():
    q = built(lc_config(lc_source="pixels", lc_init="kmeans"))
    assert isinstance(q, LCQuantizer) and q.bank.features.shape == (32, 48)
    features = q.bank.features.clone()
    projector = {k: v.clone() for k, v in q.projector.state_dict().items()}
    train_steps(q, steps=4)
    assert torch.equal(q.bank.features, features)
    assert not q.bank.features.requires_grad
    assert any(not torch.equal(v, q.projector.state_dict()[k]) for k, v in projector.items())
    assert "bank.features" in q.state_dict()  # frozen, yet saved with the model


def test_lc_variants():
    # static codebook without projector: no trainable parameter at all
    static = built(lc_config(projector="none"))
    assert isinstance(static.projector, torch.nn.Identity)
    assert [p for p in static.parameters() if p.requires_grad] == []
    # static + projector: only the projector; trainable + projector: the features too, and they change
    assert {n for n, _ in built(lc_config()).named_parameters()} == {"projector.weight", "projector.bias"}
    mlp = built(lc_config(projector="mlp"))
    assert len(list(mlp.parameters())) == 4
    trainable = built(lc_config(lc_trainable=True))
    assert "bank.features" in dict(trainable.named_parameters())
    before = trainable.bank.features.detach().clone()
    train_steps(trainable)
    assert not torch.equal(trainable.bank.features.detach(), before)
    # D′ ≠ D: latents are projected D → D′ and back
    low = built(lc_config(low_dim=4, lc_feature_dim=12))
    assert low.codebook().shape == (32, 4) and low(torch.randn(2, 8, 3, 3)).z_q.shape == (2, 8, 3, 3)


def test_lc_validation_names_field_and_value():
    cfg = get_profile("smoke")
    cfg.quantizer = QuantizerConfig(kind="lc", dim=8, projector="none", lc_source="pixels", lc_patch=4)
    with pytest.raises(ConfigError, match=r"quantizer.projector='none'.*C=48"):
        validate_run(cfg)
    cfg.quantizer = QuantizerConfig(kind="lc", dim=8, projector="none", lc_source="random")
    validate_run(cfg)  # C defaults to D′ = 8
    for field, value in [("lc_init", "farthest"), ("projector", "conv"), ("lc_source", "pixel"), ("ema_decay", 1.0),
                         ("low_dim", -1)]:
        cfg = RunConfig()
        setattr(cfg.quantizer, field, value)
        with pytest.raises(ConfigError, match=f"quantizer.{field}"):
            validate_run(cfg)


# ---------------------------------------------------------------------------------------------------------------
# codebook construction


def blobs(n_clusters=24, per=(20, 400), dim=8, seed=0):
    """Well-separated Gaussian clusters of very different sizes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 10
    sizes = torch.randint(per[0], per[1], (n_clusters,), generator=g)
    return torch.cat([c + 0.3 * torch.randn(int(s), dim, generator=g) for c, s in zip(centres, sizes, strict=True)])


def test_kmeans_beats_random_selection_on_synthetic_clusters():
    x = blobs()
    k = 24
    errors = {s: within_cluster_error(x, codebook_from_features(x, k, s, seed=0)) for s in ("feature-normal", "select")}
    errors["kmeans"] = within_cluster_error(x, codebook_from_features(x, k, "kmeans", seed=0, iters=30))
    assert errors["kmeans"] < 0.1 * min(errors["select"], errors["feature-normal"]), errors
    # seeded: the same seed gives the same codebook
    assert torch.equal(kmeans(x, k, iters=5, seed=3), kmeans(x, k, iters=5, seed=3))


def test_fewer_features_than_entries_resamples_with_jitter():
    x = torch.randn(50, 4)
    with pytest.warns(CodebookWarning, match="only 50 feature vectors"):
        codebook = codebook_from_features(x, 200, "kmeans", seed=0)
    assert codebook.shape == (200, 4) and torch.isfinite(codebook).all()


def test_built_codebook_is_cached_and_reused(codebook_cache, monkeypatch):
    q = lc_config(lc_source="pixels", lc_init="kmeans", lc_samples=1000)
    first = build_codebook(q, PHOTOS, seed=0)
    files = list(codebook_cache.glob("pixels-kmeans-N32-C48-*.pt"))
    assert first.shape == (32, 48) and len(files) == 1

    import pqstudy.codebooks.build as ci

    def fail(*args, **kwargs):
        raise AssertionError("the cached codebook should have been reused")

    monkeypatch.setattr(ci, "sample_features", fail)
    assert torch.equal(build_codebook(q, PHOTOS, seed=0), first)
    monkeypatch.undo()
    monkeypatch.setenv("PQSTUDY_CACHE_DIR", str(codebook_cache.parent))
    other = build_codebook(q, PHOTOS, seed=1)  # a different seed is a different codebook
    assert not torch.equal(other, first) and len(list(codebook_cache.glob("*.pt"))) == 2


def test_pixel_patches_cut_at_the_latent_stride():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    feats = PixelPatches(4)(images)
    assert feats.shape == (2 * 4, 48)
    top_left = images[0, :, :4, :4].float().div(127.5).sub(1).reshape(-1)
    assert torch.allclose(feats[0], top_left)


def test_encoder_source_reads_a_trained_autoencoder(tmp_path):
    from pqstudy.models import build_model

    cfg = get_profile("smoke")
    cfg.model.kind = "ae"
    cfg.quantizer.dim = 6
    model = build_model(cfg)
    run = tmp_path / "ae-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.save({"model": model.state_dict()}, run / "checkpoint.pt")
    source = feature_source(f"encoder:{run}")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    feats = source(images)
    assert source.dim == 6 and feats.shape == (3 * 8 * 8, 6)
    with torch.no_grad():
        z = model.eval().latent(images.float().div(127.5).sub(1))
    assert torch.allclose(feats, z.permute(0, 2, 3, 1).reshape(-1, 6), atol=1e-5)
    q = built(lc_config(lc_source=f"encoder:{run}", lc_samples=500))
    assert q.bank.features.shape == (32, 6)


def test_clip_source_offline_names_the_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FeatureWeightsNotFound, match=r"open_clip_model\.safetensors.*ViT-B-32\.pt|ViT-B-32"):
        feature_source("clip:ViT-B-32")
    with pytest.raises(FeatureWeightsNotFound, match="no such file"):
        feature_source("clip:ViT-B-32:/nowhere/weights.pt")


def test_clip_source_loads_local_weights_through_open_clip(tmp_path):
    import open_clip

    config = {"embed_dim": 16, "quick_gelu": True,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "pqstudy-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "pqstudy-tiny-clip.json")
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("pqstudy-tiny-clip").state_dict(), weights)
    source = feature_source(f"clip:pqstudy-tiny-clip:{weights}")
    feats = source(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert source.dim == 16 and feats.shape == (2 * 16, 16) and torch.isfinite(feats).all()


# ---------------------------------------------------------------------------------------------------------------
# pq of lc


def test_pq_of_lc_end_to_end(codebook_cache):
    from pqstudy.models import QuantizedAutoencoder

    q_cfg = QuantizerConfig(kind="pq", sub_kind="lc", subspaces=4, codebook_size=32, dim=8,
                            lc_source="pixels", lc_init="kmeans", lc_samples=2000)
    quantizer = built(q_cfg)
    assert isinstance(quantizer, ProductQuantizer) and quantizer.num_codebooks == 4
    banks = {id(sub.bank) for sub in quantizer.subquantizers}
    assert len(banks) == 1  # one shared feature bank, four projectors C → D/M = 2
    assert all(sub.codebook().shape == (32, 2) for sub in quantizer.subquantizers)
    cfg = get_profile("smoke")
    cfg.quantizer = q_cfg
    model = QuantizedAutoencoder(cfg.model, quantizer, 32)
    features = quantizer.subquantizers[0].bank.features.clone()
    projectors = [sub.projector.weight.detach().clone() for sub in quantizer.subquantizers]
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        out = model(x)
        loss = (out.x_rec - x).abs().mean() + sum(out.loss.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert out.quant.indices.shape == (8, 4, 8, 8)
    assert torch.equal(quantizer.subquantizers[0].bank.features, features)
    assert all(not torch.equal(sub.projector.weight, p) for sub, p in zip(quantizer.subquantizers, projectors,
                                                                          strict=True))
    # a model rebuilt without data, its codebook taken from the state dict, loads it and computes the same
    from pqstudy.models.checkpoint import quantizer_state, stored_codebook

    state = model.state_dict()
    rebuilt_q = build_quantizer(q_cfg, codebook=stored_codebook(quantizer_state(state)))
    rebuilt = QuantizedAutoencoder(cfg.model, rebuilt_q, 32)
    rebuilt.load_state_dict(state)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        a, b = model(x), rebuilt(x)
    assert torch.equal(a.quant.indices, b.quant.indices) and torch.allclose(a.x_rec, b.x_rec)


def test_lc_needs_its_codebook_and_a_data_source_needs_data():
    with pytest.raises(ValueError, match=r"needs its \(N, C\) feature codebook"):
        build_quantizer(lc_config(lc_source="pixels"))
    with pytest.raises(ValueError, match="training"):
        build_codebook(lc_config(lc_source="pixels"), None, 0)


# ---------------------------------------------------------------------------------------------------------------
# usage tracking


@pytest.mark.parametrize("m", [1, 2])
def test_usage_tracking_at_100k_entries_is_o_k(m, monkeypatch):
    k = 100_000

    def no_one_hot(*args, **kwargs):
        raise AssertionError("usage tracking must not build a one-hot over K")

    monkeypatch.setattr(F, "one_hot", no_one_hot)
    q = build_quantizer(QuantizerConfig(kind="pq" if m > 1 else "vq", codebook_size=k, dim=8, subspaces=m))
    q.eval()
    total = torch.zeros(m, k, dtype=torch.long)
    seen = []
    g = torch.Generator().manual_seed(0)
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(3):
            out = q(torch.randn(16, 8, 8, 8, generator=g))  # 1,024 positions per batch
            total += out.stats["usage"]
            seen.append(out.indices)
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest < 32 * 2**20  # a dense one-hot or distance matrix would be 1,024 × 100,000 × 4 B = 410 MB
    assert total.shape == (m, k) and total.dtype == torch.long and int(total.sum()) == 3 * 1024 * m
    indices = torch.cat(seen)
    for i in range(m):
        ref = np.bincount(indices[:, i].flatten().numpy(), minlength=k)
        assert np.array_equal(total[i].numpy(), ref)
    assert torch.equal(usage_counts(indices, k), total)


# ---------------------------------------------------------------------------------------------------------------
# every kind trains in the smoke profile


@pytest.mark.parametrize("kind", sorted(QUANTIZERS) + ["pq-lc"])
def test_every_kind_trains_in_the_smoke_profile(kind, tmp_path, capsys):
    cli = pytest.importorskip("pqstudy.cli")
    sets = [f"quantizer.kind={kind}"] if kind != "pq-lc" else ["quantizer.kind=pq", "quantizer.sub_kind=lc",
                                                                  "quantizer.subspaces=4"]
    sets += ["train.steps=6", "train.warmup_steps=1", "train.history_every=3", "train.eval_limit=32",
             "train.eval_metrics=", "quantizer.lc_samples=4000"]
    out = tmp_path / "run"
    argv = ["train", "--profile", "smoke", "--out", str(out), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and math.isfinite(metrics["psnr"])
    assert metrics["bits_per_position"] == pytest.approx((4 if kind == "pq-lc" else 1) * math.log2(64))
