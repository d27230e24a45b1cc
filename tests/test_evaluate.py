import math

import pytest

from pqstudy.cli import main
from pqstudy.config import apply_overrides, get_profile
from pqstudy.evaluate import evaluate_model
from pqstudy.models.checkpoint import load_model
from pqstudy.runio import read_json, write_json
from pqstudy.train_eval import train_and_evaluate

REFERENCE = ("lpips", "rfid", "kid", "cmmd")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = apply_overrides(get_profile("smoke"), {"train.steps": "3", "train.eval_limit": "24",
                                                 "train.eval_metrics": ""})
    train_and_evaluate(cfg, out, progress=False)
    return out


def test_eval_prints_every_metric_or_its_missing_reason(smoke_run, tmp_path, monkeypatch, capsys):
    for var in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "empty"))
    for var in ("PQSTUDY_LPIPS_ALEX", "PQSTUDY_LPIPS_VGG", "PQSTUDY_INCEPTION_WEIGHTS", "PQSTUDY_CLIP_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    config = read_json(smoke_run / "config.json")
    config["train"]["eval_metrics"] = ",".join(REFERENCE)
    write_json(smoke_run / "config.json", config)
    assert main(["eval", str(smoke_run), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    metrics = read_json(smoke_run / "metrics.json")
    for name in REFERENCE:
        assert metrics[name] is None
        reason = metrics[f"{name}_missing_reason"]
        assert "not found" in reason and "\n" not in reason
        assert f"{name}_missing_reason" in printed
    assert metrics["psnr"] > 0 and metrics["steps"] == 3


def test_reference_metrics_with_random_backbones_are_finite(smoke_run):
    model, cfg = load_model(smoke_run)
    cfg.train.eval_metrics = ",".join(REFERENCE)
    metrics, _ = evaluate_model(model, cfg, random_backbones=True)
    assert metrics["reference_random_backbones"] is True
    for name in REFERENCE:
        assert isinstance(metrics[name], float) and math.isfinite(metrics[name]), name


def test_metrics_left_out_of_eval_metrics_are_not_computed_not_missing(smoke_run):
    model, cfg = load_model(smoke_run)
    cfg.train.eval_metrics = "lpips"
    metrics, _ = evaluate_model(model, cfg)
    for name in ("rfid", "kid", "cmmd"):
        assert metrics[name] is None and f"{name}_missing_reason" not in metrics
        assert metrics[f"{name}_not_computed"].startswith("not computed in the smoke profile")
    assert metrics["lpips"] is None and "not found" in metrics["lpips_missing_reason"]  # no weights in tests


@pytest.mark.real_weights
def test_eval_of_a_smoke_run_writes_real_lpips_rfid_kid(smoke_run, installed_weights, tmp_path, monkeypatch):
    """The issue's acceptance: with the installed networks, `pqstudy eval` of a smoke run writes finite LPIPS, rFID
    and KID (on the smoke profile's few images) and a reason for the missing CMMD."""
    monkeypatch.setenv("PQSTUDY_FEATURE_CACHE", str(tmp_path / "features"))
    config = read_json(smoke_run / "config.json")
    config["train"]["eval_metrics"] = ",".join(REFERENCE)
    write_json(smoke_run / "config.json", config)
    assert main(["eval", str(smoke_run), "--quiet", "--device", "cpu"]) == 0
    metrics = read_json(smoke_run / "metrics.json")
    for name in ("lpips", "rfid", "kid"):
        assert isinstance(metrics[name], float) and math.isfinite(metrics[name]), name
    assert metrics["lpips"] > 0 and metrics["rfid"] > 0 and metrics["fid_samples"] == 24
    assert metrics["cmmd"] is None and "clip" in metrics["cmmd_missing_reason"].lower()
