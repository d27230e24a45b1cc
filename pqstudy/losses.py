"""Autoencoder training losses: taming's VQLPIPSWithDiscriminator, written out term by term.

Generator (autoencoder) loss::

    rec_weight · L1(x, x̂) + perceptual_weight · LPIPS(x, x̂)          ← "nll", the reconstruction part
    + codebook_weight · Σ quantiser terms   (or kl_weight · KL for the KL-VAE)
    + disc_weight · λ · (−mean D(x̂))          once step ≥ disc_start

with taming's adaptive weight λ = ‖∇nll‖ / (‖∇gan‖ + 1e-4) at the decoder's last layer, clamped to [0, 1e4] and
detached. The discriminator is trained with the hinge loss on D(x) against D(x̂.detach()), also from disc_start.

The perceptual network is given by the caller (e.g. ``lpips.LPIPS(net="vgg")``), so nothing here downloads weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy import distributed
from pqstudy.config import LossConfig
from pqstudy.models import AEOutput, build_discriminator
from pqstudy.precision import fp32_region, to_fp32

REC_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


def reconstruction_loss(x: Tensor, x_rec: Tensor, kind: str = "l1") -> Tensor:
    """Mean absolute (``l1``) or squared (``l2``) error over every pixel and channel."""
    if kind not in REC_LOSSES:
        raise ValueError(f"loss.rec={kind!r}: unknown; choose one of {sorted(REC_LOSSES)}")
    return REC_LOSSES[kind](x_rec, x)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """½ · (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_adv_loss(logits_fake: Tensor) -> Tensor:
    """The generator's hinge loss: −mean D(x̂)."""
    return -logits_fake.mean()


def adopt_weight(weight: float, step: int, threshold: int, value: float = 0.0) -> float:
    """``value`` (0) before ``threshold`` steps, ``weight`` from then on."""
    return value if step < threshold else weight


def adaptive_gan_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: nn.Module | Tensor, clamp: float = 1e4) -> Tensor:
    """taming's λ: ‖∇rec‖ / (‖∇gan‖ + 1e-4) at ``last_layer.weight`` (or at a weight tensor), in [0, clamp], detached.

    It balances the two gradients where they meet the decoder's output, so the GAN term never swamps reconstruction.
    In data-parallel training both gradients are averaged over the ranks first: every rank gets the same λ, the one
    a single process computes from the whole global batch.
    """
    weight = last_layer.weight if isinstance(last_layer, nn.Module) else last_layer
    rec_grad = torch.autograd.grad(rec_loss, weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(g_loss, weight, retain_graph=True)[0]
    if distributed.active():  # data-parallel: the gradients of the global batch's losses, as one process has them
        rec_grad, gan_grad = distributed.average_(torch.stack([rec_grad, gan_grad]))
    ratio = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return ratio.clamp(0.0, clamp).detach()


class AutoencoderLoss(nn.Module):
    """Reconstruction + perceptual + bottleneck + adaptive-weighted hinge GAN, configured by a ``LossConfig``.

    ``perceptual`` is a callable ``(x, x_rec) → per-image distance`` (LPIPS), required when
    ``loss_cfg.perceptual_weight > 0`` and ignored otherwise; it is kept in eval mode and frozen. The PatchGAN
    discriminator is built when ``loss_cfg.disc_weight > 0``; train it with its own optimiser on
    ``discriminator_loss`` (``generator_loss`` also leaves gradients on it: zero them before its step).
    """

    def __init__(self, loss_cfg: LossConfig, perceptual: nn.Module | None = None):
        super().__init__()
        if loss_cfg.rec not in REC_LOSSES:
            raise ValueError(f"loss.rec={loss_cfg.rec!r}: unknown; choose one of {sorted(REC_LOSSES)}")
        if loss_cfg.perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                f"loss.perceptual_weight={loss_cfg.perceptual_weight} needs a perceptual network: pass "
                "perceptual=lpips.LPIPS(net='vgg') (or any (x, x_rec) -> per-image distance), "
                "or set loss.perceptual_weight=0"
            )
        self.cfg = loss_cfg
        self.perceptual = perceptual if loss_cfg.perceptual_weight > 0 else None
        if isinstance(self.perceptual, nn.Module):
            self.perceptual.requires_grad_(False).eval()
        self.discriminator = build_discriminator(loss_cfg) if loss_cfg.disc_weight > 0 else None

    @property
    def uses_gan(self) -> bool:
        return self.discriminator is not None

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms count at this step (a discriminator exists and ``step >= disc_start``)."""
        return self.uses_gan and step >= self.cfg.disc_start

    def train(self, mode: bool = True) -> AutoencoderLoss:
        super().train(mode)
        if isinstance(self.perceptual, nn.Module):
            self.perceptual.eval()  # a fixed metric network: no dropout, ever
        return self

    def generator_loss(
        self, x: Tensor, out: AEOutput, step: int, last_layer: nn.Module | Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The autoencoder's loss and its terms as floats (``rec``, ``perceptual``, bottleneck terms by name,
        ``gan``, ``gan_weight`` = disc_weight · λ actually applied, ``total``)."""
        c = self.cfg
        terms: dict[str, Tensor] = {}
        with fp32_region("reconstruction", x.device.type) as guarded:  # fp32 under bf16 autocast (pqstudy.precision)
            terms["rec"] = reconstruction_loss(to_fp32(x), to_fp32(out.x_rec), c.rec) if guarded else (
                reconstruction_loss(x, out.x_rec, c.rec))
        nll = c.rec_weight * terms["rec"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(x, out.x_rec).mean()
            nll = nll + c.perceptual_weight * terms["perceptual"]

        total = nll
        for name, value in out.loss.items():
            total = total + (c.kl_weight if name == "kl" else c.codebook_weight) * value
            terms[name] = value

        gan_weight = torch.zeros((), device=x.device)
        if self.uses_gan:
            g_loss = torch.zeros((), device=x.device)
            if self.gan_active(step):
                g_loss = generator_adv_loss(self.discriminator(out.x_rec))
                can_grad = self.training and torch.is_grad_enabled() and nll.requires_grad and g_loss.requires_grad
                if can_grad:
                    gan_weight = c.disc_weight * adaptive_gan_weight(nll, g_loss, last_layer, c.adaptive_clamp)
                total = total + gan_weight * g_loss
            terms["gan"] = g_loss
        terms["gan_weight"] = gan_weight
        terms["total"] = total
        return total, _to_floats(terms)

    def discriminator_loss(self, x: Tensor, x_rec: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Hinge loss of D on real ``x`` vs detached ``x_rec``, times 0 before ``disc_start``."""
        if self.discriminator is None:
            raise RuntimeError("discriminator_loss: there is no discriminator (loss.disc_weight is 0)")
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(x_rec.detach())
        d_loss = adopt_weight(1.0, step, self.cfg.disc_start) * hinge_d_loss(logits_real, logits_fake)
        terms = {"d_loss": d_loss, "logits_real": logits_real.mean(), "logits_fake": logits_fake.mean()}
        return d_loss, _to_floats(terms)


def _to_floats(terms: dict[str, Tensor]) -> dict[str, float]:
    """Detach scalar tensors to floats with one device sync."""
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).tolist()
    return dict(zip(terms.keys(), values, strict=True))
