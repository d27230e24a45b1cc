"""Autoencoders by kind (``model.kind``) and the PatchGAN discriminator."""

from torch import Tensor, nn

from pqstudy.config import LossConfig, RunConfig
from pqstudy.models.autoencoder import (
    AEOutput,
    Autoencoder,
    AutoencoderBase,
    Decoder,
    Encoder,
    KLAutoencoder,
    QuantizedAutoencoder,
    kl_divergence,
)
from pqstudy.models.discriminator import NLayerDiscriminator

MODELS = {
    "quantized": QuantizedAutoencoder,
    "ae": Autoencoder,
    "kl": KLAutoencoder,
}


def build_model(cfg: RunConfig, codebook: Tensor | None = None) -> nn.Module:
    """The autoencoder for ``cfg.model.kind``; continuous kinds take their bottleneck width from ``quantizer.dim``.

    ``codebook``: the quantiser's initial codebook, required for ``lc`` kinds (:func:`pqstudy.codebooks.codebook_for`
    builds it; :func:`pqstudy.models.checkpoint.load_model` takes it from the checkpoint).
    """
    if cfg.model.kind not in MODELS:
        raise ValueError(f"model.kind={cfg.model.kind!r}: unknown; choose one of {sorted(MODELS)}")
    if cfg.model.kind == "quantized":
        return QuantizedAutoencoder.from_config(cfg, codebook=codebook)
    return MODELS[cfg.model.kind].from_config(cfg)


def build_discriminator(loss_cfg: LossConfig) -> NLayerDiscriminator:
    return NLayerDiscriminator(input_nc=3, ndf=loss_cfg.disc_ndf, n_layers=loss_cfg.disc_layers)


__all__ = [
    "MODELS",
    "AEOutput",
    "Autoencoder",
    "AutoencoderBase",
    "Decoder",
    "Encoder",
    "KLAutoencoder",
    "NLayerDiscriminator",
    "QuantizedAutoencoder",
    "build_discriminator",
    "build_model",
    "kl_divergence",
]
