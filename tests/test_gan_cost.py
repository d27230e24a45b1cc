"""benchmarks/gan_cost.py: each variant times the real training step of the default model with its loss."""

import pytest
import torch


@pytest.fixture(scope="module")
def gan_cost(benchmark_module):
    return benchmark_module("gan_cost")


def test_the_gan_variant_steps_the_discriminator_and_the_default_one_has_none(gan_cost, one_thread):
    default, gan = gan_cost.Stepper(gan_cost.VARIANTS["default"]), gan_cost.Stepper(gan_cost.VARIANTS["gan"])
    assert default.opt_d is None and default.cfg.loss.disc_weight == 0 and default.cfg.loss.perceptual_weight == 0
    assert (gan.cfg.loss.disc_weight, gan.cfg.loss.disc_start, gan.cfg.loss.disc_layers) == (0.8, 1, 3)
    before = [p.detach().clone() for p in gan.loss_fn.discriminator.parameters()]
    weights = [p.detach().clone() for p in gan.model.parameters()]
    gan()
    assert gan.step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.loss_fn.discriminator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(weights, gan.model.parameters(), strict=True))
