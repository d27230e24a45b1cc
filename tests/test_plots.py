"""Figures from a synthetic results folder, and codebook export from a real (3-step) smoke run."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_report import synthetic_results  # tests/ is on sys.path under pytest

from pqstudy import plots
from pqstudy.study.codebooks import export_codebook, list_codebooks, load_codebook, subsample_indices
from pqstudy.study.store import runs_dataframe


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return synthetic_results(tmp_path_factory.mktemp("results"))


def test_make_all_figures_writes_every_figure(results):
    paths = plots.make_all_figures(results, tsne_points=40)
    assert [p.stem for p in paths] == list(plots.FIGURE_NAMES)
    for path in paths:
        assert path.parent == results / "figures" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((results / "figures").glob(".*"))  # no temp files left


def test_figures_are_skipped_without_data(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pqstudy.plots"):
        assert plots.make_all_figures(tmp_path) == []
    assert "figure psnr_vs_dim skipped" in caplog.text
    with pytest.raises(plots.NoData):
        plots.plot_psnr_vs_dim(runs_dataframe(tmp_path))


def test_codebook_figures_pick_one_run_per_method_at_the_largest_size(results):
    chosen = plots.default_codebook_runs(results)
    df = runs_dataframe(results).set_index("run_id")
    assert [df.loc[r, "quantizer.kind"] for r in chosen] == ["vq", "vq-fc", "vq-ema", "lc"]
    assert {int(df.loc[r, "quantizer.codebook_size"]) for r in chosen} == {100_000}


def test_grid_figures_cover_every_grid(results):
    import matplotlib.pyplot as plt

    df = runs_dataframe(results)
    for grid, names in plots.GRID_FIGURES.items():
        figures = plots.grid_figures(results, grid, df)
        assert len(figures) == len(names), grid
        for fig in figures:
            plt.close(fig)


def test_subsample_indices_are_seeded_and_sorted():
    a, b = subsample_indices(100_000, 64, seed=3), subsample_indices(100_000, 64, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 64 and np.all(np.diff(a) > 0)
    assert np.array_equal(subsample_indices(10, 64), np.arange(10))


@pytest.mark.parametrize("overrides", [{}, {"quantizer.kind": "pq", "quantizer.subspaces": "4"}],
                         ids=["vq", "pq"])
def test_export_codebook_from_a_real_run(tmp_path, overrides):
    from pqstudy.config import apply_overrides, get_profile
    from pqstudy.train import train

    cfg = apply_overrides(get_profile("smoke"), {"train.steps": "3", "train.eval_limit": "16",
                                                 "train.eval_metrics": "", "train.history_every": "1", **overrides})
    train(cfg, tmp_path / "run", progress=False)
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

    from pqstudy.evaluate import load_model

    model, _ = load_model(tmp_path / "run")
    sub = model.quantizer.subquantizers[0] if overrides else model.quantizer
    expected = sub.codebook().detach().numpy()[book["indices"]]
    assert np.allclose(book["vectors"].astype(np.float32), expected, atol=1e-2, rtol=1e-2)
    fig = plots.plot_codebook_tsne(tmp_path / "results", [cfg.run_id], max_points=30)
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
