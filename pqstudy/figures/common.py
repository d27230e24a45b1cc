"""What every figure shares: the style, the training-length rule, the seed spread, titles, saving.

Rules every figure keeps: no axis mixes runs of different training lengths (``mark_axis`` raises
:class:`MixedTrainingLengths`; a grid figure keeps its longest runs and says how many it left out; ``quality_vs_bits``
draws one row per length); a point with several seeds shows them (mean dot, min–max bar, each seed faint); no bar
chart on a cut axis; titles give the training steps and the seeds per point; runs are named by method, K, D (M), not
by run id (``pqstudy.study.methods.run_label``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from pqstudy.study.methods import method_of, order_methods
from pqstudy.study.store import configuration, grid_runs, numeric

log = logging.getLogger(__name__)

DPI = 120


class NoData(LookupError):
    """The results hold nothing for this figure."""


@contextlib.contextmanager
def style():
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        yield


def subplots(*args, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def ok_runs(df):
    """The ok tokenizer runs (generation runs have figures of their own: ``figures.generation``)."""
    if df is None or len(df) == 0:
        return df
    df = df[df["gen.kind"].isna()] if "gen.kind" in df.columns else df
    return df[df["status"] == "ok"] if "status" in df.columns else df



def steps_of(runs):
    """Training steps of each row (``train.steps``, else the ``steps`` column)."""
    steps = numeric(runs, "train.steps")
    return steps.fillna(numeric(runs, "steps")) if "steps" in runs.columns else steps


def training_lengths(runs) -> list[int]:
    """The distinct training lengths (steps) of ``runs``, sorted."""
    if runs is None or len(runs) == 0:
        return []
    return sorted({int(s) for s in steps_of(runs).dropna()})


class MixedTrainingLengths(ValueError):
    """Runs of different training lengths would share one axis."""


def check_one_length(runs, where: str) -> int | None:
    """The one training length of ``runs`` (None when there are no runs); raises MixedTrainingLengths when they
    mix several: a figure must never put a 200-step run and an 800-step run on one axis."""
    lengths = training_lengths(runs)
    if len(lengths) > 1:
        raise MixedTrainingLengths(f"{where}: runs of {lengths} training steps on one axis")
    return lengths[0] if lengths else None


def one_training_length(runs, where: str):
    """(the runs at the longest training length, a note on those left out or ""). The figures of one grid compare
    like with like; the note goes into the figure so the reader knows."""
    lengths = training_lengths(runs)
    if len(lengths) <= 1:
        return runs, ""
    keep = lengths[-1]
    steps = steps_of(runs)
    left = runs[steps != keep]
    note = f"{len(left)} run(s) at {'/'.join(map(str, lengths[:-1]))} steps left out"
    log.info("%s: %s (only %d-step runs drawn)", where, note, keep)
    return runs[steps == keep], note


def mark_axis(ax, runs, where: str) -> None:
    """Check that ``runs`` (those drawn on ``ax``) share one training length and tag ``ax`` with it (gid
    ``train.steps=<n>``; tests read it)."""
    length = check_one_length(runs, where)
    if length is not None:
        ax.set_gid(f"train.steps={length}")


def seed_points(runs, by: str, metric: str, scale: float = 1.0) -> list[tuple[float, np.ndarray]]:
    """[(x, the values of ``metric`` over the seeds at x)] sorted by x, NaNs dropped."""
    frame = runs.assign(_x=numeric(runs, by), _y=numeric(runs, metric) * scale).dropna(subset=["_x", "_y"])
    return [(float(x), group["_y"].to_numpy()) for x, group in frame.groupby("_x")]


def draw_seeds(ax, points, color, label=None, shift: float = 1.0, line: bool = True, marker: str = "o"):
    """Mean dot per x (joined by a line when ``line``), min–max whisker and each seed as a faint dot where there are
    several seeds; ``shift`` multiplies x (to separate series on a log axis). Returns (xs, means)."""
    xs = [x * shift for x, _ in points]
    means = [float(v.mean()) for _, v in points]
    for x, (_, values) in zip(xs, points, strict=True):
        if len(values) > 1:
            ax.vlines(x, values.min(), values.max(), color=color, lw=1.4, alpha=0.85, zorder=2)
            ax.scatter([x] * len(values), values, s=14, color=color, alpha=0.3, linewidths=0, zorder=2)
    ax.plot(xs, means, marker=marker, ms=6, ls="-" if line else "", lw=1.2, color=color, label=label, zorder=3,
            markeredgecolor="white", markeredgewidth=0.6)
    single = [(x, m) for x, m, (_, values) in zip(xs, means, points, strict=True) if len(values) == 1]
    if single:  # a point resting on one seed is drawn hollow
        ax.plot(*zip(*single, strict=True), marker=marker, ms=6, ls="", color=color, markerfacecolor="white",
                markeredgewidth=1.2, zorder=4)
    return xs, means


def seeds_per_point(runs, by: tuple[str, ...]) -> tuple[int, int]:
    """(fewest, most) seeds over the points ``by`` (columns) of ``runs``."""
    if runs is None or len(runs) == 0:
        return 0, 0
    keys = [runs[c].astype(str) if c in runs.columns else "" for c in by]
    counts = runs.groupby(keys)["run_id"].nunique() if keys else runs["run_id"].nunique()
    return int(np.min(counts)), int(np.max(counts))


SPREAD_NOTE = "dot: mean; bar: seed min–max; faint dots: each seed; hollow dot: one seed"


def seeds_text(runs, by: tuple[str, ...]) -> str:
    """"3 seeds", "1 seed" or "1–3 seeds": the seeds behind each point ``by`` (columns)."""
    lo, hi = seeds_per_point(runs, by)
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"


def runs_note(runs, by: tuple[str, ...] = ()) -> str:
    """"800 steps, 3 seeds per point" for a title (the training length, the seeds behind each point)."""
    lengths = training_lengths(runs)
    steps = "/".join(f"{s:,}" for s in lengths) + " steps" if lengths else "steps unknown"
    return f"{steps}, {seeds_text(runs, by)} per point"


def log2_axis(ax, values):
    ax.set_xscale("log", base=2)
    values = sorted(set(values))
    ax.set_xticks(values)
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.minorticks_off()


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def with_every_seed(df, runs):
    """``runs`` and every other ok run of their configurations (``store.configuration``): a grid may list one seed of
    a point whose other seeds another grid ran (pq-subspaces' M = 4 is pq-vs-vq-dim's PQ at D = 8)."""
    if runs is None or len(runs) == 0 or df is None or "status" not in df.columns:
        return runs
    ok = df[df["status"] == "ok"]
    return ok[configuration(ok).isin(set(configuration(runs)))]


def grid_one_length(df, grid: str, metric: str):
    """The ok runs of ``grid`` with ``metric`` (every seed of each of its configurations), of one training length."""
    runs = with_every_seed(df, grid_runs(df, grid))
    runs = runs[numeric(runs, metric).notna()] if runs is not None and len(runs) else runs
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs with {metric} in grid {grid}")
    runs, note = one_training_length(runs, grid)
    return runs.assign(_method=method_of(runs)), note


def runs_title(text: str, runs, by: tuple[str, ...], note: str = "") -> str:
    return f"{text}\n({runs_note(runs, by)}{'; ' + note if note else ''})"


def pd_concat(*frames):
    import pandas as pd

    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames) if frames else None


def run_row(df, rid: str):
    if df is None or len(df) == 0 or "run_id" not in df.columns:
        return None
    rows = df[df["run_id"] == rid]
    return rows.iloc[0] if len(rows) else None


def by_method(runs, spread: float) -> list[tuple[str, object, float]]:
    """``[(method, its rows, x multiplier)]`` in the registry's method order (``runs`` has a ``_method`` column);
    the multipliers, ``spread`` octaves apart and centred on 1, keep the series apart on a log x axis."""
    methods = order_methods(runs["_method"])
    return [(method, runs[runs["_method"] == method], 2 ** (spread * (i - (len(methods) - 1) / 2)))
            for i, method in enumerate(methods)]
