"""The claims about generators on the tokens and latents (grids ``gen-ar`` and ``gen-diffusion``).

The noise rule of every claim (:mod:`pqstudy.study.verdicts.compare`) holds here too: a point is the mean over its
generator seeds (``gen.seed``), and two points differ when their FDs (in the study classifier's feature space) differ
by more than the margin ``max(sampling floor, 2 · s · sqrt(1/n₁ + 1/n₂))``, ``s`` the pooled spread over seeds. The
**sampling floor** replaces the metric floor: the FD between training images and the test split at the same sample
count, what two sets of real images already differ by (the larger of the compared runs'). With one seed on a compared
point there is no training-seed spread to judge by, so the verdict is inconclusive; the evidence still gives what the
single seed reads against the sampling floor alone, and what would settle it (``gen.seed`` 1 of those points).

**Recognisable samples.** FD in the study classifier's feature space says something about a generator only where
that classifier can tell its samples apart. A compared point's samples are *recognisable* when the classifier's
accuracy on them (their labels are the classes they were asked for), pooled over the point's seeds, exceeds chance
(1 / classes) by ``CHANCE_SE`` binomial standard errors at chance (0.1 ± 3 · 0.0077 = 12.3% for 3 seeds × 500
samples of CIFAR-10's 10 classes). A claim with a compared point that is not is inconclusive, whatever its FDs read;
the evidence gives the accuracy on samples, on the tokenizers' reconstructions and on real test images.

Thresholds: ``CLOSE_FRACTION`` = 0.1: "comes close" means the coarser tokenizer's FD is at most the finer one's plus the
margin plus 10% of the finer one's distance above the sampling floor (its FD less the floor: how far its samples are
from real images beyond what two real sets differ by); ``COST_FRACTION`` = 0.5: "at a fraction of the cost" means at
most half the generator's FLOPs per sample.
"""

from __future__ import annotations

from pqstudy.data.cifar10 import CIFAR_CLASSES
from pqstudy.study.methods import method_of
from pqstudy.study.store import numeric
from pqstudy.study.tables import generation_rows, levels_of
from pqstudy.study.verdicts.compare import T_FACTOR, Point, fmt_point, points, pooled_sd
from pqstudy.study.verdicts.compare import margin as pair_margin
from pqstudy.study.verdicts.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Claim, Verdict, claim

METRIC = "fd_classifier"
CHANCE_SE = 3.0
CLASSES = {"cifar10": CIFAR_CLASSES}  # classes of the labelled datasets generators are trained on
CLOSE_FRACTION = 0.1
COST_FRACTION = 0.5


def _floor(runs) -> float | None:
    """The sampling floor of ``runs`` (a frame of generator rows): the largest real-vs-real FD among them."""
    floors = numeric(runs, "real_fd_classifier").dropna()
    return float(floors.max()) if len(floors) else None


def _mixed(frame, by: str) -> str:
    """What is wrong when a point of ``frame`` (grouped by ``by``) holds two runs of one generator seed (two
    configurations, not two seeds), else ''."""
    if "gen.seed" not in frame:  # records from before gen.seed was a column: one seed each
        frame = frame.assign(**{"gen.seed": 0})
    dup = frame.duplicated(subset=[by, "gen.seed"], keep=False)
    return f"two runs with one gen.seed at {sorted(set(frame.loc[dup, by]))}" if dup.any() else ""


def _seed_margin(floor: float, pts: list[Point]) -> tuple[float | None, str]:
    """The margin of a comparison of ``pts`` (see the module docstring; with three points, the widest pair's) and the
    seeds note; None when a compared point has one seed."""
    counts = "/".join(str(p.n) for p in pts)
    if min(p.n for p in pts) < 2:
        return None, f"generator seeds per point: {counts}; one seed gives no training-seed spread"
    widest = max(pair_margin(METRIC, a, b, *[p for p in pts if p is not a and p is not b], floor=floor)
                 for a in pts for b in pts if a is not b)
    return widest, f"generator seeds per point: {counts}"


def _margin_note(margin: float | None, floor: float, pts: list[Point]) -> str:
    """How the margin was made: the sampling floor or the pooled seed spread, whichever is larger."""
    if margin is None:
        return f"sampling floor {floor:.2f} (real vs real FD at the same sample count)"
    s = pooled_sd(*pts)
    return (f"margin {margin:.2f} = max(sampling floor {floor:.2f}, {T_FACTOR:g} · s · √(1/n₁ + 1/n₂) with the seed "
            "spread "
            f"s = {s:.2f} pooled over the compared points)")


def recognisable(frame, by: str, names: dict) -> tuple[list[str], str, dict]:
    """Which compared points of ``frame`` (grouped by ``by``; ``names``: key → label) have samples the classifier
    cannot tell from chance (see the module docstring), the evidence line and its numbers. Without class accuracies
    or a known class count, none is judged unrecognisable and the line says so."""
    classes = CLASSES.get(str(frame["data.name"].iloc[0])) if "data.name" in frame and len(frame) else None
    acc = points(frame, by, "class_accuracy")
    if classes is None or not set(names) <= set(acc):
        return [], "class accuracy of the samples not judged (no class accuracy or class count recorded)", {}
    chance = 1 / classes
    recon, real = points(frame, by, "recon_class_accuracy"), points(frame, by, "real_class_accuracy")
    samples = numeric(frame, "samples").groupby(frame[by]).sum()  # samples over a point's seeds
    threshold = {k: chance + CHANCE_SE * (chance * (1 - chance) / samples[k]) ** 0.5 for k in names}
    failing = [k for k in names if acc[k].mean <= threshold[k]]

    def pct(pts, k) -> str:
        return f"{100 * pts[k].mean:.1f}%" if k in pts else "n/a"

    line = ("class accuracy of samples / reconstructions / real test images: "
            + ", ".join(f"{names[k]} {pct(acc, k)} / {pct(recon, k)} / {pct(real, k)}" for k in names)
            + f" (recognisable above {100 * min(threshold.values()):.1f}%: chance {100 * chance:.0f}% + "
              f"{CHANCE_SE:g} standard errors)")
    numbers = {"class_accuracy": {k: acc[k].mean for k in names}, "recognisable_above": threshold}
    return failing, line, numbers


def _settled(c: Claim, reading: str, evidence: str, numbers: dict, seeds: str, margin: float | None,
             reason: str = "", unrecognisable: tuple[str, ...] = ()) -> Verdict:
    """The verdict: ``reading`` when the margin has seeds behind it and every compared point's samples are
    recognisable, else inconclusive with the reading given."""
    what = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not reproduced", INCONCLUSIVE: "inconclusive"}[reading]
    if unrecognisable:
        note = (f"the FDs read {what}, but the classifier cannot tell the samples of {_and(unrecognisable)} from "
                "chance, so its feature space does not show what the FDs compare")
        return c.verdict(INCONCLUSIVE, f"{evidence}; {note}", numbers, seeds)
    if margin is not None:
        return c.verdict(reading, evidence, numbers, seeds, reason=reason if reading == NOT_REPRODUCED else "")
    note = (f"from one generator seed, against the sampling floor alone, this reads {what}"
            + (f" ({reason})" if reading == NOT_REPRODUCED and reason else "")
            + "; a second seed (gen.seed=1) of each compared point would give the training-seed spread")
    return c.verdict(INCONCLUSIVE, f"{evidence}; {note}", numbers, seeds)


@claim(
    "lc-generation",
    paper="VQGAN-LC",
    grid="gen-ar",
    text="An AR prior on LC's tokens gives lower generation FD than on VQ-FC's and VQ-EMA's at a large codebook",
    scope="A class-conditional GPT (0.65M parameters; 3.6M at K = 16,384, where the output head dominates), "
          "1,000 steps, on CIFAR-10 8×8 token grids at K = 16,384 (an AR head over K = 100,000 does not fit the CPU "
          "budget); FD in a small CIFAR classifier's feature space, not Inception FID on ImageNet with "
          "GPT-L/LDM/DiT/SiT as in the paper.",
)
def lc_generation(runs, c: Claim) -> Verdict:
    """+1: LC's FD below both VQ-FC's and VQ-EMA's by more than the margin; −1: above either by more than the
    margin; else inconclusive. Compared at the largest K that all three have."""
    gens = generation_rows(runs)
    if len(gens):
        gens = gens[(gens["gen.kind"] == "ar") & (gens["gen.head"] == "factorised")]
    if len(gens) == 0 or numeric(gens, METRIC).notna().sum() == 0:
        return c.no_data(f"no AR runs with {METRIC}")
    gens = gens.assign(_method=method_of(gens), _k=numeric(gens, "quantizer.codebook_size"))
    sizes = [k for k in sorted(gens["_k"].dropna().unique(), reverse=True)
             if {"lc", "vq-fc", "vq-ema"} <= set(gens[gens["_k"] == k]["_method"])]
    if not sizes:
        return c.no_data("no codebook size with AR runs on LC, VQ-FC and VQ-EMA")
    k = sizes[0]
    at_k = gens[gens["_k"] == k]
    at_k = at_k[at_k["_method"].isin(["lc", "vq-fc", "vq-ema"])]
    if _mixed(at_k, "_method"):
        return c.no_data(_mixed(at_k, "_method"))
    pts = points(at_k, "_method", METRIC)
    floor = _floor(at_k)
    if floor is None or set(pts) != {"lc", "vq-fc", "vq-ema"}:
        return c.no_data(f"{METRIC} or its floor missing at K={int(k)}")
    fd = {m: pts[m].mean for m in ("lc", "vq-fc", "vq-ema")}
    margin, seeds = _seed_margin(floor, [pts[m] for m in ("lc", "vq-fc", "vq-ema")])
    judge_by = floor if margin is None else margin
    diffs = {m: fd["lc"] - fd[m] for m in ("vq-fc", "vq-ema")}
    names = {"lc": "LC", "vq-fc": "VQ-FC", "vq-ema": "VQ-EMA"}
    evidence = (f"K={int(k):,}: FD (cls) " + ", ".join(f"{names[m]} {fmt_point(pts[m], METRIC)}" for m in names)
                + f"; LC − VQ-FC {diffs['vq-fc']:+.2f}, LC − VQ-EMA {diffs['vq-ema']:+.2f}; "
                + _margin_note(margin, floor, [pts[m] for m in names]))
    failing, line, acc = recognisable(at_k, "_method", names)
    evidence += "; " + line
    numbers = {"k": int(k), **{f"fd_{m}": v for m, v in fd.items()}, "margin": margin, "sampling_floor": floor, **acc}
    worse = [m for m, d in diffs.items() if d > judge_by]
    if all(d < -judge_by for d in diffs.values()):
        reading = REPRODUCED
    elif worse:
        reading = NOT_REPRODUCED
    else:
        reading = INCONCLUSIVE
    reason = _lc_reason(at_k, names, worse) if worse else ""
    return _settled(c, reading, evidence, numbers, seeds, margin, reason=reason,
                    unrecognisable=tuple(names[m] for m in failing))


def _lc_reason(at_k, names: dict, worse: list[str]) -> str:
    """Why LC's samples score worse, measured: what the priors' NLL and the tokenizers' reconstructions say."""
    nll, recon = points(at_k, "_method", "nll_bits_per_image"), points(at_k, "_method", "recon_fd_classifier")
    if not set(names) <= set(nll) & set(recon):
        return "LC's samples score worse than " + _and(names[m] + "'s" for m in worse)
    return ("the priors' NLL: " + ", ".join(f"{names[m]} {nll[m].mean:.0f}" for m in names) + " bits per image, and "
            "the tokenizers' reconstructions' FD (cls): "
            + ", ".join(f"{names[m]} {recon[m].mean:.2f}" for m in names)
            + ": LC's tokens carry more information (more bits for the prior to model) and reconstruct better, yet "
            "the 1,000-step prior's samples on them score worse than on " + _and(names[m] + "'s" for m in worse)
            + ": at this scale the prior, not the decoder, limits the samples")


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@claim(
    "pq-diffusion-coarse",
    paper="PQGAN",
    grid="gen-diffusion",
    text="PQ latents serve diffusion: PQ with 4× fewer latent positions comes close to the finer PQ's sample quality "
         "at a fraction of the generator's cost",
    scope="A 1M-parameter flow DiT, 1,000 steps, on CIFAR-10 latents of 8×8 (F=4) vs 4×4 (F=8) positions at equal "
          "bits per image, standing in for Stable Diffusion 2.1 on PQGAN's F=8 vs F=16 at 256–512 px; quality in a "
          "small CIFAR classifier's feature space.",
)
def pq_diffusion_coarse(runs, c: Claim) -> Verdict:
    """+1: the coarser PQ's FD ≤ the finer's + the margin + ``CLOSE_FRACTION`` × (the finer's FD − the sampling floor)
    and its generator FLOPs per sample ≤ ``COST_FRACTION`` × the finer's; −1: its FD above that bound; else
    inconclusive."""
    gens = generation_rows(runs)
    gens = gens[(gens["gen.kind"] == "diffusion") & (method_of(gens) == "pq")] if len(gens) else gens
    if len(gens) < 2:
        return c.no_data("fewer than two flow-model runs on PQ latents")
    gens = gens.assign(_levels=gens["model.ch_mult"].map(levels_of))
    if gens["_levels"].nunique() < 2:
        return c.no_data("the PQ flow-model runs all have the same number of latent positions")
    fine_l, coarse_l = gens["_levels"].min(), gens["_levels"].max()
    pair = gens[gens["_levels"].isin([fine_l, coarse_l])]
    if _mixed(pair, "_levels"):
        return c.no_data(_mixed(pair, "_levels"))
    pts = points(pair, "_levels", METRIC)
    floor = _floor(pair)
    if floor is None or set(pts) != {fine_l, coarse_l}:
        return c.no_data(f"{METRIC} or its floor missing")
    fd_fine, fd_coarse = pts[fine_l].mean, pts[coarse_l].mean
    cost = {lv: numeric(pair[pair["_levels"] == lv], "generate_flops_per_sample").mean() for lv in (fine_l, coarse_l)}
    margin, seeds = _seed_margin(floor, [pts[fine_l], pts[coarse_l]])
    judge_by = floor if margin is None else margin
    tolerance = CLOSE_FRACTION * max(0.0, fd_fine - floor)
    bound = fd_fine + judge_by + tolerance
    ratio = cost[coarse_l] / cost[fine_l] if cost[fine_l] else float("nan")
    evidence = (f"FD (cls) finer PQ {fmt_point(pts[fine_l], METRIC)}, coarser PQ (4× fewer positions) "
                f"{fmt_point(pts[coarse_l], METRIC)} (close if ≤ {bound:.2f}: the finer's FD + margin {judge_by:.2f} + "
                f"{CLOSE_FRACTION:.0%} of its {fd_fine - floor:.2f} above the sampling floor); "
                f"generator FLOPs per sample "
                f"{cost[coarse_l] / 1e9:.3g} vs {cost[fine_l] / 1e9:.3g} G ({ratio:.2f}×); "
                + _margin_note(margin, floor, [pts[fine_l], pts[coarse_l]]))
    names = {fine_l: "the finer PQ", coarse_l: "the coarser PQ"}
    failing, line, acc = recognisable(pair, "_levels", names)
    evidence += "; " + line
    numbers = {"fd_fine": fd_fine, "fd_coarse": fd_coarse, "cost_ratio": ratio, "margin": margin,
               "sampling_floor": floor, "close_bound": bound, **acc}
    if fd_coarse <= bound and ratio <= COST_FRACTION:
        reading = REPRODUCED
    elif fd_coarse > bound:
        reading = NOT_REPRODUCED
    else:
        reading = INCONCLUSIVE
    return _settled(c, reading, evidence, numbers, seeds, margin,
                    reason="at 4×4 positions the coarser tokenizer's latents lose what the flow model needs",
                    unrecognisable=tuple(names[lv] for lv in failing))
