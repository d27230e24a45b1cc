"""Figures register where they are defined, and are made and saved from here::

    @figure("psnr_vs_dim", grids=("pq-vs-vq-dim",), description="PSNR vs embedding dim D, ...")
    def plot_psnr_vs_dim(df, grid="pq-vs-vq-dim"): ...

A figure reads the runs DataFrame (``reads="runs"``: called as ``plot(df)``) or the results folder
(``reads="results"``: ``plot(results_dir, df=df)``, for the figures that open exported codebooks, run histories or
saved reconstructions). ``grids``: the grids whose runs it draws (the ablation notebook shows them per grid).
``slow``: t-SNE; left out by ``make_all_figures(tsne=False)`` and by ``grid_figures``, and given ``max_points``.
Figures are listed (and written, and linked from the report) in the order they register.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pqstudy.figures.common import NoData, save_figure
from pqstudy.study.store import FIGURES_SUBDIR, runs_dataframe, select_profile

log = logging.getLogger(__name__)

READS = ("runs", "results")


@dataclass(frozen=True)
class Figure:
    name: str  # the file is <figures dir>/<name>.png
    plot: Callable  # → matplotlib Figure; raises NoData when the results hold nothing to draw
    description: str  # one line, for the report's figure list
    grids: tuple[str, ...] = ()
    reads: str = "runs"
    slow: bool = False

    def make(self, results_dir: Path, df, tsne_points: int = 1500):
        if self.reads == "runs":
            return self.plot(df)
        options = {"max_points": tsne_points} if self.slow else {}
        return self.plot(results_dir, df=df, **options)


FIGURES: dict[str, Figure] = {}


def figure(name: str, *, description: str, grids: tuple[str, ...] = (), reads: str = "runs", slow: bool = False):
    """Register the decorated plot function as figure ``name`` (see the module docstring)."""
    if reads not in READS:
        raise ValueError(f"figure {name!r}: reads={reads!r}; expected one of {READS}")

    def register(plot: Callable) -> Callable:
        if name in FIGURES:
            raise ValueError(f"figure {name!r}: registered twice ({FIGURES[name].plot.__module__} and "
                             f"{plot.__module__})")
        FIGURES[name] = Figure(name, plot, description, tuple(grids), reads, slow)
        return plot

    return register


def figures_dir(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / FIGURES_SUBDIR


def grid_figure_names(grid: str) -> tuple[str, ...]:
    """The figures that draw ``grid``'s runs (the slow t-SNE left out), in registration order."""
    return tuple(name for name, entry in FIGURES.items() if grid in entry.grids and not entry.slow)


def make_figure(name: str, results_dir: str | os.PathLike = "results", df=None, tsne_points: int = 1500):
    """One figure by name (see ``FIGURES``); raises NoData when its data is absent."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r}: unknown; choose one of {list(FIGURES)}")
    df = runs_dataframe(results_dir) if df is None else df
    return FIGURES[name].make(Path(results_dir), df, tsne_points)


def try_figure(function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, or None with a printed note when its data is absent (for notebooks)."""
    try:
        return function(*args, **kwargs)
    except NoData as note:
        print(f"{getattr(function, '__name__', 'figure')}: skipped ({note})")
        return None


def grid_figures(results_dir: str | os.PathLike, grid: str, df=None) -> list:
    """The figures of one grid (``grid_figure_names``) that have data, as Figures (notes printed for the others)."""
    df = runs_dataframe(results_dir) if df is None else df
    out = []
    for name in grid_figure_names(grid):
        try:
            out.append(make_figure(name, results_dir, df))
        except NoData as note:
            print(f"{name}: skipped ({note})")
    return out


def make_all_figures(results_dir: str | os.PathLike = "results", out_dir: str | os.PathLike | None = None,
                     tsne: bool = True, tsne_points: int = 1500, profile: str | None = None) -> list[Path]:
    """Write every figure that has data to ``<results_dir>/figures/<name>.png`` (or ``out_dir``); returns the paths
    written. A figure whose data is absent is skipped with a logged note (logger ``pqstudy.figures``, level INFO).
    ``profile``: only the runs of that profile (the tables' figures and the codebook runs chosen)."""
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir)
    out_dir = figures_dir(results_dir) if out_dir is None else Path(out_dir)
    df = select_profile(runs_dataframe(results_dir), profile)
    written = []
    for name, entry in FIGURES.items():
        if entry.slow and not tsne:
            continue
        try:
            fig = entry.make(results_dir, df, tsne_points)
        except NoData as note:
            log.info("figure %s skipped: %s", name, note)
            continue
        try:
            written.append(save_figure(fig, out_dir, name))
        finally:
            plt.close(fig)
    return written
