"""Sanity anchors for the converted Inception network: FID and KID of CIFAR-10 against itself.

- ``test[:n]`` vs ``test[n:2n]``: two halves of one split — the floor a perfect tokenizer would reach at this n;
- ``test[:n]`` vs ``train[:n]``: across splits.
Features are computed in chunks of 500 images and cached by content (:mod:`pqstudy.metrics.feature_cache`), so a
killed run resumes where it stopped; ``--cached-only`` reports on the chunks already cached (the largest n that all
three sets reach). Appends to ``results/benchmarks/fid_anchors.csv`` with the CPU model and the time spent.

    .venv/bin/python benchmarks/fid_anchors.py [--n 5000] [--cached-only]
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
from pqstudy.cpu import cpu_model
from pqstudy.data import load_dataset
from pqstudy.metrics.distribution import FidKidAccumulator, frechet_distance, kernel_inception_distance, load_inception
from pqstudy.metrics.feature_cache import feature_key, load_features, save_features

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "fid_anchors.csv"
CHUNK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--cached-only", action="store_true")
    args = parser.parse_args()
    cfg = DataConfig(name="cifar10", image_size=32)
    test, train = load_dataset(cfg, "test").images, load_dataset(cfg, "train").images
    sets = {"test_a": test[: args.n], "test_b": test[args.n : 2 * args.n], "train": train[: args.n]}
    extractor, reason = load_inception()
    if extractor is None:
        raise SystemExit(f"inception weights missing: {reason}")
    acc = FidKidAccumulator(extractor, batch_size=50)
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in sets}
    computed_seconds, computed_images = 0.0, 0
    for start in range(0, args.n, CHUNK):  # chunk by chunk across the three sets, so partial runs stay balanced
        for name, images in sets.items():
            chunk = images[start : start + CHUNK]
            key = feature_key(extractor.weights_sha256, chunk)
            cached = load_features(key, len(chunk))
            if cached is None and args.cached_only:
                break
            if cached is None:
                t0 = time.perf_counter()
                cached = acc.features(chunk)
                computed_seconds += time.perf_counter() - t0
                computed_images += len(chunk)
                save_features(key, cached)
                print(f"{name}[{start}:{start + len(chunk)}] {computed_seconds / computed_images:.3f} s/image",
                      flush=True)
            feats[name].append(cached)
    n = min(sum(len(f) for f in fs) for fs in feats.values())
    if n < 2:
        raise SystemExit("no complete chunk cached yet")
    a, b, t = (torch.cat(feats[k])[:n].double() for k in ("test_a", "test_b", "train"))
    rows = []
    for pair, (x, y) in {"test[:n] vs test[n:2n]": (a, b), "test[:n] vs train[:n]": (a, t)}.items():
        kid, kid_std = kernel_inception_distance(x.float(), y.float())
        rows.append({"pair": pair, "n": n, "fid": round(frechet_distance(x, y), 4), "kid": kid, "kid_std": kid_std,
                     "cpu": cpu_model(), "threads": torch.get_num_threads(),
                     "load_average": round(os.getloadavg()[0], 2),
                     "seconds_per_image": round(computed_seconds / computed_images, 4) if computed_images else None,
                     "date": time.strftime("%Y-%m-%d")})
        print(rows[-1])
    write_rows(rows, OUT, append=True)
    print(f"→ {OUT}")


if __name__ == "__main__":
    main()
