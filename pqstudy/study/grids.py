"""Named ablation grids: each a list of configs varying one thing against a fixed base.

``grid_configs(name, profile)`` gives the configs of one grid at one profile's scale; ``GRIDS`` lists them all.
Identical configs in several grids have the same run id and run once. Every run of a grid gets the same training
budget: the PQGAN grids and the continuous baselines train ``quality_steps`` (PSNR trends need the full cosine
schedule), the VQGAN-LC grids ``usage_steps`` (utilisation trends show within a few hundred steps).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace
from pathlib import Path

from pqstudy.config import RunConfig, apply_overrides, get_profile, validate

FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class StudyScale:
    """How big each grid is at one profile."""

    quality_steps: int  # PQGAN grids and continuous baselines
    usage_steps: int  # VQGAN-LC grids
    seeds: tuple[int, ...]  # seeds for the key claim PQ vs VQ across D (and the continuous baselines)
    dims: tuple[int, ...]  # embedding dims D for VQ vs PQ
    vq_size: int  # K of plain VQ in the PQ-vs-VQ comparison
    pq_size: int  # K per subspace of PQ in the PQ-vs-VQ comparison
    pq_sub_dim: int  # channels per PQ subspace in the PQ-vs-VQ comparison (PQGAN: 2)
    pq_grid_dim: int  # D of the K-per-subspace and M grids
    pq_sizes: tuple[int, ...]  # K per subspace, at D = pq_grid_dim
    subspaces: tuple[int, ...]  # M, at D = pq_grid_dim (M = D is scalar quantisation)
    lc_sizes: tuple[int, ...]  # codebook sizes for {vq, vq-fc, vq-ema, lc}
    lc_size: int  # codebook size of the LC init / projector / projected-dim ablations
    lc_dims: tuple[int, ...]  # projected dims D′ of LC
    extra: tuple[tuple[str, str], ...] = ()  # overrides applied to every run (e.g. a small eval for smoke)


SCALES = {
    "smoke": StudyScale(
        quality_steps=8, usage_steps=8, seeds=(0,), dims=(8, 16), vq_size=64, pq_size=16, pq_sub_dim=2,
        pq_grid_dim=8, pq_sizes=(16, 64), subspaces=(1, 8), lc_sizes=(64, 256), lc_size=64, lc_dims=(8, 16),
        extra=(("train.eval_limit", "64"), ("train.eval_metrics", ""), ("train.batch_size", "8"),
               ("quantizer.lc_samples", "512")),
    ),
    "default": StudyScale(
        quality_steps=800, usage_steps=200, seeds=(0, 1), dims=(8, 32), vq_size=1024, pq_size=256,
        pq_sub_dim=2, pq_grid_dim=8, pq_sizes=(16, 64, 256, 1024), subspaces=(1, 2, 4, 8),
        lc_sizes=(1024, 16384, 100_000), lc_size=16384, lc_dims=(8, 16, 32),
    ),
    "paper": StudyScale(
        quality_steps=1_200_000, usage_steps=1_200_000, seeds=(0,), dims=(32, 64, 128, 256), vq_size=16384,
        pq_size=512, pq_sub_dim=2, pq_grid_dim=128, pq_sizes=(64, 128, 256, 512, 1024), subspaces=(1, 4, 16, 64, 128),
        lc_sizes=(1024, 16384, 50_000, 100_000), lc_size=100_000, lc_dims=(8, 16, 32, 64),
    ),
}


def _base(profile: str, steps: int, **overrides) -> RunConfig:
    scale = SCALES[profile]
    # every grid states its quantiser itself: start from plain single-codebook VQ whatever the profile's default
    start = {"train.steps": str(steps), "quantizer.kind": "vq", "quantizer.subspaces": "1", **dict(scale.extra)}
    cfg = apply_overrides(get_profile(profile), start)
    return apply_overrides(cfg, {k: str(v) for k, v in overrides.items()})


def _vq(profile: str, dim: int, k: int, seed: int, steps: int) -> RunConfig:
    return _base(profile, steps, **{"quantizer.kind": "vq", "quantizer.dim": dim, "quantizer.codebook_size": k,
                                    "train.seed": seed})


def _pq(profile: str, dim: int, k: int, m: int, seed: int, steps: int) -> RunConfig:
    if m == 1:
        return _vq(profile, dim, k, seed, steps)  # PQ with one subspace is VQ: run it once
    return _base(profile, steps, **{"quantizer.kind": "pq", "quantizer.dim": dim, "quantizer.codebook_size": k,
                                    "quantizer.subspaces": m, "train.seed": seed})


def _lc(profile: str, k: int, seed: int = 0, **overrides) -> RunConfig:
    s = SCALES[profile]
    model = get_profile(profile).model
    fields = {"quantizer.kind": "lc", "quantizer.codebook_size": k, "quantizer.dim": s.dims[0],
              "quantizer.lc_source": "pixels", "quantizer.lc_patch": model.downsample, "quantizer.lc_init": "kmeans",
              "quantizer.projector": "linear", "train.seed": seed}
    fields.update(overrides)
    return _base(profile, s.usage_steps, **fields)


# ---------------------------------------------------------------------------------------------------------------
# PQGAN


def pq_vs_vq_dim(profile: str) -> list[RunConfig]:
    """PQ vs VQ across the embedding dim D: PQ far above VQ, and the two scale in opposite ways with D."""
    s = SCALES[profile]
    configs = []
    for dim in s.dims:
        for seed in s.seeds:
            configs.append(_vq(profile, dim, s.vq_size, seed, s.quality_steps))
            configs.append(_pq(profile, dim, s.pq_size, dim // s.pq_sub_dim, seed, s.quality_steps))
    return configs


def pq_codebook_size(profile: str) -> list[RunConfig]:
    """K per subspace at fixed D and sub-dim: diminishing returns (PQGAN: 128–512 entries suffice)."""
    s = SCALES[profile]
    dim = s.pq_grid_dim
    return [_pq(profile, dim, k, dim // s.pq_sub_dim, s.seeds[0], s.quality_steps) for k in s.pq_sizes]


def pq_subspaces(profile: str) -> list[RunConfig]:
    """M from 1 (VQ) to D (scalar quantisation) at fixed D and K."""
    s = SCALES[profile]
    dim = s.pq_grid_dim
    return [_pq(profile, dim, s.pq_size, m, s.seeds[0], s.quality_steps) for m in s.subspaces]


# ---------------------------------------------------------------------------------------------------------------
# VQGAN-LC


def lc_method_size(profile: str) -> list[RunConfig]:
    """{vq, vq-fc, vq-ema, lc} × codebook size: LC keeps ≥99% utilisation where the others collapse."""
    s = SCALES[profile]
    configs = []
    for k in s.lc_sizes:
        for seed in s.seeds[:1]:
            common = {"quantizer.codebook_size": k, "quantizer.dim": s.dims[0], "train.seed": seed}
            configs.append(_base(profile, s.usage_steps, **{"quantizer.kind": "vq", **common}))
            configs.append(_base(profile, s.usage_steps, **{"quantizer.kind": "vq-fc", "quantizer.l2_norm": True,
                                                            **common}))
            configs.append(_base(profile, s.usage_steps, **{"quantizer.kind": "vq-ema", **common}))
            configs.append(_lc(profile, k, seed))
    return configs


def lc_init(profile: str) -> list[RunConfig]:
    """LC codebook initialisation: random normal vs random selection of features vs k-means of features."""
    s = SCALES[profile]
    return [_lc(profile, s.lc_size, **{"quantizer.lc_init": init}) for init in ("normal", "select", "kmeans")]


def lc_projected_dim(profile: str) -> list[RunConfig]:
    """LC's projected dim D′ (= the latent dim D here): VQGAN-LC reports little sensitivity to it."""
    s = SCALES[profile]
    return [_lc(profile, s.lc_size, **{"quantizer.dim": d}) for d in s.lc_dims]


def lc_projector(profile: str) -> list[RunConfig]:
    """Static codebook without projector vs static + projector (LC) vs trainable codebook + projector."""
    s = SCALES[profile]
    return [
        _lc(profile, s.lc_size, **{"quantizer.projector": "none", "quantizer.lc_source": "random",
                                   "quantizer.lc_init": "select"}),
        _lc(profile, s.lc_size),
        _lc(profile, s.lc_size, **{"quantizer.lc_trainable": True}),
    ]


# ---------------------------------------------------------------------------------------------------------------
# baselines


def continuous(profile: str) -> list[RunConfig]:
    """Continuous AE and KL-VAE with the same backbone and bottleneck width: the ceiling for the quantisers."""
    s = SCALES[profile]
    return [_base(profile, s.quality_steps, **{"model.kind": kind, "quantizer.dim": s.dims[0], "train.seed": seed})
            for kind in ("ae", "kl") for seed in s.seeds[:1]]


GRIDS: dict[str, Callable[[str], list[RunConfig]]] = {
    "pq-vs-vq-dim": pq_vs_vq_dim,
    "pq-codebook-size": pq_codebook_size,
    "pq-subspaces": pq_subspaces,
    "lc-method-size": lc_method_size,
    "lc-init": lc_init,
    "lc-projected-dim": lc_projected_dim,
    "lc-projector": lc_projector,
    "continuous": continuous,
}


def grid_configs(name: str, profile: str, data: str | None = None) -> list[RunConfig]:
    """The validated configs of grid ``name`` at ``profile``'s scale; ``data`` (a ``data.name``) replaces the
    profile's dataset in every config."""
    if name not in GRIDS:
        raise ValueError(f"grid {name!r}: unknown; choose one of {sorted(GRIDS)}, or a grid file (*.json)")
    if profile not in SCALES:
        raise ValueError(f"profile {profile!r}: unknown; choose one of {sorted(SCALES)}")
    return with_data(GRIDS[name](profile), data)


def with_data(configs: list[RunConfig], data: str | None = None) -> list[RunConfig]:
    """The configs validated, each with ``data.name = data_name(data)`` when given."""
    if data:
        configs = [apply_overrides(cfg, {"data.name": data_name(data)}) for cfg in configs]
    return [validate(cfg) for cfg in configs]


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
        probe = replace(cfg.data, train_limit=1)
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
    ``quality_steps``) with the ``set`` fields applied. ``name`` (default: the file's stem) names the grid's folder
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
    steps = spec.get("steps", SCALES[profile].quality_steps)
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
        configs.append(_base(profile, steps, **fields))
    return name, with_data(configs, data)

