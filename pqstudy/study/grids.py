"""Named ablation grids: each a list of configs varying one thing against a fixed base.

``grid_configs(name, profile)`` gives the configs of one grid at one profile's scale; ``GRIDS`` lists them all.
Identical configs in several grids have the same run id and run once, so the grids share their common points.

- Every run of the study trains the same number of steps (``StudyScale.steps``): the VQGAN-LC grids as long as the
  PQGAN grids, so utilisation is not read off an unconverged model.
- The PQGAN grids and the continuous baselines use PQGAN's quantiser recipe (``pqstudy.recipes.PQGAN``), the VQGAN-LC
  grids VQGAN-LC's (``pqstudy.recipes.VQGAN_LC``): each paper's arms as its code has them.
- Every point a verdict turns on (``pqstudy.study.verdicts``) runs ``StudyScale.seeds``; points in between run the
  first seed only. The seed spreads of the compared points give the noise margins.
- The comparison-table runs (each method at its paper setting, every seed) also get rFID and KID on
  ``StudyScale.table_fid_samples`` images; LPIPS is computed for every run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace
from pathlib import Path

from pqstudy.config import RunConfig, apply_overrides, get_profile, validate
from pqstudy.generation.config import GenConfig, GenRunConfig, validate_gen
from pqstudy.recipes import PQGAN, VQGAN_LC, static_arm

FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class StudyScale:
    """How big each grid is at one profile."""

    steps: int  # training steps of every run (PQGAN and VQGAN-LC grids alike)
    seeds: tuple[int, ...]  # seeds of every point a verdict turns on; other points run seeds[0]
    dims: tuple[int, ...]  # embedding dims D for VQ vs PQ (smallest and largest are compared)
    vq_size: int  # K of plain VQ in the PQ-vs-VQ comparison
    pq_size: int  # K per subspace of PQ in the PQ-vs-VQ comparison
    pq_sub_dim: int  # channels per PQ subspace in the PQ-vs-VQ comparison (PQGAN: 2)
    pq_grid_dim: int  # D of the K-per-subspace, M and rate-matched grids
    pq_sizes: tuple[int, ...]  # K per subspace, at D = pq_grid_dim (M = D / pq_sub_dim)
    subspaces: tuple[int, ...]  # M, at D = pq_grid_dim and K = pq_size (M = D is scalar quantisation)
    lc_sizes: tuple[int, ...]  # codebook sizes for {vq, vq-fc, vq-ema, lc}
    lc_size: int  # codebook size of the LC init / projector / projected-dim ablations
    lc_dims: tuple[int, ...]  # projected dims D′ of LC
    rates: tuple[int, ...]  # bits per latent position of the rate-matched grid
    table_fid_samples: int  # rFID/KID sample count of the comparison-table runs (0: no rFID/KID)
    extra: tuple[tuple[str, str], ...] = ()  # overrides applied to every run (e.g. a small eval for smoke)


SCALES = {
    "smoke": StudyScale(
        # VQ at K = pq_size and M = (1, D / pq_sub_dim): the PQ-vs-VQ runs are also the subspace grid's points
        steps=8, seeds=(0,), dims=(8, 16), vq_size=16, pq_size=16, pq_sub_dim=2, pq_grid_dim=8, pq_sizes=(16, 64),
        subspaces=(1, 4), lc_sizes=(64, 256), lc_size=256, lc_dims=(8, 16), rates=(8,), table_fid_samples=0,
        extra=(("train.eval_limit", "64"), ("train.eval_metrics", ""), ("train.batch_size", "8"),
               ("quantizer.lc_samples", "512")),
    ),
    "default": StudyScale(
        steps=800, seeds=(0, 1, 2), dims=(8, 32), vq_size=1024, pq_size=256, pq_sub_dim=2, pq_grid_dim=8,
        pq_sizes=(16, 64, 256, 1024), subspaces=(1, 2, 4, 8), lc_sizes=(1024, 16384, 100_000), lc_size=100_000,
        lc_dims=(8, 16, 32), rates=(10, 16), table_fid_samples=500,
    ),
    "paper": StudyScale(
        steps=1_200_000, seeds=(0,), dims=(32, 64, 128, 256), vq_size=16384, pq_size=512, pq_sub_dim=2,
        pq_grid_dim=128, pq_sizes=(64, 128, 256, 512, 1024), subspaces=(1, 4, 16, 64, 128),
        lc_sizes=(1024, 16384, 50_000, 100_000), lc_size=100_000, lc_dims=(8, 16, 32, 64), rates=(16, 32),
        table_fid_samples=50_000,
    ),
}


def _seeds(profile: str, verdict: bool) -> tuple[int, ...]:
    """Every seed for a point a verdict turns on, else the first."""
    seeds = SCALES[profile].seeds
    return seeds if verdict else seeds[:1]


def _base(profile: str, recipe: dict, table: bool = False, **overrides) -> RunConfig:
    """The profile's config with the study scale's extras, a paper's ``recipe`` and ``overrides``; ``table`` adds
    rFID/KID on ``table_fid_samples`` images (the comparison-table runs)."""
    scale = SCALES[profile]
    # every grid states its quantiser itself: start from plain single-codebook VQ whatever the profile's default
    start = {"train.steps": str(scale.steps), "quantizer.kind": "vq", "quantizer.subspaces": "1",
             **dict(scale.extra), **recipe}
    if table and scale.table_fid_samples:
        start.update({"train.eval_metrics": "lpips,rfid,kid", "train.fid_samples": str(scale.table_fid_samples)})
    cfg = apply_overrides(get_profile(profile), start)
    return apply_overrides(cfg, {k: str(v) for k, v in overrides.items()})


# ---------------------------------------------------------------------------------------------------------------
# points: one function per kind of point, so that a point is the same config (the same run) in every grid


def _vq(profile: str, dim: int, k: int, seed: int) -> RunConfig:
    """Plain VQ, PQGAN's recipe; the table run is the PQ-vs-VQ comparison's VQ at the smallest D."""
    s = SCALES[profile]
    table = dim == s.dims[0] and k == s.vq_size
    return _base(profile, PQGAN, table, **{"quantizer.kind": "vq", "quantizer.dim": dim, "quantizer.codebook_size": k,
                                           "train.seed": seed})


def _pq(profile: str, dim: int, k: int, m: int, seed: int) -> RunConfig:
    """PQ with M subspaces, PQGAN's recipe (M = 1 is VQ: run it once)."""
    if m == 1:
        return _vq(profile, dim, k, seed)
    s = SCALES[profile]
    table = dim == s.dims[0] and k == s.pq_size and m == dim // s.pq_sub_dim
    return _base(profile, PQGAN, table, **{"quantizer.kind": "pq", "quantizer.dim": dim, "quantizer.codebook_size": k,
                                           "quantizer.subspaces": m, "train.seed": seed})


def _lc_family(profile: str, kind: str, k: int, seed: int) -> RunConfig:
    """One of VQGAN-LC's compared methods (vq, vq-fc, vq-ema, lc) at codebook size K, VQGAN-LC's recipe; the table
    runs are the largest K."""
    if kind == "lc":
        return _lc(profile, k, seed)
    s = SCALES[profile]
    return _base(profile, VQGAN_LC, k == max(s.lc_sizes), **{"quantizer.kind": kind, "quantizer.codebook_size": k,
                                                               "quantizer.dim": s.dims[0], "train.seed": seed})


def _lc(profile: str, k: int, seed: int = 0, **overrides) -> RunConfig:
    """LC: frozen k-means codebook of pixel patches + linear projector, VQGAN-LC's recipe; ``overrides`` make the
    ablation arms. The table run is the plain arm at the largest K."""
    s = SCALES[profile]
    model = get_profile(profile).model
    fields = {"quantizer.kind": "lc", "quantizer.codebook_size": k, "quantizer.dim": s.dims[0],
              "quantizer.lc_source": "pixels", "quantizer.lc_patch": model.downsample, "quantizer.lc_init": "kmeans",
              "quantizer.projector": "linear", "train.seed": seed}
    table = k == max(s.lc_sizes) and not overrides
    fields.update(overrides)
    return _base(profile, VQGAN_LC, table, **fields)


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def pq_vs_vq_dim(profile: str) -> list[RunConfig]:
    """PQ vs VQ across the embedding dim D: PQ far above VQ, and the two scale in opposite ways with D."""
    s = SCALES[profile]
    return [cfg for dim in s.dims for seed in _seeds(profile, dim in (min(s.dims), max(s.dims)))
            for cfg in (_vq(profile, dim, s.vq_size, seed), _pq(profile, dim, s.pq_size, dim // s.pq_sub_dim, seed))]


def pq_codebook_size(profile: str) -> list[RunConfig]:
    """K per subspace at fixed D and sub-dim: diminishing returns (PQGAN: 128–512 entries suffice). Its verdict
    reads every K, so every K runs every seed."""
    s = SCALES[profile]
    dim = s.pq_grid_dim
    return [_pq(profile, dim, k, dim // s.pq_sub_dim, seed) for k in s.pq_sizes for seed in _seeds(profile, True)]


def pq_subspaces(profile: str) -> list[RunConfig]:
    """M from 1 (VQ) to D (scalar quantisation) at fixed D and K (no verdict: one seed, except shared points)."""
    s = SCALES[profile]
    dim = s.pq_grid_dim
    return [_pq(profile, dim, s.pq_size, m, s.seeds[0]) for m in s.subspaces]


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC


LC_METHODS = ("vq", "vq-fc", "vq-ema", "lc")


def lc_method_size(profile: str) -> list[RunConfig]:
    """{vq, vq-fc, vq-ema, lc} × codebook size: LC keeps ≥99% utilisation where the others collapse. The smallest
    and largest K are compared (every seed)."""
    s = SCALES[profile]
    return [_lc_family(profile, kind, k, seed) for k in s.lc_sizes
            for seed in _seeds(profile, k in (min(s.lc_sizes), max(s.lc_sizes))) for kind in LC_METHODS]


LC_INIT_ARMS = ("uniform", "select", "kmeans")  # VQGAN-LC's random / random selection / k-means
LC_INIT_EXTRA = ("feature-normal",)  # ours: drawn from the feature statistics (one seed)


def lc_init(profile: str) -> list[RunConfig]:
    """LC codebook initialisation: the paper's random (uniform ±1/K), random selection of features, k-means of
    features; plus an extra arm drawn from the feature statistics."""
    s = SCALES[profile]
    return [_lc(profile, s.lc_size, seed, **({} if init == "kmeans" else {"quantizer.lc_init": init}))
            for init in (*LC_INIT_ARMS, *LC_INIT_EXTRA) for seed in _seeds(profile, init in LC_INIT_ARMS)]


def lc_projected_dim(profile: str) -> list[RunConfig]:
    """LC's projected dim D′ (= the latent dim D here): VQGAN-LC reports little sensitivity to it. Its verdict reads
    the range over every D′, so every D′ runs every seed."""
    s = SCALES[profile]
    return [_lc(profile, s.lc_size, seed, **_dprime(profile, d)) for d in s.lc_dims for seed in _seeds(profile, True)]


def _dprime(profile: str, d: int) -> dict:
    """Overrides for LC's projected (lookup) dim D′ = d: the latent dim and the lookup dim both d (no latent
    projection); none at the recipe's own D′, so that point is the plain LC run."""
    return {} if d == SCALES[profile].dims[0] else {"quantizer.dim": d, "quantizer.low_dim": d}


def lc_projector(profile: str) -> list[RunConfig]:
    """The same frozen codebook without a projector vs with a learned projector (LC) vs trainable codebook +
    projector."""
    s = SCALES[profile]
    plain = {"quantizer.kind": "lc", "quantizer.codebook_size": s.lc_size, "quantizer.lc_source": "pixels",
             "quantizer.lc_patch": get_profile(profile).model.downsample, **VQGAN_LC}
    static = {k: v for k, v in static_arm(plain, profile).items() if k not in plain or plain[k] != v}
    arms = (static, {}, {"quantizer.lc_trainable": True})
    return [_lc(profile, s.lc_size, seed, **arm) for arm in arms for seed in _seeds(profile, True)]


# ---------------------------------------------------------------------------------------------------------------
# in neither paper


def rate_matched(profile: str) -> list[RunConfig]:
    """VQ, PQ and LC at equal bits per latent position (D = pq_grid_dim): does PQ still win at equal rate? At b bits,
    VQ and LC have K = 2^b entries, PQ the largest M dividing D with an integer log2 K = b / M ≥ 4 (e.g. 10 bits: VQ
    K=1024, PQ M=2 K=32, LC K=1024). Each method keeps its paper's recipe."""
    s = SCALES[profile]
    dim, configs = s.pq_grid_dim, []
    for bits in s.rates:
        m = rate_subspaces(bits, dim)
        for seed in _seeds(profile, True):
            configs.append(_vq(profile, dim, 2**bits, seed))
            configs.append(_pq(profile, dim, 2 ** (bits // m), m, seed))
            configs.append(_lc(profile, 2**bits, seed, **_dprime(profile, dim)))
    return configs


def rate_subspaces(bits: int, dim: int) -> int:
    """The PQ subspace count M of the rate-matched grid: the largest M > 1 dividing ``dim`` and ``bits`` with
    ``bits / M ≥ 4``."""
    options = [m for m in range(2, dim + 1) if dim % m == 0 and bits % m == 0 and bits // m >= 4]
    if not options:
        raise ValueError(f"rate-matched grid: no PQ with M > 1 subspaces of D={dim} spends {bits} bits per position "
                         "with ≥16 entries per subspace")
    return max(options)


# ---------------------------------------------------------------------------------------------------------------
# baselines


def continuous(profile: str) -> list[RunConfig]:
    """Continuous AE and KL-VAE with the same backbone and bottleneck width, the ceiling for the quantisers, beside
    VQ and PQ at that width (the pq-vs-vq-dim grid's runs): how much of VQ's gap to them PQ closes. Every seed."""
    s = SCALES[profile]
    dim = s.dims[0]
    return [cfg for seed in _seeds(profile, True)
            for cfg in (*_continuous(profile, seed), _vq(profile, dim, s.vq_size, seed),
                        _pq(profile, dim, s.pq_size, dim // s.pq_sub_dim, seed))]


def _continuous(profile: str, seed: int) -> list[RunConfig]:
    """The continuous AE and KL-VAE at the profile's first D."""
    return [_base(profile, PQGAN, **{"model.kind": kind, "quantizer.dim": SCALES[profile].dims[0], "train.seed": seed})
            for kind in ("ae", "kl")]


# ---------------------------------------------------------------------------------------------------------------
# generation: generators on the tokens and latents of tokenizers above (each grid also lists its tokenizers, so
# ``--grids gen-ar`` alone trains what it needs; the runner trains tokenizers before generators)


@dataclass(frozen=True)
class GenScale:
    """How big the generation grids are at one profile."""

    steps: int  # generator training steps
    batch_size: int
    samples: int  # samples scored in the study classifier's feature space
    fid_samples: int  # Inception FID/KID samples of the headline runs (0: none)
    ar_size: str  # pqstudy.generation.ar.GPT_SIZES
    dit_size: str  # pqstudy.generation.diffusion.DIT_SIZES
    sample_steps: int  # ODE steps of the flow model
    lc_large: int  # the large K of the AR grid's LC vs VQ-FC vs VQ-EMA comparison (an AR head over K = 100,000
    #                entries costs 13 GFLOP per step here; the study's middle K stands in for it on CPU)
    coarse_ch_mult: tuple[int, ...]  # the PQ tokenizer with 4× fewer positions (one more downsampling)
    coarse_dim: int  # its D (sub-dim kept: M = D / pq_sub_dim), so bits per image match the finer PQ's
    nll_images: int = 0  # test images of the AR prior's NLL (0: the whole test split)


# the wall-clock limits of a profile's study on this 2-core machine: the whole study (each `pqstudy study` call's
# default hard limit, `--budget-minutes`), and what the generation grids may add to it (a target the report shows)
BUDGET_MINUTES = {"smoke": None, "default": 120, "paper": None}
GEN_BUDGET_MINUTES = {"default": 30}

GEN_SCALES = {
    "smoke": GenScale(steps=4, batch_size=8, samples=12, fid_samples=0, ar_size="tiny", dit_size="small",
                      sample_steps=2, lc_large=256, coarse_ch_mult=(1, 2, 2, 2), coarse_dim=32, nll_images=16),
    # 1,000 steps of 32 latents: ~0.15 s (AR) to ~0.5 s (DiT, 64 tokens) per step on one quiet core; Heun with 25
    # steps is 49 model evaluations per sample
    "default": GenScale(steps=1000, batch_size=32, samples=500, fid_samples=500, ar_size="small", dit_size="small",
                        sample_steps=25, lc_large=16384, coarse_ch_mult=(1, 2, 4, 4), coarse_dim=32),
    "paper": GenScale(steps=400_000, batch_size=256, samples=50_000, fid_samples=50_000, ar_size="gpt-l",
                      dit_size="dit-xl", sample_steps=250, lc_large=100_000, coarse_ch_mult=(1, 1, 2, 2, 4),
                      coarse_dim=128),
}


def _gen(profile: str, tokenizer: RunConfig, kind: str, headline: bool = False, **fields) -> GenRunConfig:
    """A generator of ``kind`` on ``tokenizer`` at the profile's generation scale; ``headline`` adds Inception
    FID/KID on ``fid_samples`` samples."""
    gs = GEN_SCALES[profile]
    gen = GenConfig(kind=kind, size=gs.ar_size if kind == "ar" else gs.dit_size, steps=gs.steps,
                    batch_size=gs.batch_size, samples=gs.samples, sample_steps=gs.sample_steps,
                    fid_samples=gs.fid_samples if headline else 0, nll_images=gs.nll_images,
                    seed=SCALES[profile].seeds[0])
    return GenRunConfig(tokenizer, dataclasses.replace(gen, **fields))


def gen_ar(profile: str) -> list[RunConfig | GenRunConfig]:
    """A class-conditional AR prior on the tokens of VQ, PQ and LC at equal bits per position (the rate-matched
    grid's first rate), of LC, VQ-FC and VQ-EMA at a large K, and PQ's factorised heads against the exact flattened
    sequence."""
    s, gs = SCALES[profile], GEN_SCALES[profile]
    seed, dim, bits = s.seeds[0], s.pq_grid_dim, s.rates[0]
    m = rate_subspaces(bits, dim)
    vq, pq, lc = (_vq(profile, dim, 2**bits, seed), _pq(profile, dim, 2 ** (bits // m), m, seed),
                  _lc(profile, 2**bits, seed, **_dprime(profile, dim)))
    large = [_lc_family(profile, kind, gs.lc_large, seed) for kind in ("vq-fc", "vq-ema", "lc")]
    tokenizers = list({tok.run_id: tok for tok in (vq, pq, lc, *large)}.values())  # smoke: LC's K may repeat
    gens = [_gen(profile, tok, "ar", headline=tok in (vq, pq, lc)) for tok in tokenizers]
    # the lc-generation verdict compares the large-K priors: each gets the profile's verdict seeds (gen.seed)
    extra = [_gen(profile, tok, "ar", seed=g) for tok in large for g in _seeds(profile, True)[1:]]
    return [*tokenizers, *gens, *extra, _gen(profile, pq, "ar", head="flat")]


def gen_diffusion(profile: str) -> list[RunConfig | GenRunConfig]:
    """A flow-matching DiT on the latents of the continuous AE and KL-VAE, VQ, and PQ, and PQGAN's trade: PQ with 4×
    fewer latent positions (one more downsampling, 4× the channels, the same bits per image)."""
    s, gs = SCALES[profile], GEN_SCALES[profile]
    seed, dim = s.seeds[0], s.dims[0]
    pq = _pq(profile, dim, s.pq_size, dim // s.pq_sub_dim, seed)
    coarse = _base(profile, PQGAN, **{"quantizer.kind": "pq", "quantizer.dim": gs.coarse_dim,
                                      "quantizer.codebook_size": s.pq_size,
                                      "quantizer.subspaces": gs.coarse_dim // s.pq_sub_dim,
                                      "model.ch_mult": ",".join(map(str, gs.coarse_ch_mult)), "train.seed": seed})
    vq = _vq(profile, s.pq_grid_dim, 2 ** s.rates[0], seed)
    tokenizers = [*_continuous(profile, seed), vq, pq, coarse]
    gens = [_gen(profile, tok, "diffusion", headline=tok is pq) for tok in tokenizers]
    # the pq-diffusion-coarse verdict compares the two PQ generators: each gets the profile's verdict seeds
    extra = [_gen(profile, tok, "diffusion", seed=g) for tok in (pq, coarse) for g in _seeds(profile, True)[1:]]
    return [*tokenizers, *gens, *extra]


GRIDS: dict[str, Callable[[str], list[RunConfig]]] = {
    "pq-vs-vq-dim": pq_vs_vq_dim,
    "pq-codebook-size": pq_codebook_size,
    "pq-subspaces": pq_subspaces,
    "lc-method-size": lc_method_size,
    "lc-init": lc_init,
    "lc-projected-dim": lc_projected_dim,
    "lc-projector": lc_projector,
    "rate-matched": rate_matched,
    "continuous": continuous,
    "gen-ar": gen_ar,
    "gen-diffusion": gen_diffusion,
}


def grid_configs(name: str, profile: str, data: str | None = None) -> list[RunConfig]:
    """The validated configs of grid ``name`` at ``profile``'s scale; ``data`` (a ``data.name``) replaces the
    profile's dataset in every config."""
    if name not in GRIDS:
        raise ValueError(f"grid {name!r}: unknown; choose one of {sorted(GRIDS)}, or a grid file (*.json)")
    if profile not in SCALES:
        raise ValueError(f"profile {profile!r}: unknown; choose one of {sorted(SCALES)}")
    return with_data(GRIDS[name](profile), data)


def with_data(configs: list, data: str | None = None) -> list:
    """The configs validated, each with ``data.name = data_name(data)`` when given (a generation run's tokenizer
    gets it, and so a new run id)."""
    out = []
    for cfg in configs:
        if isinstance(cfg, GenRunConfig):
            tok = apply_overrides(cfg.tokenizer, {"data.name": data_name(data)}) if data else cfg.tokenizer
            out.append(validate_gen(GenRunConfig(validate(tok), cfg.gen)))
        else:
            out.append(validate(apply_overrides(cfg, {"data.name": data_name(data)}) if data else cfg))
    return out


def data_name(data: str) -> str:
    """``data`` as a ``data.name`` that means the same from any working directory: ``folder:<path>`` gets an
    absolute path (relative paths are taken from the working directory; notebooks run from the repository root)."""
    if data.startswith(FOLDER_PREFIX) and len(data) > len(FOLDER_PREFIX):
        return FOLDER_PREFIX + str(Path(data[len(FOLDER_PREFIX) :]).expanduser().resolve())
    return data


def check_data(configs: list[RunConfig]) -> None:
    """Fail early, with the dataset's own message, when a dataset of ``configs`` cannot be read: one training image
    of each distinct dataset is loaded (a folder is scanned, CIFAR-10 downloaded where allowed)."""
    from pqstudy.data import load_dataset

    seen = set()
    for cfg in configs:
        data = cfg.tokenizer.data if isinstance(cfg, GenRunConfig) else cfg.data
        probe = replace(data, train_limit=1)
        if astuple(probe) in seen:
            continue
        seen.add(astuple(probe))
        load_dataset(probe, "train")


# ---------------------------------------------------------------------------------------------------------------
# custom grids: a JSON file


GRID_FILE_KEYS = ("name", "steps", "set", "vary")


def _grid_file_error(path: Path, why: str) -> ValueError:
    return ValueError(f"grid file {path}: {why}. Expected a JSON object like "
                      '{"name": "my-grid", "set": {"quantizer.kind": "pq"}, "vary": {"quantizer.codebook_size": '
                      "[16, 64]}} (see README, \"A custom grid\")")


def read_grid_file(path: str | os.PathLike, profile: str, data: str | None = None) -> tuple[str, list[RunConfig]]:
    """A custom grid from a JSON file: ``(name, configs)``.

    The file holds ``{"name": ..., "steps": ..., "set": {field: value}, "vary": {field: [values]}}``: every
    combination of the ``vary`` values (the first field varies slowest), each on a base that starts like the
    built-in grids' (plain VQ, the profile's study-scale extras, ``steps`` training steps, default the profile's
    ``steps``) with the ``set`` fields applied. ``name`` (default: the file's stem) names the grid's folder
    of executed notebooks. Only ``vary`` is required.
    """
    path = Path(path)
    if profile not in SCALES:
        raise ValueError(f"profile {profile!r}: unknown; choose one of {sorted(SCALES)}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise FileNotFoundError(f"grid file {path}: cannot be read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _grid_file_error(path, f"not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise _grid_file_error(path, f"holds a {type(spec).__name__}, not an object")
    unknown = sorted(set(spec) - set(GRID_FILE_KEYS))
    if unknown:
        raise _grid_file_error(path, f"unknown key(s) {unknown}; allowed: {list(GRID_FILE_KEYS)}")
    name = spec.get("name", path.stem)
    steps = spec.get("steps", SCALES[profile].steps)
    fixed, vary = spec.get("set", {}), spec.get("vary")
    if not isinstance(name, str) or not name:
        raise _grid_file_error(path, f'"name" must be a non-empty string, got {name!r}')
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise _grid_file_error(path, f'"steps" must be a positive integer, got {steps!r}')
    if not isinstance(fixed, dict):
        raise _grid_file_error(path, f'"set" must be an object of field: value, got {fixed!r}')
    if not isinstance(vary, dict) or not vary:
        raise _grid_file_error(path, '"vary" must be a non-empty object of field: [values]')
    for field, values in vary.items():
        if not isinstance(values, list) or not values:
            raise _grid_file_error(path, f'"vary" {field!r} must be a non-empty list of values, got {values!r}')
    configs = []
    for combination in itertools.product(*vary.values()):
        fields = {**fixed, **dict(zip(vary, combination, strict=True))}
        configs.append(_base(profile, {}, **{"train.steps": steps, **fields}))
    return name, with_data(configs, data)

