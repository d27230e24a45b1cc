"""A generation run: a generator (``GenConfig``, section ``gen``) trained on the codes of one tokenizer run.

``GenRunConfig`` pairs the generator with the tokenizer's own ``RunConfig``: the tokenizer is named by its run id
(its run directory ``<runs_root>/<run id>`` holds the checkpoint the codes come from), and a generation run's id is a
hash of that run id and every ``gen`` field that changes results. Fields are addressed as ``gen.field`` (``--set``)
and ``gen_field`` (notebook parameters), like the tokenizer's ``section.field``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from pqstudy.config import (
    ID_DEFAULTS,
    LR_SCHEDULES,
    PRECISIONS,
    ConfigError,
    RunConfig,
    _parse_value,
    check_device,
    from_dict,
    require,
    run_id,
)

GEN_SECTION = "gen"
GEN_KINDS = ("ar", "diffusion")  # an autoregressive prior on token indices | a flow model on latents
AR_HEADS = ("factorised", "flat")  # PQ: M softmax heads per position | the exact T·M sub-token sequence
# diffusion input: the quantised latent z_q (for a continuous or KL model: its latent, the KL mean) | the encoder's
# output before quantisation (a quantised tokenizer's continuous latent)
LATENTS = ("quantized", "pre")
SOLVERS = ("euler", "heun")


@dataclass
class GenConfig:
    kind: str = "ar"  # ar | diffusion
    size: str = "small"  # a preset of pqstudy.generation.ar.GPT_SIZES / diffusion.DIT_SIZES
    head: str = "factorised"  # ar: factorised | flat
    latent: str = "quantized"  # diffusion: quantized | pre
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # constant | cosine: linear warm-up, then constant or cosine to 0 (train.lr_factor)
    warmup_steps: int = 100
    weight_decay: float = 0.0
    class_dropout: float = 0.1  # labels replaced by the null class in training: what classifier-free guidance needs
    seed: int = 0
    threads: int = 1  # torch threads (part of the id: the count changes the numbers; see TrainConfig.threads)
    ckpt_every: int = 0  # steps between checkpoints (0: only at the end)
    device: str = "auto"
    # fp32 | bf16: the generator's forward under bf16 autocast in training (weights, gradients and AdamW in fp32;
    # the loss, cross-entropy or MSE, on fp32 outputs); sampling and evaluation stay fp32. Never chosen
    # automatically (emulated, and slow, on a CPU without native bf16). Part of the run id when not fp32.
    precision: str = "fp32"
    # sampling: recorded with every result (top-k alone moved VQGAN-LC's GPT FID from 24.6 to 15.4 in a user report)
    samples: int = 1000  # generated images scored in the study classifier's feature space
    temperature: float = 1.0  # ar
    top_k: int = 0  # ar: 0 = off
    top_p: float = 1.0  # ar: 1 = off
    cfg_scale: float = 1.0  # classifier-free guidance (1 = the conditional model)
    sample_steps: int = 50  # diffusion: ODE steps
    solver: str = "heun"  # diffusion: euler | heun
    fid_samples: int = 0  # real Inception FID/KID on this many samples (the headline runs; 0 = not computed)
    nll_images: int = 0  # ar: test images the prior's NLL is measured on (0 = the whole test split)


# Fields that do not change what a run computes: excluded from the run id.
GEN_NON_RESULT_FIELDS = {"ckpt_every", "device"}


@dataclass
class GenRunConfig:
    tokenizer: RunConfig
    gen: GenConfig = field(default_factory=GenConfig)

    @property
    def profile(self) -> str:
        return self.tokenizer.profile

    @property
    def tokenizer_run_id(self) -> str:
        return run_id(self.tokenizer)

    @property
    def run_id(self) -> str:
        return gen_run_id(self)

    def to_dict(self) -> dict:
        """The tokenizer's config (its sections at the top, so a table shows method, K and D beside the generator's
        fields), ``gen``, and ``tokenizer_run_id``."""
        return {**self.tokenizer.to_dict(), GEN_SECTION: dataclasses.asdict(self.gen),
                "tokenizer_run_id": self.tokenizer_run_id}


def gen_run_id(cfg: GenRunConfig) -> str:
    """``gen-<kind>-<hash>``: stable, from the tokenizer's run id and every ``gen`` field that changes results
    (a field added after runs were recorded is left out while at its old value, ``config.ID_DEFAULTS``)."""
    payload = {k: v for k, v in dataclasses.asdict(cfg.gen).items() if k not in GEN_NON_RESULT_FIELDS
               and not (f"{GEN_SECTION}.{k}" in ID_DEFAULTS and v == ID_DEFAULTS[f"{GEN_SECTION}.{k}"])}
    payload["tokenizer"] = cfg.tokenizer_run_id
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    tag = "ar" if cfg.gen.kind == "ar" else "dit"
    return f"gen-{tag}-{digest}"


def is_generation(config: dict) -> bool:
    """Whether a stored config dict (a run record's ``config``) is a generation run's."""
    return GEN_SECTION in (config or {})


def gen_from_dict(d: dict) -> GenRunConfig:
    """Rebuild from ``GenRunConfig.to_dict()`` output."""
    tokenizer = from_dict({k: v for k, v in d.items() if k not in (GEN_SECTION, "tokenizer_run_id")})
    cfg = GenRunConfig(tokenizer, apply_gen_overrides(GenConfig(), d.get(GEN_SECTION) or {}))
    stored = d.get("tokenizer_run_id")
    if stored is not None and stored != cfg.tokenizer_run_id:
        raise ConfigError(f"tokenizer_run_id={stored!r}: the stored tokenizer config has run id "
                          f"{cfg.tokenizer_run_id} (a config from another version of pqstudy?)")
    return cfg


def apply_gen_overrides(gen: GenConfig, overrides: dict) -> GenConfig:
    """A copy of ``gen`` with ``{"field": value}`` (or ``"gen.field"``) applied; unknown fields are an error."""
    gen = copy.deepcopy(gen)
    names = {f.name for f in dataclasses.fields(gen)}
    for key, raw in overrides.items():
        name = key[len(GEN_SECTION) + 1 :] if key.startswith(GEN_SECTION + ".") else key
        if name not in names:
            raise ConfigError(f"gen.{name}: unknown field; gen has {sorted(names)}")
        hint = {f.name: f.type for f in dataclasses.fields(GenConfig)}[name]
        tp = {"int": int, "float": float, "str": str, "bool": bool}[hint]
        setattr(gen, name, _parse_value(f"gen.{name}", tp, raw))
    return gen


def gen_to_params(cfg: GenRunConfig) -> dict:
    """Notebook parameters: ``gen_<field>`` per generator field and ``tokenizer_config`` (the tokenizer's
    ``to_dict()``)."""
    return {"tokenizer_config": cfg.tokenizer.to_dict(),
            **{f"{GEN_SECTION}_{k}": v for k, v in dataclasses.asdict(cfg.gen).items()}}


def gen_from_params(params: dict) -> GenRunConfig:
    """The inverse of :func:`gen_to_params` (other parameters are ignored; ``None`` keeps a field's default)."""
    if not isinstance(params.get("tokenizer_config"), dict):
        raise ConfigError("tokenizer_config: a generation run needs its tokenizer's config (a dict, "
                          f"RunConfig.to_dict()), got {params.get('tokenizer_config')!r}")
    prefix = GEN_SECTION + "_"
    overrides = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix) and v is not None}
    gen = apply_gen_overrides(GenConfig(), overrides)
    return validate_gen(GenRunConfig(from_dict(params["tokenizer_config"]), gen))


def validate_gen(cfg: GenRunConfig) -> GenRunConfig:
    """Check every ``gen`` field against the tokenizer it will train on; a ConfigError naming field and value."""
    from pqstudy.generation.ar import GPT_SIZES
    from pqstudy.generation.diffusion import DIT_SIZES

    g, tok = cfg.gen, cfg.tokenizer
    require(g.kind in GEN_KINDS, "gen.kind", g.kind, f"choose one of {list(GEN_KINDS)}")
    sizes = GPT_SIZES if g.kind == "ar" else DIT_SIZES
    require(g.size in sizes, "gen.size", g.size, f"a {g.kind} model comes in {sorted(sizes)}")
    require(g.head in AR_HEADS, "gen.head", g.head, f"choose one of {list(AR_HEADS)}")
    require(g.latent in LATENTS, "gen.latent", g.latent, f"choose one of {list(LATENTS)}")
    require(g.lr_schedule in LR_SCHEDULES, "gen.lr_schedule", g.lr_schedule, f"choose one of {list(LR_SCHEDULES)}")
    require(g.solver in SOLVERS, "gen.solver", g.solver, f"choose one of {list(SOLVERS)}")
    require(g.precision in PRECISIONS, "gen.precision", g.precision, f"choose one of {list(PRECISIONS)}")
    if g.kind == "ar":
        require(tok.model.kind == "quantized", "gen.kind", g.kind,
                f"an AR prior needs token indices; the tokenizer is a continuous {tok.model.kind!r} model "
                "(use gen.kind=diffusion)")
    if g.latent == "pre":
        require(tok.model.kind == "quantized", "gen.latent", g.latent,
                f"'pre' is a quantised tokenizer's latent before quantisation; a {tok.model.kind!r} model has "
                "only its latent (gen.latent=quantized)")
    for name in ("steps", "batch_size", "samples", "sample_steps"):
        require(getattr(g, name) >= 1, f"gen.{name}", getattr(g, name), "must be >= 1")
    for name in ("warmup_steps", "ckpt_every", "fid_samples", "nll_images", "top_k", "threads"):
        require(getattr(g, name) >= 0, f"gen.{name}", getattr(g, name), "must be >= 0")
    for name in ("lr", "temperature", "cfg_scale", "top_p", "weight_decay", "class_dropout"):
        value = getattr(g, name)
        require(math.isfinite(value), f"gen.{name}", value, "must be a finite number")
    require(g.lr > 0, "gen.lr", g.lr, "must be > 0")
    require(g.temperature > 0, "gen.temperature", g.temperature, "must be > 0")
    require(0 < g.top_p <= 1, "gen.top_p", g.top_p, "must be in (0, 1]")
    require(g.cfg_scale >= 0, "gen.cfg_scale", g.cfg_scale, "must be >= 0")
    require(0 <= g.class_dropout < 1, "gen.class_dropout", g.class_dropout, "must be in [0, 1)")
    require(g.weight_decay >= 0, "gen.weight_decay", g.weight_decay, "must be >= 0")
    check_device(g.device, "gen.device")
    return cfg
