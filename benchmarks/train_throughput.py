"""Images per second of one training step (forward, loss, backward, Adam) for the smoke and default models.

Random images of the profile's size stand in for data so that only the step is timed. Each configuration is timed
in both memory layouts, NCHW and ``channels_last`` (what :func:`pqstudy.cpu.channels_last` picks on this CPU), and
with ``--precisions fp32,bf16`` also in ``channels_last`` under bf16 autocast (``train.precision=bf16``, its fp32
guards on), in ``--repeats`` interleaved rounds (NCHW, NHWC, NHWC bf16, NCHW, ...) so that load from other processes
hits all alike; the CSV holds the median seconds per step of each variant, the CPU model, whether it has native bf16
and the 1-minute load average before and after. Writes ``results/benchmarks/train_throughput.csv`` and prints one
line per configuration and variant.

    .venv/bin/python benchmarks/train_throughput.py [--steps 10] [--repeats 5] [--threads 1] [--cases 1,5]
        [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from timing import write_rows

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.config import apply_overrides, get_profile, validate
from pqstudy.cpu import channels_last, cpu_model, native_bf16
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model
from pqstudy.precision import autocast

CASES = [
    ("smoke", {}),
    ("default", {}),
    ("default", {"quantizer.kind": "pq", "quantizer.codebook_size": "256", "quantizer.subspaces": "4"}),
    ("default", {"quantizer.codebook_size": "16384"}),
    ("default", {"model.kind": "ae"}),
    ("default", {"model.ch": "64"}),  # 4x the channels (16x the FLOPs): where bf16 hardware could pay
]


LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


class Stepper:
    """One model, loss and optimiser per variant (layout, precision), built from the same seed; ``run(steps)`` →
    seconds."""

    def __init__(self, cfg, layout, precision: str = "fp32"):
        self.precision = precision
        torch.manual_seed(0)
        self.model = build_model(cfg).to(memory_format=layout)
        self.loss_fn = AutoencoderLoss(cfg.loss).to(memory_format=layout)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=cfg.train.lr, betas=(0.5, 0.9))
        b, s = cfg.train.batch_size, cfg.data.image_size
        self.x = (torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1).contiguous(
            memory_format=layout)
        self.i = 0

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            with autocast("cpu", self.precision):
                out = self.model(self.x)
                total, _ = self.loss_fn.generator_loss(self.x, out, self.i, self.model.last_layer())
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            self.opt.step()
            self.i += 1
        return time.perf_counter() - start


def time_layouts(profile: str, overrides: dict, steps: int, repeats: int, warmup: int = 3,
                 precisions: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Median seconds per step of each variant over ``repeats`` interleaved rounds of ``steps`` steps: both layouts
    in fp32, plus ``channels_last`` in each other precision of ``precisions``."""
    cfg = validate(apply_overrides(get_profile(profile), overrides))
    steppers = {name: Stepper(cfg, layout) for name, layout in LAYOUTS.items()}
    steppers.update({f"channels_last+{p}": Stepper(cfg, torch.channels_last, p) for p in precisions if p != "fp32"})
    for stepper in steppers.values():
        stepper.run(warmup)
    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, stepper in steppers.items():
            seconds[name].append(stepper.run(steps) / steps)
    load_after = os.getloadavg()[0]
    rows = []
    for name, per_step in seconds.items():
        median = statistics.median(per_step)
        rows.append({
            "profile": profile,
            "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()) or "-",
            "layout": name.split("+")[0],
            "precision": steppers[name].precision,
            "chosen_at_run_time": (name == "channels_last") == channels_last("cpu"),
            "model_kind": cfg.model.kind,
            "quantizer": cfg.quantizer.kind,
            "K": cfg.quantizer.codebook_size,
            "parameters": sum(p.numel() for p in steppers[name].model.parameters()),
            "batch_size": cfg.train.batch_size,
            "image_size": cfg.data.image_size,
            "steps_timed": steps,
            "repeats": repeats,
            "seconds_per_step_median": median,
            "seconds_per_step_min": min(per_step),
            "seconds_per_step_max": max(per_step),
            "steps_per_second": 1.0 / median,
            "images_per_second": cfg.train.batch_size / median,
            "speedup_vs_nchw": statistics.median(seconds["nchw"]) / median,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cpu_model": cpu_model(),
            "native_bf16": native_bf16(),
            "cpus": os.cpu_count(),
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": load_after,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per round and layout")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per layout (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study runs one per run)")
    parser.add_argument("--cases", default="all", help="all, or comma-separated indices into CASES")
    parser.add_argument("--precisions", default="fp32", help="fp32, or fp32,bf16 (adds channels_last under bf16)")
    parser.add_argument("--out", default="results/benchmarks/train_throughput.csv")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --out (e.g. another day's CPU) and add these after them")
    args = parser.parse_args()
    precisions = tuple(args.precisions.split(","))
    if not set(precisions) <= {"fp32", "bf16"}:
        raise SystemExit(f"--precisions={args.precisions!r}: choose from fp32, bf16")
    torch.set_num_threads(args.threads)
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    rows = []
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, {args.threads} thread(s), load {os.getloadavg()[0]:.2f}")
    for profile, overrides in cases:
        for row in time_layouts(profile, overrides, args.steps, args.repeats, precisions=precisions):
            rows.append(row)
            print(f"{profile:8s} {row['overrides']:40s} {row['layout']:13s} {row['precision']:4s} "
                  f"{row['parameters']:>9,d} params "
                  f"{row['seconds_per_step_median']:.3f} s/step (x{row['speedup_vs_nchw']:.2f}) "
                  f"{row['images_per_second']:8.1f} images/s, load {row['loadavg_1min_after']:.2f}", flush=True)
    write_rows(rows, args.out, args.append)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
