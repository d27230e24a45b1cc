"""The sweep runner: one papermill execution of ``notebooks/train_eval.ipynb`` per config of a grid (of
``notebooks/generation.ipynb`` per generation run: ``RUN_KINDS``).

For each config (deduplicated by run id) of the grid, in the grid's order:

- ``<results>/runs/<run_id>.json`` with status ``ok`` exists → skipped (the grid's name is added to its ``grids``);
- else the notebook runs with the config's parameters → ``<papermill_dir>/<grid>/<run_id>.ipynb``; the notebook
  trains into ``<runs_root>/<run_id>`` (``resume=True``: a half-finished run continues from its checkpoint) and
  records the run. A run that fails (papermill's ``PapermillExecutionError``, or any other exception) is recorded
  with status ``failed`` and its error, and the sweep goes on; a later sweep retries it.

Run files are written atomically and keyed by run id, so a sweep killed at any point (SIGKILL included) and started
again loses no finished run and duplicates none. Each run is executed under a file lock,
``<results>/.locks/<run_id>.lock`` (``fcntl.flock``; the kernel releases it when its holder dies): a second sweep on
the same results directory skips the runs the first one holds (reported as ``held``, retried by a later sweep) and
re-checks the store after taking a lock, so no run executes twice. ``shard=(i, n)`` runs the configs whose position
in the sorted list of unique run ids is ``i`` modulo ``n`` (``--shard i/n`` on several machines covers a grid exactly
once).

Generation runs (``GenRunConfig``) need their tokenizer's checkpoint: they start after every tokenizer run of the
same call has finished, and train on ``<runs_root>/<tokenizer run id>``.

``executor="submitit"`` runs each phase's runs as one SLURM job array instead (``pqstudy.study.cluster``): every
array task executes ``_execute`` (the lock, the store check, the notebook, the record) on a node, so the rules above
hold there too, with the results directory on a filesystem the nodes share; a task that dies without a result is
recorded here as failed, with the reason and its submitit log.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from pqstudy.config import ConfigError, RunConfig, from_params, to_params
from pqstudy.generation.config import GenRunConfig, gen_from_params, gen_to_params, validate_gen
from pqstudy.preflight import validate_run
from pqstudy.runio import read_json
from pqstudy.runlock import holder, try_lock, unlock
from pqstudy.study.cluster import SlurmConfig, check_cluster, describe, log_folder, run_array
from pqstudy.study.generation_notebook import GEN_NOTEBOOK
from pqstudy.study.kernel import kernel_name, require_kernel
from pqstudy.study.notebook import NOTEBOOK, REPO_ROOT
from pqstudy.study.store import add_grid, load_run, record_run, write_runs_csv

GRID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
LOCKS_SUBDIR = ".locks"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
EXECUTORS = ("local", "submitit")  # local: here or a pool of --jobs processes; submitit: SLURM array tasks


@dataclass(frozen=True)
class RunKind:
    """How the runner executes one kind of config: its notebook, its parameters (and back), its checks, and the
    directories it is given."""

    notebook: Path
    to_params: Callable
    from_params: Callable
    validate: Callable
    directories: Callable  # (cfg, runs_root) → {"run_dir": ..., ...}
    phase: int  # runs of a lower phase finish before any of a higher one starts


RUN_KINDS = {
    RunConfig: RunKind(NOTEBOOK, to_params, from_params, validate_run,
                       lambda cfg, root: {"run_dir": str(root / cfg.run_id)}, phase=0),
    GenRunConfig: RunKind(GEN_NOTEBOOK, gen_to_params, gen_from_params, validate_gen,
                          lambda cfg, root: {"run_dir": str(root / cfg.run_id),
                                             "tokenizer_dir": str(root / cfg.tokenizer_run_id)}, phase=1),
}


def parse_shard(text: str | tuple | list | None) -> tuple[int, int] | None:
    """``"1/4"`` → ``(1, 4)``: shard i of n, 0 <= i < n. None or "" → None (no sharding)."""
    if text is None or text == "":
        return None
    if isinstance(text, (tuple, list)):
        parts = list(text)
        shown = "/".join(str(p) for p in parts)
    else:
        shown = str(text).strip()
        parts = shown.split("/")
    if len(parts) != 2:
        raise ValueError(f"shard {shown!r}: expected i/n, e.g. 0/4 (shard 0 of 4)")
    try:
        i, n = (int(str(p).strip()) for p in parts)
    except ValueError:
        raise ValueError(f"shard {shown!r}: i and n must be integers, e.g. 0/4") from None
    if n < 1:
        raise ValueError(f"shard {shown!r}: n must be >= 1")
    if not 0 <= i < n:
        raise ValueError(f"shard {shown!r}: i must satisfy 0 <= i < n (shards are numbered 0 … {n - 1})")
    return i, n


def unique_configs(configs: list[RunConfig]) -> list[RunConfig]:
    """The configs with duplicate run ids removed (the first one kept), in order."""
    seen: dict[str, RunConfig] = {}
    for cfg in configs:
        seen.setdefault(cfg.run_id, cfg)
    return list(seen.values())


def select_shard(configs: list[RunConfig], shard=None) -> list[RunConfig]:
    """The unique configs of shard ``(i, n)``: those whose run id has index ``k`` in the sorted unique run ids with
    ``k % n == i``. The grid's order is kept."""
    configs = unique_configs(configs)
    shard = parse_shard(shard)
    if shard is None:
        return configs
    i, n = shard
    index = {rid: k for k, rid in enumerate(sorted(c.run_id for c in configs))}
    return [c for c in configs if index[c.run_id] % n == i]


def _label(path: Path) -> str:
    """A path for the record: relative to the working directory when inside it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _error_line(exc: BaseException) -> str:
    """One line: the exception the notebook raised (the traceback's last line), or this exception's."""
    ename = getattr(exc, "ename", None)
    if ename is not None:  # PapermillExecutionError: the error inside the notebook
        line = f"{ename}: {getattr(exc, 'evalue', '')}"
    else:
        line = traceback.format_exception_only(type(exc), exc)[-1]
    line = " ".join(line.split())
    return line if len(line) <= 1000 else line[:997] + "..."


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a sweep killed with SIGKILL must not leave workers behind that go on running the
    notebooks already queued to them. On Linux the kernel SIGKILLs this worker when the sweep process dies
    (``PR_SET_PDEATHSIG``); the notebook kernel it started then exits through ipykernel's parent poller."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the sweep died before the request took effect
        os._exit(1)


def lock_path(results_dir: str | os.PathLike, rid: str) -> Path:
    return Path(results_dir) / LOCKS_SUBDIR / f"{rid}.lock"


def _execute(job: dict) -> dict:
    """Run one notebook under the run's lock and make sure the run is recorded (ok or failed); status ``held`` when
    another sweep holds the run, ``done`` when another sweep finished it meanwhile. Runs in this or a worker
    process."""
    rid, lock = job["run_id"], lock_path(job["results_dir"], job["run_id"])
    if job.get("deadline") is not None and time.time() > job["deadline"]:
        return {"run_id": rid, "status": "deferred", "seconds": 0.0,
                "error": f"not started: the study's budget of {job['budget_minutes']:g} min was spent"}
    fd = try_lock(lock)
    if fd is None:
        return {"run_id": rid, "status": "held", "error": f"held by another sweep (pid {holder(lock)})",
                "seconds": 0.0}
    try:
        record = load_run(job["results_dir"], rid)
        if record is not None and record.get("status") == "ok":  # finished by another sweep since we looked
            add_grid(job["results_dir"], rid, job["grid"])
            return {"run_id": rid, "status": "done", "error": None, "seconds": 0.0}
        return _execute_locked(job)
    finally:
        unlock(fd)


# A kernel that dies before it answers kernel_info ran no cell: start it again. Seen with several kernels starting at
# once: jupyter_client picks a free TCP port, another kernel binds it first, and the new one dies on "Address already
# in use" (2 of the smoke study's 35 runs once, in the test suite).
KERNEL_START_TRIES = 3


def kernel_never_started(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the notebook's kernel died before it started."""
    while exc is not None:
        if "Kernel died before replying to kernel_info" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _execute_locked(job: dict) -> dict:
    cfg, rid = job["cfg"], job["run_id"]
    results_dir, output = Path(job["results_dir"]), Path(job["output"])
    if job.get("threads"):
        for var in THREAD_VARIABLES:  # a worker process: inherited by the kernel it starts
            os.environ.setdefault(var, str(job["threads"]))
    started = time.perf_counter()
    try:
        import papermill

        output.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(KERNEL_START_TRIES):
            try:
                papermill.execute_notebook(
                    str(job["input"]), str(output), parameters=job["params"], kernel_name=job["kernel"],
                    log_output=False, progress_bar=False, cwd=str(job["cwd"]),
                )
                break
            except Exception as exc:  # noqa: BLE001 - only a kernel that never started is tried again
                if attempt + 1 == KERNEL_START_TRIES or not kernel_never_started(exc):
                    raise
        record = load_run(results_dir, rid)
        if record is None or record.get("status") != "ok":  # the notebook did not record the run: do it here
            run_dir = Path(job["params"]["run_dir"])
            if not (run_dir / "metrics.json").exists():
                raise RuntimeError(f"the notebook finished but {run_dir / 'metrics.json'} does not exist")
            history = read_json(run_dir / "history.json") if (run_dir / "history.json").exists() else []
            record = record_run(results_dir, cfg, status="ok", metrics=read_json(run_dir / "metrics.json"),
                                history=history, wall_seconds=time.perf_counter() - started, notebook=job["label"],
                                grids=[job["grid"]])
            if record["status"] != "ok":  # the store refused the metrics (a diverged run)
                return {"run_id": rid, "status": "failed", "error": record["error"],
                        "seconds": time.perf_counter() - started}
        else:
            add_grid(results_dir, rid, job["grid"])
        return {"run_id": rid, "status": "ok", "error": None, "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded and the sweep goes on
        error = f"{_error_line(exc)} (notebook: {job['label']})"
        seconds = time.perf_counter() - started
        try:
            record_run(results_dir, cfg, status="failed", error=error, wall_seconds=seconds, notebook=job["label"],
                       grids=[job["grid"]])
        except Exception as exc2:  # noqa: BLE001
            error += f"; recording the failure failed too: {_error_line(exc2)}"
        return {"run_id": rid, "status": "failed", "error": error, "seconds": seconds}


def run_sweep(grid_name: str, configs: list[RunConfig], **kwargs) -> dict:
    """Run every config of grid ``grid_name`` not yet finished; see ``run_grids`` for the options and the summary."""
    return run_grids({grid_name: configs}, **kwargs)


def run_grids(
    grids: dict[str, list[RunConfig]],
    results_dir: str | os.PathLike = "results",
    runs_root: str | os.PathLike = "runs",
    papermill_dir: str | os.PathLike = "papermill_runs",
    shard=None,
    kernel: str | None = None,
    progress: bool = True,
    jobs: int = 1,
    notebook: str | os.PathLike = NOTEBOOK,
    budget_minutes: float | None = None,
    executor: str = "local",
    slurm: SlurmConfig | None = None,
) -> dict:
    """Run every config of the named grids not yet finished, in one pool of ``jobs`` workers; returns
    ``{grid, total, skipped, ran, failed, held, wall_seconds, shard, failures, held_runs}`` (``ran`` counts runs
    executed successfully, ``failed`` those that failed, ``held`` those skipped because another sweep was running
    them, ``total = skipped + ran + failed + held + deferred`` the unique configs of this shard).

    A config shared by several grids runs once, under the first grid that lists it (its notebook goes to
    ``<papermill_dir>/<that grid>/``), and its run file lists every grid. Relative paths are taken from the working
    directory. ``jobs > 1`` runs that many notebooks at once in worker processes, each kernel limited to
    ``cpus // jobs`` threads through ``OMP_NUM_THREADS`` (unless already set). ``kernel`` defaults to this
    checkout's own Jupyter kernel (``pqstudy.study.kernel``); a missing kernel is an error before any run starts.

    Runs start in grid order, all seeds of a point together, so a study cut short has whole grids and whole
    verdicts. ``budget_minutes``: no run starts once that much wall time has passed; such runs are counted as
    ``deferred`` (listed in ``deferred_runs``, not recorded) and the next sweep runs them.

    ``executor="submitit"`` submits each phase's runs as one job array with ``slurm``'s resources (default
    ``SlurmConfig()``: SLURM, 1 CPU, 16 GB, 4 h per run) instead of running them here; ``jobs`` is then unused
    (``slurm.array_parallelism`` runs at once). A task that starts after the budget is spent defers its run.

    Steps: ``select_shard`` (dedup by run id, shard) → ``_plan`` (skip finished runs, validate, record config
    errors) → ``_execute_all`` (here or in the pool) → ``_Tally`` (count, report, runs.csv once per finished run).
    """
    for grid_name in grids:
        if not GRID_NAME.fullmatch(grid_name or ""):
            raise ValueError(f"grid name {grid_name!r}: use letters, digits, '_', '.', '+' and '-' (it names a folder)")
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: must be >= 1")
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: must be one of {', '.join(EXECUTORS)}")
    if slurm is not None and executor != "submitit":
        raise ValueError(f"slurm={slurm!r} is only used with executor='submitit' (executor={executor!r})")
    if executor == "submitit":
        slurm = check_cluster(slurm or SlurmConfig())
    shard = parse_shard(shard)
    started = time.perf_counter()
    results_dir, runs_root, papermill_dir = (Path(p).resolve() for p in (results_dir, runs_root, papermill_dir))
    notebook = Path(notebook).resolve()
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    grids_of = _grids_of(grids)
    selected = select_shard([cfg for configs in grids.values() for cfg in configs], shard)
    kernel = kernel or kernel_name()
    tally = _Tally(",".join(grids), len(selected), results_dir, grids_of, shard, budget_minutes, progress)
    todo = _plan(selected, grids_of, tally, notebook=notebook, runs_root=runs_root, papermill_dir=papermill_dir,
                 kernel=kernel, budget_minutes=budget_minutes)
    if todo:
        require_kernel(kernel)
    _execute_all(todo, jobs, tally, slurm)
    return tally.close(started)


def _grids_of(grids: dict[str, list[RunConfig]]) -> dict[str, list[str]]:
    """Run id → every grid that lists it, in order (a run shared by grids runs under the first)."""
    grids_of: dict[str, list[str]] = {}
    for grid_name, configs in grids.items():
        for cfg in configs:
            names = grids_of.setdefault(cfg.run_id, [])
            if grid_name not in names:
                names.append(grid_name)
    return grids_of


class _Tally:
    """The summary of one ``run_grids`` call: counts each run as it finishes, prints its progress line, lists the
    run under its other grids and rewrites ``runs.csv`` (once per finished run, so the table follows the study)."""

    def __init__(self, label: str, total: int, results_dir: Path, grids_of: dict[str, list[str]], shard,
                 budget_minutes: float | None, progress: bool):
        self.results_dir, self.grids_of, self.progress, self.total = results_dir, grids_of, progress, total
        self.summary = {"grid": label, "total": total, "skipped": 0, "ran": 0, "failed": 0, "held": 0,
                        "wall_seconds": 0.0, "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
                        "failures": [], "held_runs": [], "deferred": 0, "deferred_runs": [],
                        "budget_minutes": budget_minutes}

    def say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def skipped(self, rid: str, position: int) -> None:
        """A run finished before this call: listed under all its grids, counted as skipped."""
        for name in self.grids_of[rid]:
            add_grid(self.results_dir, rid, name)
        self.summary["skipped"] += 1
        self.say(f"[{position}/{self.total}] {rid} done already, skipped")

    def finished(self, result: dict, position: int) -> None:
        summary, status, rid, total = self.summary, result["status"], result["run_id"], self.total
        if status == "deferred":
            summary["deferred"] += 1
            summary["deferred_runs"].append(rid)
            self.say(f"[{position}/{total}] {rid} {result['error']}")
            return
        if status == "held":
            summary["held"] += 1
            summary["held_runs"].append({"run_id": rid, "error": result["error"]})
            self.say(f"[{position}/{total}] {rid} {result['error']}, skipped")
            return
        summary[{"ok": "ran", "done": "skipped"}.get(status, "failed")] += 1
        if status == "failed":
            summary["failures"].append({"run_id": rid, "error": result["error"]})
        for other in self.grids_of[rid][1:]:
            add_grid(self.results_dir, rid, other)
        write_runs_csv(self.results_dir)
        if status == "done":
            self.say(f"[{position}/{total}] {rid} finished meanwhile by another sweep, skipped")
            return
        detail = f": {result['error']}" if status != "ok" else ""
        self.say(f"[{position}/{total}] {rid} {status} ({result['seconds']:.1f} s){detail}")

    def close(self, started: float) -> dict:
        """Write runs.csv a last time and return the summary, with the wall time since ``started``."""
        summary = self.summary
        write_runs_csv(self.results_dir)
        summary["wall_seconds"] = round(time.perf_counter() - started, 3)
        held = f", {summary['held']} held by another sweep" if summary["held"] else ""
        held += f", {summary['deferred']} deferred (budget spent)" if summary["deferred"] else ""
        self.say(f"grid {summary['grid']}: {summary['ran']} ran, {summary['skipped']} skipped, {summary['failed']} "
                 f"failed{held} of {self.total} in {summary['wall_seconds']:.1f} s → {self.results_dir}")
        return summary


def _plan(selected: list[RunConfig], grids_of: dict[str, list[str]], tally: _Tally, *, notebook: Path,
          runs_root: Path, papermill_dir: Path, kernel: str, budget_minutes: float | None) -> list[tuple[int, dict]]:
    """The jobs to execute, ``[(position, job)]`` in the grids' order: finished runs are skipped, and a config that
    does not validate, or whose notebook parameters do not rebuild it, is recorded as failed without running."""
    results_dir = tally.results_dir
    cwd = REPO_ROOT if (REPO_ROOT / "notebooks").is_dir() else Path.cwd()
    deadline = time.time() + 60 * budget_minutes if budget_minutes else None
    todo = []
    for position, cfg in enumerate(selected, 1):
        rid, kind = cfg.run_id, RUN_KINDS[type(cfg)]
        grid_name = grids_of[rid][0]
        previous = load_run(results_dir, rid)
        if previous is not None and previous.get("status") == "ok":
            tally.skipped(rid, position)
            continue
        output = papermill_dir / grid_name / f"{rid}.ipynb"
        try:
            kind.validate(cfg)
            params = {**kind.to_params(cfg), **kind.directories(cfg, runs_root), "results_dir": str(results_dir),
                      "grid": grid_name, "notebook_path": _label(output)}
            if kind.from_params(params).run_id != rid:
                raise ConfigError(f"run {rid}: the notebook parameters do not rebuild the same config")
        except ConfigError as err:
            error = f"ConfigError: {err}"
            record_run(results_dir, cfg, status="failed", error=error, grids=[grid_name])
            tally.finished({"run_id": rid, "status": "failed", "error": error, "seconds": 0.0}, position)
            continue
        todo.append((position, {
            "cfg": cfg, "run_id": rid, "params": params, "output": str(output), "phase": kind.phase,
            "input": str(notebook if isinstance(cfg, RunConfig) else kind.notebook),
            "label": _label(output), "kernel": kernel, "cwd": str(cwd),
            "results_dir": str(results_dir), "grid": grid_name, "deadline": deadline, "budget_minutes": budget_minutes,
        }))
    return todo


def _execute_all(todo: list[tuple[int, dict]], jobs: int, tally: _Tally, slurm: SlurmConfig | None = None) -> None:
    """Execute the planned jobs phase by phase (tokenizers, then the generators that need their checkpoints): here
    or in a pool, or (``slurm`` given) as one submitit job array per phase."""
    for phase in sorted({job["phase"] for _, job in todo}):
        planned = [(position, job) for position, job in todo if job["phase"] == phase]
        if slurm is None:
            _execute_phase(planned, jobs, tally)
        else:
            _execute_on_cluster(planned, slurm, tally)


def _execute_phase(todo: list[tuple[int, dict]], jobs: int, tally: _Tally) -> None:
    """Execute the planned jobs, here (``jobs`` = 1, or one job) or in a pool of ``jobs`` worker processes, each
    kernel limited to ``cpus // jobs`` threads; a worker that dies records its run as failed."""
    if jobs == 1 or len(todo) <= 1:
        for position, job in todo:
            tally.say(f"[{position}/{tally.total}] {job['run_id']} running → {job['label']}")
            tally.finished(_execute(job), position)
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cpus // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {}
        for position, job in todo:
            tally.say(f"[{position}/{tally.total}] {job['run_id']} queued → {job['label']}")
            futures[pool.submit(_execute, {**job, "threads": threads})] = (position, job)
        for future in as_completed(futures):
            position, job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker process died: record the run as failed
                result = _record_lost(job, f"{_error_line(exc)} (notebook: {job['label']})")
            tally.finished(result, position)


def _execute_on_cluster(todo: list[tuple[int, dict]], slurm: SlurmConfig, tally: _Tally) -> None:
    """Execute the planned jobs as one submitit job array (``pqstudy.study.cluster.run_array``), each task running
    ``_execute`` with ``slurm.cpus_per_task`` threads; a task that gives no result records its run as failed. Runs
    whose budget is already spent are deferred here, without a task."""
    now = time.time()
    late = [(p, job) for p, job in todo if job.get("deadline") is not None and now > job["deadline"]]
    for position, job in late:
        tally.finished(_execute(job), position)  # returns "deferred" before touching anything
    todo = [(p, job) for p, job in todo if p not in {position for position, _ in late}]
    if not todo:
        return
    folder = log_folder(slurm, todo[0][1]["results_dir"])
    tally.say(f"{len(todo)} runs → {describe(slurm)}; logs in {folder.parent}")

    def submitted(start: int, tasks: list) -> None:
        for k, task in enumerate(tasks, start):
            position, job = todo[k]
            tally.say(f"[{position}/{tally.total}] {job['run_id']} submitted as job {task.job_id} → {job['label']}")

    items = [{**job, "threads": slurm.cpus_per_task} for _, job in todo]
    for k, result, error in run_array(_execute, items, slurm, folder, on_submit=submitted):
        position, job = todo[k]
        if error is not None:
            result = _record_lost(job, f"{error} (notebook: {job['label']})")
        tally.finished(result, position)


def _record_lost(job: dict, error: str) -> dict:
    """The result of a run whose worker or array task died without returning one: recorded ``failed`` with
    ``error``, under the run's lock (free again: its holder died). A run found ``ok`` meanwhile is kept (``done``);
    a lock another sweep has taken since is left to it (``held``, the run not recorded)."""
    rid, lock = job["run_id"], lock_path(job["results_dir"], job["run_id"])
    fd = try_lock(lock)
    if fd is None:
        return {"run_id": rid, "status": "held", "seconds": 0.0,
                "error": f"{error}; not recorded: held by another sweep since (pid {holder(lock)})"}
    try:
        record = load_run(job["results_dir"], rid)
        if record is not None and record.get("status") == "ok":
            add_grid(job["results_dir"], rid, job["grid"])
            return {"run_id": rid, "status": "done", "error": None, "seconds": 0.0}
        record_run(job["results_dir"], job["cfg"], status="failed", error=error, notebook=job["label"],
                   grids=[job["grid"]])
        return {"run_id": rid, "status": "failed", "error": error, "seconds": 0.0}
    finally:
        unlock(fd)
