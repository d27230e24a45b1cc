"""Verdicts on synthetic runs tables, and REPORT.md from a synthetic results folder.

The synthetic results use the real configs of every grid at the ``default`` profile (``grid_configs``), recorded
through ``pqstudy.study.store.record_run`` with metrics from a formula ("world") in which every paper claim holds;
the tests then break one claim at a time, drown it in seed noise, or drop its grid. ``tests/test_figures.py`` and
``tests/test_notebooks.py`` import ``synthetic_results`` from here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pqstudy.config import apply_overrides
from pqstudy.generation.config import GenRunConfig
from pqstudy.study.grids import GRIDS, grid_configs
from pqstudy.study.report import study_verdicts, write_report
from pqstudy.study.store import record_run, runs_dataframe, samples_path
from pqstudy.study.tables import grid_table, markdown_table
from pqstudy.study.verdicts import CLAIM_TEXT, CLAIMS, SCOPE, all_verdicts, claim
from pqstudy.study.verdicts.compare import Point, fmt, fmt_diff, fmt_margin, margin, pooled_sd

PROFILE = "default"
REASON = "not requested (train.eval_metrics)"


# ---------------------------------------------------------------------------------------------------------------
# a synthetic world in which every claim holds


def _g(k: float) -> float:
    """PQ's PSNR gain from K = 16 with diminishing returns."""
    return 3.0 * (1.0 - math.exp(-math.log2(k / 16) / 2.0))


def paper_world(cfg) -> tuple[float, float | None]:
    """(PSNR, utilisation) of a config: every claim holds (both papers' and the rate-matched one); each seed sits
    0.05 dB above the one before (seed standard deviation 0.05 dB)."""
    q, seed = cfg.quantizer, cfg.train.seed
    if cfg.model.kind != "quantized":
        return (28.0 if cfg.model.kind == "ae" else 27.5) + 0.05 * seed, None  # PQ D=8 (26.8) closes most of the gap
    k, d = q.codebook_size, q.dim
    if q.kind == "vq":
        # beyond 1024 entries VQ gains nothing: it does not learn to use them
        psnr, util = 24.0 - 0.6 * math.log2(d / 8) + 0.1 * math.log2(min(k, 1024) / 1024), min(1.0, 300 / k)
    elif q.kind == "pq":
        psnr, util = 24.2 + 0.8 * math.log2(d / 8) + _g(k) - 0.2 * math.log2(d / q.subspaces / 2), 0.9
    elif q.kind == "vq-fc":
        psnr, util = 23.5, min(1.0, 600 / k)
    elif q.kind == "vq-ema":
        psnr, util = 23.8 + 0.05 * math.log10(k / 1024), min(1.0, 0.95 * (1024 / k) ** 0.3)
    else:  # lc
        psnr = 23.0 + 0.4 * math.log10(k / 1024) + 0.1 * math.log2(d / 8)
        if q.projector == "none":
            delta, util = -2.0, 0.4
        elif q.lc_trainable:
            delta, util = -0.2, 0.85
        else:
            delta, util = {"kmeans": (0.0, 1.0), "select": (-0.3, 0.995), "uniform": (-1.0, 0.9),
                           "feature-normal": (-0.1, 0.99)}[q.lc_init]
        psnr += delta
    return psnr + 0.05 * seed, min(1.0, util + 0.002 * seed)


def generation_world(cfg: GenRunConfig) -> dict:
    """A generation run's metrics in a world where both generation claims hold: LC's tokens model best at large K,
    and the coarser PQ (4× fewer positions) is close to the finer one at a quarter of the FLOPs; each generator seed
    0.05 above the one before."""
    tok = cfg.tokenizer
    kind = tok.model.kind if tok.model.kind != "quantized" else tok.quantizer.kind
    fd = {"lc": 10.0, "vq-fc": 14.0, "vq-ema": 13.0, "vq": 12.0, "pq": 11.0, "ae": 8.0, "kl": 8.5}[kind]
    coarse = tok.model.downsample > 4
    if coarse:
        fd += 1.0
    fd += 0.05 * cfg.gen.seed
    return {"steps": cfg.gen.steps, "fd_classifier": fd, "real_fd_classifier": 0.5, "recon_fd_classifier": fd / 3,
            "generate_flops_per_sample": 0.25e9 if coarse else 1e9, "generate_seconds_per_sample": 0.01,
            "kid_classifier": fd / 100, "precision": 0.6, "recall": 0.5, "samples": cfg.gen.samples,
            "classifier_test_accuracy": 0.83, "class_accuracy": 0.6, "recon_class_accuracy": 0.7,
            "real_class_accuracy": 0.85, "train_seconds": 20.0}


def _history(util: float | None, steps: int) -> list[dict]:
    out = []
    for i, frac in enumerate((0.35, 0.7, 1.0)):
        record = {"step": int(steps * frac), "epoch": round(2.0 * frac, 3), "lr": 1e-3 * (1 - frac / 2),
                  "rec": 0.2 - 0.05 * i, "total": 0.25 - 0.05 * i}
        if util is not None:
            record.update({"commitment": 0.01, "codebook": 0.02, "utilisation": min(1.0, util * (0.6 + 0.2 * i)),
                           "perplexity": 10.0 + i})
        out.append(record)
    return out


def synthetic_results(results_dir: Path, world=paper_world, codebooks: bool = True, recon: bool = True,
                      tsne_entries: int = 48) -> Path:
    """Record every grid's ``default`` configs with ``world``'s metrics (plus one failed run), exported codebooks for
    the LC-grid runs at the largest size, two reconstruction PNGs and ``study.json``."""
    from pqstudy.study.codebook_export import codebook_path, save_codebook

    results_dir = Path(results_dir)
    rng = np.random.default_rng(0)
    for grid in GRIDS:
        for cfg in grid_configs(grid, PROFILE):
            if isinstance(cfg, GenRunConfig):  # the grid gives the compared generators three gen.seed each
                record_run(results_dir, cfg, metrics=generation_world(cfg), wall_seconds=30.0, grids=[grid])
                continue
            psnr, util = world(cfg)
            q = cfg.quantizer
            quantised = cfg.model.kind == "quantized"
            m = q.subspaces if q.kind == "pq" else 1
            metrics = {"psnr": psnr, "ssim": 0.5 + (psnr - 20) / 40, "steps": cfg.train.steps,
                       "lpips": None, "rfid": None, "kid": None, "cmmd": None, "train_seconds": 10.0}
            for name in ("lpips", "rfid", "kid", "cmmd"):
                metrics[f"{name}_missing_reason"] = REASON
            if quantised:
                metrics.update({"utilisation": util, "perplexity": util * q.codebook_size * 0.7,
                                "bits_per_position": m * math.log2(q.codebook_size), "utilisation_test": util * 0.9,
                                "positions_counted": 3_200_000, "positions_per_entry": 3_200_000 / q.codebook_size})
            else:
                metrics.update({"utilisation": None, "perplexity": None, "bits_per_position": None,
                                "utilisation_missing_reason": f"continuous model ({cfg.model.kind}): no codebook"})
            record_run(results_dir, cfg, metrics=metrics, history=_history(util, cfg.train.steps), wall_seconds=12.5,
                       grids=[grid])
            if codebooks and grid == "lc-method-size" and q.codebook_size == max(s.quantizer.codebook_size for s in
                                                                                 grid_configs(grid, PROFILE)):
                k = q.codebook_size
                used = rng.random(k) < util
                eval_counts = (used * rng.integers(1, 50, size=k))[None, :]
                train_counts = np.stack([(rng.random(k) < util * f) * rng.integers(1, 9, size=k)
                                         for f in (0.6, 0.8, 1.0)])[:, None, :]
                idx = np.sort(rng.choice(k, size=tsne_entries, replace=False))
                save_codebook(codebook_path(results_dir, cfg.run_id), eval_counts=eval_counts,
                              train_counts=train_counts, indices=idx,
                              vectors=rng.normal(size=(tsne_entries, q.dim)),
                              meta={"run_id": cfg.run_id, "kind": q.kind, "codebook_size": k, "num_codebooks": 1})
    # a failed run (a config of its own: seed 7)
    bad = apply_overrides(grid_configs("pq-subspaces", PROFILE)[-1], {"train.seed": "7"})
    record_run(results_dir, bad, status="failed", error="RuntimeError: synthetic failure", grids=["pq-subspaces"])
    if recon:
        import matplotlib.pyplot as plt

        df = runs_dataframe(results_dir)
        for rid in df[df["grids"].str.contains("pq-vs-vq-dim")]["run_id"][:2]:
            path = results_dir / "recon" / f"{rid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            plt.imsave(path, rng.random((20, 80, 3)))
        for rid in df[df["run_id"].str.startswith("gen-")]["run_id"][:2]:  # generation runs' sample grids
            path = samples_path(results_dir, rid)
            path.parent.mkdir(parents=True, exist_ok=True)
            plt.imsave(path, rng.random((60, 60, 3)))
    study = {"profile": PROFILE, "runs": 41, "wall_seconds": 1500.0, "ran": 40, "skipped": 0, "failed": 1, "jobs": 2,
             "machine": {"cpus": 2, "torch": "2.13.0"}, "figures": []}
    (results_dir / "study.json").write_text(json.dumps(study))
    return results_dir


@pytest.fixture(scope="module")
def world_df(tmp_path_factory):
    return runs_dataframe(synthetic_results(tmp_path_factory.mktemp("results"), codebooks=False, recon=False))


# ---------------------------------------------------------------------------------------------------------------
# mutations of the table


def _in_grid(df, grid):
    return df["grids"].fillna("").str.split(";").map(lambda names: grid in names)


def _num(df, col):
    import pandas as pd

    return pd.to_numeric(df[col], errors="coerce")


def _add(df, mask, metric, delta):
    df = df.copy()
    df.loc[mask, metric] = _num(df, metric)[mask] + delta
    return df


def _set(df, mask, metric, value):
    df = df.copy()
    df.loc[mask, metric] = value
    return df


def noisy(df):
    """Seed 1 far from seeds 0 and 2: 5 dB PSNR higher, 0.9 utilisation lower."""
    df = _add(df, df["train.seed"] == 1, "psnr", 5.0)
    util = (_num(df, "utilisation") - 0.9 * (df["train.seed"] == 1)).clip(lower=0.0)
    return df.assign(utilisation=util)


def _kind(df, kind):
    return df["quantizer.kind"] == kind


def _gen(df, kind):
    return df["gen.kind"] == kind


def _coarse(df):
    return df["model.ch_mult"].astype(str).str.count(",") >= 3


BREAK = {  # the claim fails beyond any noise
    "pq-beats-vq": lambda df: _add(df, _in_grid(df, "pq-vs-vq-dim") & _kind(df, "vq") & (df["quantizer.dim"] == 32),
                                   "psnr", 6.0),
    "pq-vq-scale-opposite": lambda df: _add(df, _in_grid(df, "pq-vs-vq-dim") & _kind(df, "pq")
                                            & (df["quantizer.dim"] == 32), "psnr", -2.5),
    "pq-k-diminishing": lambda df: _add(df, _in_grid(df, "pq-codebook-size") & (df["quantizer.codebook_size"] == 1024),
                                        "psnr", 2.0),
    "pq-approaches-continuous": lambda df: _add(df, _in_grid(df, "continuous") & _kind(df, "pq"), "psnr", -2.0),
    "lc-utilisation": lambda df: _set(df, _kind(df, "lc") & (df["quantizer.codebook_size"] == 100_000),
                                      "utilisation", 0.9),
    "lc-scales-with-k": lambda df: _add(df, _kind(df, "lc") & (df["quantizer.codebook_size"] == 100_000), "psnr",
                                        -1.5),
    "lc-init-order": lambda df: _add(df, _in_grid(df, "lc-init") & (df["quantizer.lc_init"] == "uniform"), "psnr",
                                     2.0),
    "pq-beats-vq-equal-rate": lambda df: _add(df, _in_grid(df, "rate-matched") & _kind(df, "pq"), "psnr", -3.0),
    "lc-projector": lambda df: _set(_set(df, df["quantizer.projector"] == "none", "psnr", 25.0),
                                    df["quantizer.projector"] == "none", "utilisation", 1.0),
    "lc-dprime-insensitive": lambda df: _add(df, _in_grid(df, "lc-projected-dim") & (df["quantizer.dim"] == 32),
                                             "psnr", 2.0),
    "lc-generation": lambda df: _set(df, _gen(df, "ar") & _kind(df, "lc"), "fd_classifier", 20.0),
    "pq-diffusion-coarse": lambda df: _set(df, _gen(df, "diffusion") & _kind(df, "pq") & _coarse(df), "fd_classifier",
                                           30.0),
}

BLUR = {  # the effect is within the noise (or between the thresholds)
    **{key: noisy for key in CLAIMS},
    "lc-utilisation": lambda df: _set(df, _kind(df, "lc") & (df["quantizer.codebook_size"] == 100_000),
                                      "utilisation", 0.98),
    "lc-dprime-insensitive": lambda df: noisy(BREAK["lc-dprime-insensitive"](df)),
    # within the margin (the sampling floor here), or close but not cheaper
    "lc-generation": lambda df: _set(df, _gen(df, "ar") & _kind(df, "lc"), "fd_classifier", 13.2),
    "pq-diffusion-coarse": lambda df: _set(df, _gen(df, "diffusion") & _kind(df, "pq"), "generate_flops_per_sample",
                                           1e9),
}




# ---------------------------------------------------------------------------------------------------------------
# verdicts


def test_every_claim_reproduced_in_the_paper_world(world_df):
    verdicts = all_verdicts(world_df)
    assert [v.key for v in verdicts] == list(CLAIMS)
    for v in verdicts:
        assert v.status == "reproduced", (v.key, v.evidence)
        assert v.paper in ("PQGAN", "VQGAN-LC", "neither (ours)") and v.evidence and v.numbers
        assert v.seeds and v.scope


@pytest.mark.parametrize("key", list(CLAIMS))
def test_claim_not_reproduced_when_broken(world_df, key):
    verdict = CLAIMS[key](BREAK[key](world_df))
    assert verdict.status == "not reproduced", verdict.evidence


@pytest.mark.parametrize("key", list(CLAIMS))
def test_claim_inconclusive_when_noise_hides_it(world_df, key):
    verdict = CLAIMS[key](BLUR[key](world_df))
    assert verdict.status == "inconclusive", verdict.evidence


@pytest.mark.parametrize("key", list(CLAIMS))
def test_claim_inconclusive_without_its_grid(world_df, key):
    verdict = CLAIMS[key](world_df[~_in_grid(world_df, CLAIMS[key].grid)])
    assert verdict.status == "inconclusive" and verdict.evidence.startswith("no data"), verdict.evidence
    assert (verdict.claim, verdict.paper) == CLAIM_TEXT[key]


def test_registry_gives_every_claim_a_grid_text_and_scope():
    assert list(CLAIMS)[0] == "pq-beats-vq" and [c.paper for c in CLAIMS.values()].index("VQGAN-LC") == 5
    for key, c in CLAIMS.items():
        assert c.key == key and c.grid in GRIDS and c.text and c.scope
        assert CLAIM_TEXT[key] == (c.text, c.paper) and SCOPE[key] == c.scope
        assert key in BREAK and key in BLUR  # every claim is tested broken and blurred


def test_registering_a_key_twice_fails():
    with pytest.raises(ValueError, match="pq-beats-vq.*registered twice"):
        claim("pq-beats-vq", paper="x", grid="pq-vs-vq-dim", text="x", scope="x")(lambda runs, c: None)
    assert CLAIMS["pq-beats-vq"].text.startswith("PQ reconstructs better")


@pytest.mark.parametrize(("value", "metric", "plain", "diff"), [
    (0.987, "utilisation", "98.7%", "+98.7 pts"),
    (-0.05, "utilisation", "-5.0%", "-5.0 pts"),
    (24.123, "psnr", "24.12 dB", "+24.12 dB"),
    (0.12345, "lpips", "0.1235", "+0.1235"),
    (3.0, "rfid", "3.00", "+3.00"),
    (None, "psnr", "n/a", "n/a"),
    (float("nan"), "psnr", "n/a", "+nan dB"),
])
def test_evidence_formats_values_and_differences(value, metric, plain, diff):
    assert fmt(value, metric) == plain and fmt_diff(value, metric) == diff


def test_a_margin_without_seeds_says_so():
    assert fmt_margin(None, "psnr") == "none: fewer than 2 seeds" and fmt_margin(0.25, "psnr") == "0.25 dB"


def test_empty_table_gives_inconclusive_everywhere(tmp_path):
    assert {v.status for v in all_verdicts(runs_dataframe(tmp_path))} == {"inconclusive"}


def test_breaking_one_claim_leaves_the_others(world_df):
    statuses = {v.key: v.status for v in all_verdicts(BREAK["lc-init-order"](world_df))}
    assert statuses.pop("lc-init-order") == "not reproduced"
    assert set(statuses.values()) == {"reproduced"}


def test_margin_is_two_standard_errors_of_the_in_grid_seeds(world_df):
    # three seeds 0.05 dB apart: s = 0.05, margin = 2 · 0.05 · sqrt(2/3) = 0.082 < the 0.1 dB floor
    verdict = CLAIMS["pq-beats-vq"](world_df)
    assert verdict.numbers["psnr"]["D=8"]["margin"] == pytest.approx(0.1)
    assert verdict.numbers["psnr"]["D=8"]["seeds"] == [3, 3] and "3 seeds" in verdict.evidence
    wide = world_df.copy()
    grid = _in_grid(wide, "pq-vs-vq-dim")
    wide.loc[grid & (wide["train.seed"] == 2), "psnr"] = _num(wide, "psnr")[grid & (wide["train.seed"] == 2)] + 1.0
    m = CLAIMS["pq-beats-vq"](wide).numbers["psnr"]["D=8"]["margin"]
    values = np.array([0.0, 0.05, 1.1])
    assert m == pytest.approx(2 * values.std(ddof=1) * math.sqrt(2 / 3))


def test_each_point_counts_once_in_the_pooled_spread(world_df):
    a, b, c = Point(20.0, 19.0, 21.0, 3, 1.0), Point(21.0, 20.0, 22.0, 3, 2.0), Point(22.0, 21.0, 23.0, 2, 3.0)
    s = math.sqrt((2 * 1.0**2 + 2 * 2.0**2 + 1 * 3.0**2) / 5)  # each point's (n - 1) · sd², over 2 + 2 + 1
    assert pooled_sd(a, b, a, b, c) == pytest.approx(s)
    assert margin("psnr", a, b, a, b, c) == pytest.approx(2 * s * math.sqrt(1 / 3 + 1 / 3))
    # the init claim passes its compared arms again among all its arms: k-means' seeds spread wider here
    df = world_df.copy()
    grid = _in_grid(df, "lc-init")
    df = _add(df, grid & (df["quantizer.lc_init"] == "kmeans") & (df["train.seed"] == 2), "psnr", 0.3)
    kmeans = np.array([0.0, 0.05, 0.4])  # seeds 0, 1, 2: 0.05 dB apart, then the 0.3 added
    s = math.sqrt((2 * kmeans.var(ddof=1) + 2 * 0.05**2 + 2 * 0.05**2) / 6)  # kmeans, select, uniform once each
    numbers = CLAIMS["lc-init-order"](df).numbers["psnr"]
    assert numbers["kmeans-uniform"]["margin"] == pytest.approx(2 * s * math.sqrt(2 / 3))


def test_noise_in_one_grid_does_not_move_another_grids_verdict(world_df):
    loud = world_df.copy()
    grid = _in_grid(loud, "lc-init")
    loud.loc[grid & (loud["train.seed"] == 1), "psnr"] = _num(loud, "psnr")[grid & (loud["train.seed"] == 1)] + 5.0
    before, after = CLAIMS["pq-beats-vq"](world_df), CLAIMS["pq-beats-vq"](loud)
    assert before.numbers == after.numbers and after.status == "reproduced"


def test_single_seed_comparison_has_no_margin_and_is_inconclusive(world_df):
    one_seed = world_df[world_df["train.seed"] == 0]
    verdict = CLAIMS["pq-beats-vq"](one_seed)
    assert verdict.status == "inconclusive"
    assert "none: fewer than 2 seeds" in verdict.evidence and "1 seed" in verdict.evidence


def test_a_contradicting_lpips_makes_the_verdict_inconclusive(world_df):
    df = world_df.assign(lpips=0.3 - 0.01 * (_num(world_df, "psnr") - 20))
    assert CLAIMS["pq-beats-vq"](df).status == "reproduced"
    assert "LPIPS" in CLAIMS["pq-beats-vq"](df).evidence
    grid = _in_grid(df, "pq-vs-vq-dim") & _kind(df, "pq")
    flipped = _add(df, grid, "lpips", 0.2)  # PQ's LPIPS far worse while its PSNR is better
    verdict = CLAIMS["pq-beats-vq"](flipped)
    assert verdict.status == "inconclusive" and "lpips contradict" in verdict.evidence


def test_utilisation_verdict_names_positions_per_entry(world_df):
    verdict = CLAIMS["lc-utilisation"](world_df)
    assert "positions per entry counted (LC)" in verdict.reason and "K=100000: 32.0" in verdict.reason
    thin = world_df.assign(positions_per_entry=5.0)
    assert "capped by counting" in CLAIMS["lc-utilisation"](thin).reason


# ---------------------------------------------------------------------------------------------------------------
# the report


def test_markdown_table_escapes_pipes():
    text = markdown_table(["a", "b"], [["x|y", 1]], ["l", "r"])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| x\\|y | 1 |"]


def test_grid_table_shows_varied_fields_and_missing_reasons(world_df):
    table, notes = grid_table(world_df, "pq-vs-vq-dim")
    n = len(grid_configs("pq-vs-vq-dim", "default"))  # VQ and PQ at each D, each seed
    assert len(table) == n
    for column in ("method", "dim", "codebook_size", "subspaces", "seed", "PSNR", "SSIM", "util. (train)",
                   "util. (test)", "pos./entry", "LPIPS", "rFID"):
        assert column in table.columns, column
    assert "KID" not in table.columns and "CMMD" not in table.columns  # shown only where some run has them
    assert list(table["method"]) == ["pq"] * (n // 2) + ["vq"] * (n // 2) and list(table["dim"][:2]) == ["8", "8"]
    assert set(table["LPIPS"]) == {"missing"}
    assert notes == [f"{m} missing: {REASON} ({n} runs)" for m in ("LPIPS", "rFID")]
    with_cmmd = world_df.assign(cmmd=0.5)
    assert "CMMD" in grid_table(with_cmmd, "pq-vs-vq-dim")[0].columns
    table, notes = grid_table(world_df, "continuous")  # the continuous models beside VQ and PQ
    continuous = table["method"].isin(["ae", "kl"])
    assert continuous.sum() == 6 and set(table.loc[continuous, "util. (train)"]) == {"n/a"}
    assert "n/a" not in set(table.loc[~continuous, "util. (train)"]) and notes[0].startswith("n/a: continuous model")


def test_report_text_grid_descriptions_whole_counts_add_up_and_cmmd_said_once(tmp_path):
    from pqstudy.study.report import _grid_doc, reference_metrics_section

    assert _grid_doc("rate-matched").endswith("Each method keeps its paper's recipe.")
    assert "\n" not in _grid_doc("pq-codebook-size") and _grid_doc("pq-codebook-size").endswith("every seed.")
    df = runs_dataframe(synthetic_results(tmp_path / "results", codebooks=False, recon=False))
    tokenizers = int((df["status"] == "ok").sum() - df["gen.kind"].notna().sum())
    lines = reference_metrics_section(df)
    for line in lines:
        if line.startswith("- rFID:"):  # values + reasons = tokenizer runs
            numbers = [int(w) for w in line.replace(",", " ").replace(";", " ").split() if w.isdigit()]
            assert numbers[1] == tokenizers and numbers[0] + sum(numbers[2:]) == tokenizers, line
    cmmd = [line for line in lines if "CMMD" in line]
    assert len(cmmd) == 1 and "cannot obtain" in cmmd[0]


def test_report_has_every_grid_table_and_verdict(tmp_path):
    results = synthetic_results(tmp_path / "results", codebooks=False, recon=False)
    (results / "figures").mkdir()
    for name in ("zeta", "psnr_vs_dim", "alpha"):
        (results / "figures" / f"{name}.png").write_bytes(b"png")
    figures = {"quality_vs_bits": "quality vs rate", "psnr_vs_dim": "PSNR vs D"}  # the caller's known figures
    path = write_report(results, figures=figures)
    text = path.read_text()
    assert path == results / "REPORT.md"
    assert "profile: **default**" in text and "**1 failed**" in text and "25.0 min" in text
    assert "ran 40, skipped 0, failed 1, 2 notebooks at once" in text and "machine: cpus 2, torch 2.13.0" in text
    for grid in GRIDS:
        assert f"### {grid}" in text
    for key, (statement, paper) in CLAIM_TEXT.items():
        seeds = {"lc-generation": "generator seeds per point: 3/3/3",
                 "pq-diffusion-coarse": "generator seeds per point: 3/3"}.get(key, "seeds per point: 3")
        assert f"**{paper}: {statement}** — reproduced ({seeds})." in text
    assert "The noise rule, for every comparison" in text and "## Divergences from the papers" in text
    assert "## Utilisation" in text and "No run counted fewer than 10 positions per entry" in text
    assert "RuntimeError: synthetic failure" in text
    links = [line for line in text.splitlines() if line.startswith("- [") and "(figures/" in line]
    assert links == ["- [PSNR vs D](figures/psnr_vs_dim.png)", "- [alpha](figures/alpha.png)",
                     "- [zeta](figures/zeta.png)"]  # known ones first, described; no link to a PNG not written
    assert f"LPIPS missing: {REASON}" in text
    gen_grids = [g for g in GRIDS if g.startswith("gen-")]
    assert text.count("| run | method |") == len(GRIDS) - len(gen_grids)
    assert text.count("| run | generator | tokenizer |") == len(gen_grids)
    assert write_report(results, figures=figures).read_text() == text  # deterministic


def test_lc_gain_with_k_compares_the_baselines_over_lcs_own_span(world_df):
    """A study in progress: LC measured up to K = 16,384 only, VQ-FC up to 100,000. VQ-FC's gain is read over
    1,024→16,384 too, never over another span."""
    partial = world_df[~(_kind(world_df, "lc") & (world_df["quantizer.codebook_size"] == 100_000))]
    verdict = CLAIMS["lc-scales-with-k"](partial)
    assert "LC K=1024→16384" in verdict.evidence and "vq-fc K=1024→16384" in verdict.evidence
    assert "K=1024→100000" not in verdict.evidence


def test_a_verdict_waits_for_its_grids_deferred_runs(tmp_path):
    """A study cut by its budget: lc-projected-dim lacks its largest D′ (three runs). Its verdict is inconclusive,
    says how many runs are to come and what the runs so far read as; the other grids' verdicts stand."""
    results = synthetic_results(tmp_path / "results", codebooks=False, recon=False)
    df = runs_dataframe(results)
    largest = [c for c in grid_configs("lc-projected-dim", "default") if c.quantizer.dim == 32]
    assert len(largest) == 3
    for cfg in largest:
        (results / "runs" / f"{cfg.run_id}.json").unlink()
    total = len(grid_configs("lc-projected-dim", "default"))
    text = write_report(results, figures={}).read_text()
    statement, paper = CLAIM_TEXT["lc-dprime-insensitive"]
    line = next(s for s in text.splitlines() if s.startswith(f"- **{paper}: {statement}**"))
    assert "— inconclusive (seeds per point: " in line and line.endswith(f"; 3 of {total} runs to come).")
    assert f"Waiting for 3 of the grid's {total} runs" in text and "it reads **reproduced**" in text
    shown = {v.key: v.status for v in study_verdicts(runs_dataframe(results), results)}  # what the notebooks show
    assert shown["lc-dprime-insensitive"] == "inconclusive" and shown["lc-init-order"] == "reproduced"
    statement, paper = CLAIM_TEXT["lc-init-order"]
    assert f"**{paper}: {statement}** — reproduced (seeds per point: 3)." in text
    assert len(df) > len(runs_dataframe(results))


def test_grid_table_leaves_out_how_runs_ran_and_reads_old_records_at_the_old_default(world_df):
    """A run recorded before train.precision existed reads as fp32; train.compile (how a run ran) is no column."""
    runs = world_df.copy()
    first = runs.index[_in_grid(runs, "pq-codebook-size")][0]
    runs["train.precision"] = runs["train.precision"].astype(object)
    runs.loc[first, "train.precision"] = None  # recorded before the field existed
    runs.loc[first, "train.compile"] = True
    table, _ = grid_table(runs, "pq-codebook-size")
    assert "precision" not in table.columns and "compile" not in table.columns
    runs.loc[first, "train.precision"] = "bf16"  # a real difference is shown
    table, _ = grid_table(runs, "pq-codebook-size")
    assert "precision" in table.columns


def test_dprime_range_is_judged_with_the_seeds_of_the_points_that_make_it(world_df):
    # D′=16 with one seed left (a study in progress), D′=8 and D′=32 three. Move D′=16 to 0.608 dB above the lowest
    # D′: beyond the tolerance (0.5) plus the 3-vs-3 seed margin of the extremes (0.10), within it plus the 1-vs-3
    # margin of the two points that make the range (0.115): inconclusive, not "not reproduced" on one seed's noise.
    grid = _in_grid(world_df, "lc-projected-dim")
    low = _num(world_df, "quantizer.low_dim").fillna(0)
    dprime = low.where(low > 0, _num(world_df, "quantizer.dim"))
    lo = min(_num(world_df, "psnr")[grid & (dprime == d)].mean() for d in (8, 32))
    df = world_df[~(grid & (dprime == 16) & (world_df["train.seed"] != 0))]
    one = _in_grid(df, "lc-projected-dim") & (dprime[df.index] == 16)
    assert one.sum() == 1
    verdict = CLAIMS["lc-dprime-insensitive"](_set(df, one, "psnr", lo + 0.608))
    assert verdict.status == "inconclusive", verdict.evidence
    assert "margin 0.12 dB" in verdict.evidence and "1/3" in verdict.seeds


@pytest.mark.parametrize("rows, seconds", [
    ([("2026-01-01T00:10:00+00:00", 600)], 600),  # one run
    ([("2026-01-01T00:10:00+00:00", 600), ("2026-01-01T00:15:00+00:00", 600)], 900),  # overlapping: counted once
    ([("2026-01-01T00:10:00+00:00", 600), ("2026-01-01T01:10:00+00:00", 60)], 660),  # a gap between calls: left out
    ([("2026-01-01T00:10:00+00:00", 600), ("2026-01-01T00:08:00+00:00", 60)], 600),  # inside another run
    ([("2026-01-01T00:10:00+00:00", 600), (None, 60)], 600),  # a record without finished_at: not counted
])
def test_busy_span_is_the_union_of_the_runs_intervals(rows, seconds):
    import pandas as pd

    from pqstudy.study.report import busy_span

    df = pd.DataFrame(rows, columns=["finished_at", "wall_seconds"])
    total, first, last = busy_span(df)
    assert total == pytest.approx(seconds)
    assert first == pd.Timestamp("2026-01-01T00:00:00Z")
    assert last == max(pd.Timestamp(end) for end, _ in rows if end)


def test_busy_span_without_times_is_none():
    import pandas as pd

    from pqstudy.study.report import busy_span

    assert busy_span(pd.DataFrame({"run_id": ["a"]})) is None
    assert busy_span(pd.DataFrame({"finished_at": [None], "wall_seconds": [1.0]})) is None


def test_k_diminishing_reads_every_k_and_says_each_metrics_direction(world_df):
    verdict = CLAIMS["pq-k-diminishing"](world_df)
    assert verdict.status == "reproduced" and "K=64→256" in verdict.evidence and "K=256 suffices" in verdict.evidence
    grid = _in_grid(world_df, "pq-codebook-size")
    k = _num(world_df, "quantizer.codebook_size")
    # K=64 no better than K=16: the step 64→256 then gains more per doubling than 16→64, which the three compared
    # points alone (16, 256, 1024) would not show
    flat = _set(world_df, grid & (k == 64), "psnr", _num(world_df, "psnr")[grid & (k == 16)].mean())
    verdict = CLAIMS["pq-k-diminishing"](flat)
    assert verdict.status == "not reproduced" and "returns grow at K=64→256" in verdict.evidence
    # LPIPS says K=256 does not suffice while PSNR says it does: the evidence names both directions
    lpips = world_df.assign(lpips=0.2).copy()
    lpips.loc[grid & (k == 256), "lpips"] = 0.25
    lpips.loc[grid & (k == 256) & (world_df["train.seed"] == 1), "lpips"] = 0.251
    verdict = CLAIMS["pq-k-diminishing"](lpips)
    assert "K=256 suffices" in verdict.evidence and "K=256 does not suffice" in verdict.evidence
    assert verdict.status == "inconclusive" and verdict.numbers["lpips"]["gap_to_largest"] == pytest.approx(0.0503,
                                                                                                           abs=1e-3)


def test_pq_approaches_continuous_measures_the_share_of_vqs_gap(world_df):
    verdict = CLAIMS["pq-approaches-continuous"](world_df)
    pq = 24.2 + 3.0 * (1 - math.exp(-math.log2(256 / 16) / 2))  # the world's PQ at D=8, K=256, M=4 (seed 0)
    ae = verdict.numbers["psnr"]["ae"]
    assert ae["closed"] == pytest.approx(1 - (28.0 - pq) / (28.0 - 24.0))  # ≈ 70%: more than half
    assert ae["excess"] == pytest.approx((28.0 - pq) - 0.5 * 4.0) and verdict.status == "reproduced"
    assert "PQ closes 70% of VQ's gap" in verdict.evidence and "3 seeds" in verdict.evidence
    # PQ 1.5 dB lower closes only a third of the gap: beyond the margin the other way
    worse = _add(world_df, _in_grid(world_df, "continuous") & _kind(world_df, "pq"), "psnr", -1.5)
    verdict = CLAIMS["pq-approaches-continuous"](worse)
    assert verdict.status == "not reproduced" and "does not close most" in verdict.evidence


def test_two_configurations_never_share_a_point(world_df):
    """``store.configuration`` (what quality_vs_bits and the comparison table pool seeds by): rows that differ by
    seed alone share it; a change of any result field, the model's ch_mult included, separates them."""
    from pqstudy.config import NON_RESULT_FIELDS
    from pqstudy.study.store import config_columns, configuration

    grid = world_df[_in_grid(world_df, "pq-vs-vq-dim") & _kind(world_df, "pq") & (world_df["quantizer.dim"] == 8)]
    assert len(grid) == 3 and configuration(grid).nunique() == 1  # three seeds, one point
    fields = [c for c in config_columns(grid) if c not in NON_RESULT_FIELDS and c not in ("train.seed", "gen.seed")]
    assert "model.ch_mult" in fields
    for field in fields:
        changed = grid.copy().astype({field: object})
        changed.loc[changed.index[0], field] = "something else"
        assert configuration(changed).nunique() == 2, field


def test_comparison_table_names_each_rows_recipe(world_df):
    from pqstudy.study.report import comparison_table_section

    text = "\n".join(comparison_table_section(world_df.assign(rfid=100.0)))
    assert "| method | recipe | setting | seeds | PSNR | SSIM |" in text
    assert "| VQ | PQGAN | D=8, K=1024 |" in text and "| LC | VQGAN-LC |" in text


def test_rfid_is_shown_beside_the_real_vs_real_floor_and_the_effective_rate(world_df, tmp_path):
    import pandas as pd

    from pqstudy.study.report import comparison_table_section, real_floor, reference_metrics_section

    assert real_floor(tmp_path) == {}  # no benchmark file: no floor, no error
    (tmp_path / "benchmarks").mkdir()
    pd.DataFrame([{"pair": "test[:n] vs test[n:2n]", "n": 500, "fid": 76.9, "kid": 0.0004},
                  {"pair": "test[:n] vs train[:n]", "n": 500, "fid": 74.8, "kid": -0.0004},
                  {"pair": "test[:n] vs test[n:2n]", "n": 1000, "fid": 47.1, "kid": 0.00004}]).to_csv(
        tmp_path / "benchmarks" / "fid_anchors.csv", index=False)
    floor = real_floor(tmp_path)
    assert floor == {500: (76.9, 0.0004), 1000: (47.1, 0.00004)}
    df = world_df.assign(rfid=100.0, fid_samples=500, perplexity=16.0)
    table = "\n".join(comparison_table_section(df, floor))
    assert "n = 500: FID 76.90, KID 0.0004" in table and "n = 1,000" not in table  # the runs' n only
    assert "| bits/pos | eff. bits |" in table and "| AE | — | D=8 | 3 |" in table and "| KL | — | D=8 | 3 |" in table
    assert "| PQ | PQGAN | D=8, K=256, M=4 | 3 |" in table and table.split("| PQ | PQGAN | D=8, K=256, M=4 |")[1].split(
        "\n")[0].rstrip(" |").endswith("| 16.0")  # M · log2 perplexity = 4 · 4
    lines = reference_metrics_section(df, floor)
    assert any(line.startswith("- rFID:") and "FID 76.90" in line for line in lines)


def test_figure_points_take_every_seed_of_their_configuration(world_df):
    """pq-subspaces lists seed 0 of PQ M=4 (D=8, K=256); pq-vs-vq-dim ran its seeds 1 and 2: the figure's point
    shows all three, and its one-seed points are drawn hollow."""
    import matplotlib.pyplot as plt

    from pqstudy.figures.common import grid_one_length
    from pqstudy.figures.pq import plot_psnr_vs_subspaces

    runs, _ = grid_one_length(world_df, "pq-subspaces", "psnr")
    m4 = runs[(_num(runs, "quantizer.subspaces") == 4) & _kind(runs, "pq")]
    assert sorted(_num(m4, "train.seed")) == [0, 1, 2]
    assert set(_num(runs[_num(runs, "quantizer.subspaces") == 2], "train.seed")) == {0}
    fig = plot_psnr_vs_subspaces(world_df)
    hollow = [line for line in fig.axes[0].get_lines() if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and len(hollow[0].get_xdata()) == len(set(_num(runs, "quantizer.subspaces"))) - 1
    plt.close(fig)
