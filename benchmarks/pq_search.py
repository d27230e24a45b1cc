"""``pq``'s nearest-code search: the per-subspace loop against one batched search over all subspaces.

``ProductQuantizer.quantize`` searches its M subspaces in one :func:`pqstudy.quantizers.base.nearest_code_batched`
call when they are all of one plain nearest-code kind; ``ProductQuantizer._quantize_loop`` is the former loop of M
``sub.quantize`` calls (M :func:`~pqstudy.quantizers.nearest_code` searches). Shapes: N = 32 images × 8×8 tokens
= 2,048 positions; (D, M, K) = (8, 4, 256) and (32, 16, 256) at the default profile's N, and the paper's
(128, 64, 512). Rows of the CSV (``results/benchmarks/pq_search.csv``), one per (case, method, impl):

- ``step``: the quantiser's training step alone — ``quantize`` of an (N, D) input that requires grad, in train mode,
  then ``backward`` of its loss terms plus a random linear function of ``x_q`` (gradients reach the input and every
  codebook);
- ``search``: the search alone — M ``nearest_code`` calls on the (N, D/M) slices vs one ``nearest_code_batched``.

Time: each callable is warmed up twice, then loop and batched alternate for ``--repeats`` rounds so both see the same
machine load; ``time_ms_median`` (and ``time_ms_best``); ``speedup`` = loop median / batched median. One torch thread
(``--threads``). ``--load loaded`` starts a Python busy loop pinned to the last CPU of this process's affinity set for
the duration of the run (``quiet`` runs without it; other processes on the machine are not controlled — ``loadavg``
records the 1-minute load average at the start). Rows of a run replace the CSV's earlier rows of the same ``load``;
``cpu`` is ``lscpu``'s model name.

    python benchmarks/pq_search.py [--load quiet|loaded] [--repeats 15] [--sub-kind vq] [--out CSV]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import torch
from timing import cpu_name, start_burner, time_alternating

import pqstudy  # noqa: F401  (before anything imports torchvision)
from pqstudy.config import QuantizerConfig
from pqstudy.quantizers import ProductQuantizer, build_quantizer, nearest_code
from pqstudy.quantizers.base import nearest_code_batched

ROOT = Path(__file__).resolve().parents[1]
CASES = [(8, 4, 256), (32, 16, 256), (128, 64, 512)]  # (D, M, K)
FIELDS = ["method", "sub_kind", "D", "M", "K", "N", "impl", "time_ms_median", "time_ms_best", "speedup",
          "indices_agree", "repeats", "threads", "load", "loadavg", "torch", "cpu"]


def make_case(sub_kind: str, d: int, m: int, k: int, n: int, seed: int = 0):
    torch.manual_seed(seed)
    pq = build_quantizer(QuantizerConfig(kind="pq", sub_kind=sub_kind, codebook_size=k, dim=d, subspaces=m,
                                         init="normal"))
    pq.train()
    g = torch.Generator().manual_seed(seed + 1)
    return pq, torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def step_fn(pq: ProductQuantizer, path, x: torch.Tensor, w: torch.Tensor):
    def step():
        pq.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        out = path(pq, xg)
        (sum(out.loss.values()) + (out.x_q * w).sum()).backward()
        return out.idx

    return step


def search_fns(pq: ProductQuantizer, x: torch.Tensor) -> dict:
    """Both searches on what the sub-quantisers search: the (N, D/M) slices against each ``codebook()``."""
    xs = [s.contiguous() for s in x.split(pq.sub_dims, dim=1)]
    with torch.no_grad():
        books = [sub.codebook().detach().contiguous() for sub in pq.subquantizers]
    xb, cb = torch.stack(xs), torch.stack(books)
    chunk = pq.subquantizers[0].chunk_size if hasattr(pq.subquantizers[0], "chunk_size") else 16384
    return {
        "loop": lambda: torch.stack([nearest_code(a, c, chunk) for a, c in zip(xs, books, strict=True)], dim=1),
        "batched": lambda: nearest_code_batched(xb, cb, chunk).t(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", choices=["quiet", "loaded"], default="quiet")
    ap.add_argument("--sub-kind", default="vq", choices=["vq", "vq-ema", "vq-fc"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "pq_search.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.batch * args.grid * args.grid
    cpu = cpu_name()
    burner = start_burner() if args.load == "loaded" else None
    rows = []
    try:
        loadavg = round(os.getloadavg()[0], 2)
        print(f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.load} "
              f"(1-min load average {loadavg}); N={n}", flush=True)
        for d, m, k in CASES:
            pq, x, w = make_case(args.sub_kind, d, m, k, n)
            assert pq.batched_search, f"pq of {args.sub_kind} is not searched in one batch"
            for method in ("step", "search"):
                if method == "step":
                    fns = {"loop": step_fn(pq, ProductQuantizer._quantize_loop, x, w),
                           "batched": step_fn(pq, ProductQuantizer._quantize_batched, x, w)}
                    if args.sub_kind == "vq-ema":  # each step moves the EMA codebook: compare on the same codes
                        fns = {name: _restoring(pq, fn) for name, fn in fns.items()}
                else:
                    fns = search_fns(pq, x)
                times = time_alternating(fns, args.repeats)
                agree = torch.equal(fns["loop"](), fns["batched"]())
                for impl in fns:
                    median, best = times[impl].median_ms, times[impl].best_ms
                    row = {"method": method, "sub_kind": args.sub_kind, "D": d, "M": m, "K": k, "N": n, "impl": impl,
                           "time_ms_median": round(median, 3), "time_ms_best": round(best, 3),
                           "speedup": round(times["loop"].median_ms / median, 2) if impl == "batched" else "",
                           "indices_agree": agree, "repeats": args.repeats, "threads": torch.get_num_threads(),
                           "load": args.load, "loadavg": loadavg, "torch": torch.__version__, "cpu": cpu}
                    rows.append(row)
                    print(" ".join(f"{key}={row[key]}" for key in FIELDS[:11] if row[key] != ""), flush=True)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if out.exists():
        with open(out, newline="") as f:
            kept = [r for r in csv.DictReader(f) if r.get("load") != args.load]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(kept + rows)
    print(f"wrote {out}")
    return 0


def _restoring(pq: ProductQuantizer, fn):
    state = {name: b.clone() for name, b in pq.named_buffers()}

    def call():
        out = fn()
        with torch.no_grad():
            for name, b in pq.named_buffers():
                b.copy_(state[name])
        return out

    return call


if __name__ == "__main__":
    raise SystemExit(main())
