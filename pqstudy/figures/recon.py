"""Saved reconstruction grids (``results/recon/<run_id>.png``), stacked and labelled by run."""

from __future__ import annotations

from pathlib import Path

from pqstudy.figures.common import NoData, run_row, steps_of, style, subplots
from pqstudy.figures.registry import figure
from pqstudy.study.methods import method_of, order_methods, run_label
from pqstudy.study.store import RECON_SUBDIR, grid_runs, numeric, recon_path, runs_dataframe


def default_recon_runs(results_dir, df=None, limit: int = 8) -> list[str]:
    """Runs with a saved reconstruction grid: VQ and PQ at the largest D, every method at the largest LC-grid size,
    the continuous baselines (lowest seed, longest training); otherwise the first ``limit`` saved."""
    folder = Path(results_dir) / RECON_SUBDIR
    available = {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()
    if not available:
        return []
    df = runs_dataframe(results_dir) if df is None else df
    chosen = []
    for grid, size in (("pq-vs-vq-dim", "quantizer.dim"), ("lc-method-size", "quantizer.codebook_size"),
                       ("continuous", "quantizer.dim")):
        runs = grid_runs(df, grid)
        if runs is None or len(runs) == 0:
            continue
        runs = runs[runs["run_id"].isin(available)]
        runs = runs.assign(_method=method_of(runs), _size=numeric(runs, size), _seed=numeric(runs, "train.seed"),
                           _steps=steps_of(runs))
        for method in order_methods(runs["_method"]):
            sub = runs[runs["_method"] == method].sort_values(["_steps", "_size", "_seed"],
                                                              ascending=[False, False, True])
            rid = sub.iloc[0]["run_id"]
            if rid not in chosen:
                chosen.append(rid)
    return (chosen or sorted(available))[:limit]


@figure("reconstructions", description="reconstruction grids, labelled by method, K, D (M)", reads="results")
def plot_reconstructions(results_dir, run_ids: list[str] | None = None, df=None):
    """The saved reconstruction grids (``results/recon/<run_id>.png``, inputs above reconstructions), stacked, each
    titled by its method, K, D (M for PQ), seed and training steps (``run_label``)."""
    import matplotlib.image as mpimg

    df = runs_dataframe(results_dir) if df is None else df
    run_ids = list(run_ids) if run_ids else default_recon_runs(results_dir, df)
    if not run_ids:
        raise NoData("no reconstruction grid under results/recon")
    images = [mpimg.imread(recon_path(results_dir, rid)) for rid in run_ids]
    with style():
        fig, axes = subplots(len(images), 1, figsize=(10.0, 2.1 * len(images)), squeeze=False)
        for ax, rid, image in zip(axes[:, 0], run_ids, images, strict=True):
            ax.imshow(image)
            ax.set_axis_off()
            ax.set_title(run_label(run_row(df, rid), rid), fontsize=9, loc="left")
        height = fig.get_figheight()
        fig.suptitle("Reconstructions on the test split (in each panel: inputs above, reconstructions below)",
                     fontsize=10, y=1 - 0.08 / height)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / height))
    return fig
