import pytest
import torch
from torch import nn

from pqstudy.config import LossConfig
from pqstudy.losses import (
    AutoencoderLoss,
    adaptive_gan_weight,
    adopt_weight,
    generator_adv_loss,
    hinge_d_loss,
    reconstruction_loss,
)
from pqstudy.models import AEOutput


@pytest.mark.parametrize(("kind", "expected"), [("l1", 1.5), ("l2", 2.5)])
def test_reconstruction_loss(kind, expected):
    x = torch.zeros(1, 1, 1, 2)
    x_rec = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    assert reconstruction_loss(x, x_rec, kind).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="l3"):
        reconstruction_loss(x, x_rec, "l3")


def test_hinge_and_generator_loss_hand_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - real) = 0, 0.5, 2 → mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + fake) = 0, 1, 2 → mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))
    assert generator_adv_loss(fake).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (9, 0.0), (10, 0.8), (100, 0.8)])
def test_adopt_weight(step, expected):
    assert adopt_weight(0.8, step, threshold=10) == expected


def test_adaptive_weight_matches_hand_computation():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x = torch.tensor([[3.0, 4.0]])
    out = layer(x).sum()  # w·x = 11
    rec = (out - 1.0) ** 2  # ∇w = 2·(11 − 1)·x = 20·x  → norm 100
    g = -3.0 * out  # ∇w = −3·x → norm 15
    w = adaptive_gan_weight(rec, g, layer)
    assert w.item() == pytest.approx(100 / (15 + 1e-4))
    assert not w.requires_grad
    assert adaptive_gan_weight(rec, g, layer.weight, clamp=2.0).item() == 2.0


class TinyAE(nn.Module):
    """Just enough of an autoencoder: a conv as the 'last layer' and a fake bottleneck term."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=3, padding=1)

    def last_layer(self) -> nn.Conv2d:
        return self.conv

    def forward(self, x):
        x_rec = self.conv(x)
        return AEOutput(x_rec=x_rec, z=x_rec, quant=None, loss={"commitment": x_rec.pow(2).mean()})


def make(**kw):
    torch.manual_seed(0)
    cfg = LossConfig(disc_ndf=8, disc_layers=2, **kw)
    return AutoencoderLoss(cfg), TinyAE(), torch.rand(2, 3, 32, 32) * 2 - 1


@pytest.mark.parametrize(("step", "active"), [(0, False), (4, False), (5, True), (50, True)])
def test_gan_off_before_disc_start_on_after(step, active):
    loss_fn, model, x = make(disc_weight=0.8, disc_start=5)
    assert loss_fn.uses_gan and loss_fn.gan_active(step) == active
    out = model(x)
    total, logs = loss_fn.generator_loss(x, out, step, model.last_layer())
    assert {"rec", "commitment", "gan", "gan_weight", "total"} <= set(logs)
    assert all(isinstance(v, float) for v in logs.values())
    base = logs["rec"] + logs["commitment"]
    if active:
        assert logs["gan_weight"] > 0 and logs["gan"] != 0
        assert logs["total"] == pytest.approx(base + logs["gan_weight"] * logs["gan"], rel=1e-5)
    else:
        assert logs["gan_weight"] == 0.0 and logs["gan"] == 0.0
        assert logs["total"] == pytest.approx(base, rel=1e-6)
    total.backward()
    assert model.conv.weight.grad is not None
    d_loss, d_logs = loss_fn.discriminator_loss(x, out.x_rec, step)
    assert (d_loss.item() > 0) == active
    assert set(d_logs) == {"d_loss", "logits_real", "logits_fake"}


def test_adaptive_weight_zero_in_eval():
    loss_fn, model, x = make(disc_weight=0.8, disc_start=0)
    loss_fn.eval()
    with torch.no_grad():
        total, logs = loss_fn.generator_loss(x, model(x), 10, model.last_layer())
    assert logs["gan_weight"] == 0.0
    assert logs["total"] == pytest.approx(logs["rec"] + logs["commitment"], rel=1e-6)


def test_no_gan_without_disc_weight():
    loss_fn, model, x = make()
    assert not loss_fn.uses_gan and loss_fn.discriminator is None
    _, logs = loss_fn.generator_loss(x, model(x), 10**6, model.last_layer())
    assert "gan" not in logs and logs["gan_weight"] == 0.0
    with pytest.raises(RuntimeError, match="disc_weight"):
        loss_fn.discriminator_loss(x, x, 0)


def test_weights_and_kl_term():
    loss_fn = AutoencoderLoss(LossConfig(rec_weight=2.0, codebook_weight=0.5, kl_weight=0.1))
    x, x_rec = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    out = AEOutput(x_rec=x_rec, z=x_rec, loss={"codebook": torch.tensor(4.0), "kl": torch.tensor(10.0)})
    total, logs = loss_fn.generator_loss(x, out, 0, nn.Conv2d(1, 1, 1))
    assert total.item() == pytest.approx(2.0 * 1 + 0.5 * 4 + 0.1 * 10)
    assert logs["kl"] == 10.0 and logs["codebook"] == 4.0


def test_perceptual_required_when_weighted():
    with pytest.raises(ValueError, match="perceptual_weight"):
        AutoencoderLoss(LossConfig(perceptual_weight=1.0))


class FakePerceptual(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x, x_rec):
        self.calls += 1
        return self.scale * (x - x_rec).pow(2).mean(dim=(1, 2, 3), keepdim=True)


def test_fake_perceptual_is_used():
    fake = FakePerceptual()
    loss_fn = AutoencoderLoss(LossConfig(perceptual_weight=3.0), perceptual=fake)
    loss_fn.train()
    assert not fake.training and not fake.scale.requires_grad  # frozen metric network
    x, x_rec = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    total, logs = loss_fn.generator_loss(x, AEOutput(x_rec=x_rec, z=x_rec), 0, nn.Conv2d(1, 1, 1))
    assert fake.calls == 1
    assert logs["perceptual"] == pytest.approx(0.25)
    assert total.item() == pytest.approx(0.5 + 3.0 * 0.25)
