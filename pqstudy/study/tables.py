"""The per-grid tables of the report and the notebooks: one row per run (the fields the grid varies, seed, the
metrics, wall time), a missing metric shown as ``missing`` with its reasons listed once, and a markdown renderer."""

from __future__ import annotations

import math

from pqstudy.study.methods import method_of
from pqstudy.study.store import config_columns, grid_runs, numeric, select_profile

MISSING = "missing"
# Metric columns of the grid tables: name → (header, formatter). kid is shown only where some run has it.
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
OPTIONAL_METRICS = ("kid",)
SKIP_FIELDS = {"train.seed", "model.kind", "quantizer.kind", "quantizer.sub_kind"}  # shown as "seed" / "method"
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
    """The config columns (``section.field``) whose value differs between the runs (seed excluded)."""
    out = []
    for column in config_columns(runs):
        if column in SKIP_FIELDS:
            continue
        if runs[column].astype(str).nunique(dropna=False) > 1:
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
