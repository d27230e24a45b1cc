"""What every claim shares: points over seeds, the margin, the sign vote, combining metrics, and the wording.

**Noise (the one rule).** A point (one setting of a grid) is the mean over its seeds. Two means differ when their
difference exceeds the *margin* ``max(floor, 2 · s · sqrt(1/n₁ + 1/n₂))``: ``s`` is the pooled standard deviation
over seeds of the points compared (only points of the same grid and comparison, each with ≥ 2 seeds, contribute),
``n₁, n₂`` their seed counts. A comparison in which no point has two seeds has no margin: it is inconclusive, never
judged on noise measured elsewhere. ``FLOORS`` hold the smallest differences ever counted.

A claim judges each metric to a *state*: +1 (supports the claim beyond the margin), −1 (contradicts it beyond the
margin) or 0 (within it, or no margin); ``judged`` combines the states of its metrics into the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pqstudy.study.store import numeric
from pqstudy.study.verdicts.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Claim, Verdict

T_FACTOR = 2.0  # margin = T_FACTOR standard errors of the difference of two means
FLOORS = {"psnr": 0.1, "utilisation": 0.01, "ssim": 0.005, "lpips": 0.002, "rfid": 0.5, "kid": 0.0005}
UNITS = {"psnr": " dB", "utilisation": "", "ssim": "", "lpips": "", "rfid": "", "kid": ""}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "utilisation": True, "lpips": False, "rfid": False, "kid": False}


# ---------------------------------------------------------------------------------------------------------------
# points and margins


@dataclass(frozen=True)
class Point:
    mean: float
    lo: float
    hi: float
    n: int
    sd: float = 0.0  # sample standard deviation over seeds (0 with one seed)

    @property
    def spread(self) -> float:
        return self.hi - self.lo


def points(runs, by, metric: str) -> dict:
    """``{key: Point}``: the metric's mean, min, max, count and standard deviation over the runs of each group."""
    by = [by] if isinstance(by, str) else list(by)
    if runs is None or len(runs) == 0:
        return {}
    frame = runs[by].copy()
    frame["_value"] = numeric(runs, metric)
    frame = frame.dropna(subset=["_value"])
    out = {}
    for key, group in frame.groupby(by, sort=True, dropna=False):
        key = key[0] if isinstance(key, tuple) and len(key) == 1 else key
        values = group["_value"].to_numpy(dtype=float)
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = Point(float(values.mean()), float(values.min()), float(values.max()), len(values), sd)
    return out


def pooled_sd(*pts: Point) -> float | None:
    """The pooled standard deviation over seeds of the points with ≥ 2 seeds; None when none has. Each point counts
    once however often it is passed (a claim passes its compared pair again among all its points)."""
    seeded = [p for p in {id(p): p for p in pts}.values() if p.n >= 2]
    if not seeded:
        return None
    dof = sum(p.n - 1 for p in seeded)
    return math.sqrt(sum((p.n - 1) * p.sd**2 for p in seeded) / dof)


def combination_margin(metric: str, weighted: list[tuple[float, Point]], pooled_over: tuple[Point, ...],
                       floor: float | None = None) -> float | None:
    """The margin for a linear combination of means ``Σ wᵢ · meanᵢ`` (``weighted``: pairs ``(wᵢ, point)``):
    ``max(floor, T_FACTOR · s · sqrt(Σ wᵢ² / nᵢ))`` with ``s`` pooled over ``pooled_over`` (the points of the
    comparison); None without seeds. ``floor``: the metric's ``FLOORS`` entry unless given."""
    s = pooled_sd(*pooled_over)
    if s is None:
        return None
    return max(FLOORS[metric] if floor is None else floor,
               T_FACTOR * s * math.sqrt(sum(w**2 / p.n for w, p in weighted)))


def margin(metric: str, a: Point, b: Point, *others: Point, floor: float | None = None) -> float | None:
    """The margin for the difference of means ``a − b``: ``max(floor, T_FACTOR · s · sqrt(1/n_a + 1/n_b))`` with
    ``s`` pooled over ``a``, ``b`` and ``others`` (further points of the same comparison); None without seeds.
    ``floor``: the metric's ``FLOORS`` entry unless given (the generation claims give their sampling floor)."""
    return combination_margin(metric, [(1.0, a), (-1.0, b)], (a, b, *others), floor)


def better(metric: str, a: Point, b: Point, m: float | None) -> int:
    """+1: ``a`` better than ``b`` beyond the margin (higher, or lower for LPIPS/rFID/KID); −1: worse; 0: within
    it, or no margin."""
    if m is None:
        return 0
    diff = (a.mean - b.mean) * (1 if HIGHER_IS_BETTER.get(metric, True) else -1)
    return 1 if diff > m else (-1 if diff < -m else 0)


def sign_beyond(diff: float, m: float | None) -> int:
    """+1: above by more than the margin; −1: below by more than it; 0: within it, or no margin."""
    if m is None:
        return 0
    return 1 if diff > m else (-1 if diff < -m else 0)


# ---------------------------------------------------------------------------------------------------------------
# wording


def _format(value: float | None, metric: str, signed: bool) -> str:
    """A value (``signed``: a difference, with its sign) as the evidence writes it: utilisation in % (a difference
    in points), SSIM / LPIPS / KID to 4 decimals, the rest to 2 with their unit."""
    if value is None or (not signed and isinstance(value, float) and math.isnan(value)):
        return "n/a"
    sign = "+" if signed else ""
    if metric == "utilisation":
        return f"{100 * value:{sign}.1f}" + (" pts" if signed else "%")
    if metric in ("ssim", "lpips", "kid"):
        return f"{value:{sign}.4f}"
    return f"{value:{sign}.2f}{UNITS.get(metric, '')}"


def fmt(value: float | None, metric: str) -> str:
    return _format(value, metric, signed=False)


def fmt_diff(value: float | None, metric: str) -> str:
    return _format(value, metric, signed=True)


def fmt_margin(m: float | None, metric: str) -> str:
    return "none: fewer than 2 seeds" if m is None else fmt_diff(m, metric).lstrip("+")


def fmt_point(p: Point, metric: str) -> str:
    if p.n >= 2:
        unit = UNITS.get(metric, "")
        lo, hi = (fmt(v, metric) for v in (p.lo, p.hi))
        lo, hi = (v[: -len(unit)] if unit and v.endswith(unit) else v for v in (lo, hi))
        return f"{fmt(p.mean, metric)} [{lo}–{hi}, {p.n} seeds]"
    return f"{fmt(p.mean, metric)} [1 seed]"


def seed_note(*pts: Point) -> str:
    counts = sorted({p.n for p in pts})
    return "seeds per point: " + ("/".join(str(c) for c in counts) if counts else "none")


# ---------------------------------------------------------------------------------------------------------------
# combining


def combine(primary: int, others: dict[str, int]) -> tuple[str, str]:
    """Overall status from the primary metric's state (+1 / −1 / 0) and the other metrics' states; and a note
    naming metrics that disagree with the primary."""
    against = [m for m, st in others.items() if st < 0]
    favour = [m for m, st in others.items() if st > 0]
    if primary < 0:
        note = f"; {', '.join(favour)} would support it" if favour else ""
        return NOT_REPRODUCED, note
    if primary > 0:
        if against:
            return INCONCLUSIVE, f"; the primary metric supports it but {', '.join(against)} contradict(s) it"
        return REPRODUCED, ""
    return INCONCLUSIVE, ""


def vote(signs: list[int]) -> int:
    """All +1 → +1; any −1 → −1; else 0."""
    if not signs:
        return 0
    if any(s < 0 for s in signs):
        return -1
    return 1 if all(s > 0 for s in signs) else 0


CONTEXT_LABELS = {"_method": "", "_dim": "D=", "_bits": "", "_k": "K=", "_init": "", "_variant": "",
                  "_dprime": "D′="}  # how each grouping column reads in the measured context


def context_label(key, label_by) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    by = label_by if isinstance(label_by, list) else [label_by]
    parts = []
    for name, value in zip(by, keys, strict=False):
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{CONTEXT_LABELS.get(name, '')}{text}" + (" bits" if name == "_bits" else ""))
    return " ".join(parts)


def context(runs, label_by, what: str = "utilisation") -> str:
    """Measured context of the compared runs: utilisation (train split), positions per entry, images seen."""
    parts = [f"{context_label(key, label_by)}: {fmt(p.mean, 'utilisation')}"
             for key, p in points(runs, label_by, what).items()]
    ppe = numeric(runs, "positions_per_entry").dropna()
    images = (numeric(runs, "train.steps") * numeric(runs, "train.batch_size")).dropna()
    extra = []
    if len(ppe):
        extra.append(f"{ppe.min():,.0f}–{ppe.max():,.0f} positions per entry counted")
    if len(images):
        extra.append(f"{images.max():,.0f} training images seen per run")
    text = f"utilisation (train split) {'; '.join(parts)}" if parts else ""
    return text + (f" ({', '.join(extra)})" if extra else "")


def pair_lines(metric: str, pairs: list[tuple[str, Point, Point, tuple[Point, ...]]], names=("PQ", "VQ")):
    """For each ``(label, a, b, others)``: the comparison line, its state (+1: a better) and its numbers."""
    lines, states, numbers = [], [], {}
    for label, a, b, others in pairs:
        m = margin(metric, a, b, *others)
        st = better(metric, a, b, m)
        states.append(st)
        word = {1: f"{names[0]} better", -1: f"{names[1]} better", 0: "within the margin"}[st]
        lines.append(f"{label}: {names[0]} {fmt_point(a, metric)} vs {names[1]} {fmt_point(b, metric)}: "
                     f"{fmt_diff(a.mean - b.mean, metric)} (margin {fmt_margin(m, metric)}, {word})")
        numbers[label] = {names[0].lower(): a.mean, names[1].lower(): b.mean, "diff": a.mean - b.mean, "margin": m,
                          "seeds": [a.n, b.n]}
    return lines, states, numbers


def judged(c: Claim, per_metric: dict[str, tuple[int, list[str], dict]], pts_all: list[Point], reason: str = "",
           primaries: int = 1, need_all: bool = False) -> Verdict:
    """Combine per-metric ``(state, lines, numbers)`` (primary first) into one verdict. With ``primaries`` = 2 the
    first two metrics are judged jointly, as the paper reports both: −1 when either contradicts the claim, else +1
    when either supports it (``need_all``: when both do)."""
    metrics = list(per_metric)
    states = [per_metric[m][0] for m in metrics[:primaries]]
    support = all if need_all else any
    primary = -1 if any(st < 0 for st in states) else (1 if support(st > 0 for st in states) else 0)
    others = {m: per_metric[m][0] for m in metrics[primaries:]}
    status, note = combine(primary, others)
    evidence = " | ".join(f"{m.upper() if m != 'utilisation' else 'utilisation'}: " + "; ".join(per_metric[m][1])
                          for m in metrics) + "." + (f" Metrics disagree{note}." if note and status != REPRODUCED
                                                      else "")
    numbers = {m: per_metric[m][2] for m in metrics}
    return c.verdict(status, evidence, numbers, seed_note(*pts_all), reason)


def present_metrics(runs, metrics) -> list[str]:
    """The metrics that have at least one value in ``runs`` (the primary always kept)."""
    return [m for i, m in enumerate(metrics) if i == 0 or numeric(runs, m).notna().any()]
