"""Quality against rate: VQ, PQ and LC at equal bits per position, and every configuration vs bits per position."""

from __future__ import annotations

from pqstudy.figures.common import (
    SPREAD_NOTE,
    NoData,
    by_method,
    draw_seeds,
    grid_one_length,
    log2_axis,
    mark_axis,
    ok_runs,
    pd_concat,
    runs_title,
    seed_points,
    seeds_text,
    steps_of,
    style,
    subplots,
    training_lengths,
)
from pqstudy.figures.registry import figure
from pqstudy.study.grids import GRIDS
from pqstudy.study.methods import method_colour, method_label, method_of, order_methods
from pqstudy.study.store import configuration, numeric

GRID_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _config_groups(runs):
    """The runs of each configuration (every result-changing field but the seed: ``store.configuration``), whose
    seeds one point averages."""
    return runs.assign(_config=configuration(runs)).groupby("_config", sort=False)


RATE_MATCHED_GRID = "rate-matched"


@figure("rate_matched", description="VQ, PQ and LC at equal bits per position", grids=("rate-matched",))
def plot_rate_matched(df, grid: str = RATE_MATCHED_GRID):
    """VQ, PQ and LC at equal bits per position (the ``rate-matched`` grid): PSNR (and LPIPS when measured) vs bits
    per position, one series per method, mean dot with seed min–max and each seed faint; each point names its
    configuration (K, or M·K for PQ)."""
    runs, note = grid_one_length(df, grid, "psnr")
    panels = [("psnr", "PSNR on the test split (dB), higher is better")]
    if numeric(runs, "lpips").notna().any():
        panels.append(("lpips", "LPIPS on the test split, lower is better"))
    bits = sorted(set(numeric(runs, "bits_per_position").dropna()))
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int)))
    with style():
        fig, axes = subplots(1, len(panels), figsize=(5.6 * len(panels) + 1.4, 4.4), squeeze=False)
        for ax, (metric, label) in zip(axes[0], panels, strict=True):
            for method, sub, shift in by_method(runs, spread=0.05):
                points = seed_points(sub, "bits_per_position", metric)
                xs, means = draw_seeds(ax, points, method_colour(method), method_label(method), shift=shift)
                for (x, _), xd, y in zip(points, xs, means, strict=True):
                    row = sub[numeric(sub, "bits_per_position") == x].iloc[0]
                    k, m = int(numeric(row.to_frame().T, "quantizer.codebook_size").iloc[0]), \
                        numeric(row.to_frame().T, "quantizer.subspaces").iloc[0]
                    text = f"M={int(m)}·K={k:,}" if method.startswith("pq") else f"K={k:,}"
                    ax.annotate(text, (xd, y), textcoords="offset points", xytext=(6, 0), va="center", fontsize=6.5,
                                color=method_colour(method))
            mark_axis(ax, runs, "rate_matched")
            log2_axis(ax, bits)
            ax.set_xlim(min(bits) / 2 ** 0.4, max(bits) * 2 ** 0.5)
            ax.margins(y=0.12)
            ax.set(xlabel="bits per position (M · log2 K)", ylabel=label)
        axes[0][0].legend(title="method", fontsize=8)
        axes[0][0].text(0.0, -0.2, SPREAD_NOTE, transform=axes[0][0].transAxes, fontsize=7, color="0.35")
        fig.suptitle(runs_title(f"Rate-matched: VQ, PQ and LC at equal bits per position, D={'/'.join(map(str, dims))} "
                            f"({grid})", runs, ("_method", "bits_per_position"), note), fontsize=10)
        fig.tight_layout()
    return fig


@figure(
    "quality_vs_bits",
    description="PSNR and SSIM vs bits per position",
    grids=("pq-vs-vq-dim", "pq-codebook-size", "pq-subspaces", "continuous", "rate-matched"),
)
def plot_quality_vs_bits(df):
    """PSNR and SSIM vs bits per position for every ok quantised configuration (mean over its seeds, bar: seed
    min–max), coloured by method, marker by grid (its first); continuous baselines (no rate) as dashed lines. One
    row of panels per training length: runs of different lengths never share an axis."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    runs = ok_runs(df)
    if runs is None or len(runs) == 0:
        raise NoData("no ok runs")
    runs = runs.assign(_method=method_of(runs), _bits=numeric(runs, "bits_per_position"),
                       _psnr=numeric(runs, "psnr"), _ssim=numeric(runs, "ssim"), _steps=steps_of(runs),
                       _grid=runs["grids"].fillna("").astype(str).map(lambda s: s.split(";")[0] or "(none)"))
    quantised_all = runs[runs["_bits"].notna() & runs["_psnr"].notna()]
    if len(quantised_all) == 0:
        raise NoData("no ok quantised run with bits per position and PSNR")
    lengths = training_lengths(quantised_all)
    known = list(GRIDS)
    grids = sorted(dict.fromkeys(quantised_all["_grid"]),
                   key=lambda g: (known.index(g) if g in known else len(known), g))
    markers = {g: GRID_MARKERS[i % len(GRID_MARKERS)] for i, g in enumerate(grids)}
    methods = order_methods(quantised_all["_method"])
    continuous_kinds = order_methods(runs.loc[runs["_bits"].isna() & runs["_method"].isin(["ae", "kl"]), "_method"])
    with style():
        fig, axes = subplots(len(lengths), 2, figsize=(11.5, 4.0 * len(lengths)), squeeze=False)
        for row, length in enumerate(lengths):
            quantised = quantised_all[quantised_all["_steps"] == length]
            per_config = quantised.assign(_config=configuration(quantised))
            continuous = runs[runs["_bits"].isna() & runs["_method"].isin(["ae", "kl"]) & (runs["_steps"] == length)]
            for ax, metric, label in ((axes[row][0], "_psnr", "PSNR on the test split (dB)"),
                                      (axes[row][1], "_ssim", "SSIM on the test split")):
                for _, group in _config_groups(quantised):
                    values = group[metric].dropna().to_numpy()
                    if not len(values):
                        continue
                    color, x = method_colour(group["_method"].iloc[0]), group["_bits"].iloc[0]
                    if len(values) > 1:
                        ax.vlines(x, values.min(), values.max(), color=color, lw=1.2, alpha=0.8)
                    ax.scatter([x], [values.mean()], s=40, marker=markers[group["_grid"].iloc[0]], color=color,
                               edgecolors="white", linewidths=0.5, alpha=0.9, zorder=3)
                for kind in order_methods(continuous["_method"]):
                    values = continuous.loc[continuous["_method"] == kind, metric].dropna()
                    if len(values):
                        ax.axhline(values.mean(), ls="--", lw=1, color=method_colour(kind))
                mark_axis(ax, pd_concat(quantised, continuous), "quality_vs_bits")
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.set(xlabel="bits per position (M · log2 K)", ylabel=label,
                       title=f"{length:,} training steps; {seeds_text(per_config, ('_config',))} per point")
                ax.title.set_fontsize(9)
        method_handles = [Line2D([], [], ls="", marker="o", color=method_colour(m), label=method_label(m))
                          for m in methods]
        method_handles += [Line2D([], [], ls="--", color=method_colour(k), label=method_label(k))
                           for k in continuous_kinds]
        grid_handles = [Line2D([], [], ls="", marker=markers[g], color="0.35", label=g) for g in grids]
        first = fig.legend(handles=method_handles, title="method", loc="upper left", bbox_to_anchor=(1.0, 0.95),
                           fontsize=7, title_fontsize=8, frameon=False)
        fig.add_artist(first)
        fig.legend(handles=grid_handles, title="grid", loc="lower left", bbox_to_anchor=(1.0, 0.05), fontsize=7,
                   title_fontsize=8, frameon=False)
        fig.suptitle("Quality vs rate, every ok configuration (mean over its seeds, bar: seed min–max)"
                     + ("; one row per training length" if len(lengths) > 1 else ""), fontsize=10)
        fig.tight_layout()
    return fig
