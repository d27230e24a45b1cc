"""train_generator(cfg, out_dir, tokenizer_dir) → a generation run directory: config.json, checkpoint.pt, history.json.

One flat loop, top to bottom, like :mod:`pqstudy.train`. The generator trains on saved codes
(:func:`pqstudy.generation.codes.load_codes`), never on the encoder. The batch order is a pure function of
(seed, step) and every random draw (class dropout, diffusion noise and times) comes from one ``torch.Generator``
whose state the checkpoint holds, so ``resume=True`` reaches bitwise the same weights as an uninterrupted run.

Diffusion latents are standardised per channel with the training split's mean and std (stored with the model):
the flow model sees unit-variance latents whatever the tokenizer's scale.

Data-parallel (``torchrun --nproc-per-node N -m pqstudy generate ...``; :mod:`pqstudy.distributed`), as the
tokenizer's :mod:`pqstudy.train`: ``gen.batch_size`` is the global batch and each rank takes every N-th row of it;
the generator runs in DistributedDataParallel (its loss is the wrapped module's forward, :class:`GeneratorLoss`).
Every rank holds the same random generator and draws the whole global batch's noise, keeping its own rows
(:mod:`pqstudy.generation.draw`), so N ranks train what one process trains on the same global batch, up to the float
rounding of the gradient reduction, and a run resumes from any checkpoint on any world size. Each step's loss is
averaged over the ranks before the update: the history is the global batch's, and a non-finite loss on any rank
stops every rank, recorded by rank 0. Rank 0 extracts the codes first (the others then read its file; without a
shared filesystem each node extracts its own), holds the run directory and evaluates.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pqstudy import distributed
from pqstudy.cpu import flush_denormals, resolve_device
from pqstudy.generation import draw
from pqstudy.generation.ar import GPT_SIZES, GPTConfig, TokenGPT
from pqstudy.generation.codes import Codes, check_tokenizer, load_codes, what_for
from pqstudy.generation.config import GenRunConfig, validate_gen
from pqstudy.generation.diffusion import DIT_SIZES, DiTConfig, LatentDiT
from pqstudy.precision import training_autocast
from pqstudy.runio import load_checkpoint, write_json
from pqstudy.runio import save_checkpoint as write_checkpoint
from pqstudy.runlock import locked
from pqstudy.train import (
    NonFiniteLoss,
    TrainingDiverged,
    batch_indices,
    check_finite_weights,
    diverged,
    finite_global_loss,
    lr_factor,
    open_run_dir,
    record_error,
)

LOCK = ".train.lock"
BETAS = (0.9, 0.95)  # AdamW as nanoGPT / LlamaGen train their priors
HISTORY_EVERY = 50  # steps per history record (mean loss of the window)


class Standardiser(nn.Module):
    """Per-channel standardisation of latents (B, C, h, w): ``(z − mean) / std``, and back."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def fit(self, latents: Tensor) -> Standardiser:
        self.mean.copy_(latents.mean(dim=(0, 2, 3)))
        self.std.copy_(latents.std(dim=(0, 2, 3)).clamp_min(1e-6))
        return self

    def forward(self, z: Tensor) -> Tensor:
        return (z - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)


def ar_config(cfg: GenRunConfig, codes: Codes) -> GPTConfig:
    """The AR prior's model config for ``codes`` (indices (N, M, T))."""
    _, m, t = codes.data.shape
    return GPTConfig(positions=t, subspaces=m, vocab_size=codes.vocab_size, num_classes=codes.num_classes,
                     head=cfg.gen.head, class_dropout=cfg.gen.class_dropout, **GPT_SIZES[cfg.gen.size])


def dit_config(cfg: GenRunConfig, codes: Codes) -> DiTConfig:
    """The DiT's model config for ``codes`` (latents (N, C, h, h))."""
    _, c, h, _ = codes.data.shape
    return DiTConfig(channels=c, grid=h, num_classes=codes.num_classes, class_dropout=cfg.gen.class_dropout,
                     **DIT_SIZES[cfg.gen.size])


def build_ar(cfg: GenRunConfig, codes: Codes) -> nn.Module:
    return TokenGPT(ar_config(cfg, codes))


def build_diffusion(cfg: GenRunConfig, codes: Codes) -> nn.Module:
    return LatentDiT(dit_config(cfg, codes))


BUILDERS = {"ar": build_ar, "diffusion": build_diffusion}


def build_generator(cfg: GenRunConfig, codes: Codes) -> tuple[nn.Module, Standardiser | None]:
    """The generator for ``codes`` (seeded by the caller), and the latents' standardiser (diffusion only)."""
    model = BUILDERS[cfg.gen.kind](cfg, codes)
    scaler = Standardiser(codes.data.shape[1]).fit(codes.data.float()) if cfg.gen.kind == "diffusion" else None
    return model, scaler


@dataclass
class TrainedGenerator:
    model: nn.Module  # eval mode
    scaler: Standardiser | None
    codes: Codes  # the training split's codes
    device: torch.device
    summary: dict
    interrupted: bool = False
    main: bool = True  # False on data-parallel ranks other than 0: they leave evaluation and the files to rank 0


class GeneratorLoss(nn.Module):
    """A generator's training loss, ``model.loss(x, y, generator, share)``, as a module's ``forward``: what
    DistributedDataParallel wraps (it synchronises the gradients of what runs through ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None, generator: torch.Generator,
                share: tuple[int, int] = draw.WHOLE) -> Tensor:
        return self.model.loss(x, y, generator=generator, share=share)


def check_generation_run(cfg: GenRunConfig, tokenizer_dir: str | os.PathLike) -> None:
    """Everything that can be checked before training: the config, and that ``tokenizer_dir`` holds the finished
    tokenizer the config names (a ``TokenizerError`` / ``ConfigError`` naming the problem)."""
    from pqstudy.generation.codes import TokenizerError, read_run_config

    validate_gen(cfg)
    check_tokenizer(tokenizer_dir, cfg.tokenizer.data)
    _, stored_id = read_run_config(Path(tokenizer_dir))
    if stored_id and stored_id != cfg.tokenizer_run_id:
        raise TokenizerError(f"tokenizer {tokenizer_dir}: holds run {stored_id}, but this generation run names "
                             f"tokenizer run {cfg.tokenizer_run_id}")


def check_launch(cfg: GenRunConfig) -> tuple[distributed.World, torch.device]:
    """This process's data-parallel world (torchrun's environment; one process without it) and device, checked
    against ``gen.batch_size`` before any work (a ``DistributedError`` that says what to change)."""
    return distributed.launch(cfg.gen.batch_size, resolve_device(cfg.gen.device), "gen.batch_size")


def train_generator(cfg: GenRunConfig, out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, *,
                    resume: bool = False, progress: bool = True, stop_at: int | None = None) -> TrainedGenerator:
    """Train the generator of ``cfg`` on the codes of the tokenizer in ``tokenizer_dir`` into ``out_dir``.

    Bad input (config, tokenizer directory, image size, a data-parallel launch) fails before ``out_dir`` is
    created. ``stop_at`` stops after that many steps with a checkpoint; ``resume=True`` continues from
    ``out_dir/checkpoint.pt``. Under torchrun every rank calls this; rank 0 alone writes ``out_dir``."""
    check_generation_run(cfg, tokenizer_dir)
    world, device = check_launch(cfg)
    flush_denormals()
    out = Path(out_dir)
    started = distributed.start(world, device)
    with distributed.main_first(world):  # rank 0 extracts missing codes into the tokenizer's directory first
        codes = load_codes(tokenizer_dir, "train", what_for(cfg.gen.kind, cfg.gen.latent))
    if not world.main:
        trained = _train(cfg, out, codes, device, world, resume=resume, progress=False, stop_at=stop_at)
        distributed.stop(started)
        return trained
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"run directory {out}"):
        try:
            trained = _train(cfg, out, codes, device, world, resume=resume, progress=progress, stop_at=stop_at)
        except OSError as err:
            record_error(out, {"error": f"{type(err).__name__}: {err}", "run_id": cfg.run_id})
            raise
    distributed.stop(started)
    return trained


def generator_step(loss_of: nn.Module, opt, x: Tensor, y: Tensor | None, generator: torch.Generator,
                   share: tuple[int, int] = draw.WHOLE, amp=contextlib.nullcontext) -> float:
    """One training step on codes ``x`` and labels ``y``: the loss ``loss_of(x, y, generator, share)`` (a
    :class:`GeneratorLoss`, or its DDP wrapper, drawing class dropout and noise from ``generator``) under ``amp()``
    (``gen.precision``'s autocast), and the update. Returns the loss averaged over the data-parallel ranks (the
    global batch's); raises :class:`NonFiniteLoss` on every rank, before the update, when it is not finite on any.
    The learning-rate schedule is the caller's."""
    with amp():
        loss = loss_of(x, y, generator, share)
    value = finite_global_loss(loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return value


def _train(cfg: GenRunConfig, out: Path, codes: Codes, device, world: distributed.World, resume: bool,
           progress: bool, stop_at: int | None) -> TrainedGenerator:
    g, rid = cfg.gen, cfg.run_id
    ckpt = open_run_dir(out, rid, cfg.to_dict(), resume) if world.main else None
    ckpt = distributed.broadcast_state(ckpt)  # rank 0's checkpoint on every rank

    if g.threads:
        torch.set_num_threads(g.threads)
    torch.manual_seed(g.seed)
    model, scaler = build_generator(cfg, codes)
    model.to(device)
    data = codes.data if scaler is None else scaler(codes.data.float())
    labels = codes.labels
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, betas=BETAS, weight_decay=g.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, g))
    rng = torch.Generator().manual_seed(g.seed * 1_000_003 + 17)  # class dropout, noise, times
    step, wall, history, window = 0, 0.0, [], []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        rng.set_state(ckpt["rng"])
        step, wall, history, window = ckpt["step"], ckpt["wall_seconds"], ckpt["history"], ckpt["window"]

    # Data-parallel: DDP broadcasts rank 0's weights and averages the gradients; nothing else differs between ranks
    # (the buffers are constants, the random generator is in step everywhere)
    loss_of = GeneratorLoss(model)
    if world.parallel:
        loss_of = DistributedDataParallel(loss_of, device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=False)
    share = (world.rank, world.size)
    amp = training_autocast(device, g.precision, "gen.precision")  # the forward in bf16 for gen.precision=bf16

    def save_checkpoint() -> None:
        if not world.main:
            return
        state = {"run_id": rid, "step": step, "wall_seconds": wall, "history": history, "window": window,
                 "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "rng": rng.get_state(), "scaler": None if scaler is None else scaler.state_dict(),
                 "world_size": world.size}
        write_checkpoint(out, state)

    last = min(g.steps, stop_at) if stop_at is not None else g.steps
    bar = tqdm(total=g.steps, initial=step, desc=rid, disable=not progress, mininterval=1.0, dynamic_ncols=True)
    model.train()
    while step < last:
        started = time.perf_counter()
        idx = batch_indices(step, len(data), g.batch_size, g.seed, world.rank, world.size)
        x = data[idx].to(device)
        y = labels[idx].to(device) if labels is not None else None
        try:
            value = generator_step(loss_of, opt, x, y, rng, share, amp)
        except NonFiniteLoss as err:
            raise diverged(out, {"error": "non-finite loss", "step": step, "run_id": rid},
                           f"loss became {err.value} at step {step}", world.main) from None
        sched.step()
        step += 1
        wall += time.perf_counter() - started
        window.append(value)
        if step % HISTORY_EVERY == 0 or step == g.steps:
            history.append({"step": step, "loss": sum(window) / len(window), "lr": sched.get_last_lr()[0]})
            window = []
        if g.ckpt_every and step % g.ckpt_every == 0:
            save_checkpoint()
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    bar.close()
    check_finite_weights(model, out, step, rid, record=world.main)
    save_checkpoint()
    if world.main:
        write_json(out / "history.json", history)
    summary = {"run_id": rid, "tokenizer_run_id": cfg.tokenizer_run_id, "steps": step,
               "train_seconds": round(wall, 3), "parameters": sum(p.numel() for p in model.parameters()),
               "train_codes": len(codes)}
    if world.parallel:
        summary["world_size"] = world.size
    interrupted = step < g.steps
    if interrupted:
        summary["interrupted"] = True
    return TrainedGenerator(model.eval(), scaler, codes, device, summary, interrupted=interrupted, main=world.main)


def load_generator(run_dir: str | os.PathLike, cfg: GenRunConfig,
                   codes: Codes) -> tuple[nn.Module, Standardiser | None]:
    """The trained generator of a generation run directory (eval mode, CPU), rebuilt for ``codes``' shapes."""
    ckpt = load_checkpoint(run_dir)
    if ckpt["run_id"] != cfg.run_id:
        raise ValueError(f"{run_dir} holds generation run {ckpt['run_id']}, not {cfg.run_id}")
    model, scaler = build_generator(cfg, codes)
    model.load_state_dict(ckpt["model"])
    if scaler is not None:
        scaler.load_state_dict(ckpt["scaler"])
    return model.eval(), scaler


__all__ = ["BUILDERS", "GeneratorLoss", "Standardiser", "TrainedGenerator", "TrainingDiverged", "build_generator",
           "check_generation_run", "check_launch", "generator_step", "load_generator", "train_generator"]
