"""Every figure of the study, made from the results files only (``results/runs/*.json``, ``results/codebooks/*.npz``,
``results/recon/*.png``), never from run directories or checkpoints.

Each ``plot_*`` function takes the runs DataFrame (``pqstudy.study.store.runs_dataframe``) or the results folder and
returns a matplotlib Figure (the caller shows or closes it); it raises :class:`NoData` when the results hold nothing
to draw. ``make_all_figures(results_dir)`` writes every figure it has data for to ``results/figures/<name>.png`` and
skips the others with a logged note.

Rules every figure keeps: no axis mixes runs of different training lengths (``mark_axis`` raises
:class:`MixedTrainingLengths`; a grid figure keeps its longest runs and says how many it left out; ``quality_vs_bits``
draws one row per length); a point with several seeds shows them (mean dot, min–max bar, each seed faint); no bar
chart on a cut axis; titles give the training steps and the seeds per point; runs are named by method, K, D (M), not
by run id.

| file | what |
|---|---|
| ``utilisation_vs_codebook_size.png`` | utilisation (train split) vs codebook size per method (``lc-method-size``) |
| ``utilisation_per_epoch.png`` | utilisation per history window vs epoch, smallest and largest K, one line per method |
| ``usage_heatmap.png`` | per-entry usage: entries sorted by usage (binned for large K) × history records |
| ``codebook_tsne.png`` | t-SNE of VQ-FC / VQ-EMA / LC codebooks at two sizes: active / inactive, log usage |
| ``psnr_vs_dim.png`` | PSNR vs embedding dim D for VQ and PQ, each point labelled with its bits per position |
| ``psnr_vs_codebook_size.png`` | PQ's PSNR vs K per subspace, labelled with bits per position |
| ``psnr_vs_subspaces.png`` | PSNR vs number of subspaces M, labelled with bits per position |
| ``rate_matched.png`` | VQ, PQ and LC at equal bits per position (``rate-matched``): PSNR (and LPIPS) |
| ``quality_vs_bits.png`` | PSNR and SSIM vs bits per position, every configuration, one row per training length |
| ``lc_ablations.png`` | LC init, projector and projected dim D′: PSNR and utilisation, dot plots |
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

from pqstudy.study.methods import method_colour as method_color
from pqstudy.study.methods import method_label as method_name
from pqstudy.study.methods import method_of, run_label
from pqstudy.study.methods import order_methods as _order
from pqstudy.study.store import grid_runs, numeric, select_profile, truthy

log = logging.getLogger(__name__)

FIGURES_SUBDIR = "figures"
RECON_SUBDIR = "recon"
DPI = 120



class NoData(LookupError):
    """The results hold nothing for this figure."""


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


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
    return xs, means


def seeds_per_point(runs, by: tuple[str, ...]) -> tuple[int, int]:
    """(fewest, most) seeds over the points ``by`` (columns) of ``runs``."""
    if runs is None or len(runs) == 0:
        return 0, 0
    keys = [runs[c].astype(str) if c in runs.columns else "" for c in by]
    counts = runs.groupby(keys)["run_id"].nunique() if keys else runs["run_id"].nunique()
    return int(np.min(counts)), int(np.max(counts))


SPREAD_NOTE = "dot: mean; bar: seed min–max; faint dots: each seed"


def seeds_text(runs, by: tuple[str, ...]) -> str:
    """"3 seeds", "1 seed" or "1–3 seeds": the seeds behind each point ``by`` (columns)."""
    lo, hi = seeds_per_point(runs, by)
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"


def runs_note(runs, by: tuple[str, ...] = ()) -> str:
    """"800 steps, 3 seeds per point" for a title (the training length, the seeds behind each point)."""
    lengths = training_lengths(runs)
    steps = "/".join(f"{s:,}" for s in lengths) + " steps" if lengths else "steps unknown"
    return f"{steps}, {seeds_text(runs, by)} per point"


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


def _grid_one_length(df, grid: str, metric: str):
    runs = grid_runs(df, grid)
    runs = runs[numeric(runs, metric).notna()] if runs is not None and len(runs) else runs
    if runs is None or len(runs) == 0:
        raise NoData(f"no ok runs with {metric} in grid {grid}")
    runs, note = one_training_length(runs, grid)
    return runs.assign(_method=method_of(runs)), note


def _title(text: str, runs, by: tuple[str, ...], note: str = "") -> str:
    return f"{text}\n({runs_note(runs, by)}{'; ' + note if note else ''})"


def plot_utilisation_vs_codebook_size(df, grid: str = "lc-method-size"):
    """Codebook utilisation (share of entries used at least once in one pass over the train split, the
    ``utilisation`` column) vs codebook size, one series per method; log x, seed spread."""
    runs, note = _grid_one_length(df, grid, "utilisation")
    with _style():
        fig, ax = _subplots(figsize=(6.6, 4.3))
        sizes = []
        methods = _order(runs["_method"])
        for i, method in enumerate(methods):
            points = seed_points(runs[runs["_method"] == method], "quantizer.codebook_size", "utilisation", 100.0)
            sizes += [x for x, _ in points]
            draw_seeds(ax, points, method_color(method), method_name(method),
                       shift=2 ** (0.06 * (i - (len(methods) - 1) / 2)))
        mark_axis(ax, runs, "utilisation_vs_codebook_size")
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(sizes)))
        ax.set_xticklabels([f"{s:,.0f}" for s in sorted(set(sizes))])
        ax.minorticks_off()
        ax.set(xlabel="codebook size K (entries)", ylabel="codebook utilisation, train split (%)", ylim=(-2, 104),
               title=_title(f"Codebook utilisation vs size ({grid})", runs, ("_method", "quantizer.codebook_size"),
                            note))
        ax.legend(title="method", fontsize=8)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


def plot_utilisation_per_epoch(results_dir, grid: str = "lc-method-size", df=None):
    """Utilisation during training (``history`` records: the share of entries used in each window) vs epoch, as in
    VQGAN-LC: one panel per codebook size (the smallest and the largest of ``grid``), one line per method (mean over
    seeds, band: seed min–max)."""
    from pqstudy.study.store import load_run

    df = _load_df(results_dir) if df is None else df
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
    with _style():
        fig, axes = _subplots(1, len(sizes), figsize=(4.2 * len(sizes) + 1.0, 3.9), sharey=True, squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            chosen = [(r, c) for r, c in curves if int(r["quantizer.codebook_size"]) == size]
            by_method: dict[str, list] = {}
            for row, curve in chosen:
                by_method.setdefault(method_of(row.to_frame().T).iloc[0], []).append(curve)
            for method in _order(by_method):
                table: dict[float, list[float]] = {}
                for curve in by_method[method]:
                    for x, y in curve:
                        table.setdefault(float(x), []).append(y)
                xs = sorted(table)
                mean = [np.mean(table[x]) for x in xs]
                n = len(by_method[method])
                if n > 1:
                    ax.fill_between(xs, [min(table[x]) for x in xs], [max(table[x]) for x in xs],
                                    color=method_color(method), alpha=0.2, linewidth=0)
                ax.plot(xs, mean, marker="o", ms=3, color=method_color(method),
                        label=f"{method_name(method)} ({n} seed{'s' if n > 1 else ''})")
            mark_axis(ax, drawn[numeric(drawn, "quantizer.codebook_size") == size], "utilisation_per_epoch")
            ax.set(title=f"K = {size:,}", xlabel="epoch (passes over the train split)", ylim=(-2, 104))
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("entries used in the window (%)")
        fig.suptitle(_title(f"Codebook utilisation during training ({grid}); line: mean, band: seed min–max", drawn,
                            ("quantizer.kind", "quantizer.codebook_size"), note), fontsize=9)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# exported codebooks: heatmap and t-SNE

# usage counts of an exported codebook, first key present wins: the counts of one pass of the final model over the
# train split, else (older exports) the counts over the evaluation split
USAGE_COUNT_KEYS = (("train_pass_counts", "train split"), ("eval_counts", "eval split"))


def usage_counts(book: dict) -> tuple[np.ndarray, str]:
    """(per-entry usage counts, (M, K), of an exported codebook; the split they were counted on). The one place that
    knows the key: the train-split pass when the export has it, else the evaluation split."""
    for key, split in USAGE_COUNT_KEYS:
        if key in book and np.asarray(book[key]).ndim == 2:
            return np.asarray(book[key]), split
    raise KeyError(f"exported codebook has none of {[k for k, _ in USAGE_COUNT_KEYS]}: {sorted(book)}")


CODEBOOK_METHODS = ("vq-fc", "vq-ema", "lc")


def default_codebook_runs(results_dir, df=None, grid: str = "lc-method-size", limit: int = 6,
                          methods: tuple[str, ...] = CODEBOOK_METHODS) -> list[str]:
    """Runs to show in the codebook figures (as VQGAN-LC): VQ-FC, VQ-EMA and LC at the smallest and the largest
    codebook size of ``grid`` that have an exported codebook, seed 0 (else the lowest seed), longest training; else
    the first ``limit`` exported codebooks."""
    from pqstudy.study.codebooks import list_codebooks

    available = set(list_codebooks(results_dir))
    if not available:
        return []
    df = _load_df(results_dir) if df is None else df
    runs = grid_runs(df, grid)
    chosen = []
    if runs is not None and len(runs):
        runs = runs[runs["run_id"].isin(available)]
        runs, _ = one_training_length(runs, grid)
        runs = runs.assign(_method=method_of(runs), _k=numeric(runs, "quantizer.codebook_size"),
                           _seed=numeric(runs, "train.seed"))
        runs = runs[runs["_method"].isin(methods)]
        sizes = sorted(set(runs["_k"].dropna()))
        for size in sorted({sizes[0], sizes[-1]}) if sizes else []:
            for method in _order(runs["_method"]):
                sub = runs[(runs["_method"] == method) & (runs["_k"] == size)].sort_values("_seed")
                if len(sub):
                    chosen.append(sub.iloc[0]["run_id"])
    return chosen or sorted(available)[:limit]


def _run_row(df, rid: str):
    if df is None or len(df) == 0 or "run_id" not in df.columns:
        return None
    rows = df[df["run_id"] == rid]
    return rows.iloc[0] if len(rows) else None


def _codebook_label(df, rid: str, meta: dict) -> str:
    m = meta.get("num_codebooks", 1)
    sub = f", sub-codebook 1 of {m}" if m > 1 else ""
    return run_label(_run_row(df, rid), rid) + sub


def _history_labels(results_dir, rid: str, rows: int) -> tuple[list[str], str]:
    """(a label per history row, the axis name): the epochs of the run's history records when they match the rows,
    else the record numbers."""
    from pqstudy.study.store import load_run

    run = load_run(results_dir, rid) or {}
    history = run.get("history") or []
    if len(history) == rows and all(isinstance(r.get("epoch"), (int, float)) for r in history):
        return [f"{r['epoch']:.2g}" for r in history], "epoch"
    return [str(i + 1) for i in range(rows)], "history record"


def _usage_rows(book: dict, bins: int) -> tuple[np.ndarray, int, int]:
    """(rows × columns usage relative to uniform, entries per column, K): the history records then the final counts
    (``usage_counts``) of sub-codebook 1, entries sorted by final usage and averaged over ``bins`` equal groups when
    K > bins."""
    final = usage_counts(book)[0][0].astype(np.float64)
    train = book["train_counts"][:, 0, :].astype(np.float64)  # (R, K)
    counts = np.concatenate([train, final[None, :]], axis=0)
    counts = counts[:, np.argsort(-final, kind="stable")]
    k = counts.shape[1]
    per_bin = 1
    if k > bins:
        groups = np.array_split(np.arange(k), bins)
        per_bin = math.ceil(k / bins)
        counts = np.stack([counts[:, g].mean(axis=1) for g in groups], axis=1)
    uniform = counts.mean(axis=1, keepdims=True)
    relative = np.divide(counts, uniform, out=np.zeros_like(counts), where=uniform > 0)
    return relative, per_bin, k


def plot_usage_heatmap(results_dir, run_ids: list[str] | None = None, bins: int = 256, df=None):
    """Per-entry usage of sub-codebook 1 for each run: rows are the history records (training windows, labelled by
    epoch) then the final pass (``usage_counts``: train split, or eval split for older exports); columns are entries
    sorted by final usage (averaged over equal groups when K > bins). Colour: usage relative to uniform (1 = every
    entry used equally), log scale, shared by all panels; grey: unused."""
    from matplotlib.colors import LogNorm

    from pqstudy.study.codebooks import load_codebook

    df = _load_df(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir, df)
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
        fig, axes = _subplots(len(run_ids), 1, figsize=(9.0, 1.2 + 1.7 * len(run_ids)), squeeze=False)
        for ax, rid, book, (relative, per_bin, k) in zip(axes[:, 0], run_ids, books, rows, strict=True):
            counts, split = usage_counts(book)
            labels, axis_name = _history_labels(results_dir, rid, relative.shape[0] - 1)
            labels = [*labels, f"final, {split}"]
            image = ax.imshow(np.ma.masked_less_equal(relative, 0.0), aspect="auto", interpolation="nearest",
                              cmap=cmap, norm=norm, extent=(0, k, len(labels) - 0.5, -0.5))
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.set_ylabel(axis_name, fontsize=8)
            ax.grid(False)
            active = float((counts[0] > 0).mean())
            ax.set_title(f"{_codebook_label(df, rid, book['meta'])}: {100 * active:.1f}% of entries used "
                         f"({split}, final model)", fontsize=8)
            ax.set_xlabel("entry rank by final usage" + (f" (columns of {per_bin} entries)" if per_bin > 1 else ""),
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
                       perplexity: float = 30.0, df=None):
    """t-SNE of each run's exported codebook vectors (lookup space, sub-codebook 1; at most ``max_points``, seeded):
    left, active (used at least once in the final pass, ``usage_counts``) vs inactive entries; right, log10 usage
    frequency of the active ones."""
    from pqstudy.study.codebooks import load_codebook, subsample_indices

    df = _load_df(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir, df)
    if not run_ids:
        raise NoData("no exported codebook under results/codebooks")
    with _style():
        fig, axes = _subplots(len(run_ids), 2, figsize=(10.0, 4.2 * len(run_ids)), squeeze=False)
        for (ax_act, ax_freq), rid in zip(axes, run_ids, strict=True):
            book = load_codebook(results_dir, rid)
            all_counts, split = usage_counts(book)
            keep = subsample_indices(len(book["indices"]), max_points, seed)
            idx, vectors = book["indices"][keep], book["vectors"][keep].astype(np.float32)
            counts = all_counts[0][idx].astype(np.float64)
            total = max(float(all_counts[0].sum()), 1.0)
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
            label = _codebook_label(df, rid, book["meta"])
            ax_act.set_title(f"{label}\nactive (used ≥ 1× on the {split}) vs inactive; {len(idx):,} of "
                             f"{book['meta']['codebook_size']:,} entries shown", fontsize=8)
            ax_freq.set_title(f"usage frequency on the {split} ({how})", fontsize=8)
            for ax in (ax_act, ax_freq):
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def _annotate_bits(ax, runs, by: str, xs, means) -> None:
    """Write each point's bits per position above it (a PQ point spends M·log2 K bits, a VQ point log2 K)."""
    for x, y in zip(xs, means, strict=True):
        bits = numeric(runs[numeric(runs, by) == x], "bits_per_position").dropna()
        if len(bits):
            text = f"{bits.iloc[0]:g} bits" if bits.nunique() == 1 else f"{bits.min():g}–{bits.max():g} bits"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)


def plot_psnr_vs_dim(df, grid: str = "pq-vs-vq-dim"):
    """PSNR vs embedding dim D for VQ and PQ (mean dot, seed min–max, each seed faint), every point labelled with
    its bits per position (PQ spends M·log2 K, VQ log2 K: the two do not cost the same)."""
    runs, note = _grid_one_length(df, grid, "psnr")
    with _style():
        fig, ax = _subplots(figsize=(6.6, 4.4))
        dims = []
        methods = _order(runs["_method"])
        for i, method in enumerate(methods):
            sub = runs[runs["_method"] == method]
            points = seed_points(sub, "quantizer.dim", "psnr")
            dims += [x for x, _ in points]
            ks = sorted(set(numeric(sub, "quantizer.codebook_size").dropna().astype(int)))
            detail = f"K={'/'.join(map(str, ks))}"
            if method.startswith("pq"):
                sub_dims = sorted(set((numeric(sub, "quantizer.dim") / numeric(sub, "quantizer.subspaces"))
                                      .dropna().astype(int)))
                detail += f" per subspace, {'/'.join(map(str, sub_dims))} channels each"
            shift = 2 ** (0.04 * (i - (len(methods) - 1) / 2))
            xs, means = draw_seeds(ax, points, method_color(method), f"{method_name(method)} ({detail})", shift=shift)
            _annotate_bits(ax, sub, "quantizer.dim", [x for x, _ in points], means)
        mark_axis(ax, runs, "psnr_vs_dim")
        _log2_axis(ax, dims)
        ax.margins(y=0.15)
        ax.set(xlabel="embedding dim D (channels per position)", ylabel="PSNR on the test split (dB)",
               title=_title(f"PSNR vs D ({grid}); labels: bits per position", runs, ("_method", "quantizer.dim"),
                            note))
        ax.legend(fontsize=7)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


def _single_curve(df, grid: str, x: str, xlabel: str, title: str, where: str):
    runs, note = _grid_one_length(df, grid, "psnr")
    with _style():
        fig, ax = _subplots(figsize=(6.4, 4.3))
        points = seed_points(runs, x, "psnr")
        xs, means = draw_seeds(ax, points, method_color("pq"))
        _annotate_bits(ax, runs, x, xs, means)
        mark_axis(ax, runs, where)
        _log2_axis(ax, xs)
        ax.set(xlabel=xlabel, ylabel="PSNR on the test split (dB)",
               title=_title(f"{title} ({grid}); labels: bits per position", runs, (x,), note))
        ax.margins(y=0.15)
        ax.text(0.0, -0.2, SPREAD_NOTE, transform=ax.transAxes, fontsize=7, color="0.35")
        fig.tight_layout()
    return fig


def plot_psnr_vs_codebook_size(df, grid: str = "pq-codebook-size"):
    """PQ's PSNR vs K per subspace (log2 x), each point labelled with its bits per position."""
    runs = grid_runs(df, grid)
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int))) if runs is not None and len(runs) else []
    ms = sorted(set(numeric(runs, "quantizer.subspaces").dropna().astype(int))) if dims else []
    title = f"PSNR vs K per subspace, D={'/'.join(map(str, dims))}, M={'/'.join(map(str, ms))}"
    return _single_curve(df, grid, "quantizer.codebook_size", "codebook size K per subspace (entries)", title,
                         "psnr_vs_codebook_size")


def plot_psnr_vs_subspaces(df, grid: str = "pq-subspaces"):
    """PSNR vs number of subspaces M (M = 1 is VQ, M = D scalar quantisation), labelled with bits per position."""
    runs = grid_runs(df, grid)
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int))) if runs is not None and len(runs) else []
    ks = sorted(set(numeric(runs, "quantizer.codebook_size").dropna().astype(int))) if dims else []
    title = f"PSNR vs subspaces M, D={'/'.join(map(str, dims))}, K={'/'.join(map(str, ks))}"
    return _single_curve(df, grid, "quantizer.subspaces", "number of subspaces M", title, "psnr_vs_subspaces")


GRID_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# the fields that, with the method, make one configuration (its seeds are averaged)
CONFIG_FIELDS = ("quantizer.dim", "quantizer.codebook_size", "quantizer.subspaces", "quantizer.low_dim",
                 "quantizer.lc_init", "quantizer.projector", "quantizer.lc_trainable", "quantizer.sub_kind")


def _config_groups(runs):
    keys = ["_method", *[c for c in CONFIG_FIELDS if c in runs.columns]]
    return runs.assign(**{c: runs[c].astype(str) for c in keys if c != "_method"}).groupby(keys, sort=False)


def plot_quality_vs_bits(df):
    """PSNR and SSIM vs bits per position for every ok quantised configuration (mean over its seeds, bar: seed
    min–max), coloured by method, marker by grid (its first); continuous baselines (no rate) as dashed lines. One
    row of panels per training length: runs of different lengths never share an axis."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    runs = _ok(df)
    if runs is None or len(runs) == 0:
        raise NoData("no ok runs")
    runs = runs.assign(_method=method_of(runs), _bits=numeric(runs, "bits_per_position"),
                       _psnr=numeric(runs, "psnr"), _ssim=numeric(runs, "ssim"), _steps=steps_of(runs),
                       _grid=runs["grids"].fillna("").astype(str).map(lambda s: s.split(";")[0] or "(none)"))
    quantised_all = runs[runs["_bits"].notna() & runs["_psnr"].notna()]
    if len(quantised_all) == 0:
        raise NoData("no ok quantised run with bits per position and PSNR")
    lengths = training_lengths(quantised_all)
    from pqstudy.study.grids import GRIDS

    known = list(GRIDS)
    grids = sorted(dict.fromkeys(quantised_all["_grid"]),
                   key=lambda g: (known.index(g) if g in known else len(known), g))
    markers = {g: GRID_MARKERS[i % len(GRID_MARKERS)] for i, g in enumerate(grids)}
    methods = _order(quantised_all["_method"])
    continuous_kinds = _order(runs.loc[runs["_bits"].isna() & runs["_method"].isin(["ae", "kl"]), "_method"])
    with _style():
        fig, axes = _subplots(len(lengths), 2, figsize=(11.5, 4.0 * len(lengths)), squeeze=False)
        for row, length in enumerate(lengths):
            quantised = quantised_all[quantised_all["_steps"] == length]
            continuous = runs[runs["_bits"].isna() & runs["_method"].isin(["ae", "kl"]) & (runs["_steps"] == length)]
            for ax, metric, label in ((axes[row][0], "_psnr", "PSNR on the test split (dB)"),
                                      (axes[row][1], "_ssim", "SSIM on the test split")):
                for _, group in _config_groups(quantised):
                    values = group[metric].dropna().to_numpy()
                    if not len(values):
                        continue
                    color, x = method_color(group["_method"].iloc[0]), group["_bits"].iloc[0]
                    if len(values) > 1:
                        ax.vlines(x, values.min(), values.max(), color=color, lw=1.2, alpha=0.8)
                    ax.scatter([x], [values.mean()], s=40, marker=markers[group["_grid"].iloc[0]], color=color,
                               edgecolors="white", linewidths=0.5, alpha=0.9, zorder=3)
                for kind in _order(continuous["_method"]):
                    values = continuous.loc[continuous["_method"] == kind, metric].dropna()
                    if len(values):
                        ax.axhline(values.mean(), ls="--", lw=1, color=method_color(kind))
                mark_axis(ax, pd_concat(quantised, continuous), "quality_vs_bits")
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.set(xlabel="bits per position (M · log2 K)", ylabel=label,
                       title=f"{length:,} training steps; {seeds_text(quantised, ('_method', *CONFIG_FIELDS))} "
                             "per point")
                ax.title.set_fontsize(9)
        method_handles = [Line2D([], [], ls="", marker="o", color=method_color(m), label=method_name(m))
                          for m in methods]
        method_handles += [Line2D([], [], ls="--", color=method_color(k), label=method_name(k))
                           for k in continuous_kinds]
        grid_handles = [Line2D([], [], ls="", marker=markers[g], color="0.35", label=g) for g in grids]
        first = fig.legend(handles=method_handles, title="method", loc="upper left", bbox_to_anchor=(1.0, 0.95),
                           fontsize=7, title_fontsize=8, frameon=False)
        fig.add_artist(first)
        fig.legend(handles=grid_handles, title="grid", loc="lower left", bbox_to_anchor=(1.0, 0.05), fontsize=7,
                   title_fontsize=8, frameon=False)
        fig.suptitle("Quality vs rate, every ok configuration (mean over seeds, bar: seed min–max); one row per "
                     "training length", fontsize=10)
        fig.tight_layout()
    return fig


def pd_concat(*frames):
    import pandas as pd

    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames) if frames else None


RATE_MATCHED_GRID = "rate-matched"


def plot_rate_matched(df, grid: str = RATE_MATCHED_GRID):
    """VQ, PQ and LC at equal bits per position (the ``rate-matched`` grid): PSNR (and LPIPS when measured) vs bits
    per position, one series per method, mean dot with seed min–max and each seed faint; each point names its
    configuration (K, or M·K for PQ)."""
    runs, note = _grid_one_length(df, grid, "psnr")
    panels = [("psnr", "PSNR on the test split (dB), higher is better")]
    if numeric(runs, "lpips").notna().any():
        panels.append(("lpips", "LPIPS on the test split, lower is better"))
    methods = _order(runs["_method"])
    bits = sorted(set(numeric(runs, "bits_per_position").dropna()))
    dims = sorted(set(numeric(runs, "quantizer.dim").dropna().astype(int)))
    with _style():
        fig, axes = _subplots(1, len(panels), figsize=(5.6 * len(panels) + 1.4, 4.4), squeeze=False)
        for ax, (metric, label) in zip(axes[0], panels, strict=True):
            for i, method in enumerate(methods):
                sub = runs[runs["_method"] == method]
                points = seed_points(sub, "bits_per_position", metric)
                shift = 2 ** (0.05 * (i - (len(methods) - 1) / 2))
                xs, means = draw_seeds(ax, points, method_color(method), method_name(method), shift=shift)
                for (x, _), xd, y in zip(points, xs, means, strict=True):
                    row = sub[numeric(sub, "bits_per_position") == x].iloc[0]
                    k, m = int(numeric(row.to_frame().T, "quantizer.codebook_size").iloc[0]), \
                        numeric(row.to_frame().T, "quantizer.subspaces").iloc[0]
                    text = f"M={int(m)}·K={k:,}" if method.startswith("pq") else f"K={k:,}"
                    ax.annotate(text, (xd, y), textcoords="offset points", xytext=(6, 0), va="center", fontsize=6.5,
                                color=method_color(method))
            mark_axis(ax, runs, "rate_matched")
            _log2_axis(ax, bits)
            ax.set_xlim(min(bits) / 2 ** 0.4, max(bits) * 2 ** 0.5)
            ax.margins(y=0.12)
            ax.set(xlabel="bits per position (M · log2 K)", ylabel=label)
        axes[0][0].legend(title="method", fontsize=8)
        axes[0][0].text(0.0, -0.2, SPREAD_NOTE, transform=axes[0][0].transAxes, fontsize=7, color="0.35")
        fig.suptitle(_title(f"Rate-matched: VQ, PQ and LC at equal bits per position, D={'/'.join(map(str, dims))} "
                            f"({grid})", runs, ("_method", "bits_per_position"), note), fontsize=10)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC ablations


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


def plot_lc_ablations(df):
    """The VQGAN-LC ablations side by side: PSNR (top) and utilisation on the train split (bottom) per variant of the
    init, projector and projected-dim grids, as dot plots (mean dot, seed min–max bar, each seed faint; no bars, so
    no cut axis to exaggerate small differences)."""
    present = [(g, t) for g, t in LC_ABLATIONS if grid_runs(df, g) is not None and len(grid_runs(df, g))]
    if not present:
        raise NoData("no ok runs in lc-init, lc-projector or lc-projected-dim")
    notes, all_runs = [], []
    with _style():
        # one y scale per row: a reader compares the grids' differences at their true size
        fig, axes = _subplots(2, len(present), figsize=(3.9 * len(present), 6.6), squeeze=False, sharey="row")
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
            for row, (metric, label, scale) in enumerate((("psnr", "PSNR on the test split (dB)", 1.0),
                                                          ("utilisation", "utilisation, train split (%)", 100.0))):
                ax = axes[row][col]
                points = seed_points(runs, "_pos", metric, scale)
                xs, means = draw_seeds(ax, points, method_color("lc"), line=False)
                for x, y in zip(xs, means, strict=True):
                    ax.annotate(f"{y:.2f}" if scale == 1 else f"{y:.1f}", (x, y), textcoords="offset points",
                                xytext=(7, 0), va="center", fontsize=7)
                mark_axis(ax, runs, "lc_ablations")
                if metric == "utilisation":
                    ax.set_ylim(-2, 104)
                else:
                    ax.margins(y=0.2)
                ax.set_xlim(-0.5, len(variants) - 0.3)
                ax.set_xticks(range(len(variants)))
                ax.set_xticklabels(variants, fontsize=7)
                ax.set_ylabel(label if col == 0 else "")
                if row == 0:
                    ax.set_title(f"{title} ({grid})\n{seeds_text(runs, ('_variant',))} per variant", fontsize=9)
        steps = training_lengths(pd_concat(*all_runs))
        fig.suptitle(f"VQGAN-LC ablations ({'/'.join(f'{s:,}' for s in steps)} steps per grid; {SPREAD_NOTE})"
                     + ("\n" + "; ".join(notes) if notes else ""), fontsize=9)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# reconstructions


def default_recon_runs(results_dir, df=None, limit: int = 8) -> list[str]:
    """Runs with a saved reconstruction grid: VQ and PQ at the largest D, every method at the largest LC-grid size,
    the continuous baselines (lowest seed, longest training); otherwise the first ``limit`` saved."""
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
        runs = runs.assign(_method=method_of(runs), _size=numeric(runs, size), _seed=numeric(runs, "train.seed"),
                           _steps=steps_of(runs))
        for method in _order(runs["_method"]):
            sub = runs[runs["_method"] == method].sort_values(["_steps", "_size", "_seed"],
                                                              ascending=[False, False, True])
            rid = sub.iloc[0]["run_id"]
            if rid not in chosen:
                chosen.append(rid)
    return (chosen or sorted(available))[:limit]


def plot_reconstructions(results_dir, run_ids: list[str] | None = None, df=None):
    """The saved reconstruction grids (``results/recon/<run_id>.png``, inputs above reconstructions), stacked, each
    titled by its method, K, D (M for PQ), seed and training steps (``run_label``)."""
    import matplotlib.image as mpimg

    df = _load_df(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_recon_runs(results_dir, df)
    if not run_ids:
        raise NoData("no reconstruction grid under results/recon")
    images = [mpimg.imread(recon_path(results_dir, rid)) for rid in run_ids]
    with _style():
        fig, axes = _subplots(len(images), 1, figsize=(10.0, 2.1 * len(images)), squeeze=False)
        for ax, rid, image in zip(axes[:, 0], run_ids, images, strict=True):
            ax.imshow(image)
            ax.set_axis_off()
            ax.set_title(run_label(_run_row(df, rid), rid), fontsize=9, loc="left")
        height = fig.get_figheight()
        fig.suptitle("Reconstructions on the test split (in each panel: inputs above, reconstructions below)",
                     fontsize=10, y=1 - 0.08 / height)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / height))
    return fig


# ---------------------------------------------------------------------------------------------------------------
# all figures


def _figure_makers(tsne: bool, max_points: int) -> dict[str, tuple[Callable, str]]:
    """name → (function(results_dir, df) → Figure, one-line description)."""
    makers = {
        "utilisation_vs_codebook_size": (lambda r, df: plot_utilisation_vs_codebook_size(df),
                                         "codebook utilisation vs size per method"),
        "utilisation_per_epoch": (lambda r, df: plot_utilisation_per_epoch(r, df=df), "utilisation during training"),
        "usage_heatmap": (lambda r, df: plot_usage_heatmap(r, default_codebook_runs(r, df), df=df),
                          "per-entry usage heatmap"),
        "codebook_tsne": (lambda r, df: plot_codebook_tsne(r, default_codebook_runs(r, df), max_points=max_points,
                                                           df=df),
                          "t-SNE of codebook entries, active vs inactive"),
        "psnr_vs_dim": (lambda r, df: plot_psnr_vs_dim(df), "PSNR vs embedding dim D, VQ vs PQ, with bits/position"),
        "psnr_vs_codebook_size": (lambda r, df: plot_psnr_vs_codebook_size(df), "PSNR vs K per subspace"),
        "psnr_vs_subspaces": (lambda r, df: plot_psnr_vs_subspaces(df), "PSNR vs number of subspaces M"),
        "rate_matched": (lambda r, df: plot_rate_matched(df), "VQ, PQ and LC at equal bits per position"),
        "quality_vs_bits": (lambda r, df: plot_quality_vs_bits(df), "PSNR and SSIM vs bits per position"),
        "lc_ablations": (lambda r, df: plot_lc_ablations(df), "VQGAN-LC init / projector / D′ ablations"),
        "reconstructions": (lambda r, df: plot_reconstructions(r, default_recon_runs(r, df), df=df),
                            "reconstruction grids, labelled by method, K, D (M)"),
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
    "rate-matched": ("rate_matched", "quality_vs_bits"),
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
    "FIGURE_NAMES", "GRID_FIGURES", "MixedTrainingLengths", "NoData", "check_one_length", "default_codebook_runs",
    "default_recon_runs", "draw_seeds", "figures_dir", "grid_figures", "make_all_figures", "make_figure", "mark_axis",
    "one_training_length", "plot_codebook_tsne", "plot_lc_ablations", "plot_psnr_vs_codebook_size",
    "plot_psnr_vs_dim", "plot_psnr_vs_subspaces", "plot_quality_vs_bits", "plot_rate_matched",
    "plot_reconstructions", "plot_usage_heatmap", "plot_utilisation_per_epoch", "plot_utilisation_vs_codebook_size",
    "recon_path", "run_label", "runs_note", "save_figure", "save_reconstruction", "seed_points", "steps_of",
    "training_lengths", "try_figure", "usage_counts",
]
