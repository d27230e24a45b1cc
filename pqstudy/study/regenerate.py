"""One command regenerates everything: every grid of a profile, then the figures and the report.

``run_grids_and_report("default", make_figures=..., figures=...)`` runs all grids through the sweep runner
(finished runs are skipped, so a killed study picks up where it stopped), writes ``results/runs.csv``, every figure
(through ``make_figures``: the study layer does not import the figures, ``pqstudy study`` passes them in),
``results/study.json`` with the profile, the number of runs and the wall time, and ``results/REPORT.md``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from pqstudy.config import get_profile
from pqstudy.runio import write_json
from pqstudy.study.cluster import SlurmConfig
from pqstudy.study.grids import BUDGET_MINUTES, FOLDER_PREFIX, GRIDS, check_data, data_name, grid_configs
from pqstudy.study.runner import run_grids
from pqstudy.study.store import write_runs_csv


def _run_seconds(results_dir: Path, configs: dict) -> dict:
    """Where the time of the study's recorded runs went: the sum over runs of their wall, training and evaluation
    seconds, and the training-split usage pass's (from the run records; each run counted once, whichever study ran
    it). Generation runs are also summed apart (``generation_runs``, ``generation_wall``): what the generation
    grids add to the study."""
    from pqstudy.study.store import load_run

    totals = {"runs": 0, "wall": 0.0, "train": 0.0, "evaluate": 0.0, "usage_pass": 0.0, "generation_runs": 0,
              "generation_wall": 0.0}
    for rid in {cfg.run_id for grid in configs.values() for cfg in grid}:
        record = load_run(results_dir, rid)
        if record is None or record.get("status") != "ok":
            continue
        metrics = record.get("metrics") or {}
        if "gen" in (record.get("config") or {}):
            totals["generation_runs"] += 1
            totals["generation_wall"] += float(record.get("wall_seconds") or 0.0)
        totals["runs"] += 1
        totals["wall"] += float(record.get("wall_seconds") or 0.0)
        totals["train"] += float(metrics.get("train_seconds") or 0.0)
        totals["evaluate"] += float(metrics.get("eval_seconds") or 0.0)
        totals["usage_pass"] += float(metrics.get("usage_pass_seconds") or 0.0)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in totals.items()}


def default_results_dir(profile: str, data: str | None = None) -> Path:
    """``results/`` for the default profile (committed), ``results/<profile>/`` for the others; with another dataset
    than the profile's (``data``, a ``data.name``), ``results/<profile>-<dataset slug>/``."""
    if data and data_name(data) != get_profile(profile).data.name:
        return Path("results") / f"{profile}-{data_slug(data_name(data))}"
    return Path("results") if profile == "default" else Path("results") / profile


def data_slug(name: str) -> str:
    """A folder-name slug for a ``data.name``: ``cifar10``, or ``folder-<folder name>-<6 hex of its path>``."""
    if not name.startswith(FOLDER_PREFIX):
        return name
    path = name[len(FOLDER_PREFIX) :]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).name).strip("-.") or "root"
    return f"folder-{stem}-{hashlib.sha1(path.encode()).hexdigest()[:6]}"


def run_grids_and_report(profile: str, *, make_figures: Callable[..., list[Path]], figures: Mapping[str, str],
                         results_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
                         papermill_dir: str | os.PathLike = "papermill_runs", jobs: int = 2,
                         grids: list[str] | None = None, shard=None, progress: bool = True, data: str | None = None,
                         budget_minutes: float | None = None, executor: str = "local",
                         slurm: SlurmConfig | None = None) -> dict:
    """Run the grids (all by default) at ``profile``'s scale, then figures and report. Returns study.json's dict.

    ``make_figures(results_dir, profile=profile)`` writes the figures and returns their paths, and ``figures`` (name
    → description) lists them for the report: ``pqstudy.figures.make_all_figures`` and ``FIGURE_DESCRIPTIONS``.

    ``data`` (a ``data.name``: ``cifar10``, ``photos``, ``folder:<path>``, ...) runs every grid on that dataset
    instead of the profile's; it is checked (one image loaded) before any run or output directory.
    ``budget_minutes`` (default: ``BUDGET_MINUTES`` of the profile) stops starting runs once spent; the runs left
    are listed as deferred in study.json and run by the next call. ``executor="submitit"`` runs the grids' runs as
    SLURM array tasks with ``slurm``'s resources (``pqstudy.study.runner.run_grids``); figures and report are
    written here once they have all finished.
    """
    from pqstudy.study.report import write_report

    names = list(grids) if grids else list(GRIDS)
    configs = {name: grid_configs(name, profile, data) for name in names}  # every config validated before any run
    check_data([cfg for grid in configs.values() for cfg in grid])
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(profile, data)
    started = time.perf_counter()
    budget = BUDGET_MINUTES.get(profile) if budget_minutes is None else budget_minutes
    summary = run_grids(configs, results_dir=results_dir, runs_root=runs_root, papermill_dir=papermill_dir,
                        shard=shard, jobs=jobs, progress=progress, budget_minutes=budget or None, executor=executor,
                        slurm=slurm)
    wall = time.perf_counter() - started
    table = write_runs_csv(results_dir)
    written = make_figures(results_dir, profile=profile)
    study = {
        "profile": profile,
        "data": data_name(data) if data else get_profile(profile).data.name,
        "grids": names,
        "runs": summary["total"],
        "ran": summary["ran"],
        "skipped": summary["skipped"],
        "failed": summary["failed"],
        "held": summary["held"],  # runs another sweep was executing at the time (retried by the next study)
        "deferred": summary["deferred"],  # not started: the budget was spent (run by the next study)
        "deferred_runs": summary["deferred_runs"],
        "budget_minutes": budget or None,  # hard limit on this study's wall time: no run starts after it
        "wall_seconds": round(wall, 1),
        "run_seconds": _run_seconds(results_dir, configs),
        "jobs": jobs,
        "executor": executor,  # local (this machine, --jobs at once) or submitit (SLURM array tasks)
        "shard": summary["shard"],
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "figures": [str(Path(f).relative_to(results_dir)) if Path(f).is_relative_to(results_dir) else str(f)
                    for f in written],
        "runs_csv": str(table) if table else None,
    }
    write_json(results_dir / "study.json", study)
    write_report(results_dir, profile=profile, figures=figures)
    return study
