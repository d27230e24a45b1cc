"""The papers' claims, each a pure function of the runs DataFrame (``pqstudy.study.store.runs_dataframe``).

Every verdict is one of ``reproduced``, ``not reproduced`` or ``inconclusive`` and carries its evidence: the numbers
compared, the seed spread and the margin used. Nothing about the outcome is fixed in advance.

**Noise.** A point (one setting of a grid) is the mean over its seeds; its spread is max − min over those seeds. A
comparison counts as a real difference only when it exceeds the *margin*: the largest spread among the points
compared, or, for a point with a single seed, the largest seed spread measured anywhere in the results (runs that
differ only in ``train.seed``: the ``pq-vs-vq-dim`` and ``continuous`` grids), never less than a floor
(``PSNR_FLOOR_DB``, ``UTIL_FLOOR``). With no seed spread measured at all, the floor alone is the margin, so a
difference below it is inconclusive. The evidence says which of these the margin came from.

**Thresholds** (module constants):

- ``PSNR_FLOOR_DB`` = 0.1 dB, ``UTIL_FLOOR`` = 0.01 (one percentage point): smallest differences ever counted.
- ``K_SUFFICIENT_RANGE`` = (128, 512), ``K_SUFFICIENT_MARGIN_DB`` = 0.5 dB: PQGAN's "128–512 entries per subspace
  suffice": the reference K (in that range, nearest 256, below the largest K) must be within 0.5 dB of the largest K.
- ``LC_UTIL_TARGET`` = 0.99, ``LC_UTIL_SLACK`` = 0.02: VQGAN-LC's ≥ 99% utilisation at every size; below 97% is a
  clear failure, 97–99% inconclusive.
- ``DPRIME_PSNR_TOL_DB`` = 0.5 dB, ``DPRIME_UTIL_TOL`` = 0.05: "insensitive to D′" means the PSNR (utilisation)
  range across D′ is at most this; beyond it plus the margin it is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pqstudy.config import NON_RESULT_FIELDS, SECTIONS

STATUSES = ("reproduced", "not reproduced", "inconclusive")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = STATUSES

PSNR_FLOOR_DB = 0.1
UTIL_FLOOR = 0.01
K_SUFFICIENT_RANGE = (128, 512)
K_SUFFICIENT_TARGET = 256
K_SUFFICIENT_MARGIN_DB = 0.5
LC_UTIL_TARGET = 0.99
LC_UTIL_SLACK = 0.02
DPRIME_PSNR_TOL_DB = 0.5
DPRIME_UTIL_TOL = 0.05
LC_COMPARED = ("vq-fc", "vq-ema")  # the baselines LC's gain with K is compared with (claim e)

FLOORS = {"psnr": PSNR_FLOOR_DB, "utilisation": UTIL_FLOOR, "ssim": 0.005}
UNITS = {"psnr": " dB", "utilisation": "", "ssim": ""}


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)
    key: str = ""
    grid: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {STATUSES}")


# ---------------------------------------------------------------------------------------------------------------
# selecting runs


def grid_runs(df, grid: str, ok: bool = True):
    """Rows of ``df`` belonging to ``grid`` (the ``;``-joined ``grids`` column), only status ``ok`` by default."""
    if df is None or len(df) == 0 or "grids" not in df.columns:
        return df.iloc[0:0] if df is not None else None
    member = df["grids"].fillna("").astype(str).map(lambda s: grid in s.split(";"))
    out = df[member]
    if ok and "status" in out.columns:
        out = out[out["status"] == "ok"]
    return out


def method_of(df):
    """A method label per row: the quantiser kind (``vq``, ``vq-fc``, ``vq-ema``, ``lc``, ``pq``, ``pq(<sub>)``) or
    the continuous model kind (``ae``, ``kl``)."""
    import pandas as pd

    def label(row) -> str:
        model = row.get("model.kind", "quantized")
        if isinstance(model, str) and model != "quantized":
            return model
        kind = str(row.get("quantizer.kind", "?"))
        sub = row.get("quantizer.sub_kind", "vq")
        if kind == "pq" and isinstance(sub, str) and sub != "vq":
            return f"pq({sub})"
        return kind

    if len(df) == 0:
        return pd.Series([], index=df.index, dtype=object)
    return df.apply(label, axis=1)


def numeric(df, column: str):
    import pandas as pd

    if column not in df.columns:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[column], errors="coerce")


def truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------------------------
# points, noise, margins


@dataclass(frozen=True)
class Point:
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def spread(self) -> float:
        return self.hi - self.lo


def points(runs, by, metric: str) -> dict:
    """``{key: Point}``: the metric's mean, min, max and count over the runs of each group (NaNs dropped)."""
    by = [by] if isinstance(by, str) else list(by)
    if len(runs) == 0:
        return {}
    frame = runs[by].copy()
    frame["_value"] = numeric(runs, metric)
    frame = frame.dropna(subset=["_value"])
    out = {}
    for key, group in frame.groupby(by, sort=True, dropna=False):
        key = key[0] if isinstance(key, tuple) and len(key) == 1 else key
        values = group["_value"].to_numpy(dtype=float)
        out[key] = Point(float(values.mean()), float(values.min()), float(values.max()), len(values))
    return out


@dataclass(frozen=True)
class Noise:
    value: float | None  # largest max − min over seeds of one config; None: nothing measured
    source: str  # where it was measured


def seed_noise(df, metric: str) -> Noise:
    """The largest seed spread of ``metric`` among ok runs that differ only in ``train.seed``."""
    if df is None or len(df) == 0:
        return Noise(None, "no runs")
    runs = df[df["status"] == "ok"] if "status" in df.columns else df
    columns = [c for c in runs.columns if c.split(".")[0] in SECTIONS and c != "train.seed"
               and c not in NON_RESULT_FIELDS]
    if not columns or len(runs) == 0:
        return Noise(None, "no runs")
    keys = runs[columns].astype(str).agg("|".join, axis=1)
    values = numeric(runs, metric)
    best, where = None, ""
    for key in keys.unique():
        mask = (keys == key) & values.notna()
        if mask.sum() < 2:
            continue
        spread = float(values[mask].max() - values[mask].min())
        if best is None or spread > best:
            sel = runs[mask].iloc[0]
            grid = str(sel.get("grids", "")).split(";")[0] or "?"
            where = f"{grid}: {method_of(runs[mask]).iloc[0]}, D={sel.get('quantizer.dim')}, {int(mask.sum())} seeds"
            best = spread
    if best is None:
        return Noise(None, "no config was run with more than one seed")
    return Noise(best, where)


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric == "utilisation":
        return f"{100 * value:.1f}%"
    if metric == "ssim":
        return f"{value:.4f}"
    return f"{value:.2f}{UNITS.get(metric, '')}"


def _fmt_diff(value: float, metric: str) -> str:
    if metric == "utilisation":
        return f"{100 * value:+.1f} pts"
    return f"{value:+.2f}{UNITS.get(metric, '')}" if metric != "ssim" else f"{value:+.4f}"


def _fmt_point(p: Point, metric: str) -> str:
    if p.n >= 2:
        unit = UNITS.get(metric, "")
        lo, hi = (_fmt(v, metric) for v in (p.lo, p.hi))
        lo, hi = (v[: -len(unit)] if unit and v.endswith(unit) else v for v in (lo, hi))
        return f"{_fmt(p.mean, metric)} [{lo}–{hi}, {p.n} seeds]"
    return _fmt(p.mean, metric)


class Margins:
    """Margins for one metric, and a note of where they came from (for the evidence)."""

    def __init__(self, df, metric: str):
        self.metric = metric
        self.floor = FLOORS[metric]
        self.noise = seed_noise(df, metric)
        self.used_own = self.used_borrowed = self.used_floor = False

    def __call__(self, *pts: Point) -> float:
        own = [p.spread for p in pts if p.n >= 2]
        borrowed = self.noise.value if any(p.n < 2 for p in pts) and self.noise.value is not None else None
        candidates = own + ([borrowed] if borrowed is not None else [])
        value = max(candidates + [self.floor])
        if value == self.floor and (not candidates or max(candidates) < self.floor):
            self.used_floor = True
        elif own and value == max(own):
            self.used_own = True
        else:
            self.used_borrowed = True
        return value

    def note(self) -> str:
        m = self.metric
        parts = []
        if self.used_own:
            parts.append("seed spread (max − min over seeds) of the points compared")
        if self.used_borrowed:
            parts.append(f"single-seed points borrow the largest seed spread measured elsewhere, "
                         f"{_fmt_diff(self.noise.value, m).lstrip('+')} ({self.noise.source})")
        if self.used_floor:
            if self.noise.value is None:
                parts.append(f"no seed spread measured ({self.noise.source}): the floor "
                             f"{_fmt_diff(self.floor, m).lstrip('+')} is the margin")
            else:
                parts.append(f"floor {_fmt_diff(self.floor, m).lstrip('+')} where spreads are smaller")
        return f"{m} margin: " + "; ".join(parts) if parts else ""


def _notes(*margins: Margins) -> str:
    notes = [m.note() for m in margins if m.note()]
    return " Noise: " + " | ".join(notes) + "." if notes else ""


def _no_data(key: str, what: str, grid: str) -> Verdict:
    claim, paper = CLAIM_TEXT[key]
    return Verdict(claim, paper, INCONCLUSIVE, f"no data: {what}", {}, key, grid)


def _verdict(key: str, grid: str, status: str, evidence: str, numbers: dict) -> Verdict:
    claim, paper = CLAIM_TEXT[key]
    return Verdict(claim, paper, status, evidence, numbers, key, grid)


def _sign(diff: float, margin: float) -> int:
    """+1: above by more than the margin; −1: below by more than it; 0: within it."""
    return 1 if diff > margin else (-1 if diff < -margin else 0)


CLAIM_TEXT = {
    "pq-beats-vq": ("PQ reconstructs better than VQ (PSNR) at every embedding dim D", "PQGAN"),
    "pq-vq-scale-opposite": ("With growing D, PQ's PSNR rises while VQ's falls", "PQGAN"),
    "pq-k-diminishing": ("Diminishing returns in K per subspace: 128–512 entries suffice", "PQGAN"),
    "lc-utilisation": ("LC keeps ≥99% codebook utilisation at every size; vq / vq-fc / vq-ema fall below it at the "
                       "largest size", "VQGAN-LC"),
    "lc-scales-with-k": ("LC's PSNR improves with codebook size, more than vq-fc's and vq-ema's", "VQGAN-LC"),
    "lc-init-order": ("Codebook init: k-means ≥ random selection ≥ random normal (utilisation and PSNR)", "VQGAN-LC"),
    "lc-projector": ("A static codebook with a learned projector beats the static codebook without one", "VQGAN-LC"),
    "lc-dprime-insensitive": ("Results are insensitive to the projected dim D′", "VQGAN-LC"),
}


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def pq_beats_vq(df) -> Verdict:
    """(a) reproduced: PQ's mean PSNR exceeds VQ's by more than the margin at every D measured; not reproduced: VQ
    exceeds PQ by more than the margin at some D; else inconclusive."""
    key, grid = "pq-beats-vq", "pq-vs-vq-dim"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_method=method_of(runs), _dim=numeric(runs, "quantizer.dim"))
    pts = points(runs, ["_method", "_dim"], "psnr")
    dims = sorted({d for (m, d) in pts if m == "pq"} & {d for (m, d) in pts if m == "vq"})
    if not dims:
        return _no_data(key, f"grid {grid} has no D with both a vq and a pq PSNR", grid)
    margin = Margins(df, "psnr")
    lines, signs, numbers = [], [], {}
    for d in dims:
        pq, vq = pts[("pq", d)], pts[("vq", d)]
        diff, m = pq.mean - vq.mean, margin(pq, vq)
        signs.append(_sign(diff, m))
        mark = {1: "PQ ahead", -1: "VQ ahead", 0: "within the margin"}[signs[-1]]
        lines.append(f"D={d:g}: PQ {_fmt_point(pq, 'psnr')} vs VQ {_fmt_point(vq, 'psnr')}: {_fmt_diff(diff, 'psnr')}"
                     f" (margin {m:.2f} dB, {mark})")
        numbers[f"D={d:g}"] = {"pq": pq.mean, "vq": vq.mean, "diff": diff, "margin": m, "pq_seeds": pq.n,
                               "vq_seeds": vq.n, "pq_spread": pq.spread, "vq_spread": vq.spread}
    if any(s < 0 for s in signs):
        status = NOT_REPRODUCED
    elif all(s > 0 for s in signs):
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(margin), numbers)


def pq_vq_scale_opposite(df) -> Verdict:
    """(b) from the smallest to the largest D: reproduced when PQ's PSNR rises and VQ's falls, each by more than the
    margin; not reproduced when PQ falls or VQ rises by more than the margin (this includes both moving the same
    way); else inconclusive."""
    key, grid = "pq-vq-scale-opposite", "pq-vs-vq-dim"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_method=method_of(runs), _dim=numeric(runs, "quantizer.dim"))
    pts = points(runs, ["_method", "_dim"], "psnr")
    margin = Margins(df, "psnr")
    changes, lines, numbers = {}, [], {}
    for method in ("pq", "vq"):
        dims = sorted(d for (m, d) in pts if m == method)
        if len(dims) < 2:
            return _no_data(key, f"{method} has PSNR at {len(dims)} D value(s) in {grid}; needs at least 2", grid)
        a, b = pts[(method, dims[0])], pts[(method, dims[-1])]
        change, m = b.mean - a.mean, margin(a, b)
        changes[method] = _sign(change, m)
        word = {1: "rises", -1: "falls", 0: "flat within the margin"}[changes[method]]
        lines.append(f"{method.upper()} D={dims[0]:g}→{dims[-1]:g}: {_fmt_point(a, 'psnr')} → {_fmt_point(b, 'psnr')}"
                     f" ({_fmt_diff(change, 'psnr')}, margin {m:.2f} dB: {word})")
        numbers[method] = {"dims": [dims[0], dims[-1]], "psnr": [a.mean, b.mean], "change": change, "margin": m}
    if changes["pq"] > 0 and changes["vq"] < 0:
        status = REPRODUCED
    elif changes["pq"] < 0 or changes["vq"] > 0:
        status = NOT_REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(margin), numbers)


def pq_k_diminishing(df) -> Verdict:
    """(c) PSNR gain per doubling of K between consecutive sizes: reproduced when the last gain is below the first by
    more than the margin (per doubling) and the reference K (in ``K_SUFFICIENT_RANGE``, nearest 256, below the
    largest K) is within ``K_SUFFICIENT_MARGIN_DB`` of the largest K; not reproduced when the gain grows beyond the
    margin, or the reference K trails the largest by more than ``K_SUFFICIENT_MARGIN_DB`` + the margin; else
    inconclusive (fewer than 3 sizes, or no size in the range)."""
    key, grid = "pq-k-diminishing", "pq-codebook-size"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    pts = points(runs.assign(_k=numeric(runs, "quantizer.codebook_size")), "_k", "psnr")
    ks = sorted(pts)
    if len(ks) < 2:
        return _no_data(key, f"grid {grid} has PSNR at {len(ks)} codebook size(s)", grid)
    margin = Margins(df, "psnr")
    m = margin(*pts.values())
    curve = ", ".join(f"K={k:g}: {_fmt_point(pts[k], 'psnr')}" for k in ks)
    doublings = [math.log2(b / a) for a, b in zip(ks, ks[1:], strict=False)]
    gains = [(pts[b].mean - pts[a].mean) / n for a, b, n in zip(ks, ks[1:], doublings, strict=False)]
    gain_tol = m / min(doublings)
    numbers = {"K": ks, "psnr": [pts[k].mean for k in ks], "gain_per_doubling": gains, "margin": m,
               "gain_margin": gain_tol}
    lines = [curve, "gain per doubling of K: " + ", ".join(
        f"{a:g}→{b:g}: {g:+.2f} dB" for a, b, g in zip(ks, ks[1:], gains, strict=False))]
    trend = 0
    if len(gains) >= 2:
        trend = _sign(gains[0] - gains[-1], gain_tol)  # +1: shrinks, −1: grows
        lines.append(f"first vs last gain: {gains[0]:+.2f} vs {gains[-1]:+.2f} dB/doubling (margin {gain_tol:.2f}: "
                     + {1: "shrinks", -1: "grows", 0: "no clear change"}[trend] + ")")
    else:
        lines.append("only one interval: the trend of the gain cannot be measured (needs ≥3 sizes)")
    lo, hi = K_SUFFICIENT_RANGE
    candidates = [k for k in ks[:-1] if lo <= k <= hi]
    sufficiency = 0
    if candidates:
        ref = min(candidates, key=lambda k: abs(math.log2(k / K_SUFFICIENT_TARGET)))
        gap = pts[ks[-1]].mean - pts[ref].mean
        if gap <= K_SUFFICIENT_MARGIN_DB:
            sufficiency = 1
        elif gap > K_SUFFICIENT_MARGIN_DB + m:
            sufficiency = -1
        numbers.update({"reference_K": ref, "gap_to_largest": gap})
        lines.append(f"K={ref:g} trails K={ks[-1]:g} by {gap:.2f} dB (allowed {K_SUFFICIENT_MARGIN_DB:.2f} dB"
                     f"{'' if sufficiency >= 0 else f' + margin {m:.2f}'}: "
                     + {1: "suffices", -1: "does not suffice", 0: "borderline"}[sufficiency] + ")")
    else:
        lines.append(f"no K in {lo}–{hi} below the largest K: sufficiency not tested")
    if trend < 0 or sufficiency < 0:
        status = NOT_REPRODUCED
    elif trend > 0 and sufficiency > 0:
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + f" (PSNR margin {m:.2f} dB)." + _notes(margin), numbers)


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC


def _method_size_points(df, metric: str):
    grid = "lc-method-size"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return {}
    runs = runs.assign(_method=method_of(runs), _k=numeric(runs, "quantizer.codebook_size"))
    return points(runs, ["_method", "_k"], metric)


def lc_utilisation(df) -> Verdict:
    """(d) reproduced: LC's utilisation ≥ ``LC_UTIL_TARGET`` at every K and every other method below LC by more than
    the margin at the largest K; not reproduced: LC below ``LC_UTIL_TARGET − LC_UTIL_SLACK`` at some K, or another
    method above LC by more than the margin at the largest K; else inconclusive."""
    key, grid = "lc-utilisation", "lc-method-size"
    pts = _method_size_points(df, "utilisation")
    lc_ks = sorted(k for (m, k) in pts if m == "lc")
    if not lc_ks:
        return _no_data(key, f"no lc utilisation in grid {grid}", grid)
    margin = Margins(df, "utilisation")
    methods = sorted({m for (m, _) in pts}, key=lambda m: (m == "lc", m))
    ks = sorted({k for (_, k) in pts})
    lines = []
    for k in ks:
        row = ", ".join(f"{m} {_fmt_point(pts[(m, k)], 'utilisation')}" for m in methods if (m, k) in pts)
        lines.append(f"K={k:g}: {row}")
    lc_values = {k: pts[("lc", k)].mean for k in lc_ks}
    lc_min_k = min(lc_values, key=lc_values.get)
    lc_min = lc_values[lc_min_k]
    lc_state = 1 if lc_min >= LC_UTIL_TARGET else (-1 if lc_min < LC_UTIL_TARGET - LC_UTIL_SLACK else 0)
    lines.append(f"LC's lowest: {_fmt(lc_min, 'utilisation')} at K={lc_min_k:g} (target ≥ "
                 f"{_fmt(LC_UTIL_TARGET, 'utilisation')}; below {_fmt(LC_UTIL_TARGET - LC_UTIL_SLACK, 'utilisation')}"
                 f" fails)")
    kmax = lc_ks[-1]
    others = [m for m in methods if m != "lc" and (m, kmax) in pts]
    states, numbers = [], {"lc": lc_values, "largest_K": kmax, "others_at_largest_K": {}}
    for m in others:
        diff = pts[("lc", kmax)].mean - pts[(m, kmax)].mean
        mg = margin(pts[("lc", kmax)], pts[(m, kmax)])
        states.append(_sign(diff, mg))
        numbers["others_at_largest_K"][m] = {"utilisation": pts[(m, kmax)].mean, "lc_minus": diff, "margin": mg}
        lines.append(f"K={kmax:g}: LC − {m} = {_fmt_diff(diff, 'utilisation')} (margin "
                     f"{_fmt_diff(mg, 'utilisation').lstrip('+')})")
    if not others:
        lines.append(f"no other method at K={kmax:g} to compare with")
    if lc_state < 0 or any(s < 0 for s in states):
        status = NOT_REPRODUCED
    elif lc_state > 0 and others and all(s > 0 for s in states):
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(margin), numbers)


def lc_scales_with_k(df) -> Verdict:
    """(e) gain = PSNR at the largest K − at the smallest. Reproduced: LC's gain exceeds the margin and exceeds each of
    vq-fc's and vq-ema's gains by more than the margin; not reproduced: LC's PSNR falls beyond the margin, or a
    baseline gains more than LC beyond the margin; else inconclusive (including no baseline measured)."""
    key, grid = "lc-scales-with-k", "lc-method-size"
    pts = _method_size_points(df, "psnr")
    margin = Margins(df, "psnr")

    def gain(method):
        ks = sorted(k for (m, k) in pts if m == method)
        if len(ks) < 2:
            return None
        a, b = pts[(method, ks[0])], pts[(method, ks[-1])]
        return ks[0], ks[-1], a, b, b.mean - a.mean

    lc = gain("lc")
    if lc is None:
        return _no_data(key, f"lc needs PSNR at ≥2 codebook sizes in grid {grid}", grid)
    k0, k1, a, b, g_lc = lc
    m_lc = margin(a, b)
    lc_state = _sign(g_lc, m_lc)
    lines = [f"LC K={k0:g}→{k1:g}: {_fmt_point(a, 'psnr')} → {_fmt_point(b, 'psnr')} ({_fmt_diff(g_lc, 'psnr')}, "
             f"margin {m_lc:.2f} dB)"]
    numbers = {"lc": {"K": [k0, k1], "psnr": [a.mean, b.mean], "gain": g_lc, "margin": m_lc}}
    states = []
    for method in sorted({m for (m, _) in pts} - {"lc"}):
        other = gain(method)
        if other is None:
            continue
        o0, o1, oa, ob, g = other
        m = margin(a, b, oa, ob)
        lines.append(f"{method} K={o0:g}→{o1:g}: {_fmt(oa.mean, 'psnr')} → {_fmt(ob.mean, 'psnr')} "
                     f"({_fmt_diff(g, 'psnr')}; LC's gain − this = {_fmt_diff(g_lc - g, 'psnr')}, margin {m:.2f} dB)")
        numbers[method] = {"K": [o0, o1], "psnr": [oa.mean, ob.mean], "gain": g, "margin": m}
        if method in LC_COMPARED:
            states.append(_sign(g_lc - g, m))
    if not states:
        lines.append(f"none of {', '.join(LC_COMPARED)} measured at two sizes")
    if lc_state < 0 or any(s < 0 for s in states):
        status = NOT_REPRODUCED
    elif lc_state > 0 and states and all(s > 0 for s in states):
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(margin), numbers)


LC_INITS = ("kmeans", "select", "normal")


def lc_init_order(df) -> Verdict:
    """(f) for utilisation and PSNR: not reproduced when k-means trails random selection, random selection trails
    random normal, or k-means trails random normal, by more than the margin; reproduced when no such reversal occurs
    and k-means beats random normal beyond the margin in at least one of the two metrics; else inconclusive."""
    key, grid = "lc-init-order", "lc-init"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_init=runs["quantizer.lc_init"].astype(str))
    lines, numbers, reversed_, ahead = [], {}, False, False
    margins = []
    for metric in ("utilisation", "psnr"):
        pts = points(runs, "_init", metric)
        missing = [i for i in LC_INITS if i not in pts]
        if missing:
            return _no_data(key, f"{metric} missing for init {', '.join(missing)} in grid {grid}", grid)
        margin = Margins(df, metric)
        margins.append(margin)
        values = ", ".join(f"{i} {_fmt_point(pts[i], metric)}" for i in LC_INITS)
        parts = []
        for better, worse in (("kmeans", "select"), ("select", "normal"), ("kmeans", "normal")):
            diff, m = pts[better].mean - pts[worse].mean, margin(pts[better], pts[worse])
            s = _sign(diff, m)
            reversed_ = reversed_ or s < 0
            ahead = ahead or (s > 0 and (better, worse) == ("kmeans", "normal"))
            parts.append(f"{better} − {worse} {_fmt_diff(diff, metric)} (margin {_fmt_diff(m, metric).lstrip('+')})")
            numbers[f"{metric}:{better}-{worse}"] = {"diff": diff, "margin": m}
        numbers[metric] = {i: pts[i].mean for i in LC_INITS}
        lines.append(f"{metric}: {values}; " + ", ".join(parts))
    if reversed_:
        status = NOT_REPRODUCED
    elif ahead:
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(*margins), numbers)


def _projector_variant(row) -> str:
    if str(row.get("quantizer.projector", "")) == "none":
        return "static, no projector"
    return "trainable + projector" if truthy(row.get("quantizer.lc_trainable")) else "static + projector"


def lc_projector(df) -> Verdict:
    """(g) static + projector vs static without projector, on PSNR and utilisation: reproduced when better beyond the
    margin in one metric and not worse beyond it in the other; not reproduced when worse beyond the margin in one and
    not better in the other; else inconclusive. The trainable codebook + projector is reported alongside."""
    key, grid = "lc-projector", "lc-projector"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_variant=runs.apply(_projector_variant, axis=1))
    base, ours, trainable = "static, no projector", "static + projector", "trainable + projector"
    lines, numbers, signs, margins = [], {}, [], []
    for metric in ("psnr", "utilisation"):
        pts = points(runs, "_variant", metric)
        if base not in pts or ours not in pts:
            return _no_data(key, f"{metric} missing for {base if base not in pts else ours} in grid {grid}", grid)
        margin = Margins(df, metric)
        margins.append(margin)
        diff, m = pts[ours].mean - pts[base].mean, margin(pts[ours], pts[base])
        signs.append(_sign(diff, m))
        text = (f"{metric}: {ours} {_fmt_point(pts[ours], metric)} vs {base} {_fmt_point(pts[base], metric)} "
                f"({_fmt_diff(diff, metric)}, margin {_fmt_diff(m, metric).lstrip('+')})")
        numbers[metric] = {v: p.mean for v, p in pts.items()}
        numbers[metric]["diff"], numbers[metric]["margin"] = diff, m
        if trainable in pts:
            text += f"; {trainable} {_fmt_point(pts[trainable], metric)}"
        lines.append(text)
    if max(signs) > 0 and min(signs) >= 0:
        status = REPRODUCED
    elif min(signs) < 0 and max(signs) <= 0:
        status = NOT_REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(*margins), numbers)


def lc_dprime_insensitive(df) -> Verdict:
    """(h) range (max − min of the means) across D′: reproduced when the PSNR range is at most ``DPRIME_PSNR_TOL_DB``
    and the utilisation range at most ``DPRIME_UTIL_TOL``; not reproduced when either exceeds its threshold plus the
    margin; else inconclusive (fewer than two D′)."""
    key, grid = "lc-dprime-insensitive", "lc-projected-dim"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    low, dim = numeric(runs, "quantizer.low_dim").fillna(0), numeric(runs, "quantizer.dim")
    runs = runs.assign(_dprime=low.where(low > 0, dim))
    lines, numbers, states, margins = [], {}, [], []
    for metric, tol in (("psnr", DPRIME_PSNR_TOL_DB), ("utilisation", DPRIME_UTIL_TOL)):
        pts = points(runs, "_dprime", metric)
        if len(pts) < 2:
            return _no_data(key, f"{metric} at {len(pts)} D′ value(s) in grid {grid}; needs at least 2", grid)
        margin = Margins(df, metric)
        margins.append(margin)
        means = {d: p.mean for d, p in pts.items()}
        spread, m = max(means.values()) - min(means.values()), margin(*pts.values())
        state = 1 if spread <= tol else (-1 if spread > tol + m else 0)
        states.append(state)
        values = ", ".join(f"D′={d:g}: {_fmt_point(p, metric)}" for d, p in sorted(pts.items()))
        lines.append(f"{metric}: {values}; range {_fmt_diff(spread, metric).lstrip('+')} (threshold "
                     f"{_fmt_diff(tol, metric).lstrip('+')}, margin {_fmt_diff(m, metric).lstrip('+')})")
        numbers[metric] = {"values": means, "range": spread, "threshold": tol, "margin": m}
    if any(s < 0 for s in states):
        status = NOT_REPRODUCED
    elif all(s > 0 for s in states):
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return _verdict(key, grid, status, "; ".join(lines) + "." + _notes(*margins), numbers)


CLAIMS = {
    "pq-beats-vq": pq_beats_vq,
    "pq-vq-scale-opposite": pq_vq_scale_opposite,
    "pq-k-diminishing": pq_k_diminishing,
    "lc-utilisation": lc_utilisation,
    "lc-scales-with-k": lc_scales_with_k,
    "lc-init-order": lc_init_order,
    "lc-projector": lc_projector,
    "lc-dprime-insensitive": lc_dprime_insensitive,
}


def all_verdicts(df) -> list[Verdict]:
    """Every claim's verdict, PQGAN's first."""
    return [fn(df) for fn in CLAIMS.values()]


def verdicts_frame(verdicts: list[Verdict]):
    """The verdicts as a DataFrame (paper, claim, status, evidence) for display."""
    import pandas as pd

    return pd.DataFrame([{"paper": v.paper, "claim": v.claim, "status": v.status, "grid": v.grid,
                          "evidence": v.evidence} for v in verdicts])
