"""``results/REPORT.md``: generated from the results store, never written by hand.

``write_report(results_dir, profile=None, figures=...)`` writes the header (profile, runs ok / failed, wall time),
the verdict of every paper claim (``pqstudy.study.verdicts``) with its evidence, one table per grid
(``pqstudy.study.tables``: the fields the grid varies and the metrics; a missing metric reads ``missing`` and its
reasons are listed once below the table), links to the figures under ``results/figures/`` (described by the
caller's ``figures``) and the failed runs with their errors.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pqstudy.study.methods import method_of, recipe_of
from pqstudy.study.store import FIGURES_SUBDIR, configuration, numeric, select_profile
from pqstudy.study.tables import (
    NOT_APPLICABLE,
    TABLE_METRICS,
    frame_markdown,
    generation_rows,
    generation_table,
    grid_table,
    markdown_table,
)
from pqstudy.study.verdicts import all_verdicts
from pqstudy.study.verdicts.compare import FLOORS, T_FACTOR
from pqstudy.study.verdicts.lc import MIN_POSITIONS_PER_ENTRY

REPORT = "REPORT.md"
STUDY_FILE = "study.json"


# ---------------------------------------------------------------------------------------------------------------
# the report


def read_study(results_dir: str | os.PathLike) -> dict:
    """``results/study.json`` ({profile, runs, wall_seconds, …}) or {} when absent or unreadable."""
    path = Path(results_dir) / STUDY_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def waiting_runs(df, profile: str | None, data: str | None = None) -> dict[str, tuple[int, int]]:
    """Per built-in grid, ``(runs not yet recorded ok, runs in the grid)`` at ``profile``'s scale on ``data`` (the
    profile's dataset when None); only grids with runs missing are listed, and none when the profile has no grids."""
    from pqstudy.study.grids import GRIDS, SCALES, grid_configs

    if profile not in SCALES:
        return {}
    ok = set(df.loc[df["status"] == "ok", "run_id"]) if len(df) and "status" in df.columns else set()
    waiting = {}
    for name in GRIDS:
        expected = {cfg.run_id for cfg in grid_configs(name, profile, data)}
        if expected - ok:
            waiting[name] = (len(expected - ok), len(expected))
    return waiting


def wait_for_grid(verdict, waiting: dict[str, tuple[int, int]]):
    """A verdict whose grid still has runs to come is inconclusive until they are in: its points may lack the seeds
    (or the very values) the claim turns on. The evidence so far, and what it reads as, are kept."""
    if verdict.grid not in waiting:
        return verdict
    missing, total = waiting[verdict.grid]
    so_far = "" if verdict.status == "inconclusive" else f" From the runs so far it reads **{verdict.status}**."
    evidence = (f"Waiting for {missing} of the grid's {total} runs (deferred by the study's budget; the next "
                f"`pqstudy study` runs them).{so_far} {verdict.evidence}")
    seeds = f"{verdict.seeds}; " if verdict.seeds else ""
    return replace(verdict, status="inconclusive", evidence=evidence, seeds=f"{seeds}{missing} of {total} runs to come")


def study_verdicts(df, results_dir: str | os.PathLike = "results", profile: str | None = None) -> list:
    """Every claim's verdict on ``df`` as REPORT.md gives it: a claim whose grid still has runs to come waits for
    them (the grids of ``profile``, resolved as the report resolves it, on ``study.json``'s dataset). The notebooks
    show these, so that they and the report never disagree."""
    profile = resolve_profile(df, results_dir, profile)
    waiting = waiting_runs(df, profile, read_study(results_dir).get("data"))
    return [wait_for_grid(v, waiting) for v in all_verdicts(df)]


def resolve_profile(df, results_dir, profile: str | None) -> str | None:
    """The profile to report: the argument, else ``study.json``'s, else the single profile of the runs."""
    if profile:
        return profile
    study = read_study(results_dir).get("profile")
    if study:
        return str(study)
    if df is not None and "profile" in df.columns:
        profiles = sorted(set(df["profile"].dropna().astype(str)))
        if len(profiles) == 1:
            return profiles[0]
    return None


def _minutes(seconds) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def busy_span(df) -> tuple[float, object, object] | None:
    """The wall clock during which at least one of ``df``'s runs was running, from each record's ``finished_at``
    and ``wall_seconds`` (the union of the intervals, in seconds), and the first start and last end; None when no
    run has both."""
    import pandas as pd

    if "finished_at" not in df.columns or "wall_seconds" not in df.columns:
        return None
    end = pd.to_datetime(df["finished_at"], utc=True, errors="coerce")
    seconds = numeric(df, "wall_seconds")
    keep = end.notna() & seconds.notna()
    if not keep.any():
        return None
    intervals = sorted(zip(end[keep] - pd.to_timedelta(seconds[keep], unit="s"), end[keep], strict=True))
    total, (start, stop) = 0.0, intervals[0]
    for a, b in intervals[1:]:
        if a > stop:
            total += (stop - start).total_seconds()
            start, stop = a, b
        else:
            stop = max(stop, b)
    total += (stop - start).total_seconds()
    return total, intervals[0][0], max(b for _, b in intervals)


def _target(profile: str | None, generation: bool = False) -> str:
    """``; the profile's limit: N min`` where the profile has one: ``BUDGET_MINUTES`` (each study call's default
    hard limit, and the limit for the whole study) or, for the generation runs, ``GEN_BUDGET_MINUTES``."""
    from pqstudy.study.grids import BUDGET_MINUTES, GEN_BUDGET_MINUTES

    if generation:
        target = GEN_BUDGET_MINUTES.get(profile or "")
        return f"; the {profile} profile's target for them: ≤ {target} min (`GEN_BUDGET_MINUTES`)" if target else ""
    target = BUDGET_MINUTES.get(profile or "")
    return f"; the {profile} profile's limit for the whole study: {target} min (`BUDGET_MINUTES`)" if target else ""


def _generation_time(run_seconds: dict) -> str:
    """``; of which N generation runs X min`` when the study has generation runs (what the gen grids add)."""
    n = run_seconds.get("generation_runs")
    return f"; of which {n} generation runs {_minutes(float(run_seconds['generation_wall']))}" if n else ""


def _grid_names(df) -> list[str]:
    from pqstudy.study.grids import GRIDS

    names = list(GRIDS)
    if df is not None and "grids" in df.columns:
        for value in df["grids"].fillna("").astype(str):
            for name in value.split(";"):
                if name and name not in names:
                    names.append(name)
    return names


def _grid_doc(name: str) -> str:
    from pqstudy.study.grids import GRIDS

    fn = GRIDS.get(name)
    paragraph = (fn.__doc__ or "").strip().split("\n\n")[0] if fn else ""
    return " ".join(line.strip() for line in paragraph.splitlines())


def figure_links(folder: str | os.PathLike, figures: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(relative path, description)`` of every PNG under ``folder``: those named in ``figures`` (name →
    description, in order) first, then the others by name."""
    folder = Path(folder)
    present = {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()
    ordered = [n for n in figures if n in present] + sorted(present - set(figures))
    return [(f"{folder.name}/{n}.png", figures.get(n, n)) for n in ordered]


def _reason_kind(reason) -> str:
    text = str(reason)
    if text.startswith(("not computed", "not requested")):
        return "not computed in this profile"
    if "not found" in text or "changed on disk" in text:
        return "missing weights"
    return "failed"


REAL_FLOOR_PAIR = "test[:n] vs test[n:2n]"  # benchmarks/fid_anchors.py: two halves of the test split


def real_floor(results_dir) -> dict[int, tuple[float, float]]:
    """``{n: (FID, KID)}`` of two disjoint halves of the test split at n images each
    (``results/benchmarks/fid_anchors.csv``): what real images already score at the rFID/KID sample size, the floor
    of a perfect tokenizer. The newest row per n; empty without the file."""
    path = Path(results_dir) / "benchmarks" / "fid_anchors.csv"
    if not path.is_file():
        return {}
    rows = pd.read_csv(path)
    rows = rows[rows["pair"] == REAL_FLOOR_PAIR]
    return {int(r["n"]): (float(r["fid"]), float(r["kid"])) for _, r in rows.iterrows()}


def _floor_text(floor: dict[int, tuple[float, float]], sizes) -> str:
    known = [n for n in sizes if n in floor]
    if not known:
        return ""
    return "real vs real at the same n (two halves of the test split; `benchmarks/fid_anchors.py`): " + "; ".join(
        f"n = {n:,}: FID {floor[n][0]:.2f}, KID {floor[n][1]:.4f}" for n in known)


def reference_metrics_section(df, floor: dict[int, tuple[float, float]] | None = None) -> list[str]:
    """What the LPIPS / rFID / KID columns rest on: how many runs have each, on how many images, and why not."""
    if not len(df) or "status" not in df.columns:
        return []
    ok = df[df["status"] == "ok"]
    if "gen.kind" in ok.columns:  # generators have their own sample metrics (the generation sections)
        ok = ok[ok["gen.kind"].isna()]
    lines = ["## Reference metrics", ""]
    for metric, label in (("lpips", "LPIPS (AlexNet, lpips v0.1)"), ("rfid", "rFID"), ("kid", "KID"),
                          ("cmmd", "CMMD")):
        values = numeric(ok, metric).dropna() if metric in ok.columns else []
        reasons = ok.get(f"{metric}_missing_reason")
        kinds = [_reason_kind(r) for r in reasons.dropna()] if reasons is not None else []
        why = [f"{kinds.count(k)} {k}" for k in sorted(set(kinds))]
        unexplained = len(ok) - len(values) - len(kinds)
        if unexplained > 0:
            why.append(f"{unexplained} with no value or reason recorded")
        if metric == "cmmd" and not len(values):
            lines.append(f"- CMMD: none of the {len(ok)} tokenizer runs. It needs CLIP ViT-L/14 @336 px weights, "
                         "which this machine cannot obtain (they are not in a package registry); the grid tables "
                         "leave the column out. `PQSTUDY_CLIP_WEIGHTS` points a machine that has them to the file.")
            continue
        text = f"- {label}: {len(values)} of {len(ok)} tokenizer runs"
        if metric != "lpips" and len(values) and "fid_samples" in ok.columns:
            with_value = ok[numeric(ok, metric).notna()]
            counts = sorted({int(n) for n in numeric(with_value, "fid_samples").dropna()})
            sizes = ", ".join(f"{n:,}" for n in counts)
            text += f", on the first {sizes} images of the test split (`train.fid_samples`)"
            floor_text = _floor_text(floor or {}, counts)
            if floor_text:
                text += f"; {floor_text}"
        if why:
            text += f"; {', '.join(why)}"
        lines.append(text + ".")
    lines += ["- rFID from a few thousand images is biased upwards and is **not comparable** with the papers' "
              "50,000-sample rFID; verdicts that use a distribution metric prefer KID, which is unbiased at small n.",
              ""]
    return lines


def utilisation_section(df) -> list[str]:
    """How utilisation was counted, and the runs whose count is too thin to read."""
    if not len(df) or "status" not in df.columns:
        return []
    ok = df[df["status"] == "ok"]
    ppe = numeric(ok, "positions_per_entry")
    counted = ppe.notna()
    if not counted.any():
        return []
    thin = ok[counted & (ppe < MIN_POSITIONS_PER_ENTRY)]
    lines = ["## Utilisation", "",
             "Utilisation (`utilisation`) is counted as the papers count it: one pass of the final model over the "
             f"whole training split, every latent position of every image ({int(counted.sum())} runs). The test "
             "split's count is kept beside it (`utilisation_test`). At K entries and P positions counted, even "
             "perfectly uniform use reaches only 1 − e^(−P/K).", ""]
    if len(thin):
        lines.append(f"**Flagged:** {len(thin)} run(s) counted fewer than {MIN_POSITIONS_PER_ENTRY} positions per "
                     "entry; their utilisation is capped by counting: " + ", ".join(
                         f"{r['run_id']} ({float(r['positions_per_entry']):.1f})" for _, r in thin.iterrows()) + ".")
    else:
        lines.append(f"No run counted fewer than {MIN_POSITIONS_PER_ENTRY} positions per entry (fewest: "
                     f"{float(ppe[counted].min()):.1f}).")
    return lines + [""]


COMPUTED_FORMATS = {"_eff_bits": lambda v: f"{v:.1f}"}  # comparison-table columns computed from the runs' metrics
TABLE_COLUMNS = (("psnr", "PSNR"), ("ssim", "SSIM"), ("lpips", "LPIPS"), ("rfid", "rFID"), ("kid", "KID"),
                 ("utilisation", "util."), ("bits_per_position", "bits/pos"), ("_eff_bits", "eff. bits"))


def comparison_table_section(df, floor: dict[int, tuple[float, float]] | None = None) -> list[str]:
    """Each method at its paper setting (the runs with rFID/KID): mean ± std over seeds; ``floor``: what real images
    score at the same n (:func:`real_floor`)."""
    if not len(df) or "rfid" not in df.columns:
        return []
    ok = df[df["status"] == "ok"]
    continuous = method_of(ok).isin(["ae", "kl"]) & ok.get("gen.kind", pd.Series(index=ok.index)).isna()
    if not numeric(ok, "rfid").notna().any():
        return []
    ok = ok[numeric(ok, "rfid").notna() | continuous]  # the continuous baselines: the ceiling, without rFID
    ok = ok.assign(_eff_bits=numeric(ok, "quantizer.subspaces").fillna(1) * np.log2(numeric(ok, "perplexity")))
    ok = ok.assign(_method=method_of(ok), _recipe=recipe_of(ok), _k=numeric(ok, "quantizer.codebook_size"),
                   _d=numeric(ok, "quantizer.dim"), _m=numeric(ok, "quantizer.subspaces"), _config=configuration(ok))
    rows = []
    for (method, recipe, k, d, m, _), group in ok.groupby(["_method", "_recipe", "_k", "_d", "_m", "_config"],
                                                           sort=True):
        setting = f"D={d:g}" if method in ("ae", "kl") else (
            f"D={d:g}, K={k:g}" + (f", M={m:g}" if method.startswith("pq") else ""))
        cells = [method.upper(), recipe or "—", setting, str(len(group))]
        for column, _ in TABLE_COLUMNS:
            values = numeric(group, column).dropna()
            fmt = TABLE_METRICS[column][1] if column in TABLE_METRICS else COMPUTED_FORMATS[column]
            if not len(values):
                cells.append(NOT_APPLICABLE)
            elif len(values) > 1 and column not in ("bits_per_position", "_eff_bits"):
                cells.append(f"{fmt(values.mean())} ± {fmt(values.std(ddof=1))}")
            else:
                cells.append(fmt(values.mean()))
        rows.append(cells)
    samples = sorted({int(v) for v in numeric(ok[numeric(ok, "rfid").notna()], "fid_samples").dropna()})
    floor_text = _floor_text(floor or {}, samples)
    return ["## Comparison table", "",
            "Each method at its paper's setting (mean ± standard deviation over seeds). rFID and KID on the first "
            f"{', '.join(f'{n:,}' for n in samples)} test images against the same originals"
            + (f"; {floor_text}" if floor_text else "") + ". "
            "bits/pos is what a position can spend (M · log2 K); eff. bits what it does spend, M · log2 of the "
            "perplexity over the training split (the sub-codebooks' mean perplexity for PQ: an upper bound). AE and "
            "KL are the continuous baselines of the same width (the ceiling): no codebook, and no rFID/KID run.", "",
            markdown_table(["method", "recipe", "setting", "seeds", *(h for _, h in TABLE_COLUMNS)], rows,
                           ["l", "l", "l", "r"] + ["r"] * len(TABLE_COLUMNS)), ""]


def divergences_section() -> list[str]:
    """The "divergences from the papers" table (``pqstudy.recipes.DIVERGENCES``)."""
    from pqstudy.recipes import DIVERGENCES

    rows = [[d["what"], d["paper"], d["ours"], d["why"]] for d in DIVERGENCES]
    return ["## Divergences from the papers", "",
            "What the default profile still does differently from the papers' code, and why. Every hyperparameter "
            "the papers' code sets and a CPU run can take is a config field set to the paper's value "
            "(`pqstudy/recipes.py`, each with its file and line in the authors' code).", "",
            markdown_table(["what", "paper", "ours", "why"], rows), ""]


def report_markdown(results_dir: str | os.PathLike = "results", profile: str | None = None,
                    out_dir: str | os.PathLike | None = None, *, figures: Mapping[str, str]) -> str:
    """The text of REPORT.md for ``out_dir`` (default ``results_dir``): its figure links are the PNGs under
    ``<out_dir>/figures``, described and ordered by ``figures`` (name → description; the caller passes
    ``pqstudy.figures.FIGURE_DESCRIPTIONS``: the report reads results, it does not import the figures)."""
    from pqstudy.study.store import runs_dataframe

    results_dir = Path(results_dir)
    df = runs_dataframe(results_dir)
    profile = resolve_profile(df, results_dir, profile)
    df = select_profile(df, profile)
    study = read_study(results_dir)
    status = df["status"] if len(df) else []
    n_ok, n_failed = int((status == "ok").sum()) if len(df) else 0, int((status == "failed").sum()) if len(df) else 0

    out = ["# pqstudy report", "",
           "_Generated by `pqstudy.study.report.write_report` from the run files under `runs/`: do not edit by "
           "hand; regenerate it (`pqstudy report`)._", ""]
    profiles = sorted(set(df["profile"].dropna().astype(str))) if len(df) and "profile" in df.columns else []
    out.append(f"- profile: **{profile or ', '.join(profiles) or 'unknown'}**")
    out.append(f"- runs: **{n_ok} ok**, **{n_failed} failed** ({len(df)} recorded)")
    ok = df[df["status"] == "ok"] if len(df) else None
    busy = busy_span(ok) if ok is not None else None
    if busy is not None:
        seconds, first, last_end = busy
        out.append(f"- wall clock of the study's runs: {seconds / 3600:.1f} h ({seconds / 60:.0f} min), "
                   f"{first:%Y-%m-%d %H:%M} to {last_end:%Y-%m-%d %H:%M} UTC: the union of the ok runs' intervals "
                   "(`finished_at` − `wall_seconds` to `finished_at`), so time between study calls is not counted"
                   + _target(profile))
        gen = busy_span(generation_rows(ok))
        if gen is not None:
            out.append(f"- wall clock of the generation runs: {gen[0] / 60:.0f} min (the same union over the "
                       "generation runs alone)" + _target(profile, generation=True))
    wall = numeric(df, "wall_seconds").dropna() if len(df) else []
    if len(wall):
        out.append(f"- sum of run wall times: {_minutes(float(wall.sum()))}")
    last = [f"{key} {study[key]}" for key in ("ran", "skipped", "failed") if isinstance(study.get(key), int)]
    if last:
        took = f", took {_minutes(float(study['wall_seconds']))}" if study.get("wall_seconds") is not None else ""
        budget = study.get("budget_minutes")
        limit = (f", its hard limit {budget:g} min (`budget_minutes`; {study.get('deferred') or 0} run(s) deferred "
                 "past it)" if budget else "")
        when = f", finished {study['finished_at']}" if study.get("finished_at") else ""
        jobs = f", {study['jobs']} notebooks at once" if study.get("jobs") else ""
        out.append(f"- last `pqstudy study` call (`{STUDY_FILE}`): {', '.join(last)}{jobs}{took}{limit}{when}")
    machine = study.get("machine")
    if isinstance(machine, dict) and machine:
        out.append("- machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    out.append("")

    run_seconds = study.get("run_seconds")
    if isinstance(run_seconds, dict) and run_seconds.get("runs"):
        out.insert(len(out) - 1, f"- where the run time went ({run_seconds['runs']} runs, summed over runs): "
                   f"training {_minutes(float(run_seconds.get('train', 0)))}, evaluation on the test split "
                   f"{_minutes(float(run_seconds.get('evaluate', 0)))}, training-split usage pass "
                   f"{_minutes(float(run_seconds.get('usage_pass', 0)))}, "
                   f"run wall {_minutes(float(run_seconds['wall']))}" + _generation_time(run_seconds))

    verdicts = study_verdicts(df, results_dir, profile)
    floors = ", ".join(f"{k} {v:g}" for k, v in FLOORS.items())
    out += ["## Verdicts", "",
            "Each claim is judged from the data by `pqstudy.study.verdicts` (rules and thresholds in its docstring). "
            f"**The noise rule, for every comparison:** a point is the mean over its seeds; two points differ only "
            f"when the difference of their means exceeds the margin max(floor, {T_FACTOR:g} · s · √(1/n₁ + 1/n₂)), "
            "with s the standard deviation over seeds pooled over the points compared (same grid, same comparison) "
            "and n₁, n₂ their seed counts. A comparison without two seeds on any of its points has no margin and is "
            f"inconclusive; nothing borrows noise from another grid. Floors: {floors}. A claim is judged on its "
            "primary metric (PSNR, or utilisation) and, where the runs have them, LPIPS, rFID and KID; metrics that "
            "disagree with the primary make it inconclusive. A claim whose grid still has runs to come (deferred by "
            "the study's budget) is inconclusive until they are in; what its runs so far read as is shown. The "
            "generation claims follow the same rule over generator seeds, with the sampling floor (real vs real FD "
            "at the same sample count) as their floor; with one generator seed per point they are inconclusive, and "
            "their evidence gives what that one seed reads against the sampling floor alone. CMMD is in no verdict: "
            "its CLIP weights cannot be had here (Reference metrics).", ""]
    counts = {s: sum(v.status == s for v in verdicts) for s in ("reproduced", "not reproduced", "inconclusive")}
    out.append(", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
    out.append("")
    out.append(markdown_table(["paper", "claim", "grid", "seeds", "status"],
                              [[v.paper, v.claim, v.grid, v.seeds, f"**{v.status}**"] for v in verdicts]))
    out.append("")
    for v in verdicts:
        out += [f"- **{v.paper}: {v.claim}** — {v.status} ({v.seeds or 'no data'}).", f"  {v.evidence}"]
        if v.reason:
            out.append(f"  Measured context: {v.reason}.")
        if v.scope:
            out.append(f"  What this scale can show: {v.scope}")
    out.append("")

    out += utilisation_section(df)
    floor = real_floor(results_dir)
    out += comparison_table_section(df, floor)
    out += divergences_section()
    out += reference_metrics_section(df, floor)

    out += ["## Grids", ""]
    for name in _grid_names(df):
        out += [f"### {name}", ""]
        doc = _grid_doc(name)
        if doc:
            out += [doc, ""]
        table, notes = (generation_table if name.startswith("gen-") else grid_table)(df, name)
        if len(table) == 0:
            out += ["No ok runs recorded.", ""]
            continue
        out += [frame_markdown(table), ""]
        if notes:
            out += [f"- {note}" for note in notes] + [""]

    out += ["## Figures", ""]
    links = figure_links(Path(results_dir if out_dir is None else out_dir) / FIGURES_SUBDIR, figures)
    if links:
        out += [f"- [{desc}]({path})" for path, desc in links]
    else:
        out.append("No figures yet (`pqstudy figures` / `notebooks/paper_figures.ipynb` writes them).")
    out.append("")

    out += ["## Failed runs", ""]
    failed = df[df["status"] == "failed"] if len(df) else df
    if failed is None or len(failed) == 0:
        out.append("None.")
    else:
        out.append(markdown_table(["run", "grids", "error"],
                                  [[r["run_id"], str(r.get("grids") or "").replace(";", ", "), r.get("error") or ""]
                                   for _, r in failed.sort_values("run_id").iterrows()]))
    out.append("")
    return "\n".join(out)


RECORDED = re.compile(r"^- runs: .*\((\d+) recorded\)$", re.MULTILINE)


def recorded_runs(text: str) -> int:
    """How many runs a report's text was made from (its ``- runs:`` line); 0 when it has none."""
    found = RECORDED.search(text)
    return int(found.group(1)) if found else 0


class EmptyReportError(RuntimeError):
    """Replacing a report made from runs with one made from none (the run records are missing)."""


def write_report(results_dir: str | os.PathLike = "results", profile: str | None = None,
                 out_dir: str | os.PathLike | None = None, *, figures: Mapping[str, str]) -> Path:
    """Write ``<out_dir>/REPORT.md`` (default ``out_dir``: ``results_dir``) atomically and return its path. Refuses
    (``EmptyReportError``) to replace a report made from runs with one made from none: that would silently throw a
    study away (e.g. on a clone that lacks the run records). ``figures``: name → description of the figures to link
    (``pqstudy.figures.FIGURE_DESCRIPTIONS``)."""
    from pqstudy.study.store import RUNS_SUBDIR

    results_dir = Path(results_dir)
    out_dir = results_dir if out_dir is None else Path(out_dir)
    text = report_markdown(results_dir, profile, out_dir, figures=figures)
    path = out_dir / REPORT
    before = recorded_runs(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else 0
    if before and not recorded_runs(text):
        raise EmptyReportError(
            f"no run files{f' of profile {profile}' if profile else ''} in {(results_dir / RUNS_SUBDIR).resolve()}, "
            f"but {path} was made from {before} runs: refusing to replace it with an empty report (are the run "
            "records missing? they live under results/runs/ and are committed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
