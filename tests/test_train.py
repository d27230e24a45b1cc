import json

import numpy as np
import pytest
import torch

from pqstudy.config import apply_overrides, get_profile
from pqstudy.runio import load_checkpoint
from pqstudy.train import Trained, TrainingDiverged, batch_indices, lr_factor, train
from pqstudy.train_eval import evaluate_run, train_and_evaluate


def smoke(**overrides):
    base = {"train.eval_limit": "64", "train.eval_metrics": ""}
    base.update({k: str(v) for k, v in overrides.items()})
    return apply_overrides(get_profile("smoke"), base)


def test_train_only_trains_and_the_evaluation_step_writes_the_results(tmp_path):
    cfg = smoke(**{"train.steps": 6, "train.history_every": 3, "train.eval_limit": 16})
    trained = train(cfg, tmp_path, progress=False)
    assert isinstance(trained, Trained) and not trained.interrupted
    assert trained.summary["run_id"] == cfg.run_id and trained.summary["steps"] == 6
    assert len(trained.usage_history) == 2 and trained.usage_history[0].shape == (1, 64)
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {
        "config.json", "checkpoint.pt", "history.json"}  # no metrics.json, no usage.npz: nothing evaluated
    metrics = evaluate_run(cfg, tmp_path, trained, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["steps"] == 6 and metrics["images"] == 16 and "utilisation" in metrics
    with np.load(tmp_path / "usage.npz") as usage:
        assert usage["train_counts"].shape == (2, 1, 64) and int(usage["eval_counts"].sum()) == 16 * 64


def test_smoke_training_reduces_reconstruction_loss(tmp_path):
    metrics = train_and_evaluate(smoke(), tmp_path, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 3  # 60 steps, a record every 20
    assert history[-1]["rec"] < 0.9 * history[0]["rec"]
    for key in ("psnr", "ssim", "utilisation", "perplexity", "bits_per_position", "run_id", "steps",
                "utilisation_test", "perplexity_test", "positions_counted", "positions_per_entry", "utilisation_split"):
        assert key in metrics
    assert metrics["steps"] == 60 and metrics["bits_per_position"] == pytest.approx(6.0)
    assert 0 < metrics["utilisation"] <= 1 and metrics["psnr"] > 10
    assert all(0 <= r["utilisation"] <= 1 for r in history)
    for name in ("config.json", "metrics.json", "history.json", "checkpoint.pt", "usage.npz"):
        assert (tmp_path / name).exists()


def test_resume_matches_uninterrupted_run(tmp_path):
    cfg = smoke(**{"train.steps": 24, "train.history_every": 8, "train.ckpt_every": 8})
    full = train_and_evaluate(cfg, tmp_path / "full", progress=False)
    partial = train_and_evaluate(cfg, tmp_path / "resumed", progress=False, stop_at=11)
    assert partial["interrupted"] and load_checkpoint(tmp_path / "resumed")["step"] == 11
    resumed = train_and_evaluate(cfg, tmp_path / "resumed", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "full")["model"], load_checkpoint(tmp_path / "resumed")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("psnr", "ssim", "utilisation", "perplexity", "utilisation_test", "perplexity_test"):
        assert resumed[key] == full[key]
    history_a = json.loads((tmp_path / "full" / "history.json").read_text())
    history_b = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert history_a == history_b


def test_resume_refuses_a_different_config(tmp_path):
    train_and_evaluate(smoke(**{"train.steps": 4}), tmp_path, progress=False, stop_at=2)
    with pytest.raises(ValueError, match="resume"):
        train_and_evaluate(smoke(**{"train.steps": 4, "train.seed": 9}), tmp_path, resume=True, progress=False)


def test_non_finite_loss_stops_with_error_file(tmp_path, monkeypatch):
    from pqstudy import losses

    original = losses.AutoencoderLoss.generator_loss

    def poisoned(self, x, out, step, last_layer):
        total, logs = original(self, x, out, step, last_layer)
        return (total * float("nan") if step == 3 else total), logs

    monkeypatch.setattr(losses.AutoencoderLoss, "generator_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 3"):
        train_and_evaluate(smoke(**{"train.steps": 10}), tmp_path, progress=False)
    error = json.loads((tmp_path / "error.json").read_text())
    assert error["step"] == 3 and error["error"] == "non-finite loss"
    assert not (tmp_path / "metrics.json").exists()


def test_batch_order_is_a_pure_function_of_seed_and_step():
    a = [batch_indices(s, 100, 16, seed=1) for s in range(14)]
    b = [batch_indices(s, 100, 16, seed=1) for s in range(14)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    first_epoch = torch.cat(a[:6])
    assert len(set(first_epoch.tolist())) == 96  # one pass: no repeats
    assert not torch.equal(batch_indices(0, 100, 16, seed=2), a[0])


def test_lr_schedule_warmup_then_cosine_to_zero():
    cfg = get_profile("smoke").train
    cfg.steps, cfg.warmup_steps, cfg.lr_schedule = 110, 10, "cosine"
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0, abs=1e-12)
    cfg.lr_schedule = "constant"
    assert lr_factor(100, cfg) == 1.0


@pytest.mark.parametrize("kind", ["ae", "kl"])
def test_continuous_baselines_train(tmp_path, kind):
    metrics = train_and_evaluate(smoke(**{"model.kind": kind, "train.steps": 10}), tmp_path, progress=False)
    assert metrics["utilisation"] is None and "continuous" in metrics["utilisation_missing_reason"]
    assert metrics["utilisation_test"] is None and metrics["positions_counted"] is None
    assert metrics["psnr"] > 0


def test_gan_and_l2_path_trains(tmp_path):
    cfg = smoke(**{"loss.disc_weight": 0.8, "loss.disc_start": 3, "loss.disc_layers": 2, "loss.disc_ndf": 8,
                   "loss.rec": "l2", "train.steps": 6, "train.history_every": 3})
    train_and_evaluate(cfg, tmp_path, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[-1]["gan_weight"] > 0  # adaptive weight active after disc_start


def test_sigkill_mid_training_then_resume_is_bitwise_identical(tmp_path):
    """A training process killed with SIGKILL (possibly mid-write) resumes from its last complete checkpoint to the
    same weights and history as an uninterrupted run; no temporary file is left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    overrides = {"train.steps": 12, "train.batch_size": 8, "train.history_every": 4, "train.ckpt_every": 1}
    full = train_and_evaluate(smoke(**overrides), tmp_path / "full", progress=False)
    args = [sys.executable, "-m", "pqstudy.cli", "train", "--quiet", "--out", str(tmp_path / "killed"),
            *(a for k, v in {"train.eval_limit": 64, "train.eval_metrics": "", **overrides}.items()
              for a in ("--set", f"{k}={v}"))]
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoint.pt").exists() or load_checkpoint(tmp_path / "killed")["step"] < 3:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint at step 3 within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped = load_checkpoint(tmp_path / "killed")["step"]
    assert 3 <= stopped < 12
    resumed = train_and_evaluate(smoke(**overrides), tmp_path / "killed", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "full")["model"], load_checkpoint(tmp_path / "killed")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["psnr"] == full["psnr"] and resumed["utilisation"] == full["utilisation"]
    assert json.loads((tmp_path / "full" / "history.json").read_text()) == json.loads(
        (tmp_path / "killed" / "history.json").read_text())
    assert not list((tmp_path / "killed").glob(".*.tmp"))


class _NanLoss(torch.nn.Module):
    """A model whose loss is NaN: what a diverged step looks like to the step functions."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def loss(self, x, y, generator=None, share=(0, 1)):
        return (self.w * float("nan")).sum()


def test_a_non_finite_step_raises_before_any_update():
    """generator_step (and train_step, through the tokenizer test above) refuse a NaN loss before the optimiser
    moves: the weights a checkpoint would hold are the last finite ones."""
    from pqstudy.generation.train import GeneratorLoss, generator_step
    from pqstudy.train import NonFiniteLoss

    model = _NanLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLoss, match="nan") as err:
        generator_step(GeneratorLoss(model), opt, torch.zeros(2, 3), None, torch.Generator())
    assert err.value.value != err.value.value  # the NaN itself, for the error record
    assert torch.equal(model.w.detach(), torch.ones(3)) and model.w.grad is None


def test_progress_bar_shows_the_last_step_loss_not_the_window_sum(tmp_path, capsys):
    cfg = smoke(**{"train.steps": 4, "train.history_every": 4})
    train(cfg, tmp_path, progress=True)
    shown = float(capsys.readouterr().err.rsplit("loss=", 1)[1].split("]")[0])
    window_mean = json.loads((tmp_path / "history.json").read_text())[-1]["total"]
    assert 0.5 * window_mean < shown < 1.5 * window_mean  # the 4-step window's sum was shown: ~4x its mean


def test_training_again_into_a_run_directory_warns_that_it_overwrites(tmp_path, recwarn):
    cfg = smoke(**{"train.steps": 2})
    train(cfg, tmp_path, progress=False)
    assert not [w for w in recwarn if "overwrites" in str(w.message)]  # a new directory: nothing to say
    train(cfg, tmp_path, progress=False, resume=True)
    assert not [w for w in recwarn if "overwrites" in str(w.message)]  # resumed: nothing lost
    with pytest.warns(UserWarning, match="holds a run's checkpoint; training from step 0 overwrites it"):
        train(cfg, tmp_path, progress=False)
