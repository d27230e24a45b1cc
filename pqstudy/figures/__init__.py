"""Every figure of the study, made from the results files only (``results/runs/*.json``, ``results/codebooks/*.npz``,
``results/recon/*.png``), never from run directories or checkpoints.

Each ``plot_*`` function takes the runs DataFrame (``pqstudy.study.store.runs_dataframe``) or the results folder and
returns a matplotlib Figure (the caller shows or closes it); it raises :class:`NoData` when the results hold nothing
to draw. ``make_all_figures(results_dir)`` writes every figure it has data for to ``results/figures/<name>.png`` and
skips the others with a logged note. The rules every figure keeps are in ``common``.

| module | figures |
|---|---|
| ``utilisation`` | ``utilisation_vs_codebook_size`` (``lc-method-size``), ``utilisation_per_epoch`` (during training) |
| ``codebook`` | ``usage_heatmap`` (entries sorted by usage × history records), ``codebook_tsne`` (active / inactive) |
| ``pq`` | ``psnr_vs_dim`` (VQ and PQ, with bits per position), ``psnr_vs_codebook_size``, ``psnr_vs_subspaces`` |
| ``rate`` | ``rate_matched`` (VQ, PQ and LC at equal bits per position), ``quality_vs_bits`` (every configuration) |
| ``lc`` | ``lc_ablations`` (LC init, projector and projected dim D′: PSNR and utilisation, dot plots) |
| ``recon`` | ``reconstructions`` (the grids the train_eval notebook saves, labelled by run) |
| ``generation`` | ``generation_samples``, ``generation_fd_vs_rate``, ``generation_fd_vs_cost`` (gen grids) |

A new figure is one function with ``@figure(name, description=..., grids=...)`` (``registry``) in its family's module
(a new family: a module imported below), and a test of the data it plots.
"""

from __future__ import annotations

# The figures are listed, written and linked in the order they register: the modules in this order.
from pqstudy.figures import utilisation, codebook, pq, rate, lc, recon, generation  # isort: skip  # noqa: F401
from pqstudy.figures.codebook import (
    USAGE_COUNT_KEYS,
    default_codebook_runs,
    plot_codebook_tsne,
    plot_usage_heatmap,
    usage_counts,
)
from pqstudy.figures.common import (
    MixedTrainingLengths,
    NoData,
    check_one_length,
    draw_seeds,
    mark_axis,
    one_training_length,
    runs_note,
    save_figure,
    seed_points,
    steps_of,
    training_lengths,
)
from pqstudy.figures.lc import plot_lc_ablations
from pqstudy.figures.pq import plot_psnr_vs_codebook_size, plot_psnr_vs_dim, plot_psnr_vs_subspaces
from pqstudy.figures.rate import plot_quality_vs_bits, plot_rate_matched
from pqstudy.figures.recon import default_recon_runs, plot_reconstructions
from pqstudy.figures.registry import (
    FIGURES,
    figure,
    figures_dir,
    grid_figure_names,
    grid_figures,
    make_all_figures,
    make_figure,
    try_figure,
)
from pqstudy.figures.utilisation import plot_utilisation_per_epoch, plot_utilisation_vs_codebook_size

FIGURE_NAMES = tuple(FIGURES)
FIGURE_DESCRIPTIONS = {name: entry.description for name, entry in FIGURES.items()}

__all__ = [
    "FIGURES", "FIGURE_DESCRIPTIONS", "FIGURE_NAMES", "USAGE_COUNT_KEYS", "MixedTrainingLengths", "NoData",
    "check_one_length", "default_codebook_runs", "default_recon_runs", "draw_seeds", "figure", "figures_dir",
    "grid_figure_names", "grid_figures", "make_all_figures", "make_figure", "mark_axis", "one_training_length",
    "plot_codebook_tsne", "plot_lc_ablations", "plot_psnr_vs_codebook_size", "plot_psnr_vs_dim",
    "plot_psnr_vs_subspaces", "plot_quality_vs_bits", "plot_rate_matched", "plot_reconstructions", "plot_usage_heatmap",
    "plot_utilisation_per_epoch", "plot_utilisation_vs_codebook_size", "runs_note", "save_figure", "seed_points",
    "steps_of", "training_lengths", "try_figure", "usage_counts",
]
