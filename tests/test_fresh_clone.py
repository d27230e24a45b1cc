"""A fresh clone rebuilds the results: the smoke study's results folder committed with the repository's .gitignore
and cloned regenerates REPORT.md and runs.csv byte for byte and the same figures (``pqstudy report`` /
``pqstudy figures``); without its run records, ``pqstudy report`` refuses to empty the report."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pqstudy.cli import main
from pqstudy.study.kernel import REPO_ROOT
from pqstudy.study.report import EmptyReportError, write_report

pytestmark = pytest.mark.xdist_group("smoke_study")  # one worker builds the shared smoke study once

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
