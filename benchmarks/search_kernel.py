"""The nearest-code search kernel, quiet and under load, in one run (issue 12, "One search kernel").

For each load (``quiet``, then ``loaded``: a competing CPU-bound busy loop started by this script, see
``timing.start_burner``) and each torch thread count (``--threads``, default 1 and every core), with N = 32 images ×
8×8 tokens = 2,048 queries:

- ``search`` K=100,000, D ∈ {8, 64}: :func:`pqstudy.quantizers.nearest_code` alone, beside two bounds:
  ``matmul_ms``, the bare ``x @ codebook.T`` of the same shapes (one call; it writes the whole N × K float32 matrix,
  819 MB, so it is bound by memory bandwidth, not arithmetic) and ``gemm_bound_ms``, the 2·N·K·(D+1) FLOP of the
  search's augmented matmul at the dense-GEMM rate measured in the same run (a 2048×1024 @ 1024×2048 matmul; the
  bound ``results/benchmarks/nearest_code.csv`` reports, against which the search was 3.5–4.6× at D=8). ``of_matmul``
  and ``of_gemm_bound`` are the search's best time over each.
- ``vq`` K=100,000, D ∈ {8, 64}: a forward of pqstudy's ``VectorQuantizer`` against vector-quantize-pytorch's
  ``VectorQuantize`` on the same codebook tensor (``speedup`` = peer / pqstudy, best times), as in
  ``benchmarks/nearest_code.py``; ``--no-peer`` skips it (the peer takes ~3 s a call at K=100,000).
- ``pq-search`` D=128, M=64, K=512 (the paper's PQ): M separate ``nearest_code`` calls (``loop``) against one
  :func:`~pqstudy.quantizers.base.nearest_code_batched` (``batched``); ``speedup`` = loop / batched.

``--compare-with REV`` adds rows ``impl=<REV>`` to ``search`` and ``pq-search``: the same inputs through the search
functions of ``pqstudy/quantizers/base.py`` at that git revision (e.g. 0b3526c, before the search ran as tasks on
threads), timed alternating with today's; ``vs_rev`` on today's row = REV's best time / today's.

``indices_agree``: the indices equal those of the other implementations of the case (``search``: today's on one
thread, and REV's; ``pq-search``: loop, batched and REV's batched all alike). Time: each callable warmed up (2 calls;
1 for the peer), then the implementations of a case alternate for ``--repeats`` rounds (``--peer-repeats`` where the
peer takes part); best and median. Each row records the CPU model, the thread count and the machine's load when its
condition started (1-minute load average and the processes running besides this one, ``timing.machine_load``): a
``quiet`` row on a machine shared with other work is not quiet, and ``--note`` says so. About 1–2 minutes on an idle
2-core machine (longer when it is shared).

    python benchmarks/search_kernel.py [--threads 1,2] [--repeats 7] [--no-peer] [--compare-with REV] [--note TEXT]
                                      [--out CSV]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch
from nearest_code import build, make_case  # benchmarks/nearest_code.py: the vq rows exactly as it builds them
from timing import cpu_name, machine_load, start_burner, time_alternating

import pqstudy  # noqa: F401  (before anything imports torchvision)
from pqstudy.quantizers import nearest_code
from pqstudy.quantizers.base import nearest_code_batched

ROOT = Path(__file__).resolve().parents[1]
K, DIMS, PQ_CASE = 100_000, (8, 64), (128, 64, 512)  # (D, M, K) of the pq rows
FIELDS = [
    "load", "threads", "method", "K", "D", "M", "impl", "queries", "time_ms_best", "time_ms_median", "speedup",
    "vs_rev", "matmul_ms", "of_matmul", "gemm_bound_ms", "of_gemm_bound", "indices_agree", "repeats", "loadavg_1min",
    "other_running", "cpu", "torch", "note",
]


def gemm_gflops(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 1024), torch.randn(1024, 2048)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 1024 * 2048 / best / 1e9


def load_revision(rev: str):
    """The module ``pqstudy/quantizers/base.py`` as it was at git revision ``rev`` (for ``--compare-with``)."""
    import subprocess
    import sys
    import types

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:pqstudy/quantizers/base.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"base_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{rev}:pqstudy/quantizers/base.py", "exec"), module.__dict__)  # noqa: S102
    return module


def _versus(rows: list[dict], mine: str, old, rev: str) -> list[dict]:
    """Add the ``REV`` row's time over ``mine``'s as ``vs_rev`` to the row of ``mine``."""
    if old is not None:
        ref = next(r for r in rows if r["impl"] == rev)
        for r in rows:
            if r["impl"] == mine:
                r["vs_rev"] = ref["time_ms_best"] / r["time_ms_best"]
    return rows


def search_rows(d: int, n: int, repeats: int, old=None, rev: str = "") -> list[dict]:
    codebook, z = make_case(K, d, n // 64, 8)
    x = z.permute(0, 2, 3, 1).reshape(-1, d).contiguous()
    codebook_t = codebook.t().contiguous()
    fns = {"pqstudy": lambda: nearest_code(x, codebook), "matmul": lambda: x @ codebook_t}
    if old is not None:
        fns[rev] = lambda: old.nearest_code(x, codebook)
    with torch.no_grad():
        times = time_alternating(fns, repeats)
        mine = nearest_code(x, codebook)
        agree = {"pqstudy": torch.equal(mine, _one_thread(lambda: nearest_code(x, codebook)))}
        if old is not None:
            agree[rev] = torch.equal(old.nearest_code(x, codebook), mine)
    bound_ms = 2 * n * K * (d + 1) / (gemm_gflops() * 1e9) * 1e3
    matmul = times["matmul"].best_ms
    rows = [{"method": "search", "K": K, "D": d, "M": 1, "impl": name, "time_ms_best": times[name].best_ms,
             "time_ms_median": times[name].median_ms, "matmul_ms": matmul, "of_matmul": times[name].best_ms / matmul,
             "gemm_bound_ms": bound_ms, "of_gemm_bound": times[name].best_ms / bound_ms, "indices_agree": agree[name]}
            for name in agree]
    return _versus(rows, "pqstudy", old, rev)


def _one_thread(fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def vq_rows(d: int, n: int, repeats: int) -> list[dict]:
    codebook, z = make_case(K, d, n // 64, 8)
    fns = {"pqstudy": build("pqstudy", "vq", codebook, z, 1), "vector-quantize-pytorch": build("peer", "vq", codebook,
                                                                                                z, 1)}
    with torch.no_grad():
        times = time_alternating(fns, repeats, warmup=1)
        agree = torch.equal(fns["pqstudy"](), fns["vector-quantize-pytorch"]())
    speedup = times["vector-quantize-pytorch"].best_ms / times["pqstudy"].best_ms
    return [{"method": "vq", "K": K, "D": d, "M": 1, "impl": name, "time_ms_best": t.best_ms,
             "time_ms_median": t.median_ms, "speedup": speedup if name == "pqstudy" else "", "indices_agree": agree}
            for name, t in times.items()]


def pq_rows(n: int, repeats: int, old=None, rev: str = "") -> list[dict]:
    d, m, k = PQ_CASE
    g = torch.Generator().manual_seed(1)
    x, books = torch.randn(m, n, d // m, generator=g), torch.randn(m, k, d // m, generator=g)
    fns = {"loop": lambda: torch.stack([nearest_code(x[i], books[i]) for i in range(m)]),
           "batched": lambda: nearest_code_batched(x, books)}
    if old is not None:
        fns[rev] = lambda: old.nearest_code_batched(x, books)
    with torch.no_grad():
        times = time_alternating(fns, repeats)
        batched = fns["batched"]()
        agree = all(torch.equal(fn(), batched) for fn in fns.values())
    speedup = times["loop"].best_ms / times["batched"].best_ms
    rows = [{"method": "pq-search", "K": k, "D": d, "M": m, "impl": name, "time_ms_best": t.best_ms,
             "time_ms_median": t.median_ms, "speedup": speedup if name == "batched" else "", "indices_agree": agree}
            for name, t in times.items()]
    return _versus(rows, "batched", old, rev)


def _round(row: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ap.add_argument("--threads", default=",".join(dict.fromkeys(["1", str(cores)])),
                    help="torch thread counts, comma-separated (default: 1 and every core)")
    ap.add_argument("--loads", default="quiet,loaded")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--peer-repeats", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true", help="skip the vector-quantize-pytorch rows")
    ap.add_argument("--batch", type=int, default=32, help="images of 8×8 tokens: N = 64 × batch queries")
    ap.add_argument("--compare-with", default="", metavar="REV",
                    help="also time the search functions of pqstudy/quantizers/base.py at this git revision")
    ap.add_argument("--note", default="", help="written to every row, e.g. what else ran on the machine")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "search_kernel.csv"))
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    loads = args.loads.split(",")
    bad = [x for x in loads if x not in ("quiet", "loaded")]
    if bad or any(t < 1 for t in threads):
        ap.error(f"--loads takes quiet and/or loaded (got {bad}); --threads positive counts (got {threads})")
    n, cpu = args.batch * 64, cpu_name()
    rev = args.compare_with
    old = load_revision(rev) if rev else None
    started, rows = time.perf_counter(), []
    for load in loads:
        burner = start_burner() if load == "loaded" else None
        try:
            state = machine_load()
            print(f"{load}: {cpu}; torch {torch.__version__}; load average {state['loadavg_1min']}, "
                  f"{state['other_running']} other process(es) running", flush=True)
            for t in threads:
                torch.set_num_threads(t)
                found = [r for d in DIMS for r in search_rows(d, n, args.repeats, old, rev)]
                if not args.no_peer:
                    found += [r for d in DIMS for r in vq_rows(d, n, args.peer_repeats)]
                found += pq_rows(n, args.repeats, old, rev)
                for row in found:
                    row = _round({**row, "load": load, "threads": t, "queries": n, **state, "cpu": cpu,
                                  "torch": torch.__version__, "note": args.note,
                                  "repeats": args.peer_repeats if row["method"] == "vq" else args.repeats})
                    rows.append(row)
                    print(" ".join(f"{k}={row[k]}" for k in FIELDS[:17] if row.get(k, "") != ""), flush=True)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
