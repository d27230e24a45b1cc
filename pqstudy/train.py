"""train(cfg, out_dir) → a run directory with config.json, checkpoint.pt and history.json, and the trained model.

Training only: :func:`pqstudy.train_eval.train_and_evaluate` adds the evaluation step (metrics.json, usage.npz), as
``pqstudy train`` and the notebooks run it.

One flat loop, top to bottom. The batch order is a pure function of (seed, step), and the checkpoint holds every piece
of state (weights, optimisers, schedule, RNG, history), so ``resume=True`` reaches the same final weights as an
uninterrupted run.

An ``lc`` quantiser's codebook comes from :func:`pqstudy.codebooks.codebook_for` (loaded from its cache file, or built
into it when missing), after the thread count is set and before the seeded model init. On CPU with oneDNN the model
and its inputs are ``channels_last`` (:func:`pqstudy.cpu.channels_last`): ~27% less time per step, float32 both ways.

Data-parallel (``torchrun --nproc-per-node N -m pqstudy train ...``; :mod:`pqstudy.distributed`): ``train.batch_size``
is the global batch and each rank takes every N-th image of it (DistributedSampler's interleaving of the same
permutation), so the ranks together see exactly one process's batch. The autoencoder runs in
DistributedDataParallel; the state outside its gradients is kept the same on every rank: the ``lc`` codebook is
built by rank 0 and broadcast, VQ-EMA counts and sums and the adaptive GAN weight's gradients are all-reduced (in
the quantiser and the loss), the discriminator's gradients are averaged, and the window's usage counts and loss
logs are reduced before they are recorded. Rank 0 alone holds the run directory: it writes config, checkpoints and
history, and evaluates; the others read its checkpoint through a broadcast (no shared filesystem needed). A run
resumes from any checkpoint, written by any world size, with any world size: the model and optimiser state is the
same on every rank and the batch order is a function of the step. With the same world size the resumed run equals
the uninterrupted one; with another, it equals a run of that world size (float rounding of the reduction differs).
One gap to one process remains by design: the PatchGAN discriminator's BatchNorm uses each rank's own half batch
(as taming and VQGAN-LC under DDP; CPU torch has no SyncBatchNorm).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pqstudy import distributed
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


class NonFiniteLoss(FloatingPointError):
    """The autoencoder's loss of a step is NaN or infinite (raised before its backward)."""

    def __init__(self, value: float, logs: dict):
        super().__init__(f"loss became {value}")
        self.value, self.logs = value, logs


def train_step(x: torch.Tensor, step: int, *, forward, model, loss_fn: AutoencoderLoss, opt, opt_d, amp,
               disc_start: int):
    """One training step on the batch ``x``: the autoencoder's loss (through ``forward``, the model or its DDP /
    compiled wrapper, under ``amp()``) and update, then, from ``disc_start`` on when there is a discriminator
    (``opt_d``), the discriminator's loss and update (its gradients averaged over ranks). Returns the model's output
    and the step's logs; raises :class:`NonFiniteLoss` on every rank, before any update, when the loss is not finite
    on any (the check reduces the loss over the data-parallel ranks). The learning-rate schedule is the caller's."""
    with amp():
        out = forward(x)
        total, logs = loss_fn.generator_loss(x, out, step, model.last_layer())
    finite_global_loss(total, logs)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    if opt_d is not None and step >= disc_start:
        with amp():
            d_loss, d_logs = loss_fn.discriminator_loss(x, out.x_rec, step)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        distributed.average_gradients_(loss_fn.discriminator.parameters())
        opt_d.step()
        logs.update(d_logs)
    return out, logs


def batch_indices(step: int, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Indices of the batch at ``step``: a fresh permutation each pass over the data, seeded by (seed, pass).

    With ``world_size`` > 1, rank ``rank``'s share of that global batch: every ``world_size``-th index from ``rank``.
    That is what ``DistributedSampler(num_replicas=world_size, rank=rank, seed=seed * 1_000_003)`` hands each rank
    (it interleaves one permutation the same way), so the ranks' batches together are exactly one process's batch.
    """
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    batch = perm[i * batch_size : (i + 1) * batch_size] if n >= batch_size else perm
    return batch[rank::world_size]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of a data-parallel rank's random draws (KL noise, dropout) at ``step``: a pure function, so a resumed
    run draws what the uninterrupted one did, and no two ranks draw the same noise."""
    return (seed * 1_000_003 + step) * 65_537 + rank + 1


def finite_global_loss(loss: torch.Tensor, logs: dict | None = None) -> float:
    """The step's loss averaged over the data-parallel ranks (one process: ``loss`` itself), as a float; raises
    :class:`NonFiniteLoss` (with ``logs``) on every rank when it is not finite on any. A collective: every rank calls
    it, before its backward."""
    value = distributed.average_(loss.detach().double()).item()
    if not math.isfinite(value):
        raise NonFiniteLoss(value, logs or {})
    return value


def global_window(logs: dict[str, float], counts: torch.Tensor | None) -> tuple[dict[str, float], torch.Tensor | None]:
    """A history window's loss sums averaged over the ranks and its usage counts summed over them (new objects; one
    process: the inputs). The average of the ranks' half-batch means is the global batch's mean."""
    if not distributed.active():
        return logs, counts
    values = distributed.average_(torch.tensor(list(logs.values()), dtype=torch.float64))
    logs = dict(zip(logs, values.tolist(), strict=True))
    return logs, (distributed.all_reduce_sum_(counts.clone()) if counts is not None else None)


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
    main: bool = True  # False on data-parallel ranks other than 0: they leave evaluation and the files to rank 0


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
    world, device = check_launch(cfg)
    flush_denormals()
    train_set = train_set if train_set is not None else load_dataset(cfg.data, "train", seed=cfg.train.seed)
    out = Path(out_dir)
    started = distributed.start(world, device)
    if not world.main:
        trained = _train(cfg, out, train_set, device, world, resume=resume, progress=False, stop_at=stop_at)
        distributed.stop(started)
        return trained
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"run directory {out}"):
        try:
            trained = _train(cfg, out, train_set, device, world, resume=resume, progress=progress, stop_at=stop_at)
        except OSError as err:
            record_error(out, {"error": f"{type(err).__name__}: {err}", "run_id": run_id(cfg)})
            raise
    distributed.stop(started)
    return trained


def check_launch(cfg: RunConfig) -> tuple[distributed.World, torch.device]:
    """This process's data-parallel world (from torchrun's environment; one process without it) and device, checked
    against the config before any work: a bad launch is a ``DistributedError`` that says what to change."""
    return distributed.launch(cfg.train.batch_size, resolve_device(cfg.train.device), "train.batch_size")


def open_run_dir(out: Path, rid: str, config: dict, resume: bool) -> dict | None:
    """Start (or resume) run ``rid`` in the locked directory ``out``: stale temp files removed, the checkpoint to
    resume from (None when not resuming or there is none; a checkpoint of another run is an error), ``config.json``
    written and an old ``error.json`` removed. Tokenizer and generator training both begin here."""
    for stale in out.glob(".*.tmp"):  # left by a writer killed mid-write; we hold the lock, so it is dead
        stale.unlink(missing_ok=True)
    held = (out / CHECKPOINT).exists()
    if held and not resume:
        done = "a finished run" if (out / "metrics.json").exists() else "a run's checkpoint"
        warnings.warn(f"{out} holds {done}; training from step 0 overwrites it (--resume continues it, or on a "
                      "finished run only evaluates it)", UserWarning, stacklevel=4)
    ckpt = load_checkpoint(out) if held and resume else None
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


def diverged(out: Path, error: dict, message: str, record: bool = True) -> TrainingDiverged:
    """Record a diverged run (``error.json``, no metrics.json) and the exception to raise. Data-parallel ranks other
    than 0 pass ``record=False``: they stop on the same step, and rank 0 records it."""
    if not record:
        return TrainingDiverged(f"{message} (rank 0 records it)")
    record_error(out, error)
    (out / "metrics.json").unlink(missing_ok=True)
    return TrainingDiverged(f"{message}; details in {out / 'error.json'}")


def check_finite_weights(model: torch.nn.Module, out: Path, step: int, rid: str, record: bool = True) -> None:
    """Raise ``TrainingDiverged`` (and, when ``record``, write ``error.json``) when any weight of ``model`` is NaN or
    infinite; the check after every training loop, tokenizer and generator alike. Data-parallel ranks other than 0
    pass ``record=False``: their weights are rank 0's, which records it."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        error = {"error": "non-finite weights", "step": step, "parameters": bad[:20], "run_id": rid}
        raise diverged(out, error, f"the weights became non-finite at step {step} ({', '.join(bad[:3])})", record)


def _train(cfg: RunConfig, out: Path, train_set, device, world: distributed.World, resume: bool, progress: bool,
           stop_at: int | None) -> Trained:
    t, rid = cfg.train, run_id(cfg)
    ckpt = open_run_dir(out, rid, cfg.to_dict(), resume) if world.main else None
    ckpt = distributed.broadcast_state(ckpt)  # rank 0's checkpoint on every rank

    if t.threads:
        torch.set_num_threads(t.threads)
    # after the thread count (k-means' numbers depend on it), before the seeded init; built once, by rank 0
    codebook = distributed.broadcast_state(codebook_for(cfg) if world.main else None)
    torch.manual_seed(t.seed)
    fmt = memory_format(device)
    model = build_model(cfg, codebook=codebook).to(device, memory_format=fmt)
    loss_fn = AutoencoderLoss(cfg.loss, perceptual=load_perceptual(cfg, device)).to(device, memory_format=fmt)
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
        if quantized and world.main:  # a window's counts so far are global: one rank carries them on
            window_counts = ckpt["window_counts"]
    # Data-parallel: DDP broadcasts rank 0's weights and averages the autoencoder's gradients. The discriminator runs
    # on real and fake images before its backward (and inside the generator loss), so it is trained outside DDP:
    # its weights are rank 0's (``broadcast_state``) and its gradients averaged by ``average_gradients_``.
    net = model
    if world.parallel:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      forward_sync_buffers=False)  # buffers (EMA codebooks) agree by construction
        if loss_fn.uses_gan:
            loss_fn.discriminator.load_state_dict(distributed.broadcast_state(loss_fn.discriminator.state_dict()))
    forward = maybe_compile(net, t.compile)  # checkpoints hold model's own state dict (no _orig_mod. prefix)

    def save_checkpoint() -> None:
        logs, counts = global_window(window_logs, window_counts)  # a collective: every rank calls save_checkpoint
        if not world.main:
            return
        state = {
            "run_id": rid, "step": step, "wall_seconds": wall, "history": history, "usage_history": usage_history,
            "window_logs": logs, "window_steps": window_steps, "window_counts": counts,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(), "world_size": world.size,
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
        if world.parallel:
            torch.manual_seed(step_seed(t.seed, step, world.rank))
        x = to_model_space(train_set.get_batch(batch_indices(step, n_train, t.batch_size, t.seed, world.rank,
                                                             world.size)))
        x = x.to(device).contiguous(memory_format=fmt)
        try:
            out_ae, logs = train_step(x, step, forward=forward, model=model, loss_fn=loss_fn, opt=opt, opt_d=opt_d,
                                      amp=amp, disc_start=cfg.loss.disc_start)
        except NonFiniteLoss as err:
            error = {"error": "non-finite loss", "step": step, "losses": err.logs, "run_id": rid}
            raise diverged(out, error, f"loss became {err.value} at step {step}", world.main) from None
        sched.step()
        step += 1
        wall += time.perf_counter() - started

        for k, v in logs.items():
            window_logs[k] = window_logs.get(k, 0.0) + float(v)
        window_steps += 1
        if quantized:
            window_counts += out_ae.quant.stats["usage"].cpu()
        if step % history_every == 0 or step == t.steps:
            sums, counts = global_window(window_logs, window_counts)
            record = {"step": step, "epoch": step * t.batch_size / n_train, "lr": sched.get_last_lr()[0]}
            record.update({k: v / window_steps for k, v in sums.items()})
            if quantized:
                record.update({k: v for k, v in codebook_metrics(counts).items() if k != "codes_used"})
                usage_history.append(counts.numpy().astype(np.int32))
                window_counts = torch.zeros_like(window_counts)
            history.append(record)
            window_logs, window_steps = {}, 0
        if t.ckpt_every and step % t.ckpt_every == 0:
            save_checkpoint()
        bar.update(1)
        bar.set_postfix(loss=f"{logs['total']:.4f}", refresh=False)
    bar.close()
    check_finite_weights(model, out, step, rid, record=world.main)
    save_checkpoint()
    if world.main:
        write_json(out / "history.json", history)
    if step < t.steps:
        return Trained(model, device, {"run_id": rid, "step": step, "interrupted": True}, usage_history,
                       interrupted=True, main=world.main)
    summary = {
        "run_id": rid, "steps": step, "train_seconds": round(wall, 3),
        "train_images_per_second": round(step * t.batch_size / max(wall, 1e-9), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
    }
    if world.parallel:
        summary["world_size"] = world.size
    return Trained(model, device, summary, usage_history, main=world.main)


def load_history(run_dir: str | os.PathLike) -> list[dict]:
    return json.loads((Path(run_dir) / "history.json").read_text())
