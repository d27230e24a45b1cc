"""`make gpu-check`: the GPU path checked, where a GPU is present; where none is, it says so and exits 0.

Two parts, both in :func:`check`:

1. Throughput. For each kind (``vq``, ``vq-fc``, ``vq-ema``, ``lc``, ``pq`` and the continuous ``ae`` / ``kl``) the
   paper profile's model (``get_profile("paper")`` with that quantiser; ``pq`` as the profile has it, M = 64, the other
   kinds with one codebook; ``lc`` with a random feature bank, ``lc_source=random``, ``lc_init=uniform``, as no data
   is on the machine) trains for ``--steps`` steps with bf16 autocast (``train.precision=bf16``, the fp32 guards of
   :mod:`pqstudy.precision`) on synthetic random images of the paper's size and batch (no ImageNet on the device
   machine). Images/s are timed after ``--warmup`` steps (``torch.cuda.synchronize`` around the timed steps); peak
   memory is ``torch.cuda.max_memory_allocated``. A non-finite loss fails the check, naming the kind, step and value.
   LPIPS(VGG) of the paper's loss is used when its weights are installed, else left out (the CSV says which).
2. Agreement and resume. The smoke profile trains for ``--compare-steps`` steps through :func:`pqstudy.train.train`
   on the device and on the CPU, fp32, from the same seed and batches, with TF32 off. The per-step total losses and
   the final parameters must agree within :data:`LOSS_TOLERANCE` / :data:`PARAM_TOLERANCE` (see there for why
   those values; calibrated on the CPU, not yet against a GPU). A ``kl`` smoke run resumed from a mid-run checkpoint
   on the device must match an uninterrupted one (:data:`RESUME_TOLERANCE`): it samples from the device's generator.

Writes ``results/benchmarks/gpu.csv`` (one row per kind, one for the agreement, one for the resume), naming the card
(``torch.cuda.get_device_name``), torch's and CUDA's versions and the date. Exit 1 on a failure, naming it.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpu_check.py [--steps 200] [--kinds vq,pq] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.codebooks import codebook_for
from pqstudy.config import apply_overrides, get_profile
from pqstudy.cpu import cpu_model, memory_format
from pqstudy.data.dataset import ImageDataset
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model
from pqstudy.precision import autocast
from pqstudy.train import load_history, train

OUT = Path("results/benchmarks/gpu.csv")
KINDS = ("vq", "vq-fc", "vq-ema", "lc", "pq", "ae", "kl")
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
# A resumed run against an uninterrupted one on the same device: the same kernels on the same inputs, so equal up to
# cuDNN's non-deterministic reductions (atomics), far below the 1e-2-sized jump a replayed random draw gives.
RESUME_TOLERANCE = 1e-5


class CheckFailed(RuntimeError):
    """The GPU check failed: a non-finite loss, or the device disagrees with the CPU beyond tolerance."""


def kind_config(kind: str, profile: str = "paper", precision: str = "bf16", cache_dir: str = ""):
    """``profile``'s config with quantiser (or model) ``kind``; ``lc`` with a random bank (no data needed)."""
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
    if kind == "lc":
        over.update({"quantizer.lc_source": "random", "quantizer.lc_init": "uniform",
                     "quantizer.codebook_cache": cache_dir})
    return apply_overrides(cfg, over)


def synthetic_images(n: int, size: int, seed: int = 0) -> ImageDataset:
    """``n`` uniformly random uint8 images (3, size, size): a stand-in for data where there is none."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset("synthetic", size, images=images)


def _perceptual(cfg, device):
    """LPIPS(VGG) for the paper's loss when its weights are installed, else None (the loss then leaves it out)."""
    if cfg.loss.perceptual_weight <= 0:
        return None
    from pqstudy.metrics.perceptual import load_lpips

    module, _ = load_lpips("vgg", device=device)
    return module


def throughput(cfg, device, steps: int = 200, warmup: int = 10, kind: str = "") -> dict:
    """Train ``cfg``'s model for ``warmup + steps`` steps on synthetic images at ``cfg.train.batch_size`` and the
    config's precision; images/s over the last ``steps``, peak memory (CUDA). Raises :class:`CheckFailed` on a
    non-finite loss."""
    device = torch.device(device)
    torch.manual_seed(cfg.train.seed)
    fmt = memory_format(device)
    model = build_model(cfg, codebook=codebook_for(cfg)).to(device, memory_format=fmt)
    perceptual = _perceptual(cfg, device)
    loss_cfg = apply_overrides(cfg, {"loss.perceptual_weight": 0.0}).loss if perceptual is None else cfg.loss
    loss_fn = AutoencoderLoss(loss_cfg, perceptual=perceptual).to(device, memory_format=fmt)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    b, s = cfg.train.batch_size, cfg.data.image_size
    data = synthetic_images(4 * b, s, seed=cfg.train.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started, loss = None, float("nan")
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        x = data.images[(torch.arange(b) + step * b) % len(data)].to(device).float().div(127.5).sub(1.0)
        x = x.contiguous(memory_format=fmt)
        with autocast(device, cfg.train.precision):
            out = model(x)
            total, _ = loss_fn.generator_loss(x, out, step, model.last_layer())
        loss = total.item()
        if not math.isfinite(loss):
            raise CheckFailed(f"{kind or cfg.quantizer.kind}: loss {loss} at step {step} on {device}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_per_second": round(steps * b / seconds, 2), "seconds_per_step": round(seconds / steps, 4),
            "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
            "final_loss": round(loss, 5), "perceptual": perceptual is not None,
            "parameters": sum(p.numel() for p in model.parameters())}


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


def resume_matches(device: str = "cuda", kind: str = "kl", steps: int = 4) -> dict:
    """``steps`` smoke steps on ``device`` in one go against half of them, a checkpoint and a resume: the same weights
    (``kl`` samples its latent from the device's generator, whose state the checkpoint must carry)."""
    cfg = kind_config(kind, "smoke", "fp32")
    cfg = apply_overrides(cfg, {"train.steps": steps, "train.device": device, "train.threads": 1})
    data = synthetic_images(8 * cfg.train.batch_size, cfg.data.image_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp, _no_tf32():
        whole = train(cfg, Path(tmp) / "whole", progress=False, train_set=data).model
        train(cfg, Path(tmp) / "resumed", progress=False, train_set=data, stop_at=steps // 2)
        resumed = train(cfg, Path(tmp) / "resumed", progress=False, train_set=data, resume=True).model
    diff = max((a - b).abs().max().item() for a, b in zip(whole.parameters(), resumed.parameters(), strict=True))
    return {"kind": f"resume:{kind}", "device": device, "steps": steps, "max_param_abs_diff": diff,
            "ok": diff <= RESUME_TOLERANCE}


def device_name(device: str) -> str:
    dev = torch.device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()


def check(device: str = "cuda", kinds=KINDS, steps: int = 200, warmup: int = 10, profile: str = "paper",
          precision: str = "bf16", compare_steps: int = 20, compare_kind: str = "vq", reference: str = "cpu",
          lr_factor: float = 1.0, out: str | Path | None = OUT) -> list[dict]:
    """Both parts of the check on ``device`` (see the module docstring); rows written to ``out`` (None: not
    written), then :class:`CheckFailed` raised for the first failure. ``device="cpu"`` runs the same code on the
    CPU (the tests do, on the smoke profile)."""
    stamp = {"card": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
             "date": datetime.date.today().isoformat(), "data": "synthetic random images (no ImageNet on the machine)"}
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as cache:
        for kind in kinds:
            cfg = kind_config(kind, profile, precision, cache)
            row = {"kind": kind, "profile": profile, "precision": precision, "device": device,
                   "batch_size": cfg.train.batch_size, "image_size": cfg.data.image_size, "steps": steps,
                   "warmup": warmup}
            try:
                row.update(throughput(cfg, device, steps, warmup, kind=kind))
                row["ok"] = True
            except CheckFailed as err:
                row.update({"ok": False, "error": str(err)})
                failures.append(str(err))
            print(row, flush=True)
            rows.append({**row, **stamp})
    if compare_steps:
        row = agreement(device, reference, compare_steps, compare_kind, lr_factor)
        print(row, flush=True)
        rows.append({**row, **stamp})
        if not row["ok"]:
            failures.append(f"{device} vs {reference}: losses differ by {row['max_loss_rel_diff']:.3g} (tolerance "
                            f"{LOSS_TOLERANCE}), parameters by {row['param_rel_diff']:.3g} (tolerance "
                            f"{PARAM_TOLERANCE}) after {compare_steps} smoke steps")
        row = resume_matches(device)
        print(row, flush=True)
        rows.append({**row, **stamp})
        if not row["ok"]:
            failures.append(f"{device}: a resumed kl run differs from an uninterrupted one by "
                            f"{row['max_param_abs_diff']:.3g} (tolerance {RESUME_TOLERANCE})")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)
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
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--calibrate", action="store_true",
                    help="print the CPU-vs-CPU agreement at a rounding-sized (1e-6) learning-rate change and exit")
    args = ap.parse_args(argv)
    if args.calibrate:
        print(agreement("cpu", "cpu", args.compare_steps, lr_factor=1.0 + 1e-6))
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or args.steps < 1 or args.warmup < 0 or args.compare_steps < 0:
        print(f"gpu-check: bad arguments: kinds {bad} (choose from {list(KINDS)}), --steps={args.steps} (>= 1), "
              f"--warmup={args.warmup} (>= 0), --compare-steps={args.compare_steps} (>= 0)", file=sys.stderr)
        return 2
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(NO_GPU.format(torch=torch.__version__, cuda=torch.version.cuda))
        return 0
    try:
        check(args.device, kinds, args.steps, args.warmup, compare_steps=args.compare_steps, out=args.out)
    except CheckFailed as err:
        print(f"gpu-check FAILED: {err}", file=sys.stderr)
        return 1
    print(f"gpu-check passed; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
