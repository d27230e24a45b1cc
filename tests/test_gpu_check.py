"""benchmarks/gpu_check.py (`make gpu-check`) run on the CPU: tiny, a few smoke steps."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from pqstudy.losses import AutoencoderLoss


@pytest.fixture(scope="module")
def gpu_check(benchmark_module):
    return benchmark_module("gpu_check")


def test_without_a_gpu_it_says_so_and_exits_0(gpu_check, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.csv"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert "no CUDA GPU is present" in capsys.readouterr().out
    assert not out.exists()


def test_cpu_against_cpu_passes_and_writes_the_csv(gpu_check, tmp_path):
    out = tmp_path / "gpu.csv"
    rows = gpu_check.check(device="cpu", kinds=("pq", "kl"), steps=2, warmup=1, profile="smoke", precision="fp32",
                           compare_steps=3, out=out, gan_steps=2)
    table = pd.read_csv(out)
    assert list(table["kind"]) == ["agreement:vq", "resume:kl", "pq", "kl"] == [r["kind"] for r in rows]
    assert table["ok"].all()
    kinds = table.iloc[2:]
    assert (kinds["images_per_second"] > 0).all() and kinds["peak_memory_mib"].isna().all()
    assert (kinds["steps"] == 2).all() and "gan_steps" not in table  # the smoke profile trains no GAN
    agree = rows[0]
    assert agree["max_loss_rel_diff"] == 0.0 and agree["param_rel_diff"] == 0.0  # same device, same kernels
    assert rows[1]["max_param_abs_diff"] == 0.0
    assert {"card", "torch", "date", "data"} <= set(table.columns)


def test_the_gan_phase_is_timed_where_there_is_a_discriminator(gpu_check):
    from pqstudy.config import apply_overrides

    cfg = apply_overrides(gpu_check.kind_config("vq", "smoke", "fp32"),
                          {"loss.disc_weight": 0.8, "loss.disc_start": 100})
    row = gpu_check.throughput(cfg, "cpu", steps=2, warmup=1, gan_steps=2)
    assert row["steps"] == 2 and row["gan_steps"] == 2 and row["gan_seconds_per_step"] > 0
    assert row["perceptual"] == "none (perceptual_weight=0)"


def test_a_budget_caps_the_timed_steps_and_skips_extras(gpu_check, tmp_path):
    # a 1 s budget: each kind times at least one step (its share is floored at 5 s, so the first step fits);
    # the extras (fp32, compile) are skipped once under 60 s are left, and say so by their absence
    rows = gpu_check.check(device="cpu", kinds=("vq",), steps=10_000, warmup=0, profile="smoke", precision="fp32",
                           compare_steps=0, out=tmp_path / "gpu.csv", budget_seconds=1.0, extras=("fp32", "compile"))
    assert [r["kind"] for r in rows] == ["vq"]
    assert 1 <= rows[0]["steps"] < 10_000 and rows[0]["seconds_cap"] == 5.0


def test_a_perturbed_run_fails_the_agreement(gpu_check):
    row = gpu_check.agreement("cpu", "cpu", steps=3, lr_factor=1.5)
    assert not row["ok"] and row["max_loss_rel_diff"] > gpu_check.LOSS_TOLERANCE


def test_a_nan_loss_fails_naming_the_kind(gpu_check, monkeypatch, tmp_path):
    real = AutoencoderLoss.generator_loss

    def poisoned(self, *args, **kwargs):
        total, logs = real(self, *args, **kwargs)
        return total * math.nan, logs

    monkeypatch.setattr(AutoencoderLoss, "generator_loss", poisoned)
    out = tmp_path / "gpu.csv"
    with pytest.raises(gpu_check.CheckFailed, match=r"vq-ema: loss nan at step 0"):
        gpu_check.check(device="cpu", kinds=("vq-ema",), steps=1, warmup=0, profile="smoke", precision="fp32",
                        compare_steps=0, out=out)
    assert not pd.read_csv(out)["ok"].any()  # the failure is recorded in the CSV too


def test_bad_arguments_are_refused(gpu_check, capsys):
    assert gpu_check.main(["--kinds", "vq,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert gpu_check.main(["--generators", "ar", "--gen-precisions", "fp16"]) == 2
    assert "fp16" in capsys.readouterr().err


@pytest.mark.parametrize("kind, precision", [("ar", "fp32"), ("diffusion", "fp32"), ("ar", "bf16")])
def test_generator_timing_trains_and_samples_on_random_codes(gpu_check, kind, precision):
    # the default profile's generators (small) stand in for the paper's GPT-L / DiT-XL, which a CPU test cannot afford
    from pqstudy.generation.config import GenRunConfig
    from pqstudy.study.grids import grid_configs

    grid = {"ar": "gen-ar", "diffusion": "gen-diffusion"}[kind]
    cfg = next(c for c in grid_configs(grid, "default") if isinstance(c, GenRunConfig) and c.gen.kind == kind
               and c.tokenizer.model.kind == "quantized")
    cfg.gen.precision = precision
    row = gpu_check.generator_throughput(cfg, "cpu", steps=1, warmup=0, batch_size=2)
    assert row["steps"] == 1 and row["seconds_per_step"] > 0 and row["sample_seconds_2"] >= 0
    codes = gpu_check.synthetic_codes(cfg, 3)
    assert len(codes) == 3 and codes.labels.max() < gpu_check.IMAGENET_CLASSES
