"""Sweeps on a cluster: the runs of one phase as one SLURM job array, through submitit.

``SlurmConfig`` holds what each array task asks SLURM for; ``check_cluster`` refuses a config that cannot run
(submitit missing, a non-positive number, no ``sbatch`` on PATH) before any work starts; ``run_array(fn, items,
slurm, folder)`` submits ``fn(item)`` for every item as one array (``executor.map_array``) and yields
``(index, result, error)`` as the tasks finish: ``error`` is None, or one line saying why the task gave no result
(it raised, was killed, ran out of time or memory) with the path of its submitit log.

This module knows nothing of runs: the sweep runner (``pqstudy.study.runner``) passes its ``_execute`` and records
each task's result. ``cluster="local"`` runs the tasks as processes of this machine (submitit's local executor): for
tests and laptops. submitit starts every local job at once, so the local cluster submits ``array_parallelism``
tasks at a time (waves); on SLURM the array's ``%N`` limit does that.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

CLUSTERS = ("slurm", "local")
SUBMITIT_SUBDIR = ".submitit"  # <results>/.submitit/<job id>/: submitit's pickles and each task's stdout/stderr
INSTALL_HINT = "pip install submitit  (or, in a checkout: pip install -e .[cluster])"
# How often the state of unfinished tasks is read: SLURM's accounting (sacct, cached by submitit) is not meant to be
# polled every second; a local task is a process of this machine.
POLL_SECONDS = {"slurm": 10.0, "local": 0.5}
KILL_WORDS = re.compile(r"slurmstepd|oom|OOM|Killed|CANCELLED|TIME LIMIT|MemoryError|Bus error|Segmentation fault")


@dataclass
class SlurmConfig:
    """What each array task (one run) asks for. The defaults fit one run of the default profile on one CPU node;
    a GPU run of the paper profile needs ``gpus_per_task=1`` and hours more (README: the paper profile's GPU
    hours)."""

    partition: str = ""  # sbatch --partition; "" = the cluster's default partition
    gpus_per_task: int = 0  # GPUs per run (sbatch --gpus-per-node; one task per node); 0 = a CPU run
    cpus_per_task: int = 1  # CPU cores per run; also its OMP_NUM_THREADS unless set (as --jobs sets cpus // jobs);
    # torch's own thread count stays the config's train.threads (part of the run id)
    time_min: int = 240  # wall-time limit per run: SLURM kills a task past it (the run is recorded failed)
    mem_gb: int = 16  # memory per run; over it SLURM kills the task (recorded failed)
    array_parallelism: int = 64  # at most this many runs at once (the array's %N); waves of it on the local cluster
    cluster: str = "slurm"  # "slurm" (sbatch) or "local" (processes of this machine: tests, laptops)
    folder: str = ""  # where submitit's pickles and logs go; "" = <results>/.submitit

    def __post_init__(self):
        for f in fields(self):
            value, least = getattr(self, f.name), (0 if f.name == "gpus_per_task" else 1)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise ValueError(f"slurm {f.name}={value!r} ({option_name(f.name)}): must be an integer >= {least}")
        if self.cluster not in CLUSTERS:
            raise ValueError(f"slurm cluster={self.cluster!r} ({option_name('cluster')}): must be one of "
                             f"{', '.join(CLUSTERS)}")


def option_name(field: str) -> str:
    """The command-line option of a ``SlurmConfig`` field: ``cpus_per_task`` → ``--slurm-cpus-per-task``."""
    return "--slurm-" + field.replace("_", "-")


def require_submitit():
    """The submitit module, or a RuntimeError saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise RuntimeError(f"--executor submitit needs the submitit package, which is not installed: {INSTALL_HINT}"
                           ) from None
    return submitit


def check_cluster(slurm: SlurmConfig) -> SlurmConfig:
    """``slurm`` if runs can be submitted with it from here: submitit importable and, for ``cluster="slurm"``,
    SLURM's ``sbatch`` and ``srun`` on PATH (submitit calls both). Else a RuntimeError saying what is missing."""
    require_submitit()
    if slurm.cluster == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"{option_name('cluster')} slurm: no {' or '.join(missing)} on PATH (not a SLURM "
                               f"login node?); to try the sweep on this machine use {option_name('cluster')} local")
    return slurm


def log_folder(slurm: SlurmConfig, results_dir: str | os.PathLike) -> Path:
    """Where submitit writes: ``slurm.folder`` or ``<results>/.submitit``, one sub-folder per job (``%j``)."""
    return Path(slurm.folder or Path(results_dir) / SUBMITIT_SUBDIR).resolve() / "%j"


def make_executor(slurm: SlurmConfig, folder: str | os.PathLike):
    """A submitit executor whose every task asks for ``slurm``'s resources; the tasks run this interpreter (on a
    cluster its path must exist on the nodes: a shared filesystem) with this process's environment."""
    submitit = require_submitit()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=slurm.cluster)
    options = {"slurm_partition": slurm.partition} if slurm.partition else {}
    executor.update_parameters(name="pqstudy", timeout_min=slurm.time_min, mem_gb=slurm.mem_gb,
                               cpus_per_task=slurm.cpus_per_task, gpus_per_node=slurm.gpus_per_task,
                               tasks_per_node=1, nodes=1, slurm_array_parallelism=slurm.array_parallelism,
                               **options)
    return executor


def submit_array(fn: Callable, items: list, slurm: SlurmConfig, folder: str | os.PathLike) -> list:
    """Submit ``fn(item)`` for each item as one job array; returns submitit's jobs, in the items' order."""
    jobs = make_executor(slurm, folder).map_array(fn, items)
    if slurm.cluster == "local":
        for job in jobs:  # submitit waits 15 s for a missing result file (NFS lag); a local task's file exists
            job._results_timeout_s = 0  # once its process has ended, so a killed task is reported at once
    return jobs


def run_array(fn: Callable, items: list, slurm: SlurmConfig, folder: str | os.PathLike,
              on_submit: Callable[[int, list], None] | None = None) -> Iterator[tuple[int, object, str | None]]:
    """Run ``fn(item)`` for every item as array tasks and yield ``(index, result, None)`` or ``(index, None,
    error)`` as each finishes. ``on_submit(start, jobs)`` is called after each submission: submitit's jobs of the
    items from index ``start`` on (to print the job ids)."""
    submitit = require_submitit()
    wave = slurm.array_parallelism if slurm.cluster == "local" else len(items)
    for start in range(0, len(items), max(wave, 1)):
        jobs = submit_array(fn, items[start:start + wave], slurm, folder)
        if on_submit is not None:
            on_submit(start, jobs)
        index = {id(job): start + k for k, job in enumerate(jobs)}
        for job in submitit.helpers.as_completed(jobs, poll_frequency=POLL_SECONDS[slurm.cluster]):
            try:
                yield index[id(job)], job.result(), None
            except Exception as exc:  # noqa: BLE001 - the task died or raised: the caller records why
                yield index[id(job)], None, task_failure(job, exc)
    with contextlib.suppress(OSError):  # submitit makes the literal ".../%j" template folder, and leaves it empty
        Path(folder).rmdir()  # once each job's files are in its own folder (not empty: kept)


def task_failure(job, exc: BaseException) -> str:
    """One line: why the task gave no result, then the job id and the path of its log. A Python exception in the
    task → its last traceback line; no result at all → submitit's first line (the task was killed: out of time or
    memory, cancelled, its node lost) and the task's state."""
    text = str(exc)
    if type(exc).__name__ == "FailedJobError":  # raised inside the task: submitit quotes its traceback
        trace = text.split("-" * 22)
        lines = [line for line in (trace[1] if len(trace) > 2 else text).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else "the task raised an exception"
    elif type(exc).__name__ == "UncompletedJobError":
        reason = "the task ended without a result (killed: out of time or memory, cancelled, node lost?)"
        if "(state:" in text:
            reason += f"; job state {text.split('(state:', 1)[1].split(')', 1)[0].strip()}"
        said = _kill_line(job.paths.stderr)
        if said:
            reason += f"; its log says: {said}"
    else:
        reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    reason = " ".join(reason.split())
    reason = reason if len(reason) <= 600 else reason[:597] + "..."
    return f"{reason} (submitit job {job.job_id}, log: {job.paths.stderr})"


def _kill_line(path: Path) -> str:
    """The last line of a task's log that says why it was killed ("" when none does): SLURM writes e.g.
    ``slurmstepd: error: *** JOB 42 ON n1 CANCELLED AT ... DUE TO TIME LIMIT ***`` or ``... oom_kill event ...``."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-50:]
    except OSError:
        return ""
    telling = [line.strip() for line in lines if KILL_WORDS.search(line)]
    return telling[-1] if telling else ""


def describe(slurm: SlurmConfig) -> str:
    """One line for the progress output: the cluster and what each task asks for."""
    where = f"partition {slurm.partition}" if slurm.partition else "default partition"
    if slurm.cluster == "local":
        where = f"this machine ({sys.executable})"
    return (f"submitit {slurm.cluster}: {where}, per run {slurm.cpus_per_task} CPU, {slurm.gpus_per_task} GPU, "
            f"{slurm.mem_gb} GB, {slurm.time_min} min; at most {slurm.array_parallelism} at once")
