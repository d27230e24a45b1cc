import ast
from pathlib import Path

import pytest

from pqstudy.config import (
    PROFILES,
    ConfigError,
    apply_overrides,
    from_dict,
    from_params,
    get_profile,
    parse_set,
    run_id,
    to_params,
    validate,
)
from pqstudy.preflight import validate_run


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_validate(name):
    cfg = validate(get_profile(name))
    assert cfg.profile == name


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"quantizer.kind": "pq", "quantizer.dim": "8", "quantizer.subspaces": "3"}, "quantizer.subspaces"),
        ({"quantizer.codebook_size": "1"}, "quantizer.codebook_size"),
        ({"quantizer.kind": "nope"}, "quantizer.kind"),
        ({"quantizer.sub_kind": "nope"}, "quantizer.sub_kind"),
        ({"quantizer.subspaces": "2"}, "quantizer.subspaces"),  # M > 1 without pq
        ({"data.name": "mnist"}, "data.name"),
        ({"data.name": "folder:"}, "data.name"),
        ({"train.steps": "0"}, "train.steps"),
        ({"train.batch_size": "-4"}, "train.batch_size"),
        ({"train.lr": "0"}, "train.lr"),
        ({"train.lr_schedule": "step"}, "train.lr_schedule"),
        ({"train.warmup_steps": "-1"}, "train.warmup_steps"),
        ({"data.image_size": "30"}, "data.image_size"),  # not divisible by F = 4
        ({"model.kind": "gan"}, "model.kind"),
        ({"model.ch_mult": "1,0"}, "model.ch_mult"),
        ({"loss.rec": "l3"}, "loss.rec"),
        ({"loss.disc_weight": "-1"}, "loss.disc_weight"),
        ({"train.device": "tpu"}, "train.device"),
    ],
)
def test_validation_names_field_and_value(overrides, field):
    cfg = apply_overrides(get_profile("smoke"), overrides)
    with pytest.raises(ConfigError) as err:
        validate_run(cfg)
    assert field in str(err.value)
    bad_value = overrides.get(field)
    if bad_value is not None:
        assert bad_value.split(",")[0] in str(err.value)


@pytest.mark.parametrize("key", ["quantizer.kindd", "nosuch.field", "train", "quantizer."])
def test_unknown_field_rejected(key):
    with pytest.raises(ConfigError, match="unknown field"):
        apply_overrides(get_profile("smoke"), {key: "1"})


@pytest.mark.parametrize("key, raw", [("train.steps", "ten"), ("train.lr", "fast"), ("quantizer.legacy", "maybe")])
def test_unparseable_value_rejected(key, raw):
    with pytest.raises(ConfigError, match=key):
        apply_overrides(get_profile("smoke"), {key: raw})


def test_override_types():
    cfg = apply_overrides(
        get_profile("smoke"),
        {"model.ch_mult": "1,2,4", "train.lr": "3e-4", "quantizer.legacy": "false", "train.steps": "1e3"},
    )
    assert cfg.model.ch_mult == (1, 2, 4)
    assert cfg.train.lr == 3e-4 and cfg.quantizer.legacy is False and cfg.train.steps == 1000


def test_parse_set():
    assert parse_set(["a.b=1", "c.d = x=y"]) == {"a.b": "1", "c.d": "x=y"}
    with pytest.raises(ConfigError):
        parse_set(["novalue"])


def test_run_id_stable_and_result_sensitive():
    a, b = get_profile("smoke"), get_profile("smoke")
    assert run_id(a) == run_id(b)
    assert run_id(apply_overrides(a, {"train.seed": "1"})) != run_id(a)
    assert run_id(apply_overrides(a, {"quantizer.codebook_size": "128"})) != run_id(a)
    # the thread count changes the numbers, so it changes the id; fields that do not change results leave it alone
    assert a.train.threads == 1 and run_id(apply_overrides(a, {"train.threads": "2"})) != run_id(a)
    assert run_id(apply_overrides(a, {"data.root": "/elsewhere", "train.ckpt_every": "5"})) == run_id(a)
    with pytest.raises(ConfigError, match=r"train\.threads"):
        validate(apply_overrides(a, {"train.threads": "0"}))
    assert run_id(a).startswith("vq-")
    assert run_id(apply_overrides(a, {"quantizer.kind": "pq"})).startswith("pq-vq-")


def test_params_round_trip():
    cfg = apply_overrides(get_profile("smoke"), {"quantizer.kind": "pq", "quantizer.subspaces": "4"})
    params = to_params(cfg)
    assert params["quantizer_kind"] == "pq" and params["quantizer_subspaces"] == 4
    again = from_params(params)
    assert run_id(again) == run_id(cfg)
    # None keeps the profile's value; non-config parameters are ignored
    cfg2 = from_params({"profile": "smoke", "quantizer_kind": None, "output_dir": "x"})
    assert cfg2.quantizer.kind == get_profile("smoke").quantizer.kind


def test_from_dict_round_trip():
    cfg = apply_overrides(get_profile("default"), {"model.attn_resolutions": "8", "train.seed": "3"})
    assert from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides, field", [
    ({"quantizer.kind": "nope"}, "quantizer.kind"),
    ({"quantizer.sub_kind": "nope"}, "quantizer.sub_kind"),
    ({"data.name": "mnist"}, "data.name"),
    ({"quantizer.lc_source": "webcam"}, "quantizer.lc_source"),
])
def test_names_known_elsewhere_are_checked_by_the_preflight_only(overrides, field):
    """config.validate needs nothing outside the config; validate_run adds the registry, dataset and source checks."""
    cfg = apply_overrides(get_profile("smoke"), overrides)
    assert validate(cfg) is cfg
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_run(cfg)


@pytest.mark.parametrize("module", ["config.py", "recipes.py"])
def test_the_config_layer_imports_nothing_of_pqstudy(module):
    tree = ast.parse((Path(__file__).parents[1] / "pqstudy" / module).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m.startswith("pqstudy") and m != "pqstudy.config"] == []


@pytest.mark.parametrize("kind, dim, low_dim, subspaces, expected", [
    ("vq-fc", 8, 0, 1, 4),  # vq-fc: 0 = half of D
    ("vq-fc", 1, 0, 1, 1),  # at least 1
    ("vq-fc", 8, 0, 2, 2),  # per subspace inside pq: half of D/M
    ("lc", 8, 0, 1, 8),  # every other kind: 0 = D
    ("lc", 16, 0, 4, 4),  # D/M inside pq
    ("vq", 8, 3, 1, 3),  # low_dim > 0 is D′ itself
    ("vq-fc", 8, 5, 2, 5),
])
def test_lookup_dim_is_the_one_home_of_the_d_prime_default(kind, dim, low_dim, subspaces, expected):
    import torch

    from pqstudy.config import lookup_dim
    from pqstudy.quantizers import FactorizedVectorQuantizer, LCQuantizer

    assert lookup_dim(kind, dim, low_dim, subspaces) == expected
    sub_dim = dim // subspaces
    if kind == "vq-fc":
        assert FactorizedVectorQuantizer(codebook_size=4, dim=sub_dim, low_dim=low_dim).low_dim == expected
    if kind == "lc":
        assert LCQuantizer(codebook=torch.zeros(4, 3), dim=sub_dim, low_dim=low_dim).lookup_dim == expected
