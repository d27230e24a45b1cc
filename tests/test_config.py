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
        validate(cfg)
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
