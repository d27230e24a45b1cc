"""A small DiT on autoencoder latents, trained by flow matching as SiT and sampled with Euler or Heun.

The network is DiT (Peebles & Xie 2023, facebookresearch/DiT ``models.py``): the latent grid is cut into
``patch × patch`` patches, each a token with a fixed 2-D sin-cos position; transformer blocks are conditioned on
``c = embed(t) + embed(y)`` through adaLN-Zero (LayerNorm without affine, then a shift, scale and gate per block
regressed from ``c``, the regressors zero-initialised so each block starts as the identity); a last adaLN layer maps
tokens back to patches. It is zero at initialisation.

The objective is SiT's (Ma et al. 2024) linear interpolant: with ``x0 ~ N(0, I)`` and data ``x1``,
``x_t = t·x1 + (1 − t)·x0`` and the network regresses the velocity ``dx_t/dt = x1 − x0`` for ``t ~ U(0, 1)``. The
minimiser is ``v(x, t) = E[x1 − x0 | x_t = x]``, and integrating ``dx/dt = v`` from noise at ``t = 0`` to ``t = 1``
carries N(0, I) onto the data distribution. Classifier-free guidance (Ho & Salimans 2022) drops labels to a null
class with probability ``class_dropout`` in training and samples with ``v_null + s·(v_y − v_null)``.

Latents are ``(B, C, H, W)`` with ``H = W = grid``, standardised by the caller (zero mean, unit variance per channel)
so that N(0, I) is the right noise scale. This file imports only torch; the data and the autoencoder meet it
elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from pqstudy.generation import draw

SOLVERS = ("euler", "heun")


@dataclass
class DiTConfig:
    channels: int  # C of the latents
    grid: int  # H = W of the latent grid: 8 for CIFAR at F=4, 4 at F=8, 2 at F=16
    patch: int = 1  # patch side on the latent grid: tokens = (grid / patch)². 1 on 8×8 (64 tokens); DiT uses 2 on 32×32
    hidden: int = 128  # token width; a multiple of 4 (half the 2-D sin-cos position code per axis, sin and cos each)
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; hidden / heads is the head width
    mlp_ratio: float = 4.0  # MLP width / hidden, as ViT and DiT
    num_classes: int = 10  # 0: unconditional. Label ``num_classes`` is the null class of classifier-free guidance
    class_dropout: float = 0.1  # probability of replacing a label by the null class in training (DiT: 0.1)

    def __post_init__(self):
        for name in ("channels", "grid", "patch", "hidden", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DiTConfig.{name}={value!r}: must be a positive integer")
        if self.grid % self.patch:
            raise ValueError(f"DiTConfig.grid={self.grid} is not divisible by patch={self.patch}")
        if self.hidden % self.heads:
            raise ValueError(f"DiTConfig.hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.hidden % 4:
            raise ValueError(f"DiTConfig.hidden={self.hidden}: must be a multiple of 4 (2-D sin-cos positions)")
        if not self.mlp_ratio > 0:
            raise ValueError(f"DiTConfig.mlp_ratio={self.mlp_ratio!r}: must be positive")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"DiTConfig.num_classes={self.num_classes!r}: must be an integer ≥ 0 (0: unconditional)")
        if not 0 <= self.class_dropout < 1:
            raise ValueError(f"DiTConfig.class_dropout={self.class_dropout!r}: must be in [0, 1)")

    @property
    def tokens(self) -> int:
        return (self.grid // self.patch) ** 2


# Architecture sizes; the latent shape and the classes come from the data: ``dit_config("small", channels=8, grid=8)``.
DIT_SIZES = {
    "small": dict(hidden=128, depth=4, heads=4, patch=1),  # ≈1.2M parameters: trains on one CPU core
    "dit-xl": dict(hidden=1152, depth=28, heads=16, patch=2),  # DiT-XL/2, 675M parameters: paper scale, untrained
}


def dit_config(size: str, *, channels: int, grid: int, **overrides) -> DiTConfig:
    """The ``DiTConfig`` of a named size of ``DIT_SIZES`` for ``(channels, grid, grid)`` latents."""
    if size not in DIT_SIZES:
        raise ValueError(f"size={size!r}: unknown DiT size, choose one of {sorted(DIT_SIZES)}")
    return DiTConfig(channels=channels, grid=grid, **{**DIT_SIZES[size], **overrides})


# ---------------------------------------------------------------------------------------------------------------
# embeddings


def sincos_1d(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``(N,)`` positions → ``(N, dim)``: ``[cos(p·ω_i), sin(p·ω_i)]`` with ``ω_i = max_period^(−i / (dim/2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def sincos_2d(side: int, dim: int) -> Tensor:
    """Fixed position codes of a ``side × side`` token grid in row-major order, ``(side², dim)``: half the
    channels encode the row, half the column (as DiT and MAE)."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.cat([sincos_1d(rows.flatten(), dim // 2), sincos_1d(cols.flatten(), dim // 2)], dim=1)


class TimestepEmbedder(nn.Module):
    """``t`` in [0, 1], ``(B,)`` → ``(B, hidden)``: a 256-channel sinusoid of ``1000·t`` through a 2-layer MLP.

    The factor 1000 puts ``t`` on DiT's step scale, so the sinusoid's periods (2π to 2π·10⁴) resolve it; on [0, 1]
    directly, even the fastest channel would turn by less than one radian.
    """

    def __init__(self, hidden: int, frequency_channels: int = 256):
        super().__init__()
        self.frequency_channels = frequency_channels
        self.mlp = nn.Sequential(nn.Linear(frequency_channels, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sincos_1d(1000.0 * t, self.frequency_channels).to(t.dtype))


# ---------------------------------------------------------------------------------------------------------------
# the transformer


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x`` (B, T, D) scaled by ``1 + scale`` and shifted by ``shift``, each (B, D): adaLN's affine from ``c``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head self-attention over tokens, ``(B, T, D) → (B, T, D)``."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # each (B, h, T, d/h)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class DiTBlock(nn.Module):
    """Attention and MLP, each behind an adaLN-Zero modulation: ``x + gate·f(modulate(norm(x), shift, scale))``."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN (shift, scale; no gate) and a linear map from each token to its ``patch × patch × C`` values."""

    def __init__(self, hidden: int, patch: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class LatentDiT(nn.Module):
    """A class-conditional (or unconditional) velocity field ``v(x_t, t, y)`` on ``(B, C, grid, grid)`` latents."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.channels, cfg.hidden, kernel_size=cfg.patch, stride=cfg.patch)
        self.register_buffer("pos_embed", sincos_2d(cfg.grid // cfg.patch, cfg.hidden)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(cfg.hidden)
        # one extra row, the null class, whatever class_dropout is: guidance needs it at sampling time
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, cfg.hidden) if cfg.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg.hidden, cfg.patch, cfg.channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """As DiT: Xavier-uniform linear maps with zero biases, N(0, 0.02²) embeddings, and adaLN-Zero: every
        modulation regressor and the output layer zero, so each block is the identity and the output is 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.weight  # a linear map of the flattened patch
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        for module in [*self.blocks, self.final_layer]:
            nn.init.zeros_(module.adaLN_modulation[-1].weight)
            nn.init.zeros_(module.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    # --- input checks: each names the argument and its value ----------------------------------------------------

    def check_latents(self, x: Tensor, name: str = "x") -> None:
        c, g = self.cfg.channels, self.cfg.grid
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, g, g):
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this model takes (B, {c}, {g}, {g}) latents "
                f"(channels={c}, grid={g})"
            )

    def check_labels(self, y: Tensor | None, batch: int, *, allow_null: bool) -> None:
        n = self.cfg.num_classes
        if n == 0:
            if y is not None:
                raise ValueError("y: this model is unconditional (num_classes=0); pass y=None")
            return
        if y is None or y.shape != (batch,) or y.dtype.is_floating_point or y.dtype == torch.bool:
            shape = None if y is None else (tuple(y.shape), y.dtype)
            raise ValueError(f"y={shape}: expected ({batch},) integer class labels (num_classes={n})")
        top = n if allow_null else n - 1
        if y.device.type != "meta" and bool(((y < 0) | (y > top)).any()):  # a meta tensor has no values
            bad = y[(y < 0) | (y > top)][:5].tolist()
            raise ValueError(
                f"y: labels {bad} out of range [0, {top}] (num_classes={n}"
                + (", null class included)" if allow_null else ")")
            )

    # --- the network ---------------------------------------------------------------------------------------------

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The velocity at ``x`` (B, C, grid, grid), time ``t`` (B,) in [0, 1], labels ``y`` (B,) (the null class
        ``num_classes`` allowed; None for an unconditional model) → (B, C, grid, grid)."""
        self.check_latents(x)
        b = x.shape[0]
        if t.shape != (b,):
            raise ValueError(f"t has shape {tuple(t.shape)}; expected ({b},), one time per latent")
        self.check_labels(y, b, allow_null=True)
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, T, D), row-major tokens
        c = self.t_embedder(t)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c))

    def unpatchify(self, h: Tensor) -> Tensor:
        """``(B, T, p·p·C)`` → ``(B, C, grid, grid)``: token (i, j) fills the patch at rows i·p…, columns j·p…."""
        p, c, n = self.cfg.patch, self.cfg.channels, self.cfg.grid // self.cfg.patch
        h = h.view(h.shape[0], n, n, p, p, c)
        return torch.einsum("bijpqc->bcipjq", h).reshape(h.shape[0], c, n * p, n * p)

    # --- training ------------------------------------------------------------------------------------------------

    def loss(self, x1: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None,
             share: tuple[int, int] = draw.WHOLE) -> Tensor:
        """The flow-matching loss of data latents ``x1`` (B, C, grid, grid) with labels ``y`` (B,): the mean squared
        error between ``v(x_t, t, y')`` and ``x1 − x0``, where ``x0 ~ N(0, I)``, ``t ~ U(0, 1)``,
        ``x_t = t·x1 + (1 − t)·x0``, and ``y'`` is ``y`` with each label replaced by the null class with probability
        ``class_dropout`` in training mode.

        Every random number comes from ``generator`` (a CPU generator serves a GPU model too:
        :mod:`pqstudy.generation.draw`), in a fixed order (x0, t, dropout), so saving its state with the model and
        optimiser makes a resumed run bitwise identical to an unbroken one. ``share=(rank, world_size)``: ``x1`` is
        that rank's rows of a data-parallel global batch, and every draw is its rows of the global batch's
        (:mod:`pqstudy.generation.draw`), so the ranks together draw what one process draws.
        """
        self.check_latents(x1, "x1")
        b = x1.shape[0]
        self.check_labels(y, b, allow_null=False)
        x0 = draw.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype, share=share)
        t = draw.rand(b, generator=generator, device=x1.device, dtype=x1.dtype, share=share)
        if y is not None:
            drop = draw.rand(b, generator=generator, device=x1.device, share=share) < self.cfg.class_dropout
            if self.training:
                y = torch.where(drop, torch.full_like(y, self.null_class), y)
        tt = t[:, None, None, None]
        x_t = tt * x1 + (1 - tt) * x0
        return F.mse_loss(self(x_t, t, y).float(), x1 - x0)  # in fp32 under bf16 autocast (gen.precision)

    # --- sampling ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        y: Tensor | int,
        *,
        steps: int = 50,
        solver: str = "heun",
        cfg_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Latents ``(B, C, grid, grid)`` for labels ``y`` (B,) — or, for an unconditional model, ``y`` = B, the
        number of samples — by integrating ``dx/dt = v`` from ``x0 ~ N(0, I)`` (drawn from ``generator``) at t = 0
        to t = 1 in ``steps`` uniform steps of ``solver``.

        ``cfg_scale`` s ≠ 1 guides with ``v_null + s·(v_y − v_null)`` (one batch of 2B rows per evaluation); s = 1
        is the conditional model itself, one forward of B rows.
        """
        check_sampler(steps, solver)
        check_guidance(self.cfg, cfg_scale)
        n = self.cfg.num_classes
        device = self.pos_embed.device
        if n == 0:
            if isinstance(y, bool) or not isinstance(y, int) or y < 1:
                raise ValueError(f"y={y!r}: an unconditional model takes the number of samples, a positive int")
            batch, labels = y, None
        else:
            if not isinstance(y, Tensor):
                raise ValueError(f"y={y!r}: a class-conditional model takes a (B,) tensor of labels")
            batch, labels = y.shape[0] if y.ndim == 1 else -1, y.to(device)
            self.check_labels(labels, batch, allow_null=False)
        shape = (batch, self.cfg.channels, self.cfg.grid, self.cfg.grid)
        x0 = draw.randn(shape, generator=generator, device=device, dtype=self.pos_embed.dtype)

        if cfg_scale == 1:

            def velocity(x: Tensor, t: Tensor) -> Tensor:
                return self(x, t, labels)
        else:
            both = torch.cat([labels, torch.full_like(labels, self.null_class)])

            def velocity(x: Tensor, t: Tensor) -> Tensor:
                v_y, v_null = self(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
                return v_null + cfg_scale * (v_y - v_null)

        return integrate(velocity, x0, steps=steps, solver=solver)


# ---------------------------------------------------------------------------------------------------------------
# the ODE solver


def check_sampler(steps: int, solver: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be a positive integer")
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: choose one of {SOLVERS}")


def check_guidance(cfg: DiTConfig, cfg_scale: float) -> None:
    """Guidance (``cfg_scale ≠ 1``) needs labels and a null class trained by class dropout."""
    if not math.isfinite(cfg_scale):
        raise ValueError(f"cfg_scale={cfg_scale!r}: must be finite")
    if cfg_scale != 1 and cfg.num_classes == 0:
        raise ValueError(f"cfg_scale={cfg_scale}: guidance needs a class-conditional model, this one has num_classes=0")
    if cfg_scale != 1 and cfg.class_dropout == 0:
        raise ValueError(f"cfg_scale={cfg_scale}: the null class was never trained (class_dropout=0)")


def integrate(velocity: Callable[[Tensor, Tensor], Tensor], x0: Tensor, *, steps: int, solver: str) -> Tensor:
    """``x(1)`` of ``dx/dt = velocity(x, t)`` (``t`` given as a (B,) tensor) from ``x(0) = x0`` (B, ...), in
    ``steps`` uniform steps.

    ``euler``: ``x += Δt·v(x, t)``, error O(Δt), one evaluation per step. ``heun`` (the explicit trapezoid rule, as
    EDM and SiT's samplers): an Euler predictor ``x̃ = x + Δt·v₀`` corrected by ``x += Δt·(v₀ + v(x̃, t + Δt))/2``,
    error O(Δt²), two evaluations per step. The velocity of a flow-matching model is defined at t = 1, so Heun
    corrects the last step too.
    """
    check_sampler(steps, solver)
    x = x0
    for i in range(steps):
        t0 = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
        t1 = torch.full_like(t0, (i + 1) / steps)
        dt = 1.0 / steps
        v0 = velocity(x, t0)
        if solver == "euler":
            x = x + dt * v0
        else:
            x = x + 0.5 * dt * (v0 + velocity(x + dt * v0, t1))
    return x


# ---------------------------------------------------------------------------------------------------------------
# cost


def forward_flops(cfg: DiTConfig) -> int:
    """FLOPs of one forward pass of one latent, measured by ``torch.utils.flop_counter.FlopCounterMode``.

    The model runs on the meta device (shapes without values, so DiT-XL costs no memory), where attention falls back
    to matrix products that the counter sees (on CPU its fused kernel counts 0). Counted: matrix products,
    convolutions and attention, 2 FLOPs per multiply-add; not counted: norms, activations, additions (DiT's Gflops
    count 1 per multiply-add: DiT-XL/2's 118.6 Gflops are ≈ 237 GFLOPs here).
    """
    with torch.device("meta"):
        model = LatentDiT(cfg)
        x = torch.zeros(1, cfg.channels, cfg.grid, cfg.grid)
        t = torch.zeros(1)
        y = torch.zeros(1, dtype=torch.long) if cfg.num_classes else None
    with FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return int(counter.get_total_flops())


def sampling_flops(cfg: DiTConfig, steps: int = 50, solver: str = "heun", cfg_scale: float = 1.0) -> int:
    """FLOPs of generating one latent: evaluations (``steps``, twice that for Heun) × ``forward_flops``, ×2 when
    ``cfg_scale ≠ 1`` (the conditional and the null row)."""
    check_sampler(steps, solver)
    check_guidance(cfg, cfg_scale)
    evaluations = steps * (1 if solver == "euler" else 2) * (1 if cfg_scale == 1 else 2)
    return evaluations * forward_flops(cfg)
