"""train.precision (bf16 autocast with fp32 guards), train.compile, and their place in the run id."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pqstudy.config import ConfigError, apply_overrides, get_profile, validate
from pqstudy.cpu import emulated_bf16
from pqstudy.data.dataset import ImageDataset
from pqstudy.precision import autocast, guards, maybe_compile
from pqstudy.quantizers.lc import LCQuantizer
from pqstudy.quantizers.pq import ProductQuantizer
from pqstudy.quantizers.vq import VectorQuantizer
from pqstudy.quantizers.vq_ema import EMAVectorQuantizer
from pqstudy.quantizers.vq_fc import FactorizedVectorQuantizer
from pqstudy.runio import load_checkpoint

D, K, TARGET = 4, 8, 5


def near_codes(dim: int = D) -> torch.Tensor:
    """K codes at 10 + 0.2·k on channel 0 (10 elsewhere). The search compares ‖c‖² − 2x·c ≈ −‖x‖² ≈ −400 across codes
    0.03 to 1 apart: fp32 (spacing 3e-5 at 400) resolves that, bf16 (8 mantissa bits, spacing 2 at 400) rounds every
    code's value to the same one or two numbers, so a bf16 search picks another code than TARGET."""
    codes = torch.full((K, dim), 10.0)
    codes[:, 0] += 0.2 * torch.arange(K)
    return codes


def latents(dim: int = D, subspaces: int = 1) -> torch.Tensor:
    """(2, subspaces·dim, 2, 2) latents whose every (sub)vector is nearest (fp32) to code TARGET."""
    x = near_codes(dim)[TARGET] + torch.tensor([0.03] + [0.0] * (dim - 1))
    return x.repeat(subspaces).view(1, subspaces * dim, 1, 1).expand(2, -1, 2, 2).contiguous()


def identity_linear(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer


def build(kind: str):
    if kind == "vq":
        return VectorQuantizer(codebook_size=K, dim=D, codebook=near_codes())
    if kind == "vq-ema":
        return EMAVectorQuantizer(codebook_size=K, dim=D, codebook=near_codes())
    if kind == "vq-fc":
        q = FactorizedVectorQuantizer(codebook_size=K, dim=D, low_dim=D, codebook=near_codes())
        q.proj_in, q.proj_out = identity_linear(D), identity_linear(D)
        return q
    if kind == "lc":
        return LCQuantizer(codebook=near_codes(), dim=D, projector="none")
    if kind == "pq":  # two subspaces, each a vq of the near codes: the batched search
        return ProductQuantizer([VectorQuantizer(codebook_size=K, dim=D, codebook=near_codes()) for _ in range(2)])
    raise AssertionError(kind)


def indices(kind: str, bf16: bool) -> torch.Tensor:
    torch.manual_seed(0)
    q = build(kind).train()
    z = latents(D, subspaces=q.num_codebooks)
    with autocast("cpu", "bf16" if bf16 else "fp32"):
        out = q(z)
    return out.indices


@pytest.mark.parametrize("kind", ["vq", "vq-ema", "vq-fc", "lc", "pq"])
def test_bf16_autocast_keeps_the_fp32_code_assignment(kind):
    fp32 = indices(kind, bf16=False)
    assert (fp32 == TARGET).all()
    assert torch.equal(indices(kind, bf16=True), fp32)
    with guards(search=False, quantizer=False):  # the tensors do catch a missing guard: bf16 picks another code
        assert not torch.equal(indices(kind, bf16=True), fp32)


def test_ema_statistics_stay_fp32_under_autocast():
    q = build("vq-ema").train()
    with autocast("cpu", "bf16"):
        q(latents())
    assert q.embedding.dtype == q.embed_avg.dtype == q.cluster_size.dtype == torch.float32
    assert torch.isfinite(q.embedding).all()


def test_precision_is_validated_and_compile_is_not_a_result_field():
    cfg = get_profile("smoke")
    with pytest.raises(ConfigError, match=r"train\.precision='fp16'"):
        validate(apply_overrides(cfg, {"train.precision": "fp16"}))
    with pytest.raises(ConfigError, match="train.compile"):
        apply_overrides(cfg, {"train.compile": "maybe"})
    assert cfg.train.precision == "fp32" and cfg.train.compile is False  # never bf16 or compile by default
    # the smoke profile's id before train.precision/compile existed (and before it took 512 training images)
    assert apply_overrides(cfg, {"data.train_limit": 0}).run_id == "vq-fb5fbf2b15"
    assert apply_overrides(cfg, {"train.compile": True}).run_id == cfg.run_id
    assert apply_overrides(cfg, {"train.precision": "bf16"}).run_id not in (cfg.run_id, "vq-fb5fbf2b15")


def tiny(**over):
    cfg = apply_overrides(get_profile("smoke"), {"model.ch": 8, "model.z_channels": 8, "train.steps": 3,
                                                  "train.batch_size": 4, "train.history_every": 1,
                                                  "train.warmup_steps": 0, **over})
    return cfg, ImageDataset("synthetic", 32, images=torch.randint(0, 256, (16, 3, 32, 32),
                                                                  generator=torch.Generator().manual_seed(0),
                                                                  dtype=torch.uint8))


def test_bf16_training_runs_with_its_own_run_id(tmp_path):
    from pqstudy.train import train

    cfg, data = tiny(**{"train.precision": "bf16"})
    if emulated_bf16("cpu"):
        with pytest.warns(RuntimeWarning, match="emulated"):
            trained = train(cfg, tmp_path, progress=False, train_set=data)
    else:
        trained = train(cfg, tmp_path, progress=False, train_set=data)
    assert trained.summary["steps"] == 3
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in trained.model.parameters())
    fp32 = apply_overrides(cfg, {"train.precision": "fp32"})
    assert trained.summary["run_id"] == cfg.run_id != fp32.run_id


def test_compiled_training_checkpoints_plain_keys_and_resumes(tmp_path, monkeypatch):
    """torch.compile is replaced by its ``eager`` backend (inductor takes minutes here); the flag must reach it."""
    from pqstudy.train import train

    calls = []
    real = torch.compile

    def eager_compile(model, **kw):
        calls.append(type(model).__name__)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    cfg, data = tiny(**{"train.compile": True, "model.kind": "ae"})  # ae: the fastest to trace
    train(cfg, tmp_path / "a", progress=False, train_set=data, stop_at=2)
    assert calls == ["Autoencoder"]
    keys = list(load_checkpoint(tmp_path / "a")["model"])
    assert keys and not any("_orig_mod" in k for k in keys)
    resumed = train(cfg, tmp_path / "a", progress=False, train_set=data, resume=True)
    plain = train(apply_overrides(cfg, {"train.compile": False}), tmp_path / "b", progress=False, train_set=data)
    assert resumed.summary["steps"] == 3 and resumed.summary["run_id"] == plain.summary["run_id"]
    for (name, p), q in zip(resumed.model.named_parameters(), plain.model.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name


def test_maybe_compile_off_is_the_module_itself():
    model = nn.Linear(2, 2)
    assert maybe_compile(model, False) is model
    with pytest.raises(ValueError, match="guards"):
        with guards(nonsense=False):
            pass
    with pytest.raises(ValueError, match="train.precision"):
        autocast("cpu", "fp16")



def test_a_compiled_model_trains_into_the_gan_phase():
    # The adaptive GAN weight takes two autograd.grad(retain_graph=True) at the decoder's last layer. A backward
    # compiled with AOTAutograd's donated buffers (on by default) refuses that once an ordinary step has compiled it:
    # train.compile=True failed at the first GAN step (seen on an H200 and here). aot_eager: the same backward, fast.
    import torch._functorch.config as functorch_config

    from pqstudy.codebooks import codebook_for
    from pqstudy.losses import AutoencoderLoss
    from pqstudy.models import build_model

    cfg = apply_overrides(get_profile("smoke"), {
        "loss.disc_weight": 0.8, "loss.disc_start": 1, "loss.disc_ndf": 8, "loss.disc_layers": 1, "model.ch": 8,
        "model.num_res_blocks": 1, "model.ch_mult": "1", "model.attn_resolutions": ""})
    torch.manual_seed(0)
    model = build_model(cfg, codebook=codebook_for(cfg)).to(memory_format=torch.channels_last)
    loss_fn = AutoencoderLoss(cfg.loss)
    opt = torch.optim.Adam(model.parameters())
    saved = functorch_config.donated_buffer
    try:
        forward = maybe_compile(model, True, backend="aot_eager")
        x = (torch.rand(2, 3, 16, 16) * 2 - 1).contiguous(memory_format=torch.channels_last)
        for step in range(2):  # step 0 before disc_start, step 1 with the GAN and its adaptive weight
            total, logs = loss_fn.generator_loss(x, forward(x), step, model.last_layer())
            opt.zero_grad()
            total.backward()
            opt.step()
        assert logs["gan_weight"] > 0 and torch.isfinite(total)
    finally:
        functorch_config.donated_buffer = saved
        torch._dynamo.reset()
