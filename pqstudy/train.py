"""train(cfg, out_dir) → a run directory with config.json, checkpoint.pt and history.json, and the trained model.

Training only: :func:`pqstudy.train_eval.train_and_evaluate` adds the evaluation step (metrics.json, usage.npz), as
``pqstudy train`` and the notebooks run it.

One flat loop, top to bottom. The batch order is a pure function of (seed, step), and the checkpoint holds every piece
of state (weights, optimisers, schedule, RNG, history), so ``resume=True`` reaches the same final weights as an
uninterrupted run.

An ``lc`` quantiser's codebook comes from :func:`pqstudy.codebooks.codebook_for` (loaded from its cache file, or built
into it when missing), after the thread count is set and before the seeded model init. On CPU with oneDNN the model
and its inputs are ``channels_last`` (:func:`pqstudy.cpu.channels_last`): ~27% less time per step, float32 both ways.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pqstudy.codebooks import codebook_for
from pqstudy.config import RunConfig, run_id
from pqstudy.cpu import flush_denormals, memory_format, resolve_device
from pqstudy.data import load_dataset, to_model_space
from pqstudy.losses import AutoencoderLoss
from pqstudy.metrics.codebook import codebook_metrics
from pqstudy.models import build_model
from pqstudy.precision import maybe_compile, training_autocast
from pqstudy.preflight import validate_run
from pqstudy.runio import CHECKPOINT, load_checkpoint, write_json
from pqstudy.runio import save_checkpoint as write_checkpoint
from pqstudy.runlock import locked

LOCK = ".train.lock"


class TrainingDiverged(RuntimeError):
    """A loss, the weights or the evaluation became NaN or infinite; the run directory holds error.json."""


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the batch at ``step``: a fresh permutation each pass over the data, seeded by (seed, pass)."""
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[i * batch_size : (i + 1) * batch_size] if n >= batch_size else perm


def lr_factor(step: int, cfg) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def load_perceptual(cfg: RunConfig, device):
    """LPIPS(VGG) for the training loss, or None when the loss does not use it. Missing weights are an error."""
    if cfg.loss.perceptual_weight <= 0:
        return None
    from pqstudy.metrics.perceptual import load_lpips

    module, reason = load_lpips("vgg", device=device)
    if module is None:
        raise FileNotFoundError(f"loss.perceptual_weight={cfg.loss.perceptual_weight} needs LPIPS(VGG): {reason}")
    return module


@dataclass
class Trained:
    """What :func:`train` leaves for the evaluation step besides the run directory."""

    model: torch.nn.Module  # the final model (train mode), on ``device``
    device: torch.device
    summary: dict  # run_id, steps, train_seconds, ... (the training fields of metrics.json); or an interrupted run's
    usage_history: list  # (M, K) usage counts of each history window (usage.npz's ``train_counts``)
    interrupted: bool = False


def train(cfg: RunConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          stop_at: int | None = None, train_set=None) -> Trained:
    """Train one run into ``out_dir``: config.json, checkpoint.pt, history.json. Evaluates nothing.

    ``stop_at`` stops after that many steps with a checkpoint (an interrupted run, for tests and time-boxed sessions);
    ``resume=True`` continues from ``out_dir/checkpoint.pt``. ``train_set``: the training split when already loaded.

    The config is checked (:func:`pqstudy.preflight.validate_run`) and the split loaded before ``out_dir`` is created,
    so bad input fails before any training and leaves no directory behind. The run directory is locked while training
    (``RunLocked`` when another process trains into it). A run whose loss or final weights are not finite raises
    ``TrainingDiverged`` and writes ``error.json``; so does (as far as the disk allows) any ``OSError`` on writing.
    """
    validate_run(cfg)
    device = resolve_device(cfg.train.device)
    flush_denormals()
    train_set = train_set if train_set is not None else load_dataset(cfg.data, "train", seed=cfg.train.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"run directory {out}"):
        try:
            return _train(cfg, out, train_set, device, resume=resume, progress=progress, stop_at=stop_at)
        except OSError as err:
            record_error(out, {"error": f"{type(err).__name__}: {err}", "run_id": run_id(cfg)})
            raise


def open_run_dir(out: Path, rid: str, config: dict, resume: bool) -> dict | None:
    """Start (or resume) run ``rid`` in the locked directory ``out``: stale temp files removed, the checkpoint to
    resume from (None when not resuming or there is none; a checkpoint of another run is an error), ``config.json``
    written and an old ``error.json`` removed. Tokenizer and generator training both begin here."""
    for stale in out.glob(".*.tmp"):  # left by a writer killed mid-write; we hold the lock, so it is dead
        stale.unlink(missing_ok=True)
    ckpt = load_checkpoint(out) if resume and (out / CHECKPOINT).exists() else None
    if ckpt is not None and ckpt["run_id"] != rid:
        raise ValueError(f"--resume: {out} holds run {ckpt['run_id']}, but this config is run {rid}")
    write_json(out / "config.json", {"run_id": rid, **config})
    (out / "error.json").unlink(missing_ok=True)
    return ckpt


def record_error(out: Path, error: dict) -> None:
    """Write ``error.json``, if the disk lets us (the error being recorded may be a full disk)."""
    try:
        write_json(out / "error.json", error)
    except OSError:
        pass


def diverged(out: Path, error: dict, message: str) -> TrainingDiverged:
    """Record a diverged run (``error.json``, no metrics.json) and the exception to raise."""
    record_error(out, error)
    (out / "metrics.json").unlink(missing_ok=True)
    return TrainingDiverged(f"{message}; details in {out / 'error.json'}")


def _train(cfg: RunConfig, out: Path, train_set, device, resume: bool, progress: bool,
           stop_at: int | None) -> Trained:
    t, rid = cfg.train, run_id(cfg)
    ckpt = open_run_dir(out, rid, cfg.to_dict(), resume)

    if t.threads:
        torch.set_num_threads(t.threads)
    codebook = codebook_for(cfg)  # after the thread count (k-means' numbers depend on it), before the seeded init
    torch.manual_seed(t.seed)
    fmt = memory_format(device)
    model = build_model(cfg, codebook=codebook).to(device, memory_format=fmt)
    loss_fn = AutoencoderLoss(cfg.loss, perceptual=load_perceptual(cfg, device)).to(device, memory_format=fmt)
    forward = maybe_compile(model, t.compile)  # checkpoints hold model's own state dict (no _orig_mod. prefix)
    amp = training_autocast(device, t.precision)  # bf16 autocast of forward and losses; backward and steps outside
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t))
    opt_d = (torch.optim.Adam(loss_fn.discriminator.parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
             if loss_fn.uses_gan else None)

    n_train = len(train_set)
    history_every = t.history_every or max(n_train // t.batch_size, 1)
    quantized = cfg.model.kind == "quantized"
    num_codebooks = model.quantizer.num_codebooks if quantized else 0
    window_counts = torch.zeros(num_codebooks, cfg.quantizer.codebook_size, dtype=torch.long) if quantized else None
    window_logs: dict[str, float] = {}
    window_steps = 0
    history: list[dict] = []
    usage_history: list[np.ndarray] = []
    step, wall = 0, 0.0

    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if opt_d is not None:
            loss_fn.discriminator.load_state_dict(ckpt["discriminator"])
            opt_d.load_state_dict(ckpt["optimizer_d"])
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and "cuda_rng" in ckpt:  # KL sampling and dropout draw from the GPU's generator
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        step, wall, history = ckpt["step"], ckpt["wall_seconds"], ckpt["history"]
        usage_history = [np.asarray(u) for u in ckpt["usage_history"]]  # tensors (numpy in older checkpoints)
        window_logs, window_steps = ckpt["window_logs"], ckpt["window_steps"]
        if quantized:
            window_counts = ckpt["window_counts"]

    def save_checkpoint() -> None:
        state = {
            "run_id": rid, "step": step, "wall_seconds": wall, "history": history, "usage_history": usage_history,
            "window_logs": window_logs, "window_steps": window_steps, "window_counts": window_counts,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(),
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        if opt_d is not None:
            state["discriminator"] = loss_fn.discriminator.state_dict()
            state["optimizer_d"] = opt_d.state_dict()
        write_checkpoint(out, state)

    last = min(t.steps, stop_at) if stop_at is not None else t.steps
    bar = tqdm(total=t.steps, initial=step, desc=rid, disable=not progress, mininterval=1.0, dynamic_ncols=True)
    model.train()
    while step < last:
        started = time.perf_counter()
        x = to_model_space(train_set.get_batch(batch_indices(step, n_train, t.batch_size, t.seed)))
        x = x.to(device).contiguous(memory_format=fmt)
        with amp():
            out_ae = forward(x)
            total, logs = loss_fn.generator_loss(x, out_ae, step, model.last_layer())
        if not torch.isfinite(total):
            error = {"error": "non-finite loss", "step": step, "losses": logs, "run_id": rid}
            raise diverged(out, error, f"loss became {total.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        if opt_d is not None and step >= cfg.loss.disc_start:
            with amp():
                d_loss, d_logs = loss_fn.discriminator_loss(x, out_ae.x_rec, step)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            logs.update(d_logs)
        step += 1
        wall += time.perf_counter() - started

        for k, v in logs.items():
            window_logs[k] = window_logs.get(k, 0.0) + float(v)
        window_steps += 1
        if quantized:
            window_counts += out_ae.quant.stats["usage"].cpu()
        if step % history_every == 0 or step == t.steps:
            record = {"step": step, "epoch": step * t.batch_size / n_train, "lr": sched.get_last_lr()[0]}
            record.update({k: v / window_steps for k, v in window_logs.items()})
            if quantized:
                record.update({k: v for k, v in codebook_metrics(window_counts).items() if k != "codes_used"})
                usage_history.append(window_counts.numpy().astype(np.int32))
                window_counts = torch.zeros_like(window_counts)
            history.append(record)
            window_logs, window_steps = {}, 0
        if t.ckpt_every and step % t.ckpt_every == 0:
            save_checkpoint()
        bar.update(1)
        bar.set_postfix(loss=f"{logs['total']:.4f}", refresh=False)
    bar.close()
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        error = {"error": "non-finite weights", "step": step, "parameters": bad[:20], "run_id": rid}
        raise diverged(out, error, f"the weights became non-finite at step {step} ({', '.join(bad[:3])})")
    save_checkpoint()
    write_json(out / "history.json", history)
    if step < t.steps:
        return Trained(model, device, {"run_id": rid, "step": step, "interrupted": True}, usage_history,
                       interrupted=True)
    summary = {
        "run_id": rid, "steps": step, "train_seconds": round(wall, 3),
        "train_images_per_second": round(step * t.batch_size / max(wall, 1e-9), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
    }
    return Trained(model, device, summary, usage_history)


def load_history(run_dir: str | os.PathLike) -> list[dict]:
    return json.loads((Path(run_dir) / "history.json").read_text())
