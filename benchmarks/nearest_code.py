"""Nearest-code search: pqstudy's ``vq`` / ``pq`` against vector-quantize-pytorch's ``VectorQuantize``, side by side.

Same codebook tensor, same inputs: 32 images × 8×8 tokens = 2,048 queries of dimension D, codebooks of K entries, for
K ∈ {1,024, 16,384, 100,000} and D ∈ {8, 64}. Rows of the CSV (``results/benchmarks/nearest_code.csv``):

- ``vq``: a full forward in eval mode under ``no_grad`` — pqstudy ``VectorQuantizer`` vs ``VectorQuantize(dim=D,
  codebook_size=K, learnable_codebook=True, ema_update=False, accept_image_fmap=True)`` whose codebook holds the same
  tensor; ``indices_agree`` compares every index (``mismatches`` counts differences) and ``exact_agree`` is each
  implementation's share of indices equal to a float64 brute-force search (float32 rounding can flip near-ties);
- ``pq``: M = 4 subspaces of D/4 channels, K entries each — pqstudy ``ProductQuantizer`` vs ``VectorQuantize(heads=4,
  separate_codebook_per_head=True, codebook_dim=D/4)`` with the same sub-codebooks (the peer is skipped where its
  dense (M, N, K) distance and one-hot tensors would exceed ``--peer-max-gib``);
- ``search``: :func:`pqstudy.quantizers.nearest_code` alone, with the matmul bound: the 2·N·K·D FLOP of the search at
  the dense-GEMM rate measured in the same run (a 2048×1024 @ 1024×2048 float32 matmul).

Time: each callable is warmed up twice, then called ``--repeats`` times, pqstudy and the peer alternating so that both
see the same machine load; ``time_ms_best`` (the uncontended cost, used for the speedup) and ``time_ms_median``.

Peak extra memory: resident memory, measured in a fresh subprocess per (implementation, case) — torch's CPU allocations
are invisible to ``tracemalloc`` and CPU torch has no allocator counters. The subprocess builds the case, warms the
callable up once, records ``VmRSS``, resets the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``), calls it
once and reads ``VmHWM``: peak extra = VmHWM − VmRSS before the call, i.e. the most memory the call held at once beyond
what was resident already. ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc serve every allocation ≥ 64 KiB with fresh
pages returned on free (no silent reuse of freed-but-resident memory) and ``MALLOC_TRIM_THRESHOLD_`` trims the heap.
Without a writable ``/proc/self/clear_refs`` (not Linux) the probe falls back to ``ru_maxrss`` growth over the call
without warm-up, reported with ``memory_method=ru_maxrss``.

The last line printed is ``K=100000 D=8 speedup=<x> memory_ratio=<y> indices_agree=<True|False>`` (speedup = peer
time / pqstudy time, memory_ratio = pqstudy peak / peer peak, both for the ``vq`` row).

    python benchmarks/nearest_code.py [--ks 1024,16384,100000] [--dims 8,64] [--repeats 7] [--out CSV]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from timing import cpu_name, time_alternating

import pqstudy  # noqa: F401  (before anything imports torchvision)
from pqstudy.quantizers import ProductQuantizer, VectorQuantizer, nearest_code

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "method", "K", "D", "M", "impl", "queries", "time_ms_best", "time_ms_median", "peak_extra_mib", "memory_method",
    "indices_agree", "mismatches", "exact_agree", "speedup", "memory_ratio", "matmul_bound_ms", "of_bound",
    "threads", "cpu", "note",
]


def make_case(k: int, d: int, batch: int, grid: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + k * 131 + d)
    return torch.randn(k, d, generator=g), torch.randn(batch, d, grid, grid, generator=g)


def exact_indices(codebook: torch.Tensor, z: torch.Tensor, m: int) -> torch.Tensor:
    """(B, M, H, W) nearest indices in float64 (the reference both implementations are compared with)."""
    b, d, h, w = z.shape
    x = z.permute(0, 2, 3, 1).reshape(-1, d).double()
    out = []
    for xs, cs in zip(x.split(d // m, dim=1), codebook.double().split(d // m, dim=1), strict=True):
        out.append(torch.cat([torch.cdist(chunk, cs).argmin(1) for chunk in xs.split(128)]))
    return torch.stack(out, 1).view(b, h, w, m).permute(0, 3, 1, 2)


def build(impl: str, method: str, codebook: torch.Tensor, z: torch.Tensor, m: int):
    """A callable returning (B, M, H, W) indices for one forward, built on ``codebook``."""
    k, d = codebook.shape
    if impl == "pqstudy":
        if method == "search":
            x = z.permute(0, 2, 3, 1).reshape(-1, d).contiguous()
            return lambda: nearest_code(x, codebook)
        if method == "vq":
            q = VectorQuantizer(codebook_size=k, dim=d, init="normal")
            q.embedding.weight.data = codebook  # the same tensor, not a copy
        else:
            subs = []
            for part in codebook.split(d // m, dim=1):
                sub = VectorQuantizer(codebook_size=k, dim=d // m, init="normal")
                sub.embedding.weight.data = part.contiguous()
                subs.append(sub)
            q = ProductQuantizer(subs)
        q.eval()
        return lambda: q(z).indices
    from vector_quantize_pytorch import VectorQuantize

    if method == "vq":
        vq = VectorQuantize(dim=d, codebook_size=k, learnable_codebook=True, ema_update=False, accept_image_fmap=True)
        vq._codebook.embed.data = codebook.unsqueeze(0)  # a view of the same tensor
        vq.eval()
        return lambda: vq(z)[1].unsqueeze(1)
    vq = VectorQuantize(dim=d, codebook_size=k, heads=m, separate_codebook_per_head=True, codebook_dim=d // m,
                        learnable_codebook=True, ema_update=False, accept_image_fmap=True)
    vq._codebook.embed.data = torch.stack(codebook.split(d // m, dim=1)).contiguous()
    vq.eval()
    return lambda: vq(z)[1].permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------------------------
# memory probe (runs in a subprocess)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def probe(spec: dict) -> dict:
    import gc
    import resource

    torch.set_num_threads(spec["threads"])
    codebook, z = make_case(spec["K"], spec["D"], spec["batch"], spec["grid"])
    fn = build(spec["impl"], spec["method"], codebook, z, spec["M"])
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        can_reset = True
    except OSError:
        can_reset = False
    with torch.no_grad():
        if can_reset:
            fn()
            gc.collect()
            before = _status_kib("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            fn()
            peak = _status_kib("VmHWM")
            return {"peak_extra_bytes": max(0, peak - before) * 1024, "method": "vmhwm"}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if platform.system() == "Darwin" else 1024
        return {"peak_extra_bytes": max(0, after - before) * scale, "method": "ru_maxrss"}


def measure_memory(spec: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="131072")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------


def matmul_gflops(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 1024), torch.randn(1024, 2048)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * 2048 * 1024 * 2048 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="1024,16384,100000")
    ap.add_argument("--dims", default="8,64")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--subspaces", type=int, default=4, help="M of the pq rows")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--peer-max-gib", type=float, default=2.0, help="skip peer runs whose dense tensors exceed this")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "nearest_code.csv"))
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    threads, cpu = torch.get_num_threads(), cpu_name()
    ks = [int(s) for s in args.ks.split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    n = args.batch * args.grid * args.grid
    gflops = matmul_gflops()
    print(f"{cpu}; torch {torch.__version__}, {threads} threads; dense matmul {gflops:.0f} GFLOP/s; {n} queries",
          flush=True)
    rows, headline = [], None
    for k in ks:
        for d in dims:
            codebook, z = make_case(k, d, args.batch, args.grid)
            bound_ms = 2 * n * k * d / (gflops * 1e9) * 1e3
            for method in ("vq", "pq", "search"):
                m = args.subspaces if method == "pq" else 1
                if method == "pq" and d % m:
                    continue
                fns = {"pqstudy": build("pqstudy", method, codebook, z, m)}
                dense_gib = 2 * m * n * k * 4 / 2**30  # the peer's distance + one-hot tensors
                note = ""
                if method != "search":
                    if dense_gib <= args.peer_max_gib:
                        fns["vector-quantize-pytorch"] = build("peer", method, codebook, z, m)
                    else:
                        note = f"peer skipped: its dense (M, N, K) tensors need ~{dense_gib:.1f} GiB"
                with torch.no_grad():
                    times = time_alternating(fns, args.repeats)
                    idx = {name: fn() for name, fn in fns.items()}
                agree = (torch.equal(idx["pqstudy"], idx["vector-quantize-pytorch"])
                         if "vector-quantize-pytorch" in idx else None)
                mismatches = (int((idx["pqstudy"] != idx["vector-quantize-pytorch"]).sum())
                              if "vector-quantize-pytorch" in idx else "")
                exact = exact_indices(codebook, z, m)
                exact = exact.flatten() if method == "search" else exact
                mem = {}
                if not args.no_memory:
                    for name in fns:
                        spec = {"impl": "pqstudy" if name == "pqstudy" else "peer", "method": method, "K": k, "D": d,
                                "M": m, "batch": args.batch, "grid": args.grid, "threads": threads}
                        mem[name] = measure_memory(spec)
                for name in fns:
                    best, median = times[name].best_ms, times[name].median_ms
                    row = {
                        "method": method, "K": k, "D": d, "M": m, "impl": name, "queries": n,
                        "time_ms_best": round(best, 3), "time_ms_median": round(median, 3),
                        "peak_extra_mib": round(mem[name]["peak_extra_bytes"] / 2**20, 2) if name in mem else "",
                        "memory_method": mem[name]["method"] if name in mem else "",
                        "indices_agree": "" if agree is None else agree,
                        "mismatches": mismatches,
                        "exact_agree": round(float((idx[name] == exact).double().mean()), 6),
                        "speedup": "", "memory_ratio": "", "matmul_bound_ms": "", "of_bound": "",
                        "threads": threads, "cpu": cpu, "note": note if name == "pqstudy" else "",
                    }
                    if method in ("vq", "search") and name == "pqstudy":
                        row["matmul_bound_ms"] = round(bound_ms, 3)
                        row["of_bound"] = round(best / bound_ms, 2)
                    if name == "pqstudy" and "vector-quantize-pytorch" in fns:
                        row["speedup"] = round(times["vector-quantize-pytorch"].best_ms / best, 2)
                        if mem:
                            peer_mem = mem["vector-quantize-pytorch"]["peak_extra_bytes"]
                            row["memory_ratio"] = round(mem["pqstudy"]["peak_extra_bytes"] / max(peer_mem, 1), 5)
                    rows.append(row)
                    print(" ".join(f"{key}={row[key]}" for key in FIELDS[:16] if row[key] != ""), flush=True)
                    if (k, d, method, name) == (100_000, 8, "vq", "pqstudy"):
                        headline = row
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    if headline is not None:
        print(f"K=100000 D=8 speedup={headline['speedup']} memory_ratio={headline['memory_ratio']} "
              f"indices_agree={headline['indices_agree']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
