"""Generators on the tokens and latents: sample grids, sample quality against the tokenizer's rate, and against the
generator's cost (grids ``gen-ar`` and ``gen-diffusion``)."""

from __future__ import annotations

from pqstudy.figures.common import NoData, run_row, style, subplots
from pqstudy.figures.registry import figure
from pqstudy.study.methods import method_colour, method_label, method_of, order_methods
from pqstudy.study.store import numeric, samples_path
from pqstudy.study.tables import generation_rows, generator_name, levels_of, run_value, tokenizer_name

GEN_GRIDS = ("gen-ar", "gen-diffusion")
MARKERS = {"ar": "o", "diffusion": "s"}


def _gen_runs(df):
    runs = generation_rows(df)
    if runs is None or len(runs) == 0:
        raise NoData("no generation runs")
    runs = runs[runs["status"] == "ok"] if "status" in runs.columns else runs
    if len(runs) == 0:
        raise NoData("no ok generation runs")
    return runs.assign(_method=method_of(runs))


CONFIG_KEYS = ("tokenizer_run_id", "gen.kind", "gen.head", "gen.latent")  # a generator up to its gen.seed


def _per_config(runs, columns: tuple[str, ...]):
    """One row per generator configuration (its seeds pooled): the first run's fields, ``columns`` averaged over
    the seeds, ``<column>_lo`` / ``<column>_hi`` their range and ``_seeds`` the count."""
    keys = [k for k in CONFIG_KEYS if k in runs.columns]
    runs = runs.assign(**{k: runs[k].fillna("") for k in keys},
                       **{c: numeric(runs, c) for c in columns})
    grouped = runs.groupby(keys, sort=False, dropna=False)
    out = grouped.head(1).set_index(keys)
    for c in columns:
        out[c] = grouped[c].mean()
        out[f"{c}_lo"], out[f"{c}_hi"] = grouped[c].min(), grouped[c].max()
    out["_seeds"] = grouped.size()
    return out.reset_index()


def _label(run) -> str:
    return f"{generator_name(run)} · {tokenizer_name(run)}"


@figure("generation_samples", description="samples of each generator, one row per class, labelled by generator and "
        "tokenizer (method, K, D, F)", grids=GEN_GRIDS, reads="results")
def plot_generation_samples(results_dir, df=None, limit: int = 12, cols: int = 3, width: float = 12.0):
    """The saved sample grids (``results/samples/<run_id>.png``), ``cols`` per row.

    Each grid is drawn ``width / cols`` inches wide: at the figures' DPI its 32-pixel samples keep about their own
    size (three 10×10 grids across 12 in), and the figure stays a few MB (at two across it was 6.9 MB, the samples
    blown up to ~70 px of upsampled detail that the per-run grids already show)."""
    import matplotlib.image as mpimg

    from pqstudy.study.store import runs_dataframe

    df = runs_dataframe(results_dir) if df is None else df
    runs = _gen_runs(df)
    if "gen.seed" in runs.columns:  # one grid per generator configuration: its first seed's
        runs = runs.assign(_seed=numeric(runs, "gen.seed")).sort_values("_seed", kind="stable")
        runs = runs.drop_duplicates([k for k in CONFIG_KEYS if k in runs.columns])
    ordered = runs.sort_values(["gen.kind", "run_id"])["run_id"]
    ids = [rid for rid in ordered if samples_path(results_dir, rid).is_file()]
    if not ids:
        raise NoData("no sample grid under results/samples")
    ids = ids[:limit]
    images = [mpimg.imread(samples_path(results_dir, rid)) for rid in ids]
    rows = [images[i : i + cols] for i in range(0, len(images), cols)]
    heights = [max(im.shape[0] / im.shape[1] for im in row) * width / cols + 0.35 for row in rows]
    with style():
        fig, axes = subplots(len(rows), cols, figsize=(width, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, rid, image in zip(axes.flat, ids, images, strict=False):
            ax.imshow(image, interpolation="antialiased")
            ax.set_title(_label(run_row(df, rid)), fontsize=8, loc="left")
        fig.tight_layout()
    return fig


def _scatter(ax, runs, x_column: str, x_scale: float = 1.0):
    """FD against ``x_column``: one marker per generator configuration at the mean over its seeds, with a bar over
    their range where it has more than one. Returns those pooled rows (:func:`_per_config`)."""
    runs = _per_config(runs, (x_column, "fd_classifier"))
    for method in order_methods(runs["_method"]):
        sub = runs[runs["_method"] == method]
        for kind, marker in MARKERS.items():
            part = sub[sub["gen.kind"] == kind]
            if len(part) == 0:
                continue
            x, y = numeric(part, x_column) * x_scale, numeric(part, "fd_classifier")
            ax.scatter(x, y, marker=marker, s=46, color=method_colour(method), edgecolor="black", linewidth=0.5,
                       label=f"{method_label(method)}, {'AR prior' if kind == 'ar' else 'flow DiT'}", zorder=3)
            seeded = part[part["_seeds"] > 1]
            if len(seeded):
                mid = numeric(seeded, "fd_classifier")
                ax.errorbar(numeric(seeded, x_column) * x_scale, mid,
                            yerr=[mid - numeric(seeded, "fd_classifier_lo"), numeric(seeded, "fd_classifier_hi") - mid],
                            fmt="none", ecolor="black", elinewidth=0.8, capsize=2.5, zorder=2)
            for _, run in part.iterrows():
                if run.get("gen.head") == "flat":
                    ax.annotate("flat", (run_value(run, x_column) * x_scale, run_value(run, "fd_classifier")),
                                fontsize=7, xytext=(4, 4), textcoords="offset points")
    return runs


def _floor(ax, runs) -> None:
    real = numeric(runs, "real_fd_classifier").dropna()
    if len(real):
        ax.axhline(real.max(), color="0.4", linestyle=":", linewidth=1,
                   label="floor: training images vs test (same sample count)")


@figure("generation_fd_vs_rate", description="generation FD in the study classifier's space vs the tokenizer's bits "
        "per image, with each tokenizer's reconstructions and the real-vs-real floor", grids=GEN_GRIDS)
def plot_generation_fd_vs_rate(df):
    runs = _gen_runs(df)
    runs = runs[numeric(runs, "fd_classifier").notna()]
    if len(runs) == 0:
        raise NoData("no generation run has fd_classifier")
    runs = runs.assign(_bits=_bits_per_image(runs))
    with style():
        fig, ax = subplots(figsize=(7.2, 4.6))
        _scatter(ax, runs, "_bits")
        recon = runs.drop_duplicates("tokenizer_run_id")
        ax.scatter(numeric(recon, "_bits"), numeric(recon, "recon_fd_classifier"), marker="x", color="0.3", s=30,
                   label="the tokenizer's reconstructions", zorder=2)
        _floor(ax, runs)
        ax.set_xscale("log", base=2)
        ticks = sorted(set(numeric(runs, "_bits").dropna().round().astype(int)))
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])  # the grids' rates, not powers of two between them
        ax.minorticks_off()
        ax.set(xlabel="tokenizer rate: bits per image (positions × M × log2 K; continuous: not coded)",
               ylabel="FD in the study classifier's space (lower is better)",
               title=f"Generation quality vs rate ({_steps_note(runs)})")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
    return fig


@figure("generation_fd_vs_cost", description="generation FD in the study classifier's space vs the generator's "
        "FLOPs per sample (counted while sampling)", grids=GEN_GRIDS)
def plot_generation_fd_vs_cost(df):
    runs = _gen_runs(df)
    runs = runs[numeric(runs, "generate_flops_per_sample").notna() & numeric(runs, "fd_classifier").notna()]
    if len(runs) == 0:
        raise NoData("no generation run has both fd_classifier and generate_flops_per_sample")
    with style():
        fig, ax = subplots(figsize=(7.2, 4.6))
        pooled = _scatter(ax, runs, "generate_flops_per_sample", x_scale=1e-9)
        for _, run in pooled.iterrows():
            x, y = run_value(run, "generate_flops_per_sample") * 1e-9, run_value(run, "fd_classifier")
            ax.annotate(tokenizer_name(run).split(" ")[-1], (x, y), fontsize=7, xytext=(4, -9),
                        textcoords="offset points")
        _floor(ax, runs)
        ax.set_xscale("log")
        ax.set(xlabel="generator GFLOP per sample (matmuls, convolutions, attention; decoder excluded)",
               ylabel="FD in the study classifier's space (lower is better)",
               title=f"Generation quality vs cost ({_steps_note(runs)})")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
    return fig


def _bits_per_image(runs):
    """Bits per image of each row's tokenizer: the recorded rate (AR runs), else positions × M × log2 K; NaN for a
    continuous tokenizer."""
    import numpy as np

    bits = numeric(runs, "tokenizer_bits_per_image")
    k, m = numeric(runs, "quantizer.codebook_size"), numeric(runs, "quantizer.subspaces")
    levels = runs["model.ch_mult"].map(levels_of)
    side = numeric(runs, "data.image_size") / 2 ** (levels - 1)
    computed = side**2 * m * np.log2(k)
    computed[runs["model.kind"] != "quantized"] = np.nan
    return bits.fillna(computed)


def _steps_note(runs) -> str:
    steps = sorted(set(numeric(runs, "gen.steps").dropna().astype(int)))
    seeds = _per_config(runs, ())["_seeds"]
    note = "one seed" if seeds.max() == 1 else f"mean over {seeds.min()}–{seeds.max()} generator seeds, bars: range"
    return f"{', '.join(f'{s:,}' for s in steps)} generator steps, {note}"
