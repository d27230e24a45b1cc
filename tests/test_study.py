"""The study grids and the smoke-profile study built once per session (the ``smoke_study`` fixture, one pytest-xdist
worker: ``--dist loadfile``): what it runs and records, and that a fresh clone of its results rebuilds them."""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from pqstudy.cli import main
from pqstudy.config import run_id
from pqstudy.study.grids import GRIDS, SCALES, grid_configs
from pqstudy.study.kernel import REPO_ROOT
from pqstudy.study.regenerate import default_results_dir
from pqstudy.study.report import EmptyReportError, write_report
from pqstudy.study.runner import run_grids


@pytest.mark.parametrize("profile", sorted(SCALES))
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_every_grid_validates_at_every_profile(name, profile):
    configs = grid_configs(name, profile)
    assert configs
    assert len({c.train.steps for c in configs}) == 1  # every run of a grid gets the same training budget
    assert all(c.profile == profile for c in configs)


def test_grids_vary_what_they_say():
    dims = {(c.quantizer.kind, c.quantizer.dim) for c in grid_configs("pq-vs-vq-dim", "default")}
    assert dims == {(k, d) for k in ("vq", "pq") for d in SCALES["default"].dims}
    methods = {(c.quantizer.kind, c.quantizer.codebook_size) for c in grid_configs("lc-method-size", "default")}
    assert methods == {(k, n) for k in ("vq", "vq-fc", "vq-ema", "lc") for n in (1024, 16384, 100_000)}
    ms = [c.quantizer.subspaces for c in grid_configs("pq-subspaces", "default")]
    assert ms == [1, 2, 4, 8]  # M = D = 8 is scalar quantisation
    inits = [c.quantizer.lc_init for c in grid_configs("lc-init", "default")]
    assert inits == ["normal", "select", "kmeans"]


def test_identical_configs_are_shared_between_grids():
    dim_grid = {run_id(c) for c in grid_configs("pq-vs-vq-dim", "default")}
    k_grid = {run_id(c) for c in grid_configs("pq-codebook-size", "default")}
    m_grid = {run_id(c) for c in grid_configs("pq-subspaces", "default")}
    assert dim_grid & k_grid and k_grid & m_grid  # PQ K=256, D=8, M=4 appears in all three


def test_unknown_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown"):
        grid_configs("pq-nope", "default")


def test_results_dir_per_profile():
    assert str(default_results_dir("default")) == "results"
    assert str(default_results_dir("smoke")) == "results/smoke"


def test_smoke_study_regenerates_everything(smoke_study, tmp_path):
    study, results, pm = smoke_study["study"], smoke_study["results"], smoke_study["papermill"]
    unique = {run_id(c) for name in GRIDS for c in grid_configs(name, "smoke")}
    assert study["profile"] == "smoke" and study["runs"] == len(unique) and study["failed"] == 0
    assert study["wall_seconds"] > 0
    assert json.loads((results / "study.json").read_text())["runs"] == len(unique)
    table = pd.read_csv(results / "runs.csv")
    assert len(table) == len(unique) and set(table["status"]) == {"ok"}
    assert set(table["run_id"]) == unique
    for name in GRIDS:  # every grid's runs list the grid
        members = {run_id(c) for c in grid_configs(name, "smoke")}
        listed = set(table.loc[table["grids"].str.split(";").apply(lambda g, n=name: n in g), "run_id"])
        assert listed == members, name
    notebooks = list(pm.rglob("*.ipynb"))
    assert len(notebooks) == len(unique)
    report = (results / "REPORT.md").read_text()
    for name in GRIDS:
        assert f"### {name}" in report
    assert report.count("reproduced") + report.count("inconclusive") >= 8
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
        write_report(clone)
    (clone / "REPORT.md").unlink()  # no report to lose: an empty one is fine
    assert "0 recorded" in write_report(clone).read_text()
