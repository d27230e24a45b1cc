"""benchmarks/gen_bf16_quality.py: which records it finds, and a seed without an fp32 record refused before work."""

from __future__ import annotations

import json


def _record(runs, name, tokenizer, kind, seed, status="ok"):
    config = {"tokenizer_run_id": tokenizer, "gen": {"kind": kind, "seed": seed}}
    (runs / f"{name}.json").write_text(json.dumps({"status": status, "config": config,
                                                   "metrics": {"fd_classifier": 30.0 + seed}}))


def test_the_ok_records_of_the_tokenizer_and_kind_are_found_by_seed(benchmark_module, tmp_path):
    bench = benchmark_module("gen_bf16_quality")
    _record(tmp_path, "gen-dit-a", "pq-1", "diffusion", 0)
    _record(tmp_path, "gen-dit-b", "pq-1", "diffusion", 1)
    _record(tmp_path, "gen-dit-c", "pq-1", "diffusion", 2, status="failed")
    _record(tmp_path, "gen-ar-d", "pq-1", "ar", 2)
    _record(tmp_path, "gen-dit-e", "pq-2", "diffusion", 2)
    found = bench.recorded("pq-1", "diffusion", tmp_path)
    assert sorted(found) == [0, 1] and found[1]["metrics"]["fd_classifier"] == 31.0


def test_a_seed_without_a_record_is_refused_before_any_training(benchmark_module, tmp_path, capsys):
    bench = benchmark_module("gen_bf16_quality")
    _record(tmp_path, "gen-dit-a", "pq-1", "diffusion", 0)
    work = tmp_path / "work"
    assert bench.main(["--tokenizer", "pq-1", "--seeds", "0,1", "--runs", str(tmp_path), "--work", str(work)]) == 2
    assert "seed(s) [1]" in capsys.readouterr().err and not work.exists()
