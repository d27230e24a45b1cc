"""Generators end to end on a tiny trained tokenizer: codes, training, bitwise resume, sampling, metrics, bad input."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from pqstudy.config import ConfigError, apply_overrides, get_profile
from pqstudy.generation.codes import TokenizerError, check_tokenizer, codes_path, load_codes
from pqstudy.generation.config import GenConfig, GenRunConfig
from pqstudy.generation.run import train_and_evaluate_generator
from pqstudy.generation.train import train_generator
from pqstudy.train_eval import train_and_evaluate

TINY = {"train.steps": "3", "train.batch_size": "8", "data.train_limit": "48", "train.eval_limit": "16",
        "train.eval_metrics": "", "model.ch": "8", "model.z_channels": "8", "train.history_every": "0"}


def _tokenizer(tmp_path_factory, name: str, **fields):
    cfg = apply_overrides(get_profile("smoke"), {**TINY, **fields})
    out = tmp_path_factory.mktemp(name)
    train_and_evaluate(cfg, out, progress=False)
    return cfg, out


@pytest.fixture(scope="module")
def pq_tokenizer(tmp_path_factory):
    torch.set_num_threads(1)
    return _tokenizer(tmp_path_factory, "pq", **{"quantizer.kind": "pq", "quantizer.subspaces": "2",
                                                  "quantizer.codebook_size": "16"})


@pytest.fixture(scope="module")
def kl_tokenizer(tmp_path_factory):
    return _tokenizer(tmp_path_factory, "kl", **{"model.kind": "kl"})


def _gen(tok_cfg, **fields) -> GenRunConfig:
    base = {"size": "tiny" if fields.get("kind", "ar") == "ar" else "small", "steps": 6, "batch_size": 8,
            "samples": 12, "sample_steps": 2, "warmup_steps": 2}
    return GenRunConfig(tok_cfg, GenConfig(**{**base, **fields}))


def test_codes_are_extracted_once_and_reextracted_for_a_new_checkpoint(pq_tokenizer):
    cfg, run_dir = pq_tokenizer
    codes = load_codes(run_dir, "train", "indices")
    assert codes.data.shape == (48, 2, 64) and codes.data.dtype == torch.int64 and codes.vocab_size == 16
    assert int(codes.data.min()) >= 0 and int(codes.data.max()) < 16 and codes.labels is None
    path = codes_path(run_dir, "train", "indices")
    stamp = path.stat().st_mtime_ns
    assert torch.equal(load_codes(run_dir, "train", "indices").data, codes.data) and path.stat().st_mtime_ns == stamp
    latents = load_codes(run_dir, "test", "pre")
    assert latents.data.shape == (len(latents), 8, 8, 8) and latents.data.dtype == torch.float32
    path.write_bytes(b"not an npz")  # a damaged file is extracted again, never trusted
    assert torch.equal(load_codes(run_dir, "train", "indices").data, codes.data)


@pytest.mark.parametrize("head", ["factorised", "flat"])
def test_ar_resume_is_bitwise_identical(pq_tokenizer, tmp_path, head):
    cfg, run_dir = pq_tokenizer
    gen = _gen(cfg, head=head)
    whole = train_generator(gen, tmp_path / "whole", run_dir, progress=False)
    train_generator(gen, tmp_path / "split", run_dir, progress=False, stop_at=3)
    resumed = train_generator(gen, tmp_path / "split", run_dir, progress=False, resume=True)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_diffusion_resume_is_bitwise_identical(kl_tokenizer, tmp_path):
    cfg, run_dir = kl_tokenizer
    gen = _gen(cfg, kind="diffusion", steps=4)
    whole = train_generator(gen, tmp_path / "whole", run_dir, progress=False)
    train_generator(gen, tmp_path / "split", run_dir, progress=False, stop_at=2)
    resumed = train_generator(gen, tmp_path / "split", run_dir, progress=False, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(),
                                                 resumed.model.state_dict().values(), strict=True))
    assert torch.equal(whole.scaler.mean, resumed.scaler.mean)


@pytest.mark.parametrize("kind", ["ar", "diffusion"])
def test_a_generation_run_records_its_metrics(pq_tokenizer, tmp_path, kind):
    cfg, run_dir = pq_tokenizer
    gen = _gen(cfg, kind=kind, latent="pre")
    metrics = train_and_evaluate_generator(gen, tmp_path / "gen", run_dir, progress=False)
    assert json.loads((tmp_path / "gen" / "metrics.json").read_text())["run_id"] == gen.run_id
    assert metrics["generate_flops_per_sample"] > 0 and metrics["decode_flops_per_sample"] > 0
    assert metrics["generate_seconds_per_sample"] > 0 and metrics["samples"] == 12
    assert "no class labels" in metrics["fd_classifier_missing_reason"]  # photos: unlabelled, no classifier
    if kind == "ar":
        assert metrics["tokenizer_bits_per_image"] == pytest.approx(64 * 2 * 4)
        assert 0 < metrics["nll_bits_per_image"] < 10 * metrics["tokenizer_bits_per_image"]
        assert metrics["top_k"] == 0 and metrics["temperature"] == 1.0  # the settings are recorded
    else:
        assert metrics["solver"] == "heun" and metrics["sample_steps"] == 2


@pytest.mark.parametrize("kind", ["ar", "diffusion"])
def test_bf16_trains_the_forward_in_bf16_and_keeps_fp32_weights(pq_tokenizer, tmp_path, kind):
    """gen.precision=bf16: the loss moves off fp32's by bf16's rounding (autocast is on) but stays near it; weights,
    gradients and AdamW stay fp32; a run id of its own."""
    from pqstudy.cpu import emulated_bf16

    cfg, run_dir = pq_tokenizer
    fp32, bf16 = _gen(cfg, kind=kind, latent="pre"), _gen(cfg, kind=kind, latent="pre", precision="bf16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained = train_generator(bf16, tmp_path / "bf16", run_dir, progress=False)
    assert any("gen.precision='bf16'" in str(w.message) for w in caught) == emulated_bf16("cpu")
    reference = train_generator(fp32, tmp_path / "fp32", run_dir, progress=False)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in trained.model.parameters())
    loss = json.loads((tmp_path / "bf16" / "history.json").read_text())[0]["loss"]
    loss_fp32 = json.loads((tmp_path / "fp32" / "history.json").read_text())[0]["loss"]
    assert loss != loss_fp32 and loss == pytest.approx(loss_fp32, rel=0.05)
    assert trained.summary["run_id"] == bf16.run_id != reference.summary["run_id"]


def test_a_directory_without_a_tokenizer_fails_before_training(tmp_path):
    with pytest.raises(TokenizerError, match="no such run directory"):
        check_tokenizer(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(TokenizerError, match="checkpoint.pt missing"):
        train_generator(_gen(get_profile("smoke")), tmp_path / "out", tmp_path / "half", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_of_another_image_size_fails_before_training(pq_tokenizer, tmp_path):
    cfg, run_dir = pq_tokenizer
    other = apply_overrides(cfg, {"data.image_size": "64"})
    with pytest.raises(TokenizerError, match="32-pixel images.*64 pixels"):
        train_generator(_gen(other), tmp_path / "out", run_dir, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_other_than_the_named_one_is_refused(pq_tokenizer, tmp_path):
    cfg, run_dir = pq_tokenizer
    other = apply_overrides(cfg, {"train.seed": "5"})
    with pytest.raises(TokenizerError, match="holds run"):
        train_generator(_gen(other), tmp_path / "out", run_dir, progress=False)


def test_the_cli_trains_a_generator_and_names_bad_fields(pq_tokenizer, tmp_path, capsys):
    from pqstudy.cli import main

    _, run_dir = pq_tokenizer
    assert main(["generate", "--tokenizer", str(run_dir), "--set", "gen.kind=gan"]) == 2
    assert "gen.kind" in capsys.readouterr().err
    assert main(["generate", "--tokenizer", str(tmp_path / "none")]) == 1
    assert "no config.json" in capsys.readouterr().err
    args = ["generate", "--tokenizer", str(run_dir), "--out", str(tmp_path / "g"), "--quiet", "--set", "gen.size=tiny",
            "--set", "gen.steps=2", "--set", "gen.samples=4", "--set", "gen.batch_size=4"]
    assert main(args) == 0
    assert "nll_bits_per_image" in capsys.readouterr().out


def test_a_continuous_tokenizer_has_no_tokens(kl_tokenizer, tmp_path):
    cfg, run_dir = kl_tokenizer
    with pytest.raises(ConfigError, match="needs token indices"):
        train_generator(_gen(cfg), tmp_path / "out", run_dir, progress=False)
    with pytest.raises(TokenizerError, match="no 'indices' codes"):
        load_codes(run_dir, "train", "indices")
