"""The study grids and the smoke-profile study built once per session (the ``smoke_study`` fixture, one pytest-xdist
worker: ``--dist loadfile``): what it runs and records, and that a fresh clone of its results rebuilds them."""

import json
import math
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from pqstudy.cli import main
from pqstudy.config import run_id
from pqstudy.figures import FIGURE_DESCRIPTIONS
from pqstudy.generation.config import GenRunConfig
from pqstudy.study.grids import GRIDS, SCALES, grid_configs, rate_subspaces
from pqstudy.study.kernel import REPO_ROOT
from pqstudy.study.regenerate import default_results_dir
from pqstudy.study.report import EmptyReportError, write_report
from pqstudy.study.runner import run_grids
from pqstudy.study.verdicts import CLAIM_TEXT, STATUSES


@pytest.mark.parametrize("profile", sorted(SCALES))
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_every_grid_validates_at_every_profile(name, profile):
    configs = grid_configs(name, profile)
    assert configs
    # every tokenizer of a grid gets the same training budget, every generator too
    assert len({c.train.steps for c in _tokenizers(configs)}) == 1
    assert len({c.gen.steps for c in configs if isinstance(c, GenRunConfig)}) <= 1
    assert all(c.profile == profile for c in configs)


def _tokenizers(configs) -> list:
    """The tokenizer runs of a grid (a generation grid also lists generators, ``GenRunConfig``)."""
    return [c for c in configs if not isinstance(c, GenRunConfig)]


def test_grids_vary_what_they_say():
    dims = {(c.quantizer.kind, c.quantizer.dim) for c in grid_configs("pq-vs-vq-dim", "default")}
    assert dims == {(k, d) for k in ("vq", "pq") for d in SCALES["default"].dims}
    methods = {(c.quantizer.kind, c.quantizer.codebook_size) for c in grid_configs("lc-method-size", "default")}
    assert methods == {(k, n) for k in ("vq", "vq-fc", "vq-ema", "lc") for n in (1024, 16384, 100_000)}
    ms = [c.quantizer.subspaces for c in grid_configs("pq-subspaces", "default")]
    assert ms == [1, 2, 4, 8]  # M = D = 8 is scalar quantisation
    inits = [c.quantizer.lc_init for c in grid_configs("lc-init", "default")]
    assert sorted(set(inits)) == ["feature-normal", "kmeans", "select", "uniform"]
    rates = {(c.quantizer.kind, round(c.quantizer.subspaces * math.log2(c.quantizer.codebook_size), 6))
             for c in grid_configs("rate-matched", "default")}
    assert rates == {(k, b) for k in ("vq", "pq", "lc") for b in (10, 16)}


def _seeds(configs, **where) -> dict:
    """{config without its seed: sorted seeds} of the configs matching ``where`` (quantizer fields)."""
    out = {}
    for c in configs:
        if all(getattr(c.quantizer, k) == v for k, v in where.items()):
            key = run_id(replace(c, train=replace(c.train, seed=0)))
            out.setdefault(key, []).append(c.train.seed)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize(("grid", "where"), [
    ("pq-vs-vq-dim", {}),  # D = 8 and D = 32, VQ and PQ
    ("pq-codebook-size", {"codebook_size": 16}), ("pq-codebook-size", {"codebook_size": 64}),
    ("pq-codebook-size", {"codebook_size": 256}), ("pq-codebook-size", {"codebook_size": 1024}),
    ("lc-method-size", {"codebook_size": 1024}), ("lc-method-size", {"codebook_size": 100_000}),
    ("lc-init", {"lc_init": "uniform"}), ("lc-init", {"lc_init": "select"}), ("lc-init", {"lc_init": "kmeans"}),
    ("lc-projector", {}), ("lc-projected-dim", {"dim": 8}), ("lc-projected-dim", {"dim": 16}),
    ("lc-projected-dim", {"dim": 32}), ("rate-matched", {}), ("continuous", {}),  # AE, KL-VAE, VQ and PQ at D = 8
])
def test_every_verdict_point_has_three_seeds(grid, where):
    seeds = _seeds(grid_configs(grid, "default"), **where)
    assert seeds and all(v == [0, 1, 2] for v in seeds.values()), seeds


def test_points_no_rule_reads_run_one_seed():
    # lc-scales-with-k reads the smallest and largest K; K = 16,384 is context, marked "1 seed" in the report
    assert all(v == [0] for v in _seeds(grid_configs("lc-method-size", "default"), codebook_size=16384).values())
    assert all(v == [0] for v in _seeds(grid_configs("lc-init", "default"), lc_init="feature-normal").values())


def test_every_default_run_trains_as_long():
    steps = {c.train.steps for name in GRIDS for c in _tokenizers(grid_configs(name, "default"))}
    assert steps == {800}


def test_table_runs_get_rfid_and_kid_on_a_fixed_sample():
    configs = {run_id(c): c for name in GRIDS for c in _tokenizers(grid_configs(name, "default"))}
    table = [c for c in configs.values() if "rfid" in c.train.eval_metrics]
    kinds = {(c.quantizer.kind, c.quantizer.codebook_size) for c in table}
    assert kinds == {("vq", 1024), ("pq", 256), ("vq", 100_000), ("vq-fc", 100_000), ("vq-ema", 100_000),
                     ("lc", 100_000)}
    assert {c.train.fid_samples for c in table} == {SCALES["default"].table_fid_samples}
    assert all(sorted(c.train.seed for c in table if (c.quantizer.kind, c.quantizer.codebook_size) == k) == [0, 1, 2]
               for k in kinds)


def test_lc_static_arm_uses_the_projector_arms_codebook():
    static, projector, _ = (grid_configs("lc-projector", "default")[i] for i in (0, 3, 6))
    assert static.quantizer.projector == "none" and projector.quantizer.projector == "linear"
    for field in ("lc_source", "lc_init", "codebook_size", "lc_patch", "lc_samples", "lc_kmeans_iters"):
        assert getattr(static.quantizer, field) == getattr(projector.quantizer, field), field


def test_identical_configs_are_shared_between_grids():
    dim_grid = {run_id(c) for c in grid_configs("pq-vs-vq-dim", "default")}
    k_grid = {run_id(c) for c in grid_configs("pq-codebook-size", "default")}
    m_grid = {run_id(c) for c in grid_configs("pq-subspaces", "default")}
    assert dim_grid & k_grid and k_grid & m_grid  # PQ K=256, D=8, M=4 appears in all three
    rate = {run_id(c) for c in grid_configs("rate-matched", "default")}
    lc = {run_id(c) for c in grid_configs("lc-method-size", "default")}
    assert rate & dim_grid and rate & k_grid and rate & lc  # VQ K=1024, PQ M=4 K=16 and LC K=1024 are shared
    ablations = [{run_id(c) for c in grid_configs(g, "default")} for g in ("lc-init", "lc-projector",
                                                                             "lc-projected-dim")]
    assert all(a & lc for a in ablations)  # the LC k-means point at K = 100,000


def test_rate_subspaces():
    assert rate_subspaces(10, 8) == 2 and rate_subspaces(16, 8) == 4 and rate_subspaces(8, 8) == 2
    with pytest.raises(ValueError, match="no PQ"):
        rate_subspaces(6, 8)


def test_unknown_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown"):
        grid_configs("pq-nope", "default")


def test_results_dir_per_profile():
    assert str(default_results_dir("default")) == "results"
    assert str(default_results_dir("smoke")) == "results/smoke"


def test_smoke_study_regenerates_everything(smoke_study, tmp_path):
    study, results, pm = smoke_study["study"], smoke_study["results"], smoke_study["papermill"]
    unique = {c.run_id for name in GRIDS for c in grid_configs(name, "smoke")}
    assert study["profile"] == "smoke" and study["runs"] == len(unique) and study["failed"] == 0
    assert study["wall_seconds"] > 0
    assert json.loads((results / "study.json").read_text())["runs"] == len(unique)
    table = pd.read_csv(results / "runs.csv")
    assert len(table) == len(unique) and set(table["status"]) == {"ok"}
    assert set(table["run_id"]) == unique
    for name in GRIDS:  # every grid's runs list the grid
        members = {c.run_id for c in grid_configs(name, "smoke")}
        listed = set(table.loc[table["grids"].str.split(";").apply(lambda g, n=name: n in g), "run_id"])
        assert listed == members, name
    notebooks = list(pm.rglob("*.ipynb"))
    assert len(notebooks) == len(unique)
    report = (results / "REPORT.md").read_text()
    for name in GRIDS:
        assert f"### {name}" in report
    for statement, paper in CLAIM_TEXT.values():  # every claim with one of the three statuses
        assert any(f"**{paper}: {statement}** — {status} (" in report for status in STATUSES), statement
    figures = {p.stem for p in (results / "figures").glob("*.png")}
    assert {"utilisation_vs_codebook_size", "psnr_vs_dim", "quality_vs_bits"} <= figures
    # the grids run again, on a copy, find every run finished and skip them all (figures and report regenerated
    # from a finished store: the fresh-clone tests below)
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    configs = {name: grid_configs(name, "smoke") for name in GRIDS}
    again = run_grids(configs, results_dir=copy, runs_root=smoke_study["runs"], papermill_dir=pm, jobs=2,
                      kernel="pqstudy-none-00000000", progress=False)  # no kernel: nothing may run
    assert again["skipped"] == len(unique) and again["ran"] == 0 and again["failed"] == 0


# --- a fresh clone rebuilds the results: the smoke study's results folder committed with the repository's .gitignore
# and cloned regenerates REPORT.md and runs.csv byte for byte and the same figures (``pqstudy report`` /
# ``pqstudy figures``); without its run records, ``pqstudy report`` refuses to empty the report.

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main",
       "-c", "commit.gpgsign=false"]
RECORD_LIMIT = 256 * 1024  # bytes: a run record is config, metrics and curves, never weights


def _git(*args, cwd: Path) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(smoke_study, tmp_path) -> Path:
    """The smoke study's results committed (as ``results/``, with this repository's .gitignore) and cloned; returns
    the clone's ``results``."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke_study["results"], repo / "results")
    shutil.copy(REPO_ROOT / ".gitignore", repo / ".gitignore")
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "results", cwd=repo)
    _git("clone", "-q", str(repo), str(tmp_path / "clone"), cwd=tmp_path)
    return tmp_path / "clone" / "results"


def test_run_records_are_committed_small_and_without_checkpoints(smoke_study, clone):
    recorded = {p.name for p in (smoke_study["results"] / "runs").iterdir()}
    committed = {p.name for p in (clone / "runs").iterdir()}
    assert committed == recorded and len(committed) == smoke_study["study"]["runs"]
    for path in (clone / "runs").iterdir():
        assert path.suffix == ".json" and path.stat().st_size < RECORD_LIMIT, path
    assert not list(clone.rglob("*.pt")) and not list(clone.rglob("checkpoint*"))


def test_fresh_clone_regenerates_report_runs_csv_and_figures(clone):
    expected = {name: (clone / name).read_bytes() for name in ("REPORT.md", "runs.csv")}
    figures = sorted(p.name for p in (clone / "figures").iterdir())
    assert len(figures) >= 8
    for name in expected:  # regenerated from the run records, not left over
        (clone / name).unlink()
    shutil.rmtree(clone / "figures")
    assert main(["figures", "--profile", "smoke", "--results", str(clone)]) == 0
    assert main(["report", "--profile", "smoke", "--results", str(clone)]) == 0
    assert sorted(p.name for p in (clone / "figures").iterdir()) == figures
    for name, content in expected.items():
        assert (clone / name).read_bytes() == content, name


def test_report_refuses_to_replace_a_report_of_runs_with_an_empty_one(clone, capsys):
    shutil.rmtree(clone / "runs")  # a clone made when the run records were git-ignored
    before = {name: (clone / name).read_bytes() for name in ("REPORT.md", "runs.csv")}
    assert main(["report", "--profile", "smoke", "--results", str(clone)]) == 1
    error = capsys.readouterr().err
    assert f"no run files of profile smoke in {(clone / 'runs').resolve()}" in error and "refusing" in error
    assert {name: (clone / name).read_bytes() for name in before} == before  # neither file touched
    with pytest.raises(EmptyReportError, match="made from"):
        write_report(clone, figures=FIGURE_DESCRIPTIONS)
    (clone / "REPORT.md").unlink()  # no report to lose: an empty one is fine
    assert "0 recorded" in write_report(clone, figures=FIGURE_DESCRIPTIONS).read_text()
