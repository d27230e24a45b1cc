"""The claims about generators on the tokens and latents (grids ``gen-ar`` and ``gen-diffusion``).

Generators run one seed each here (a generator run costs as much as a tokenizer run), so the noise rule of the other
claims (the seed spread) has nothing to work with. The margin is instead the **sampling floor**: the FD (in the
study classifier's feature space) between training images and the test split at the same sample count, i.e. what
two sets of real images already differ by. Two generators differ only when their FDs differ by more than the larger
floor of the two runs. That margin covers sample noise, not training-seed noise; the verdicts say so.

Thresholds: ``CLOSE_FRACTION`` = 0.25: "comes close" means the coarser tokenizer's FD is at most 25% above the finer
one's (or within the margin); ``COST_FRACTION`` = 0.5: "at a fraction of the cost" means at most half the generator's
FLOPs per sample.
"""

from __future__ import annotations

from pqstudy.study.methods import method_of
from pqstudy.study.store import numeric
from pqstudy.study.tables import generation_rows, levels_of, run_value
from pqstudy.study.verdicts.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Claim, Verdict, claim

METRIC = "fd_classifier"
CLOSE_FRACTION = 0.25
COST_FRACTION = 0.5
ONE_SEED = "one generator seed per point; margin: the sampling floor (real vs real FD at the same sample count)"


def _floor(*runs) -> float | None:
    floors = [run_value(r, "real_fd_classifier") for r in runs]
    floors = [f for f in floors if f == f]
    return max(floors) if floors else None


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
    pick = {m: at_k[at_k["_method"] == m].iloc[0] for m in ("lc", "vq-fc", "vq-ema")}
    fd = {m: run_value(r, METRIC) for m, r in pick.items()}
    margin = _floor(*pick.values())
    if margin is None or any(v != v for v in fd.values()):
        return c.no_data(f"{METRIC} or its floor missing at K={int(k)}")
    diffs = {m: fd["lc"] - fd[m] for m in ("vq-fc", "vq-ema")}
    evidence = (f"K={int(k):,}: FD (cls) LC {fd['lc']:.2f}, VQ-FC {fd['vq-fc']:.2f}, VQ-EMA {fd['vq-ema']:.2f}; "
                f"LC − VQ-FC {diffs['vq-fc']:+.2f}, LC − VQ-EMA {diffs['vq-ema']:+.2f}; margin {margin:.2f} "
                "(real vs real FD at the same sample count)")
    numbers = {"k": int(k), **{f"fd_{m}": v for m, v in fd.items()}, "margin": margin}
    if all(d < -margin for d in diffs.values()):
        return c.verdict(REPRODUCED, evidence, numbers, ONE_SEED)
    if any(d > margin for d in diffs.values()):
        worse = ", ".join(m.upper() for m, d in diffs.items() if d > margin)
        return c.verdict(NOT_REPRODUCED, evidence, numbers, ONE_SEED,
                         reason=f"LC's tokens are harder to model than {worse}'s at this scale")
    return c.verdict(INCONCLUSIVE, evidence, numbers, ONE_SEED)


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
    """+1: the coarser PQ's FD ≤ the finer's × (1 + ``CLOSE_FRACTION``) (or within the margin) and its generator
    FLOPs per sample ≤ ``COST_FRACTION`` × the finer's; −1: its FD above both bounds; else inconclusive."""
    gens = generation_rows(runs)
    gens = gens[(gens["gen.kind"] == "diffusion") & (method_of(gens) == "pq")] if len(gens) else gens
    if len(gens) < 2:
        return c.no_data("fewer than two flow-model runs on PQ latents")
    gens = gens.assign(_levels=gens["model.ch_mult"].map(levels_of))
    fine, coarse = gens.sort_values("_levels").iloc[0], gens.sort_values("_levels").iloc[-1]
    if fine["_levels"] == coarse["_levels"]:
        return c.no_data("the PQ flow-model runs all have the same number of latent positions")
    fd_fine, fd_coarse = run_value(fine, METRIC), run_value(coarse, METRIC)
    cost_fine, cost_coarse = (run_value(r, "generate_flops_per_sample") for r in (fine, coarse))
    margin = _floor(fine, coarse)
    if margin is None or fd_fine != fd_fine or fd_coarse != fd_coarse:
        return c.no_data(f"{METRIC} or its floor missing")
    bound = max(fd_fine * (1 + CLOSE_FRACTION), fd_fine + margin)
    ratio = cost_coarse / cost_fine if cost_fine else float("nan")
    evidence = (f"FD (cls) finer PQ {fd_fine:.2f}, coarser PQ (4× fewer positions) {fd_coarse:.2f} (close if ≤ "
                f"{bound:.2f}); generator FLOPs per sample {cost_coarse / 1e9:.3g} vs {cost_fine / 1e9:.3g} G "
                f"({ratio:.2f}×); margin {margin:.2f}")
    numbers = {"fd_fine": fd_fine, "fd_coarse": fd_coarse, "cost_ratio": ratio, "margin": margin}
    if fd_coarse <= bound and ratio <= COST_FRACTION:
        return c.verdict(REPRODUCED, evidence, numbers, ONE_SEED)
    if fd_coarse > bound:
        return c.verdict(NOT_REPRODUCED, evidence, numbers, ONE_SEED,
                         reason="at 4×4 positions the coarser tokenizer's latents lose what the flow model needs")
    return c.verdict(INCONCLUSIVE, evidence, numbers, ONE_SEED)
