"""The per-grid tables of the report and the notebooks: one row per run (the fields the grid varies, seed, the
metrics, wall time), a missing metric shown as ``missing`` with its reasons listed once, and a markdown renderer."""

from __future__ import annotations

import math

from pqstudy.config import ID_DEFAULTS, NON_RESULT_FIELDS
from pqstudy.study.methods import method_of
from pqstudy.study.store import config_columns, grid_runs, numeric, select_profile

MISSING = "missing"
# Metric columns of the grid tables: name → (header, formatter). KID and CMMD are shown only where some run has them
# (CMMD needs CLIP weights that a machine may not have: the report's metrics section says so once).
TABLE_METRICS = {
    "psnr": ("PSNR", lambda v: f"{v:.2f}"),
    "ssim": ("SSIM", lambda v: f"{v:.4f}"),
    "utilisation": ("util. (train)", lambda v: f"{100 * v:.1f}%"),
    "utilisation_test": ("util. (test)", lambda v: f"{100 * v:.1f}%"),
    "positions_per_entry": ("pos./entry", lambda v: f"{v:.1f}"),
    "perplexity": ("perplexity", lambda v: f"{v:.1f}"),
    "bits_per_position": ("bits/pos", lambda v: f"{v:.4g}"),
    "lpips": ("LPIPS", lambda v: f"{v:.4f}"),
    "rfid": ("rFID", lambda v: f"{v:.2f}"),
    "kid": ("KID", lambda v: f"{v:.4f}"),
    "cmmd": ("CMMD", lambda v: f"{v:.3f}"),
}
OPTIONAL_METRICS = ("kid", "cmmd")
SKIP_FIELDS = {"train.seed", "model.kind", "quantizer.kind", "quantizer.sub_kind"}  # shown as "seed" / "method"
# how a run ran (device, compile, checkpoints, batch of the evaluation) is not a grid variable; which metrics it
# computed is, as it says why a metric is missing
HOW_IT_RAN = NON_RESULT_FIELDS - {"train.eval_metrics"}
CODEBOOK_METRICS = ("utilisation", "utilisation_test", "positions_per_entry", "perplexity", "bits_per_position")
NOT_APPLICABLE = "n/a"

# ---------------------------------------------------------------------------------------------------------------
# markdown


def _escape(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list], align: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table; ``align`` per column: "l" or "r"."""
    align = align or ["l"] * len(headers)
    lines = ["| " + " | ".join(_escape(h) for h in headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_escape(v) for v in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# tables


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def varied_fields(runs) -> list[str]:
    """The config columns (``section.field``) whose value differs between the runs (seed and ``HOW_IT_RAN`` left out;
    a field recorded before it existed read as the value it then had, ``ID_DEFAULTS``)."""
    out = []
    for column in config_columns(runs):
        if column in SKIP_FIELDS or column in HOW_IT_RAN:
            continue
        values = runs[column]
        if column in ID_DEFAULTS:
            values = values.where(values.notna(), ID_DEFAULTS[column])
        if values.astype(str).nunique(dropna=False) > 1:
            out.append(column)
    return out


def _short_names(columns: list[str]) -> dict[str, str]:
    tails = [c.split(".", 1)[1] for c in columns]
    return {c: (t if tails.count(t) == 1 else c) for c, t in zip(columns, tails, strict=True)}


def _display(value) -> str:
    """A table value as the report prints it: empty when missing, an integral float without ``.0``."""
    if _is_missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return f"{int(value)}"
    return str(value)


def grid_table(df, grid: str, profile: str | None = None):
    """``(table, notes)`` for one grid: a DataFrame of formatted cells (run id, the varied fields, seed, the metrics,
    wall time) and the list of missing-metric reasons (``"lpips: <reason> (3 runs)"``)."""
    import pandas as pd

    df = select_profile(df, profile)
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return pd.DataFrame(), []
    fields = varied_fields(runs)
    names = _short_names(fields)
    seeds = numeric(runs, "train.seed")
    show_seed = seeds.nunique() > 1
    metrics = [m for m in TABLE_METRICS if m not in OPTIONAL_METRICS or numeric(runs, m).notna().any()]
    runs = runs.assign(_method=method_of(runs))
    keys = {"_method": runs["_method"].astype(str)}
    for i, c in enumerate(fields + (["train.seed"] if show_seed else [])):
        values = numeric(runs, c)
        keys[f"_k{i}"] = values.fillna(-1) if values.notna().any() else runs[c].astype(str)
    ordered = runs.assign(**keys).sort_values([*keys, "run_id"])
    rows, reasons = [], {}
    for _, run in ordered.iterrows():
        row = {"run": run["run_id"], "method": run["_method"]}
        for c in fields:
            row[names[c]] = _display(run[c])
        if show_seed:
            row["seed"] = _display(run["train.seed"])
        for metric in metrics:
            header, fmt = TABLE_METRICS[metric]
            value = numeric(run.to_frame().T, metric).iloc[0]
            continuous = str(run.get("model.kind", "quantized")) not in ("quantized", "nan", "None")
            if _is_missing(value) and continuous and metric in CODEBOOK_METRICS:
                row[header] = NOT_APPLICABLE
                reasons.setdefault((None, "continuous model: no codebook"), 0)
                reasons[(None, "continuous model: no codebook")] += 1
            elif _is_missing(value):
                row[header] = MISSING
                reason = run.get(f"{metric}_missing_reason")
                reason = reason if isinstance(reason, str) and reason else "not recorded"
                reasons.setdefault((metric, reason), 0)
                reasons[(metric, reason)] += 1
            else:
                row[header] = fmt(float(value))
        wall = numeric(run.to_frame().T, "wall_seconds").iloc[0]
        row["wall s"] = "" if _is_missing(wall) else f"{wall:.0f}"
        rows.append(row)
    notes = [f"{TABLE_METRICS[m][0]} {MISSING}: {reason} ({n} run{'s' if n != 1 else ''})"
             for (m, reason), n in reasons.items() if m is not None]
    if (None, "continuous model: no codebook") in reasons:
        notes.insert(0, f"{NOT_APPLICABLE}: continuous model, no codebook (utilisation, perplexity, bits per position)")
    return pd.DataFrame(rows), notes


def frame_markdown(table) -> str:
    headers = list(table.columns)
    right = set(h for h, _ in TABLE_METRICS.values()) | {"wall s", "seed"}
    return markdown_table(headers, table.values.tolist(), ["r" if h in right else "l" for h in headers])


# ---------------------------------------------------------------------------------------------------------------
# generation grids: one row per generator, its tokenizer named, the floor beside it

GEN_METRICS = {  # name → (header, formatter)
    "tokenizer_bits_per_image": ("bits/img", lambda v: f"{v:,.0f}"),
    "nll_bits_per_image": ("NLL bits/img", lambda v: f"{v:,.0f}"),
    "fd_classifier": ("FD (cls)", lambda v: f"{v:.2f}"),
    "recon_fd_classifier": ("FD recon (cls)", lambda v: f"{v:.2f}"),
    "kid_classifier": ("KID (cls)", lambda v: f"{v:.4f}"),
    "precision": ("prec.", lambda v: f"{v:.3f}"),
    "recall": ("recall", lambda v: f"{v:.3f}"),
    "density": ("density", lambda v: f"{v:.3f}"),
    "coverage": ("coverage", lambda v: f"{v:.3f}"),
    "class_accuracy": ("class acc.", lambda v: f"{100 * v:.1f}%"),
    "recon_class_accuracy": ("recon class acc.", lambda v: f"{100 * v:.1f}%"),
    "real_class_accuracy": ("real class acc.", lambda v: f"{100 * v:.1f}%"),
    "fid_inception": ("FID (Inception)", lambda v: f"{v:.2f}"),
    "generate_seconds_per_sample": ("gen ms/sample", lambda v: f"{1000 * v:.1f}"),
    "generate_flops_per_sample": ("gen GFLOP/sample", lambda v: f"{v / 1e9:.3g}"),
}


def run_value(run, column: str) -> float:
    """One row's ``column`` as a float (NaN when it is missing or not a number)."""
    return float(numeric(run.to_frame().T, column).iloc[0])


def levels_of(ch_mult) -> int:
    """Resolution levels of a ``model.ch_mult`` cell, ``"(1, 2, 4)"`` → 3: the downsampling factor is 2^(levels − 1)."""
    return len([c for c in str(ch_mult).strip("()").split(",") if c.strip()])


def generation_rows(runs):
    """The generation runs (``gen.kind`` set) of a runs DataFrame."""
    if runs is None or "gen.kind" not in runs.columns:
        return runs.iloc[0:0] if runs is not None else runs
    return runs[runs["gen.kind"].notna()]


def generator_name(run) -> str:
    kind = run.get("gen.kind")
    if kind == "ar":
        return f"AR ({run.get('gen.head')})"
    latent = "pre-quant." if run.get("gen.latent") == "pre" else "latent"
    return f"flow DiT ({latent})"


def tokenizer_name(run) -> str:
    """Method, M, K, D, F of a generation run's tokenizer (its row carries the tokenizer's fields)."""
    from pqstudy.study.methods import run_label

    levels = levels_of(run.get("model.ch_mult", "()"))
    return f"{run_label(run).split(' · ')[0]} F={2 ** max(levels - 1, 0)}"


def generation_table(df, grid: str, profile: str | None = None):
    """``(table, notes)`` for a generation grid: one row per generator (its tokenizer, the rate, the prior's NLL,
    sample quality in the study classifier's space and with Inception where measured, cost), and notes with the
    floor (training images vs the test split at the same sample count) and the sampling settings."""
    import pandas as pd

    runs = generation_rows(grid_runs(select_profile(df, profile), grid))
    if runs is None or len(runs) == 0:
        return pd.DataFrame(), []
    metrics = [m for m in GEN_METRICS if numeric(runs, m).notna().any()]
    rows = []
    order = runs.assign(_tok=[tokenizer_name(r) for _, r in runs.iterrows()], _seed=numeric(runs, "gen.seed"))
    for _, run in order.sort_values(["gen.kind", "gen.head", "_tok", "_seed", "run_id"]).iterrows():
        row = {"run": run["run_id"], "generator": generator_name(run), "tokenizer": run["_tok"],
               "gen. seed": "" if _is_missing(run["_seed"]) else f"{run['_seed']:.0f}"}
        for metric in metrics:
            header, fmt = GEN_METRICS[metric]
            value = numeric(run.to_frame().T, metric).iloc[0]
            row[header] = "" if _is_missing(value) else fmt(float(value))
        rows.append(row)
    notes = []
    real = numeric(runs, "real_fd_classifier").dropna()
    if len(real):
        notes.append(f"floor: FD (cls) of training images vs the test split at the same sample count "
                     f"{real.min():.2f}–{real.max():.2f}; classifier test accuracy "
                     f"{100 * numeric(runs, 'classifier_test_accuracy').dropna().mean():.1f}%")
    missing = runs.get("fd_classifier_missing_reason")
    if missing is not None and missing.notna().any():
        notes.append(f"FD (cls) missing: {missing.dropna().iloc[0]}")
    def num(run, field) -> str:
        return f"{run_value(run, field):g}"

    settings = sorted({f"{generator_name(r)}: " + (
        f"temperature {num(r, 'gen.temperature')}, top-k {num(r, 'gen.top_k')}, top-p {num(r, 'gen.top_p')}, "
        f"CFG {num(r, 'gen.cfg_scale')}" if r.get("gen.kind") == "ar" else
        f"{r.get('gen.solver')} {num(r, 'gen.sample_steps')} steps, CFG {num(r, 'gen.cfg_scale')}")
        for _, r in runs.iterrows()})
    samples = numeric(runs, "samples").dropna()
    per_run = f"; {int(samples.max())} samples per run" if len(samples) else ""
    notes += [f"sampling: {s}{per_run}" for s in settings]
    if "generate_seconds_per_sample" in metrics:
        notes.append("gen ms/sample: wall time in the run's own process, so it grows with whatever else ran on the "
                     "machine; GFLOP/sample is counted and does not")
    return pd.DataFrame(rows), notes
