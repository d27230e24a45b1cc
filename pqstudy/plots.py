"""Every figure of the study, made from the results files only (``results/runs/*.json``, ``results/codebooks/*.npz``,
``results/recon/*.png``), never from run directories or checkpoints.

Each ``plot_*`` function takes the runs DataFrame (``pqstudy.study.store.runs_dataframe``) or the results folder and
returns a matplotlib Figure (the caller shows or closes it); it raises :class:`NoData` when the results hold nothing
to draw. ``make_all_figures(results_dir)`` writes every figure it has data for to ``results/figures/<name>.png`` and
skips the others with a logged note.

| file | what |
|---|---|
| ``utilisation_vs_codebook_size.png`` | utilisation vs codebook size per method (``lc-method-size``) |
| ``utilisation_per_epoch.png`` | utilisation per history record, one panel per size, one line per method |
| ``usage_heatmap.png`` | per-entry usage: entries sorted by usage (binned for large K) × history records |
| ``codebook_tsne.png`` | t-SNE of codebook entries: active / inactive, and log usage frequency |
| ``psnr_vs_dim.png`` | PSNR vs embedding dim D for VQ and PQ (mean, seed min–max) |
| ``psnr_vs_codebook_size.png`` | PQ's PSNR vs K per subspace |
| ``psnr_vs_subspaces.png`` | PSNR vs number of subspaces M |
| ``quality_vs_bits.png`` | PSNR and SSIM vs bits per position, every run (continuous models as lines) |
| ``lc_ablations.png`` | LC init, projector and projected dim D′: PSNR and utilisation |
| ``reconstructions.png`` | reconstruction grids saved by the train_eval notebook (``results/recon/<run_id>.png``) |
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pqstudy.study.verdicts import grid_runs, method_of, numeric, truthy

log = logging.getLogger(__name__)

FIGURES_SUBDIR = "figures"
RECON_SUBDIR = "recon"
DPI = 120
METHOD_ORDER = ("vq", "vq-fc", "vq-ema", "lc", "pq", "ae", "kl")
METHOD_NAMES = {"vq": "VQ", "vq-fc": "VQ-FC", "vq-ema": "VQ-EMA", "lc": "LC", "pq": "PQ", "ae": "AE (continuous)",
                "kl": "KL-VAE (continuous)"}


class NoData(LookupError):
    """The results hold nothing for this figure."""


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def _colors() -> dict:
    import seaborn as sns

    palette = sns.color_palette("colorblind", 10)
    return {"vq": palette[0], "vq-fc": palette[2], "vq-ema": palette[4], "lc": palette[3], "pq": palette[1],
            "ae": (0.45, 0.45, 0.45), "kl": (0.15, 0.15, 0.15)}


def method_color(method: str):
    return _colors().get(method, (0.6, 0.4, 0.7))


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _order(methods) -> list[str]:
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


@contextlib.contextmanager
def _style():
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        yield


def _subplots(*args, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _ok(df):
    if df is None or len(df) == 0:
        return df
    return df[df["status"] == "ok"] if "status" in df.columns else df


def _load_df(results_dir):
    from pqstudy.study.store import runs_dataframe

    return runs_dataframe(results_dir)


def _summary(runs, by: str, metric: str):
    """(x values, means, lower errors, upper errors) of ``metric`` over the seeds at each ``by``."""
    frame = runs.assign(_x=numeric(runs, by), _y=numeric(runs, metric)).dropna(subset=["_x", "_y"])
    if len(frame) == 0:
        return [], [], [], []
    grouped = frame.groupby("_x")["_y"]
    mean, lo, hi = grouped.mean(), grouped.min(), grouped.max()
    xs = list(mean.index)
    return xs, list(mean.values), list((mean - lo).values), list((hi - mean).values)


def _seeds_note(runs) -> str:
    seeds = sorted(set(numeric(runs, "train.seed").dropna().astype(int)))
    if len(seeds) > 1:
        return f"mean over seeds {', '.join(map(str, seeds))}; bars: min–max"
    return "one seed"


def _log2_axis(ax, values):
    ax.set_xscale("log", base=2)
    values = sorted(set(values))
    ax.set_xticks(values)
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.minorticks_off()


def recon_path(results_dir: str | os.PathLike, rid: str) -> Path:
    """Where the train_eval notebook saves a run's reconstruction grid."""
    return Path(results_dir) / RECON_SUBDIR / f"{rid}.png"


def save_reconstruction(fig, results_dir: str | os.PathLike, rid: str) -> Path:
    """Save a reconstruction-grid figure as ``results/recon/<run_id>.png`` (for ``plot_reconstructions``)."""
    path = recon_path(results_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# utilisation


def plot_utilisation_vs_codebook_size(df, grid: str = "lc-method-size"):
    """Codebook utilisation (eval split) vs codebook size, one line per method; log x."""
    runs = grid_runs(df, grid)
    runs = runs[numeric(runs, "utilisation").notna()] if runs is not None and len(runs) else runs
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs with utilisation in grid {grid}")
    runs = runs.assign(_method=method_of(runs))
    with _style():
        fig, ax = _subplots(figsize=(6.4, 4.0))
        sizes = []
        for method in _order(runs["_method"]):
            xs, ys, lo, hi = _summary(runs[runs["_method"] == method], "quantizer.codebook_size", "utilisation")
            sizes += xs
            ax.errorbar(xs, [100 * y for y in ys], yerr=[[100 * v for v in lo], [100 * v for v in hi]], marker="o",
                        capsize=3, color=method_color(method), label=method_name(method))
        ax.axhline(99, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(sizes)))
        ax.set_xticklabels([f"{s:,.0f}" for s in sorted(set(sizes))])
        ax.minorticks_off()
        ax.set(xlabel="codebook size K", ylabel="utilisation on the eval split (%)", ylim=(-2, 103),
               title=f"Codebook utilisation vs size ({grid}; {_seeds_note(runs)})")
        ax.legend(title="method", fontsize=8)
        fig.tight_layout()
    return fig


def _history_runs(results_dir, grid: str | None):
    from pqstudy.study.store import load_runs

    out = []
    for run in load_runs(results_dir):
        if run.get("status") != "ok" or (grid and grid not in (run.get("grids") or [])):
            continue
        history = [r for r in run.get("history") or [] if r.get("utilisation") is not None]
        if history:
            out.append((run, history))
    return out


def _run_method(run: dict) -> str:
    cfg = run.get("config") or {}
    model = (cfg.get("model") or {}).get("kind", "quantized")
    if model != "quantized":
        return model
    q = cfg.get("quantizer") or {}
    kind = q.get("kind", "?")
    return f"pq({q.get('sub_kind')})" if kind == "pq" and q.get("sub_kind", "vq") != "vq" else kind


def plot_utilisation_per_epoch(results_dir, grid: str = "lc-method-size"):
    """Utilisation per history record (training window) vs epoch: one panel per codebook size, one line per method
    (every seed drawn)."""
    runs = _history_runs(results_dir, grid)
    if not runs:
        raise NoData(f"no ok run with a utilisation history in grid {grid}")
    sizes = sorted({(r.get("config") or {}).get("quantizer", {}).get("codebook_size") for r, _ in runs})
    with _style():
        fig, axes = _subplots(1, len(sizes), figsize=(3.6 * len(sizes) + 1.2, 3.6), sharey=True, squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            chosen = [(r, h) for r, h in runs if r["config"]["quantizer"]["codebook_size"] == size]
            seen = set()
            rank = {m: i for i, m in enumerate(_order(_run_method(r) for r, _ in chosen))}
            for run, history in sorted(chosen, key=lambda rh: rank[_run_method(rh[0])]):
                method = _run_method(run)
                x = [r.get("epoch", r.get("step")) for r in history]
                y = [100 * r["utilisation"] for r in history]
                ax.plot(x, y, marker="o", ms=3, color=method_color(method),
                        label=None if method in seen else method_name(method))
                seen.add(method)
            ax.set(title=f"K = {size:,}", xlabel="epoch", ylim=(-2, 103))
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("utilisation in the window (%)")
        fig.suptitle(f"Codebook utilisation during training ({grid})", fontsize=10)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# exported codebooks: heatmap and t-SNE


def default_codebook_runs(results_dir, df=None, grid: str = "lc-method-size", limit: int = 4) -> list[str]:
    """Runs to show in the codebook figures: one per method at the largest size of ``grid`` that has an exported
    codebook; otherwise the first ``limit`` exported codebooks."""
    from pqstudy.study.codebooks import list_codebooks

    available = set(list_codebooks(results_dir))
    if not available:
        return []
    df = _load_df(results_dir) if df is None else df
    runs = grid_runs(df, grid)
    chosen = []
    if runs is not None and len(runs):
        runs = runs[runs["run_id"].isin(available)]
        runs = runs.assign(_method=method_of(runs), _k=numeric(runs, "quantizer.codebook_size"),
                           _seed=numeric(runs, "train.seed"))
        for method in _order(runs["_method"]):
            sub = runs[runs["_method"] == method].sort_values(["_k", "_seed"], ascending=[False, True])
            chosen.append(sub.iloc[0]["run_id"])
    return chosen or sorted(available)[:limit]


def _codebook_label(results_dir, rid: str, meta: dict) -> str:
    from pqstudy.study.store import load_run

    run = load_run(results_dir, rid)
    method = _run_method(run) if run else meta.get("kind", "?")
    m = meta.get("num_codebooks", 1)
    sub = f", sub-codebook 1 of {m}" if m > 1 else ""
    return f"{method_name(method)} K={meta.get('codebook_size', '?'):,}{sub} ({rid})"


def _history_labels(results_dir, rid: str, rows: int) -> list[str]:
    from pqstudy.study.store import load_run

    run = load_run(results_dir, rid) or {}
    history = run.get("history") or []
    if len(history) == rows:
        return [f"{r.get('epoch', i):.2g}" if isinstance(r.get("epoch"), (int, float)) else str(i)
                for i, r in enumerate(history)]
    return [str(i + 1) for i in range(rows)]


def _usage_rows(book: dict, bins: int) -> tuple[np.ndarray, int, int]:
    """(rows × columns usage relative to uniform, entries per column, K): the history records then the eval split of
    sub-codebook 1, entries sorted by total usage and averaged over ``bins`` equal groups when K > bins."""
    train = book["train_counts"][:, 0, :].astype(np.float64)  # (R, K)
    counts = np.concatenate([train, book["eval_counts"][0].astype(np.float64)[None, :]], axis=0)
    counts = counts[:, np.argsort(-counts.sum(axis=0), kind="stable")]
    k = counts.shape[1]
    per_bin = 1
    if k > bins:
        groups = np.array_split(np.arange(k), bins)
        per_bin = math.ceil(k / bins)
        counts = np.stack([counts[:, g].mean(axis=1) for g in groups], axis=1)
    uniform = counts.mean(axis=1, keepdims=True)
    relative = np.divide(counts, uniform, out=np.zeros_like(counts), where=uniform > 0)
    return relative, per_bin, k


def plot_usage_heatmap(results_dir, run_ids: list[str] | None = None, bins: int = 256):
    """Per-entry usage of sub-codebook 1 for each run: rows are the history records (training windows, labelled by
    epoch) then the eval split; columns are entries sorted by total usage (averaged over equal groups when K > bins).
    Colour: usage relative to uniform (1 = every entry used equally), log scale, shared by all panels; grey: unused."""
    from matplotlib.colors import LogNorm

    from pqstudy.study.codebooks import load_codebook

    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir)
    if not run_ids:
        raise NoData("no exported codebook under results/codebooks")
    books = [load_codebook(results_dir, rid) for rid in run_ids]
    rows = [_usage_rows(book, bins) for book in books]
    positive = np.concatenate([r[r > 0] for r, _, _ in rows] or [np.ones(1)])
    vmax = float(positive.max()) if positive.size else 10.0
    vmin = max(float(positive.min()) if positive.size else 0.1, vmax * 1e-4)
    norm = LogNorm(vmin=min(vmin, 0.5), vmax=max(vmax, 2.0))
    with _style():
        import matplotlib

        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.88")
        fig, axes = _subplots(len(run_ids), 1, figsize=(9.0, 1.0 + 1.6 * len(run_ids)), squeeze=False)
        for ax, rid, book, (relative, per_bin, k) in zip(axes[:, 0], run_ids, books, rows, strict=True):
            labels = _history_labels(results_dir, rid, relative.shape[0] - 1) + ["eval"]
            image = ax.imshow(np.ma.masked_less_equal(relative, 0.0), aspect="auto", interpolation="nearest",
                              cmap=cmap, norm=norm, extent=(0, k, len(labels) - 0.5, -0.5))
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.set_ylabel("epoch", fontsize=8)
            ax.grid(False)
            used = float((book["eval_counts"][0] > 0).mean())
            ax.set_title(f"{_codebook_label(results_dir, rid, book['meta'])}: {100 * used:.1f}% used on eval",
                         fontsize=9)
            ax.set_xlabel("entry rank by total usage" + (f" (columns of {per_bin} entries)" if per_bin > 1 else ""),
                          fontsize=8)
            fig.colorbar(image, ax=ax, pad=0.01, label="usage ÷ uniform")
        fig.tight_layout()
    return fig


def _embed_2d(vectors: np.ndarray, seed: int, perplexity: float) -> tuple[np.ndarray, str]:
    if vectors.shape[1] <= 2:
        out = vectors if vectors.shape[1] == 2 else np.concatenate([vectors, np.zeros_like(vectors)], axis=1)
        return out, f"raw coordinates (d = {vectors.shape[1]})"
    from sklearn.manifold import TSNE

    n = len(vectors)
    perplexity = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    return tsne.fit_transform(vectors), f"t-SNE (perplexity {perplexity:.0f})"


def plot_codebook_tsne(results_dir, run_ids: list[str] | None = None, max_points: int = 1500, seed: int = 0,
                       perplexity: float = 30.0):
    """t-SNE of each run's exported codebook vectors (lookup space, sub-codebook 1; at most ``max_points``, seeded):
    left coloured active / inactive on the eval split, right by log10 usage frequency."""
    from pqstudy.study.codebooks import load_codebook, subsample_indices

    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir)
    if not run_ids:
        raise NoData("no exported codebook under results/codebooks")
    with _style():
        fig, axes = _subplots(len(run_ids), 2, figsize=(10.0, 4.2 * len(run_ids)), squeeze=False)
        for (ax_act, ax_freq), rid in zip(axes, run_ids, strict=True):
            book = load_codebook(results_dir, rid)
            keep = subsample_indices(len(book["indices"]), max_points, seed)
            idx, vectors = book["indices"][keep], book["vectors"][keep].astype(np.float32)
            counts = book["eval_counts"][0][idx].astype(np.float64)
            total = max(float(book["eval_counts"][0].sum()), 1.0)
            xy, how = _embed_2d(vectors, seed, perplexity)
            active = counts > 0
            size = 5 if len(idx) > 500 else 14
            ax_act.scatter(*xy[~active].T, s=size, color="0.75", label=f"inactive ({(~active).sum()})", linewidths=0)
            ax_act.scatter(*xy[active].T, s=size, color=method_color("lc"), label=f"active ({active.sum()})",
                           linewidths=0)
            ax_act.legend(fontsize=7, markerscale=max(1.0, 12 / size), loc="best")
            ax_freq.scatter(*xy[~active].T, s=size, color="0.85", linewidths=0)
            if active.any():
                points = ax_freq.scatter(*xy[active].T, s=size, c=np.log10(counts[active] / total), cmap="viridis",
                                         linewidths=0)
                fig.colorbar(points, ax=ax_freq, pad=0.01, label="log10 usage frequency")
            label = _codebook_label(results_dir, rid, book["meta"])
            ax_act.set_title(f"{label}\nactive vs inactive, {len(idx)} of {book['meta']['codebook_size']:,} entries",
                             fontsize=8)
            ax_freq.set_title(f"usage frequency on the eval split ({how})", fontsize=8)
            for ax in (ax_act, ax_freq):
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def plot_psnr_vs_dim(df, grid: str = "pq-vs-vq-dim"):
    """PSNR vs embedding dim D for VQ and PQ: mean over seeds, error bars min–max."""
    runs = grid_runs(df, grid)
    runs = runs[numeric(runs, "psnr").notna()] if runs is not None and len(runs) else runs
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs with PSNR in grid {grid}")
    runs = runs.assign(_method=method_of(runs))
    with _style():
        fig, ax = _subplots(figsize=(6.0, 4.0))
        dims = []
        for method in _order(runs["_method"]):
            sub = runs[runs["_method"] == method]
            xs, ys, lo, hi = _summary(sub, "quantizer.dim", "psnr")
            dims += xs
            ks = sorted(set(numeric(sub, "quantizer.codebook_size").dropna().astype(int)))
            detail = f"K={'/'.join(map(str, ks))}"
            if method.startswith("pq"):
                sub_dims = sorted(set((numeric(sub, "quantizer.dim") / numeric(sub, "quantizer.subspaces"))
                                      .dropna().astype(int)))
                detail += f" per subspace, sub-dim {'/'.join(map(str, sub_dims))}"
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=method_color(method),
                        label=f"{method_name(method)} ({detail})")
        _log2_axis(ax, dims)
        ax.set(xlabel="embedding dim D", ylabel="PSNR (dB)", title=f"PSNR vs D ({grid}; {_seeds_note(runs)})")
        ax.legend(fontsize=8)
        fig.tight_layout()
    return fig


def _single_curve(df, grid: str, x: str, xlabel: str, title: str, annotate=None):
    runs = grid_runs(df, grid)
    runs = runs[numeric(runs, "psnr").notna()] if runs is not None and len(runs) else runs
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs with PSNR in grid {grid}")
    with _style():
        fig, ax = _subplots(figsize=(6.0, 4.0))
        xs, ys, lo, hi = _summary(runs, x, "psnr")
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=method_color("pq"))
        if annotate is not None:
            for xv, yv in zip(xs, ys, strict=True):
                text = annotate(runs[numeric(runs, x) == xv].iloc[0])
                ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
        _log2_axis(ax, xs)
        ax.set(xlabel=xlabel, ylabel="PSNR (dB)", title=f"{title} ({grid}; {_seeds_note(runs)})")
        ax.margins(y=0.15)
        fig.tight_layout()
    return fig


def _bits_label(row) -> str:
    bits = numeric(row.to_frame().T, "bits_per_position").iloc[0]
    return "" if bits != bits else f"{bits:g} bits"


def plot_psnr_vs_codebook_size(df, grid: str = "pq-codebook-size"):
    """PQ's PSNR vs K per subspace (log2 x), each point labelled with its bits per position."""
    runs = grid_runs(df, grid)
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int))) if runs is not None and len(runs) else []
    ms = sorted(set(numeric(runs, "quantizer.subspaces").dropna().astype(int))) if dims else []
    title = f"PSNR vs K per subspace, D={'/'.join(map(str, dims))}, M={'/'.join(map(str, ms))}"
    return _single_curve(df, grid, "quantizer.codebook_size", "codebook size K per subspace", title, _bits_label)


def plot_psnr_vs_subspaces(df, grid: str = "pq-subspaces"):
    """PSNR vs number of subspaces M (M = 1 is VQ, M = D scalar quantisation), labelled with bits per position."""
    runs = grid_runs(df, grid)
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int))) if runs is not None and len(runs) else []
    ks = sorted(set(numeric(runs, "quantizer.codebook_size").dropna().astype(int))) if dims else []
    title = f"PSNR vs subspaces M, D={'/'.join(map(str, dims))}, K={'/'.join(map(str, ks))}"
    return _single_curve(df, grid, "quantizer.subspaces", "subspaces M", title, _bits_label)


GRID_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def plot_quality_vs_bits(df):
    """Rate-matched view: PSNR and SSIM vs bits per position for every ok quantised run, coloured by method, marker
    by grid (its first); continuous baselines (no rate) as dashed horizontal lines."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    runs = _ok(df)
    if runs is None or len(runs) == 0:
        raise NoData("no ok runs")
    runs = runs.assign(_method=method_of(runs), _bits=numeric(runs, "bits_per_position"),
                       _psnr=numeric(runs, "psnr"), _ssim=numeric(runs, "ssim"),
                       _grid=runs["grids"].fillna("").astype(str).map(lambda s: s.split(";")[0] or "(none)"))
    quantised = runs[runs["_bits"].notna() & runs["_psnr"].notna()]
    continuous = runs[runs["_bits"].isna() & runs["_method"].isin(["ae", "kl"])]
    if len(quantised) == 0:
        raise NoData("no ok quantised run with bits per position and PSNR")
    methods = _order(quantised["_method"])
    from pqstudy.study.grids import GRIDS

    known = list(GRIDS)
    grids = sorted(dict.fromkeys(quantised["_grid"]), key=lambda g: (known.index(g) if g in known else len(known), g))
    markers = {g: GRID_MARKERS[i % len(GRID_MARKERS)] for i, g in enumerate(grids)}
    with _style():
        fig, axes = _subplots(1, 2, figsize=(11.5, 4.3))
        for ax, metric, label in ((axes[0], "_psnr", "PSNR (dB)"), (axes[1], "_ssim", "SSIM")):
            for (method, grid), group in quantised.groupby(["_method", "_grid"], sort=False):
                group = group[group[metric].notna()]
                ax.scatter(group["_bits"], group[metric], s=40, marker=markers[grid], color=method_color(method),
                           edgecolors="white", linewidths=0.5, alpha=0.9)
            for kind in _order(continuous["_method"]):
                values = continuous.loc[continuous["_method"] == kind, metric].dropna()
                if len(values):
                    ax.axhline(values.mean(), ls="--", lw=1, color=method_color(kind))
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set(xlabel="bits per position (M · log2 K)", ylabel=label)
        method_handles = [Line2D([], [], ls="", marker="o", color=method_color(m), label=method_name(m))
                          for m in methods]
        method_handles += [Line2D([], [], ls="--", color=method_color(k), label=method_name(k))
                           for k in _order(continuous["_method"])]
        grid_handles = [Line2D([], [], ls="", marker=markers[g], color="0.35", label=g) for g in grids]
        first = fig.legend(handles=method_handles, title="method", loc="upper left", bbox_to_anchor=(1.0, 0.95),
                           fontsize=7, title_fontsize=8, frameon=False)
        fig.add_artist(first)
        fig.legend(handles=grid_handles, title="grid", loc="lower left", bbox_to_anchor=(1.0, 0.05), fontsize=7,
                   title_fontsize=8, frameon=False)
        fig.suptitle("Quality vs rate (every ok run)", fontsize=10)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC ablations


def _lc_variant(grid: str, row) -> str:
    if grid == "lc-init":
        return {"normal": "random normal", "select": "random selection", "kmeans": "k-means"}.get(
            str(row.get("quantizer.lc_init")), str(row.get("quantizer.lc_init")))
    if grid == "lc-projector":
        if str(row.get("quantizer.projector")) == "none":
            return "static,\nno projector"
        return "trainable\n+ projector" if truthy(row.get("quantizer.lc_trainable")) else "static\n+ projector"
    low = numeric(row.to_frame().T, "quantizer.low_dim").iloc[0]
    dim = numeric(row.to_frame().T, "quantizer.dim").iloc[0]
    return f"D′={int(low if low == low and low > 0 else dim)}"


LC_ABLATIONS = (("lc-init", "codebook init"), ("lc-projector", "projector"), ("lc-projected-dim", "projected dim"))
VARIANT_ORDER = ("random normal", "random selection", "k-means", "static,\nno projector", "static\n+ projector",
                 "trainable\n+ projector")


def plot_lc_ablations(df):
    """The VQGAN-LC ablations side by side: PSNR (top) and utilisation (bottom) per variant of the init, projector and
    projected-dim grids (bars: mean; ticks: seed min–max when several)."""
    present = [(g, t) for g, t in LC_ABLATIONS if grid_runs(df, g) is not None and len(grid_runs(df, g))]
    if not present:
        raise NoData("no ok runs in lc-init, lc-projector or lc-projected-dim")
    with _style():
        fig, axes = _subplots(2, len(present), figsize=(3.8 * len(present), 6.0), squeeze=False)
        for col, (grid, title) in enumerate(present):
            runs = grid_runs(df, grid)
            runs = runs.assign(_variant=runs.apply(lambda r, g=grid: _lc_variant(g, r), axis=1))
            variants = list(dict.fromkeys(runs["_variant"]))
            variants.sort(key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99,
                                         int(v[3:]) if v.startswith("D′=") else 0))
            for row, (metric, label, scale) in enumerate((("psnr", "PSNR (dB)", 1.0),
                                                          ("utilisation", "utilisation (%)", 100.0))):
                ax = axes[row][col]
                values = [numeric(runs[runs["_variant"] == v], metric).dropna() * scale for v in variants]
                means = [v.mean() if len(v) else np.nan for v in values]
                ax.bar(range(len(variants)), means, color=method_color("lc"), alpha=0.8)
                for i, v in enumerate(values):
                    if len(v) > 1:
                        ax.vlines(i, v.min(), v.max(), color="k", lw=1.5)
                    if len(v):
                        ax.annotate(f"{v.mean():.2f}" if scale == 1 else f"{v.mean():.1f}", (i, v.mean()),
                                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
                finite = [m for m in means if m == m]
                if finite and metric == "psnr":
                    ax.set_ylim(min(finite) - 1.0, max(finite) + 0.6)
                if metric == "utilisation":
                    ax.set_ylim(0, 108)
                ax.set_xticks(range(len(variants)))
                ax.set_xticklabels(variants, fontsize=7)
                ax.set_ylabel(label if col == 0 else "")
                if row == 0:
                    ax.set_title(f"{title} ({grid})", fontsize=9)
        fig.suptitle("VQGAN-LC ablations", fontsize=10)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# reconstructions


def default_recon_runs(results_dir, df=None, limit: int = 8) -> list[str]:
    """Runs with a saved reconstruction grid: VQ and PQ at the largest D, every method at the largest LC-grid size,
    the continuous baselines (first seed); otherwise the first ``limit`` saved."""
    folder = Path(results_dir) / RECON_SUBDIR
    available = {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()
    if not available:
        return []
    df = _load_df(results_dir) if df is None else df
    chosen = []
    for grid, size in (("pq-vs-vq-dim", "quantizer.dim"), ("lc-method-size", "quantizer.codebook_size"),
                       ("continuous", "quantizer.dim")):
        runs = grid_runs(df, grid)
        if runs is None or len(runs) == 0:
            continue
        runs = runs[runs["run_id"].isin(available)]
        runs = runs.assign(_method=method_of(runs), _size=numeric(runs, size), _seed=numeric(runs, "train.seed"))
        for method in _order(runs["_method"]):
            sub = runs[runs["_method"] == method].sort_values(["_size", "_seed"], ascending=[False, True])
            rid = sub.iloc[0]["run_id"]
            if rid not in chosen:
                chosen.append(rid)
    return (chosen or sorted(available))[:limit]


def plot_reconstructions(results_dir, run_ids: list[str] | None = None):
    """The saved reconstruction grids (``results/recon/<run_id>.png``, inputs above reconstructions), stacked."""
    import matplotlib.image as mpimg

    run_ids = list(run_ids) if run_ids else default_recon_runs(results_dir)
    if not run_ids:
        raise NoData("no reconstruction grid under results/recon")
    images = [mpimg.imread(recon_path(results_dir, rid)) for rid in run_ids]
    with _style():
        fig, axes = _subplots(len(images), 1, figsize=(10.0, 1.9 * len(images)), squeeze=False)
        for ax, image in zip(axes[:, 0], images, strict=True):
            ax.imshow(image)
            ax.set_axis_off()
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# all figures


def _figure_makers(tsne: bool, max_points: int) -> dict[str, tuple[Callable, str]]:
    """name → (function(results_dir, df) → Figure, one-line description)."""
    makers = {
        "utilisation_vs_codebook_size": (lambda r, df: plot_utilisation_vs_codebook_size(df),
                                         "codebook utilisation vs size per method"),
        "utilisation_per_epoch": (lambda r, df: plot_utilisation_per_epoch(r), "utilisation during training"),
        "usage_heatmap": (lambda r, df: plot_usage_heatmap(r, default_codebook_runs(r, df)),
                          "per-entry usage heatmap"),
        "codebook_tsne": (lambda r, df: plot_codebook_tsne(r, default_codebook_runs(r, df), max_points=max_points),
                          "t-SNE of codebook entries"),
        "psnr_vs_dim": (lambda r, df: plot_psnr_vs_dim(df), "PSNR vs embedding dim D, VQ vs PQ"),
        "psnr_vs_codebook_size": (lambda r, df: plot_psnr_vs_codebook_size(df), "PSNR vs K per subspace"),
        "psnr_vs_subspaces": (lambda r, df: plot_psnr_vs_subspaces(df), "PSNR vs number of subspaces M"),
        "quality_vs_bits": (lambda r, df: plot_quality_vs_bits(df), "PSNR and SSIM vs bits per position"),
        "lc_ablations": (lambda r, df: plot_lc_ablations(df), "VQGAN-LC init / projector / D′ ablations"),
        "reconstructions": (lambda r, df: plot_reconstructions(r, default_recon_runs(r, df)),
                            "reconstruction grids"),
    }
    if not tsne:
        makers.pop("codebook_tsne")
    return makers


FIGURE_NAMES = tuple(_figure_makers(True, 0))
FIGURE_DESCRIPTIONS = {name: desc for name, (_, desc) in _figure_makers(True, 0).items()}

# The figures of each grid (the ablation notebook shows these).
GRID_FIGURES = {
    "pq-vs-vq-dim": ("psnr_vs_dim", "quality_vs_bits"),
    "pq-codebook-size": ("psnr_vs_codebook_size", "quality_vs_bits"),
    "pq-subspaces": ("psnr_vs_subspaces", "quality_vs_bits"),
    "lc-method-size": ("utilisation_vs_codebook_size", "utilisation_per_epoch", "usage_heatmap"),
    "lc-init": ("lc_ablations",),
    "lc-projected-dim": ("lc_ablations",),
    "lc-projector": ("lc_ablations",),
    "continuous": ("quality_vs_bits",),
}


def figures_dir(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / FIGURES_SUBDIR


def make_figure(name: str, results_dir: str | os.PathLike = "results", df=None, tsne_points: int = 1500):
    """One figure by name (see ``FIGURE_NAMES``); raises NoData when its data is absent."""
    makers = _figure_makers(True, tsne_points)
    if name not in makers:
        raise ValueError(f"figure {name!r}: unknown; choose one of {list(makers)}")
    df = _load_df(results_dir) if df is None else df
    return makers[name][0](Path(results_dir), df)


def try_figure(function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, or None with a printed note when its data is absent (for notebooks)."""
    try:
        return function(*args, **kwargs)
    except NoData as note:
        print(f"{getattr(function, '__name__', 'figure')}: skipped ({note})")
        return None


def grid_figures(results_dir: str | os.PathLike, grid: str, df=None) -> list:
    """The figures of one grid (``GRID_FIGURES``) that have data, as Figures (notes printed for the others)."""
    df = _load_df(results_dir) if df is None else df
    out = []
    for name in GRID_FIGURES.get(grid, ()):
        try:
            out.append(make_figure(name, results_dir, df))
        except NoData as note:
            print(f"{name}: skipped ({note})")
    return out


def make_all_figures(results_dir: str | os.PathLike = "results", out_dir: str | os.PathLike | None = None,
                     tsne: bool = True, tsne_points: int = 1500, profile: str | None = None) -> list[Path]:
    """Write every figure that has data to ``<results_dir>/figures/<name>.png`` (or ``out_dir``); returns the paths
    written. A figure whose data is absent is skipped with a logged note (logger ``pqstudy.plots``, level INFO).
    ``profile``: only the runs of that profile (the tables' figures and the codebook runs chosen)."""
    import matplotlib.pyplot as plt

    from pqstudy.study.report import select_profile

    results_dir = Path(results_dir)
    out_dir = figures_dir(results_dir) if out_dir is None else Path(out_dir)
    df = select_profile(_load_df(results_dir), profile)
    written = []
    for name, (maker, _) in _figure_makers(tsne, tsne_points).items():
        try:
            fig = maker(results_dir, df)
        except NoData as note:
            log.info("figure %s skipped: %s", name, note)
            continue
        try:
            written.append(save_figure(fig, out_dir, name))
        finally:
            plt.close(fig)
    return written


__all__ = [
    "FIGURE_NAMES", "GRID_FIGURES", "NoData", "default_codebook_runs", "default_recon_runs", "figures_dir",
    "grid_figures", "make_all_figures", "make_figure", "plot_codebook_tsne", "plot_lc_ablations",
    "plot_psnr_vs_codebook_size", "plot_psnr_vs_dim", "plot_psnr_vs_subspaces", "plot_quality_vs_bits",
    "plot_reconstructions", "plot_usage_heatmap", "plot_utilisation_per_epoch", "plot_utilisation_vs_codebook_size",
    "recon_path", "save_figure", "save_reconstruction", "try_figure",
]
