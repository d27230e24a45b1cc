"""Figures from a fake results folder built to the study's contract (every grid, the rate-matched one included; three
seeds per point; a few stale 200-step runs beside the 800-step ones), and codebook export from a real (3-step) run."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from pqstudy import figures
from pqstudy.config import get_profile
from pqstudy.runio import write_json
from pqstudy.study.codebook_export import (
    codebook_path,
    export_codebook,
    list_codebooks,
    load_codebook,
    save_codebook,
    subsample_indices,
)
from pqstudy.study.grids import GRIDS
from pqstudy.study.store import run_path, runs_dataframe

SEEDS = (0, 1, 2)
BASE = get_profile("default").to_dict()


def _config(kind="vq", dim=8, k=1024, m=1, seed=0, steps=800, model="quantized", **quantizer) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["model"]["kind"] = model
    cfg["quantizer"].update({"kind": kind, "dim": dim, "codebook_size": k, "subspaces": m, **quantizer})
    cfg["train"].update({"seed": seed, "steps": steps, "history_every": 100})
    return cfg


def _psnr(q: dict, model: str, seed: int, steps: int) -> float:
    if model != "quantized":
        base = 30.0 if model == "ae" else 29.5
    else:
        bits = q["subspaces"] * math.log2(q["codebook_size"])
        base = 20.0 + 0.25 * bits + {"vq": 0.0, "pq": 0.6, "lc": 0.3, "vq-fc": 0.1, "vq-ema": 0.2}[q["kind"]]
        base += {"uniform": -1.0, "feature-normal": -0.5, "select": -0.2}.get(q.get("lc_init"), 0.0)
        base -= 2.0 if q.get("projector") == "none" else 0.0
    return base + 0.15 * seed - (3.0 if steps < 800 else 0.0)


def _write_run(results: Path, grid: str, cfg: dict) -> str:
    q, model, seed, steps = cfg["quantizer"], cfg["model"]["kind"], cfg["train"]["seed"], cfg["train"]["steps"]
    extra = "-".join(f"{key}{q[key]}" for key in ("lc_init", "projector", "lc_trainable", "low_dim") if key in q)
    rid = f"{model}-{q['kind']}-d{q['dim']}-k{q['codebook_size']}-m{q['subspaces']}-{extra}-s{seed}-t{steps}"
    rid = rid.replace("--", "-")
    previous = run_path(results, rid)
    if previous.exists():  # a config shared by two grids: one run listing both
        import json

        record = json.loads(previous.read_text())
        record["grids"].append(grid)
        write_json(previous, record)
        return rid
    psnr = _psnr(q, model, seed, steps)
    metrics = {"psnr": psnr, "ssim": min(0.99, 0.5 + (psnr - 20) / 80), "lpips": 0.3 - (psnr - 20) / 100,
               "steps": steps}
    history = [{"step": s, "epoch": round(s / 1562.5, 3)} for s in range(100, steps + 1, 100)]
    if model == "quantized":
        k = q["codebook_size"]
        util = min(1.0, {"vq": 300, "vq-fc": 900, "vq-ema": 3000, "lc": 10 * k, "pq": 10 * k}[q["kind"]] / k)
        util = min(1.0, util + 0.01 * seed)
        metrics.update({"utilisation": util, "utilisation_test": util * 0.95, "perplexity": util * k * 0.7,
                        "perplexity_test": util * k * 0.6, "positions_per_entry": 50_000 * 64 / k,
                        "positions_counted": 50_000 * 64, "bits_per_position": q["subspaces"] * math.log2(k)})
        for i, record in enumerate(history):
            record["utilisation"] = util * (0.5 + 0.5 * (i + 1) / len(history))
    record = {"run_id": rid, "grids": [grid], "status": "ok", "error": None, "config": cfg, "metrics": metrics,
              "history": history, "wall_seconds": 10.0, "notebook": None, "finished_at": "2026-11-26T00:00:00+00:00"}
    write_json(run_path(results, rid), record)
    return rid


def _grid_configs() -> list[tuple[str, dict]]:
    out = []
    for seed in SEEDS:
        for dim in (8, 16, 32):
            out += [("pq-vs-vq-dim", _config("vq", dim, 1024, 1, seed)),
                    ("pq-vs-vq-dim", _config("pq", dim, 256, dim // 2, seed))]
        out += [("pq-codebook-size", _config("pq", 8, k, 4, seed)) for k in (16, 64, 256, 1024)]
        out += [("pq-subspaces", _config("vq" if m == 1 else "pq", 8, 256, m, seed)) for m in (1, 2, 4, 8)]
        out += [("lc-method-size", _config(kind, 8, k, 1, seed, low_dim=4 if kind == "vq-fc" else 0))
                for kind in ("vq", "vq-fc", "vq-ema", "lc") for k in (1024, 16384, 100_000)]
        out += [("lc-init", _config("lc", 8, 16384, 1, seed, lc_init=init))
                for init in ("uniform", "feature-normal", "select", "kmeans")]
        out += [("lc-projector", _config("lc", 8, 16384, 1, seed, lc_init="kmeans", projector=p, lc_trainable=t))
                for p, t in (("none", False), ("linear", False), ("linear", True))]
        out += [("lc-projected-dim", _config("lc", 8, 16384, 1, seed, lc_init="kmeans", low_dim=d))
                for d in (8, 16, 32)]
        out += [("continuous", _config("vq", 8, 1024, 1, seed, model=kind)) for kind in ("ae", "kl")]
        out += [("rate-matched", _config(kind, 8, k, m, seed))
                for kind, k, m in (("vq", 1024, 1), ("pq", 32, 2), ("lc", 1024, 1), ("vq", 65536, 1), ("pq", 16, 4),
                                   ("lc", 65536, 1))]
    # stale runs of an older, shorter study: they must never share an axis with the 800-step runs
    out += [("lc-method-size", _config(kind, 8, k, 1, 0, steps=200)) for kind in ("vq", "lc") for k in (1024, 16384)]
    out += [("pq-vs-vq-dim", _config("pq", 32, 256, 16, 0, steps=200))]
    return out


def fake_results(results: Path, codebook_entries: int = 40) -> Path:
    """A results folder as the study writes it: run files, exported codebooks of seed 0 in lc-method-size (the last
    two with the train-pass counts), reconstruction PNGs of a few runs."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    for grid, cfg in _grid_configs():
        _write_run(results, grid, cfg)
    df = runs_dataframe(results)
    lc = df[df["grids"].str.contains("lc-method-size") & (df["train.seed"] == 0) & (df["train.steps"] == 800)]
    for _, row in lc.iterrows():
        k, util = int(row["quantizer.codebook_size"]), float(row["utilisation"])
        used = rng.random(k) < util
        eval_counts = (used * rng.integers(1, 50, size=k))[None, :]
        train_counts = np.stack([(rng.random(k) < util * f) * rng.integers(1, 9, size=k)
                                 for f in np.linspace(0.5, 1.0, 8)])[:, None, :]  # one per history record
        idx = np.sort(rng.choice(k, size=codebook_entries, replace=False))
        save_codebook(codebook_path(results, row["run_id"]), eval_counts=eval_counts, train_counts=train_counts,
                      indices=idx, vectors=rng.normal(size=(codebook_entries, 8)),
                      meta={"run_id": row["run_id"], "kind": row["quantizer.kind"], "codebook_size": k,
                            "num_codebooks": 1})
    recon = df[df["grids"].str.contains("pq-vs-vq-dim|continuous") & (df["train.seed"] == 0)]
    for rid in recon["run_id"]:
        path = results / "recon" / f"{rid}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plt.imsave(path, rng.random((20, 80, 3)))
    _generation_runs(results, rng)
    return results


def _generation_runs(results: Path, rng) -> None:
    """Two AR priors and a flow model, with metrics and sample grids, as the generation notebook records them."""
    import matplotlib.pyplot as plt

    from pqstudy.config import apply_overrides, get_profile
    from pqstudy.generation.config import GenConfig, GenRunConfig
    from pqstudy.study.store import record_run, samples_path

    vq = get_profile("default")
    pq = apply_overrides(vq, {"quantizer.kind": "pq", "quantizer.subspaces": "2", "quantizer.codebook_size": "32"})
    for i, (tok, kind) in enumerate(((vq, "ar"), (pq, "ar"), (pq, "diffusion"))):
        cfg = GenRunConfig(tok, GenConfig(kind=kind, steps=1000))
        metrics = {"fd_classifier": 30.0 - 5 * i, "real_fd_classifier": 0.4, "recon_fd_classifier": 20.0 - i,
                   "generate_flops_per_sample": 7e7 * (i + 1), "tokenizer_bits_per_image": 640.0, "steps": 1000}
        record_run(results, cfg, metrics=metrics, grids=[f"gen-{kind}"])
        path = samples_path(results, cfg.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        plt.imsave(path, rng.random((60, 60, 3)))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def df(results):
    return runs_dataframe(results)


def _data_axes(fig):
    """The axes that draw runs (colorbars and image panels left out)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and (ax.lines or ax.collections)]


def test_make_all_figures_writes_every_figure(results):
    paths = figures.make_all_figures(results, tsne=False)  # t-SNE: test_tsne_active_entries_are_those_counted
    assert [p.stem for p in paths] == [n for n in figures.FIGURE_NAMES if n != "codebook_tsne"]
    assert "rate_matched" in figures.FIGURE_NAMES
    for path in paths:
        assert path.parent == results / "figures" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((results / "figures").glob(".*"))  # no temp files left


STEP_FIGURES = ("utilisation_vs_codebook_size", "utilisation_per_epoch", "psnr_vs_dim", "psnr_vs_codebook_size",
                "psnr_vs_subspaces", "rate_matched", "quality_vs_bits", "lc_ablations")


@pytest.mark.parametrize("name", STEP_FIGURES)
def test_no_axis_mixes_training_lengths(results, df, name):
    """The fake study holds 200-step runs beside the 800-step ones, in lc-method-size and pq-vs-vq-dim: every axis
    that draws runs is tagged with one length (mark_axis raises otherwise); the grid figures keep the 800-step runs
    and say how many they left out, quality_vs_bits draws one row per length."""
    import matplotlib.pyplot as plt

    fig = figures.make_figure(name, results, df)
    try:
        tags = [ax.get_gid() for ax in _data_axes(fig)]
        assert tags and all(t and t.startswith("train.steps=") for t in tags), tags
        if name == "quality_vs_bits":
            assert sorted(set(tags)) == ["train.steps=200", "train.steps=800"]
            assert tags.count("train.steps=200") == 2  # PSNR and SSIM of the 200-step row
        else:
            assert set(tags) == {"train.steps=800"}
        texts = " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])
        if name in ("utilisation_vs_codebook_size", "utilisation_per_epoch", "psnr_vs_dim"):
            assert "left out" in texts  # the reader is told
        assert "800" in texts and "steps" in texts and "seed" in texts
    finally:
        plt.close(fig)


def test_mixed_lengths_raise_and_the_longest_are_kept(df):
    import matplotlib.pyplot as plt

    mixed = df[df["grids"].str.contains("lc-method-size")]
    assert figures.training_lengths(mixed) == [200, 800]
    with pytest.raises(figures.MixedTrainingLengths, match=r"\[200, 800\]"):
        figures.check_one_length(mixed, "here")
    fig, ax = plt.subplots()
    with pytest.raises(figures.MixedTrainingLengths):
        figures.mark_axis(ax, mixed, "here")
    plt.close(fig)
    kept, note = figures.one_training_length(mixed, "lc-method-size")
    assert figures.training_lengths(kept) == [800] and len(kept) == len(mixed) - 4
    assert note == "4 run(s) at 200 steps left out"
    same, note = figures.one_training_length(kept, "x")
    assert len(same) == len(kept) and note == ""


def test_seed_spread_is_drawn(results, df):
    """Three seeds per point: each point has a min–max whisker and its seeds as faint dots, and the mean is theirs."""
    import matplotlib.pyplot as plt

    fig = figures.plot_psnr_vs_dim(df)
    ax = fig.axes[0]
    whiskers = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    assert len(whiskers) == 6  # VQ and PQ at D = 8, 16, 32
    runs = df[df["grids"].str.contains("pq-vs-vq-dim") & (df["train.steps"] == 800) & (df["quantizer.kind"] == "vq")
              & (df["quantizer.dim"] == 8)]
    vq_line = next(line for line in ax.lines if line.get_label().startswith("VQ"))
    assert vq_line.get_ydata()[0] == pytest.approx(runs["psnr"].mean())
    segments = [s for c in whiskers for s in c.get_segments()]
    assert any(s[:, 1].min() == pytest.approx(runs["psnr"].min()) and s[:, 1].max() == pytest.approx(runs["psnr"].max())
               for s in segments)
    assert "3 seeds per point" in ax.get_title()
    plt.close(fig)


def test_psnr_vs_dim_shows_bits_per_position(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_psnr_vs_dim(df)
    labels = sorted(t.get_text() for t in fig.axes[0].texts if t.get_text().endswith(" bits"))
    assert labels == sorted(["10 bits"] * 3 + ["32 bits", "64 bits", "128 bits"])  # VQ K=1024; PQ M=D/2, K=256
    plt.close(fig)


def test_lc_ablations_are_dot_plots_each_panel_on_its_own_scale(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_lc_ablations(df)
    axes = fig.axes
    assert len(axes) == 9 and not any(ax.patches for ax in axes)  # PSNR, LPIPS, utilisation; no bars: nothing to cut
    psnr_row, lpips_row, util_row = axes[:3], axes[3:6], axes[6:]
    assert len({ax.get_ylim() for ax in psnr_row}) == 3  # each grid's differences at its own scale
    assert lpips_row[0].get_ylabel().startswith("LPIPS")
    assert len({ax.get_ylim() for ax in util_row}) == 1  # utilisation: 0-100% everywhere
    ticks = [t.get_text() for t in axes[0].get_xticklabels()]
    assert ticks[0].startswith("uniform") and ticks[1].startswith("normal from") and ticks[-1] == "k-means"
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["static,\nno projector", "static\n+ projector\n(LC)",
                                                                 "trainable\n+ projector"]
    assert all("3 seeds per variant" in ax.get_title() for ax in psnr_row)
    plt.close(fig)


def test_rate_matched_has_one_series_per_method_and_lpips_when_measured(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_rate_matched(df)
    assert [ax.get_ylabel().split(" on ")[0] for ax in fig.axes] == ["PSNR", "LPIPS"]
    for ax in fig.axes:
        series = sorted(line.get_label() for line in ax.lines if not line.get_label().startswith("_"))
        assert series == ["LC", "PQ", "VQ"]
        assert {round(x) for line in ax.lines for x in line.get_xdata()} <= {10, 11, 15, 16, 17}
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"K=1,024", "M=2·K=32", "K=65,536", "M=4·K=16"} <= texts
    plt.close(fig)
    fig = figures.plot_rate_matched(df.assign(lpips=None))
    assert len(fig.axes) == 1
    plt.close(fig)


def test_reconstructions_are_labelled_by_method_k_d(results, df):
    import matplotlib.pyplot as plt

    chosen = figures.default_recon_runs(results, df)
    fig = figures.plot_reconstructions(results, chosen, df=df)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[0] == "VQ K=1,024 D=32 · PQGAN recipe · seed 0 · 800 steps"
    # the 800-step run, not the stale 200-step one
    assert titles[1] == "PQ M=16 K=256 D=32 · PQGAN recipe · seed 0 · 800 steps"
    assert any(t.startswith("AE (continuous) D=8") for t in titles)
    assert not any(rid in " ".join(titles) for rid in chosen)
    plt.close(fig)


def test_codebook_figures_pick_vq_fc_vq_ema_lc_at_two_sizes_seed_0(results, df):
    chosen = figures.default_codebook_runs(results, df)
    rows = df.set_index("run_id").loc[chosen]
    assert list(zip(rows["quantizer.kind"], rows["quantizer.codebook_size"].astype(int), strict=True)) == [
        ("vq-fc", 1024), ("vq-ema", 1024), ("lc", 1024), ("vq-fc", 100_000), ("vq-ema", 100_000), ("lc", 100_000)]
    assert set(rows["train.seed"]) == {0} and set(rows["train.steps"]) == {800}


def test_usage_counts_prefer_the_train_pass():
    eval_counts, train_pass = np.array([[0, 3, 1]]), np.array([[2, 0, 0]])
    counts, split = figures.usage_counts({"eval_counts": eval_counts})
    assert split == "eval split" and np.array_equal(counts, eval_counts)
    counts, split = figures.usage_counts({"eval_counts": eval_counts, "train_pass_counts": train_pass})
    assert split == "train split" and np.array_equal(counts, train_pass)
    with pytest.raises(KeyError, match="train_pass_counts"):
        figures.usage_counts({"vectors": np.zeros((2, 2))})


def test_tsne_active_entries_are_those_counted(results, df):
    """Active / inactive in the t-SNE panel are exactly the shown entries with a count > 0 (usage_counts)."""
    import matplotlib.pyplot as plt

    rid = figures.default_codebook_runs(results, df)[0]
    book = load_codebook(results, rid)
    counts = figures.usage_counts(book)[0][0][book["indices"]]
    fig = figures.plot_codebook_tsne(results, [rid], max_points=40, df=df)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"inactive ({(counts == 0).sum()})", f"active ({(counts > 0).sum()})"]
    assert fig.axes[0].get_title().startswith("VQ-FC K=1,024 D=8 D′=4 · PQGAN recipe · seed 0")
    plt.close(fig)


def test_utilisation_per_epoch_shows_the_smallest_and_largest_size_with_seed_bands(results, df):
    import matplotlib.pyplot as plt

    fig = figures.plot_utilisation_per_epoch(results, df=df)
    axes = _data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["K = 1,024", "K = 100,000"]
    assert all(len(ax.collections) == 4 for ax in axes)  # a seed band per method
    assert all(ax.get_xlabel().startswith("epoch") for ax in axes)
    plt.close(fig)


def test_figures_are_skipped_without_data(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pqstudy.figures"):
        assert figures.make_all_figures(tmp_path) == []
    assert "figure psnr_vs_dim skipped" in caplog.text
    with pytest.raises(figures.NoData):
        figures.plot_psnr_vs_dim(runs_dataframe(tmp_path))
    with pytest.raises(figures.NoData):
        figures.plot_rate_matched(runs_dataframe(tmp_path))


def test_grid_figures_cover_every_grid(results, df):
    """Every grid has figures, all registered; one grid's are drawn here (test_make_all_figures_writes_every_figure
    draws every figure from the same fake study, so each has data)."""
    import matplotlib.pyplot as plt

    for grid in GRIDS:
        names = figures.grid_figure_names(grid)
        assert names and set(names) <= set(figures.FIGURE_NAMES), grid
    made = figures.grid_figures(results, "pq-vs-vq-dim", df)
    assert len(made) == len(figures.grid_figure_names("pq-vs-vq-dim"))
    for fig in made:
        plt.close(fig)


def test_subsample_indices_are_seeded_and_sorted():
    a, b = subsample_indices(100_000, 64, seed=3), subsample_indices(100_000, 64, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 64 and np.all(np.diff(a) > 0)
    assert np.array_equal(subsample_indices(10, 64), np.arange(10))


@pytest.mark.parametrize("overrides", [{}, {"quantizer.kind": "pq", "quantizer.subspaces": "4"}],
                         ids=["vq", "pq"])
def test_export_codebook_from_a_real_run(tmp_path, overrides):
    from pqstudy.config import apply_overrides, get_profile
    from pqstudy.train_eval import train_and_evaluate

    cfg = apply_overrides(get_profile("smoke"), {"train.steps": "3", "train.eval_limit": "16",
                                                 "train.eval_metrics": "", "train.history_every": "1", **overrides})
    train_and_evaluate(cfg, tmp_path / "run", progress=False)
    path = export_codebook(tmp_path / "run", tmp_path / "results", max_entries=40, seed=1)
    assert path == tmp_path / "results" / "codebooks" / f"{cfg.run_id}.npz"
    assert list_codebooks(tmp_path / "results") == [cfg.run_id]
    book = load_codebook(tmp_path / "results", cfg.run_id)
    usage = np.load(tmp_path / "run" / "usage.npz")
    m = 4 if overrides else 1
    assert book["eval_counts"].dtype == np.int32 and np.array_equal(book["eval_counts"], usage["eval_counts"])
    assert book["train_counts"].shape == (3, m, 64) and np.array_equal(book["train_counts"], usage["train_counts"])
    assert book["vectors"].dtype == np.float16 and book["vectors"].shape == (40, 8 // m)
    assert np.array_equal(book["indices"], subsample_indices(64, 40, seed=1))
    assert book["meta"]["run_id"] == cfg.run_id and book["meta"]["num_codebooks"] == m

    from pqstudy.models.checkpoint import load_model

    model, _ = load_model(tmp_path / "run")
    sub = model.quantizer.subquantizers[0] if overrides else model.quantizer
    expected = sub.codebook().detach().numpy()[book["indices"]]
    assert np.allclose(book["vectors"].astype(np.float32), expected, atol=1e-2, rtol=1e-2)
    fig = figures.plot_codebook_tsne(tmp_path / "results", [cfg.run_id], max_points=30)
    assert len(fig.axes) >= 2


@pytest.mark.parametrize("kind", ["lc", "pq-lc"])
def test_export_codebook_of_an_lc_run_projects_the_stored_bank(tmp_path, kind):
    """An lc run directory made by hand (config, checkpoint of the quantiser, usage): the exported vectors are the
    stored feature bank through the stored projector, without rebuilding the bank from data."""
    import torch

    from pqstudy.config import apply_overrides, get_profile
    from pqstudy.quantizers import build_quantizer
    from pqstudy.runio import write_json

    fields = {"quantizer.kind": "lc", "quantizer.codebook_size": "50", "quantizer.lc_source": "pixels",
              "quantizer.lc_patch": "2", "train.eval_metrics": ""}
    if kind == "pq-lc":
        fields.update({"quantizer.kind": "pq", "quantizer.sub_kind": "lc", "quantizer.subspaces": "2"})
    cfg = apply_overrides(get_profile("smoke"), fields)
    m = 2 if kind == "pq-lc" else 1
    bank = torch.randn(50, 12)  # pixels source, 2×2×3 patches
    quantizer = build_quantizer(cfg.quantizer, codebook=bank)
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "config.json", {"run_id": cfg.run_id, **cfg.to_dict()})
    torch.save({"model": {f"quantizer.{k}": v for k, v in quantizer.state_dict().items()}}, run / "checkpoint.pt")
    np.savez_compressed(run / "usage.npz", eval_counts=np.arange(50 * m).reshape(m, 50) % 3,
                        train_counts=np.ones((2, m, 50), dtype=np.int32))
    book = load_codebook(tmp_path, export_codebook(run, tmp_path, max_entries=20).stem)
    sub = quantizer.subquantizers[0] if m > 1 else quantizer
    with torch.no_grad():
        expected = sub.projector(bank).numpy()[book["indices"]]
    assert book["vectors"].shape == (20, 8 // m)
    assert np.allclose(book["vectors"].astype(np.float32), expected, atol=1e-2, rtol=1e-2)
    assert book["eval_counts"].shape == (m, 50) and book["train_counts"].shape == (2, m, 50)


# ---------------------------------------------------------------------------------------------------------------
# the registry, and the data each figure plots


def test_registry_lists_every_figure_once_with_its_grids():
    assert figures.FIGURE_NAMES == tuple(figures.FIGURES)
    for name, entry in figures.FIGURES.items():
        assert entry.name == name and entry.description and set(entry.grids) <= set(GRIDS), name
        assert figures.FIGURE_DESCRIPTIONS[name] == entry.description
    assert [n for n, e in figures.FIGURES.items() if e.slow] == ["codebook_tsne"]


def test_registering_a_figure_twice_or_with_an_unknown_source_fails():
    with pytest.raises(ValueError, match="psnr_vs_dim.*registered twice"):
        figures.figure("psnr_vs_dim", description="x")(lambda df: None)
    with pytest.raises(ValueError, match="reads='checkpoints'"):
        figures.figure("new", description="x", reads="checkpoints")
    assert "new" not in figures.FIGURES


def _ok800(df, grid):
    return df[df["grids"].str.contains(grid) & (df["train.steps"] == 800) & (df["status"] == "ok")]


def _line(ax, label):
    return next(line for line in ax.lines if line.get_label() == label)


def test_utilisation_vs_codebook_size_plots_each_methods_mean(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_utilisation_vs_codebook_size(df)
    runs = _ok800(df, "lc-method-size")
    for kind, label in (("vq", "VQ"), ("lc", "LC"), ("vq-ema", "VQ-EMA")):
        expected = 100 * runs[runs["quantizer.kind"] == kind].groupby("quantizer.codebook_size")["utilisation"].mean()
        assert _line(fig.axes[0], label).get_ydata() == pytest.approx(expected.to_numpy()), kind
    plt.close(fig)


def test_psnr_vs_codebook_size_plots_pqs_mean_per_k(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_psnr_vs_codebook_size(df)
    line = fig.axes[0].lines[0]
    expected = _ok800(df, "pq-codebook-size").groupby("quantizer.codebook_size")["psnr"].mean()
    assert list(line.get_xdata()) == [16, 64, 256, 1024]
    assert line.get_ydata() == pytest.approx(expected.to_numpy())
    plt.close(fig)


def test_lc_ablations_plot_each_variants_mean(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_lc_ablations(df)
    runs = _ok800(df, "lc-init")
    means = runs.groupby("quantizer.lc_init")["psnr"].mean()
    order = ("uniform", "feature-normal", "select", "kmeans")  # the x order of the init panel
    assert fig.axes[0].lines[0].get_ydata() == pytest.approx([means[i] for i in order])
    util = runs.groupby("quantizer.lc_init")["utilisation"].mean()
    lpips = runs.groupby("quantizer.lc_init")["lpips"].mean()
    assert fig.axes[3].lines[0].get_ydata() == pytest.approx([lpips[i] for i in order])  # LPIPS row
    assert fig.axes[6].lines[0].get_ydata() == pytest.approx([100 * util[i] for i in order])  # utilisation row
    plt.close(fig)


def test_quality_vs_bits_plots_each_configurations_mean(df):
    import matplotlib.pyplot as plt

    fig = figures.plot_quality_vs_bits(df)
    psnr_800 = next(ax for ax in fig.axes if ax.get_gid() == "train.steps=800" and ax.get_ylabel().startswith("PSNR"))
    points = {(round(x, 6), round(y, 6)) for c in psnr_800.collections if c.__class__.__name__ == "PathCollection"
              for x, y in c.get_offsets()}
    runs = _ok800(df, "pq-subspaces")
    for m, group in runs.groupby("quantizer.subspaces"):
        x = group["bits_per_position"].iloc[0]
        assert (round(x, 6), round(group["psnr"].mean(), 6)) in points, m
    plt.close(fig)
