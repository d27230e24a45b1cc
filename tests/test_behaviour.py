"""The behaviour guard: refactors must not change what a run computes, nor the id it is stored under.

1. Tiny smoke-profile trainings, one per quantiser kind (vq, vq-fc, vq-ema, lc, pq of vq, pq of lc) and for the
   continuous ae and kl models, are re-run through the public entry point (``pqstudy.train_eval.train_and_evaluate``,
   what ``pqstudy train`` and the notebook call) and compared with ``tests/data/behaviour_reference.json``: run ids
   and every count exactly, every other number of metrics.json (timings excepted) and of history.json (the loss
   terms and codebook statistics) to ``REL_TOL`` relative.
2. Every committed run record ``results/runs/*.json`` keeps its run id: the id rebuilt from its stored config equals
   the stored one (a changed id would make the next study call redo those runs).
3. ``pqstudy report`` on a copy of the committed results regenerates REPORT.md and runs.csv byte for byte.

CPU-independent by design: the runs train in a subprocess with torch's CPU math pinned to its lowest instruction-set
level on one thread (tests/behaviour_run.py, tests/isa.py ``PORTABLE``). Pinned, an AMD EPYC (AVX-512) and an Intel
CPUID under qemu (AVX2) agreed to 3.3e-7 relative (5.7e-7 absolute on SSIM) and on every code count; unpinned, the
same cases moved by up to 3.6e-4 on the losses and flipped a code. ``REL_TOL`` = 1e-5 is 30x the pinned spread; SSIM,
a ratio of near-zero covariances for these untrained models, is compared to 1e-5 absolute instead (17x). Codes are
compared exactly: a near tie flips only within the pinned spread, and none did. The smallest real change the guard
must see, beta 0.25 -> 0.26, moves the commitment terms by 4% (``test_real_changes_fail_the_guard``).

Regenerate the reference only for a change that is MEANT to change results, and say so in the commit:

    .venv/bin/python tests/test_behaviour.py
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from behaviour_run import CASES, run_pinned

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "data" / "behaviour_reference.json"
REL_TOL = 1e-5
ABS_TOL = {"ssim": 1e-5}  # absolute tolerance by key; 1e-12 for the rest (numbers that are exactly 0)

# Real changes of what a run computes, each made on the vq case: the guard must fail every one, by a margin.
CHANGES = {
    "beta-0.26": {"quantizer.beta": 0.26},  # the commitment weight 0.25 -> 0.26
    "one-more-step": {"train.steps": 5},
    "init-seed-1": {"train.seed": 1},
    "swapped-loss-terms": {"quantizer.legacy": False},  # beta on the commitment term instead of the codebook term
}
BOOKKEEPING = ("steps", "step", "epoch", "lr")  # what one more step changes by itself, not through the weights


def write_reference() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        reference = run_pinned({name: {"case": name} for name in CASES}, Path(tmp))
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")


def mismatches(expected, actual, where: str = "", rel_tol: float = REL_TOL) -> list[str]:
    """Where ``actual`` differs from ``expected``: floats beyond ``rel_tol`` relative (or ``ABS_TOL`` of their key),
    anything else (ints, counts, None, strings) at all; keys that ``expected`` lacks are ignored (a new metric is not a
    change of behaviour)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a dict, got {actual!r}"]
        return [m for k in expected for m in (mismatches(expected[k], actual[k], f"{where}.{k}", rel_tol)
                                              if k in actual else [f"{where}.{k}: missing"])]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [m for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for m in mismatches(e, a, f"{where}[{i}]", rel_tol)]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        key = where.rsplit(".", 1)[-1].split("[")[0]
        close = math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=ABS_TOL.get(key, 1e-12))
        return [] if close else [f"{where}: expected {expected!r}, got {actual!r}"]
    if expected == actual and type(expected) is type(actual):
        return []
    return [f"{where}: expected {expected!r}, got {actual!r}"]


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    """Every case, and the vq case under each of ``CHANGES``, trained in one pinned subprocess (about 10 s)."""
    spec = {name: {"case": name} for name in CASES}
    spec.update({f"change:{label}": {"case": "vq", "set": change} for label, change in CHANGES.items()})
    return run_pinned(spec, tmp_path_factory.mktemp("behaviour"))


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_same_config_same_numbers(name, reference, pinned):
    actual, expected = pinned[name], reference[name]
    assert actual["run_id"] == expected["run_id"], f"{name}: the run id changed"
    problems = mismatches(expected, actual, name)
    assert not problems, f"{name} computes different numbers:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("label", list(CHANGES))
def test_real_changes_fail_the_guard(label, reference, pinned):
    """Each change moves numbers computed from the weights (the schedule's own bookkeeping set aside) by more than
    10x the guard's tolerance, so the guard fails it with room to spare."""
    changed = pinned[f"change:{label}"]
    computed = [m for m in mismatches(reference["vq"], changed, "vq", rel_tol=10 * REL_TOL)
                if not m.split(":")[0].rsplit(".", 1)[-1].startswith(BOOKKEEPING)]
    assert computed, f"{label}: the guard would not see this change"


def test_isa_levels():
    """CI's second pass goes one level down from the machine's own; the pinned level is the lowest."""
    from isa import AVX2, DEFAULT, PORTABLE, lower, own_capability

    assert lower("AVX512") == AVX2 and lower("AVX2") == DEFAULT and lower("DEFAULT") == {}
    assert own_capability() in ("AVX512", "AVX2", "DEFAULT")
    assert {k: PORTABLE[k] for k in DEFAULT} == DEFAULT and PORTABLE["OMP_NUM_THREADS"] == "1"


def test_mismatches_sees_a_change():
    """The comparison itself: equal within the tolerance passes; a changed number, a count off by one, a None, a
    missing key or a new length do not; SSIM has its absolute tolerance."""
    expected = {"a": 1.0, "b": [1, 2], "c": None, "d": "x", "ssim": 0.001}
    assert mismatches(expected, {"a": 1.0 + 5e-6, "b": [1, 2], "c": None, "d": "x", "ssim": 0.001 + 5e-6,
                                 "new": 3}) == []
    assert mismatches(expected, {**expected, "a": 1.0 + 2e-5}) == [".a: expected 1.0, got 1.00002"]
    assert mismatches(expected, {**expected, "ssim": 0.001 + 2e-5}) == [".ssim: expected 0.001, got 0.00102"]
    assert len(mismatches(expected, {**expected, "b": [1, 3], "c": 0.0})) == 2
    assert mismatches(expected, {"a": 1.0, "b": [1], "c": None, "ssim": 0.001}) == [
        ".b: expected [1, 2], got [1]", ".d: missing"]
    assert mismatches({"lr": 0.0}, {"lr": 1e-9}) == [".lr: expected 0.0, got 1e-09"]


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
