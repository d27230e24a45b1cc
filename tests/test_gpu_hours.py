"""benchmarks/gpu_hours.py: GPU hours of the paper-profile grids from gpu_check's CSV."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def gpu_hours(benchmark_module):
    return benchmark_module("gpu_hours")


def rows(**gen_ips) -> pd.DataFrame:
    base = {"profile": "paper", "ok": True, "compile": False, "card": "Test GPU", "gan_seconds_per_step": None,
            "images_per_second": None}
    out = [{**base, "kind": k, "precision": "bf16", "seconds_per_step": 1.0, "gan_seconds_per_step": 2.0}
           for k in ("vq", "pq")]
    out.append({**base, "kind": "pq", "precision": "fp32", "seconds_per_step": 1.5})
    out += [{**base, "kind": f"gen-{k}:x", "precision": "fp32", "seconds_per_step": 1.0, "images_per_second": v}
            for k, v in gen_ips.items()]
    return pd.DataFrame(out)


def test_a_tokenizer_costs_its_pre_gan_and_gan_steps(gpu_hours):
    from pqstudy.study.grids import grid_configs

    m = gpu_hours.measured(rows())
    assert m["fp32_ratio"] == 1.5 and m["card"] == "Test GPU"
    cfg = grid_configs("pq-subspaces", "paper")[1]  # pq
    hours, why = gpu_hours.run_hours(cfg, m, {})
    d = cfg.loss.disc_start
    assert why == "" and hours == pytest.approx((d * 1.0 + (cfg.train.steps - d) * 2.0) / 3600)
    assert gpu_hours.run_hours(grid_configs("lc-init", "paper")[0], m, {}) == (None, "lc")  # lc not timed


def test_a_generator_is_priced_by_images_and_scaled_by_its_flops(gpu_hours):
    m = gpu_hours.measured(rows(ar=10.0))
    timed = m["generators"]["ar"][1]
    hours, _ = gpu_hours.run_hours(timed, m, {})
    assert hours == pytest.approx(timed.gen.steps * timed.gen.batch_size / 10.0 / 3600)
    flat = timed.__class__(timed.tokenizer, timed.gen.__class__(**{**timed.gen.__dict__, "head": "flat"}))
    flat_hours, _ = gpu_hours.run_hours(flat, m, {})
    assert flat_hours > 4 * hours  # M = 4 sub-tokens a position: 4× the sequence, more than 4× the attention


def test_no_measured_row_is_an_error_naming_the_fix(gpu_hours):
    with pytest.raises(SystemExit, match="make gpu-check"):
        gpu_hours.measured(rows().assign(ok=False))
