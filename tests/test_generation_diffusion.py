import math

import pytest
import torch

from pqstudy.generation.diffusion import (
    DIT_SIZES,
    DiTConfig,
    LatentDiT,
    dit_config,
    forward_flops,
    integrate,
    sampling_flops,
)

TINY = dict(hidden=32, depth=2, heads=2)


def tiny(channels=4, grid=4, patch=1, **overrides) -> DiTConfig:
    return DiTConfig(channels=channels, grid=grid, patch=patch, **{**TINY, **overrides})


def randomised(cfg: DiTConfig, seed: int = 0) -> LatentDiT:
    """A model with every weight random, the adaLN-Zero ones included: a fresh model outputs 0 and proves nothing."""
    torch.manual_seed(seed)
    model = LatentDiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# shapes and initialisation


@pytest.mark.parametrize(
    ("channels", "grid", "patch"), [(4, 2, 1), (4, 2, 2), (8, 4, 1), (8, 4, 2), (16, 8, 1), (3, 8, 2)]
)
def test_shapes(channels, grid, patch):
    model = randomised(tiny(channels, grid, patch))
    x, t, y = torch.randn(3, channels, grid, grid), torch.rand(3), torch.tensor([0, 9, 10])
    assert model(x, t, y).shape == x.shape
    assert model.generate(torch.tensor([1, 2]), steps=2, generator=seeded()).shape == (2, channels, grid, grid)


def test_unpatchify_puts_each_token_on_its_patch():
    """With patch 2, a token's output lands on the 2×2 block it was cut from (row-major tokens)."""
    model = LatentDiT(tiny(channels=1, grid=4, patch=2))
    tokens = torch.arange(4.0).repeat_interleave(4).view(1, 4, 4)  # token k outputs the value k on its 4 pixels
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], dtype=torch.float32)
    assert torch.equal(model.unpatchify(tokens)[0, 0], expected)


def test_fresh_model_outputs_zero_then_learns():
    model = LatentDiT(tiny())
    x, t, y = torch.randn(5, 4, 4, 4), torch.rand(5), torch.tensor([0, 1, 2, 3, 10])
    assert torch.equal(model(x, t, y), torch.zeros_like(x))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(x, torch.tensor([0, 1, 2, 3, 4]), seeded()).backward()
    optimizer.step()
    assert model(x, t, y).abs().max() > 0  # adaLN-Zero blocks the output only at the start, not the gradient


def test_unconditional_model():
    model = randomised(tiny(num_classes=0))
    assert model.y_embedder is None
    x = torch.randn(2, 4, 4, 4)
    assert model(x, torch.rand(2)).shape == x.shape
    assert model.loss(x, None, seeded()).ndim == 0
    assert model.generate(3, steps=2, generator=seeded()).shape == (3, 4, 4, 4)


# ---------------------------------------------------------------------------------------------------------------
# training


def test_loss_falls_and_samples_land_on_a_toy_set():
    """Two classes, each a single fixed latent: the loss falls and the sampler returns latents near each class's."""
    torch.manual_seed(0)
    model = LatentDiT(tiny(grid=4, patch=2, num_classes=2))
    targets = torch.randn(2, 4, 4, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = seeded()
    losses = []
    for _ in range(150):
        y = torch.randint(0, 2, (32,), generator=g)
        loss = model.loss(targets[y], y, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 1.5 and last < 0.4 * first  # starts at E|x1 − x0|² ≈ 2
    model.eval()
    y = torch.tensor([0, 1] * 4)
    samples = model.generate(y, steps=20, solver="euler", generator=seeded(1))
    own, other = (samples - targets[y]).square().mean(), (samples - targets[1 - y]).square().mean()
    assert own < 0.25 and other > 4 * own


def test_loss_is_a_function_of_the_generator():
    model = randomised(tiny())
    x, y = torch.randn(4, 4, 4, 4), torch.tensor([0, 1, 2, 3])
    assert torch.equal(model.loss(x, y, seeded(3)), model.loss(x, y, seeded(3)))
    assert not torch.equal(model.loss(x, y, seeded(3)), model.loss(x, y, seeded(4)))


def test_class_dropout_only_in_training():
    model = randomised(tiny(class_dropout=0.5))
    x, y = torch.randn(8, 4, 4, 4), torch.arange(8)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].clone()))
    model.train().loss(x, y, seeded(0))
    model.eval().loss(x, y, seeded(0))
    train_labels, eval_labels = seen
    assert torch.equal(eval_labels, y)
    dropped = train_labels == model.null_class
    assert 0 < int(dropped.sum()) < 8 and torch.equal(train_labels[~dropped], y[~dropped])


def test_resume_is_bitwise_identical():
    """Three steps straight == two steps, save (model, optimiser, generator), rebuild, one more step."""
    cfg = tiny()
    data = [(torch.randn(4, 4, 4, 4, generator=seeded(10 + i)), torch.tensor([0, 1, 2, 3])) for i in range(3)]

    def run(model, optimizer, g, batches):
        for x, y in batches:
            optimizer.zero_grad()
            model.loss(x, y, g).backward()
            optimizer.step()

    straight = randomised(cfg)
    opt = torch.optim.AdamW(straight.parameters(), lr=1e-3)
    run(straight, opt, seeded(), data)

    first = randomised(cfg)
    opt, g = torch.optim.AdamW(first.parameters(), lr=1e-3), seeded()
    run(first, opt, g, data[:2])
    saved = {"model": first.state_dict(), "optimizer": opt.state_dict(), "generator": g.get_state()}
    resumed = LatentDiT(cfg)
    resumed.load_state_dict(saved["model"])
    opt = torch.optim.AdamW(resumed.parameters(), lr=1e-3)
    opt.load_state_dict(saved["optimizer"])
    g = torch.Generator()
    g.set_state(saved["generator"])
    run(resumed, opt, g, data[2:])
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------------------------------------------------
# sampling, on a velocity field known in closed form


def gaussian_velocity(mu: torch.Tensor, sigma: float):
    """The exact flow-matching velocity for data ``N(mu, σ²I)`` under ``x_t = t·x1 + (1 − t)·x0``:
    ``v(x, t) = mu + k(t)·(x − t·mu)`` with ``k = (t·σ² − (1 − t)) / (t²σ² + (1 − t)²)``. Its flow sends ``x0`` to
    ``mu + σ·x0``, along curved paths when σ ≠ 1."""

    def velocity(x, t):
        t = t.view(-1, *[1] * (x.ndim - 1))
        k = (t * sigma**2 - (1 - t)) / (t**2 * sigma**2 + (1 - t) ** 2)
        return mu + k * (x - t * mu)

    return velocity


@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_heun_beats_euler_at_its_order(sigma):
    torch.manual_seed(0)
    mu, x0 = torch.randn(1, 3, 2, 2).double(), torch.randn(6, 3, 2, 2).double()
    exact = mu + sigma * x0
    v = gaussian_velocity(mu, sigma)

    def error(solver, steps):
        return (integrate(v, x0, steps=steps, solver=solver) - exact).abs().max().item()

    e_euler, e_heun = error("euler", 20), error("heun", 20)
    assert e_heun < e_euler / 5
    assert 1.6 < error("euler", 20) / error("euler", 40) < 2.4  # first order: halving Δt halves the error
    assert 3.2 < error("heun", 20) / error("heun", 40) < 4.8  # second order: a quarter
    assert error("heun", 200) < 1e-4


class KnownField(LatentDiT):
    """A LatentDiT whose velocity is the exact field of ``N(mu_y, σ²I)`` per class; the null class has mu = 0."""

    sigma = 0.5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.mus = torch.randn(cfg.num_classes + 1, cfg.channels, cfg.grid, cfg.grid, generator=seeded(7))
        self.mus[cfg.num_classes] = 0
        self.batches = []

    def forward(self, x, t, y=None):
        self.check_labels(y, x.shape[0], allow_null=True)
        self.batches.append(x.shape[0])
        return gaussian_velocity(self.mus[y], self.sigma)(x, t)


@pytest.mark.parametrize("cfg_scale", [1.0, 0.0, 2.5])
def test_generate_integrates_the_guided_field(cfg_scale):
    """The field is affine in mu, so guidance ``v_null + s·(v_y − v_null)`` is the field of ``s·mu_y``: samples
    land on ``s·mu_y + σ·x0``, with ``x0`` the generator's first draw."""
    model = KnownField(tiny(num_classes=3))
    y = torch.tensor([0, 1, 2, 1])
    x0 = torch.randn(4, 4, 4, 4, generator=seeded(5))
    samples = model.generate(y, steps=100, solver="heun", cfg_scale=cfg_scale, generator=seeded(5))
    assert torch.allclose(samples, cfg_scale * model.mus[y] + model.sigma * x0, atol=1e-3)
    assert model.batches == [4 if cfg_scale == 1 else 8] * 200  # Heun: 2 evaluations per step


def test_cfg_scale_one_is_the_conditional_model():
    model = randomised(tiny())
    y = torch.tensor([3, 1, 4])
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[2].clone()))
    guided = model.generate(y, steps=4, solver="euler", cfg_scale=1.0, generator=seeded(2))
    g = seeded(2)
    x = torch.randn(3, 4, 4, 4, generator=g)
    with torch.no_grad():
        for i in range(4):
            x = x + 0.25 * model(x, torch.full((3,), i / 4), y)
    assert torch.equal(guided, x)
    assert all(torch.equal(labels, y) for labels in calls[:4])  # one forward per step, no null rows


def test_generate_is_deterministic_under_a_seed():
    model = randomised(tiny())
    y = torch.tensor([0, 5])
    a = model.generate(y, steps=3, cfg_scale=1.5, generator=seeded(9))
    assert torch.equal(a, model.generate(y, steps=3, cfg_scale=1.5, generator=seeded(9)))
    assert not torch.equal(a, model.generate(y, steps=3, cfg_scale=1.5, generator=seeded(10)))


# ---------------------------------------------------------------------------------------------------------------
# cost and sizes


def matmul_flops(cfg: DiTConfig) -> int:
    """An independent count of one sample's forward: 2 FLOPs per multiply-add of every linear map, the patch
    convolution and the two attention products."""
    d, n, w = cfg.hidden, cfg.tokens, int(cfg.hidden * cfg.mlp_ratio)
    per_block = n * (3 * d * d + d * d + 2 * d * w) + 2 * n * n * d + 6 * d * d
    embed = n * cfg.channels * cfg.patch**2 * d + 256 * d + d * d
    final = 2 * d * d + n * d * cfg.patch**2 * cfg.channels
    return 2 * (cfg.depth * per_block + embed + final)


@pytest.mark.parametrize(
    "cfg",
    [tiny(), tiny(grid=8, patch=2, depth=3), tiny(num_classes=0), dit_config("small", channels=8, grid=8)],
    ids=["tiny", "patch2", "unconditional", "small"],
)
def test_forward_flops_are_measured_with_attention(cfg):
    assert forward_flops(cfg) == matmul_flops(cfg)


def test_sampling_flops():
    cfg = tiny()
    f = forward_flops(cfg)
    assert sampling_flops(cfg, 50, "heun", 1.0) == 100 * f
    assert sampling_flops(cfg, 50, "euler", 1.0) == 50 * f
    assert sampling_flops(cfg, 50, "heun", 4.0) == 200 * f


def test_dit_xl_matches_the_paper():
    """DiT-XL/2 on 32×32×4 latents, 1000 classes: 675M parameters, 118.6 Gflops (one per multiply-add; DiT Table 4)."""
    cfg = dit_config("dit-xl", channels=4, grid=32, num_classes=1000)
    with torch.device("meta"):
        params = sum(p.numel() for p in LatentDiT(cfg).parameters())
    assert params == pytest.approx(675e6, rel=2e-3)
    assert forward_flops(cfg) / 2 == pytest.approx(118.6e9, rel=2e-3)


def test_small_is_about_a_million_parameters():
    params = sum(p.numel() for p in LatentDiT(dit_config("small", channels=8, grid=8)).parameters())
    assert 0.8e6 < params < 1.5e6
    assert set(DIT_SIZES) == {"small", "dit-xl"}


# ---------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(grid=8, patch=3), "grid=8 is not divisible by patch=3"),
        (dict(hidden=30, heads=4), "hidden=30 is not divisible by heads=4"),
        (dict(hidden=6, heads=2), "hidden=6: must be a multiple of 4"),
        (dict(channels=0), "channels=0"),
        (dict(num_classes=-1), "num_classes=-1"),
        (dict(class_dropout=1.0), "class_dropout=1.0"),
    ],
)
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_unknown_size():
    with pytest.raises(ValueError, match="size='dit-huge'"):
        dit_config("dit-huge", channels=4, grid=8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m(torch.randn(2, 3, 4, 4), torch.rand(2), torch.tensor([0, 1])), r"channels=4"),
        (lambda m: m(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 1])), r"grid=4"),
        (lambda m: m(torch.randn(2, 4, 4, 4), torch.rand(3), torch.tensor([0, 1])), r"t has shape \(3,\)"),
        (lambda m: m(torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 11])), r"labels \[11\] out of range"),
        (lambda m: m(torch.randn(2, 4, 4, 4), torch.rand(2), None), r"y=None"),
        (lambda m: m.loss(torch.randn(2, 4, 4, 4), torch.tensor([10, 1])), r"labels \[10\] out of range \[0, 9\]"),
        (lambda m: m.loss(torch.randn(2, 5, 4, 4), torch.tensor([0, 1])), r"x1 has shape \(2, 5, 4, 4\)"),
        (lambda m: m.generate(torch.tensor([-1, 0])), r"labels \[-1\] out of range"),
        (lambda m: m.generate(torch.tensor([0]), steps=0), "steps=0"),
        (lambda m: m.generate(torch.tensor([0]), solver="rk4"), "solver='rk4'"),
        (lambda m: m.generate(torch.tensor([0]), cfg_scale=math.inf), "cfg_scale=inf"),
        (lambda m: m.generate(2), "y=2"),
        (lambda m: sampling_flops(m.cfg, steps=-1), "steps=-1"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(LatentDiT(tiny()))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.generate(2, cfg_scale=2.0), r"cfg_scale=2.0: .*num_classes=0"),
        (lambda m: sampling_flops(m.cfg, cfg_scale=2.0), r"cfg_scale=2.0: .*num_classes=0"),
        (lambda m: m(torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 1])), "unconditional"),
        (lambda m: m.generate(torch.tensor([0, 1])), "number of samples"),
    ],
)
def test_bad_input_unconditional(call, match):
    with pytest.raises(ValueError, match=match):
        call(LatentDiT(tiny(num_classes=0)))


def test_guidance_needs_a_trained_null_class():
    with pytest.raises(ValueError, match="class_dropout=0"):
        LatentDiT(tiny(class_dropout=0.0)).generate(torch.tensor([0]), cfg_scale=3.0)
