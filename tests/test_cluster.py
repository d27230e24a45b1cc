"""Sweeps through submitit (``--executor submitit``): the runner's rules kept when each run is an array task.

The tasks run on submitit's local executor (processes of this machine) and execute a small stand-in notebook in
place of train_eval.ipynb, which writes the metrics a run leaves (so the runner records the run) or kills its task,
as SLURM does to a task out of time or memory. The SLURM side is checked up to the sbatch file, with stand-in
``sbatch``/``srun`` programs on PATH.
"""

import json
import os
import stat
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pqstudy.cli import main
from pqstudy.config import apply_overrides, get_profile, run_id
from pqstudy.runlock import try_lock, unlock
from pqstudy.study.cluster import SlurmConfig, check_cluster, run_array, submit_array
from pqstudy.study.runner import lock_path, run_grids
from pqstudy.study.store import record_run

KILL_SEED = 3  # the stand-in notebook kills its array task for this train.seed
STAND_IN = f"""
import json, os, signal
from pathlib import Path
if train_seed == {KILL_SEED}:
    os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent is the array task
Path(run_dir).mkdir(parents=True, exist_ok=True)
Path(run_dir, "metrics.json").write_text(json.dumps({{"psnr": 20.0 + train_seed, "ssim": 0.5, "steps": 3}}))
"""


def smoke(seed: int):
    return apply_overrides(get_profile("smoke"), {"train.seed": str(seed)})


def job_folders(results: Path) -> set:
    return {p.name for p in (results / ".submitit").glob("*") if p.is_dir()}


@pytest.fixture(scope="module")
def cluster_sweep(tmp_path_factory, pqstudy_kernel):
    """One sweep of 4 runs through submitit's local executor: one runs, one is held (its lock taken here), one
    kills its task, one was recorded before (skipped, never submitted). Then the same grid again, on a spent
    budget."""
    root = tmp_path_factory.mktemp("cluster")
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells = [nbformat.v4.new_code_cell("run_dir = None\ntrain_seed = 0", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(STAND_IN)]
    nbformat.write(notebook, root / "stand_in.ipynb")
    paths = {"results_dir": root / "results", "runs_root": root / "runs", "papermill_dir": root / "pm",
             "notebook": root / "stand_in.ipynb"}
    ran, held, killed, before = smoke(0), smoke(1), smoke(KILL_SEED), smoke(4)
    record_run(paths["results_dir"], before, metrics={"psnr": 30.0, "ssim": 0.9}, grids=["g"])
    before_record = json.loads((paths["results_dir"] / "runs" / f"{run_id(before)}.json").read_text())
    slurm = SlurmConfig(cluster="local", time_min=5)
    fd = try_lock(lock_path(paths["results_dir"], run_id(held)))
    try:
        first = run_grids({"g": [ran, held, killed, before]}, progress=False, executor="submitit", slurm=slurm,
                          **paths)
    finally:
        unlock(fd)
    folders = job_folders(paths["results_dir"])
    again = run_grids({"g": [ran, before, smoke(5)]}, progress=False, executor="submitit", slurm=slurm,
                      budget_minutes=1e-9, **paths)
    return {"first": first, "again": again, "folders": folders, "paths": paths, "before_record": before_record,
            **{name: run_id(cfg) for name, cfg in [("ran", ran), ("held", held), ("killed", killed),
                                                   ("before", before)]}}


def read_run(sweep, rid):
    path = sweep["paths"]["results_dir"] / "runs" / f"{rid}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_array_tasks_record_their_runs_and_finished_runs_are_skipped(cluster_sweep):
    first = cluster_sweep["first"]
    assert {k: first[k] for k in ("total", "skipped", "ran", "failed", "held")} == {
        "total": 4, "skipped": 1, "ran": 1, "failed": 1, "held": 1}
    record = read_run(cluster_sweep, cluster_sweep["ran"])
    assert record["status"] == "ok" and record["metrics"]["psnr"] == 20.0 and record["grids"] == ["g"]
    assert (cluster_sweep["paths"]["papermill_dir"] / "g" / f"{cluster_sweep['ran']}.ipynb").exists()
    assert read_run(cluster_sweep, cluster_sweep["before"]) == cluster_sweep["before_record"]  # not run again
    assert len(cluster_sweep["folders"]) == 3  # one task per run not finished before
    results = cluster_sweep["paths"]["results_dir"]
    table = pd.read_csv(results / "runs.csv").set_index("run_id")["status"].to_dict()
    assert table == {cluster_sweep["before"]: "ok", cluster_sweep["ran"]: "ok", cluster_sweep["killed"]: "failed"}
    assert not list(results.rglob("*.tmp"))


def test_a_killed_task_records_its_run_failed_with_the_reason_and_its_log(cluster_sweep):
    record = read_run(cluster_sweep, cluster_sweep["killed"])
    assert record["status"] == "failed" and record["grids"] == ["g"]
    error = record["error"]
    assert error.startswith("the task ended without a result") and "submitit job" in error
    log = Path(error.split("log: ", 1)[1].split(")", 1)[0])
    assert log.is_file() and log.is_relative_to(cluster_sweep["paths"]["results_dir"] / ".submitit")
    assert f"g/{cluster_sweep['killed']}.ipynb" in error  # the notebook it was running
    assert cluster_sweep["first"]["failures"] == [{"run_id": cluster_sweep["killed"], "error": error}]


def test_a_run_whose_lock_is_held_is_left_to_its_holder(cluster_sweep):
    (held,) = cluster_sweep["first"]["held_runs"]
    assert held["run_id"] == cluster_sweep["held"] and f"pid {os.getpid()}" in held["error"]
    assert read_run(cluster_sweep, cluster_sweep["held"]) is None  # not recorded: the next sweep runs it


def test_a_second_sweep_skips_finished_runs_and_defers_on_a_spent_budget_without_submitting(cluster_sweep):
    again = cluster_sweep["again"]
    assert {k: again[k] for k in ("total", "skipped", "ran", "failed", "deferred")} == {
        "total": 3, "skipped": 2, "ran": 0, "failed": 0, "deferred": 1}
    assert job_folders(cluster_sweep["paths"]["results_dir"]) == cluster_sweep["folders"]


def test_generator_runs_are_submitted_after_their_tokenizers_finished(tmp_path, monkeypatch, pqstudy_kernel):
    """One array per phase: the tokenizers' array has finished (every result taken) before the generators' is
    submitted. ``run_array`` is replaced by a recorder that runs nothing."""
    from pqstudy.generation.config import GenRunConfig
    from pqstudy.study import runner
    from pqstudy.study.grids import grid_configs

    configs = grid_configs("gen-ar", "smoke")
    gen = next(cfg for cfg in configs if isinstance(cfg, GenRunConfig))
    tokenizer = next(cfg for cfg in configs if cfg.run_id == gen.tokenizer_run_id)
    events = []

    def recording_run_array(fn, items, slurm, folder, on_submit=None):
        events.append(("submit", [item["run_id"] for item in items]))
        for k, item in enumerate(items):
            events.append(("finished", item["run_id"]))
            yield k, {"run_id": item["run_id"], "status": "ok", "error": None, "seconds": 0.0}, None

    monkeypatch.setattr(runner, "run_array", recording_run_array)
    summary = run_grids({"g": [gen, tokenizer]}, results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                        papermill_dir=tmp_path / "pm", progress=False, executor="submitit",
                        slurm=SlurmConfig(cluster="local"))
    assert events == [("submit", [tokenizer.run_id]), ("finished", tokenizer.run_id),
                      ("submit", [gen.run_id]), ("finished", gen.run_id)]
    assert summary["ran"] == 2


def test_the_local_cluster_runs_array_parallelism_tasks_at_a_time_and_reports_a_raising_task(tmp_path):
    """``run_array`` on plain ``len`` (its tasks import no pqstudy): with ``array_parallelism=1`` the second task is
    submitted once the first has its result; a task that raises gives its exception's line and its log."""
    submitted, earlier_done = [], []

    def on_submit(start, jobs):
        earlier_done.append((start, all(job.paths.result_pickle.exists() for job in submitted)))
        submitted.extend(jobs)

    out = list(run_array(len, [[1, 2], 5], SlurmConfig(cluster="local", array_parallelism=1), tmp_path / "%j",
                         on_submit=on_submit))
    assert earlier_done == [(0, True), (1, True)] and len(submitted) == 2  # two waves of one
    assert out[0] == (0, 2, None)
    index, result, error = out[1]
    assert index == 1 and result is None
    assert error.startswith("TypeError: object of type 'int' has no len()"), error
    log = Path(error.split("log: ", 1)[1].rstrip(")"))
    assert log.is_file() and log.is_relative_to(tmp_path)
    assert not (tmp_path / "%j").exists()  # submitit's template folder, left empty after submission, is removed


# ---------------------------------------------------------------------------------------------------------------
# SLURM: the sbatch file submitit writes from SlurmConfig (stand-in sbatch and srun)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` and ``srun`` stand-ins on PATH: sbatch answers as SLURM does and submits nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in [("sbatch", 'echo "Submitted batch job 4242"'), ("srun", "exit 0")]:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_slurm_config_becomes_the_array_job_sbatch_asks_for(fake_slurm):
    slurm = check_cluster(SlurmConfig(partition="gpu", gpus_per_task=1, cpus_per_task=4, time_min=90, mem_gb=32,
                                      array_parallelism=2))
    jobs = submit_array(len, [[1], [2], [3]], slurm, fake_slurm / "logs" / "%j")
    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = fake_slurm / "logs" / "4242" / "4242_submission.sh"  # the array's sbatch file
    sbatch = {line.split()[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {"--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--time=90", "--mem=32GB",
            "--array=0-2%2", "--ntasks-per-node=1", "--nodes=1"} <= sbatch
    assert any(option.startswith("--output=") and str(fake_slurm / "logs") in option for option in sbatch)


# ---------------------------------------------------------------------------------------------------------------
# bad input: a clear message before any work (nothing written)


def sweep_cli(tmp_path, *options):
    return main(["sweep", "lc-init", "--profile", "smoke", "--results", str(tmp_path / "results"),
                 "--runs", str(tmp_path / "runs"), "--papermill-dir", str(tmp_path / "pm"), *options])


@pytest.mark.parametrize("options, message", [
    (["--slurm-partition", "gpu"], "--slurm-partition: only used with --executor submitit"),
    (["--slurm-cluster", "local", "--slurm-mem-gb", "16"], "--slurm-mem-gb, --slurm-cluster: only used with"),
    (["--executor", "submitit", "--slurm-cluster", "local", "--slurm-cpus-per-task", "0"],
     "cpus_per_task=0 (--slurm-cpus-per-task): must be an integer >= 1"),
    (["--executor", "submitit", "--slurm-cluster", "local", "--slurm-time-min", "-5"], "--slurm-time-min"),
    (["--executor", "submitit", "--slurm-cluster", "local", "--slurm-array-parallelism", "0"],
     "--slurm-array-parallelism): must be an integer >= 1"),
    (["--executor", "submitit", "--slurm-cluster", "local", "--slurm-gpus-per-task", "-1"], ">= 0"),
    (["--executor", "submitit"], "no sbatch or srun on PATH"),
])
def test_bad_cluster_options_are_refused_before_any_work(tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM here
    assert sweep_cli(tmp_path, *options) == 1
    err = capsys.readouterr().err
    assert message in err, err
    if "sbatch" in message:
        assert "--slurm-cluster local" in err  # what to do instead
    assert not any(tmp_path.glob("*/"))  # no results, runs or papermill dir


def test_study_refuses_slurm_options_without_the_submitit_executor(tmp_path, capsys):
    assert main(["study", "--profile", "smoke", "--grids", "lc-init", "--results", str(tmp_path / "results"),
                 "--slurm-gpus-per-task", "1"]) == 1
    assert "--slurm-gpus-per-task: only used with --executor submitit" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_submitit_missing_is_refused_with_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit → ImportError
    assert sweep_cli(tmp_path, "--executor", "submitit", "--slurm-cluster", "local") == 1
    assert "pip install submitit" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match=r"pip install -e \.\[cluster\]"):
        run_grids({"g": [smoke(0)]}, results_dir=tmp_path / "results", executor="submitit",
                  slurm=SlurmConfig(cluster="local"))
    assert not (tmp_path / "results").exists()


def test_run_grids_refuses_slurm_settings_without_the_submitit_executor(tmp_path):
    with pytest.raises(ValueError, match="only used with executor='submitit'"):
        run_grids({"g": [smoke(0)]}, results_dir=tmp_path / "results", slurm=SlurmConfig(cluster="local"))
    with pytest.raises(ValueError, match="executor='dask'"):
        run_grids({"g": [smoke(0)]}, results_dir=tmp_path / "results", executor="dask")


@pytest.mark.parametrize("options, expected", [
    (["--slurm-cluster", "local"], 2),  # this machine: --jobs (default 2) at once, not 64
    (["--slurm-cluster", "local", "--jobs", "3"], 3),
    (["--slurm-cluster", "local", "--jobs", "3", "--slurm-array-parallelism", "5"], 5),
])
def test_the_local_cluster_runs_jobs_at_once_unless_told_otherwise(options, expected):
    from pqstudy.cli import _slurm_config, build_parser

    args = build_parser().parse_args(["sweep", "lc-init", "--executor", "submitit", *options])
    assert _slurm_config(args).array_parallelism == expected


def test_slurm_keeps_its_default_array_parallelism(fake_slurm):
    from pqstudy.cli import _slurm_config, build_parser

    args = build_parser().parse_args(["sweep", "lc-init", "--executor", "submitit", "--jobs", "3"])
    assert _slurm_config(args).array_parallelism == SlurmConfig().array_parallelism == 64
