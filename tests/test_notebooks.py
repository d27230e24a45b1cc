"""The analysis notebooks: committed as generated, without outputs, and each runs under papermill on a synthetic
results folder."""

from __future__ import annotations

import ast

import nbformat
import pytest
from test_report import synthetic_results  # tests/ is on sys.path under pytest

from pqstudy.figures import FIGURE_NAMES
from pqstudy.study.grids import GRIDS
from pqstudy.study.kernel import kernel_name
from pqstudy.study.notebook import NOTEBOOK_KERNELSPEC, REPO_ROOT
from pqstudy.study.notebooks_gen import NOTEBOOKS, build_notebook, notebook_path
from pqstudy.study.verdicts import CLAIMS

pytestmark = pytest.mark.usefixtures("pqstudy_kernel")  # notebooks run on this interpreter (tests/conftest.py)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return synthetic_results(tmp_path_factory.mktemp("results"))


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_committed_notebook_is_the_generated_one_without_outputs(name):
    nb = nbformat.read(str(notebook_path(name)), as_version=4)
    generated = build_notebook(name)
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in generated.cells
    ], "regenerate: python -m pqstudy.study.notebooks_gen"
    assert nb.metadata["kernelspec"] == NOTEBOOK_KERNELSPEC
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


# What each notebook writes by hand (its parameters' defaults): only under the git-ignored scratch/.
WRITES = {"ablation": ("runs_root", "papermill_dir"), "paper_figures": ("out_dir",)}


def test_notebooks_run_by_hand_write_only_to_git_ignored_scratch():
    assert "/scratch/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    for name, names in WRITES.items():
        cell = next(c for c in build_notebook(name).cells if "parameters" in c.metadata.get("tags", []))
        values = {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body for t in node.targets}
        assert all(values[n].startswith("scratch/") for n in names), name
    ablation = "".join(c.source for c in build_notebook("ablation").cells)  # a sweep run from it records in scratch
    assert 'resolve(results_dir or ("scratch/results" if run else "results"))' in ablation


RUNS = {
    "ablation": {"grid": "lc-method-size", "profile": "default", "run": False},
    "codebook_analysis": {"tsne_points": 30},
    "tables": {"profile": "default"},
    "paper_figures": {"tsne_points": 30},
}


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_runs_under_papermill(name, results, tmp_path):
    import papermill

    out, written = tmp_path / f"{name}.ipynb", tmp_path / "out"
    parameters = {"results_dir": str(results), **RUNS[name]}
    if name == "paper_figures":
        parameters["out_dir"] = str(written)
    before = sorted(results.rglob("*"))
    papermill.execute_notebook(str(notebook_path(name)), str(out), parameters=parameters,
                               kernel_name=kernel_name(), progress_bar=False, cwd=str(tmp_path))
    executed = nbformat.read(str(out), as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.get("output_type") == "error" for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    if name == "ablation":
        assert images == 3 and "LC keeps ≥99%" in markdown and "*reproduced*" in markdown
    elif name == "codebook_analysis":
        assert images == 4
    elif name == "tables":
        assert markdown.count("## ") == len(GRIDS) and markdown.count("*reproduced*") == len(CLAIMS)
    else:
        assert images == len(FIGURE_NAMES) and (written / "REPORT.md").exists()
        assert (written / "figures" / "codebook_tsne.png").exists()
        assert "(figures/codebook_tsne.png)" in (written / "REPORT.md").read_text()
    assert sorted(results.rglob("*")) == before  # the notebooks only read the results store
