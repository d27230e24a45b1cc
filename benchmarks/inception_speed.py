"""Seconds per image of the rFID/KID network (InceptionV3 at 299 px) on this CPU, per speed trick, and what each
trick does to the features.

Modes, all on the same CIFAR-10 test images (torch-fidelity's uint8 pipeline, resized to 299 inside):
- ``fp32``: contiguous float32, the reference;
- ``channels_last``: the same network in channels-last memory format (what pqstudy uses on CPU);
- ``bf16``: bf16 autocast on top of channels-last — timed only where the CPU has native bf16 (``avx512_bf16`` or
  ``amx_bf16``); elsewhere it is 8–17× slower and is skipped unless ``--force-bf16``.
Each row records the CPU model, the load average before the run (another process running?), the threads, the
largest feature difference from ``fp32`` and the FID between the fp32 and the mode's features of the same images
(0 for an exact trick). Appends to ``results/benchmarks/inception.csv``.

    .venv/bin/python benchmarks/inception_speed.py [--images 64] [--batch 32] [--threads 0] [--force-bf16]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from timing import write_rows

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.config import DataConfig
from pqstudy.cpu import cpu_model, native_bf16
from pqstudy.data import load_dataset
from pqstudy.metrics.distribution import frechet_distance, load_inception

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "inception.csv"


def timed_features(extractor, images: torch.Tensor, batch: int, bf16: bool) -> tuple[torch.Tensor, float]:
    feats = []
    with torch.no_grad():
        extractor(images[:2])  # warm-up
        start = time.perf_counter()
        for chunk in images.split(batch):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                (f,) = extractor(chunk)
            feats.append(f.float())
        seconds = time.perf_counter() - start
    return torch.cat(feats), seconds / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--force-bf16", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    images = load_dataset(DataConfig(name="cifar10", image_size=32), "test").images[: args.images]
    extractor, reason = load_inception()
    if extractor is None:
        raise SystemExit(f"inception weights missing: {reason}")
    contiguous = extractor.to(memory_format=torch.contiguous_format)
    reference, ref_seconds = timed_features(contiguous, images, args.batch, bf16=False)
    rows = [("fp32", ref_seconds, reference)]
    channels_last = extractor.to(memory_format=torch.channels_last)
    feats, seconds = timed_features(channels_last, images, args.batch, bf16=False)
    rows.append(("channels_last", seconds, feats))
    if native_bf16() or args.force_bf16:
        feats, seconds = timed_features(channels_last, images, args.batch, bf16=True)
        rows.append(("bf16", seconds, feats))
    else:
        print("bf16: skipped (no native bf16 on this CPU; --force-bf16 to time it anyway)")
    records = []
    for mode, seconds, feats in rows:
        record = {
            "mode": mode, "seconds_per_image": round(seconds, 4), "speedup_vs_fp32": round(ref_seconds / seconds, 3),
            "max_abs_feature_diff": float((feats - reference).abs().max()),
            "fid_vs_fp32_same_images": round(frechet_distance(feats.double(), reference.double()), 6),
            "images": len(images), "batch": args.batch, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "native_bf16": native_bf16(), "load_average_before": round(load_before, 2), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }  # fmt: skip
        records.append(record)
        print(" ".join(f"{k}={v}" for k, v in record.items()))
    write_rows(records, OUT, append=True)
    print(f"→ {OUT}")


if __name__ == "__main__":
    main()
