import math

import pytest
import torch

from pqstudy.generation.ar import GPT_SIZES, GPTConfig, TokenGPT, count_parameters, sample_logits

T, K, CLASSES = 6, 7, 3


def make(*, m=1, head="factorised", classes=CLASSES, positions=T, vocab=K, seed=0, **kw) -> TokenGPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        positions=positions, subspaces=m, vocab_size=vocab, num_classes=classes, head=head, **GPT_SIZES["tiny"], **kw
    )
    return TokenGPT(cfg).eval()


def tokens(b, m, *, positions=T, vocab=K, seed=1):
    return torch.randint(0, vocab, (b, m, positions), generator=torch.Generator().manual_seed(seed))


def reference_sample(model, y, *, cfg_scale=1.0, **sampling):
    """Sampling by definition: at each step a full, uncached forward pass of ``logits`` over the sequence so far (the
    future holds zeros, which causality makes irrelevant), guidance as uncond + s·(cond − uncond) from two separate
    passes. ``generate`` must draw the same codes from the same generator."""
    cfg = model.cfg
    b, null = y.shape[0], torch.full_like(y, cfg.num_classes)
    x = torch.zeros(b, cfg.subspaces, cfg.positions, dtype=torch.long)
    for i in range(cfg.steps):
        t, m = (i, slice(None)) if cfg.head == "factorised" else divmod(i, cfg.subspaces)
        logits = model.logits(x, y)[:, t, m]
        if cfg_scale != 1.0:
            uncond = model.logits(x, null)[:, t, m]
            logits = uncond + cfg_scale * (logits - uncond)
        x[:, m, t] = sample_logits(logits, **sampling)
    return x


# ---------------------------------------------------------------------------------------------------------------
# shapes and likelihood


@pytest.mark.parametrize("head", ["factorised", "flat"])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("classes", [0, CLASSES])
def test_shapes_and_the_loss_is_the_mean_nll(head, m, classes):
    model = make(m=m, head=head, classes=classes)
    x, y = tokens(4, m), torch.tensor([0, 1, 2, 0]) if classes else None
    assert model.logits(x, y).shape == (4, T, m, K)
    nll = model.nll(x, y)
    assert nll.shape == (4,) and bool((nll > 0).all())
    # the loss is nats per sub-token (no class dropout in eval mode); an untrained model is near uniform, log K
    assert model.loss(x, y).item() == pytest.approx(nll.mean().item() / (T * m), rel=1e-5)
    assert model.loss(x, y).item() == pytest.approx(math.log(K), rel=0.05)
    g = torch.Generator().manual_seed(0)
    samples = model.generate(y, num_samples=None if classes else 4, generator=g)
    assert samples.shape == (4, m, T) and samples.dtype == torch.long
    assert int(samples.min()) >= 0 and int(samples.max()) < K


def test_flat_and_factorised_are_the_same_model_at_one_subspace():
    factorised, flat = make(head="factorised"), make(head="flat", seed=5)
    a, b = factorised.state_dict(), flat.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    x, y = tokens(5, 1), torch.tensor([0, 1, 2, 3, 1])  # 3 = the null class
    assert not torch.allclose(factorised.nll(x, y), flat.nll(x, y))  # different weights, different likelihood
    flat.load_state_dict(a)
    assert torch.allclose(factorised.nll(x, y), flat.nll(x, y), atol=1e-5, rtol=0)
    assert torch.equal(factorised.generate(y, top_k=1), flat.generate(y, top_k=1))


def test_parameters_differ_only_in_positions_for_several_subspaces():
    a, b = make(m=3).state_dict(), make(m=3, head="flat").state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if a[k].shape != b[k].shape] == ["pos_emb.weight"]
    assert a["pos_emb.weight"].shape[0] == T and b["pos_emb.weight"].shape[0] == 3 * T


# ---------------------------------------------------------------------------------------------------------------
# causality


@pytest.mark.parametrize("j", [0, 4, 7, 3 * T - 2])
def test_flat_is_exactly_autoregressive(j):
    """Sub-token j (position-major) changes no logit of sub-tokens ≤ j, and does change that of sub-token j + 1."""
    model, m = make(m=3, head="flat"), 3
    x, y = tokens(2, m), torch.tensor([1, 2])
    t, sub = divmod(j, m)
    x2 = x.clone()
    x2[:, sub, t] = (x[:, sub, t] + 1) % K
    before, after = (model.logits(v, y).reshape(2, T * m, K) for v in (x, x2))
    assert torch.equal(before[:, : j + 1], after[:, : j + 1])
    assert not torch.allclose(before[:, j + 1], after[:, j + 1])


@pytest.mark.parametrize("t", [0, 2, T - 2])
@pytest.mark.parametrize("sub", [0, 2])
def test_factorised_heads_see_only_earlier_positions(t, sub):
    """Any sub-index of position t changes no logit of positions ≤ t (all M heads), and changes position t + 1's."""
    model = make(m=3)
    x, y = tokens(2, 3), torch.tensor([0, 2])
    x2 = x.clone()
    x2[:, sub, t] = (x[:, sub, t] + 1) % K
    before, after = model.logits(x, y), model.logits(x2, y)
    assert torch.equal(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1], after[:, t + 1])


@pytest.mark.parametrize("head", ["factorised", "flat"])
def test_the_class_token_conditions_the_first_position(head):
    model = make(m=2, head=head)
    x = tokens(1, 2)
    a, b = model.logits(x, torch.tensor([0])), model.logits(x, torch.tensor([1]))
    assert not torch.allclose(a[:, 0], b[:, 0])


# ---------------------------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("head", ["factorised", "flat"])
def test_a_tiny_model_learns_one_sequence_per_class(head):
    """Each class is one fixed grid: the loss falls from log K to near 0 in 60 steps, and greedy sampling with the
    label returns that class's grid."""
    model = make(m=2, head=head).train()
    grids = tokens(CLASSES, 2, seed=3)
    y = torch.arange(CLASSES).repeat(8)
    x = grids[y]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = model.loss(x, y, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(K), rel=0.05)
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    assert torch.equal(model.generate(torch.arange(CLASSES), top_k=1), grids)


def test_class_dropout_replaces_labels_by_the_null_class_in_training_only():
    model = make(class_dropout=1.0)
    x, y = tokens(3, 1), torch.tensor([0, 1, 2])
    null = torch.full_like(y, CLASSES)
    assert not torch.allclose(model.nll(x, y), model.nll(x, null))
    assert model.loss(x, y).item() == pytest.approx(model.nll(x, y).sum().item() / x.numel(), rel=1e-6)  # eval
    model.train()
    assert model.loss(x, y).item() == pytest.approx(model.nll(x, null).sum().item() / x.numel(), rel=1e-6)


def test_class_dropout_draws_from_the_generator():
    model = make(class_dropout=0.5).train()
    x, y = tokens(16, 1), torch.arange(16) % CLASSES

    def loss(seed):
        return model.loss(x, y, generator=torch.Generator().manual_seed(seed)).item()

    assert loss(0) == loss(0)
    assert len({loss(s) for s in range(6)}) > 1


# ---------------------------------------------------------------------------------------------------------------
# sampling


@pytest.mark.parametrize("head", ["factorised", "flat"])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_top_k_1_is_greedy(head, temperature):
    model = make(m=2, head=head)
    y = torch.tensor([0, 1, 2, 3])
    greedy = model.generate(y, top_k=1, temperature=temperature, generator=torch.Generator().manual_seed(0))
    x = torch.zeros_like(greedy)  # argmax decoding by full forward passes
    for i in range(model.cfg.steps):
        t, m = (i, slice(None)) if head == "factorised" else divmod(i, 2)
        x[:, m, t] = model.logits(x, y)[:, t, m].argmax(dim=-1)
    assert torch.equal(greedy, x)


@pytest.mark.parametrize("head", ["factorised", "flat"])
@pytest.mark.parametrize("sampling", [{}, {"temperature": 1.5, "top_k": 3}, {"top_p": 0.8}])
def test_guidance_scale_1_samples_exactly_the_conditional_model(head, sampling):
    model = make(m=2, head=head)
    y = torch.tensor([0, 1, 2, 0, 1, 2])

    def draw(fn, **kw):
        return fn(y, generator=torch.Generator().manual_seed(7), **sampling, **kw)

    samples = draw(model.generate, cfg_scale=1.0)
    assert torch.equal(samples, draw(model.generate))
    assert torch.equal(samples, draw(lambda *a, **kw: reference_sample(model, *a, **kw)))
    assert not torch.equal(samples, draw(model.generate, cfg_scale=4.0))


@pytest.mark.parametrize("head", ["factorised", "flat"])
def test_guided_samples_follow_uncond_plus_scale_times_the_difference(head):
    model = make(m=2, head=head)
    y = torch.tensor([0, 1, 2, 2])
    for scale in (0.0, 3.0):  # 0: the null class alone
        got = model.generate(y, cfg_scale=scale, top_k=1)
        assert torch.equal(got, reference_sample(model, y, cfg_scale=scale, top_k=1))
    assert torch.equal(model.generate(y, cfg_scale=0.0, top_k=1), model.generate(torch.full_like(y, 3), top_k=1))


@pytest.mark.parametrize("head", ["factorised", "flat"])
def test_a_seeded_generator_makes_generation_deterministic(head):
    model = make(m=2, head=head)
    y = torch.tensor([0, 1, 2])

    def draw(seed):
        return model.generate(y, cfg_scale=2.0, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


@pytest.mark.parametrize(
    "sampling, allowed",
    [
        ({}, {0, 1, 2, 3}),
        ({"top_k": 2}, {0, 1}),
        ({"top_k": 9}, {0, 1, 2, 3}),
        ({"top_p": 0.5}, {0}),  # the first code alone holds 0.5
        ({"top_p": 0.7}, {0, 1}),
        ({"top_p": 0.81}, {0, 1, 2}),
        ({"top_k": 2, "top_p": 0.9}, {0, 1}),
    ],
)
def test_sample_logits_keeps_the_top_k_and_the_nucleus(sampling, allowed):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(4000, 4)
    codes = sample_logits(logits, generator=torch.Generator().manual_seed(0), **sampling)
    assert codes.shape == (4000,) and set(codes.tolist()) == allowed
    # within the kept set the draws follow the renormalised probabilities
    kept = probs[sorted(allowed)] / probs[sorted(allowed)].sum()
    freq = torch.bincount(codes, minlength=4)[sorted(allowed)] / 4000
    assert torch.allclose(freq, kept, atol=0.03)


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0]).expand(4000, 3)

    def share_of_first(temperature):
        codes = sample_logits(logits, temperature=temperature, generator=torch.Generator().manual_seed(0))
        return (codes == 0).float().mean().item()

    assert share_of_first(0.25) > share_of_first(1.0) > share_of_first(4.0)
    assert share_of_first(1.0) == pytest.approx(torch.softmax(logits[0], 0)[0].item(), abs=0.03)


# ---------------------------------------------------------------------------------------------------------------
# sizes


def test_the_small_preset_fits_the_cpu_study():
    n = count_parameters(TokenGPT(GPTConfig(positions=64, vocab_size=1024, **GPT_SIZES["small"])))
    assert 0.5e6 <= n <= 1e6


def test_the_gpt_l_preset_is_llamagen_scale():
    """LlamaGen GPT-L: 343M parameters at 16×16 tokens and K = 16384 (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = TokenGPT(GPTConfig(positions=256, vocab_size=16384, num_classes=1000, **GPT_SIZES["gpt-l"]))
    assert 300e6 <= count_parameters(model) <= 400e6


# ---------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.nll(tokens(2, 2).int(), torch.tensor([0, 1])), "x: expected a long tensor"),
        (lambda m: m.nll(tokens(2, 2)[0], torch.tensor([0, 1])), "x: expected a long tensor"),
        (lambda m: m.nll(tokens(2, 3), torch.tensor([0, 1])), "x: shape .* M=subspaces=2"),
        (lambda m: m.nll(tokens(2, 2, positions=T + 1), torch.tensor([0, 1])), "T=positions=6"),
        (lambda m: m.loss(tokens(2, 2) + K, torch.tensor([0, 1])), r"outside \[0, vocab_size=7\)"),
        (lambda m: m.loss(tokens(2, 2) - 1, torch.tensor([0, 1])), r"outside \[0, vocab_size=7\)"),
        (lambda m: m.nll(tokens(2, 2), torch.tensor([0, 4])), r"y: labels .* outside \[0, num_classes=3\]"),
        (lambda m: m.nll(tokens(2, 2), torch.tensor([-1, 0])), r"y: labels .* outside"),
        (lambda m: m.nll(tokens(2, 2), torch.tensor([0.0, 1.0])), "y=.*integer tensor"),
        (lambda m: m.nll(tokens(2, 2), None), "y=None.*integer tensor"),
        (lambda m: m.nll(tokens(2, 2), torch.tensor([0, 1, 2])), r"y: shape \(3,\), expected \(2,\)"),
        (lambda m: m.generate(torch.tensor([0, 5])), "y: labels"),
        (lambda m: m.generate(None, num_samples=2), "y=None: the model is class-conditional"),
        (lambda m: m.generate(torch.tensor([0]), top_p=0.0), "top_p=0.0"),
        (lambda m: m.generate(torch.tensor([0]), top_p=1.5), "top_p=1.5"),
        (lambda m: m.generate(torch.tensor([0]), top_k=-1), "top_k=-1"),
        (lambda m: m.generate(torch.tensor([0]), temperature=0.0), "temperature=0.0"),
        (lambda m: m.generate(torch.tensor([0]), temperature=-1.0), "temperature=-1.0"),
        (lambda m: m.generate(torch.tensor([0, 1]), num_samples=3), "num_samples=3"),
        (lambda m: m.generate(torch.tensor([0]), cfg_scale=math.nan), "cfg_scale=nan"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(make(m=2))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.generate(None, num_samples=2, cfg_scale=2.0), "cfg_scale=2.0: guidance needs"),
        (lambda m: m.generate(None), "num_samples=None"),
        (lambda m: m.generate(None, num_samples=0), "num_samples=0"),
    ],
)
def test_bad_input_for_an_unconditional_model(call, match):
    with pytest.raises(ValueError, match=match):
        call(make(classes=0))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("positions", 0, "positions=0"),
        ("subspaces", 0, "subspaces=0"),
        ("vocab_size", 1, "vocab_size=1"),
        ("num_classes", -1, "num_classes=-1"),
        ("n_embd", 30, "n_embd=30 must be a multiple of n_head=4"),
        ("head", "tree", "head='tree'"),
        ("dropout", 1.0, "dropout=1.0"),
        ("class_dropout", 1.5, "class_dropout=1.5"),
    ],
)
def test_bad_config_names_the_field(field, value, match):
    kw = {"positions": 4, "n_head": 4, "n_embd": 32, field: value}
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kw)
