"""``notebooks/train_eval.ipynb``: its generator and the helpers its cells call.

The notebook is generated (``python -m pqstudy.study.notebook``) so that its ``parameters`` cell lists exactly the
fields of ``pqstudy.config``: ``profile`` plus one ``section_field`` variable per config field (set to its value in
the ``NOTEBOOK_PROFILE`` profile, so a reader sees what runs), plus ``run_dir``, ``results_dir``, ``grid`` and
``notebook_path``. Regenerate it after adding a config field or changing a profile; ``tests/test_runner.py`` fails
until then.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

from pqstudy.config import SECTIONS, RunConfig, from_params, get_profile, to_params

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "train_eval.ipynb"
# The kernel the committed notebooks name: the native "python3" kernel of the Jupyter that opens them, i.e. that
# environment's own interpreter (jupyter_client runs a "python" kernel with its sys.executable, and inside a venv
# the venv's kernel specs come before the user's), so JupyterLab started from this checkout's .venv/bin/jupyter and
# .venv/bin/papermill run this checkout's code. This checkout's named kernel (pqstudy.study.kernel: "pqstudy
# (<path>)" in JupyterLab) is the one the sweep runner asks for by name. A per-checkout name here would make the
# committed notebooks differ between checkouts.
NOTEBOOK_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# The profile whose values the parameters cell shows (and runs by hand): seconds per run.
NOTEBOOK_PROFILE = "smoke"
# Where notebooks run by hand write (git-ignored): only ``pqstudy study`` / ``sweep`` write the committed results/.
SCRATCH = "scratch"

# Parameters of the notebook that are not config fields: name → (default source, comment).
EXTRA_PARAMETERS = {
    "run_dir": ("None", f"run directory; None → {SCRATCH}/runs/<run_id> (relative paths: from the repository root)"),
    "results_dir": (f'"{SCRATCH}/results"', "where the run is recorded: git-ignored (sweeps pass results/)"),
    "grid": ('""', "the sweep grid this run belongs to (\"\" when run by hand)"),
    "notebook_path": ("None", "where this executed notebook is saved (set by the sweep runner)"),
}


def config_parameter_names() -> list[str]:
    """``profile`` and every ``section_field`` name, in config order."""
    return list(to_params(get_profile("smoke")))


def parameter_names() -> list[str]:
    """Every variable of the notebook's ``parameters`` cell."""
    return [*config_parameter_names(), *EXTRA_PARAMETERS]


def _type_names() -> dict[str, str]:
    out = {}
    for section in SECTIONS:
        cls = type(getattr(RunConfig(), section))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            out[f"{section}_{f.name}"] = "tuple of int" if typing.get_origin(tp) is tuple else tp.__name__
    return out


def profile_parameters(profile: str = NOTEBOOK_PROFILE) -> dict:
    """``profile``'s value of every config parameter, as the parameters cell shows it (tuples as tuples)."""
    types = _type_names()
    return {name: tuple(value) if types.get(name) == "tuple of int" else value
            for name, value in to_params(get_profile(profile)).items()}


def _source(value) -> str:
    """A parameter value as Python source (strings in double quotes, like the rest of the code)."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def parameters_source() -> str:
    """The source of the ``parameters`` cell, generated from ``pqstudy.config``: the notebook profile's values."""
    types = _type_names()
    shown = profile_parameters()
    lines = [
        "# Parameters (papermill injects values after this cell): the values that run, field for field (see",
        f"# pqstudy/config.py for what each means). These are the {NOTEBOOK_PROFILE} profile's; set `profile` to run "
        "another:",
        "# the fields still at these values then take that profile's values, the fields you changed are kept.",
        f"profile = {_source(NOTEBOOK_PROFILE)}  # smoke | default | paper",
    ]
    section = None
    for name in config_parameter_names()[1:]:
        head = name.partition("_")[0]
        if head != section:
            section = head
            lines.append(f"# {section}")
        lines.append(f"{name} = {_source(shown[name])}  # {types[name]}")
    lines.append("# where things go")
    for name, (default, comment) in EXTRA_PARAMETERS.items():
        lines.append(f"{name} = {default}  # {comment}")
    return "\n".join(lines)


# The last cell of every run notebook (train_eval here, generation in generation_notebook): the run's record.
RECORD_CELL = ("code", [], """record = record_run(results_dir, cfg, status="ok", metrics=metrics, history=history,
                    wall_seconds=wall_seconds, notebook=notebook_path, grids=[grid] if grid else [])
print(f"recorded {record['run_id']} in {results_dir}/runs ({record['wall_seconds']} s)")""")

CELLS = [
    ("markdown", [], """# Train and evaluate one run

One configuration of `pqstudy`: train the autoencoder, evaluate it on the test split, show the metrics, the
loss / codebook-utilisation history and a reconstruction grid, and record the result in the results store
(`<results_dir>/runs/<run_id>.json`). The sweep runner (`pqstudy.study.run_sweep`) executes this notebook once per
config with papermill and records into `results/`; by hand, edit the parameters below and run all cells: the run
goes to `scratch/` (git-ignored), so the committed results stay as the study made them. Re-running continues from
the run directory's checkpoint."""),
    ("code", ["parameters"], None),  # parameters_source()
    ("code", [], """import time

import matplotlib.pyplot as plt

from pqstudy.study.notebook import config_from_namespace, metrics_table, plot_history, reconstruction_grid, resolve
from pqstudy.study.store import record_run
from pqstudy.train import load_history
from pqstudy.train_eval import train_and_evaluate

cfg = config_from_namespace(globals())
run_dir = resolve(run_dir or f"scratch/runs/{cfg.run_id}")
results_dir = resolve(results_dir)
print(f"run {cfg.run_id} → {run_dir}")"""),
    ("code", [], """started = time.perf_counter()
metrics = train_and_evaluate(cfg, run_dir, resume=True, progress=not grid)
wall_seconds = time.perf_counter() - started
metrics_table(metrics)"""),
    ("code", [], """history = load_history(run_dir)
plot_history(history)
plt.show()"""),
    ("code", [], """from pqstudy.study.store import save_reconstruction
from pqstudy.study.codebook_export import export_codebook

fig = reconstruction_grid(run_dir)
save_reconstruction(fig, results_dir, cfg.run_id)  # <results_dir>/recon/<run_id>.png, for the figures
if cfg.model.kind == "quantized":
    export_codebook(run_dir, results_dir)  # <results_dir>/codebooks/<run_id>.npz: usage counts, codebook sample
plt.show()"""),
    RECORD_CELL,
]


def build_notebook():
    """The ``train_eval`` notebook (no outputs), as an nbformat node."""
    return notebook_with_parameters(CELLS, parameters_source())


def notebook_with_parameters(cells, parameters: str):
    """``notebook_from_cells`` with ``parameters`` as the source of the cell whose source is None (the parameters
    cell)."""
    return notebook_from_cells([(kind, tags, parameters if source is None else source) for kind, tags, source in cells])


def notebook_from_cells(cells):
    """An nbformat notebook (no outputs, kernel ``NOTEBOOK_KERNELSPEC``) from ``(kind, tags, source)`` triples."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, tags, source in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.pop("id", None)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = dict(NOTEBOOK_KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, 4  # minor 4: no cell ids, so regeneration gives identical files
    return nb


def write_notebook(path: str | os.PathLike = NOTEBOOK, nb=None) -> Path:
    """Write ``nb`` (default: the ``train_eval`` notebook) to ``path``; the other generated notebooks use it too."""
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_notebook() if nb is None else nb, str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# helpers the notebook's cells call


def resolve(path: str | os.PathLike) -> Path:
    """A relative path is taken from the repository root (JupyterLab runs a notebook in ``notebooks/``)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    root = REPO_ROOT if (REPO_ROOT / "notebooks").is_dir() else Path.cwd()
    return root / path


def _same(a, b) -> bool:
    """Equal parameter values, a list and a tuple of the same items included (papermill injects tuples as lists)."""
    a, b = (list(v) if isinstance(v, (list, tuple)) else v for v in (a, b))
    return type(a) is type(b) and a == b


def config_from_namespace(namespace: dict) -> RunConfig:
    """The config from the notebook's parameter variables (``profile`` and every ``section_field``).

    A run of a sweep (``grid`` set) gets every field from the runner and is taken as is. By hand, when ``profile``
    is not the cell's profile, the fields still at the cell's values take the chosen profile's values (as do fields
    set to None), so ``-p profile default`` alone runs the default profile; the fields changed are kept."""
    names = config_parameter_names()
    missing = [n for n in names if n not in namespace]
    if missing:
        raise NameError(f"the parameters cell lacks {missing}; regenerate it: python -m pqstudy.study.notebook")
    params = {name: namespace[name] for name in names}
    if not namespace.get("grid") and params["profile"] != NOTEBOOK_PROFILE:
        shown = profile_parameters()
        params = {name: None if name != "profile" and _same(value, shown[name]) else value
                  for name, value in params.items()}
    return from_params(params)


def metrics_table(metrics: dict):
    """The metrics as a two-column table (lists summarised)."""
    import pandas as pd

    rows = []
    for key, value in metrics.items():
        if isinstance(value, (list, tuple)):
            value = f"[{len(value)} values]"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        rows.append({"metric": key, "value": value})
    return pd.DataFrame(rows).set_index("metric")


# History keys that are not loss terms.
NOT_LOSSES = {"step", "epoch", "lr", "gan_weight", "logits_real", "logits_fake", "utilisation", "utilisation_min",
              "perplexity", "codes_used"}


def plot_history(history: list[dict]):
    """Losses per record (left) and codebook utilisation / perplexity per epoch (right)."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_use) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [r["step"] for r in history]
    keys = list(dict.fromkeys(k for r in history for k, v in r.items()
                              if k not in NOT_LOSSES and isinstance(v, (int, float)) and not isinstance(v, bool)))
    for key in keys:
        ax_loss.plot(steps, [r.get(key) for r in history], marker="o", ms=3, label=key)
    ax_loss.set(xlabel="step", ylabel="loss (window mean)", title="losses")
    if keys:
        ax_loss.legend(fontsize=8)
    if any("utilisation" in r for r in history):
        epochs = [r["epoch"] for r in history]
        ax_use.plot(epochs, [r.get("utilisation") for r in history], marker="o", ms=3, color="C0")
        ax_use.set(xlabel="epoch", ylabel="utilisation", ylim=(0, 1.05), title="codebook utilisation")
        if any("perplexity" in r for r in history):
            ax_pp = ax_use.twinx()
            ax_pp.plot(epochs, [r.get("perplexity") for r in history], marker="s", ms=3, color="C1")
            ax_pp.set_ylabel("perplexity", color="C1")
    else:
        ax_use.text(0.5, 0.5, "continuous model: no codebook", ha="center", va="center", transform=ax_use.transAxes)
        ax_use.set_axis_off()
    fig.tight_layout()
    return fig


def reconstruction_grid(run_dir: str | os.PathLike, n: int = 8, split: str = "test"):
    """The first ``n`` images of ``split`` (top row) and their reconstructions (bottom row)."""
    import matplotlib.pyplot as plt
    import torch

    from pqstudy.cpu import flush_denormals, resolve_device
    from pqstudy.data import load_dataset, to_model_space
    from pqstudy.metrics.image import to_unit
    from pqstudy.models.checkpoint import load_model

    model, cfg = load_model(run_dir, device="cpu")
    device = resolve_device(cfg.train.device)
    flush_denormals()
    model = model.to(device)
    dataset = load_dataset(cfg.data, split, seed=cfg.train.seed)
    n = min(n, len(dataset))
    x = to_model_space(dataset.get_batch(torch.arange(n)))
    with torch.no_grad():
        rec = model(x.to(device)).x_rec.clamp(-1.0, 1.0).cpu()
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.0), squeeze=False)
    for row, images in enumerate((to_unit(x), to_unit(rec))):
        for i in range(n):
            ax = axes[row][i]
            ax.imshow(images[i].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel("input" if row == 0 else "reconstruction", fontsize=8)
    fig.suptitle(f"{cfg.run_id}: {split} reconstructions", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    print(f"wrote {write_notebook()}")
