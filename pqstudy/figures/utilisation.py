"""Codebook utilisation: vs codebook size per method, and during training (VQGAN-LC's figures)."""

from __future__ import annotations

import numpy as np

from pqstudy.figures.common import (
    SPREAD_NOTE,
    NoData,
    by_method,
    draw_seeds,
    grid_one_length,
    mark_axis,
    one_training_length,
    runs_title,
    seed_points,
    style,
    subplots,
)
from pqstudy.figures.registry import figure
from pqstudy.study.methods import method_colour, method_label, method_of, order_methods
from pqstudy.study.store import grid_runs, load_run, numeric, runs_dataframe


@figure(
    "utilisation_vs_codebook_size",
    description="codebook utilisation vs size per method",
    grids=("lc-method-size",),
)
def plot_utilisation_vs_codebook_size(df, grid: str = "lc-method-size"):
    """Codebook utilisation (share of entries used at least once in one pass over the train split, the
    ``utilisation`` column) vs codebook size, one series per method; log x, seed spread."""
    runs, note = grid_one_length(df, grid, "utilisation")
    with style():
        fig, ax = subplots(figsize=(6.6, 4.3))
        sizes = []
        # VQ and VQ-FC both sit near 0%: a marker each and a wider spread keep one from hiding the other
        for i, (method, sub, shift) in enumerate(by_method(runs, spread=0.12)):
            points = seed_points(sub, "quantizer.codebook_size", "utilisation", 100.0)
            sizes += [x for x, _ in points]
            draw_seeds(ax, points, method_colour(method), method_label(method), shift=shift,
                       marker=("o", "s", "^", "D", "v", "P")[i % 6])
        mark_axis(ax, runs, "utilisation_vs_codebook_size")
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(sizes)))
        ax.set_xticklabels([f"{s:,.0f}" for s in sorted(set(sizes))])
        ax.minorticks_off()
        ax.set(xlabel="codebook size K (entries)", ylabel="codebook utilisation, train split (%)", ylim=(-2, 104),
               title=runs_title(f"Codebook utilisation vs size ({grid})", runs, ("_method", "quantizer.codebook_size"),
                            note))
        ax.legend(title="method", fontsize=8)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


@figure("utilisation_per_epoch", description="utilisation during training", grids=("lc-method-size",), reads="results")
def plot_utilisation_per_epoch(results_dir, grid: str = "lc-method-size", df=None):
    """Utilisation during training (``history`` records: the share of entries used in each window) vs epoch, as in
    VQGAN-LC: one panel per codebook size (the smallest and the largest of ``grid``), one line per method (mean over
    seeds, band: seed min–max)."""
    df = runs_dataframe(results_dir) if df is None else df
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs in grid {grid}")
    runs, note = one_training_length(runs, grid)
    curves = []  # (row, [(epoch, utilisation %)])
    for _, row in runs.iterrows():
        run = load_run(results_dir, row["run_id"]) or {}
        history = [r for r in run.get("history") or [] if r.get("utilisation") is not None]
        if history:
            curves.append((row, [(r.get("epoch", r.get("step")), 100 * r["utilisation"]) for r in history]))
    if not curves:
        raise NoData(f"no ok run with a utilisation history in grid {grid}")
    drawn = runs[runs["run_id"].isin([row["run_id"] for row, _ in curves])]
    all_sizes = sorted({int(row["quantizer.codebook_size"]) for row, _ in curves})
    sizes = sorted({all_sizes[0], all_sizes[-1]})
    with style():
        fig, axes = subplots(1, len(sizes), figsize=(4.2 * len(sizes) + 1.0, 3.9), sharey=True, squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            chosen = [(r, c) for r, c in curves if int(r["quantizer.codebook_size"]) == size]
            by_method: dict[str, list] = {}
            for row, curve in chosen:
                by_method.setdefault(method_of(row.to_frame().T).iloc[0], []).append(curve)
            for method in order_methods(by_method):
                table: dict[float, list[float]] = {}
                for curve in by_method[method]:
                    for x, y in curve:
                        table.setdefault(float(x), []).append(y)
                xs = sorted(table)
                mean = [np.mean(table[x]) for x in xs]
                n = len(by_method[method])
                if n > 1:
                    ax.fill_between(xs, [min(table[x]) for x in xs], [max(table[x]) for x in xs],
                                    color=method_colour(method), alpha=0.2, linewidth=0)
                ax.plot(xs, mean, marker="o", ms=3, color=method_colour(method),
                        label=f"{method_label(method)} ({n} seed{'s' if n > 1 else ''})")
            mark_axis(ax, drawn[numeric(drawn, "quantizer.codebook_size") == size], "utilisation_per_epoch")
            ax.set(title=f"K = {size:,}", xlabel="epoch (passes over the train split)", ylim=(-2, 104))
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("entries used in the window (%)")
        fig.suptitle(runs_title(f"Codebook utilisation during training ({grid}); line: mean, band: seed min–max", drawn,
                            ("quantizer.kind", "quantizer.codebook_size"), note), fontsize=9)
        fig.tight_layout()
    return fig
