"""benchmarks/gen_throughput.py: both precisions timed for both study generators, the CSV names the CPU."""

from __future__ import annotations

import pandas as pd


def test_both_precisions_are_timed_and_written(benchmark_module, tmp_path):
    bench = benchmark_module("gen_throughput")
    out = tmp_path / "gen.csv"
    assert bench.main(["--steps", "1", "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    rows = pd.read_csv(out)
    assert sorted(zip(rows["kind"], rows["precision"], strict=True)) == [
        ("ar", "bf16"), ("ar", "fp32"), ("diffusion", "bf16"), ("diffusion", "fp32")]
    assert (rows["seconds_per_step"] > 0).all() and rows["cpu"].notna().all() and (rows["parameters"] > 0).all()
    assert bench.gpu_check.generator_config("diffusion", "default").tokenizer.quantizer.kind == "pq"


def test_bad_arguments_are_refused(benchmark_module, capsys):
    assert benchmark_module("gen_throughput").main(["--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
