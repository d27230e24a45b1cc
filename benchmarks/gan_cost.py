"""What the papers' GAN and perceptual terms cost per training step of the default profile's model.

The default profile trains without both (``loss.disc_weight`` = 0, ``loss.perceptual_weight`` = 0). This times one
real training step (:func:`pqstudy.train.train_step`: forward, loss, backward, Adam, and the discriminator's step
where there is one) of the default model on a batch of random images, for three losses:

- ``default``: reconstruction and codebook terms only (what the study trains);
- ``gan``: plus PQGAN's GAN, a 3-layer PatchGAN at weight 0.8 from step 1 (PQGAN F8_K512_Z128_S64 config.yaml:83-85);
- ``gan+lpips``: plus LPIPS(VGG) at weight 1, as both papers train (needs ``pqstudy weights install``).

Variants alternate step by step (``timing.time_alternating``) so that load from other processes hits all alike; the
CSV holds each variant's median and best seconds per step, its ratio to ``default``, the CPU and the machine's load.

    .venv/bin/python benchmarks/gan_cost.py [--repeats 20] [--threads 1] [--out results/benchmarks/gan_cost.csv]
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from timing import cpu_name, machine_load, time_alternating, write_rows

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.config import apply_overrides, get_profile, validate
from pqstudy.cpu import memory_format
from pqstudy.losses import AutoencoderLoss
from pqstudy.models import build_model
from pqstudy.train import load_perceptual, train_step

PQGAN_GAN = {"loss.disc_weight": "0.8", "loss.disc_start": "1", "loss.disc_layers": "3", "loss.disc_ndf": "64"}
VARIANTS = {
    "default": {},
    "gan": PQGAN_GAN,
    "gan+lpips": {**PQGAN_GAN, "loss.perceptual_weight": "1.0"},
}


class Stepper:
    """The default model, its loss and optimisers for one variant, built from the same seed; each call is one step."""

    def __init__(self, overrides: dict):
        self.cfg = cfg = validate(apply_overrides(get_profile("default"), overrides))
        fmt = memory_format("cpu")
        torch.manual_seed(0)
        self.model = build_model(cfg).to(memory_format=fmt)
        self.loss_fn = AutoencoderLoss(cfg.loss, perceptual=load_perceptual(cfg, "cpu")).to(memory_format=fmt)
        t = cfg.train
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=t.lr,
                                    betas=(t.beta1, t.beta2))
        self.opt_d = (torch.optim.Adam(self.loss_fn.discriminator.parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
                      if self.loss_fn.uses_gan else None)
        size = cfg.data.image_size
        self.x = (torch.rand(t.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
                  ).contiguous(memory_format=fmt)
        self.step = 1  # the GAN counts from disc_start = 1

    def __call__(self) -> None:
        train_step(self.x, self.step, forward=self.model, model=self.model, loss_fn=self.loss_fn, opt=self.opt,
                   opt_d=self.opt_d, amp=contextlib.nullcontext, disc_start=self.cfg.loss.disc_start)
        self.step += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="alternating rounds of one step per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study runs one per run)")
    parser.add_argument("--out", default="results/benchmarks/gan_cost.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steppers = {name: Stepper(overrides) for name, overrides in VARIANTS.items()}
    before = machine_load()
    timings = time_alternating(steppers, repeats=args.repeats, warmup=3)
    after = machine_load()
    base = timings["default"].median_ms
    rows = [{"variant": name, "overrides": " ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "-",
             "seconds_per_step_median": t.median_ms / 1e3, "seconds_per_step_best": t.best_ms / 1e3,
             "ratio_to_default": t.median_ms / base, "batch_size": steppers[name].cfg.train.batch_size,
             "repeats": args.repeats, "threads": args.threads, "cpu": cpu_name(), "torch": torch.__version__,
             "loadavg_1min_before": before["loadavg_1min"], "other_running_before": before["other_running"],
             "loadavg_1min_after": after["loadavg_1min"], "other_running_after": after["other_running"]}
            for name, t in timings.items()]
    write_rows(rows, args.out)
    for row in rows:
        print(f"{row['variant']:10s} {row['seconds_per_step_median']:.3f} s/step ({row['ratio_to_default']:.2f}x)")


if __name__ == "__main__":
    main()
