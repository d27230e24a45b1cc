"""Run configuration: plain dataclasses, three profiles, validation, and a stable run id.

A run is described by one ``RunConfig``. Fields are addressed as ``section.field`` on the command line
(``--set quantizer.kind=pq``) and as ``section_field`` in notebook parameter cells (``quantizer_kind = "pq"``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field

SECTIONS = ("data", "model", "quantizer", "loss", "train")
MODEL_KINDS = ("quantized", "ae", "kl")
LR_SCHEDULES = ("constant", "cosine")
REC_LOSSES = ("l1", "l2")
EVAL_METRICS = ("lpips", "rfid", "kid", "cmmd")  # the reference-network metrics train.eval_metrics may name
# quantizer.lc_init: the paper's random init (uniform), the feature-statistics draw (an extra arm), selection, k-means
LC_INITS = ("uniform", "feature-normal", "select", "kmeans")
RENAMED_LC_INITS = {"normal": "feature-normal"}  # old name → new name (an error that names the new one)
PROJECTOR_INITS = ("torch", "normal")
PRECISIONS = ("fp32", "bf16")  # train.precision (pqstudy.precision)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


@dataclass
class DataConfig:
    name: str = "photos"  # cifar10 | photos | folder:<path> | imagenet | ffhq
    root: str = ""  # data root; PQSTUDY_DATA_DIR wins when set
    image_size: int = 32
    train_limit: int = 0  # use the first N training images (0 = all)
    download: bool = True  # cifar10: fetch the official archive when absent and online


@dataclass
class ModelConfig:
    kind: str = "quantized"  # quantized | ae (continuous) | kl (KL-VAE)
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    z_channels: int = 64
    dropout: float = 0.0

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass
class QuantizerConfig:
    kind: str = "vq"  # vq | pq (see pqstudy.quantizers.QUANTIZERS for every kind)
    codebook_size: int = 1024  # K (per subspace for pq)
    dim: int = 8  # D: embedding dimension of the latent that is quantised
    subspaces: int = 1  # M: pq splits D into M subspaces of D/M channels
    sub_kind: str = "vq"  # quantiser used inside each pq subspace
    beta: float = 0.25  # commitment weight
    legacy: bool = True  # taming's swapped beta: beta on the codebook term instead of the commitment term
    l2_norm: bool = False  # cosine matching: l2-normalise latents and codes
    init: str = "uniform"  # vq / vq-fc / vq-ema codebook init: uniform (taming: U(±1/K)) | normal (N(0, 1))
    chunk_size: int = 16384  # codebook entries per chunk of the nearest-code search
    low_dim: int = 0  # D′: lookup dim of vq-fc / lc (latents projected D→D′ and back); 0: see lookup_dim()
    ema_decay: float = 0.99  # vq-ema: EMA decay of cluster sizes and code sums
    ema_eps: float = 1e-5  # vq-ema: Laplace smoothing of the cluster sizes
    ema_count_init: float = 1.0  # vq-ema: initial cluster sizes n_k (VQGAN-LC's EMA baseline: 0; see recipes)
    ema_beta: float = 0.25  # vq-ema: weight of its only loss term, the commitment ‖sg(z_q) − z‖² (VQGAN-LC: 1)
    lc_source: str = "pixels"  # lc features: pixels | encoder:<run dir> | clip:<model>[:<tag or file>] | random
    lc_feature_dim: int = 0  # C of lc_source=random (0 = D′); the other sources fix C
    lc_init: str = "kmeans"  # lc codebook: uniform (U(±1/N), no data) | feature-normal | select | kmeans
    lc_patch: int = 4  # pixels source: F×F×3 patches at stride F (match the model's downsampling factor)
    lc_samples: int = 0  # feature vectors drawn to build the codebook (0 = max(2N, 100000), capped by the data)
    lc_kmeans_iters: int = 10  # Lloyd iterations of the k-means init
    projector: str = "linear"  # lc: codebook projector C→D′: linear | mlp | none (needs C == D′)
    projector_init: str = "torch"  # lc linear projector: torch (nn.Linear default) | normal (weight ~ N(0, 1/D′))
    lc_trainable: bool = False  # lc: train the codebook features as well (trainable codebook + projector)
    codebook_cache: str = ""  # cache of built lc codebooks ("" = $PQSTUDY_CACHE_DIR or ~/.cache/pqstudy/codebooks)


@dataclass
class LossConfig:
    rec: str = "l1"  # l1 | l2
    rec_weight: float = 1.0
    perceptual_weight: float = 0.0  # LPIPS(VGG); 0 = off
    codebook_weight: float = 1.0  # weight of the quantiser's loss terms
    kl_weight: float = 1e-6  # KL-VAE only
    disc_weight: float = 0.0  # 0 = no GAN
    disc_start: int = 0
    disc_layers: int = 3
    disc_ndf: int = 64
    adaptive_clamp: float = 1e4  # taming clamps the adaptive GAN weight to [0, 1e4]


@dataclass
class TrainConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # constant | cosine (linear warm-up, cosine decay to 0)
    warmup_steps: int = 0
    beta1: float = 0.5
    beta2: float = 0.9
    seed: int = 0
    eval_batch_size: int = 256
    eval_limit: int = 0  # evaluate on the first N test images (0 = the whole split)
    eval_metrics: str = "lpips,rfid,kid,cmmd"  # reference-network metrics to attempt (PSNR/SSIM/codebook always)
    fid_samples: int = 0  # rFID/KID on the first N images of the split (0 = all); FID at small N is biased upwards
    history_every: int = 0  # steps per utilisation-history record (0 = one pass over the training split)
    ckpt_every: int = 0  # steps between checkpoints (0 = only at the end)
    # torch threads. Part of the run id: the count changes the numbers. 1 never oversubscribes (a sweep runs --jobs
    # notebooks at once, one thread each; with another CPU-bound process on 2 cores, torch's default of one thread
    # per core trained 22x slower) and gives the same run on any machine.
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    # fp32 | bf16: bf16 autocast of the forward pass and the losses, with the quantisers' nearest-code search, their
    # loss terms and EMA updates and the reconstruction loss kept in fp32 (pqstudy.precision; bf16 distances pick
    # the wrong code, benchmarks/bf16_quality.py). Never chosen automatically: on a CPU without native bf16
    # (pqstudy.cpu.native_bf16) it is emulated and 8-17x slower. Part of the run id when not fp32 (ID_DEFAULTS).
    precision: str = "fp32"
    # torch.compile the autoencoder's forward (pqstudy.precision.maybe_compile): faster steps after a compile of
    # minutes. Not part of the run id: like train.device it changes float rounding only, not what is computed.
    compile: bool = False


@dataclass
class RunConfig:
    profile: str = "smoke"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """``{"section.field": value}`` for every field (tuples as lists)."""
        out = {"profile": self.profile}
        for section in SECTIONS:
            for k, v in dataclasses.asdict(getattr(self, section)).items():
                out[f"{section}.{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    @property
    def run_id(self) -> str:
        return run_id(self)


# Fields that do not change what a run computes: excluded from the run id.
NON_RESULT_FIELDS = {
    "profile",
    "data.root",
    "data.download",
    "train.ckpt_every",
    "train.device",
    "train.compile",
    "train.eval_batch_size",
    "train.eval_metrics",
    "quantizer.codebook_cache",
}


# Fields added after runs were recorded, with the value every earlier run had: a field at this value is left out of
# the id, so the ids of the recorded runs stay as they were, and a run that sets another value gets an id of its own.
ID_DEFAULTS = {
    "train.precision": "fp32",
    "gen.precision": "fp32",  # a generation run's field (pqstudy.generation.config.gen_run_id)
}


def run_id(cfg: RunConfig) -> str:
    """A stable id from every field that changes results: same config → same id, on any machine.

    Left out: :data:`NON_RESULT_FIELDS`, and the fields of :data:`ID_DEFAULTS` while at their old value."""
    payload = {k: v for k, v in cfg.flat().items()
               if k not in NON_RESULT_FIELDS and not (k in ID_DEFAULTS and v == ID_DEFAULTS[k])}
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    q = cfg.quantizer
    tag = cfg.model.kind if cfg.model.kind != "quantized" else (f"pq-{q.sub_kind}" if q.kind == "pq" else q.kind)
    return f"{tag}-{digest}"


def lookup_dim(kind: str, dim: int, low_dim: int = 0, subspaces: int = 1) -> int:
    """D′, the dim in which a (sub)quantiser of ``kind`` looks its codes up; the one home of this default.

    ``dim`` is D of the whole latent and ``subspaces`` M (each subspace has D/M channels; pass the sub-kind for
    ``pq``). ``low_dim`` > 0 is D′ itself. ``low_dim`` = 0 means, for ``vq-fc``, half the (sub)space, at least 1
    (ViT-VQGAN's factorised codes always project down), and for every other kind the (sub)space's own D/M (``lc``
    then projects its codebook straight into the latent space, with no latent projection D → D′).
    """
    if low_dim:
        return low_dim
    sub_dim = dim // subspaces
    return max(1, sub_dim // 2) if kind == "vq-fc" else sub_dim


# ---------------------------------------------------------------------------------------------------------------
# profiles


def _smoke() -> RunConfig:
    """Every code path, a tiny model, a few steps: seconds on a laptop CPU."""
    return RunConfig(
        profile="smoke",
        # the first 512 of the 2,560 training crops (every photo, interleaved): the usage pass and the generators'
        # code extraction read the whole training split, and 60 steps of 16 images see only 960 of them
        data=DataConfig(name="photos", image_size=32, train_limit=512),
        model=ModelConfig(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=16),
        quantizer=QuantizerConfig(kind="vq", codebook_size=64, dim=8),
        train=TrainConfig(steps=60, batch_size=16, lr=2e-3, warmup_steps=5, history_every=20, eval_batch_size=64,
                          fid_samples=32),
    )


def _default() -> RunConfig:
    """The study on CIFAR-10 32×32 on 2 CPU cores: channels 16/32/64, F=4 → 8×8 tokens, ~0.7M parameters,
    ~18 GFLOP per training step of 32 images (≈7 steps/s on 2 cores)."""
    return RunConfig(
        profile="default",
        data=DataConfig(name="cifar10", image_size=32),
        model=ModelConfig(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, z_channels=32),
        quantizer=QuantizerConfig(kind="vq", codebook_size=1024, dim=8),
        # rFID/KID cost ~0.4 s per image here (InceptionV3 at 299 px): opt in per run, on 2,000 images
        train=TrainConfig(steps=800, batch_size=32, lr=1e-3, lr_schedule="cosine", warmup_steps=50, history_every=100,
                          eval_metrics="lpips,cmmd", fid_samples=2000),
    )


def _paper() -> RunConfig:
    """PQGAN F8 on ImageNet 256 px (taming recipe); for GPUs, not run here."""
    return RunConfig(
        profile="paper",
        data=DataConfig(name="imagenet", image_size=256),
        model=ModelConfig(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(32,), z_channels=256),
        quantizer=QuantizerConfig(kind="pq", codebook_size=512, dim=128, subspaces=64, beta=0.25, legacy=True),
        # PQGAN F8_K512_Z128_S64 config.yaml:83-85: a 3-layer PatchGAN at weight 0.8 from step 1
        loss=LossConfig(perceptual_weight=1.0, disc_weight=0.8, disc_start=1, disc_layers=3, disc_ndf=64),
        train=TrainConfig(
            steps=1_200_000, batch_size=30, lr=4.5e-6, lr_schedule="constant", history_every=5000, ckpt_every=10_000,
            eval_batch_size=64,
        ),
    )


PROFILES = {"smoke": _smoke, "default": _default, "paper": _paper}


def get_profile(name: str) -> RunConfig:
    if name not in PROFILES:
        raise ConfigError(f"profile: unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]()


# ---------------------------------------------------------------------------------------------------------------
# overrides


def _field_type(section_cls, name: str):
    hints = typing.get_type_hints(section_cls)
    return hints[name]


def _parse_value(key: str, tp, raw):
    """Parse ``raw`` (a string from the CLI, or an already typed value) into the field's type."""
    origin = typing.get_origin(tp)
    try:
        if origin is tuple:
            if isinstance(raw, str):
                text = raw.strip().strip("[]()")
                items = [s for s in text.replace(" ", "").split(",") if s]
            else:
                items = list(raw)
            return tuple(int(s) for s in items)
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(float(raw)) if isinstance(raw, str) and ("e" in raw.lower()) else int(raw)
        if tp is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("1e999") → inf
        tname = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{key}: cannot read {raw!r} as {tname}") from None


def apply_overrides(cfg: RunConfig, overrides: dict) -> RunConfig:
    """Return a copy of ``cfg`` with ``{"section.field": value}`` applied. Unknown fields are an error."""
    cfg = copy.deepcopy(cfg)
    for key, raw in overrides.items():
        if key == "profile":
            cfg.profile = str(raw)
            continue
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(f"{key}: unknown field (use section.field with a section in {list(SECTIONS)})")
        obj = getattr(cfg, section)
        names = {f.name for f in dataclasses.fields(obj)}
        if name not in names:
            raise ConfigError(f"{key}: unknown field; {section} has {sorted(names)}")
        setattr(obj, name, _parse_value(key, _field_type(type(obj), name), raw))
    return cfg


def parse_set(items: list[str]) -> dict:
    """``["a.b=1", ...]`` → ``{"a.b": "1"}``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected field=value")
        out[key.strip()] = value.strip()
    return out


def from_params(params: dict, profile: str | None = None) -> RunConfig:
    """Build a config from notebook parameters: ``profile`` plus ``section_field`` names (``quantizer_kind``).

    ``None`` values keep the profile's value, so a parameters cell can leave a field at its profile default.
    """
    params = dict(params)
    cfg = get_profile(profile or params.pop("profile", "smoke"))
    params.pop("profile", None)
    overrides = {}
    for key, value in params.items():
        section, _, name = key.partition("_")
        if section not in SECTIONS:
            continue  # notebook-only parameters (output paths and the like)
        if value is not None:
            overrides[f"{section}.{name}"] = value
    cfg = apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def to_params(cfg: RunConfig) -> dict:
    """The inverse of ``from_params``: ``{"profile": ..., "section_field": value}``."""
    return {k.replace(".", "_", 1): v for k, v in cfg.flat().items()}


def from_dict(d: dict) -> RunConfig:
    """Rebuild a config from ``to_dict()`` output (e.g. a run's config.json)."""
    cfg = get_profile(d.get("profile", "smoke")) if d.get("profile") in PROFILES else RunConfig()
    cfg.profile = d.get("profile", cfg.profile)
    flat = {f"{s}.{k}": v for s in SECTIONS for k, v in d.get(s, {}).items()}
    return apply_overrides(cfg, flat)


# ---------------------------------------------------------------------------------------------------------------
# validation


def require(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}")


def check_device(name: str, key: str = "train.device") -> str:
    """``name`` when this machine can run it: ``cuda[:N]`` needs a CUDA build of torch and a visible GPU."""
    require(name in ("auto", "cpu", "cuda") or name.startswith("cuda:"), key, name, "choose auto, cpu or cuda[:N]")
    if name.startswith("cuda"):
        import torch  # late import: the config layer itself does not need torch

        if not torch.cuda.is_available():
            build = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"{key}={name!r}: {build} (torch {torch.__version__}); use auto or cpu")
    return name


def _require_finite_floats(cfg: RunConfig) -> None:
    """Every float field finite: NaN slips through comparisons such as ``x >= 0``, and inf through ``x > 0``."""
    for section in SECTIONS:
        obj = getattr(cfg, section)
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if hints[f.name] is float:
                require(isinstance(value, (int, float)) and math.isfinite(value), f"{section}.{f.name}", value,
                         "must be a finite number")


def validate(cfg: RunConfig) -> RunConfig:
    """Reject a bad config before any work, naming the field and the value.

    The checks that need only the config itself. Names known elsewhere (quantiser kinds, datasets) and the ``lc``
    feature source are checked by :func:`pqstudy.preflight.validate_run`, which runs this first."""
    d, m, q, lo, t = cfg.data, cfg.model, cfg.quantizer, cfg.loss, cfg.train
    _require_finite_floats(cfg)
    require(cfg.profile in PROFILES, "profile", cfg.profile, f"unknown profile; choose one of {sorted(PROFILES)}")
    require(d.image_size > 0, "data.image_size", d.image_size, "must be positive")
    require(d.train_limit >= 0, "data.train_limit", d.train_limit, "must be >= 0")

    require(m.kind in MODEL_KINDS, "model.kind", m.kind, f"unknown model kind; choose one of {list(MODEL_KINDS)}")
    require(m.ch > 0, "model.ch", m.ch, "must be positive")
    require(len(m.ch_mult) >= 1 and all(c > 0 for c in m.ch_mult), "model.ch_mult", m.ch_mult,
             "needs at least one positive multiplier")
    require(m.num_res_blocks >= 1, "model.num_res_blocks", m.num_res_blocks, "must be >= 1")
    require(m.z_channels > 0, "model.z_channels", m.z_channels, "must be positive")
    require(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    require(d.image_size % m.downsample == 0, "data.image_size", d.image_size,
             f"not divisible by the downsampling factor {m.downsample} of model.ch_mult={m.ch_mult}")

    require(q.codebook_size >= 2, "quantizer.codebook_size", q.codebook_size, "K must be >= 2")
    require(q.dim >= 1, "quantizer.dim", q.dim, "D must be >= 1")
    require(q.subspaces >= 1, "quantizer.subspaces", q.subspaces, "M must be >= 1")
    require(q.dim % q.subspaces == 0, "quantizer.subspaces", q.subspaces,
             f"quantizer.dim={q.dim} is not divisible by M={q.subspaces}")
    require(q.kind == "pq" or q.subspaces == 1, "quantizer.subspaces", q.subspaces,
             f"M > 1 needs quantizer.kind='pq' (kind is {q.kind!r})")
    require(q.beta >= 0, "quantizer.beta", q.beta, "must be >= 0")
    require(q.init in ("uniform", "normal"), "quantizer.init", q.init, "choose uniform or normal")
    require(q.chunk_size >= 1, "quantizer.chunk_size", q.chunk_size, "must be >= 1")
    require(q.low_dim >= 0, "quantizer.low_dim", q.low_dim, "must be >= 0 (0 = same as D)")
    require(0.0 < q.ema_decay < 1.0, "quantizer.ema_decay", q.ema_decay, "must be in (0, 1)")
    require(q.ema_eps > 0, "quantizer.ema_eps", q.ema_eps, "must be > 0")
    require(q.ema_count_init >= 0, "quantizer.ema_count_init", q.ema_count_init, "must be >= 0")
    require(q.ema_beta >= 0, "quantizer.ema_beta", q.ema_beta, "must be >= 0")
    require(q.lc_feature_dim >= 0, "quantizer.lc_feature_dim", q.lc_feature_dim, "must be >= 0")
    require(q.lc_init not in RENAMED_LC_INITS, "quantizer.lc_init", q.lc_init,
             f"renamed: the draw from the feature statistics is now {RENAMED_LC_INITS.get(q.lc_init)!r}, and "
             f"VQGAN-LC's random init is 'uniform'; choose one of {list(LC_INITS)}")
    require(q.lc_init in LC_INITS, "quantizer.lc_init", q.lc_init, f"choose one of {list(LC_INITS)}")
    require(q.lc_patch >= 1, "quantizer.lc_patch", q.lc_patch, "must be >= 1")
    require(q.lc_samples >= 0, "quantizer.lc_samples", q.lc_samples, "must be >= 0 (0 = automatic)")
    require(q.lc_kmeans_iters >= 1, "quantizer.lc_kmeans_iters", q.lc_kmeans_iters, "must be >= 1")
    require(q.projector in ("linear", "mlp", "none"), "quantizer.projector", q.projector,
             "choose linear, mlp or none")
    require(q.projector_init in PROJECTOR_INITS, "quantizer.projector_init", q.projector_init,
             f"choose one of {list(PROJECTOR_INITS)}")
    require(lo.rec in REC_LOSSES, "loss.rec", lo.rec, f"choose one of {list(REC_LOSSES)}")
    for name in ("rec_weight", "perceptual_weight", "codebook_weight", "kl_weight", "disc_weight"):
        value = getattr(lo, name)
        require(math.isfinite(value) and value >= 0, f"loss.{name}", value, "must be a finite number >= 0")
    require(lo.disc_start >= 0, "loss.disc_start", lo.disc_start, "must be >= 0")
    require(lo.disc_layers >= 1, "loss.disc_layers", lo.disc_layers, "must be >= 1")
    require(lo.disc_ndf >= 1, "loss.disc_ndf", lo.disc_ndf, "must be >= 1")

    require(t.steps > 0, "train.steps", t.steps, "must be positive")
    require(t.batch_size > 0, "train.batch_size", t.batch_size, "must be positive")
    require(math.isfinite(t.lr) and t.lr > 0, "train.lr", t.lr, "must be positive")
    require(t.lr_schedule in LR_SCHEDULES, "train.lr_schedule", t.lr_schedule, f"choose one of {list(LR_SCHEDULES)}")
    require(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "must be >= 0")
    require(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "train.beta1/beta2", (t.beta1, t.beta2), "must be in [0, 1)")
    require(t.eval_batch_size > 0, "train.eval_batch_size", t.eval_batch_size, "must be positive")
    for name in ("eval_limit", "fid_samples", "history_every", "ckpt_every", "threads"):
        require(getattr(t, name) >= 0, f"train.{name}", getattr(t, name), "must be >= 0")
    require(t.threads >= 1, "train.threads", t.threads, "must be >= 1 (the count is part of the run id)")
    unknown = [n for n in eval_metric_names(t.eval_metrics) if n not in EVAL_METRICS]
    require(not unknown, "train.eval_metrics", t.eval_metrics,
             f"unknown metric(s) {unknown}; a comma-separated subset of {','.join(EVAL_METRICS)}, or empty for none")
    require(t.precision in PRECISIONS, "train.precision", t.precision, f"choose one of {list(PRECISIONS)}")
    check_device(t.device)
    return cfg


def eval_metric_names(text: str) -> tuple[str, ...]:
    """``train.eval_metrics`` ("lpips, rfid") as names, in order, blanks dropped."""
    return tuple(n.strip() for n in str(text).split(",") if n.strip())


def data_root(cfg: DataConfig) -> str:
    """Where datasets live: ``PQSTUDY_DATA_DIR`` if set, else ``data.root``, else ``./data``."""
    return os.environ.get("PQSTUDY_DATA_DIR") or cfg.root or "data"
