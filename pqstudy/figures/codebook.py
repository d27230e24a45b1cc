"""Exported codebooks (``results/codebooks/<run_id>.npz``): the per-entry usage heatmap and the t-SNE of entries."""

from __future__ import annotations

import math

import numpy as np

from pqstudy.figures.common import NoData, one_training_length, run_row, style, subplots
from pqstudy.figures.registry import figure
from pqstudy.study.codebook_export import list_codebooks, load_codebook, subsample_indices
from pqstudy.study.methods import method_colour, method_of, order_methods, run_label
from pqstudy.study.store import grid_runs, load_run, numeric, runs_dataframe

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
    available = set(list_codebooks(results_dir))
    if not available:
        return []
    df = runs_dataframe(results_dir) if df is None else df
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
            for method in order_methods(runs["_method"]):
                sub = runs[(runs["_method"] == method) & (runs["_k"] == size)].sort_values("_seed")
                if len(sub):
                    chosen.append(sub.iloc[0]["run_id"])
    return chosen or sorted(available)[:limit]


def _codebook_label(df, rid: str, meta: dict) -> str:
    m = meta.get("num_codebooks", 1)
    sub = f", sub-codebook 1 of {m}" if m > 1 else ""
    return run_label(run_row(df, rid), rid) + sub


def _history_labels(results_dir, rid: str, rows: int) -> tuple[list[str], str]:
    """(a label per history row, the axis name): the epochs of the run's history records when they match the rows,
    else the record numbers."""
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


@figure("usage_heatmap", description="per-entry usage heatmap", grids=("lc-method-size",), reads="results")
def plot_usage_heatmap(results_dir, run_ids: list[str] | None = None, bins: int = 256, df=None):
    """Per-entry usage of sub-codebook 1 for each run: rows are the history records (training windows, labelled by
    epoch) then the final pass (``usage_counts``: train split, or eval split for older exports); columns are entries
    sorted by final usage (averaged over equal groups when K > bins). Colour: usage relative to uniform (1 = every
    entry used equally), log scale, shared by all panels; grey: unused."""
    from matplotlib.colors import LogNorm

    df = runs_dataframe(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir, df)
    if not run_ids:
        raise NoData("no exported codebook under results/codebooks")
    books = [load_codebook(results_dir, rid) for rid in run_ids]
    rows = [_usage_rows(book, bins) for book in books]
    positive = np.concatenate([r[r > 0] for r, _, _ in rows] or [np.ones(1)])
    vmax = float(positive.max()) if positive.size else 10.0
    vmin = max(float(positive.min()) if positive.size else 0.1, vmax * 1e-4)
    norm = LogNorm(vmin=min(vmin, 0.5), vmax=max(vmax, 2.0))
    with style():
        import matplotlib

        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.88")
        fig, axes = subplots(len(run_ids), 1, figsize=(9.0, 1.2 + 1.7 * len(run_ids)), squeeze=False)
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
    import torch
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(vectors)
    perplexity = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    # scikit-learn's OpenMP gradient gets this process's thread budget (torch's: one per run beside others in a
    # sweep, one per pytest worker), not every core: oversubscribed, its 1,000 short parallel steps ran 2x slower
    with threadpool_limits(limits=torch.get_num_threads(), user_api="openmp"):
        return tsne.fit_transform(vectors), f"t-SNE (perplexity {perplexity:.0f})"


@figure(
    "codebook_tsne",
    description="t-SNE of codebook entries, active vs inactive",
    grids=("lc-method-size",),
    reads="results",
    slow=True,
)
def plot_codebook_tsne(results_dir, run_ids: list[str] | None = None, max_points: int = 1500, seed: int = 0,
                       perplexity: float = 30.0, df=None):
    """t-SNE of each run's exported codebook vectors (lookup space, sub-codebook 1; at most ``max_points``, seeded):
    left, active (used at least once in the final pass, ``usage_counts``) vs inactive entries; right, log10 usage
    frequency of the active ones."""
    df = runs_dataframe(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_codebook_runs(results_dir, df)
    if not run_ids:
        raise NoData("no exported codebook under results/codebooks")
    with style():
        fig, axes = subplots(len(run_ids), 2, figsize=(10.0, 4.2 * len(run_ids)), squeeze=False)
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
            ax_act.scatter(*xy[active].T, s=size, color=method_colour("lc"), label=f"active ({active.sum()})",
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
