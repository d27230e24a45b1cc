"""Images per second of one training step (forward, loss, backward, Adam) for the smoke and default models.

Random images of the profile's size stand in for data so that only the step is timed. Writes
``results/benchmarks/train_throughput.csv`` and prints one line per configuration.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--threads 0]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.config import apply_overrides, get_profile, validate
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model

CASES = [
    ("smoke", {}),
    ("default", {}),
    ("default", {"quantizer.kind": "pq", "quantizer.codebook_size": "256", "quantizer.subspaces": "4"}),
    ("default", {"quantizer.codebook_size": "16384"}),
    ("default", {"model.kind": "ae"}),
]


def time_steps(profile: str, overrides: dict, steps: int, warmup: int = 5) -> dict:
    cfg = validate(apply_overrides(get_profile(profile), overrides))
    torch.manual_seed(0)
    model = build_model(cfg)
    loss_fn = AutoencoderLoss(cfg.loss)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, betas=(0.5, 0.9))
    b, s = cfg.train.batch_size, cfg.data.image_size
    x = torch.rand(b, 3, s, s) * 2 - 1
    elapsed = 0.0
    for i in range(warmup + steps):
        start = time.perf_counter()
        out = model(x)
        total, _ = loss_fn.generator_loss(x, out, i, model.last_layer())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if i >= warmup:
            elapsed += time.perf_counter() - start
    return {
        "profile": profile,
        "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()) or "-",
        "model_kind": cfg.model.kind,
        "quantizer": cfg.quantizer.kind,
        "K": cfg.quantizer.codebook_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": b,
        "image_size": s,
        "steps_timed": steps,
        "steps_per_second": steps / elapsed,
        "images_per_second": steps * b / elapsed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", default="results/benchmarks/train_throughput.csv")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for profile, overrides in CASES:
        row = time_steps(profile, overrides, args.steps)
        rows.append(row)
        print(f"{profile:8s} {row['overrides']:60s} {row['parameters']:>9,d} params "
              f"{row['steps_per_second']:7.2f} steps/s {row['images_per_second']:8.1f} images/s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
