"""PQGAN's figures: PSNR vs embedding dim D (VQ and PQ), vs K per subspace, vs the number of subspaces M."""

from __future__ import annotations

from pqstudy.figures.common import (
    SPREAD_NOTE,
    by_method,
    draw_seeds,
    grid_one_length,
    log2_axis,
    mark_axis,
    runs_title,
    seed_points,
    style,
    subplots,
)
from pqstudy.figures.registry import figure
from pqstudy.study.methods import method_colour, method_label
from pqstudy.study.store import grid_runs, numeric


def _annotate_bits(ax, runs, by: str, xs, means) -> None:
    """Write each point's bits per position above it (a PQ point spends M·log2 K bits, a VQ point log2 K)."""
    for x, y in zip(xs, means, strict=True):
        bits = numeric(runs[numeric(runs, by) == x], "bits_per_position").dropna()
        if len(bits):
            text = f"{bits.iloc[0]:g} bits" if bits.nunique() == 1 else f"{bits.min():g}–{bits.max():g} bits"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)


@figure("psnr_vs_dim", description="PSNR vs embedding dim D, VQ vs PQ, with bits/position", grids=("pq-vs-vq-dim",))
def plot_psnr_vs_dim(df, grid: str = "pq-vs-vq-dim"):
    """PSNR vs embedding dim D for VQ and PQ (mean dot, seed min–max, each seed faint), every point labelled with
    its bits per position (PQ spends M·log2 K, VQ log2 K: the two do not cost the same)."""
    runs, note = grid_one_length(df, grid, "psnr")
    with style():
        fig, ax = subplots(figsize=(6.6, 4.4))
        dims = []
        for method, sub, shift in by_method(runs, spread=0.04):
            points = seed_points(sub, "quantizer.dim", "psnr")
            dims += [x for x, _ in points]
            ks = sorted(set(numeric(sub, "quantizer.codebook_size").dropna().astype(int)))
            detail = f"K={'/'.join(map(str, ks))}"
            if method.startswith("pq"):
                sub_dims = sorted(set((numeric(sub, "quantizer.dim") / numeric(sub, "quantizer.subspaces"))
                                      .dropna().astype(int)))
                detail += f" per subspace, {'/'.join(map(str, sub_dims))} channels each"
            xs, means = draw_seeds(ax, points, method_colour(method), f"{method_label(method)} ({detail})", shift=shift)
            _annotate_bits(ax, sub, "quantizer.dim", [x for x, _ in points], means)
        mark_axis(ax, runs, "psnr_vs_dim")
        log2_axis(ax, dims)
        ax.margins(y=0.15)
        ax.set(xlabel="embedding dim D (channels per position)", ylabel="PSNR on the test split (dB)",
               title=runs_title(f"PSNR vs D ({grid}); labels: bits per position", runs, ("_method", "quantizer.dim"),
                            note))
        ax.legend(fontsize=7)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


def _single_curve(df, grid: str, x: str, xlabel: str, title: str, where: str):
    runs, note = grid_one_length(df, grid, "psnr")
    with style():
        fig, ax = subplots(figsize=(6.4, 4.3))
        points = seed_points(runs, x, "psnr")
        xs, means = draw_seeds(ax, points, method_colour("pq"))
        _annotate_bits(ax, runs, x, xs, means)
        mark_axis(ax, runs, where)
        log2_axis(ax, xs)
        ax.set(xlabel=xlabel, ylabel="PSNR on the test split (dB)",
               title=runs_title(f"{title} ({grid}); labels: bits per position", runs, (x,), note))
        ax.margins(y=0.15)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


def _values(runs, column: str) -> str:
    """The distinct integer values of ``column`` in ``runs``, sorted and ``/``-joined ("" without runs)."""
    if runs is None or len(runs) == 0:
        return ""
    return "/".join(map(str, sorted(set(numeric(runs, column).dropna().astype(int)))))


@figure("psnr_vs_codebook_size", description="PSNR vs K per subspace", grids=("pq-codebook-size",))
def plot_psnr_vs_codebook_size(df, grid: str = "pq-codebook-size"):
    """PQ's PSNR vs K per subspace (log2 x), each point labelled with its bits per position."""
    runs = grid_runs(df, grid)
    title = f"PSNR vs K per subspace, D={_values(runs, 'quantizer.dim')}, M={_values(runs, 'quantizer.subspaces')}"
    return _single_curve(df, grid, "quantizer.codebook_size", "codebook size K per subspace (entries)", title,
                         "psnr_vs_codebook_size")


@figure("psnr_vs_subspaces", description="PSNR vs number of subspaces M", grids=("pq-subspaces",))
def plot_psnr_vs_subspaces(df, grid: str = "pq-subspaces"):
    """PSNR vs number of subspaces M (M = 1 is VQ, M = D scalar quantisation), labelled with bits per position."""
    runs = grid_runs(df, grid)
    title = f"PSNR vs subspaces M, D={_values(runs, 'quantizer.dim')}, K={_values(runs, 'quantizer.codebook_size')}"
    return _single_curve(df, grid, "quantizer.subspaces", "number of subspaces M", title, "psnr_vs_subspaces")
