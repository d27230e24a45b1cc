"""The behaviour guard's runs: tiny smoke-profile trainings through the public entry point, in a process of their own
with torch's CPU math pinned to one instruction-set level (tests/isa.py ``PORTABLE``), so their numbers do not depend
on the CPU that runs them.

    python tests/behaviour_run.py SPEC.json OUT.json   # what run_pinned starts

SPEC maps a label to ``{"case": NAME, "set": {KEY: VALUE}}``: case NAME of :data:`CASES` with the extra overrides;
OUT maps each label to its record (run id, every number of metrics.json and history.json, timings excepted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FOLDER = "behaviour-images"  # a relative folder (under the working directory), so data.name and the run id are fixed

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


def config(name: str, extra: dict | None = None):
    from pqstudy.config import apply_overrides, get_profile

    overrides = {**BASE, **CASES[name], **(extra or {})}
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


def kept(metrics: dict) -> dict:
    """Every number of a metrics dict, timings (``*_seconds``, ``*_per_second``) excepted: they vary run to run."""
    return {k: _numbers(v) for k, v in sorted(metrics.items())
            if not k.endswith(("_seconds", "_per_second")) and (v is None or _numbers(v) is not None)}


def run_case(name: str, out: Path, extra: dict | None = None) -> dict:
    """Train case ``name`` (with ``extra`` overrides) into ``out`` (the working directory must hold ``FOLDER``)."""
    from pqstudy.train_eval import train_and_evaluate

    cfg = config(name, extra)
    metrics = train_and_evaluate(cfg, out, progress=False)
    written = json.loads((out / "metrics.json").read_text())
    assert written["run_id"] == metrics["run_id"] == cfg.run_id
    history = json.loads((out / "history.json").read_text())
    return {"run_id": cfg.run_id, "metrics": kept(written), "history": [kept(r) for r in history]}


def run_spec(spec: dict, workdir: Path) -> dict:
    """Every labelled run of ``spec``, trained in ``workdir`` (its own codebook cache, no metric weights)."""
    import torch

    if torch.backends.cpu.get_cpu_capability() != "DEFAULT" or torch.get_num_threads() != 1:
        raise RuntimeError(f"the behaviour runs must be pinned (tests/isa.py PORTABLE): torch runs "
                           f"{torch.backends.cpu.get_cpu_capability()} on {torch.get_num_threads()} threads")
    os.environ["PQSTUDY_CACHE_DIR"] = str(workdir / "cache")  # lc codebooks built afresh
    os.environ["PQSTUDY_WEIGHTS_DIR"] = str(workdir / "no-weights")  # as the tests see it
    write_images(workdir / FOLDER)
    os.chdir(workdir)
    return {label: run_case(s["case"], workdir / "runs" / label, s.get("set")) for label, s in spec.items()}


def run_pinned(spec: dict, workdir: Path) -> dict:
    """:func:`run_spec` in a fresh interpreter under tests/isa.py's ``PORTABLE`` settings."""
    from isa import PORTABLE

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "spec.json").write_text(json.dumps(spec))
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **PORTABLE, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(Path(__file__)), str(workdir / "spec.json"), str(workdir / "out.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the pinned behaviour runs failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads((workdir / "out.json").read_text())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/behaviour_run.py SPEC.json OUT.json")
    spec = json.loads(Path(sys.argv[1]).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        records = run_spec(spec, Path(tmp))
    Path(sys.argv[2]).write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
