"""The VQGAN-LC ablations side by side: codebook init, projector, projected dim D′."""

from __future__ import annotations

from pqstudy.figures.common import (
    SPREAD_NOTE,
    NoData,
    draw_seeds,
    mark_axis,
    one_training_length,
    pd_concat,
    seed_points,
    seeds_text,
    style,
    subplots,
    training_lengths,
)
from pqstudy.figures.registry import figure
from pqstudy.study.methods import method_colour
from pqstudy.study.store import grid_runs, numeric, truthy

LC_INIT_NAMES = {"uniform": "uniform ±1/K\n(paper)", "feature-normal": "normal from\nfeature stats",
                 "normal": "random normal", "select": "random\nselection", "kmeans": "k-means"}


def _lc_variant(grid: str, row) -> str:
    if grid == "lc-init":
        value = str(row.get("quantizer.lc_init"))
        return LC_INIT_NAMES.get(value, value)
    if grid == "lc-projector":
        if str(row.get("quantizer.projector")) == "none":
            return "static,\nno projector"
        return "trainable\n+ projector" if truthy(row.get("quantizer.lc_trainable")) else "static\n+ projector\n(LC)"
    low = numeric(row.to_frame().T, "quantizer.low_dim").iloc[0]
    dim = numeric(row.to_frame().T, "quantizer.dim").iloc[0]
    return f"D′={int(low if low == low and low > 0 else dim)}"


LC_ABLATIONS = (("lc-init", "codebook init"), ("lc-projector", "projector"), ("lc-projected-dim", "projected dim"))


VARIANT_ORDER = (*LC_INIT_NAMES.values(), "static,\nno projector", "static\n+ projector\n(LC)",
                 "trainable\n+ projector")


@figure(
    "lc_ablations",
    description="VQGAN-LC init / projector / D′ ablations",
    grids=("lc-init", "lc-projected-dim", "lc-projector"),
)
def plot_lc_ablations(df):
    """The VQGAN-LC ablations side by side: PSNR, LPIPS (where measured) and utilisation on the train split, one row
    each, per variant of the init, projector and projected-dim grids, as dot plots (mean dot, seed min–max bar, each
    seed faint, hollow where one seed; no bars). PSNR and LPIPS take each panel's own range (a failed arm 9 dB down
    would flatten the others' differences); utilisation keeps 0–100%."""
    present = [(g, t) for g, t in LC_ABLATIONS if grid_runs(df, g) is not None and len(grid_runs(df, g))]
    if not present:
        raise NoData("no ok runs in lc-init, lc-projector or lc-projected-dim")
    notes, all_runs = [], []
    rows = [("psnr", "PSNR on the test split (dB)", 1.0, "{:.2f}"),
            ("lpips", "LPIPS on the test split (lower is better)", 1.0, "{:.4f}"),
            ("utilisation", "utilisation, train split (%)", 100.0, "{:.1f}")]
    rows = [r for r in rows if r[0] != "lpips" or any(numeric(grid_runs(df, g), "lpips").notna().any()
                                                      for g, _ in present)]
    with style():
        fig, axes = subplots(len(rows), len(present), figsize=(3.9 * len(present), 3.3 * len(rows)), squeeze=False)
        for col, (grid, title) in enumerate(present):
            runs, note = one_training_length(grid_runs(df, grid), grid)
            if note:
                notes.append(f"{grid}: {note}")
            all_runs.append(runs)
            runs = runs.assign(_variant=runs.apply(lambda r, g=grid: _lc_variant(g, r), axis=1))
            variants = list(dict.fromkeys(runs["_variant"]))
            variants.sort(key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99,
                                         int(v[3:]) if v.startswith("D′=") else 0))
            runs = runs.assign(_pos=runs["_variant"].map({v: i for i, v in enumerate(variants)}))
            for row, (metric, label, scale, number) in enumerate(rows):
                ax = axes[row][col]
                points = seed_points(runs, "_pos", metric, scale)
                xs, means = draw_seeds(ax, points, method_colour("lc"), line=False)
                for x, y in zip(xs, means, strict=True):
                    ax.annotate(number.format(y), (x, y), textcoords="offset points", xytext=(7, 0), va="center",
                                fontsize=7)
                mark_axis(ax, runs, "lc_ablations")
                if metric == "utilisation":
                    ax.set_ylim(-2, 104)
                else:
                    ax.margins(y=0.2)
                ax.set_xlim(-0.5, len(variants) - 0.3)
                ax.set_xticks(range(len(variants)))
                ax.set_xticklabels(variants, fontsize=7)
                ax.set_ylabel(label if col == 0 else "", fontsize=8)
                if row == 0:
                    ax.set_title(f"{title} ({grid})\n{seeds_text(runs, ('_variant',))} per variant", fontsize=9)
        steps = training_lengths(pd_concat(*all_runs))
        fig.suptitle(f"VQGAN-LC ablations ({'/'.join(f'{s:,}' for s in steps)} steps per grid; {SPREAD_NOTE}; "
                     "PSNR and LPIPS on each panel's own scale)"
                     + ("\n" + "; ".join(notes) if notes else ""), fontsize=9)
        fig.tight_layout()
    return fig
