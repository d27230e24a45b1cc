"""Does ``gen.precision=bf16`` change what a study generator samples? A recorded generator retrained in fp32 and bf16.

A generator of the committed study (by default the coarser-PQ flow DiT of ``gen-diffusion``, the cheapest: ~2 min a
run here) is rebuilt from its record in ``results/runs``: its tokenizer is trained again into ``--work`` (its runs are
deterministic, so it is the recorded tokenizer), then the generator is trained and evaluated in fp32 at seed 0 (which
must reproduce the recorded FD: the check that the setup is the study's) and in bf16 at every seed of ``--seeds``.
Each row: precision, seed, run id, FD (cls) and the recorded fp32 FD of that seed, training seconds. A run whose
``metrics.json`` is already in ``--work`` is read, not retrained (resumable). Writes
``results/benchmarks/gen_bf16_quality.csv`` with the CPU and whether it has native bf16 (without it bf16 is emulated:
same numbers, much slower).

    PQSTUDY_DATA_DIR=../shared/data .venv/bin/python benchmarks/gen_bf16_quality.py [--tokenizer pq-vq-8ddbca7bd5]
        [--kind diffusion] [--seeds 0,1,2] [--work scratch/gen_bf16] [--append]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_name, write_rows  # noqa: E402

from pqstudy.cpu import native_bf16  # noqa: E402
from pqstudy.generation.config import GenRunConfig, apply_gen_overrides, gen_from_dict  # noqa: E402
from pqstudy.generation.run import train_and_evaluate_generator  # noqa: E402
from pqstudy.train_eval import train_and_evaluate  # noqa: E402

RUNS = Path("results/runs")
OUT = Path("results/benchmarks/gen_bf16_quality.csv")


def recorded(tokenizer: str, kind: str = "diffusion", runs: Path = RUNS) -> dict[int, dict]:
    """The ok records of the ``kind`` generators on tokenizer run ``tokenizer``, by ``gen.seed``."""
    out = {}
    for path in sorted(runs.glob("gen-*.json")):
        record = json.loads(path.read_text())
        config = record.get("config") or {}
        if (record.get("status") == "ok" and config.get("tokenizer_run_id") == tokenizer
                and config["gen"]["kind"] == kind):
            out.setdefault(config["gen"]["seed"], record)
    return out


def run(cfg: GenRunConfig, out: Path, tokenizer_dir: Path) -> dict:
    """The metrics of ``cfg`` in ``out``: read when that run finished there before, else trained and evaluated."""
    done = out / "metrics.json"
    if done.exists():
        metrics = json.loads(done.read_text())
        if metrics.get("run_id") == cfg.run_id:
            return metrics
    return train_and_evaluate_generator(cfg, out, tokenizer_dir, progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default="pq-vq-8ddbca7bd5", help="the recorded tokenizer run id")
    ap.add_argument("--kind", default="diffusion", choices=("ar", "diffusion"))
    ap.add_argument("--seeds", default="0,1,2", help="bf16 generator seeds (each needs an fp32 record)")
    ap.add_argument("--work", default="scratch/gen_bf16", help="where the tokenizer and generator runs go")
    ap.add_argument("--runs", default=str(RUNS), help="the study's run records")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    args = ap.parse_args(argv)
    records = recorded(args.tokenizer, args.kind, Path(args.runs))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    missing = [s for s in [0, *seeds] if s not in records]
    if missing:
        print(f"gen_bf16_quality: no ok {args.kind} record on tokenizer {args.tokenizer} in {args.runs} for seed(s) "
              f"{missing}", file=sys.stderr)
        return 2
    base = gen_from_dict(records[0]["config"])
    work = Path(args.work)
    tokenizer_dir = work / "tokenizer"
    if not (tokenizer_dir / "metrics.json").exists():
        train_and_evaluate(base.tokenizer, tokenizer_dir, progress=False)
    rows = []
    for precision, seed in [("fp32", 0), *(("bf16", s) for s in seeds)]:
        cfg = GenRunConfig(base.tokenizer, apply_gen_overrides(base.gen, {"precision": precision, "seed": seed}))
        metrics = run(cfg, work / f"{precision}-{seed}", tokenizer_dir)
        rows.append({"tokenizer": args.tokenizer, "kind": args.kind, "precision": precision, "seed": seed,
                     "run_id": cfg.run_id, "fd_classifier": metrics["fd_classifier"],
                     "recorded_fp32_fd_classifier": records[seed]["metrics"]["fd_classifier"],
                     "train_seconds": metrics["train_seconds"]})
        print(rows[-1], flush=True)
    stamp = {"cpu": cpu_name(), "native_bf16": native_bf16(), "torch": torch.__version__,
             "date": datetime.date.today().isoformat()}
    write_rows([{**row, **stamp} for row in rows], args.out, args.append)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
