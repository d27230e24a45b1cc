"""The behaviour guard: refactors must not change what a run computes, nor the id it is stored under.

1. Tiny smoke-profile trainings, one per quantiser kind (vq, vq-fc, vq-ema, lc, pq of vq, pq of lc) and for the
   continuous ae and kl models, are re-run through the public entry point (``pqstudy.train_eval.train_and_evaluate``,
   what ``pqstudy train`` and the notebook call) and compared with
   ``tests/data/behaviour_reference.json``: run ids exactly, every number of metrics.json (timings excepted) and of
   history.json (the loss terms and codebook statistics) to 1e-6.
2. Every committed run record ``results/runs/*.json`` keeps its run id: the id rebuilt from its stored config equals
   the stored one (a changed id would make the next study call redo those runs).
3. ``pqstudy report`` on a copy of the committed results regenerates REPORT.md and runs.csv byte for byte.

The reference was written at commit 0b3526c (before the issue-12 layering refactor). Regenerate it only for a change
that is MEANT to change results, and say so in the commit:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/test_behaviour.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "data" / "behaviour_reference.json"
FOLDER = "behaviour-images"  # a relative folder (under the working directory), so data.name and the run id are fixed
TOL = 1e-6

# A few steps on 32 training images of 16 px: each run takes about a second.
BASE = {
    "data.name": f"folder:{FOLDER}",
    "data.image_size": 16,
    "data.train_limit": 32,
    "train.steps": 4,
    "train.batch_size": 8,
    "train.history_every": 2,
    "train.warmup_steps": 2,
    "train.eval_limit": 16,
    "train.eval_metrics": "",
    "train.fid_samples": 0,
}
TINY_LC = {"quantizer.codebook_size": 32, "quantizer.lc_samples": 256, "quantizer.lc_kmeans_iters": 2}
CASES = {
    "vq": {},
    "vq-photos": {"data.name": "photos"},  # the bundled photo crops the smoke profile trains on
    "vq-fc": {"quantizer.kind": "vq-fc"},
    "vq-ema": {"quantizer.kind": "vq-ema"},
    "lc": {"quantizer.kind": "lc", **TINY_LC},
    "pq": {"quantizer.kind": "pq", "quantizer.subspaces": 2},
    "pq-lc": {"quantizer.kind": "pq", "quantizer.subspaces": 2, "quantizer.sub_kind": "lc", **TINY_LC},
    "ae": {"model.kind": "ae"},
    "kl": {"model.kind": "kl"},
}


def write_images(root: Path) -> None:
    """``root/train`` (32) and ``root/test`` (16) PNGs of 16 px: smooth random colour fields, the same every time
    (PNG is lossless, so the decoded pixels do not depend on the encoder)."""
    from PIL import Image

    rng = np.random.default_rng(12)
    for split, n in (("train", 32), ("test", 16)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            coarse = rng.uniform(0, 255, size=(4, 4, 3))
            image = np.kron(coarse, np.ones((4, 4, 1))) + rng.normal(0, 8, size=(16, 16, 3))
            Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(root / split / f"{i:03d}.png")


def config(name: str):
    from pqstudy.config import apply_overrides, get_profile

    overrides = {**BASE, **CASES[name]}
    return apply_overrides(get_profile("smoke"), {k: str(v) for k, v in overrides.items()})


def _numbers(value):
    """The numeric content of a metrics/history value: numbers, None and lists of them; None for anything else."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return value
    return None


def _kept(metrics: dict) -> dict:
    """Every number of a metrics dict, timings (``*_seconds``, ``*_per_second``) excepted: they vary run to run."""
    return {k: _numbers(v) for k, v in sorted(metrics.items())
            if not k.endswith(("_seconds", "_per_second")) and (v is None or _numbers(v) is not None)}


def run_case(name: str, out: Path) -> dict:
    """Train case ``name`` into ``out`` (the working directory must hold ``FOLDER``); its reference record."""
    from pqstudy.train_eval import train_and_evaluate

    cfg = config(name)
    metrics = train_and_evaluate(cfg, out, progress=False)
    written = json.loads((out / "metrics.json").read_text())
    assert written["run_id"] == metrics["run_id"] == cfg.run_id
    history = json.loads((out / "history.json").read_text())
    return {"run_id": cfg.run_id, "metrics": _kept(written), "history": [_kept(r) for r in history]}


def generate(workdir: Path) -> dict:
    """Every case's reference record, trained in ``workdir`` (one torch thread, as the study runs)."""
    write_images(workdir / FOLDER)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return {name: run_case(name, workdir / "runs" / name) for name in CASES}
    finally:
        os.chdir(cwd)


def write_reference() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PQSTUDY_CACHE_DIR"] = str(Path(tmp) / "cache")  # lc codebooks built afresh
        os.environ["PQSTUDY_WEIGHTS_DIR"] = str(Path(tmp) / "no-weights")  # as the tests see it
        reference = generate(Path(tmp))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")


def mismatches(expected, actual, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected`` (numbers to ``TOL``, relative or absolute); keys that ``expected``
    lacks are ignored (a new metric is not a change of behaviour)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a dict, got {actual!r}"]
        return [m for k in expected for m in (mismatches(expected[k], actual[k], f"{where}.{k}") if k in actual
                                              else [f"{where}.{k}: missing"])]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [m for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for m in mismatches(e, a, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        close = math.isclose(expected, actual, rel_tol=TOL, abs_tol=TOL)
        return [] if close else [f"{where}: expected {expected!r}, got {actual!r}"]
    if expected == actual and type(expected) is type(actual):
        return []
    return [f"{where}: expected {expected!r}, got {actual!r}"]


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("behaviour")
    write_images(root / FOLDER)
    return root


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_same_config_same_numbers(name, reference, images, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(images)
    monkeypatch.setenv("PQSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    actual = run_case(name, tmp_path / "run")
    expected = reference[name]
    assert actual["run_id"] == expected["run_id"], f"{name}: the run id changed"
    problems = mismatches(expected, actual, name)
    assert not problems, f"{name} computes different numbers:\n" + "\n".join(problems[:20])


def test_mismatches_sees_a_change():
    """The comparison itself: equal within 1e-6 passes; a changed number, a None, a missing key or a new length do
    not."""
    expected = {"a": 1.0, "b": [1, 2], "c": None, "d": "x"}
    assert mismatches(expected, {"a": 1.0 + 1e-9, "b": [1, 2], "c": None, "d": "x", "new": 3}) == []
    assert mismatches(expected, {"a": 1.001, "b": [1, 2], "c": None, "d": "x"}) == [".a: expected 1.0, got 1.001"]
    assert len(mismatches(expected, {"a": 1.0, "b": [1, 3], "c": 0.0, "d": "x"})) == 2
    assert mismatches(expected, {"a": 1.0, "b": [1], "c": None}) == [".b: expected [1, 2], got [1]", ".d: missing"]


def committed_runs() -> list[Path]:
    return sorted((REPO / "results" / "runs").glob("*.json"))


def test_there_are_committed_runs():
    assert committed_runs(), "no results/runs/*.json: the run-id check below would check nothing"


@pytest.mark.parametrize("path", committed_runs(), ids=lambda p: p.stem)
def test_committed_run_ids_are_stable(path):
    from pqstudy.config import from_dict, run_id
    from pqstudy.generation.config import gen_from_dict, gen_run_id, is_generation

    record = json.loads(path.read_text())
    assert record["run_id"] == path.stem
    config = record["config"]  # a generator's record holds its tokenizer's config and its own
    rebuilt = gen_run_id(gen_from_dict(config)) if is_generation(config) else run_id(from_dict(config))
    assert rebuilt == record["run_id"], f"{path.name}: its config now has another run id"


def test_report_regenerates_committed_results_byte_for_byte(tmp_path, capsys):
    from pqstudy.cli import main

    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    (results / "REPORT.md").write_text("stale\n")  # rewritten, not left in place
    (results / "runs.csv").unlink()
    assert main(["report", "--results", str(results)]) == 0
    for name in ("REPORT.md", "runs.csv"):
        assert (results / name).read_bytes() == (REPO / "results" / name).read_bytes(), f"{name} changed"


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    write_reference()
    print(f"wrote {REFERENCE}")
