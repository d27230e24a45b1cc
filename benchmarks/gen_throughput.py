"""Seconds per generator training step in fp32 and under ``gen.precision=bf16``, on this CPU.

The default profile's generators (the gen-ar grid's GPT prior on PQ tokens, the gen-diffusion grid's flow DiT on PQ
latents) train on random codes of their tokenizers' shapes through the training loop's own step
(``benchmarks/gpu_check.generator_throughput``, device ``cpu``): per round, each precision builds its model from the
same seed, takes ``--warmup`` untimed and ``--steps`` timed steps; ``--repeats`` rounds alternate the precisions so
that load from other processes hits both alike, and the CSV holds each one's median seconds per step with the CPU
model, whether it has native bf16, and the load before and after. Writes ``results/benchmarks/gen_throughput.csv``.

    .venv/bin/python benchmarks/gen_throughput.py [--steps 10] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_check  # noqa: E402
from timing import cpu_name, machine_load, write_rows  # noqa: E402

from pqstudy.config import PRECISIONS  # noqa: E402
from pqstudy.cpu import native_bf16  # noqa: E402

OUT = Path("results/benchmarks/gen_throughput.csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round and precision")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per round and precision")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the study trains on one)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if min(args.steps, args.repeats, args.threads) < 1 or args.warmup < 0:
        print("gen_throughput: --steps, --repeats and --threads must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    before = machine_load()
    rows = []
    for kind in ("ar", "diffusion"):
        cfg = gpu_check.generator_config(kind, "default")
        seconds = {p: [] for p in PRECISIONS}
        for _ in range(args.repeats):
            for precision in PRECISIONS:
                cfg.gen.precision = precision
                timed = gpu_check.generator_throughput(cfg, "cpu", steps=args.steps, warmup=args.warmup,
                                                       batch_size=cfg.gen.batch_size)
                seconds[precision].append(timed["seconds_per_step"])
                parameters = timed["parameters"]
        for precision in PRECISIONS:
            rows.append({"kind": kind, "size": cfg.gen.size, "tokenizer": cfg.tokenizer_run_id,
                         "parameters": parameters, "batch_size": cfg.gen.batch_size, "precision": precision,
                         "seconds_per_step": round(statistics.median(seconds[precision]), 4),
                         "rounds": args.repeats, "steps": args.steps, "threads": args.threads})
        ratio = rows[-1]["seconds_per_step"] / rows[-2]["seconds_per_step"]
        print(f"{kind} ({cfg.gen.size}, {parameters:,} parameters, batch {cfg.gen.batch_size}): fp32 "
              f"{rows[-2]['seconds_per_step']:.4f} s/step, bf16 {rows[-1]['seconds_per_step']:.4f} s/step "
              f"(bf16/fp32 {ratio:.2f})", flush=True)
    after = machine_load()
    stamp = {"cpu": cpu_name(), "native_bf16": native_bf16(), "loadavg_before": before["loadavg_1min"],
             "loadavg_after": after["loadavg_1min"], "torch": torch.__version__,
             "date": datetime.date.today().isoformat()}
    write_rows([{**row, **stamp} for row in rows], args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
