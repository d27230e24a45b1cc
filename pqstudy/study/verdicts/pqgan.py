"""PQGAN's claims (PQ against VQ with growing D, diminishing returns in K) and ours at equal rate.

Thresholds: ``K_SUFFICIENT_RANGE`` = (128, 512), ``K_SUFFICIENT_MARGIN_DB`` = 0.5 dB: PQGAN's "128–512 entries per
subspace suffice": the reference K (in that range, nearest 256, below the largest K) must be within 0.5 dB of the
largest K.
"""

from __future__ import annotations

import math

from pqstudy.study.methods import method_of
from pqstudy.study.store import numeric
from pqstudy.study.verdicts.compare import (
    FLOORS,
    HIGHER_IS_BETTER,
    Point,
    better,
    combination_margin,
    context,
    fmt,
    fmt_diff,
    fmt_margin,
    fmt_point,
    judged,
    margin,
    pair_lines,
    points,
    present_metrics,
    sign_beyond,
    vote,
)
from pqstudy.study.verdicts.registry import Claim, Verdict, claim

QUALITY_METRICS = ("psnr", "lpips", "rfid", "kid")  # the reconstruction claims: PSNR first, then as the papers report
K_SUFFICIENT_RANGE = (128, 512)
K_SUFFICIENT_TARGET = 256
K_SUFFICIENT_MARGIN_DB = 0.5


def _with_dim(runs):
    return runs.assign(_method=method_of(runs), _dim=numeric(runs, "quantizer.dim"))


def pq_vs_vq(runs, by: str, metrics, label, also: str | None = None) -> tuple[dict, list[Point]]:
    """PQ against VQ at each value of ``by`` where both were measured, per metric present in ``runs``: ``({metric:
    (state, lines, numbers)}, points compared)``; a metric with no such value is left out. ``also`` (a method) is
    reported alongside at the same values."""
    per_metric, pts_all = {}, []
    for metric in present_metrics(runs, metrics):
        pts = points(runs, ["_method", by], metric)
        values = sorted({v for (m, v) in pts if m == "pq"} & {v for (m, v) in pts if m == "vq"})
        if not values:
            continue
        pairs = [(label(v), pts[("pq", v)], pts[("vq", v)], ()) for v in values]
        pts_all += [p for _, a, b, _ in pairs for p in (a, b)]
        lines, states, numbers = pair_lines(metric, pairs)
        lines += [f"{also.upper()} at {label(v)}: {fmt_point(pts[(also, v)], metric)}" for v in values
                  if also and (also, v) in pts]
        per_metric[metric] = (vote(states), lines, numbers)
    return per_metric, pts_all


@claim(
    "pq-beats-vq",
    paper="PQGAN",
    grid="pq-vs-vq-dim",
    text="PQ reconstructs better than VQ at every embedding dim D (PSNR; LPIPS, rFID, KID)",
    scope="Can show the direction of the PQ–VQ gap at small D on a small model; cannot show its size at ImageNet 256 "
          "px (PQGAN: 37.4 vs 27.0 dB at F=8). PQ also spends 4–16× more bits per position here: see "
          "pq-beats-vq-equal-rate for the gap at equal rate.",
)
def pq_beats_vq(runs, c: Claim) -> Verdict:
    """(a) per metric: PQ better than VQ beyond the margin at every D measured → +1; VQ better at some D → −1."""
    runs = _with_dim(runs)
    per_metric, pts_all = pq_vs_vq(runs, "_dim", QUALITY_METRICS, lambda d: f"D={d:g}")
    if "psnr" not in per_metric:
        return c.no_data(f"grid {c.grid} has no D with both a vq and a pq PSNR")
    bits = points(runs, ["_method", "_dim"], "bits_per_position")
    reason = ("bits per position: " + ", ".join(f"{m.upper()} D={d:g}: {p.mean:g}" for (m, d), p in bits.items())
              + "; " + context(runs, ["_method", "_dim"]))
    return judged(c, per_metric, pts_all, reason)


@claim(
    "pq-vq-scale-opposite",
    paper="PQGAN",
    grid="pq-vs-vq-dim",
    text="With growing D, PQ's PSNR rises while VQ's falls",
    scope="Two dims (8 and 32) against the paper's four (32–256): can show opposite trends only where they already "
          "appear at small D; VQ's fall at large D comes from codebook collapse, which needs enough training to "
          "develop.",
)
def pq_vq_scale_opposite(runs, c: Claim) -> Verdict:
    """(b) from the smallest to the largest D: +1 when PQ's PSNR rises and VQ's falls, each beyond the margin; −1
    when PQ falls or VQ rises beyond it (this includes both moving the same way); LPIPS judged the same way."""
    runs = _with_dim(runs)
    per_metric, pts_all = {}, []
    for metric in present_metrics(runs, ("psnr", "lpips")):
        pts = points(runs, ["_method", "_dim"], metric)
        changes, lines, numbers = {}, [], {}
        for method in ("pq", "vq"):
            dims = sorted(d for (m, d) in pts if m == method)
            if len(dims) < 2:
                if metric == "psnr":
                    return c.no_data(f"{method} has PSNR at {len(dims)} D value(s) in {c.grid}; needs 2")
                break
            a, b = pts[(method, dims[0])], pts[(method, dims[-1])]
            pts_all += [a, b]
            m = margin(metric, b, a)
            changes[method] = better(metric, b, a, m)  # +1: improves with D
            word = {1: "improves", -1: "worsens", 0: "flat within the margin"}[changes[method]]
            lines.append(f"{method.upper()} D={dims[0]:g}→{dims[-1]:g}: {fmt_point(a, metric)} → "
                         f"{fmt_point(b, metric)} ({fmt_diff(b.mean - a.mean, metric)}, margin "
                         f"{fmt_margin(m, metric)}: {word})")
            numbers[method] = {"dims": [dims[0], dims[-1]], metric: [a.mean, b.mean], "margin": m}
        if len(changes) < 2:
            continue
        state = 1 if changes["pq"] > 0 and changes["vq"] < 0 else (
            -1 if changes["pq"] < 0 or changes["vq"] > 0 else 0)
        per_metric[metric] = (state, lines, numbers)
    return judged(c, per_metric, pts_all, context(runs, ["_method", "_dim"]))


@claim(
    "pq-k-diminishing",
    paper="PQGAN",
    grid="pq-codebook-size",
    text="Diminishing returns in K per subspace: 128–512 entries suffice",
    scope="Can show where the PSNR gain per doubling of K shrinks on 32×32 images; the paper's 128–512 range is for "
          "256 px ImageNet latents and may shift with data and training length.",
)
def pq_k_diminishing(runs, c: Claim) -> Verdict:
    """(c) over every K of the grid, in order. PSNR: the gain per doubling of K between neighbouring K, and whether
    the reference K (in ``K_SUFFICIENT_RANGE``, nearest 256, below the largest) suffices. +1 when the last step's gain
    per doubling is below the first step's by more than its margin, no step gains more per doubling than the step
    before it beyond the margin, and the reference is within ``K_SUFFICIENT_MARGIN_DB`` of the largest K; −1 when a
    step's gain grows beyond the margin, or the reference trails the largest by more than ``K_SUFFICIENT_MARGIN_DB`` +
    the margin; else 0. LPIPS: +1 when the reference is within the margin of the largest K, −1 when worse beyond
    it."""
    runs = runs.assign(_k=numeric(runs, "quantizer.codebook_size"))
    pts = points(runs, "_k", "psnr")
    ks = sorted(pts)
    lo, hi = K_SUFFICIENT_RANGE
    candidates = [k for k in ks[1:-1] if lo <= k <= hi]
    if len(ks) < 3 or not candidates:
        return c.no_data(f"grid {c.grid} needs a smallest K, a K in {lo}–{hi} and a larger K (has {ks})")
    ref, largest = min(candidates, key=lambda k: abs(math.log2(k / K_SUFFICIENT_TARGET))), ks[-1]
    every = [pts[k] for k in ks]
    steps = list(zip(ks, ks[1:], strict=False))
    gains = [_gain(pts, a, b) for a, b in steps]

    def gain_change(i: int, j: int) -> tuple[float, float | None]:
        """Step i's gain per doubling less step j's, and the margin of that difference of linear combinations."""
        weighted = [(gains[i][1].get(k, 0.0) - gains[j][1].get(k, 0.0), pts[k]) for k in ks]
        doublings = min(math.log2(b / a) for a, b in (steps[i], steps[j]))
        return gains[i][0] - gains[j][0], combination_margin("psnr", weighted, tuple(every),
                                                             floor=FLOORS["psnr"] / doublings)

    shrink, shrink_margin = gain_change(0, len(steps) - 1)
    trend = sign_beyond(shrink, shrink_margin)  # +1: the last step gains less per doubling than the first
    grows = [(steps[i + 1], change) for i in range(len(steps) - 1)
             for change in [gain_change(i + 1, i)] if sign_beyond(*change) > 0]
    if grows:
        trend = -1
    gap, gap_margin = pts[largest].mean - pts[ref].mean, margin("psnr", pts[largest], pts[ref], *every)
    sufficiency = 0 if gap_margin is None else (1 if gap <= K_SUFFICIENT_MARGIN_DB else (
        -1 if gap > K_SUFFICIENT_MARGIN_DB + gap_margin else 0))
    curve = ", ".join(f"K={k:g}: {fmt_point(pts[k], 'psnr')}" for k in ks)
    per_step = ", ".join(f"K={a:g}→{b:g} {g:+.2f} dB" for (a, b), (g, _) in zip(steps, gains, strict=True))
    lines = [curve, f"gain per doubling {per_step}; first step − last step {shrink:+.2f} dB (margin "
             f"{fmt_margin(shrink_margin, 'psnr')}: " + ({1: "returns diminish", -1: "returns grow",
                                                          0: "no clear change"}[trend] if not grows else
                                                         "returns grow at " + ", ".join(
                                                             f"K={a:g}→{b:g}" for (a, b), _ in grows)) + ")",
             f"K={ref:g} trails K={largest:g} by {gap:.2f} dB (allowed {K_SUFFICIENT_MARGIN_DB:.2f} dB, margin "
             f"{fmt_margin(gap_margin, 'psnr')}: K={ref:g} " + {1: "suffices", -1: "does not suffice",
                                                               0: "borderline"}[sufficiency] + ")"]
    state = -1 if (trend < 0 or sufficiency < 0) else (1 if trend > 0 and sufficiency > 0 else 0)
    per_metric = {"psnr": (state, lines, {"K": ks, "psnr": [pts[k].mean for k in ks], "reference_K": ref,
                                          "gains": [g for g, _ in gains], "gain_margin": shrink_margin,
                                          "gap_to_largest": gap})}
    if numeric(runs, "lpips").notna().any():
        lp = points(runs, "_k", "lpips")
        if all(k in lp for k in ks):
            m = margin("lpips", lp[ref], lp[largest], *lp.values())
            gap_lp = lp[ref].mean - lp[largest].mean  # how much worse the reference is
            st = 0 if m is None else (1 if gap_lp <= m else -1)
            curve_lp = ", ".join(f"K={k:g}: {fmt_point(lp[k], 'lpips')}" for k in ks)
            word = {1: "suffices", -1: "does not suffice", 0: "no margin"}[st]
            per_metric["lpips"] = (st, [curve_lp, f"K={ref:g} is {fmt_diff(gap_lp, 'lpips')} worse than K="
                                                  f"{largest:g} (margin {fmt_margin(m, 'lpips')}: K={ref:g} {word})"],
                                   {"lpips": [lp[k].mean for k in ks], "gap_to_largest": gap_lp, "margin": m})
    util = points(runs, "_k", "utilisation")
    reason = "utilisation (train split) " + ", ".join(f"K={k:g}: {fmt(p.mean, 'utilisation')}"
                                                      for k, p in sorted(util.items()))
    return judged(c, per_metric, every, reason)


def _gain(pts: dict, a: float, b: float) -> tuple[float, dict]:
    """The PSNR gain per doubling of K from K=a to K=b, and its coefficients on the points' means."""
    doublings = math.log2(b / a)
    return (pts[b].mean - pts[a].mean) / doublings, {a: -1 / doublings, b: 1 / doublings}


PQ_CLOSES = 0.5  # "closes most of the gap": PQ's gap to the continuous model is under half of VQ's


@claim(
    "pq-approaches-continuous",
    paper="PQGAN",
    grid="continuous",
    text="PQ closes most of VQ's gap to the continuous autoencoder (PSNR; LPIPS)",
    scope="At D=8 and 800 steps on 32×32 images: the continuous AE and KL-VAE have the same backbone and "
          "bottleneck width, so the gap is what quantisation costs here, not at the paper's scale.",
)
def pq_approaches_continuous(runs, c: Claim) -> Verdict:
    """(d) per metric and continuous model (AE, KL-VAE): with gaps measured towards the continuous model, the
    excess ``(cont − PQ) − PQ_CLOSES · (cont − VQ)`` (a linear combination of three means, its margin
    ``max(floor, T_FACTOR · s · √(Σ wᵢ²/nᵢ))``): +1 when it is below −margin for both models (PQ closes more than
    half of VQ's gap beyond noise), −1 when it is above +margin for either, else 0."""
    runs = runs.assign(_method=method_of(runs))
    per_metric, pts_all = {}, []
    for metric in present_metrics(runs, ("psnr", "lpips")):
        pts = points(runs, "_method", metric)
        have = [m for m in ("ae", "kl") if m in pts]
        if not {"pq", "vq"} <= set(pts) or not have:
            if metric == "psnr":
                return c.no_data(f"grid {c.grid} needs PQ, VQ and a continuous model with {metric}")
            continue
        pq, vq = pts["pq"], pts["vq"]
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        compared = (pq, vq, *(pts[m] for m in have))
        lines, states, numbers = [f"PQ {fmt_point(pq, metric)}, VQ {fmt_point(vq, metric)}"], [], {}
        for model in have:
            cont = pts[model]
            gap_pq, gap_vq = sign * (cont.mean - pq.mean), sign * (cont.mean - vq.mean)
            excess = gap_pq - PQ_CLOSES * gap_vq  # (1 − PQ_CLOSES) · cont − PQ + PQ_CLOSES · VQ, times sign
            m = combination_margin(metric, [(1 - PQ_CLOSES, cont), (-1.0, pq), (PQ_CLOSES, vq)], compared)
            st = -sign_beyond(excess, m)
            states.append(st)
            closed = 1 - gap_pq / gap_vq if gap_vq else float("nan")
            lines.append(f"{model.upper()} {fmt_point(cont, metric)}: gap PQ {fmt_diff(gap_pq, metric)}, VQ "
                         f"{fmt_diff(gap_vq, metric)}; PQ closes {closed:.0%} of VQ's gap (excess over "
                         f"{PQ_CLOSES:.0%} {fmt_diff(excess, metric)}, margin {fmt_margin(m, metric)}: "
                         + {1: "closes most", -1: "does not close most", 0: "within the margin"}[st] + ")")
            numbers[model] = {"gap_pq": gap_pq, "gap_vq": gap_vq, "closed": closed, "excess": excess, "margin": m}
        pts_all += [pq, vq, *(pts[m] for m in have)]
        per_metric[metric] = (vote(states), lines, numbers)
    return judged(c, per_metric, pts_all, context(runs, "_method"))


@claim(
    "pq-beats-vq-equal-rate",
    paper="neither (ours)",
    grid="rate-matched",
    text="PQ still beats VQ at equal bits per latent position",
    scope="Our question, in neither paper: separates the method from the rate; at 800 steps on CIFAR-10, large-K VQ "
          "may be limited by how many entries it learns to use.",
)
def pq_beats_vq_equal_rate(runs, c: Claim) -> Verdict:
    """(ours) at each rate of the rate-matched grid, per metric: +1 when PQ beats VQ beyond the margin at every
    rate; −1 when VQ beats PQ beyond it at some rate. LC is reported alongside."""
    runs = runs.assign(_method=method_of(runs), _bits=numeric(runs, "bits_per_position").round(3))
    per_metric, pts_all = pq_vs_vq(runs, "_bits", ("psnr", "lpips"), lambda b: f"{b:g} bits", also="lc")
    if "psnr" not in per_metric:
        return c.no_data(f"grid {c.grid} has no rate with both a vq and a pq PSNR")
    return judged(c, per_metric, pts_all, context(runs, ["_method", "_bits"]))
