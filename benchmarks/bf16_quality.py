"""Why bf16 autocast broke training quality, by ablation: which part must stay fp32.

Each quantiser kind (``--kinds``) of the smoke profile (``--profile``) is trained for ``--steps`` steps in each arm,
from the same seed and batches, and evaluated on the first ``--eval-images`` test images:

- ``fp32``: no autocast (the reference);
- ``bf16-naive``: autocast over the whole forward pass and the losses, the quantiser included (no fp32 guard);
- ``bf16-search-fp32``: as naive, but the nearest-code distances in fp32 (only the ``search`` guard of
  :mod:`pqstudy.precision`);
- ``bf16-guarded``: what ``train.precision=bf16`` does: the whole quantiser (search, loss terms, EMA statistics) and
  the reconstruction loss in fp32.
- ``bf16-weights``: no autocast; the model itself cast to bf16 (``model.to(torch.bfloat16)``), so weights,
  gradients and Adam's moments are bf16 and every update is rounded to bf16's 8 mantissa bits. Not something
  ``pqstudy train`` can do: the arm tests whether the issue's break came from bf16 *weights* rather than autocast.

PSNR is measured twice: ``psnr_fp32_eval`` evaluates the trained weights in fp32 (what training learned),
``psnr_own_eval`` under the arm's own precision and guards (what the arm's model gives at inference).

The argmin hypothesis is checked on real latents: for each kind, the latents of the evaluated images under the
fp32-trained model are assigned once with fp32 distances and once with bf16 distances (autocast, search guard off);
``assign_disagree_pct`` is the share of positions whose code differs, ``median_value_over_gap`` the median ratio of
the winning distance value ``|‖c‖² − 2x·c|`` (what the search compares; bf16 rounds it to 8 bits, an error of up to
2⁻⁹ of it) to the gap between the best and second-best code: above ~2⁹ = 512 bf16 cannot tell them apart.

Writes ``results/benchmarks/bf16_quality.csv`` (one row per kind and arm, with the CPU model, whether it has native
bf16, the steps and the wall time) and prints each row. One thread: on a CPU without native bf16, bf16 is emulated
(8–17× slower), so keep ``--steps`` small there.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bf16_quality.py [--steps 100] [--kinds vq,vq-ema,pq] [--runs DIR ...]
    ... --profile default --steps 200 --set model.ch=64 --set train.seed=1 --append   # a wider model, another seed
    python3 benchmarks/bf16_quality.py --device cuda --profile smoke --steps 150   # on a GPU (native bf16)

``--runs`` adds trained run directories (e.g. the default-profile study's ``runs/<id>``), evaluated in each arm
without training: the break at the study's scale (K = 1024, 800 steps) in minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.codebooks import codebook_for
from pqstudy.config import ConfigError, apply_overrides, get_profile, parse_set
from pqstudy.cpu import cpu_model, device_name, memory_format, native_bf16
from pqstudy.data import load_dataset, to_model_space
from pqstudy.evaluate import evaluate_model
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model
from pqstudy.precision import guards
from pqstudy.train import batch_indices, load_perceptual, lr_factor, train, train_step

OUT = Path("results/benchmarks/bf16_quality.csv")
ARMS = {  # arm → (precision, guards)
    "fp32": ("fp32", {}),
    "bf16-naive": ("bf16", {"search": False, "quantizer": False, "reconstruction": False}),
    "bf16-search-fp32": ("bf16", {"search": True, "quantizer": False, "reconstruction": False}),
    "bf16-guarded": ("bf16", {"search": True, "quantizer": True, "reconstruction": True}),
    "bf16-weights": ("bf16", {"search": False, "quantizer": False, "reconstruction": False}),
}
KINDS = {  # kind → overrides of the smoke profile
    "vq": {"quantizer.kind": "vq"},
    "vq-ema": {"quantizer.kind": "vq-ema"},
    "vq-fc": {"quantizer.kind": "vq-fc"},
    "pq": {"quantizer.kind": "pq", "quantizer.subspaces": 2},
}


def search_disagreement(model, x: torch.Tensor) -> dict:
    """Code assignments of ``model``'s latents for images ``x`` with fp32 vs bf16 distances (see the docstring)."""
    model.eval()
    x = x.to(next(model.parameters()).device)
    with torch.no_grad():
        z = model.latent(x)
        fp32_idx = model.quantizer(z).indices
        with torch.autocast(x.device.type, dtype=torch.bfloat16), guards(search=False, quantizer=False):
            bf16_idx = model.quantizer(z).indices
        ratio = value_over_gap(model.quantizer, z)
    return {"assign_disagree_pct": round(100.0 * (fp32_idx != bf16_idx).float().mean().item(), 3),
            "median_value_over_gap": round(ratio, 1)}


def value_over_gap(quantizer, z: torch.Tensor) -> float:
    """Median over positions (and subspaces) of |best value| / (second best − best), the values ‖c‖² − 2x·c in fp32."""
    subs = list(getattr(quantizer, "subquantizers", [quantizer]))
    x = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    ratios = []
    for sub, xs in zip(subs, x.split([s.dim for s in subs], dim=1), strict=True):
        if hasattr(sub, "vq"):  # vq-fc: the lookup runs in the projected space
            xs, sub = sub.proj_in(xs), sub.vq
        codes = sub.codebook().detach().float()
        values = codes.pow(2).sum(1) - 2.0 * xs.float() @ codes.t()
        two = values.topk(2, dim=1, largest=False).values
        ratios.append(two[:, 0].abs() / (two[:, 1] - two[:, 0]).clamp_min(1e-30))
    return torch.cat(ratios).median().item()


def trained_rows(run_dir: str, eval_images: int, device: str = "cpu") -> list[dict]:
    """A trained run directory (e.g. a default-profile study run) evaluated, not trained, in each arm on the first
    ``eval_images`` test images, plus its fp32-vs-bf16 code-assignment disagreement: the break at the scale of the
    study, without training again."""
    from pqstudy.models.checkpoint import load_model

    model, cfg = load_model(run_dir, device)
    cfg = apply_overrides(cfg, {"train.eval_limit": eval_images, "train.eval_metrics": "", "train.device": device})
    test_set = load_dataset(cfg.data, "test", seed=0)
    images = to_model_space(test_set.get_batch(torch.arange(min(eval_images, len(test_set)))))
    probe = search_disagreement(copy.deepcopy(model), images) if cfg.model.kind == "quantized" else {}
    rows = []
    for arm, (precision, switched) in ARMS.items():
        with guards(**switched):
            started = time.perf_counter()
            metrics, _ = evaluate_model(model, apply_overrides(cfg, {"train.precision": precision}), split="test",
                                        dataset=test_set)
        rows.append({"kind": cfg.quantizer.kind if cfg.model.kind == "quantized" else cfg.model.kind,
                     "source": f"trained {Path(run_dir).name} ({cfg.profile}, {cfg.train.steps} steps), eval only",
                     "arm": arm, "precision": precision, **{f"guard_{k}": v for k, v in switched.items()},
                     "psnr_own_eval": round(metrics["psnr"], 3), "utilisation_test": metrics.get("utilisation_test"),
                     "wall_seconds": round(time.perf_counter() - started, 1), **probe})
    return rows


def train_bf16_weights(cfg, train_set) -> tuple[torch.nn.Module, float]:
    """The ``bf16-weights`` arm: :func:`pqstudy.train.train`'s seed, model, optimiser, schedule and batches, with the
    model and loss cast to bf16 and no autocast. Returns the model cast back to fp32 (exact) and the training
    seconds."""
    t = cfg.train
    torch.manual_seed(t.seed)
    fmt = memory_format(t.device)
    model = build_model(cfg, codebook=codebook_for(cfg)).to(t.device, torch.bfloat16, memory_format=fmt)
    loss_fn = AutoencoderLoss(cfg.loss, perceptual=load_perceptual(cfg, t.device))
    loss_fn = loss_fn.to(t.device, torch.bfloat16, memory_format=fmt)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t.lr, betas=(t.beta1, t.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t))
    model.train()
    started = time.perf_counter()
    for step in range(t.steps):
        x = to_model_space(train_set.get_batch(batch_indices(step, len(train_set), t.batch_size, t.seed)))
        x = x.to(t.device, torch.bfloat16).contiguous(memory_format=fmt)
        train_step(x, step, forward=model, model=model, loss_fn=loss_fn, opt=opt, opt_d=None,
                   amp=contextlib.nullcontext, disc_start=cfg.loss.disc_start)
        sched.step()
    return model.float(), time.perf_counter() - started


def run_arm(cfg, arm: str, train_set, test_set, eval_images: int) -> tuple[dict, torch.nn.Module]:
    precision, switched = ARMS[arm]
    cfg = apply_overrides(cfg, {"train.precision": precision})
    with guards(**switched), tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if arm == "bf16-weights":
            model, seconds = train_bf16_weights(cfg, train_set)
            history = {"train_seconds": round(seconds, 3)}
        else:
            trained = train(cfg, tmp, progress=False, train_set=train_set)
            model, history = trained.model, trained.summary
        wall = time.perf_counter() - started
        own, _ = evaluate_model(model, cfg, split="test", dataset=test_set)
    fp32_cfg = apply_overrides(cfg, {"train.precision": "fp32"})
    plain, _ = evaluate_model(model, fp32_cfg, split="test", dataset=test_set)
    row = {"arm": arm, "precision": precision, **{f"guard_{k}": v for k, v in switched.items()},
           "psnr_fp32_eval": round(plain["psnr"], 3), "psnr_own_eval": round(own["psnr"], 3),
           "utilisation_test": plain.get("utilisation_test"), "train_seconds": history.get("train_seconds"),
           "wall_seconds": round(wall, 1)}
    return row, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="smoke", help="the profile trained in each arm (default: needs CIFAR-10)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--kinds", default="vq,vq-ema,pq", help=f"comma-separated, from {list(KINDS)}")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {list(ARMS)}")
    ap.add_argument("--eval-images", type=int, default=256)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every arm, e.g. model.ch=64 (a wider model, where bf16 pays)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in --out (e.g. another machine's) and add this run's after them")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU: native bf16)")
    ap.add_argument("--runs", nargs="*", default=[],
                    help="trained run directories to evaluate (not train) in each arm, after the training arms")
    args = ap.parse_args()
    kinds, arms = args.kinds.split(","), args.arms.split(",")
    for name, known in (("--kinds", KINDS), ("--arms", ARMS)):
        bad = [v for v in (kinds if name == "--kinds" else arms) if v not in known]
        if bad:
            raise SystemExit(f"{name}: unknown {bad}; choose from {list(known)}")
    if args.steps < 0 or args.eval_images < 1:
        raise SystemExit(f"--steps={args.steps} must be >= 0 (0: no training arms) and --eval-images="
                         f"{args.eval_images} >= 1")
    warnings.simplefilter("ignore", RuntimeWarning)  # the emulated-bf16 warning, once per run
    torch.set_num_threads(1)
    try:
        overrides = parse_set(args.set)
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    base = apply_overrides(get_profile(args.profile), {
        **overrides, "train.steps": args.steps, "train.eval_limit": args.eval_images, "train.eval_metrics": "",
        "train.threads": 1, "train.device": args.device})
    where = {"cpu": cpu_model(), "native_bf16": native_bf16(), "device": device_name(args.device)}
    train_set = load_dataset(base.data, "train", seed=0)
    test_set = load_dataset(base.data, "test", seed=0)
    images = to_model_space(test_set.get_batch(torch.arange(min(args.eval_images, len(test_set)))))
    rows = pd.read_csv(args.out).to_dict("records") if args.append and Path(args.out).exists() else []
    source = " ".join([f"{args.profile} profile", *args.set, "trained here"])
    for kind in kinds if args.steps else []:
        cfg = apply_overrides(base, KINDS[kind])
        for arm in arms:
            row, model = run_arm(cfg, arm, train_set, test_set, args.eval_images)
            if arm == "fp32":
                row.update(search_disagreement(copy.deepcopy(model), images))
            row = {"kind": kind, "source": source, **row, "steps": args.steps,
                   **where, "torch": torch.__version__, "threads": 1}
            _record(rows, row, args.out)
    for run_dir in args.runs:
        for row in trained_rows(run_dir, args.eval_images, args.device):
            _record(rows, {**row, **where, "torch": torch.__version__, "threads": 1}, args.out)


def _record(rows: list[dict], row: dict, out: str) -> None:
    """Print ``row`` and rewrite the CSV with it (a long run leaves what it has measured so far)."""
    print(row, flush=True)
    rows.append(row)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main()
