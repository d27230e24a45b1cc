"""`make gpu-check`: the GPU path checked, where a GPU is present; where none is, it says so and exits 0.

The parts of :func:`check`, in order (each row is written to the CSV as soon as it is measured):

1. Agreement. The smoke profile trains for ``--compare-steps`` steps through :func:`pqstudy.train.train` on the
   device and on the CPU, fp32, from the same seed and batches, with TF32 off, for each of ``--compare-kinds``. The
   per-step total losses and the final parameters must agree within :data:`LOSS_TOLERANCE` / :data:`PARAM_TOLERANCE`
   (see there for why those values).
2. Resume. A ``kl`` smoke run resumed from a mid-run checkpoint must match an uninterrupted one
   (:data:`RESUME_TOLERANCE`; deterministic kernels on): it samples its latent from the device's generator.
3. Throughput. For each kind (``vq``, ``vq-fc``, ``vq-ema``, ``lc``, ``pq`` and the continuous ``ae`` / ``kl``) the
   paper profile's model at :data:`PAPER_POINTS` (``lc`` with a random bank, as no data is on the machine) trains
   with bf16 autocast (``train.precision=bf16``, the fp32 guards of :mod:`pqstudy.precision`) on synthetic random
   images of the paper's size and batch: ``--warmup`` steps, then up to ``--steps`` timed steps before the GAN starts
   and ``--gan-steps`` after it (``torch.cuda.synchronize`` around them); peak memory is
   ``torch.cuda.max_memory_allocated``. A non-finite loss fails the check, naming the kind, step and value. LPIPS(VGG)
   is in the loss: the real weights where installed, else the same network with a random trunk for timing only.
4. ``--extras fp32,compile``: ``pq`` again in fp32 (bf16's speed-up) and with ``torch.compile`` (the compile's time
   is the warm-up's). ``--generators ar,diffusion``: the paper profile's GPT-L prior and DiT-XL/2 trained on random
   codes of their tokenizers' shapes (:func:`generator_throughput`) at each of ``--gen-precisions`` (``fp32``;
   ``bf16``: ``gen.precision=bf16``), then 2 samples drawn.

``--budget-seconds`` shares a wall-clock budget between the parts (the steps timed are in the CSV). Writes
``results/benchmarks/gpu.csv`` naming the card (``torch.cuda.get_device_name``), torch's and CUDA's versions and the
date; ``benchmarks/gpu_hours.py`` turns it into GPU hours per grid. Exit 1 on a failure, naming it.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpu_check.py [--steps 200] [--kinds vq,pq] [--device cuda]
    # what ran on the H200 (one 15-minute lease):
    python3 benchmarks/gpu_check.py --budget-seconds 400 --extras fp32,compile --generators ar,diffusion
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.codebooks import codebook_for
from pqstudy.config import PRECISIONS, apply_overrides, get_profile
from pqstudy.cpu import device_name, memory_format
from pqstudy.data.dataset import ImageDataset
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model
from pqstudy.precision import maybe_compile, training_autocast
from pqstudy.train import NonFiniteLoss, load_history, train, train_step

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (the resume check), set before CUDA
OUT = Path("results/benchmarks/gpu.csv")
KINDS = ("vq", "vq-fc", "vq-ema", "lc", "pq", "ae", "kl")
EXTRAS = ("fp32", "compile")  # pq again in fp32 (bf16's speed-up), and with torch.compile (compile time, speed-up)
NO_GPU = "gpu-check: no CUDA GPU is present (torch {torch}, CUDA build: {cuda}); nothing measured, nothing written"

# Tolerances of the device-vs-CPU agreement, relative. fp32 on a GPU sums in another order than on a CPU (cuDNN's
# convolution algorithms, reductions), so the two runs differ by rounding, ~1e-7 relative per operation at first,
# which training grows: Adam's step is ~lr whatever the gradient's size, and a near-tie of the nearest-code argmin
# that resolves the other way moves a latent to another code and that code's update with it. Calibrated on this CPU
# (``--calibrate``; 20 smoke steps of vq, one thread, machine loaded): the learning rate changed by 1e-6 relative, a
# rounding-sized change, moved the losses by 1.5e-6 and the parameters by 1.8e-4 (the codebook rows that changed
# hands); by 1e-3 relative: 3.7e-4 and 2.2e-3; by 1.5×: 1.2e-2 and 3.4e-2. The tolerances pass the first two, a
# wrong-but-close run, and fail the last; a real bug (a bf16 search, a wrong kernel, a missing sync) moves the losses
# by 1e-2 or more. The GPU's own rounding has not been measured against them yet (no GPU in this project so far).
LOSS_TOLERANCE = 1e-3  # max over steps of |loss_device − loss_cpu| / |loss_cpu|
PARAM_TOLERANCE = 5e-3  # ‖θ_device − θ_cpu‖ / ‖θ_cpu‖ over all parameters at the end
# A resumed run against an uninterrupted one on the same device, deterministic kernels on: the same kernels on the same
# inputs, so equal up to what nondeterminism is left, far below the 1e-2-sized jump a replayed random draw gives. On an
# H200 with cuDNN's default (nondeterministic) kernels two uninterrupted kl runs of 4 steps differed by 1.4e-4.
RESUME_TOLERANCE = 1e-5


class CheckFailed(RuntimeError):
    """The GPU check failed: a non-finite loss, or the device disagrees with the CPU beyond tolerance."""


# The paper grid point each kind is timed at (``--profile paper``): the largest codebook the paper grids train, so
# the nearest-code search is at its most costly (lc-method-size: K = 100,000, dim 32; PQ as pq-subspaces' M = 64).
PAPER_POINTS = {
    "vq": {"quantizer.codebook_size": 100_000, "quantizer.dim": 32, "quantizer.low_dim": 8},
    "vq-fc": {"quantizer.codebook_size": 100_000, "quantizer.dim": 32, "quantizer.low_dim": 8},
    "vq-ema": {"quantizer.codebook_size": 100_000, "quantizer.dim": 32, "quantizer.low_dim": 8},
    "lc": {"quantizer.codebook_size": 100_000, "quantizer.dim": 32, "quantizer.low_dim": 8},
    "pq": {"quantizer.subspaces": 64},
}


def kind_config(kind: str, profile: str = "paper", precision: str = "bf16", cache_dir: str = ""):
    """``profile``'s config with quantiser (or model) ``kind``; on the paper profile at :data:`PAPER_POINTS`;
    ``lc`` with a random bank (no data needed)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose from {list(KINDS)}")
    cfg = get_profile(profile)
    over: dict = {"train.precision": precision}
    if kind in ("ae", "kl"):
        over["model.kind"] = kind
    else:
        over["quantizer.kind"] = kind
        if kind != "pq":
            over["quantizer.subspaces"] = 1
        else:
            over["quantizer.subspaces"] = cfg.quantizer.subspaces if cfg.quantizer.subspaces > 1 else 2
        if profile == "paper":
            over.update(PAPER_POINTS[kind])
    if kind == "lc":
        over.update({"quantizer.lc_source": "random", "quantizer.lc_init": "uniform",
                     "quantizer.codebook_cache": cache_dir})
    return apply_overrides(cfg, over)


def sync_time(device) -> float:
    """``time.perf_counter()`` after the device's queued work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_steps(step, n: int, seconds: float | None, device) -> tuple[int, float]:
    """Call ``step(i)`` for i = 0, 1, … up to ``n`` times, stopping once ``seconds`` (None: no cap) have passed
    (at least one call); the calls made and their wall time, the device's queued work included."""
    start, done = sync_time(device), 0
    while done < n and (seconds is None or done == 0 or time.perf_counter() - start < seconds):
        step(done)
        done += 1
    return done, sync_time(device) - start


def synthetic_images(n: int, size: int, seed: int = 0) -> ImageDataset:
    """``n`` uniformly random uint8 images (3, size, size): a stand-in for data where there is none."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset("synthetic", size, images=images)


def _perceptual(cfg, device) -> tuple[torch.nn.Module | None, str]:
    """LPIPS(VGG) for the paper's loss, and what it is: the real weights when installed; else, for timing only, the
    same network with a random trunk (the compute is the same; its values are not LPIPS and are never reported);
    else (no lpips package) none, and the loss leaves the term out."""
    if cfg.loss.perceptual_weight <= 0:
        return None, "none (perceptual_weight=0)"
    from pqstudy.metrics.perceptual import load_lpips

    module, reason = load_lpips("vgg", device=device)
    if module is not None:
        return module, "lpips-vgg"
    try:
        module, _ = load_lpips("vgg", device=device, random_backbone=True)
    except (ImportError, FileNotFoundError, KeyError, TypeError) as err:
        return None, f"none ({reason}; random-trunk fallback failed: {type(err).__name__})"
    if module is None:
        return None, f"none ({reason})"
    return module, "lpips-vgg, random trunk (timing only: no VGG weights on the machine)"


def throughput(cfg, device, steps: int = 200, warmup: int = 10, kind: str = "", gan_steps: int = 0,
               seconds: float | None = None, compile: bool = False) -> dict:
    """Train ``cfg``'s model on synthetic images at ``cfg.train.batch_size`` and the config's precision with the
    training loop's own step (:func:`pqstudy.train.train_step`: the autoencoder's update, then the discriminator's
    once the GAN is on): ``warmup``
    steps, then up to ``steps`` timed steps of the autoencoder phase (before ``loss.disc_start``), then, when
    ``gan_steps``, a few warm-up and up to ``gan_steps`` timed steps of the GAN phase (discriminator and adaptive
    weight on). ``seconds`` caps the timed steps (the steps timed are reported). ``compile``: the forward through
    ``torch.compile``; the warm-up's wall time (the compile) is reported. Peak memory (CUDA) over everything.
    Raises :class:`CheckFailed` on a non-finite loss."""
    device = torch.device(device)
    torch.manual_seed(cfg.train.seed)
    fmt = memory_format(device)
    model = build_model(cfg, codebook=codebook_for(cfg)).to(device, memory_format=fmt)
    perceptual, perceptual_kind = _perceptual(cfg, device)
    loss_cfg = apply_overrides(cfg, {"loss.perceptual_weight": 0.0}).loss if perceptual is None else cfg.loss
    loss_fn = AutoencoderLoss(loss_cfg, perceptual=perceptual).to(device, memory_format=fmt)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=cfg.train.lr) if loss_fn.uses_gan else None
    forward = maybe_compile(model, compile)
    b, s = cfg.train.batch_size, cfg.data.image_size
    data = synthetic_images(4 * b, s, seed=cfg.train.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    amp = training_autocast(device, cfg.train.precision)

    def one_step(i: int, step: int) -> None:  # the training loop's own step (pqstudy.train.train_step)
        x = data.images[(torch.arange(b) + i * b) % len(data)].to(device).float().div(127.5).sub(1.0)
        x = x.contiguous(memory_format=fmt)
        try:
            _, logs = train_step(x, step, forward=forward, model=model, loss_fn=loss_fn, opt=opt, opt_d=opt_d,
                                 amp=amp, disc_start=cfg.loss.disc_start)
        except NonFiniteLoss as err:
            raise CheckFailed(f"{kind or cfg.quantizer.kind}: loss {err.value} at step {step} on {device}") from None
        loss = logs["total"]
        row["final_loss"] = round(loss, 5)

    row: dict = {}
    t0 = sync_time(device)
    for i in range(warmup):
        one_step(i, i)
    row["warmup_seconds"] = round(sync_time(device) - t0, 2)
    done, wall = time_steps(lambda i: one_step(warmup + i, warmup + i), steps, seconds, device)
    row.update({"steps": done, "images_per_second": round(done * b / wall, 2),
                "seconds_per_step": round(wall / done, 4)})
    if gan_steps and opt_d is not None:
        start = cfg.loss.disc_start  # step numbers past disc_start: the GAN terms are on
        for i in range(3):
            one_step(i, start + i)
        done, wall = time_steps(lambda i: one_step(3 + i, start + 3 + i), gan_steps, seconds, device)
        row.update({"gan_steps": done, "gan_seconds_per_step": round(wall / done, 4)})
    row.update({"peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
                "perceptual": perceptual_kind, "compile": compile,
                "parameters": sum(p.numel() for p in model.parameters())})
    return row


IMAGENET_CLASSES = 1000


def generator_config(kind: str, profile: str = "paper"):
    """``profile``'s generator of ``kind`` on a PQ tokenizer, as the study runs it (the gen-ar grid's AR prior, the
    gen-diffusion grid's flow DiT; the first on a quantised tokenizer where none is PQ). Paper profile: a GPT-L prior,
    a DiT-XL/2."""
    from pqstudy.generation.config import GenRunConfig
    from pqstudy.study.grids import grid_configs

    grid = {"ar": "gen-ar", "diffusion": "gen-diffusion"}[kind]
    gens = [c for c in grid_configs(grid, profile) if isinstance(c, GenRunConfig) and c.gen.kind == kind
            and c.tokenizer.model.kind == "quantized"]
    return next((c for c in gens if c.tokenizer.quantizer.kind == "pq"), gens[0])


def synthetic_codes(cfg, n: int, device="cpu"):
    """``n`` random codes of the shape generator ``cfg``'s tokenizer gives (AR: (n, M, h·w) indices in [0, K);
    diffusion: (n, D, h, h) latents), with ImageNet's labels; on ``device`` (``meta``: shapes only)."""
    from pqstudy.generation.codes import Codes

    tok, g = cfg.tokenizer, cfg.gen
    grid = tok.data.image_size // 2 ** (len(tok.model.ch_mult) - 1)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, IMAGENET_CLASSES, (n,), generator=gen).to(device)
    if g.kind == "ar":
        k = tok.quantizer.codebook_size
        data = torch.randint(0, k, (n, tok.quantizer.subspaces, grid * grid), generator=gen).to(device)
        return Codes("indices", data, labels, IMAGENET_CLASSES, grid, k, "")
    channels = tok.quantizer.dim  # D: every autoencoder's latent width (quant_conv: z_channels → D)
    data = torch.randn(n, channels, grid, grid, generator=gen).to(device)
    return Codes(g.latent, data, labels, IMAGENET_CLASSES, grid, 0, "")


def generator_throughput(cfg, device, steps: int = 20, warmup: int = 3, seconds: float | None = None,
                         batch_size: int = 32) -> dict:
    """Training steps of generator ``cfg`` (a ``GenRunConfig``) on random codes of its tokenizer's shape (the
    training loop's own step, :func:`pqstudy.generation.train.generator_step`, with its AdamW, at ``gen.precision``),
    ``warmup`` untimed, then up to ``steps`` timed (``seconds`` caps them).
    ``batch_size`` is one GPU's share of the config's global batch (256 does not fit one GPU's memory at these
    sizes): GPU hours follow from images/s."""
    from pqstudy.generation.train import BETAS, GeneratorLoss, build_generator, generator_step

    device = torch.device(device)
    g = cfg.gen
    codes = synthetic_codes(cfg, 2 * batch_size)
    labels = codes.labels
    torch.manual_seed(g.seed)
    model, scaler = build_generator(cfg, codes)
    model.to(device).train()
    data = codes.data if scaler is None else scaler(codes.data.float())
    opt = torch.optim.AdamW(model.parameters(), lr=g.lr, betas=BETAS, weight_decay=g.weight_decay)
    loss_of = GeneratorLoss(model)
    amp = training_autocast(device, g.precision, "gen.precision")
    rng = torch.Generator().manual_seed(1)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    losses = []

    def one_step(i: int) -> None:  # the generator training loop's own step
        idx = (torch.arange(batch_size) + i * batch_size) % len(codes)
        try:
            losses.append(generator_step(loss_of, opt, data[idx].to(device), labels[idx].to(device), rng, amp=amp))
        except NonFiniteLoss as err:
            raise CheckFailed(f"generator {g.kind} ({g.size}): loss {err.value} at step {i} on {device}") from None

    for i in range(warmup):
        one_step(i)
    done, wall = time_steps(lambda i: one_step(warmup + i), steps, seconds, device)
    # sampling on the device from a CPU generator, as the study's evaluation seeds it: 2 samples (AR: every position;
    # diffusion: 2 Heun steps), finite and of the codes' shape
    model.eval()
    t0 = sync_time(device)
    with torch.no_grad():
        y = labels[:2].to(device)
        if g.kind == "ar":
            sample = model.generate(y, generator=torch.Generator().manual_seed(2))
        else:
            sample = model.generate(y, steps=2, solver="heun", generator=torch.Generator().manual_seed(2))
    sample_seconds = sync_time(device) - t0
    if tuple(sample.shape[1:]) != tuple(codes.data.shape[1:]) or not torch.isfinite(sample.float()).all():
        raise CheckFailed(f"generator {g.kind} ({g.size}): samples of shape {tuple(sample.shape)} "
                          f"(expected (2, {', '.join(map(str, codes.data.shape[1:]))})), or not finite")
    return {"steps": done, "seconds_per_step": round(wall / done, 4), "sample_seconds_2": round(sample_seconds, 2),
            "images_per_second": round(done * batch_size / wall, 2), "final_loss": round(losses[-1], 5),
            "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
            "parameters": sum(p.numel() for p in model.parameters()), "warmup": warmup}


@contextlib.contextmanager
def _no_tf32():
    """TF32 off (fp32 matmuls and convolutions in full fp32 on Ampere and later) for the agreement run."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _smoke_run(device: str, steps: int, lr_factor: float, kind: str) -> tuple[list[float], torch.Tensor]:
    """Per-step total losses and the flat final parameters of ``steps`` smoke steps through ``train()``."""
    cfg = kind_config(kind, "smoke", "fp32")
    cfg = apply_overrides(cfg, {"train.steps": steps, "train.history_every": 1, "train.device": device,
                                "train.lr": cfg.train.lr * lr_factor, "train.threads": 1})
    data = synthetic_images(8 * cfg.train.batch_size, cfg.data.image_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp, _no_tf32():
        trained = train(cfg, tmp, progress=False, train_set=data)
        losses = [r["total"] for r in load_history(tmp)]
    flat = torch.cat([p.detach().float().cpu().reshape(-1) for p in trained.model.parameters()])
    return losses, flat


def agreement(device: str = "cuda", reference: str = "cpu", steps: int = 20, kind: str = "vq",
              lr_factor: float = 1.0) -> dict:
    """Smoke training on ``device`` against ``reference`` (fp32, same seed and batches); ``lr_factor`` perturbs the
    learning rate of the ``device`` run (to calibrate the tolerances, and to show a wrong run fails)."""
    ref_losses, ref_params = _smoke_run(reference, steps, 1.0, kind)
    losses, params = _smoke_run(device, steps, lr_factor, kind)
    loss_diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, ref_losses, strict=True))
    param_diff = ((params - ref_params).norm() / ref_params.norm().clamp_min(1e-12)).item()
    ok = loss_diff <= LOSS_TOLERANCE and param_diff <= PARAM_TOLERANCE
    return {"kind": f"agreement:{kind}", "device": device, "reference": reference, "steps": steps,
            "max_loss_rel_diff": loss_diff, "param_rel_diff": param_diff, "loss_tolerance": LOSS_TOLERANCE,
            "param_tolerance": PARAM_TOLERANCE, "ok": ok}


@contextlib.contextmanager
def _deterministic():
    """Deterministic kernels where torch has them (cuDNN's, cuBLAS's with ``CUBLAS_WORKSPACE_CONFIG``, set at import);
    a warning, not an error, where it has none."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def resume_matches(device: str = "cuda", kind: str = "kl", steps: int = 4) -> dict:
    """``steps`` smoke steps on ``device`` in one go against half of them, a checkpoint and a resume: the same weights
    (``kl`` samples its latent from the device's generator, whose state the checkpoint must carry). Run with
    deterministic kernels; a second uninterrupted run measures what nondeterminism is left (``rerun_abs_diff``), and
    the resumed run passes within :data:`RESUME_TOLERANCE` or three times that."""
    cfg = kind_config(kind, "smoke", "fp32")
    cfg = apply_overrides(cfg, {"train.steps": steps, "train.device": device, "train.threads": 1})
    data = synthetic_images(8 * cfg.train.batch_size, cfg.data.image_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp, _no_tf32(), _deterministic():
        whole = train(cfg, Path(tmp) / "whole", progress=False, train_set=data).model
        again = train(cfg, Path(tmp) / "again", progress=False, train_set=data).model
        train(cfg, Path(tmp) / "resumed", progress=False, train_set=data, stop_at=steps // 2)
        resumed = train(cfg, Path(tmp) / "resumed", progress=False, train_set=data, resume=True).model

    def max_diff(a, b) -> float:
        return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))

    diff, rerun = max_diff(whole, resumed), max_diff(whole, again)
    return {"kind": f"resume:{kind}", "device": device, "steps": steps, "max_param_abs_diff": diff,
            "rerun_abs_diff": rerun, "ok": diff <= max(RESUME_TOLERANCE, 3 * rerun)}


def _write(rows: list[dict], out) -> None:
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)


def _kind_row(kind, profile, precision, compiled, device, steps, warmup, gan_steps, share, cache,
              failures: list) -> dict:
    """One kind's throughput row; a failure is recorded in the row and appended to ``failures``."""
    cfg = kind_config(kind, profile, precision, cache)
    q = cfg.quantizer
    row = {"kind": kind, "profile": profile, "precision": precision, "device": device,
           "batch_size": cfg.train.batch_size, "image_size": cfg.data.image_size, "warmup": warmup,
           "codebook_size": q.codebook_size if cfg.model.kind == "quantized" else None,
           "subspaces": q.subspaces if cfg.model.kind == "quantized" else None,
           "seconds_cap": None if share is None else round(share, 1)}
    try:
        row.update(throughput(cfg, device, steps, warmup, kind=kind, gan_steps=gan_steps, seconds=share,
                              compile=compiled))
        row["ok"] = True
    except CheckFailed as err:
        row.update({"ok": False, "error": str(err)})
        failures.append(str(err))
    except torch.OutOfMemoryError as err:  # the paper's batch must fit one GPU: a failure, the rest goes on
        row.update({"ok": False, "error": f"{kind}: out of memory at batch {cfg.train.batch_size}: "
                                          f"{str(err).splitlines()[0]}"})
        failures.append(row["error"])
        torch.cuda.empty_cache()
    except Exception as err:  # torch.compile's errors among them: recorded, the rest goes on
        if not compiled:
            raise
        row.update({"ok": False, "compile": True, "error": f"torch.compile: {type(err).__name__}: "
                                                           f"{str(err).splitlines()[0] if str(err) else ''}"})
        failures.append(row["error"])
    return row


def _generator_row(kind, precision, device, steps, share, batch, failures: list) -> dict:
    """One paper generator's throughput row at ``precision`` (see :func:`generator_throughput`)."""
    cfg = generator_config(kind)
    cfg.gen.precision = precision
    row = {"kind": f"gen-{kind}:{cfg.gen.size}", "profile": "paper", "precision": precision, "device": device,
           "batch_size": batch, "global_batch": cfg.gen.batch_size, "image_size": cfg.tokenizer.data.image_size,
           "seconds_cap": None if share is None else round(share, 1), "compile": False}
    try:
        row.update(generator_throughput(cfg, device, steps=steps, seconds=share, batch_size=batch))
        row["ok"] = True
    except CheckFailed as err:
        row.update({"ok": False, "error": str(err)})
        failures.append(str(err))
    except torch.OutOfMemoryError as err:  # a capacity fact at this batch, recorded; not a wrong result
        row.update({"ok": False, "error": f"out of memory at batch {batch}: {str(err).splitlines()[0]}"})
        torch.cuda.empty_cache()
    return row


def check(device: str = "cuda", kinds=KINDS, steps: int = 200, warmup: int = 10, profile: str = "paper",
          precision: str = "bf16", compare_steps: int = 20, compare_kind: str | tuple = "vq", reference: str = "cpu",
          lr_factor: float = 1.0, out: str | Path | None = OUT, gan_steps: int = 0, budget_seconds: float = 0.0,
          extras: tuple | bool = (), generators: tuple = (), gen_steps: int = 20,
          gen_batch: int = 32, gen_precisions: tuple = ("fp32",)) -> list[dict]:
    """Both parts of the check on ``device`` (see the module docstring), the agreement first; rows written to
    ``out`` after each (None: not written), then :class:`CheckFailed` raised for the first failure.
    ``device="cpu"`` runs the same code on the CPU (the tests do, on the smoke profile).

    ``budget_seconds`` (0: none) shares a wall-clock budget between the kinds: each kind's timed steps stop at its
    share (the steps timed are in the CSV). ``extras``: after the kinds, ``pq`` again in fp32 (bf16's speed-up) and
    with ``torch.compile`` (compile time and speed-up), each only while the budget leaves room for it.
    ``generators`` (``ar``, ``diffusion``): then the paper profile's headline generators, ``gen_steps`` timed steps
    each (:func:`generator_throughput`) at each of ``gen_precisions``, while the budget leaves 30 s."""
    began = time.perf_counter()
    stamp = {"card": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
             "date": datetime.date.today().isoformat(), "data": "synthetic random images (no ImageNet on the machine)"}
    rows, failures = [], []

    def left() -> float:
        return budget_seconds - (time.perf_counter() - began) if budget_seconds else math.inf

    compare_kinds = (compare_kind,) if isinstance(compare_kind, str) else tuple(compare_kind)
    for kind in compare_kinds if compare_steps else ():
        row = agreement(device, reference, compare_steps, kind, lr_factor)
        print(row, flush=True)
        rows.append({**row, **stamp})
        if not row["ok"]:
            failures.append(f"{kind}: {device} vs {reference}: losses differ by {row['max_loss_rel_diff']:.3g} "
                            f"(tolerance {LOSS_TOLERANCE}), parameters by {row['param_rel_diff']:.3g} (tolerance "
                            f"{PARAM_TOLERANCE}) after {compare_steps} smoke steps")
        _write(rows, out)
    if compare_steps:
        row = resume_matches(device)
        print(row, flush=True)
        rows.append({**row, **stamp})
        if not row["ok"]:
            failures.append(f"{device}: a resumed kl run differs from an uninterrupted one by "
                            f"{row['max_param_abs_diff']:.3g} (tolerance {RESUME_TOLERANCE})")
        _write(rows, out)
    # order: every kind (the check proper), then pq in fp32, the generators, and pq compiled last (its compile is
    # not capped); the extras and generators share a reserve of 40% of the budget
    extras = EXTRAS if extras is True else tuple(extras or ())
    arms = [("kind", kind, precision, False) for kind in kinds]
    if "fp32" in extras:
        arms.append(("kind", "pq", "fp32", False))
    arms += [("generator", gen_kind, prec, False) for gen_kind in generators for prec in gen_precisions]
    if "compile" in extras:
        arms.append(("kind", "pq", precision, True))
    reserve = 0.4 * budget_seconds if (extras or generators) else 0.0
    with tempfile.TemporaryDirectory() as cache:
        for n, (what, kind, prec, compiled) in enumerate(arms):
            extra = n >= len(kinds)
            if extra and left() < (120 if compiled else 30):
                print(f"budget: {left():.0f} s left, {what} {kind} {prec} compile={compiled} not measured",
                      flush=True)
                continue
            # a kind's share of its two timed phases (with build and warm-up ~2.5 shares) of what is left over the
            # reserve; an extra: a share of what is left
            share = (None if not budget_seconds else max((left() - reserve) / (len(kinds) - n) / 2.5, 5.0)
                     if not extra else max(left() / (2 * (len(arms) - n)), 5.0))
            print(f"measuring {what} {kind} {prec} compile={compiled}: {left():.0f} s of the budget left", flush=True)
            if what == "generator":
                row = _generator_row(kind, prec, device, gen_steps, share, gen_batch, failures)
            else:
                row = _kind_row(kind, profile, prec, compiled, device, steps, warmup, gan_steps, share, cache,
                                failures)
            print(row, flush=True)
            rows.append({**row, **stamp})
            _write(rows, out)
    _write(rows, out)
    if failures:
        raise CheckFailed("; ".join(failures))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--compare-steps", type=int, default=20)
    ap.add_argument("--compare-kinds", default="vq,vq-ema,pq", help="kinds of the device-vs-CPU agreement")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--gan-steps", type=int, default=50, help="timed steps of the GAN phase per kind (0: none)")
    ap.add_argument("--budget-seconds", type=float, default=0.0, help="wall-clock budget of the kinds (0: none)")
    ap.add_argument("--extras", default="", help=f"any of {','.join(EXTRAS)}: pq in fp32 / with torch.compile too")
    ap.add_argument("--generators", default="", help="also time the paper profile's generators: ar,diffusion")
    ap.add_argument("--gen-steps", type=int, default=20, help="timed steps per generator")
    ap.add_argument("--gen-precisions", default="fp32", help="gen.precision of each generator timing: fp32,bf16")
    ap.add_argument("--gen-batch", type=int, default=32, help="one GPU's batch for the generator timing")
    ap.add_argument("--calibrate", action="store_true",
                    help="print the CPU-vs-CPU agreement at a rounding-sized (1e-6) learning-rate change and exit")
    args = ap.parse_args(argv)
    if args.calibrate:
        print(agreement("cpu", "cpu", args.compare_steps, lr_factor=1.0 + 1e-6))
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    compare_kinds = [k for k in args.compare_kinds.split(",") if k]
    generators = [k for k in args.generators.split(",") if k]
    extras = [k for k in args.extras.split(",") if k]
    gen_precisions = [k for k in args.gen_precisions.split(",") if k]
    bad = ([k for k in kinds + compare_kinds if k not in KINDS] + [k for k in extras if k not in EXTRAS]
           + [k for k in generators if k not in ("ar", "diffusion")]
           + [k for k in gen_precisions if k not in PRECISIONS])
    if bad or args.steps < 1 or args.warmup < 0 or args.compare_steps < 0:
        print(f"gpu-check: bad arguments: {bad} (kinds: {list(KINDS)}, extras: {list(EXTRAS)}, generators: ar, "
              f"diffusion, gen precisions: fp32, bf16), --steps={args.steps} (>= 1), "
              f"--warmup={args.warmup} (>= 0), --compare-steps={args.compare_steps} (>= 0)", file=sys.stderr)
        return 2
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(NO_GPU.format(torch=torch.__version__, cuda=torch.version.cuda))
        return 0
    try:
        check(args.device, kinds, args.steps, args.warmup, compare_steps=args.compare_steps, out=args.out,
              compare_kind=tuple(compare_kinds),
              gan_steps=args.gan_steps, budget_seconds=args.budget_seconds, extras=tuple(extras),
              generators=tuple(generators), gen_steps=args.gen_steps, gen_batch=args.gen_batch,
              gen_precisions=tuple(gen_precisions))
    except CheckFailed as err:
        print(f"gpu-check FAILED: {err}", file=sys.stderr)
        return 1
    print(f"gpu-check passed; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
