"""The papers' claims, each a pure function of the runs DataFrame (``pqstudy.study.store.runs_dataframe``).

Every verdict is one of ``reproduced``, ``not reproduced`` or ``inconclusive`` and carries its evidence: the numbers
compared, the seeds and the margin used, for every metric the claim is judged on. Nothing about the outcome is fixed
in advance.

**Noise (the one rule).** A point (one setting of a grid) is the mean over its seeds. Two means differ when their
difference exceeds the *margin* ``max(floor, 2 · s · sqrt(1/n₁ + 1/n₂))``: ``s`` is the pooled standard deviation
over seeds of the points compared (only points of the same grid and comparison, each with ≥ 2 seeds, contribute),
``n₁, n₂`` their seed counts. A comparison in which no point has two seeds has no margin: it is inconclusive, never
judged on noise measured elsewhere. ``FLOORS`` hold the smallest differences ever counted.

**Metrics.** Each claim is judged on its primary metric (PSNR, or utilisation for the utilisation claims) and on the
perceptual/reference metrics the papers also report, where the runs have them (LPIPS on every run; rFID and KID on
the comparison-table runs). The verdict is reproduced when the primary metric reproduces it and no other metric
contradicts it beyond its margin; not reproduced when the primary metric contradicts it; inconclusive otherwise
(including metrics that disagree, which the evidence names).

**Thresholds** (module constants):

- ``K_SUFFICIENT_RANGE`` = (128, 512), ``K_SUFFICIENT_MARGIN_DB`` = 0.5 dB: PQGAN's "128–512 entries per subspace
  suffice": the reference K (in that range, nearest 256, below the largest K) must be within 0.5 dB of the largest K.
- ``LC_UTIL_TARGET`` = 0.99, ``LC_UTIL_SLACK`` = 0.02: VQGAN-LC's ≥ 99% utilisation at every size; below 97% is a
  clear failure, 97–99% inconclusive. Utilisation is counted over the training split, as the papers count it.
- ``DPRIME_TOL``: "insensitive to D′" means the range of a metric across D′ is at most this; beyond it plus the
  margin it is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pqstudy.study.methods import method_of
from pqstudy.study.store import grid_runs, numeric, truthy

STATUSES = ("reproduced", "not reproduced", "inconclusive")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = STATUSES

T_FACTOR = 2.0  # margin = T_FACTOR standard errors of the difference of two means
K_SUFFICIENT_RANGE = (128, 512)
K_SUFFICIENT_TARGET = 256
K_SUFFICIENT_MARGIN_DB = 0.5
LC_UTIL_TARGET = 0.99
LC_UTIL_SLACK = 0.02
DPRIME_TOL = {"psnr": 0.5, "utilisation": 0.05, "lpips": 0.01}
LC_COMPARED = ("vq-fc", "vq-ema")  # the baselines LC's gain with K is compared with (claim e)
MIN_POSITIONS_PER_ENTRY = 10  # utilisation counted from fewer positions per entry is flagged

FLOORS = {"psnr": 0.1, "utilisation": 0.01, "ssim": 0.005, "lpips": 0.002, "rfid": 0.5, "kid": 0.0005}
UNITS = {"psnr": " dB", "utilisation": "", "ssim": "", "lpips": "", "rfid": "", "kid": ""}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "utilisation": True, "lpips": False, "rfid": False, "kid": False}
QUALITY_METRICS = ("psnr", "lpips", "rfid", "kid")  # the reconstruction claims: PSNR first, then as the papers report


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    status: str
    evidence: str
    numbers: dict = field(default_factory=dict)
    key: str = ""
    grid: str = ""
    seeds: str = ""  # the seeds of the compared points, e.g. "3 seeds per point"
    reason: str = ""  # measured context: why a claim is (not) reproduced at this scale
    scope: str = ""  # what this scale can and cannot show about the claim

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {STATUSES}")


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
    """The pooled standard deviation over seeds of the points with ≥ 2 seeds; None when none has."""
    seeded = [p for p in pts if p.n >= 2]
    if not seeded:
        return None
    dof = sum(p.n - 1 for p in seeded)
    return math.sqrt(sum((p.n - 1) * p.sd**2 for p in seeded) / dof)


def margin(metric: str, a: Point, b: Point, *others: Point) -> float | None:
    """The margin for the difference of means ``a − b``: ``max(floor, T_FACTOR · s · sqrt(1/n_a + 1/n_b))`` with
    ``s`` pooled over ``a``, ``b`` and ``others`` (further points of the same comparison); None without seeds."""
    s = pooled_sd(a, b, *others)
    if s is None:
        return None
    return max(FLOORS[metric], T_FACTOR * s * math.sqrt(1 / a.n + 1 / b.n))


def better(metric: str, a: Point, b: Point, m: float | None) -> int:
    """+1: ``a`` better than ``b`` beyond the margin (higher, or lower for LPIPS/rFID/KID); −1: worse; 0: within
    it, or no margin."""
    if m is None:
        return 0
    diff = (a.mean - b.mean) * (1 if HIGHER_IS_BETTER.get(metric, True) else -1)
    return 1 if diff > m else (-1 if diff < -m else 0)


def _sign(diff: float, m: float | None) -> int:
    """+1: above by more than the margin; −1: below by more than it; 0: within it, or no margin."""
    if m is None:
        return 0
    return 1 if diff > m else (-1 if diff < -m else 0)


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric == "utilisation":
        return f"{100 * value:.1f}%"
    if metric in ("ssim", "lpips", "kid"):
        return f"{value:.4f}"
    return f"{value:.2f}{UNITS.get(metric, '')}"


def _fmt_diff(value: float | None, metric: str) -> str:
    if value is None:
        return "n/a"
    if metric == "utilisation":
        return f"{100 * value:+.1f} pts"
    if metric in ("ssim", "lpips", "kid"):
        return f"{value:+.4f}"
    return f"{value:+.2f}{UNITS.get(metric, '')}"


def _fmt_margin(m: float | None, metric: str) -> str:
    return "none: fewer than 2 seeds" if m is None else _fmt_diff(m, metric).lstrip("+")


def _fmt_point(p: Point, metric: str) -> str:
    if p.n >= 2:
        unit = UNITS.get(metric, "")
        lo, hi = (_fmt(v, metric) for v in (p.lo, p.hi))
        lo, hi = (v[: -len(unit)] if unit and v.endswith(unit) else v for v in (lo, hi))
        return f"{_fmt(p.mean, metric)} [{lo}–{hi}, {p.n} seeds]"
    return f"{_fmt(p.mean, metric)} [1 seed]"


def _seed_note(*pts: Point) -> str:
    counts = sorted({p.n for p in pts})
    return "seeds per point: " + ("/".join(str(c) for c in counts) if counts else "none")


def _no_data(key: str, what: str, grid: str) -> Verdict:
    claim, paper = CLAIM_TEXT[key]
    return Verdict(claim, paper, INCONCLUSIVE, f"no data: {what}", {}, key, grid, scope=SCOPE.get(key, ""))


def _verdict(key: str, grid: str, status: str, evidence: str, numbers: dict, seeds: str = "",
             reason: str = "") -> Verdict:
    claim, paper = CLAIM_TEXT[key]
    return Verdict(claim, paper, status, evidence, numbers, key, grid, seeds, reason, SCOPE.get(key, ""))


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


def _state(signs: list[int]) -> int:
    """All +1 → +1; any −1 → −1; else 0."""
    if not signs:
        return 0
    if any(s < 0 for s in signs):
        return -1
    return 1 if all(s > 0 for s in signs) else 0


CLAIM_TEXT = {
    "pq-beats-vq": ("PQ reconstructs better than VQ at every embedding dim D (PSNR; LPIPS, rFID, KID)", "PQGAN"),
    "pq-vq-scale-opposite": ("With growing D, PQ's PSNR rises while VQ's falls", "PQGAN"),
    "pq-k-diminishing": ("Diminishing returns in K per subspace: 128–512 entries suffice", "PQGAN"),
    "pq-beats-vq-equal-rate": ("PQ still beats VQ at equal bits per latent position", "neither (ours)"),
    "lc-utilisation": ("LC keeps ≥99% codebook utilisation at every size; vq / vq-fc / vq-ema fall below it at the "
                       "largest size", "VQGAN-LC"),
    "lc-scales-with-k": ("LC's reconstruction improves with codebook size, more than vq-fc's and vq-ema's", "VQGAN-LC"),
    "lc-init-order": ("Codebook init: k-means ≥ random selection ≥ random (utilisation, reconstruction)", "VQGAN-LC"),
    "lc-projector": ("A frozen codebook with a learned projector beats the same codebook without one", "VQGAN-LC"),
    "lc-dprime-insensitive": ("Results are insensitive to the projected dim D′", "VQGAN-LC"),
}

# What the default profile (CIFAR-10 32×32, 800 steps ≈ 0.5 epoch, 0.7M-parameter autoencoder, pixel-patch features
# in place of CLIP) can and cannot show about each claim.
SCOPE = {
    "pq-beats-vq": "Can show the direction of the PQ–VQ gap at small D on a small model; cannot show its size at "
                   "ImageNet 256 px (PQGAN: 37.4 vs 27.0 dB at F=8). PQ also spends 4–16× more bits per position "
                   "here: see pq-beats-vq-equal-rate for the gap at equal rate.",
    "pq-vq-scale-opposite": "Two dims (8 and 32) against the paper's four (32–256): can show opposite trends only "
                            "where they already appear at small D; VQ's fall at large D comes from codebook "
                            "collapse, which needs enough training to develop.",
    "pq-k-diminishing": "Can show where the PSNR gain per doubling of K shrinks on 32×32 images; the paper's "
                        "128–512 range is for 256 px ImageNet latents and may shift with data and training length.",
    "pq-beats-vq-equal-rate": "Our question, in neither paper: separates the method from the rate; at 800 steps on "
                              "CIFAR-10, large-K VQ may be limited by how many entries it learns to use.",
    "lc-utilisation": "Counted over the 50,000 training images × 64 positions (32 per entry at K = 100,000), so "
                      "≥99% is reachable by counting; but 800 steps is half an epoch against the paper's 20+ epochs "
                      "on ImageNet, and pixel-patch features replace CLIP ViT-L/14 features.",
    "lc-scales-with-k": "Can show whether PSNR/LPIPS move with K at 32×32; cannot show the paper's rFID gains, which "
                        "need 50,000-sample rFID on ImageNet.",
    "lc-init-order": "Pixel-patch k-means stands in for CLIP-feature k-means: the ordering of the arms can be "
                     "tested, not the paper's numbers.",
    "lc-projector": "Tests the projector on the identical frozen codebook; with pixel-patch features the static arm "
                    "looks up 48-dim patches, unlike the paper's 768-dim CLIP features.",
    "lc-dprime-insensitive": "D′ from 8 to 32 at 100,000 entries; the paper's range is 8–64 with CLIP features.",
}


CONTEXT_LABELS = {"_method": "", "_dim": "D=", "_bits": "", "_k": "K=", "_init": "", "_variant": "",
                  "_dprime": "D′="}  # how each grouping column reads in the measured context


def _context_label(key, label_by) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    by = label_by if isinstance(label_by, list) else [label_by]
    parts = []
    for name, value in zip(by, keys, strict=False):
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{CONTEXT_LABELS.get(name, '')}{text}" + (" bits" if name == "_bits" else ""))
    return " ".join(parts)


def _context(runs, label_by, what: str = "utilisation") -> str:
    """Measured context of the compared runs: utilisation (train split), positions per entry, images seen."""
    parts = [f"{_context_label(key, label_by)}: {_fmt(p.mean, 'utilisation')}"
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


def _pair_lines(metric: str, pairs: list[tuple[str, Point, Point, tuple[Point, ...]]], names=("PQ", "VQ")):
    """For each ``(label, a, b, others)``: the comparison line, its state (+1: a better) and its numbers."""
    lines, states, numbers = [], [], {}
    for label, a, b, others in pairs:
        m = margin(metric, a, b, *others)
        st = better(metric, a, b, m)
        states.append(st)
        word = {1: f"{names[0]} better", -1: f"{names[1]} better", 0: "within the margin"}[st]
        lines.append(f"{label}: {names[0]} {_fmt_point(a, metric)} vs {names[1]} {_fmt_point(b, metric)}: "
                     f"{_fmt_diff(a.mean - b.mean, metric)} (margin {_fmt_margin(m, metric)}, {word})")
        numbers[label] = {names[0].lower(): a.mean, names[1].lower(): b.mean, "diff": a.mean - b.mean, "margin": m,
                          "seeds": [a.n, b.n]}
    return lines, states, numbers


def _judged(key: str, grid: str, per_metric: dict[str, tuple[int, list[str], dict]], pts_all: list[Point],
            reason: str = "", primaries: int = 1, need_all: bool = False) -> Verdict:
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
    return _verdict(key, grid, status, evidence, numbers, _seed_note(*pts_all), reason)


def _present(runs, metrics) -> list[str]:
    """The metrics that have at least one value in ``runs`` (the primary always kept)."""
    return [m for i, m in enumerate(metrics) if i == 0 or numeric(runs, m).notna().any()]


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def _dim_runs(df, grid="pq-vs-vq-dim"):
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return None
    return runs.assign(_method=method_of(runs), _dim=numeric(runs, "quantizer.dim"))


def _pq_vs_vq(runs, by: str, metrics, label, also: str | None = None) -> tuple[dict, list[Point]]:
    """PQ against VQ at each value of ``by`` where both were measured, per metric present in ``runs``: ``({metric:
    (state, lines, numbers)}, points compared)``; a metric with no such value is left out. ``also`` (a method) is
    reported alongside at the same values."""
    per_metric, pts_all = {}, []
    for metric in _present(runs, metrics):
        pts = points(runs, ["_method", by], metric)
        values = sorted({v for (m, v) in pts if m == "pq"} & {v for (m, v) in pts if m == "vq"})
        if not values:
            continue
        pairs = [(label(v), pts[("pq", v)], pts[("vq", v)], ()) for v in values]
        pts_all += [p for _, a, b, _ in pairs for p in (a, b)]
        lines, states, numbers = _pair_lines(metric, pairs)
        lines += [f"{also.upper()} at {label(v)}: {_fmt_point(pts[(also, v)], metric)}" for v in values
                  if also and (also, v) in pts]
        per_metric[metric] = (_state(states), lines, numbers)
    return per_metric, pts_all


def pq_beats_vq(df) -> Verdict:
    """(a) per metric: PQ better than VQ beyond the margin at every D measured → +1; VQ better at some D → −1."""
    key, grid = "pq-beats-vq", "pq-vs-vq-dim"
    runs = _dim_runs(df)
    if runs is None:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    per_metric, pts_all = _pq_vs_vq(runs, "_dim", QUALITY_METRICS, lambda d: f"D={d:g}")
    if "psnr" not in per_metric:
        return _no_data(key, f"grid {grid} has no D with both a vq and a pq PSNR", grid)
    bits = points(runs, ["_method", "_dim"], "bits_per_position")
    reason = ("bits per position: " + ", ".join(f"{m.upper()} D={d:g}: {p.mean:g}" for (m, d), p in bits.items())
              + "; " + _context(runs, ["_method", "_dim"]))
    return _judged(key, grid, per_metric, pts_all, reason)


def pq_vq_scale_opposite(df) -> Verdict:
    """(b) from the smallest to the largest D: +1 when PQ's PSNR rises and VQ's falls, each beyond the margin; −1
    when PQ falls or VQ rises beyond it (this includes both moving the same way); LPIPS judged the same way."""
    key, grid = "pq-vq-scale-opposite", "pq-vs-vq-dim"
    runs = _dim_runs(df)
    if runs is None:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    per_metric, pts_all = {}, []
    for metric in _present(runs, ("psnr", "lpips")):
        pts = points(runs, ["_method", "_dim"], metric)
        changes, lines, numbers = {}, [], {}
        for method in ("pq", "vq"):
            dims = sorted(d for (m, d) in pts if m == method)
            if len(dims) < 2:
                if metric == "psnr":
                    return _no_data(key, f"{method} has PSNR at {len(dims)} D value(s) in {grid}; needs 2", grid)
                break
            a, b = pts[(method, dims[0])], pts[(method, dims[-1])]
            pts_all += [a, b]
            m = margin(metric, b, a)
            changes[method] = better(metric, b, a, m)  # +1: improves with D
            word = {1: "improves", -1: "worsens", 0: "flat within the margin"}[changes[method]]
            lines.append(f"{method.upper()} D={dims[0]:g}→{dims[-1]:g}: {_fmt_point(a, metric)} → "
                         f"{_fmt_point(b, metric)} ({_fmt_diff(b.mean - a.mean, metric)}, margin "
                         f"{_fmt_margin(m, metric)}: {word})")
            numbers[method] = {"dims": [dims[0], dims[-1]], metric: [a.mean, b.mean], "margin": m}
        if len(changes) < 2:
            continue
        state = 1 if changes["pq"] > 0 and changes["vq"] < 0 else (
            -1 if changes["pq"] < 0 or changes["vq"] > 0 else 0)
        per_metric[metric] = (state, lines, numbers)
    return _judged(key, grid, per_metric, pts_all, _context(runs, ["_method", "_dim"]))


def pq_k_diminishing(df) -> Verdict:
    """(c) PSNR gain per doubling of K: +1 when the gain from the reference K (in ``K_SUFFICIENT_RANGE``, nearest
    256) to the largest K is below the gain from the smallest K to the reference by more than the margin, and the
    reference is within ``K_SUFFICIENT_MARGIN_DB`` of the largest K; −1 when the gain grows beyond the margin, or
    the reference trails the largest by more than ``K_SUFFICIENT_MARGIN_DB`` + the margin; else 0."""
    key, grid = "pq-k-diminishing", "pq-codebook-size"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_k=numeric(runs, "quantizer.codebook_size"))
    pts = points(runs, "_k", "psnr")
    ks = sorted(pts)
    lo, hi = K_SUFFICIENT_RANGE
    candidates = [k for k in ks[1:-1] if lo <= k <= hi]
    if len(ks) < 3 or not candidates:
        return _no_data(key, f"grid {grid} needs a smallest K, a K in {lo}–{hi} and a larger K (has {ks})", grid)
    ref = min(candidates, key=lambda k: abs(math.log2(k / K_SUFFICIENT_TARGET)))
    a, r, b = pts[ks[0]], pts[ref], pts[ks[-1]]
    d1, d2 = math.log2(ref / ks[0]), math.log2(ks[-1] / ref)
    g1, g2 = (r.mean - a.mean) / d1, (b.mean - r.mean) / d2
    s = pooled_sd(a, r, b)
    # the difference of the two gains per doubling is a linear combination of three means: its standard error
    se = None if s is None else s * math.sqrt((1 / d1) ** 2 / a.n + (1 / d1 + 1 / d2) ** 2 / r.n + (1 / d2) ** 2 / b.n)
    gain_margin = None if se is None else max(FLOORS["psnr"] / min(d1, d2), T_FACTOR * se)
    trend = _sign(g1 - g2, gain_margin)  # +1: the gain shrinks
    gap, gap_margin = b.mean - r.mean, margin("psnr", b, r, a)
    sufficiency = 0 if gap_margin is None else (1 if gap <= K_SUFFICIENT_MARGIN_DB else (
        -1 if gap > K_SUFFICIENT_MARGIN_DB + gap_margin else 0))
    curve = ", ".join(f"K={k:g}: {_fmt_point(pts[k], 'psnr')}" for k in ks)
    lines = [curve, f"gain per doubling K={ks[0]:g}→{ref:g}: {g1:+.2f} dB, K={ref:g}→{ks[-1]:g}: {g2:+.2f} dB "
             f"(difference margin {_fmt_margin(gain_margin, 'psnr')}: "
             + {1: "shrinks", -1: "grows", 0: "no clear change"}[trend] + ")",
             f"K={ref:g} trails K={ks[-1]:g} by {gap:.2f} dB (allowed {K_SUFFICIENT_MARGIN_DB:.2f} dB, margin "
             f"{_fmt_margin(gap_margin, 'psnr')}: " + {1: "suffices", -1: "does not suffice", 0: "borderline"}[
                 sufficiency] + ")"]
    state = -1 if (trend < 0 or sufficiency < 0) else (1 if trend > 0 and sufficiency > 0 else 0)
    per_metric = {"psnr": (state, lines, {"K": ks, "psnr": [pts[k].mean for k in ks], "reference_K": ref,
                                          "gains": [g1, g2], "gain_margin": gain_margin, "gap_to_largest": gap})}
    if numeric(runs, "lpips").notna().any():
        lp = points(runs, "_k", "lpips")
        if all(k in lp for k in (ks[0], ref, ks[-1])):
            lines_lp, states, numbers = _pair_lines("lpips", [(f"K={ks[-1]:g} vs K={ref:g}", lp[ks[-1]], lp[ref],
                                                               (lp[ks[0]],))], names=(f"K={ks[-1]:g}", f"K={ref:g}"))
            m = numbers[f"K={ks[-1]:g} vs K={ref:g}"]["margin"]
            gap_lp = lp[ref].mean - lp[ks[-1]].mean  # how much worse the reference is
            st = 0 if m is None else (1 if gap_lp <= m else -1)  # sufficiency on LPIPS: within the margin
            per_metric["lpips"] = (st, lines_lp, numbers)
    util = points(runs, "_k", "utilisation")
    reason = "utilisation (train split) " + ", ".join(f"K={k:g}: {_fmt(p.mean, 'utilisation')}"
                                                      for k, p in sorted(util.items()))
    return _judged(key, grid, per_metric, [a, r, b], reason)


def pq_beats_vq_equal_rate(df) -> Verdict:
    """(ours) at each rate of the rate-matched grid, per metric: +1 when PQ beats VQ beyond the margin at every
    rate; −1 when VQ beats PQ beyond it at some rate. LC is reported alongside."""
    key, grid = "pq-beats-vq-equal-rate", "rate-matched"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_method=method_of(runs), _bits=numeric(runs, "bits_per_position").round(3))
    per_metric, pts_all = _pq_vs_vq(runs, "_bits", ("psnr", "lpips"), lambda b: f"{b:g} bits", also="lc")
    if "psnr" not in per_metric:
        return _no_data(key, f"grid {grid} has no rate with both a vq and a pq PSNR", grid)
    return _judged(key, grid, per_metric, pts_all, _context(runs, ["_method", "_bits"]))


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC


def _method_size_runs(df):
    runs = grid_runs(df, "lc-method-size")
    if runs is None or len(runs) == 0:
        return None
    return runs.assign(_method=method_of(runs), _k=numeric(runs, "quantizer.codebook_size"))


def lc_utilisation(df) -> Verdict:
    """(d) +1: LC's utilisation ≥ ``LC_UTIL_TARGET`` at every K and every other method below LC beyond the margin at
    the largest K; −1: LC below ``LC_UTIL_TARGET − LC_UTIL_SLACK`` at some K, or another method above LC beyond the
    margin at the largest K; else 0."""
    key, grid = "lc-utilisation", "lc-method-size"
    runs = _method_size_runs(df)
    if runs is None:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    pts = points(runs, ["_method", "_k"], "utilisation")
    lc_ks = sorted(k for (m, k) in pts if m == "lc")
    if not lc_ks:
        return _no_data(key, f"no lc utilisation in grid {grid}", grid)
    methods = sorted({m for (m, _) in pts}, key=lambda m: (m == "lc", m))
    lines = [f"K={k:g}: " + ", ".join(f"{m} {_fmt_point(pts[(m, k)], 'utilisation')}" for m in methods
                                      if (m, k) in pts) for k in sorted({k for (_, k) in pts})]
    lc_values = {k: pts[("lc", k)].mean for k in lc_ks}
    lc_min_k = min(lc_values, key=lc_values.get)
    lc_min = lc_values[lc_min_k]
    lc_state = 1 if lc_min >= LC_UTIL_TARGET else (-1 if lc_min < LC_UTIL_TARGET - LC_UTIL_SLACK else 0)
    lines.append(f"LC's lowest: {_fmt(lc_min, 'utilisation')} at K={lc_min_k:g} (target ≥ "
                 f"{_fmt(LC_UTIL_TARGET, 'utilisation')}; below {_fmt(LC_UTIL_TARGET - LC_UTIL_SLACK, 'utilisation')}"
                 " fails)")
    kmax = lc_ks[-1]
    pairs = [(f"K={kmax:g}, LC vs {m}", pts[("lc", kmax)], pts[(m, kmax)], ()) for m in methods
             if m != "lc" and (m, kmax) in pts]
    pair_lines, states, numbers = _pair_lines("utilisation", pairs, names=("LC", "other"))
    lines += pair_lines
    state = -1 if lc_state < 0 or any(s < 0 for s in states) else (
        1 if lc_state > 0 and states and all(s > 0 for s in states) else 0)
    numbers.update({"lc": lc_values, "largest_K": kmax})
    ppe = points(runs, ["_method", "_k"], "positions_per_entry")
    low = sorted({k for (m, k), p in ppe.items() if p.mean < MIN_POSITIONS_PER_ENTRY})
    ppe_text = ", ".join(f"K={k:g}: {p.mean:.1f}" for (m, k), p in ppe.items() if m == "lc")
    reason = f"positions per entry counted (LC): {ppe_text}"
    if low:
        reason += (f"; fewer than {MIN_POSITIONS_PER_ENTRY} at K={', '.join(f'{k:g}' for k in low)}: utilisation "
                   "there is capped by counting, not by the method")
    epochs = (numeric(runs, "train.steps") * numeric(runs, "train.batch_size")).dropna()
    if len(epochs):
        reason += f"; {epochs.max():.0f} training images seen per run"
    return _judged(key, grid, {"utilisation": (state, lines, numbers)}, [p for _, a, b, _ in pairs for p in (a, b)],
                   reason)


def lc_scales_with_k(df) -> Verdict:
    """(e) per metric, gain = value at the largest K − at the smallest (improvement: LPIPS sign flipped). +1: LC's
    gain beyond the margin and beyond each of vq-fc's and vq-ema's gains by the margin; −1: LC worsens beyond the
    margin, or a baseline gains more than LC beyond it; else 0."""
    key, grid = "lc-scales-with-k", "lc-method-size"
    runs = _method_size_runs(df)
    if runs is None:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    per_metric, pts_all = {}, []
    for metric in _present(runs, ("psnr", "lpips")):
        pts = points(runs, ["_method", "_k"], metric)
        sign = 1 if HIGHER_IS_BETTER[metric] else -1

        def ends(method, pts=pts):
            ks = sorted(k for (m, k) in pts if m == method)
            return None if len(ks) < 2 else (ks[0], ks[-1], pts[(method, ks[0])], pts[(method, ks[-1])])

        lc = ends("lc")
        if lc is None:
            if metric == "psnr":
                return _no_data(key, f"lc needs PSNR at ≥2 codebook sizes in grid {grid}", grid)
            continue
        k0, k1, a, b = lc
        pts_all += [a, b]
        m_lc = margin(metric, b, a)
        g_lc = sign * (b.mean - a.mean)
        lc_state = _sign(g_lc, m_lc)
        lines = [f"LC K={k0:g}→{k1:g}: {_fmt_point(a, metric)} → {_fmt_point(b, metric)} "
                 f"({_fmt_diff(b.mean - a.mean, metric)}, margin {_fmt_margin(m_lc, metric)})"]
        numbers, states = {"lc": {"K": [k0, k1], metric: [a.mean, b.mean], "margin": m_lc}}, []
        for method in LC_COMPARED:
            other = ends(method)
            if other is None:
                continue
            o0, o1, oa, ob = other
            pts_all += [oa, ob]
            g = sign * (ob.mean - oa.mean)
            s = pooled_sd(a, b, oa, ob)
            m = None if s is None else max(FLOORS[metric], T_FACTOR * s * math.sqrt(
                1 / a.n + 1 / b.n + 1 / oa.n + 1 / ob.n))
            states.append(_sign(g_lc - g, m))
            lines.append(f"{method} K={o0:g}→{o1:g}: {_fmt_point(oa, metric)} → {_fmt_point(ob, metric)} (LC's gain "
                         f"− this = {_fmt_diff(g_lc - g, metric)}, margin {_fmt_margin(m, metric)})")
            numbers[method] = {"K": [o0, o1], metric: [oa.mean, ob.mean], "margin": m}
        state = -1 if lc_state < 0 or any(st < 0 for st in states) else (
            1 if lc_state > 0 and states and all(st > 0 for st in states) else 0)
        per_metric[metric] = (state, lines, numbers)
    return _judged(key, grid, per_metric, pts_all, _context(runs[runs["_method"] == "lc"], "_k"))


LC_INITS = ("kmeans", "select", "uniform")  # VQGAN-LC's arms, best first as the paper orders them


def lc_init_order(df) -> Verdict:
    """(f) per metric (utilisation, PSNR, LPIPS): −1 when k-means trails random selection, selection trails random,
    or k-means trails random beyond the margin; +1 when no such reversal and k-means beats random beyond it."""
    key, grid = "lc-init-order", "lc-init"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_init=runs["quantizer.lc_init"].astype(str))
    per_metric, pts_all = {}, []
    for metric in _present(runs, ("utilisation", "psnr", "lpips")):
        pts = points(runs, "_init", metric)
        missing = [i for i in LC_INITS if i not in pts]
        if missing:
            if metric == "utilisation":
                return _no_data(key, f"{metric} missing for init {', '.join(missing)} in grid {grid}", grid)
            continue
        arms = [pts[i] for i in LC_INITS]
        pts_all += arms
        lines, states = [", ".join(f"{i} {_fmt_point(pts[i], metric)}" for i in pts)], []
        numbers = {i: pts[i].mean for i in pts}
        for hi_, lo_ in (("kmeans", "select"), ("select", "uniform"), ("kmeans", "uniform")):
            m = margin(metric, pts[hi_], pts[lo_], *arms)
            st = better(metric, pts[hi_], pts[lo_], m)
            states.append(st)
            lines.append(f"{hi_} vs {lo_} {_fmt_diff(pts[hi_].mean - pts[lo_].mean, metric)} (margin "
                         f"{_fmt_margin(m, metric)})")
            numbers[f"{hi_}-{lo_}"] = {"diff": pts[hi_].mean - pts[lo_].mean, "margin": m}
        state = -1 if any(st < 0 for st in states) else (1 if states[2] > 0 else 0)
        per_metric[metric] = (state, lines, numbers)
    return _judged(key, grid, per_metric, pts_all, _context(runs, "_init"), primaries=2)


def _projector_variant(row) -> str:
    if str(row.get("quantizer.projector", "")) == "none":
        return "static, no projector"
    return "trainable + projector" if truthy(row.get("quantizer.lc_trainable")) else "static + projector"


def lc_projector(df) -> Verdict:
    """(g) static + projector vs the same static codebook without a projector, per metric (PSNR, utilisation,
    LPIPS): +1 better beyond the margin, −1 worse. The trainable codebook + projector is reported alongside."""
    key, grid = "lc-projector", "lc-projector"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    runs = runs.assign(_variant=runs.apply(_projector_variant, axis=1))
    base, ours, trainable = "static, no projector", "static + projector", "trainable + projector"
    per_metric, pts_all = {}, []
    for metric in _present(runs, ("psnr", "utilisation", "lpips")):
        pts = points(runs, "_variant", metric)
        if base not in pts or ours not in pts:
            if metric == "psnr":
                return _no_data(key, f"{metric} missing for {base if base not in pts else ours} in grid {grid}",
                                grid)
            continue
        pts_all += [pts[ours], pts[base]]
        lines, states, numbers = _pair_lines(metric, [("projector", pts[ours], pts[base], ())],
                                             names=("with projector", "without"))
        if trainable in pts:
            lines.append(f"{trainable} {_fmt_point(pts[trainable], metric)}")
        per_metric[metric] = (_state(states), lines, numbers)
    return _judged(key, grid, per_metric, pts_all, _context(runs, "_variant"), primaries=2)


def lc_dprime_insensitive(df) -> Verdict:
    """(h) per metric, the range (max − min of the means) across D′: +1 when at most ``DPRIME_TOL``; −1 when above
    it plus the margin of the smallest vs the largest D′; else 0."""
    key, grid = "lc-dprime-insensitive", "lc-projected-dim"
    runs = grid_runs(df, grid)
    if runs is None or len(runs) == 0:
        return _no_data(key, f"no ok runs in grid {grid}", grid)
    low, dim = numeric(runs, "quantizer.low_dim").fillna(0), numeric(runs, "quantizer.dim")
    runs = runs.assign(_dprime=low.where(low > 0, dim))
    per_metric, pts_all = {}, []
    for metric in _present(runs, ("psnr", "utilisation", "lpips")):
        pts = points(runs, "_dprime", metric)
        if len(pts) < 2:
            if metric == "psnr":
                return _no_data(key, f"{metric} at {len(pts)} D′ value(s) in grid {grid}; needs at least 2", grid)
            continue
        ds = sorted(pts)
        pts_all += [pts[ds[0]], pts[ds[-1]]]
        means = {d: p.mean for d, p in pts.items()}
        spread = max(means.values()) - min(means.values())
        m = margin(metric, pts[ds[0]], pts[ds[-1]], *pts.values())
        tol = DPRIME_TOL[metric]
        state = 0 if m is None else (1 if spread <= tol else (-1 if spread > tol + m else 0))
        values = ", ".join(f"D′={d:g}: {_fmt_point(p, metric)}" for d, p in sorted(pts.items()))
        lines = [f"{values}; range {_fmt_diff(spread, metric).lstrip('+')} (threshold "
                 f"{_fmt_diff(tol, metric).lstrip('+')}, margin {_fmt_margin(m, metric)})"]
        per_metric[metric] = (state, lines, {"values": means, "range": spread, "threshold": tol, "margin": m})
    return _judged(key, grid, per_metric, pts_all, _context(runs, "_dprime"), primaries=2,
                   need_all=True)


CLAIMS = {
    "pq-beats-vq": pq_beats_vq,
    "pq-vq-scale-opposite": pq_vq_scale_opposite,
    "pq-k-diminishing": pq_k_diminishing,
    "pq-beats-vq-equal-rate": pq_beats_vq_equal_rate,
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
    """The verdicts as a DataFrame (paper, claim, status, seeds, evidence, reason) for display."""
    import pandas as pd

    return pd.DataFrame([{"paper": v.paper, "claim": v.claim, "status": v.status, "grid": v.grid, "seeds": v.seeds,
                          "evidence": v.evidence, "reason": v.reason} for v in verdicts])
