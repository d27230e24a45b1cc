"""The results store: one JSON file per run under ``<results>/runs/<run_id>.json``, and one tidy table of them all.

A run file is written atomically (temp file + rename), so a reader, or a sweep killed mid-write, never sees half of
one. It holds::

    {"run_id", "grids": [grid names], "status": "ok" | "failed", "error": str | None, "config": cfg.to_dict(),
     "metrics": {...}, "history": [...], "wall_seconds", "notebook": path, "finished_at": ISO time}

``runs_dataframe`` flattens every run file into one row (``results/runs.csv`` via ``write_runs_csv``).

A run recorded ``ok`` whose metrics hold a PSNR or SSIM that is missing (None) or not finite diverged: it is
stored as ``failed`` with that reason, never as a finished run without numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from pathlib import Path

from pqstudy.config import SECTIONS, RunConfig, eval_metric_names
from pqstudy.generation.config import GEN_SECTION, GenRunConfig
from pqstudy.runio import atomic_write, read_json, write_json

RUNS_SUBDIR = "runs"
RUNS_CSV = "runs.csv"
FIGURES_SUBDIR = "figures"  # <results>/figures/<name>.png: written by pqstudy.figures, linked from the report
RECON_SUBDIR = "recon"  # <results>/recon/<run_id>.png: a run's reconstruction grid (save_reconstruction)
RECON_DPI = 120
SAMPLES_SUBDIR = "samples"  # <results>/samples/<run_id>.png: a generation run's sample grid (save_samples_figure)
STATUSES = ("ok", "failed")
REQUIRED_FINITE = ("psnr", "ssim")  # an ok run has these finite when it has them at all

# Metric columns of the table, in this order; a run that lacks one leaves it empty.
# utilisation/perplexity: over the training split (one pass of the final model, as the papers count them);
# *_test: over the test split; positions_counted: latent positions of that pass (images × h × w, not × M).
METRIC_COLUMNS = (
    "bits_per_position", "psnr", "ssim", "lpips", "rfid", "kid", "cmmd", "utilisation", "perplexity",
    "utilisation_test", "perplexity_test", "positions_counted", "positions_per_entry",
)
CONFIG_SECTIONS = (*SECTIONS, GEN_SECTION)  # the config columns: a tokenizer run's sections, a generator's gen
REFERENCE_METRICS = ("lpips", "rfid", "kid", "cmmd")
# Every metric that can be missing gets a ``<name>_missing_reason`` column.
MISSING_REASON_COLUMNS = tuple(f"{m}_missing_reason" for m in (*REFERENCE_METRICS, "utilisation"))


def run_path(results_dir: str | os.PathLike, rid: str) -> Path:
    return Path(results_dir) / RUNS_SUBDIR / f"{rid}.json"


def recon_path(results_dir: str | os.PathLike, rid: str) -> Path:
    """Where a run's reconstruction grid is saved (by the train_eval notebook, through ``save_reconstruction``)."""
    return Path(results_dir) / RECON_SUBDIR / f"{rid}.png"


def save_reconstruction(fig, results_dir: str | os.PathLike, rid: str) -> Path:
    """Save a run's reconstruction-grid figure as ``results/recon/<run_id>.png`` (the reconstructions figure shows
    it)."""
    path = recon_path(results_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=RECON_DPI, bbox_inches="tight")
    return path


def samples_path(results_dir: str | os.PathLike, rid: str) -> Path:
    """Where a generation run's sample grid is saved (by the generation notebook, through ``save_samples_figure``)."""
    return Path(results_dir) / SAMPLES_SUBDIR / f"{rid}.png"


def save_samples_figure(fig, results_dir: str | os.PathLike, rid: str) -> Path:
    path = samples_path(results_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=RECON_DPI, bbox_inches="tight")
    return path


def load_run(results_dir: str | os.PathLike, rid: str) -> dict | None:
    """The run file of ``rid``, or None when there is none (or it cannot be read)."""
    path = run_path(results_dir, rid)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError) as err:
        warnings.warn(f"{path}: unreadable run file ({err}); treating the run as not done", stacklevel=2)
        return None


def _merge_grids(*lists) -> list[str]:
    out: list[str] = []
    for names in lists:
        for name in names or ():
            if name and name not in out:
                out.append(name)
    return out


def divergence(metrics: dict | None) -> str | None:
    """Why metrics cannot belong to a finished run (a PSNR/SSIM that is None or not finite), or None."""
    bad = []
    for name in REQUIRED_FINITE:
        if name in (metrics or {}):
            value = metrics[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                bad.append(f"{name}={value}")
    return f"diverged: non-finite test metrics ({', '.join(bad)})" if bad else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def record_run(
    results_dir: str | os.PathLike,
    cfg: RunConfig | GenRunConfig,
    *,
    status: str = "ok",
    metrics: dict | None = None,
    history: list | None = None,
    error: str | None = None,
    wall_seconds: float | None = None,
    notebook: str | os.PathLike | None = None,
    grids=(),
) -> dict:
    """Write ``<results_dir>/runs/<run_id>.json`` atomically and return the record.

    ``cfg`` is a tokenizer run's ``RunConfig`` or a generation run's ``GenRunConfig`` (whose config holds the
    tokenizer's sections and ``gen``). The grid names are merged with those of an existing record of the same run,
    so a run shared by several grids
    lists them all. Recording a run again replaces its status, metrics and error.
    """
    if status not in STATUSES:
        raise ValueError(f"status={status!r}: expected one of {list(STATUSES)}")
    if status == "ok" and (reason := divergence(metrics)) is not None:
        status, error = "failed", reason
    if isinstance(grids, str):
        grids = [grids]
    rid = cfg.run_id
    previous = load_run(results_dir, rid) or {}
    record = {
        "run_id": rid,
        "grids": _merge_grids(previous.get("grids"), grids),
        "status": status,
        "error": error if status != "ok" else None,
        "config": cfg.to_dict(),
        "metrics": dict(metrics or {}),
        "history": list(history or []),
        "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 3),
        "notebook": None if notebook is None else str(notebook),
        "finished_at": _now(),
    }
    write_json(run_path(results_dir, rid), record)
    return record


def add_grid(results_dir: str | os.PathLike, rid: str, grid: str) -> bool:
    """Add ``grid`` to the ``grids`` of an existing run file (atomically); True when the file changed."""
    record = load_run(results_dir, rid)
    if record is None or not grid or grid in record.get("grids", []):
        return False
    record["grids"] = _merge_grids(record.get("grids"), [grid])
    write_json(run_path(results_dir, rid), record)
    return True


def load_runs(results_dir: str | os.PathLike = "results") -> list[dict]:
    """Every run file under ``<results_dir>/runs``, sorted by run id (unreadable files are skipped with a warning)."""
    folder = Path(results_dir) / RUNS_SUBDIR
    runs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            runs.append(read_json(path))
        except (OSError, json.JSONDecodeError) as err:
            warnings.warn(f"{path}: unreadable run file skipped ({err})", stacklevel=2)
    return runs


def _flat_value(value):
    """A config value as a table holds it: tuples/lists as ``"(1, 2, 2)"``, everything else as is."""
    if isinstance(value, (list, tuple)):
        return str(tuple(value))
    return value


def _flat_config(config: dict) -> dict:
    """A run's config as table columns: ``profile`` and one ``section.field`` column per field (a generation run:
    its tokenizer's fields, ``tokenizer_run_id`` and the ``gen.field`` columns)."""
    out = {"profile": config.get("profile")}
    if "tokenizer_run_id" in config:
        out["tokenizer_run_id"] = config["tokenizer_run_id"]
    for section in CONFIG_SECTIONS:
        for key, value in (config.get(section) or {}).items():
            out[f"{section}.{key}"] = _flat_value(value)
    return out


def configuration(df):
    """One string per row naming its configuration: every config column that changes results, the seeds
    (``train.seed``, ``gen.seed``) excepted. Two rows share it exactly when they differ by seed alone: what a figure
    or table may pool as one point. A field recorded after some runs (``ID_DEFAULTS``) reads as its default there."""
    from pqstudy.config import ID_DEFAULTS, NON_RESULT_FIELDS

    columns = [c for c in config_columns(df) if c not in NON_RESULT_FIELDS and c not in ("train.seed", "gen.seed")]
    frame = df[columns].copy()
    for column, default in ID_DEFAULTS.items():
        if column in frame:
            frame[column] = frame[column].where(frame[column].notna(), default)
    return frame.map(str).agg("|".join, axis=1) if columns else df["run_id"].map(lambda _: "")


def config_columns(df) -> list[str]:
    """The ``section.field`` config columns of a runs DataFrame (as ``_flat_config`` names them), in order."""
    return [c for c in df.columns if "." in c and c.split(".")[0] in CONFIG_SECTIONS]


def _row(run: dict) -> dict:
    config = run.get("config") or {}
    metrics = run.get("metrics") or {}
    train_cfg = config.get("train") or {}
    own = config.get(GEN_SECTION) or train_cfg  # a generation run's seed and steps are its generator's
    row = {
        "run_id": run.get("run_id"),
        "grids": ";".join(run.get("grids") or []),
        "status": run.get("status"),
        "error": run.get("error"),
    }
    row.update(_flat_config(config))
    row["seed"] = own.get("seed")
    row["steps"] = metrics.get("steps", own.get("steps"))
    row["wall_seconds"] = run.get("wall_seconds")
    row["train_seconds"] = metrics.get("train_seconds")
    for name in METRIC_COLUMNS:
        row[name] = metrics.get(name)
    requested = set(eval_metric_names(train_cfg.get("eval_metrics", "")))
    for name in MISSING_REASON_COLUMNS:
        metric = name[: -len("_missing_reason")]
        row[name] = metrics.get(name) or metrics.get(f"{metric}_not_computed")  # missing weights | not computed
        if (row[name] is None and run.get("status") == "ok" and metric in REFERENCE_METRICS
                and metrics.get(metric) is None and metric not in requested):
            row[name] = "not requested (train.eval_metrics)"
    for key in sorted(metrics):  # any other scalar metric, after the fixed columns
        value = metrics[key]
        shown = key not in row and key != "run_id" and not key.endswith("_not_computed")  # those are in the reasons
        if shown and not isinstance(value, (dict, list)):
            row[key] = value
    row["notebook"] = run.get("notebook")
    row["finished_at"] = run.get("finished_at")
    return row


def runs_dataframe(results_dir: str | os.PathLike = "results"):
    """One row per run file: run id, grids (``;``-joined), status, error, every config field as ``section.field``,
    seed, steps, wall time, the metrics (empty when a run lacks them) and their ``*_missing_reason`` columns."""
    import pandas as pd

    rows = [_row(run) for run in load_runs(results_dir)]
    if not rows:
        base = ["run_id", "grids", "status", "error", "profile", *_flat_config(RunConfig().to_dict()),
                "seed", "steps", "wall_seconds", "train_seconds", *METRIC_COLUMNS, *MISSING_REASON_COLUMNS,
                "notebook", "finished_at"]
        return pd.DataFrame(columns=list(dict.fromkeys(base)))
    columns = list(dict.fromkeys(key for row in rows for key in row))
    tail = ["notebook", "finished_at"]
    columns = [c for c in columns if c not in tail] + tail
    return pd.DataFrame(rows, columns=columns)


def write_runs_csv(results_dir: str | os.PathLike = "results") -> Path:
    """Write ``<results_dir>/runs.csv`` (atomically) from every run file; returns its path."""
    text = runs_dataframe(results_dir).to_csv(index=False)
    return atomic_write(Path(results_dir) / RUNS_CSV, lambda f: f.write(text.encode()))


# ---------------------------------------------------------------------------------------------------------------
# reading the runs DataFrame (the tables, the verdicts and the figures select runs through these)


def numeric(df, column: str):
    """Column ``column`` of ``df`` as numbers (NaN where a value is not one, or everywhere when it is absent)."""
    import numpy as np
    import pandas as pd

    if column not in df.columns:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[column], errors="coerce")


def truthy(value) -> bool:
    """A flag read from a table cell: True, 1, "true", "yes", "on" (NaN and None are False)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def grid_runs(df, grid: str, ok: bool = True):
    """Rows of ``df`` belonging to ``grid`` (the ``;``-joined ``grids`` column), only status ``ok`` by default."""
    if df is None or len(df) == 0 or "grids" not in df.columns:
        return df.iloc[0:0] if df is not None else None
    member = df["grids"].fillna("").astype(str).map(lambda s: grid in s.split(";"))
    out = df[member]
    if ok and "status" in out.columns:
        out = out[out["status"] == "ok"]
    return out


def select_profile(df, profile: str | None):
    """The rows of ``profile`` (all rows when it is None or the frame has no ``profile`` column)."""
    if not profile or df is None or "profile" not in df.columns or len(df) == 0:
        return df
    return df[df["profile"] == profile]
