"""Taming-style convolutional autoencoders: one encoder/decoder pair, three bottlenecks.

``Encoder`` / ``Decoder`` follow taming-transformers (and LDM's first stage): ResNet blocks with GroupNorm and
swish, self-attention at chosen resolutions, a stride-2 conv to downsample and nearest-neighbour + conv to upsample.
The downsampling factor is ``2 ** (len(ch_mult) - 1)``.

The three autoencoders share the backbone and differ only in the bottleneck between ``quant_conv`` (1×1,
``z_channels → D``) and ``post_quant_conv`` (1×1, ``D → z_channels``):

- ``QuantizedAutoencoder``: any quantiser from ``pqstudy.quantizers`` (VQGAN, PQGAN, VQGAN-LC, ...);
- ``Autoencoder``: nothing, a continuous latent of the same width D (baseline);
- ``KLAutoencoder``: a diagonal Gaussian posterior with a KL penalty towards N(0, I) (LDM's KL-VAE baseline).

All take images in [-1, 1] of shape (B, 3, H, W) and return an ``AEOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.config import ModelConfig, RunConfig
from pqstudy.quantizers import Quantizer, QuantOutput, build_quantizer

# ---------------------------------------------------------------------------------------------------------------
# building blocks


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` (32 for the usual widths)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm → swish → conv3×3 → norm → swish → dropout → conv3×3, plus a (1×1 when widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        same = in_channels == out_channels
        self.shortcut = nn.Identity() if same else nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x_norm = self.norm(x)
        # (B, C, H, W) → (B, 1, HW, C): one head, every position attends to every position
        q, k, v = (t(x_norm).reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √C) v
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W: pad one pixel right and bottom (asymmetric, as in taming), then a stride-2 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """The bottom of the U: ResNet → attention → ResNet at the lowest resolution."""

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: ResNet blocks (each followed by attention when enabled), then an optional resample."""

    def __init__(self, blocks: list[nn.Module], attn: list[nn.Module], resample: nn.Module | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)  # empty, or one per block
        self.resample = resample if resample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return self.resample(x)


# ---------------------------------------------------------------------------------------------------------------
# encoder / decoder


class Encoder(nn.Module):
    """(B, in_channels, R, R) → (B, z_channels (×2 with ``double_z``), R/f, R/f) with f = 2 ** (len(ch_mult) - 1)."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        dropout: float = 0.0,
        double_z: bool = False,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, padding=1)
        levels, res, block_in = [], resolution, ch
        for i, mult in enumerate(ch_mult):
            block_out = ch * mult
            blocks = [ResnetBlock(block_in if j == 0 else block_out, block_out, dropout) for j in range(num_res_blocks)]
            attn = [AttnBlock(block_out) for _ in range(num_res_blocks)] if res in attn_resolutions else []
            last = i == len(ch_mult) - 1
            levels.append(Level(blocks, attn, None if last else Downsample(block_out)))
            block_in = block_out
            res = res if last else res // 2
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(block_in, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, R/f, R/f) → (B, out_channels, R, R); the mirror of ``Encoder`` with one extra block per level."""

    def __init__(
        self,
        *,
        out_channels: int = 3,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, padding=1)
        self.mid = MidBlock(block_in, dropout)
        levels = []  # lowest resolution first, in the order they are applied
        for i in reversed(range(len(ch_mult))):
            block_out = ch * ch_mult[i]
            n = num_res_blocks + 1
            blocks = [ResnetBlock(block_in if j == 0 else block_out, block_out, dropout) for j in range(n)]
            attn = [AttnBlock(block_out) for _ in range(n)] if res in attn_resolutions else []
            levels.append(Level(blocks, attn, Upsample(block_out) if i > 0 else None))
            block_in = block_out
            res = res * 2 if i > 0 else res
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, kernel_size=3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.up:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ---------------------------------------------------------------------------------------------------------------
# autoencoders


@dataclass
class AEOutput:
    """What every autoencoder returns.

    ``z`` is the latent fed to the bottleneck, (B, D, h, w) (the posterior mean for the KL-VAE); ``quant`` is the
    quantiser's output (None for continuous models); ``loss`` holds the bottleneck's loss terms before the
    trainer's weights (``loss.codebook_weight`` / ``loss.kl_weight``): the quantiser's terms, ``{"kl": ...}`` for the
    KL-VAE, ``{}`` for the plain autoencoder.
    """

    x_rec: Tensor
    z: Tensor
    quant: QuantOutput | None = None
    loss: dict[str, Tensor] = field(default_factory=dict)


class AutoencoderBase(nn.Module):
    """Encoder → quant_conv (1×1, z_channels → D or 2·D) → bottleneck → post_quant_conv (1×1, D → z_channels) → Decoder.

    ``dim`` is the bottleneck width D; ``downsample`` the spatial factor f.
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        dim: int,
        image_size: int,
        bottleneck_channels: int | None = None,
        double_z: bool = False,
    ):
        super().__init__()
        m = model_cfg
        shape = dict(
            ch=m.ch,
            ch_mult=tuple(m.ch_mult),
            num_res_blocks=m.num_res_blocks,
            attn_resolutions=tuple(m.attn_resolutions),
            resolution=image_size,
            dropout=m.dropout,
        )
        self.dim = dim
        self.downsample = 2 ** (len(m.ch_mult) - 1)
        self.encoder = Encoder(in_channels=3, z_channels=m.z_channels, double_z=double_z, **shape)
        enc_channels = 2 * m.z_channels if double_z else m.z_channels
        self.quant_conv = nn.Conv2d(enc_channels, bottleneck_channels or dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(dim, m.z_channels, kernel_size=1)
        self.decoder = Decoder(out_channels=3, z_channels=m.z_channels, **shape)

    def decode(self, z: Tensor) -> Tensor:
        """(B, D, h, w) bottleneck output → (B, 3, H, W) image."""
        return self.decoder(self.post_quant_conv(z))

    def last_layer(self) -> nn.Conv2d:
        """The decoder's final conv; taming's adaptive GAN weight compares gradients at its weight."""
        return self.decoder.conv_out


class QuantizedAutoencoder(AutoencoderBase):
    """VQGAN / PQGAN / VQGAN-LC: encoder → quant_conv → quantiser → post_quant_conv → decoder."""

    def __init__(self, model_cfg: ModelConfig, quantizer: Quantizer, image_size: int):
        super().__init__(model_cfg, quantizer.dim, image_size)
        self.quantizer = quantizer

    @classmethod
    def from_config(cls, cfg: RunConfig, codebook: Tensor | None = None) -> QuantizedAutoencoder:
        """``codebook``: the quantiser's initial codebook (required for ``lc``; see ``build_quantizer``)."""
        quantizer = build_quantizer(cfg.quantizer, codebook=codebook)
        return cls(cfg.model, quantizer, cfg.data.image_size)

    def latent(self, x: Tensor) -> Tensor:
        """The pre-quantisation latent (B, D, h, w)."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x: Tensor) -> tuple[Tensor, QuantOutput]:
        z = self.latent(x)
        return z, self.quantizer(z)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, M, h, w) code indices → (B, 3, H, W) image."""
        return self.decode(self.quantizer.decode_indices(indices))

    def forward(self, x: Tensor) -> AEOutput:
        z, quant = self.encode(x)
        return AEOutput(x_rec=self.decode(quant.z_q), z=z, quant=quant, loss=quant.loss)


class Autoencoder(AutoencoderBase):
    """Continuous baseline: the same backbone and bottleneck width D, no quantiser."""

    def __init__(self, model_cfg: ModelConfig, dim: int, image_size: int):
        super().__init__(model_cfg, dim, image_size)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> Autoencoder:
        return cls(cfg.model, cfg.quantizer.dim, cfg.data.image_size)

    def latent(self, x: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(x))

    def encode(self, x: Tensor) -> Tensor:
        return self.latent(x)

    def forward(self, x: Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(x_rec=self.decode(z), z=z, quant=None, loss={})


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, 1)), summed over latent dimensions and averaged over the batch (as taming/LDM).
    In fp32 under bf16 autocast: a sum over every latent element is where bf16's 8-bit mantissa loses most."""
    mean, logvar = mean.float(), logvar.float()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1).mean()


class KLAutoencoder(AutoencoderBase):
    """KL-VAE baseline (LDM's AutoencoderKL): the encoder predicts a diagonal Gaussian over the D-channel latent.

    The encoder has ``double_z`` and quant_conv maps to 2·D channels: mean and log-variance (clamped to [-30, 20]).
    Training decodes a sample, evaluation decodes the mean (``sample`` overrides the choice).
    """

    def __init__(self, model_cfg: ModelConfig, dim: int, image_size: int):
        super().__init__(model_cfg, dim, image_size, bottleneck_channels=2 * dim, double_z=True)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> KLAutoencoder:
        return cls(cfg.model, cfg.quantizer.dim, cfg.data.image_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar), each (B, D, h, w)."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def latent(self, x: Tensor) -> Tensor:
        """The posterior mean (B, D, h, w)."""
        return self.encode(x)[0]

    def forward(self, x: Tensor, sample: bool | None = None) -> AEOutput:
        mean, logvar = self.encode(x)
        sample = self.training if sample is None else sample
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return AEOutput(x_rec=self.decode(z), z=mean, quant=None, loss={"kl": kl_divergence(mean, logvar)})
