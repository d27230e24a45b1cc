"""The analysis notebooks: ``ablation``, ``codebook_analysis``, ``tables`` and ``paper_figures``.

Each is thin (its cells call ``pqstudy.figures`` and ``pqstudy.study.report`` / ``verdicts``), has one cell tagged
``parameters`` (papermill), names the ``python3`` kernel (``notebook.NOTEBOOK_KERNELSPEC`` says why), and is committed
without outputs. They are generated: ``python -m pqstudy.study.notebooks_gen`` rewrites ``notebooks/<name>.ipynb``;
``tests/test_notebooks.py`` checks that the committed files are the generated ones and runs each under papermill.
"""

from __future__ import annotations

import os
from pathlib import Path

from pqstudy.study.notebook import REPO_ROOT, notebook_from_cells

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

LOGGING = 'logging.basicConfig(level=logging.INFO, format="%(message)s")  # notes on figures skipped for lack of data'

SHOW_VERDICTS = """def show_verdicts(verdicts):
    for v in verdicts:
        context = f"\\n\\nMeasured context: {v.reason}." if v.reason else ""
        scope = f"\\n\\nWhat this scale can show: {v.scope}" if v.scope else ""
        display(Markdown(f"**{v.paper}: {v.claim}** — *{v.status}* ({v.seeds})\\n\\n{v.evidence}{context}{scope}"))"""

NOTEBOOKS: dict[str, list[tuple[str, list[str], str]]] = {
    "ablation": [
        ("markdown", [], """# One ablation grid

Runs one named grid of `pqstudy.study.grids` (one papermill execution of `train_eval.ipynb` per config; finished
runs are skipped) when `run = True`, then shows the grid's table, its figures and the verdicts of the claims it
tests — all read from the results store (`results/runs/*.json`; a sweep run from here records into the git-ignored
`scratch/results` unless `results_dir` says otherwise: `pqstudy sweep` writes `results/`). Set the parameters below
(or pass them with papermill: `papermill notebooks/ablation.ipynb out.ipynb -p grid lc-init -p run True`)."""),
        ("code", ["parameters"], """\
grid = "pq-vs-vq-dim"  # a grid of pqstudy.study.grids.GRIDS (the next cell lists them if unknown)
profile = "default"  # smoke | default | paper: the scale of the grid, and the runs shown
results_dir = None  # the results store; None: results/ (committed), or scratch/results when run = True
run = False  # True: run the grid's sweep first
runs_root = "scratch/runs"  # run directories of the sweep (relative paths: from the repository root)
papermill_dir = "scratch/papermill_runs"  # executed notebooks of the sweep
jobs = 1  # notebooks run at once
shard = None  # "i/n": run only shard i of n of the grid"""),
        ("code", [], """import logging

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from pqstudy import figures
from pqstudy.study.grids import GRIDS, grid_configs
from pqstudy.study.notebook import resolve
from pqstudy.study.report import study_verdicts
from pqstudy.study.store import runs_dataframe, select_profile
from pqstudy.study.tables import grid_table

""" + LOGGING + """
results_dir = resolve(results_dir or ("scratch/results" if run else "results"))
configs = grid_configs(grid, profile)
print(f"{grid} at profile {profile}: {len(configs)} configs. {GRIDS[grid].__doc__.strip().splitlines()[0]}")"""),
        ("code", [], """if run:
    from pqstudy.study.runner import run_sweep

    summary = run_sweep(grid, configs, results_dir=results_dir, runs_root=resolve(runs_root),
                        papermill_dir=resolve(papermill_dir), shard=shard, jobs=jobs)
    print({k: v for k, v in summary.items() if k != "failures"})
    for failure in summary["failures"]:
        print("failed:", failure["run_id"], failure["error"])
else:
    print("run = False: showing the runs already recorded in", results_dir)"""),
        ("markdown", [], "## Table\n\nOne row per run: the fields the grid varies, the seed, the metrics."),
        ("code", [], """df = select_profile(runs_dataframe(results_dir), profile)
table, notes = grid_table(df, grid)
for note in notes:
    print(note)
table"""),
        ("markdown", [], "## Figures"),
        ("code", [], """shown = figures.grid_figures(results_dir, grid, df)
plt.show()"""),
        ("markdown", [], "## Verdicts of the claims this grid tests"),
        ("code", [], SHOW_VERDICTS + """


show_verdicts([v for v in study_verdicts(df, results_dir, profile) if v.grid == grid])"""),
    ],
    "codebook_analysis": [
        ("markdown", [], """# Codebook analysis

Utilisation curves, per-entry usage heatmaps and t-SNE of codebook entries, from the results store only:
`results/runs/*.json` (utilisation and its history) and `results/codebooks/<run_id>.npz` (per-entry usage counts
and a subsample of the codebook vectors, written by `pqstudy.study.codebook_export.export_codebook` after each
run)."""),
        ("code", ["parameters"], """\
results_dir = "results"  # the results store (a relative path is taken from the repository root)
profile = None  # only the runs of this profile (None: every run)
grid = "lc-method-size"  # the grid of the utilisation curves
run_ids = None  # runs of the heatmap and t-SNE (list of run ids); None: one per method at the grid's largest size
tsne_points = 1500  # codebook entries per t-SNE (a seeded subsample)
heatmap_bins = 256  # heatmap columns (entries are averaged in equal groups when K is larger)"""),
        ("code", [], """import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pqstudy import figures
from pqstudy.study.codebook_export import list_codebooks, load_codebook
from pqstudy.study.notebook import resolve
from pqstudy.study.store import runs_dataframe, select_profile

""" + LOGGING + """
results_dir = resolve(results_dir)
df = select_profile(runs_dataframe(results_dir), profile)
run_ids = list(run_ids) if run_ids else figures.default_codebook_runs(results_dir, df, grid)
print(f"{len(list_codebooks(results_dir))} exported codebooks; shown: {run_ids}")"""),
        ("markdown", [], "## Utilisation vs codebook size, and during training"),
        ("code", [], """figures.try_figure(figures.plot_utilisation_vs_codebook_size, df, grid)
figures.try_figure(figures.plot_utilisation_per_epoch, results_dir, grid)
plt.show()"""),
        ("markdown", [], "## Exported codebooks"),
        ("code", [], """rows = []
for rid in run_ids:
    book = load_codebook(results_dir, rid)
    counts, split = figures.usage_counts(book)  # the training-split pass where the run has it
    p = counts[0] / max(counts[0].sum(), 1)
    rows.append({"run": rid, "kind": book["meta"].get("kind"), "K": counts.shape[1], "sub-codebooks": counts.shape[0],
                 "counted on": split, "used (%)": round(100 * float((counts > 0).mean()), 2),
                 "perplexity (sub-codebook 1)": round(float(2 ** (-(p[p > 0] * np.log2(p[p > 0])).sum())), 1),
                 "history records": book["train_counts"].shape[0], "vectors kept": len(book["indices"])})
pd.DataFrame(rows)"""),
        ("markdown", [], "## Per-entry usage\n\nRows: training windows (by epoch), then the eval split; columns: "
                         "entries sorted by usage. Grey: unused."),
        ("code", [], """figures.try_figure(figures.plot_usage_heatmap, results_dir, run_ids, bins=heatmap_bins)
plt.show()"""),
        ("markdown", [], "## t-SNE of codebook entries"),
        ("code", [], """figures.try_figure(figures.plot_codebook_tsne, results_dir, run_ids, max_points=tsne_points)
plt.show()"""),
    ],
    "tables": [
        ("markdown", [], """# Tables

PSNR / SSIM / LPIPS / rFID / CMMD (and codebook utilisation, perplexity, bits per position) of every grid, and the
verdict of each paper claim, from the results store (`results/runs/*.json`). A metric that could not be computed
reads `missing`; its reason is printed above the table."""),
        ("code", ["parameters"], """\
results_dir = "results"  # the results store (a relative path is taken from the repository root)
profile = None  # only the runs of this profile (None: every run)"""),
        ("code", [], """from IPython.display import Markdown, display

from pqstudy.study.grids import GRIDS
from pqstudy.study.notebook import resolve
from pqstudy.study.report import study_verdicts
from pqstudy.study.store import runs_dataframe, select_profile
from pqstudy.study.tables import grid_table

results_dir = resolve(results_dir)
df = select_profile(runs_dataframe(results_dir), profile)
print(f"{len(df)} runs: {int((df['status'] == 'ok').sum())} ok, {int((df['status'] == 'failed').sum())} failed")"""),
        ("code", [], """for name in GRIDS:
    table, notes = grid_table(df, name)
    display(Markdown(f"## {name}\\n\\n{GRIDS[name].__doc__.strip().splitlines()[0]}"))
    if len(table) == 0:
        print("no ok runs recorded")
        continue
    for note in notes:
        print(note)
    display(table)"""),
        ("markdown", [], "## Verdicts"),
        ("code", [], SHOW_VERDICTS + """


show_verdicts(study_verdicts(df, results_dir, profile))"""),
        ("markdown", [], "## Failed runs"),
        ("code", [], """df[df["status"] == "failed"][["run_id", "grids", "error"]]"""),
    ],
    "paper_figures": [
        ("markdown", [], """# Paper figures and report

Regenerates every figure (`<out_dir>/figures/*.png`, via `pqstudy.figures.make_all_figures`) and the report
(`<out_dir>/REPORT.md`, via `pqstudy.study.report.write_report`) from the results store alone. A figure whose data is
absent is skipped with a note. By hand they go to the git-ignored `scratch/`; `pqstudy figures` and `pqstudy report`
write the committed ones in `results/`."""),
        ("code", ["parameters"], """\
results_dir = "results"  # the results store read (a relative path is taken from the repository root)
out_dir = "scratch/paper_figures"  # where figures/ and REPORT.md are written
profile = None  # the report's profile (None: results/study.json's, or the runs')
tsne = True  # the t-SNE figure (the slowest)
tsne_points = 1500  # codebook entries per t-SNE"""),
        ("code", [], """import logging

from IPython.display import Image, Markdown, display

from pqstudy import figures
from pqstudy.study.notebook import resolve
from pqstudy.study.report import study_verdicts, write_report
from pqstudy.study.store import runs_dataframe, select_profile

""" + LOGGING + """
results_dir, out_dir = resolve(results_dir), resolve(out_dir)"""),
        ("code", [], """paths = figures.make_all_figures(results_dir, out_dir=out_dir / "figures", tsne=tsne,
                                 tsne_points=tsne_points, profile=profile)
for path in paths:
    display(Markdown(f"### {path.stem}"))
    display(Image(filename=str(path)))"""),
        ("code", [], """report = write_report(results_dir, profile, out_dir=out_dir,
                      figures=figures.FIGURE_DESCRIPTIONS)
print(f"wrote {report}")"""),
        ("code", [], SHOW_VERDICTS + """


show_verdicts(study_verdicts(select_profile(runs_dataframe(results_dir), profile), results_dir, profile))"""),
    ],
}


def build_notebook(name: str):
    """Notebook ``name`` (no outputs) as an nbformat node."""
    if name not in NOTEBOOKS:
        raise ValueError(f"notebook {name!r}: unknown; choose one of {sorted(NOTEBOOKS)}")
    return notebook_from_cells(NOTEBOOKS[name])


def notebook_path(name: str, folder: str | os.PathLike = NOTEBOOKS_DIR) -> Path:
    return Path(folder) / f"{name}.ipynb"


def write_notebooks(folder: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    import nbformat

    paths = []
    for name in NOTEBOOKS:
        path = notebook_path(name, folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(build_notebook(name), str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_notebooks():
        print(f"wrote {written}")
