"""Generation runs as configs: ids, notebook parameters, validation, the gen grids and the store's rows."""

from __future__ import annotations

import dataclasses

import pytest

from pqstudy.config import ConfigError, apply_overrides, get_profile
from pqstudy.generation.config import (
    GenConfig,
    GenRunConfig,
    apply_gen_overrides,
    gen_from_dict,
    gen_from_params,
    gen_to_params,
    validate_gen,
)
from pqstudy.study.grids import GRIDS, grid_configs
from pqstudy.study.store import record_run, runs_dataframe


def _cfg(**gen) -> GenRunConfig:
    return GenRunConfig(get_profile("smoke"), GenConfig(**gen))


def test_the_run_id_names_the_kind_and_follows_results_fields_only():
    a = _cfg()
    assert a.run_id.startswith("gen-ar-") and _cfg(kind="diffusion").run_id.startswith("gen-dit-")
    assert a.run_id == _cfg().run_id  # stable
    assert _cfg(device="cpu").run_id == a.run_id and _cfg(ckpt_every=5).run_id == a.run_id
    assert _cfg(top_k=10).run_id != a.run_id and _cfg(seed=1).run_id != a.run_id
    other_tokenizer = GenRunConfig(apply_overrides(get_profile("smoke"), {"quantizer.codebook_size": "32"}))
    assert other_tokenizer.run_id != a.run_id


def test_fp32_keeps_the_ids_recorded_before_gen_precision_existed():
    assert _cfg().run_id == "gen-ar-d41a3ecf96" and _cfg(kind="diffusion", latent="pre").run_id == "gen-dit-445875596e"
    assert _cfg(precision="bf16").run_id not in (_cfg().run_id, "gen-ar-d41a3ecf96")
    assert GenConfig().precision == "fp32"  # never bf16 by default


def test_params_and_dicts_round_trip():
    cfg = _cfg(kind="diffusion", cfg_scale=2.0, sample_steps=7)
    assert gen_from_params(gen_to_params(cfg)).run_id == cfg.run_id
    back = gen_from_dict(cfg.to_dict())
    assert back == cfg and back.run_id == cfg.run_id
    stale = {**cfg.to_dict(), "tokenizer_run_id": "vq-0000000000"}
    with pytest.raises(ConfigError, match="tokenizer_run_id"):
        gen_from_dict(stale)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"kind": "gan"}, "gen.kind"),
        ({"size": "huge"}, "gen.size"),
        ({"head": "tree"}, "gen.head"),
        ({"top_p": 0.0}, "gen.top_p"),
        ({"temperature": 0.0}, "gen.temperature"),
        ({"steps": 0}, "gen.steps"),
        ({"solver": "rk4"}, "gen.solver"),
        ({"lr": float("nan")}, "gen.lr"),
        ({"class_dropout": 1.0}, "gen.class_dropout"),
        ({"precision": "fp16"}, r"gen\.precision='fp16'"),
    ],
)
def test_bad_fields_are_named(fields, match):
    with pytest.raises(ConfigError, match=match):
        validate_gen(_cfg(**fields))


def test_an_ar_prior_needs_a_quantised_tokenizer():
    continuous = GenRunConfig(apply_overrides(get_profile("smoke"), {"model.kind": "kl"}))
    with pytest.raises(ConfigError, match="needs token indices"):
        validate_gen(continuous)
    with pytest.raises(ConfigError, match="gen.latent"):
        validate_gen(dataclasses.replace(continuous, gen=GenConfig(kind="diffusion", latent="pre")))
    validate_gen(dataclasses.replace(continuous, gen=GenConfig(kind="diffusion")))


def test_overrides_parse_types_and_refuse_unknown_fields():
    gen = apply_gen_overrides(GenConfig(), {"gen.steps": "12", "top_p": "0.9", "head": "flat"})
    assert (gen.steps, gen.top_p, gen.head) == (12, 0.9, "flat")
    with pytest.raises(ConfigError, match="gen.nope: unknown field"):
        apply_gen_overrides(GenConfig(), {"gen.nope": "1"})
    with pytest.raises(ConfigError, match="gen.steps"):
        apply_gen_overrides(GenConfig(), {"steps": "many"})


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
@pytest.mark.parametrize("grid", ["gen-ar", "gen-diffusion"])
def test_gen_grids_list_their_tokenizers_first(grid, profile):
    configs = grid_configs(grid, profile)
    gens = [c for c in configs if isinstance(c, GenRunConfig)]
    tokenizers = {c.run_id for c in configs if not isinstance(c, GenRunConfig)}
    assert gens and all(g.tokenizer_run_id in tokenizers for g in gens)
    assert len({g.run_id for g in gens}) == len(gens)


def test_gen_grids_share_the_study_s_tokenizers():
    """The generators train on tokenizers the other grids already train (no second copy), except the coarse PQ."""
    other = {c.run_id for name in GRIDS if not name.startswith("gen-") for c in grid_configs(name, "default")}
    for grid in ("gen-ar", "gen-diffusion"):
        new = [c for c in grid_configs(grid, "default") if not isinstance(c, GenRunConfig) and c.run_id not in other]
        assert [c.model.ch_mult for c in new] == ([] if grid == "gen-ar" else [(1, 2, 4, 4)])


def test_the_coarse_pq_spends_the_same_bits_per_image():
    configs = grid_configs("gen-diffusion", "default")
    pq = list({c.tokenizer_run_id: c.tokenizer for c in configs
               if isinstance(c, GenRunConfig) and c.tokenizer.quantizer.kind == "pq"}.values())
    bits = {(c.data.image_size // c.model.downsample) ** 2 * c.quantizer.subspaces
            * (c.quantizer.codebook_size.bit_length() - 1) for c in pq}
    assert len(pq) == 2 and len(bits) == 1


@pytest.mark.parametrize("grid, compared", [("gen-ar", 3), ("gen-diffusion", 2)])
def test_the_compared_generators_get_the_verdict_seeds(grid, compared):
    """The generators a generation verdict compares run every verdict seed (gen.seed); the others one seed."""
    from pqstudy.study.grids import SCALES

    gens = [c for c in grid_configs(grid, "default") if isinstance(c, GenRunConfig)]
    per_tokenizer = {}
    for g in gens:
        per_tokenizer.setdefault((g.tokenizer_run_id, g.gen.head), []).append(g.gen.seed)
    seeds = sorted(per_tokenizer.values(), key=len, reverse=True)
    assert seeds[:compared] == [list(SCALES["default"].seeds)] * compared
    assert all(s == [0] for s in seeds[compared:])
    assert sum(g.gen.fid_samples > 0 and g.gen.seed > 0 for g in gens) == 0  # Inception: the headline seed only


def test_a_generation_run_is_a_row_with_its_tokenizer_fields(tmp_path):
    cfg = _cfg(seed=3, steps=11)
    record_run(tmp_path, cfg, metrics={"fd_classifier": 1.5, "steps": 11})
    record_run(tmp_path, get_profile("smoke"), metrics={"psnr": 20.0, "ssim": 0.5})
    df = runs_dataframe(tmp_path).set_index("run_id")
    row = df.loc[cfg.run_id]
    assert row["gen.kind"] == "ar" and row["quantizer.kind"] == "vq" and row["tokenizer_run_id"] == cfg.tokenizer_run_id
    assert (row["seed"], row["steps"], row["fd_classifier"]) == (3, 11, 1.5)
    assert df.loc[get_profile("smoke").run_id, "gen.kind"] != "ar"  # NaN: not a generation run
