"""The sweep runner, the results store and the train_eval notebook (tiny smoke runs through papermill)."""

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pqstudy.config import apply_overrides, get_profile, run_id, to_params
from pqstudy.study import load_runs, parse_shard, record_run, run_sweep, runs_dataframe, select_shard
from pqstudy.study.notebook import (
    NOTEBOOK,
    NOTEBOOK_KERNELSPEC,
    build_notebook,
    config_from_namespace,
    parameter_names,
    profile_parameters,
)

TINY = {"train.steps": "3", "train.batch_size": "8", "train.eval_limit": "16", "train.eval_metrics": "",
        "train.eval_batch_size": "16", "train.history_every": "1"}


def tiny(**overrides):
    return apply_overrides(get_profile("smoke"), {**TINY, **{k: str(v) for k, v in overrides.items()}})


pytestmark = pytest.mark.usefixtures("pqstudy_kernel")  # notebooks run on this interpreter (tests/conftest.py)


def read_run(results: Path, rid: str) -> dict:
    return json.loads((results / "runs" / f"{rid}.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# shards and the notebook (no execution)


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(" 0 / 1 ") == (0, 1) and parse_shard((2, 3)) == (2, 3)
    assert parse_shard(None) is None and parse_shard("") is None
    for bad, match in [("4/4", "0 <= i < n"), ("-1/4", "0 <= i < n"), ("1/0", "n must be >= 1"),
                       ("a/4", "integers"), ("1", "expected i/n"), ("1/2/3", "expected i/n")]:
        with pytest.raises(ValueError, match=match):
            parse_shard(bad)


def test_shards_partition_the_unique_configs():
    configs = [tiny(**{"train.seed": s}) for s in range(7)] + [tiny(**{"train.seed": 3})]  # one duplicate
    unique = {run_id(c) for c in configs}
    assert [run_id(c) for c in select_shard(configs)] == [run_id(c) for c in configs[:7]]
    shards = [[run_id(c) for c in select_shard(configs, (i, 3))] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(unique)  # disjoint and complete
    assert sorted(len(s) for s in shards) == [2, 2, 3]
    ordered = sorted(unique)
    assert set(shards[1]) == {ordered[k] for k in range(1, 7, 3)}


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0]


def test_notebook_parameters_cell_lists_exactly_the_config_fields():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    tree = ast.parse(_parameters_cell(nb).source)
    names = [t.id for node in tree.body for t in node.targets]
    config_names = list(to_params(get_profile("smoke")))
    assert names == parameter_names() == [*config_names, "run_dir", "results_dir", "grid", "notebook_path"]
    values = {t.id: ast.literal_eval(node.value) for node in tree.body for t in node.targets}
    assert {n: values[n] for n in config_names} == profile_parameters("smoke")  # the values that run, not None
    assert values["run_dir"] is None and values["results_dir"] == "scratch/results"  # by hand: git-ignored
    # the committed notebook is the generated one (regenerate: python -m pqstudy.study.notebook)
    generated = build_notebook()
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in generated.cells
    ]


def test_parameters_cell_runs_what_it_shows_and_papermill_overrides_work():
    shown: dict = {}
    exec(_parameters_cell(build_notebook()).source, shown)  # noqa: S102 - the generated cell: assignments only
    assert config_from_namespace(shown).to_dict() == get_profile("smoke").to_dict()
    injected = config_from_namespace({**shown, "train_steps": 7, "model_ch_mult": [1, 2]})  # papermill's cell
    assert injected.train.steps == 7 and injected.model.ch_mult == (1, 2) and injected.profile == "smoke"
    # another profile by hand: the fields left as shown take its values, the ones changed are kept
    other = config_from_namespace({**shown, "profile": "default", "train_steps": 7})
    assert other.to_dict() == apply_overrides(get_profile("default"), {"train.steps": 7}).to_dict()
    # a sweep's run (grid set) is taken as injected, even a field equal to the shown value
    smoke_k = get_profile("smoke").quantizer.codebook_size
    cfg = apply_overrides(get_profile("default"), {"quantizer.codebook_size": smoke_k})
    assert get_profile("default").quantizer.codebook_size != smoke_k
    assert run_id(config_from_namespace({**shown, **to_params(cfg), "grid": "g"})) == run_id(cfg)


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    assert nb.metadata["kernelspec"] == NOTEBOOK_KERNELSPEC
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


# ---------------------------------------------------------------------------------------------------------------
# the store (no execution)


def test_runs_dataframe_flattens_configs_and_leaves_missing_metrics_empty(tmp_path):
    a, b = tiny(), tiny(**{"model.kind": "ae", "train.eval_metrics": "lpips"})
    record_run(tmp_path, a, metrics={"psnr": 20.0, "ssim": 0.5, "utilisation": 0.25, "steps": 3, "extra": 7},
               history=[{"step": 1, "utilisation": 0.25}], wall_seconds=1.5, grids=["g1"])
    record_run(tmp_path, a, metrics={"psnr": 20.0}, grids=["g2"])  # re-recorded: grids merged
    record_run(tmp_path, b, metrics={"psnr": 18.0, "lpips_missing_reason": "no weights"}, grids="g1")
    runs = {r["run_id"]: r for r in load_runs(tmp_path)}
    assert runs[run_id(a)]["grids"] == ["g1", "g2"] and runs[run_id(b)]["grids"] == ["g1"]
    df = runs_dataframe(tmp_path).set_index("run_id")
    assert len(df) == 2 and df.loc[run_id(a), "grids"] == "g1;g2"
    assert df.loc[run_id(a), "model.ch_mult"] == "(1, 2, 2)" and df.loc[run_id(a), "model.attn_resolutions"] == "()"
    assert df.loc[run_id(a), "seed"] == 0 and df.loc[run_id(b), "model.kind"] == "ae"
    assert pd.isna(df.loc[run_id(b), "utilisation"]) and pd.isna(df.loc[run_id(b), "rfid"])
    assert df.loc[run_id(b), "lpips_missing_reason"] == "no weights"
    assert df.loc[run_id(a), "lpips_missing_reason"].startswith("not requested")
    for column in ("data.name", "quantizer.codebook_size", "train.lr", "wall_seconds", "bits_per_position", "psnr",
                   "ssim", "lpips", "rfid", "kid", "cmmd", "perplexity", "cmmd_missing_reason", "status", "error"):
        assert column in df.columns
    with pytest.raises(ValueError, match="status"):
        record_run(tmp_path, a, status="done")


# ---------------------------------------------------------------------------------------------------------------
# sweeps through papermill


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """grid-a = two tiny runs (2 jobs); grid-a again; grid-b = one of them + a run failing at train time + an
    invalid config; grid-b again. Snapshots of the store after each step."""
    root = tmp_path_factory.mktemp("sweep")
    paths = {"results_dir": root / "results", "runs_root": root / "runs", "papermill_dir": root / "pm"}
    a, b = tiny(), tiny(**{"train.seed": 1})
    bad = tiny(**{"data.name": "folder:/nonexistent"})  # valid, fails when loading the data
    invalid = tiny(**{"quantizer.subspaces": 2})  # M > 1 with vq: rejected by validate
    out = {"root": root, "paths": paths, "a": run_id(a), "b": run_id(b), "bad": run_id(bad),
           "invalid": run_id(invalid), "summaries": [], "frames": [], "bad_finished_at": []}
    for grid, configs, jobs in [("grid-a", [a, b, a], 2), ("grid-a", [a, b], 1), ("grid-b", [b, bad, invalid], 1),
                                ("grid-b", [b, bad, invalid], 1)]:
        out["summaries"].append(run_sweep(grid, configs, progress=False, jobs=jobs, **paths))
        out["frames"].append(pd.read_csv(paths["results_dir"] / "runs.csv"))
        out.setdefault("finished_at", {run: read_run(paths["results_dir"], out[run])["finished_at"] for run in "ab"})
        if grid == "grid-b":
            out["bad_finished_at"].append(read_run(paths["results_dir"], out["bad"])["finished_at"])
    return out


def test_sweep_runs_each_config_once_and_skips_finished_runs(sweep):
    first, again = sweep["summaries"][:2]
    assert {k: first[k] for k in ("grid", "total", "skipped", "ran", "failed")} == {
        "grid": "grid-a", "total": 2, "skipped": 0, "ran": 2, "failed": 0}
    assert {k: again[k] for k in ("total", "skipped", "ran", "failed")} == {"total": 2, "skipped": 2, "ran": 0,
                                                                              "failed": 0}
    results, pm = sweep["paths"]["results_dir"], sweep["paths"]["papermill_dir"]
    for run in (sweep["a"], sweep["b"]):
        record = read_run(results, run)
        assert record["status"] == "ok" and record["error"] is None and record["run_id"] == run
        assert record["metrics"]["steps"] == 3 and 0 < record["metrics"]["utilisation"] <= 1
        assert len(record["history"]) == 3 and record["wall_seconds"] > 0
        assert record["config"]["train"]["steps"] == 3
        executed = nbformat.read(str(pm / "grid-a" / f"{run}.ipynb"), as_version=4)
        assert record["notebook"].endswith(f"grid-a/{run}.ipynb")
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
        assert not any(o.get("output_type") == "error" for o in outputs)
        assert (sweep["paths"]["runs_root"] / run / "metrics.json").exists()
    frame = sweep["frames"][0]
    assert len(frame) == 2 and set(frame["run_id"]) == {sweep["a"], sweep["b"]} and set(frame["status"]) == {"ok"}
    assert sweep["frames"][1].equals(frame)
    # the skipped runs were not re-executed
    assert {run: read_run(results, sweep[run])["finished_at"] for run in "ab"} == sweep["finished_at"]


def test_failed_run_is_recorded_and_the_sweep_goes_on(sweep):
    results = sweep["paths"]["results_dir"]
    grid_b = sweep["summaries"][2]
    assert {k: grid_b[k] for k in ("total", "skipped", "ran", "failed")} == {"total": 3, "skipped": 1, "ran": 0,
                                                                               "failed": 2}
    bad = read_run(results, sweep["bad"])
    assert bad["status"] == "failed" and bad["grids"] == ["grid-b"]
    assert "DatasetNotFoundError" in bad["error"] and "/nonexistent" in bad["error"]
    assert f"grid-b/{sweep['bad']}.ipynb" in bad["error"]
    assert (sweep["paths"]["papermill_dir"] / "grid-b" / f"{sweep['bad']}.ipynb").exists()
    invalid = read_run(results, sweep["invalid"])
    assert invalid["status"] == "failed" and "quantizer.subspaces" in invalid["error"]
    assert read_run(results, sweep["b"])["grids"] == ["grid-a", "grid-b"]  # skipped, but now in grid-b too
    assert read_run(results, sweep["a"])["grids"] == ["grid-a"]
    frame = sweep["frames"][2].set_index("run_id")
    assert len(frame) == 4 and frame.loc[sweep["bad"], "status"] == "failed"
    assert frame.loc[sweep["b"], "grids"] == "grid-a;grid-b" and pd.isna(frame.loc[sweep["bad"], "psnr"])
    # failed runs are retried on a re-run; finished ones are not
    retry = sweep["summaries"][3]
    assert {k: retry[k] for k in ("skipped", "ran", "failed")} == {"skipped": 1, "ran": 0, "failed": 2}
    first_try, second_try = sweep["bad_finished_at"]
    assert second_try > first_try and bad["finished_at"] == second_try


# One more run than the most a sweep of 2 jobs can finish before it is killed: the restart always has work left.
KILL_SEEDS = (20, 21, 22)
KILL_SCRIPT = """
from pqstudy.config import apply_overrides, get_profile
from pqstudy.study import run_sweep

base = {tiny!r}
configs = [apply_overrides(get_profile("smoke"), {{**base, "train.seed": str(seed)}}) for seed in {seeds!r}]
print(run_sweep("kill", configs, progress=False, jobs={jobs}))
"""


def _marked_processes(marker: str) -> list[int]:
    """Processes (sweep, workers, kernels) whose environment carries ``PQSTUDY_TEST_SWEEP=marker``, still alive."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"PQSTUDY_TEST_SWEEP={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find orphaned kernels")
@pytest.mark.parametrize("jobs", [2])  # two notebooks in flight when killed: the harder case (jobs=1 cost 51 s more)
def test_sweep_killed_and_restarted_loses_and_duplicates_nothing(tmp_path, jobs):
    script = KILL_SCRIPT.format(tiny=TINY, jobs=jobs, seeds=KILL_SEEDS)
    runs = tmp_path / "results" / "runs"
    marker = f"{os.getpid()}-{jobs}-{time.monotonic_ns()}"
    env = {**os.environ, "PQSTUDY_TEST_SWEEP": marker}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not list(runs.glob("*.json")):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no run finished in 90 s"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20  # workers die with the sweep; kernels notice their parent is gone in ~1 s
    while _marked_processes(marker):
        assert time.monotonic() < deadline, "a worker or kernel of the killed sweep is still running"
        time.sleep(0.2)
    first = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert 1 <= len(first) <= jobs and all(r["status"] == "ok" for r in first.values())
    time.sleep(1.0)  # nothing of the killed sweep may record a run after this point
    assert {p.stem for p in runs.glob("*.json")} == set(first)

    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    n = len(KILL_SEEDS)
    assert summary["skipped"] == len(first) and summary["ran"] == n - len(first) and summary["failed"] == 0
    records = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert len(records) == n and all(r["status"] == "ok" and r["grids"] == ["kill"] for r in records.values())
    for rid, before in first.items():
        assert records[rid]["finished_at"] == before["finished_at"]  # finished runs were not executed again
    frame = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert len(frame) == n and frame["run_id"].is_unique and set(frame["run_id"]) == set(records)
    assert not list(runs.glob(".*.tmp"))


TWO_SWEEPS_SCRIPT = """
import sys
from pqstudy.config import apply_overrides, get_profile
from pqstudy.study import run_sweep

base = {tiny!r}
configs = [apply_overrides(get_profile("smoke"), {{**base, "train.seed": str(seed)}}) for seed in (30, 31)]
print(run_sweep("two", configs, results_dir="results", runs_root="runs", papermill_dir="pm-" + sys.argv[1],
                progress=False, jobs=1))
"""


def test_two_sweeps_on_one_results_dir_run_each_config_once(tmp_path):
    """Two sweep processes started together on one results directory: every run executes exactly once (the run
    locks), the other sweep reports it held or finished, and no temporary file is left."""
    script = textwrap.dedent(TWO_SWEEPS_SCRIPT.format(tiny=TINY))
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for tag in ("a", "b")]
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    summaries = [ast.literal_eval(out.strip().splitlines()[-1]) for out in outputs]
    assert sum(s["ran"] for s in summaries) == 2 and sum(s["failed"] for s in summaries) == 0, summaries
    for s in summaries:
        assert s["total"] == 2 == s["ran"] + s["skipped"] + s["held"] + s["failed"]
    executed = sorted(p.stem for p in tmp_path.glob("pm-*/two/*.ipynb"))
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")}
    assert executed == sorted(records) and len(executed) == 2  # each run's notebook ran in one sweep only
    assert all(r["status"] == "ok" and r["grids"] == ["two"] for r in records.values())
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("jobs", [1, 2])
def test_spent_budget_defers_runs_without_recording_them(tmp_path, jobs):
    configs = [tiny(**{"train.seed": 5}), tiny(**{"train.seed": 6})]
    paths = {"results_dir": tmp_path / "results", "runs_root": tmp_path / "runs", "papermill_dir": tmp_path / "pm"}
    summary = run_sweep("grid-budget", configs, progress=False, jobs=jobs, budget_minutes=1e-9, **paths)
    assert {k: summary[k] for k in ("total", "ran", "failed", "deferred")} == {"total": 2, "ran": 0, "failed": 0,
                                                                                 "deferred": 2}
    assert sorted(summary["deferred_runs"]) == sorted(run_id(c) for c in configs)
    assert not list((tmp_path / "results").glob("runs/*.json"))  # nothing recorded: the next sweep runs them

