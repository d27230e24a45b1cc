"""The papers' recipes (pqstudy.recipes) and the fields they set: EMA count init, uniform LC init, projector init,
the static arm sharing the projector arm's codebook, the renamed lc_init."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pqstudy import recipes
from pqstudy.codebooks import build_codebook, codebook_for, codebook_from_features, uniform_codebook
from pqstudy.config import (
    NON_RESULT_FIELDS,
    ConfigError,
    DataConfig,
    QuantizerConfig,
    apply_overrides,
    get_profile,
    run_id,
    validate,
)
from pqstudy.preflight import validate_run
from pqstudy.quantizers import EMAVectorQuantizer, LCQuantizer, build_quantizer
from pqstudy.quantizers.lc import make_projector

PHOTOS = DataConfig(name="photos", image_size=32, train_limit=16)

pytestmark = pytest.mark.usefixtures("one_thread", "codebook_cache")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------------------------
# recipes are valid config


@pytest.mark.parametrize("recipe", ["PQGAN", "VQGAN_LC"])
@pytest.mark.parametrize("kind", ["vq", "vq-fc", "vq-ema", "lc", "pq"])
def test_recipe_keys_are_config_fields_and_validate(recipe, kind):
    overrides = getattr(recipes, recipe)
    assert all(isinstance(v, str) for v in overrides.values())
    cfg = apply_overrides(get_profile("default"), {**overrides, "quantizer.kind": kind})
    validate(cfg)
    for key, value in overrides.items():
        section, name = key.split(".")
        assert str(getattr(getattr(cfg, section), name)).lower() == str(
            apply_overrides(get_profile("default"), {key: value}).flat()[key]).lower()


def test_recipe_values():
    lc = apply_overrides(get_profile("default"), recipes.VQGAN_LC)
    q = lc.quantizer
    assert (q.beta, q.legacy, lc.loss.codebook_weight) == (0.33, True, 0.1)
    assert (q.ema_count_init, q.ema_beta, q.projector_init, q.low_dim, q.dim) == (0.0, 1.0, "normal", 8, 8)
    pq = apply_overrides(get_profile("paper"), recipes.PQGAN)
    validate(pq)
    assert (pq.quantizer.init, pq.quantizer.beta, pq.quantizer.legacy, pq.loss.codebook_weight) == (
        "normal", 0.25, True, 1.0)
    # PQGAN F8_K512_Z128_S64 config.yaml:83-85 (disc_num_layers 3, disc_start 1, disc_weight 0.8), max_steps :28
    assert (pq.loss.disc_layers, pq.loss.disc_start, pq.loss.disc_weight, pq.train.steps) == (3, 1, 0.8, 1_200_000)


@pytest.mark.parametrize("field,value", [("quantizer.ema_count_init", "0"), ("quantizer.ema_beta", "1"),
                                         ("quantizer.projector_init", "normal"), ("quantizer.lc_init", "uniform")])
def test_new_fields_enter_the_run_id(field, value):
    assert field not in NON_RESULT_FIELDS
    base = get_profile("default")
    assert run_id(apply_overrides(base, {field: value})) != run_id(base)


def test_divergences_are_complete_rows():
    assert len(recipes.DIVERGENCES) >= 8
    for row in recipes.DIVERGENCES:
        assert set(row) == {"what", "paper", "ours", "why"} and all(row.values())


# ---------------------------------------------------------------------------------------------------------------
# bad values


@pytest.mark.parametrize("field,value,match", [
    ("quantizer.lc_init", "normal", "feature-normal"),
    ("quantizer.lc_init", "gauss", "uniform"),
    ("quantizer.ema_count_init", -1.0, "ema_count_init"),
    ("quantizer.ema_beta", -0.5, "ema_beta"),
    ("quantizer.projector_init", "xavier", "projector_init"),
    ("quantizer.init", "zeros", "quantizer.init"),
])
def test_bad_values_name_field_and_value(field, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        validate(apply_overrides(get_profile("default"), {field: value}))
    assert field in str(err.value) and repr(value) in str(err.value)


def test_old_normal_name_errors_in_the_builder_too():
    with pytest.raises(ConfigError, match="renamed to 'feature-normal'"):
        codebook_from_features(torch.randn(10, 3), 4, "normal")
    with pytest.raises(ConfigError, match="uniform"):
        build_codebook(QuantizerConfig(kind="lc", codebook_size=4, lc_source="random", lc_init="normal"), None, 0)


# ---------------------------------------------------------------------------------------------------------------
# vq-ema counts and loss weight


@pytest.mark.parametrize("count_init", [0.0, 1.0, 2.5])
def test_ema_counts_start_at_the_configured_value(count_init):
    q = build_quantizer(QuantizerConfig(kind="vq-ema", codebook_size=6, dim=3, ema_count_init=count_init))
    assert torch.equal(q.cluster_size, torch.full((6,), count_init))
    # one step by hand: n ← γ·n0 + (1−γ)·counts
    x = torch.randn(10, 3)
    q.train()
    idx = q.quantize(x).idx
    counts = torch.bincount(idx, minlength=6).float()
    assert torch.allclose(q.cluster_size, 0.99 * count_init + 0.01 * counts)


def test_ema_count_init_zero_flings_unused_entries_away():
    """VQGAN-LC's EMA baseline: an entry unused from the start has size 0, so e_k = m_k / ñ_k with a tiny ñ_k."""
    q = EMAVectorQuantizer(codebook_size=3, dim=2, count_init=0.0)
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
    q.embedding.copy_(codes)
    q.embed_avg.copy_(codes)
    q.train()
    q.quantize(torch.tensor([[0.1, 0.0], [0.9, 1.0]]))  # entries 0 and 1; entry 2 unused
    assert q.embedding[2].abs().max() > 1e3 * codes[2].abs().max()
    q1 = EMAVectorQuantizer(codebook_size=3, dim=2, count_init=1.0)
    q1.embedding.copy_(codes)
    q1.embed_avg.copy_(codes)
    q1.train()
    q1.quantize(torch.tensor([[0.1, 0.0], [0.9, 1.0]]))
    assert q1.embedding[2].abs().max() < 10 * codes[2].abs().max()


@pytest.mark.parametrize("ema_beta", [0.25, 1.0])
def test_ema_commitment_weight_is_ema_beta_not_beta(ema_beta):
    q = build_quantizer(QuantizerConfig(kind="vq-ema", codebook_size=4, dim=2, beta=0.33, ema_beta=ema_beta))
    x = torch.randn(8, 2)
    q.eval()
    out = q.quantize(x)
    expected = ema_beta * torch.mean((q.embedding[out.idx] - x) ** 2)
    assert out.loss["commitment"].item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# lc: uniform init, projector init


@pytest.mark.parametrize("n_codes,dim", [(4, 3), (64, 48), (1000, 8)])
def test_uniform_codebook_is_within_one_over_n(n_codes, dim):
    cb = uniform_codebook(n_codes, dim, seed=1)
    assert cb.shape == (n_codes, dim) and cb.dtype == torch.float32
    assert cb.abs().max() <= 1.0 / n_codes
    assert cb.abs().max() > 0.5 / n_codes  # spread over the interval, not collapsed
    assert torch.equal(cb, uniform_codebook(n_codes, dim, seed=1))
    assert not torch.equal(cb, uniform_codebook(n_codes, dim, seed=2))


def test_uniform_lc_init_reads_no_data(monkeypatch):
    """The paper's random init needs no features: pixel source, no data config, and loading data would fail."""
    import pqstudy.codebooks.build

    def no_data(*args, **kwargs):
        raise AssertionError("uniform init must not load the dataset")

    monkeypatch.setattr(pqstudy.codebooks.build, "load_dataset", no_data)
    q = QuantizerConfig(kind="lc", codebook_size=32, dim=8, lc_source="pixels", lc_patch=4, lc_init="uniform")
    quant = build_quantizer(q, codebook=build_codebook(q, None, seed=3))
    features = quant.bank.features
    assert features.shape == (32, 48) and features.abs().max() <= 1.0 / 32
    assert torch.equal(features, uniform_codebook(32, 48, seed=3))
    # a different lc_init of the same source gets a different cache entry (the key names the strategy)
    from pqstudy.codebooks import cache_path
    from pqstudy.codebooks.sources import feature_source

    source = feature_source("pixels", patch=4)
    paths = {init: cache_path(dataclasses.replace(q, lc_init=init), source, PHOTOS, 3)
             for init in ("uniform", "feature-normal", "select", "kmeans")}
    assert len(set(paths.values())) == 4 and all(init in p.name for init, p in paths.items())


@pytest.mark.parametrize("out_dim", [4, 8, 32])
def test_normal_projector_init_has_std_one_over_root_d(out_dim):
    torch.manual_seed(0)
    layer = make_projector("linear", 256, out_dim, init="normal")
    assert layer.weight.std().item() == pytest.approx(out_dim**-0.5, rel=0.1)
    torch_default = make_projector("linear", 256, out_dim, init="torch")
    assert torch_default.weight.abs().max().item() <= 256**-0.5  # U(±1/√fan_in)
    assert isinstance(make_projector("mlp", 16, out_dim, init="normal"), torch.nn.Sequential)


def test_projector_init_is_passed_from_the_config():
    q = QuantizerConfig(kind="lc", codebook_size=16, dim=8, lc_source="random", lc_feature_dim=512, lc_init="uniform",
                        projector_init="normal")
    codebook = build_codebook(q, None, seed=0)
    torch.manual_seed(0)
    quant = build_quantizer(q, codebook=codebook)
    assert isinstance(quant, LCQuantizer)
    assert quant.projector.weight.std().item() == pytest.approx(8**-0.5, rel=0.1)


# ---------------------------------------------------------------------------------------------------------------
# the static arm shares the projector arm's codebook


@pytest.mark.parametrize("arm", [
    {"quantizer.kind": "lc", "quantizer.lc_source": "pixels", "quantizer.lc_init": "kmeans"},
    {"quantizer.kind": "lc", "quantizer.lc_source": "pixels", "quantizer.lc_init": "uniform"},
    {"quantizer.kind": "lc", "quantizer.lc_source": "random", "quantizer.lc_init": "select"},
    {"quantizer.kind": "pq", "quantizer.sub_kind": "lc", "quantizer.subspaces": "2", "quantizer.lc_source": "pixels",
     "quantizer.lc_init": "select"},
])
def test_static_arm_uses_the_projector_arms_codebook_bit_for_bit(arm):
    base = {"quantizer.codebook_size": "32", "quantizer.lc_samples": "512", "quantizer.lc_kmeans_iters": "2",
            "quantizer.lc_patch": "4", "data.name": "photos", "data.train_limit": "16", "train.seed": "5", **arm}
    static = recipes.static_arm(base, profile="smoke")
    proj_cfg = validate_run(apply_overrides(get_profile("smoke"), base))
    static_cfg = validate_run(apply_overrides(get_profile("smoke"), static))
    assert static_cfg.quantizer.projector == "none" and proj_cfg.quantizer.projector == "linear"
    for field in ("lc_source", "lc_init", "codebook_size", "lc_patch", "lc_samples", "lc_kmeans_iters"):
        assert getattr(static_cfg.quantizer, field) == getattr(proj_cfg.quantizer, field)
    built = [build_quantizer(c.quantizer, codebook=codebook_for(c)) for c in (proj_cfg, static_cfg)]
    banks = [q.bank.features if isinstance(q, LCQuantizer) else q.subquantizers[0].bank.features for q in built]
    assert torch.equal(banks[0], banks[1])
    c = banks[0].shape[1]
    m = proj_cfg.quantizer.subspaces if proj_cfg.quantizer.kind == "pq" else 1
    assert static_cfg.quantizer.dim == c * m
    z = torch.randn(2, static_cfg.quantizer.dim, 3, 3)
    assert built[1](z).z_q.shape == z.shape  # runs without a projector: lookup dim = C


def test_static_arm_needs_lc_and_a_known_feature_dim():
    with pytest.raises(ConfigError, match="static_arm needs an lc run"):
        recipes.static_arm({"quantizer.kind": "vq"})
    with pytest.raises(ConfigError, match="feature_dim"):
        recipes.static_arm({"quantizer.kind": "lc", "quantizer.lc_source": "clip:ViT-L-14"})
    out = recipes.static_arm({"quantizer.kind": "lc", "quantizer.lc_source": "clip:ViT-L-14"}, feature_dim=768)
    assert out["quantizer.dim"] == "768" and out["quantizer.projector"] == "none"
