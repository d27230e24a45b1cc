"""Seconds of each part of a run's evaluation: the test split (forward pass, PSNR/SSIM, each reference metric of
``train.eval_metrics``) and the training-split usage pass (encoder + quantiser only), in each memory layout.

The model is freshly initialised (the cost does not depend on the weights; for an lc codebook it does not depend on
the codebook's values either, so ``lc_init=uniform`` times what a k-means codebook costs without building one).
Writes ``results/benchmarks/eval_cost.csv``.

    .venv/bin/python benchmarks/eval_cost.py [--cases 0,1] [--layouts chosen|both] [--limit 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

import pqstudy  # noqa: F401  (applies the torchvision shim)
from pqstudy.codebooks import codebook_for
from pqstudy.config import apply_overrides, eval_metric_names, get_profile
from pqstudy.cpu import channels_last, cpu_model
from pqstudy.data import load_dataset, to_model_space
from pqstudy.evaluate import count_usage
from pqstudy.metrics.image import psnr, ssim, to_unit
from pqstudy.metrics.reference import ReferenceMetrics
from pqstudy.models import build_model
from pqstudy.preflight import validate_run

CASES = [
    ("default vq K=1024", {}),
    ("default lc K=100000 (uniform init)", {"quantizer.kind": "lc", "quantizer.codebook_size": "100000",
                                           "quantizer.lc_source": "random", "quantizer.lc_init": "uniform"}),
    ("default lc K=16384 pixels/kmeans", {"quantizer.kind": "lc", "quantizer.codebook_size": "16384",
                                          "quantizer.lc_source": "pixels", "quantizer.lc_init": "kmeans"}),
]


def time_case(name: str, overrides: dict, layout, limit: int) -> dict:
    cfg = validate_run(apply_overrides(get_profile("default"), overrides))
    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_model(cfg, codebook=codebook_for(cfg)).eval().to(memory_format=layout)  # lc: cached codebook
    build = time.perf_counter() - started
    test = load_dataset(cfg.data, "test", seed=0)
    train = load_dataset(cfg.data, "train", seed=0)
    n = min(limit, len(test)) if limit else len(test)
    refs = {m: ReferenceMetrics(names=(m,), device="cpu") for m in eval_metric_names(cfg.train.eval_metrics)}
    parts = {"forward": 0.0, "psnr_ssim": 0.0, **{m: 0.0 for m in refs}}
    bs = cfg.train.eval_batch_size
    with torch.no_grad():
        for start in range(0, n, bs):
            x = to_model_space(test.get_batch(torch.arange(start, min(start + bs, n))))
            t0 = time.perf_counter()
            rec = model(x.contiguous(memory_format=layout)).x_rec.clamp(-1, 1).contiguous()
            t1 = time.perf_counter()
            real01, rec01 = to_unit(x), to_unit(rec)
            float(psnr(real01, rec01).sum()), float(ssim(real01, rec01).sum())
            parts["forward"] += t1 - t0
            parts["psnr_ssim"] += time.perf_counter() - t1
            for m, ref in refs.items():
                t2 = time.perf_counter()
                ref.update(x, rec)
                parts[m] += time.perf_counter() - t2
    for m, ref in refs.items():
        t3 = time.perf_counter()
        value = ref.compute().get(m)
        parts[m] += time.perf_counter() - t3
        if value is None:
            parts[m] = float("nan")  # weights missing: not computed
    n_train = min(limit * 5, len(train)) if limit else len(train)
    t4 = time.perf_counter()
    counts = count_usage(model, train, n=n_train, device="cpu")
    usage = time.perf_counter() - t4
    return {
        "case": name, "layout": "channels_last" if layout == torch.channels_last else "nchw",
        "chosen_at_run_time": (layout == torch.channels_last) == channels_last("cpu"),
        "K": cfg.quantizer.codebook_size, "test_images": n, "train_images": n_train,
        "positions_counted": int(counts[0].sum()), "model_build_seconds": round(build, 2),
        **{f"test_{k}_seconds": round(v, 2) for k, v in parts.items()},
        "test_total_seconds": round(sum(v for v in parts.values() if v == v), 2),
        "usage_pass_seconds": round(usage, 2),
        "threads": torch.get_num_threads(), "cpu_model": cpu_model(), "loadavg_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="0,1", help="comma-separated indices into CASES")
    parser.add_argument("--layouts", default="chosen", choices=["chosen", "both"])
    parser.add_argument("--limit", type=int, default=0, help="test images (0 = all; the train pass takes 5×)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/eval_cost.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = torch.channels_last if channels_last("cpu") else torch.contiguous_format
    layouts = [chosen] if args.layouts == "chosen" else [torch.contiguous_format, torch.channels_last]
    rows = []
    for i in args.cases.split(","):
        for layout in layouts:
            row = time_case(*CASES[int(i)], layout=layout, limit=args.limit)
            rows.append(row)
            print(row, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
