import pytest
import torch

from pqstudy.config import apply_overrides, get_profile
from pqstudy.models import (
    MODELS,
    AEOutput,
    Autoencoder,
    Decoder,
    Encoder,
    KLAutoencoder,
    NLayerDiscriminator,
    QuantizedAutoencoder,
    build_discriminator,
    build_model,
    kl_divergence,
)
from pqstudy.models.autoencoder import num_groups

TINY = dict(ch=16, num_res_blocks=1, z_channels=8, dropout=0.0)


def smoke(**overrides):
    return apply_overrides(get_profile("smoke"), overrides)


@pytest.mark.parametrize(
    ("ch_mult", "size", "attn"),
    [((1, 2, 2), 32, ()), ((1, 2, 2), 32, (16, 8)), ((1, 2), 16, ()), ((1, 2), 16, (8,))],
)
def test_encoder_decoder_shapes(ch_mult, size, attn):
    f = 2 ** (len(ch_mult) - 1)
    enc = Encoder(ch_mult=ch_mult, attn_resolutions=attn, resolution=size, **TINY)
    dec = Decoder(ch_mult=ch_mult, attn_resolutions=attn, resolution=size, **TINY)
    x = torch.randn(2, 3, size, size)
    z = enc(x)
    assert z.shape == (2, TINY["z_channels"], size // f, size // f)
    assert dec(z).shape == x.shape
    has_attn = any(len(level.attn) > 0 for level in [*enc.down, *dec.up])
    assert has_attn == bool(attn)


def test_double_z_and_group_norm_divisor():
    enc = Encoder(ch_mult=(1, 2), resolution=16, attn_resolutions=(), double_z=True, **TINY)
    assert enc(torch.randn(1, 3, 16, 16)).shape == (1, 16, 8, 8)
    assert [num_groups(c) for c in (16, 24, 64, 96, 3)] == [16, 24, 32, 32, 3]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_forward_backward_each_kind(kind):
    torch.manual_seed(0)
    cfg = smoke(**{"model.kind": kind})
    model = build_model(cfg)
    assert isinstance(model, MODELS[kind])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(x)
    assert isinstance(out, AEOutput)
    assert out.x_rec.shape == x.shape
    assert out.z.shape == (2, cfg.quantizer.dim, 8, 8)
    loss = (out.x_rec - x).abs().mean() + sum(out.loss.values(), torch.zeros(()))
    loss.backward()
    grad = model.encoder.conv_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.last_layer() is model.decoder.conv_out
    expected_loss = {"quantized": {"commitment", "codebook"}, "ae": set(), "kl": {"kl"}}[kind]
    assert set(out.loss) == expected_loss
    assert (out.quant is not None) == (kind == "quantized")


def test_quantized_autoencoder_with_pq():
    torch.manual_seed(0)
    cfg = smoke(**{"quantizer.kind": "pq", "quantizer.subspaces": "4"})
    model = build_model(cfg)
    assert isinstance(model, QuantizedAutoencoder)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(x)
    assert out.quant.indices.shape == (2, 4, 8, 8)
    assert out.quant.stats["usage"].shape == (4, cfg.quantizer.codebook_size)
    (out.x_rec.abs().mean() + sum(out.loss.values())).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        z, quant = model.encode(x)
        assert torch.allclose(model.decode_indices(quant.indices), model.decode(quant.z_q), atol=1e-5)


def test_continuous_models_share_bottleneck_width():
    cfg = smoke(**{"quantizer.dim": "4"})
    ae, kl = Autoencoder.from_config(cfg), KLAutoencoder.from_config(cfg)
    assert ae.quant_conv.out_channels == 4 and kl.quant_conv.out_channels == 8
    assert ae.post_quant_conv.in_channels == kl.post_quant_conv.in_channels == 4


def test_kl_divergence_zero_at_prior_and_positive_otherwise():
    zeros = torch.zeros(3, 4, 2, 2)
    assert kl_divergence(zeros, zeros).item() == 0.0
    assert kl_divergence(zeros + 0.5, zeros).item() > 0
    assert kl_divergence(zeros, zeros + 1.0).item() > 0
    # summed over latent dims, averaged over batch: 0.5·μ² per element × 16 elements
    assert kl_divergence(torch.ones(3, 4, 2, 2), zeros).item() == pytest.approx(0.5 * 16)


def test_kl_model_eval_deterministic_train_stochastic():
    torch.manual_seed(0)
    model = build_model(smoke(**{"model.kind": "kl"}))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        assert torch.equal(a.x_rec, b.x_rec)
        model.train()
        c, d = model(x), model(x)
    assert not torch.equal(c.x_rec, d.x_rec)
    assert torch.equal(c.z, d.z)  # z is the posterior mean


@pytest.mark.parametrize(("n_layers", "size", "out"), [(3, 32, 2), (2, 32, 6), (3, 64, 6)])
def test_discriminator_shape(n_layers, size, out):
    disc = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=n_layers)
    assert disc(torch.randn(2, 3, size, size)).shape == (2, 1, out, out)


def test_build_discriminator_and_init():
    cfg = smoke(**{"loss.disc_ndf": "8", "loss.disc_layers": "2"})
    disc = build_discriminator(cfg.loss)
    bns = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2
    assert all(bn.bias.abs().sum() == 0 for bn in bns)
    first = disc.main[0].weight
    assert abs(first.std().item() - 0.02) < 0.01
