"""Utilisation over the training split (one pass of the final model) and the channels_last choice on CPU."""

import numpy as np
import pytest
import torch

from pqstudy.config import apply_overrides, get_profile
from pqstudy.cpu import channels_last, memory_format
from pqstudy.data import load_dataset, to_model_space
from pqstudy.evaluate import count_usage, evaluate
from pqstudy.metrics.codebook import positions_counted, train_usage_metrics
from pqstudy.models import build_model
from pqstudy.models.checkpoint import load_model
from pqstudy.runio import read_json, write_json
from pqstudy.study.store import METRIC_COLUMNS
from pqstudy.train_eval import train_and_evaluate


def smoke(**overrides):
    base = {"train.steps": "3", "train.eval_limit": "24", "train.eval_metrics": ""}
    base.update({k: str(v) for k, v in overrides.items()})
    return apply_overrides(get_profile("smoke"), base)


@pytest.fixture(scope="module")
def pq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pq")
    cfg = smoke(**{"quantizer.kind": "pq", "quantizer.subspaces": 2, "quantizer.codebook_size": 16})
    return out, train_and_evaluate(cfg, out, progress=False), cfg


@pytest.mark.parametrize(("m", "k"), [(1, 7), (3, 5)])
def test_positions_counted_counts_positions_not_m_times_positions(m, k):
    idx = torch.randint(0, k, (4, m, 2, 3))
    counts = torch.stack([torch.bincount(idx[:, j].reshape(-1), minlength=k) for j in range(m)])
    assert positions_counted(counts) == 4 * 2 * 3
    got = train_usage_metrics(counts, images=4)
    assert got["positions_per_entry"] == pytest.approx(24 / k)
    assert got["utilisation"] == pytest.approx(float((counts > 0).float().mean()))
    assert "4 training images" in got["utilisation_split"]


def test_run_metrics_hold_train_and_test_utilisation(pq_run):
    out, metrics, cfg = pq_run
    n_train = len(load_dataset(cfg.data, "train", seed=cfg.train.seed))
    positions = n_train * (cfg.data.image_size // cfg.model.downsample) ** 2
    assert metrics["positions_counted"] == positions  # every training image, every position, once (not × M)
    assert metrics["positions_per_entry"] == pytest.approx(positions / 16)
    assert str(n_train) in metrics["utilisation_split"] and metrics["utilisation_split"].startswith("train")
    for key in ("utilisation", "perplexity", "utilisation_test", "perplexity_test"):
        assert metrics[key] is not None and metrics[key] > 0
    assert read_json(out / "metrics.json")["utilisation"] == metrics["utilisation"]
    usage = np.load(out / "usage.npz")
    assert usage["train_pass_counts"].shape == usage["eval_counts"].shape == (2, 16)
    assert (usage["train_pass_counts"].sum(axis=1) == positions).all()
    assert (usage["eval_counts"].sum(axis=1) == 24 * 64).all()  # eval_limit=24 test images, 8×8 positions
    assert float((usage["train_pass_counts"] > 0).mean()) == pytest.approx(metrics["utilisation"])
    assert float((usage["eval_counts"] > 0).mean()) == pytest.approx(metrics["utilisation_test"])
    assert usage["train_counts"].shape[1:] == (2, 16)  # the per-window history stays
    assert {"utilisation", "utilisation_test", "positions_counted", "positions_per_entry",
            "perplexity_test"} <= set(METRIC_COLUMNS)


def test_usage_pass_matches_the_forward_pass_counts(pq_run):
    out, metrics, cfg = pq_run
    model, _ = load_model(out)
    data = load_dataset(cfg.data, "train", seed=cfg.train.seed)
    counts = count_usage(model, data, n=100, batch_size=33)
    with torch.no_grad():
        full = model(to_model_space(data.get_batch(torch.arange(100)))).quant.stats["usage"]
    assert torch.equal(counts, full)


def test_eval_of_an_old_run_recounts_over_train_and_keeps_the_history(pq_run, tmp_path):
    out, metrics, _ = pq_run
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "checkpoint.pt", "usage.npz"):
        (old / name).write_bytes((out / name).read_bytes())
    stale = {k: v for k, v in metrics.items() if k not in ("utilisation_split", "positions_counted")}
    stale["utilisation"] = -1.0  # an older metrics.json: its utilisation was the test split's
    write_json(old / "metrics.json", stale)
    got = evaluate(old, progress=False, device="cpu")
    assert got["utilisation"] == metrics["utilisation"] and got["positions_counted"] == metrics["positions_counted"]
    assert read_json(old / "metrics.json")["utilisation"] == metrics["utilisation"]
    history = np.load(out / "usage.npz")["train_counts"]
    assert np.array_equal(np.load(old / "usage.npz")["train_counts"], history)
    again = evaluate(old, progress=False, device="cpu")  # recorded now: the train pass is not redone
    assert "positions_counted" not in again and read_json(old / "metrics.json")["utilisation"] == metrics["utilisation"]
    assert again["utilisation_test"] == metrics["utilisation_test"]
    with pytest.raises(ValueError, match="split='train'"):
        evaluate(old, split="train", usage=True, progress=False, device="cpu")


def test_channels_last_rule_and_override(monkeypatch):
    monkeypatch.delenv("PQSTUDY_CHANNELS_LAST", raising=False)
    assert channels_last("cpu") == torch.backends.mkldnn.is_available()
    assert not channels_last("meta")
    monkeypatch.setenv("PQSTUDY_CHANNELS_LAST", "0")
    assert memory_format("cpu") == torch.contiguous_format
    monkeypatch.setenv("PQSTUDY_CHANNELS_LAST", "yes")
    with pytest.raises(ValueError, match="PQSTUDY_CHANNELS_LAST"):
        channels_last("cpu")


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_channels_last_forward_matches_nchw(profile):
    cfg = get_profile(profile)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    scale = ref.x_rec.abs().max()
    assert (got.x_rec - ref.x_rec).abs().max() <= 1e-5 * scale
    assert (got.z - ref.z).abs().max() <= 1e-5 * ref.z.abs().max()


def test_cli_eval_usage_flag_reruns_the_train_pass(pq_run, tmp_path, capsys):
    from pqstudy.cli import main

    out, metrics, _ = pq_run
    run = tmp_path / "copy"
    run.mkdir()
    for name in ("config.json", "checkpoint.pt", "usage.npz", "metrics.json"):
        (run / name).write_bytes((out / name).read_bytes())
    (run / "usage.npz").unlink()
    assert main(["eval", str(run), "--usage", "--quiet", "--device", "cpu"]) == 0
    assert "positions_counted" in capsys.readouterr().out
    assert np.load(run / "usage.npz")["train_pass_counts"].sum() == metrics["positions_counted"] * 2  # M = 2 rows


def test_exported_codebook_carries_the_train_pass_to_the_figures(pq_run, tmp_path):
    from pqstudy.figures import usage_counts
    from pqstudy.study.codebook_export import export_codebook, load_codebook

    out, metrics, cfg = pq_run
    export_codebook(out, tmp_path)
    book = load_codebook(tmp_path, metrics["run_id"])
    counts, split = usage_counts(book)
    assert split == "train split" and np.array_equal(counts, np.load(out / "usage.npz")["train_pass_counts"])
    assert book["eval_counts"].sum() == 2 * 24 * 64
