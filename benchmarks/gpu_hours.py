"""Expected GPU hours of each paper-profile grid, from the step times ``make gpu-check`` measured.

Reads ``results/benchmarks/gpu.csv`` (:mod:`gpu_check`'s rows at the paper profile) and prices every run of every
grid on that card:

- a tokenizer: ``(loss.disc_start × s_ae + (train.steps − loss.disc_start) × s_gan) / 3600``, with s_ae / s_gan the
  seconds per step its kind took before / after the GAN starts (bf16 autocast). Each kind was timed at one grid point
  (``gpu_check.PAPER_POINTS``, the largest codebook); the other points of a grid train the same network with another
  quantiser, priced alike. ``fp32_hours`` scales by the fp32 / bf16 step-time ratio measured on ``pq``.
- a generator: ``gen.steps × gen.batch_size`` images at the seconds per image measured on the timed generator of its
  kind (fp32; one GPU's batch of 32), scaled by the ratio of this config's forward FLOPs per image to the timed
  one's (``forward_flops`` of ``pqstudy.generation.ar`` / ``.diffusion``, on shape-only tensors): the AR priors
  differ in vocabulary and order (flat runs 4× the sequence), the DiTs in latent channels and grid.

A run listed by two grids (the generation grids train their tokenizers, some shared) is priced in each; the total
counts each run id once. Not counted: loading and decoding ImageNet (the check trains on synthetic images in GPU
memory), evaluation and sampling, and building an LC codebook. Writes ``results/benchmarks/gpu_hours.csv`` and prints
the table the README shows.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpu_hours.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

from pqstudy.generation import ar, diffusion  # noqa: E402
from pqstudy.generation.config import GenRunConfig  # noqa: E402
from pqstudy.generation.train import ar_config, dit_config  # noqa: E402
from pqstudy.study.grids import GRIDS, grid_configs  # noqa: E402

CSV = Path("results/benchmarks/gpu.csv")
OUT = Path("results/benchmarks/gpu_hours.csv")


def measured(gpu: pd.DataFrame) -> dict:
    """What the CSV's ok paper-profile rows give: ``{kind: (s_ae, s_gan)}`` (bf16, not compiled), the fp32 / bf16
    ratio on pq (None when not measured), ``{"ar" | "diffusion": (seconds per image in fp32, timed config)}``, the
    card."""
    rows = gpu[(gpu["profile"] == "paper") & (gpu["ok"].astype(str) == "True")]
    generator = rows["kind"].str.startswith("gen-")
    tok = rows[(rows["precision"] == "bf16") & (rows["compile"].astype(str) == "False") & ~generator]
    if tok.empty:
        raise SystemExit(f"{CSV}: no ok paper-profile bf16 row; run `make gpu-check` on a GPU first")
    kinds = {}
    for _, r in tok.iterrows():
        s_ae = float(r["seconds_per_step"])
        kinds[r["kind"]] = (s_ae, float(r["gan_seconds_per_step"]) if pd.notna(r["gan_seconds_per_step"]) else s_ae)
    fp32 = rows[(rows["precision"] == "fp32") & (rows["kind"] == "pq")]
    ratio = float(fp32["seconds_per_step"].iloc[0]) / kinds["pq"][0] if len(fp32) and "pq" in kinds else None
    gens = {}
    for kind in ("ar", "diffusion"):
        hit = rows[rows["kind"].str.startswith(f"gen-{kind}:") & (rows["precision"] == "fp32")]  # the table's
        if len(hit):
            gens[kind] = (1.0 / float(hit["images_per_second"].iloc[-1]), gpu_check.generator_config(kind))
    return {"kinds": kinds, "fp32_ratio": ratio, "generators": gens, "card": str(tok["card"].iloc[0])}


def train_flops_per_image(cfg: GenRunConfig) -> float:
    """Forward FLOPs per image of generator ``cfg``'s training step (the backward is ~2× the forward for both
    families, so the ratio between configs is the training ratio), counted on meta tensors."""
    codes = gpu_check.synthetic_codes(cfg, 1)
    if cfg.gen.kind == "ar":
        return float(ar.forward_flops(ar_config(cfg, codes)))
    return float(diffusion.forward_flops(dit_config(cfg, codes)))


def run_hours(cfg, m: dict, flops_cache: dict) -> tuple[float | None, str]:
    """GPU hours of one run on the measured card (None, and why, when its kind was not measured)."""
    if isinstance(cfg, GenRunConfig):
        g = cfg.gen
        if g.kind not in m["generators"]:
            return None, f"gen-{g.kind}"
        s_image, timed = m["generators"][g.kind]
        for c in (cfg, timed):
            if c.run_id not in flops_cache:
                flops_cache[c.run_id] = train_flops_per_image(c)
        scale = flops_cache[cfg.run_id] / flops_cache[timed.run_id]
        return g.steps * g.batch_size * s_image * scale / 3600, ""
    kind = cfg.quantizer.kind if cfg.model.kind == "quantized" else cfg.model.kind
    if kind not in m["kinds"]:
        return None, kind
    s_ae, s_gan = m["kinds"][kind]
    ae_steps = min(cfg.loss.disc_start, cfg.train.steps)
    return (ae_steps * s_ae + (cfg.train.steps - ae_steps) * s_gan) / 3600, ""


def grid_hours(m: dict) -> tuple[pd.DataFrame, float]:
    rows, unique, flops_cache = [], {}, {}
    for grid in GRIDS:
        configs = grid_configs(grid, "paper")
        tok_h = gen_h = 0.0
        missing = set()
        for cfg in configs:
            hours, why = run_hours(cfg, m, flops_cache)
            if hours is None:
                missing.add(why)
                continue
            unique[cfg.run_id] = hours
            if isinstance(cfg, GenRunConfig):
                gen_h += hours
            else:
                tok_h += hours
        gens = sum(isinstance(c, GenRunConfig) for c in configs)
        rows.append({"grid": grid, "tokenizer_runs": len(configs) - gens, "generator_runs": gens,
                     "tokenizer_gpu_hours": round(tok_h), "generator_gpu_hours": round(gen_h),
                     "gpu_hours": round(tok_h + gen_h),
                     "fp32_tokenizer_hours": round(tok_h * m["fp32_ratio"]) if m["fp32_ratio"] else None,
                     "not_timed": ",".join(sorted(missing)), "card": m["card"]})
    return pd.DataFrame(rows), sum(unique.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", default=str(CSV))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    table, total = grid_hours(measured(pd.read_csv(args.csv)))
    table.to_csv(args.out, index=False)
    print(table.drop(columns=["card"]).to_string(index=False))
    print(f"all grids, each run once: {total:,.0f} GPU hours on one {table['card'].iloc[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
