"""``notebooks/generation.ipynb``: its generator and the helpers its cells call.

One generation run: a generator (``pqstudy.generation.config.GenConfig``) trained on the codes of one tokenizer run,
its samples scored and recorded. The ``parameters`` cell mirrors ``GenConfig`` field for field (``gen_<field>``, at
its defaults), plus the tokenizer (``tokenizer_dir``, and ``tokenizer_config`` which the sweep runner passes) and
where things go. Regenerate with ``python -m pqstudy.study.generation_notebook``; ``tests/test_generation_study.py``
checks that the committed file is the generated one.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pqstudy.generation.config import GEN_SECTION, GenConfig, GenRunConfig, gen_from_params
from pqstudy.runio import read_json
from pqstudy.study import notebook
from pqstudy.study.notebook import RECORD_CELL, REPO_ROOT, SCRATCH, _source, notebook_with_parameters

GEN_NOTEBOOK = REPO_ROOT / "notebooks" / "generation.ipynb"

EXTRA_PARAMETERS = {
    "tokenizer_dir": ("None", "the tokenizer's run directory (a finished `pqstudy train` run)"),
    "tokenizer_config": ("None", "its config (RunConfig.to_dict()); None: read from tokenizer_dir/config.json"),
    "run_dir": ("None", f"run directory; None → {SCRATCH}/runs/<run_id>"),
    "results_dir": (f'"{SCRATCH}/results"', "where the run is recorded: git-ignored (sweeps pass results/)"),
    "grid": ('""', "the sweep grid this run belongs to (\"\" when run by hand)"),
    "notebook_path": ("None", "where this executed notebook is saved (set by the sweep runner)"),
}


def gen_parameter_names() -> list[str]:
    return [f"{GEN_SECTION}_{f.name}" for f in dataclasses.fields(GenConfig)]


def parameters_source() -> str:
    defaults = dataclasses.asdict(GenConfig())
    lines = ["# Parameters (papermill injects values after this cell): the generator, field for field (see",
             "# pqstudy/generation/config.py for what each means), at GenConfig's defaults; then the tokenizer."]
    for f in dataclasses.fields(GenConfig):
        lines.append(f"{GEN_SECTION}_{f.name} = {_source(defaults[f.name])}  # {f.type}")
    lines.append("# the tokenizer and where things go")
    for name, (default, comment) in EXTRA_PARAMETERS.items():
        lines.append(f"{name} = {default}  # {comment}")
    return "\n".join(lines)


CELLS = [
    ("markdown", [], """# Train and evaluate one generator

A generator on the codes of one trained tokenizer: an autoregressive prior on its token indices (`gen_kind = "ar"`)
or a flow-matching DiT on its latents (`gen_kind = "diffusion"`). The cells train it (continuing from the run
directory's checkpoint), report the prior's NLL, sample, score the samples in the study classifier's feature space
(and with Inception where `gen_fid_samples` > 0) next to the floor (real vs real, reconstructions vs real), show a
sample grid and record the run in the results store. By hand, set `tokenizer_dir` to a finished tokenizer run; the
run goes to `scratch/` (git-ignored)."""),
    ("code", ["parameters"], None),
    ("code", [], """import time

import matplotlib.pyplot as plt

from pqstudy.generation.run import train_and_evaluate_generator
from pqstudy.study.generation_notebook import gen_config_from_namespace, sample_grid
from pqstudy.study.notebook import metrics_table, plot_history, resolve
from pqstudy.study.store import record_run, save_samples_figure
from pqstudy.train import load_history

cfg = gen_config_from_namespace(globals())
tokenizer_dir = resolve(tokenizer_dir)
run_dir = resolve(run_dir or f"scratch/runs/{cfg.run_id}")
results_dir = resolve(results_dir)
print(f"generation run {cfg.run_id} on tokenizer {cfg.tokenizer_run_id} → {run_dir}")"""),
    ("code", [], """started = time.perf_counter()
metrics = train_and_evaluate_generator(cfg, run_dir, tokenizer_dir, resume=True, progress=not grid)
wall_seconds = time.perf_counter() - started
metrics_table(metrics)"""),
    ("code", [], """history = load_history(run_dir)
plot_history(history)
plt.show()"""),
    ("code", [], """fig = sample_grid(run_dir, cfg)
save_samples_figure(fig, results_dir, cfg.run_id)  # <results_dir>/samples/<run_id>.png, for the figures
plt.show()"""),
    RECORD_CELL,
]


def build_notebook():
    return notebook_with_parameters(CELLS, parameters_source())


def write_notebook(path: str | os.PathLike = GEN_NOTEBOOK) -> Path:
    return notebook.write_notebook(path, build_notebook())


# ---------------------------------------------------------------------------------------------------------------
# helpers the notebook's cells call


def gen_config_from_namespace(namespace: dict) -> GenRunConfig:
    """The generation run's config from the notebook's variables: every ``gen_<field>``, and the tokenizer's config
    (``tokenizer_config``, else read from ``tokenizer_dir/config.json``)."""
    from pqstudy.study.notebook import resolve

    missing = [n for n in (*gen_parameter_names(), *EXTRA_PARAMETERS) if n not in namespace]
    if missing:
        raise NameError(f"the parameters cell lacks {missing}; regenerate it: "
                        "python -m pqstudy.study.generation_notebook")
    tokenizer_config = namespace["tokenizer_config"]
    if tokenizer_config is None:
        if not namespace["tokenizer_dir"]:
            raise ValueError("tokenizer_dir: set it to a finished tokenizer run directory (`pqstudy train`)")
        path = resolve(namespace["tokenizer_dir"]) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer_dir: {path} does not exist (not a pqstudy run directory)")
        tokenizer_config = {k: v for k, v in read_json(path).items() if k != "run_id"}
    params = {name: namespace[name] for name in gen_parameter_names()}
    return gen_from_params({**params, "tokenizer_config": tokenizer_config})


def tokenizer_label(cfg: GenRunConfig) -> str:
    """The tokenizer as a reader names it: method, M, K, D, F (e.g. ``PQ M=4 K=256 D=8 F=4``)."""
    import pandas as pd

    from pqstudy.study.methods import run_label

    row = pd.Series(cfg.tokenizer.flat())
    row = row.map(lambda v: str(tuple(v)) if isinstance(v, list) else v)
    return f"{run_label(row).split(' · ')[0]} F={cfg.tokenizer.model.downsample}"


def generator_label(cfg: GenRunConfig) -> str:
    g = cfg.gen
    if g.kind == "ar":
        return f"AR prior ({g.head}, {g.size})"
    return f"flow DiT ({g.size}) on {'pre-quantisation' if g.latent == 'pre' else 'decoder'} latents"


def sample_grid(run_dir: str | os.PathLike, cfg: GenRunConfig, per_class: int = 10):
    """The saved samples, one row per class (``per_class`` each), titled by generator and tokenizer."""
    import matplotlib.pyplot as plt

    from pqstudy.generation.evaluate import load_samples

    images, labels = load_samples(run_dir)
    if labels is None:
        rows = [list(range(i, min(i + per_class, len(images)))) for i in range(0, len(images), per_class)]
    else:
        rows = [[int(i) for i in (labels == c).nonzero().flatten()[:per_class]] for c in range(int(labels.max()) + 1)]
    fig, axes = plt.subplots(len(rows), per_class, figsize=(0.9 * per_class, 0.9 * len(rows) + 0.6), squeeze=False)
    for r, idx in enumerate(rows):
        for c in range(per_class):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(idx):
                ax.imshow(images[idx[c]].permute(1, 2, 0).numpy())
            else:
                ax.set_axis_off()
        if labels is not None:
            axes[r][0].set_ylabel(f"class {r}", fontsize=7)
    g = cfg.gen
    setting = (f"T={g.temperature:g} top-k={g.top_k} top-p={g.top_p:g} CFG={g.cfg_scale:g}" if g.kind == "ar"
               else f"{g.solver} {g.sample_steps} steps CFG={g.cfg_scale:g}")
    fig.suptitle(f"{generator_label(cfg)} · {tokenizer_label(cfg)}\n{setting} · seed {g.seed}", fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    print(f"wrote {write_notebook()}")
